/* QUANTIZE, int8 -> int8 requantization (TFLite reference_ops::Requantize). */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_quantize_s8(const aq_quantize_params *p, const int8_t *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t out = aq_requantize(input[i] - p->input_zero_point, p->multiplier, p->shift) +
                        p->output_zero_point;
    output[i] = (int8_t)aq_clamp(out, -128, 127);
  }
}
