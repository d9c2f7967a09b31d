/* PAD / PADV2, int8, constant value (TFLite reference_ops::Pad): each output row along the
 * innermost axis is pad value, a copy of the input row, pad value. */
#include <string.h>

#include "aq_kernels.h"

void aq_pad_s8(const aq_pad_params *p, const int8_t *input, int8_t *output) {
  const int32_t *in = p->in_dims, *out = p->out_dims, *bf = p->before;
  const int8_t value = (int8_t)p->pad_value;
  const int32_t tail = out[3] - bf[3] - in[3];
  for (int32_t i0 = 0; i0 < out[0]; ++i0) {
    const int32_t j0 = i0 - bf[0];
    for (int32_t i1 = 0; i1 < out[1]; ++i1) {
      const int32_t j1 = i1 - bf[1];
      for (int32_t i2 = 0; i2 < out[2]; ++i2) {
        const int32_t j2 = i2 - bf[2];
        int8_t *row = output + ((i0 * out[1] + i1) * out[2] + i2) * out[3];
        if (j0 < 0 || j0 >= in[0] || j1 < 0 || j1 >= in[1] || j2 < 0 || j2 >= in[2]) {
          memset(row, value, (size_t)out[3]);
          continue;
        }
        memset(row, value, (size_t)bf[3]);
        memcpy(row + bf[3], input + ((j0 * in[1] + j1) * in[2] + j2) * in[3], (size_t)in[3]);
        memset(row + bf[3] + in[3], value, (size_t)tail);
      }
    }
  }
}
