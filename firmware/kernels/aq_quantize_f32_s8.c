/* QUANTIZE at a model's float input, float32 -> int8 (TFLite reference_ops::AffineQuantize):
 * round(x / scale) in single precision, half away from zero, plus the zero point. */
#include <math.h>

#include "aq_kernels.h"
#include "aq_math.h"

void aq_quantize_f32_s8(const aq_affine_params *p, const float *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    float q = roundf(input[i] / p->scale);
    q = q < -1e9f ? -1e9f : (q > 1e9f ? 1e9f : q); /* keep the int conversion defined */
    output[i] = (int8_t)aq_clamp((int32_t)q + p->zero_point, -128, 127);
  }
}
