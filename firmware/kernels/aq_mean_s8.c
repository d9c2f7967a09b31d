/* MEAN, int8, over any subset of the 4 (extended) axes (TFLite QuantizedMeanOrSum, which TFLite
 * Micro uses even when input and output share their quantization): the zero-point-corrected sum
 * requantized with 1/count folded into the multiplier. Outputs are produced in order, so
 * keep_dims does not change the layout. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_mean_s8(const aq_mean_params *p, const int8_t *input, int8_t *output) {
  const int32_t *d = p->dims;
  const int32_t st[4] = {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
  int32_t od[4], rd[4];
  for (int k = 0; k < 4; ++k) {
    od[k] = p->reduce[k] ? 1 : d[k];
    rd[k] = p->reduce[k] ? d[k] : 1;
  }
  int32_t o = 0;
  for (int32_t i0 = 0; i0 < od[0]; ++i0)
    for (int32_t i1 = 0; i1 < od[1]; ++i1)
      for (int32_t i2 = 0; i2 < od[2]; ++i2)
        for (int32_t i3 = 0; i3 < od[3]; ++i3) {
          const int8_t *base = input + i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3];
          int32_t sum = 0;
          for (int32_t r0 = 0; r0 < rd[0]; ++r0)
            for (int32_t r1 = 0; r1 < rd[1]; ++r1)
              for (int32_t r2 = 0; r2 < rd[2]; ++r2)
                for (int32_t r3 = 0; r3 < rd[3]; ++r3)
                  sum += base[r0 * st[0] + r1 * st[1] + r2 * st[2] + r3 * st[3]];
          const int32_t shifted = sum - p->input_zero_point * p->count;
          const int32_t out = aq_requantize(shifted, p->multiplier, p->shift) + p->output_zero_point;
          output[o++] = (int8_t)aq_clamp(out, -128, 127);
        }
}
