/* DEQUANTIZE at a model's float output, int8 -> float32 (TFLite reference_ops::Dequantize):
 * scale * (x - zero point) computed in double, then rounded to float. */
#include "aq_kernels.h"

void aq_dequantize_s8_f32(const aq_affine_params *p, const int8_t *input, float *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    output[i] = (float)((double)p->scale * (double)(input[i] - p->zero_point));
  }
}
