/* LEAKY_RELU, int8 (TFLite reference_ops::QuantizeLeakyRelu): the identity multiplier for
 * inputs at or above the zero point, alpha's below it (its sign applied after the scaling, as
 * TFLite does for a negative alpha), then the int8 range. It runs through aq_lut_s8: the model
 * calls it once on the 256 codes in aq_model_prepare(). */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_leaky_relu_s8(const aq_leaky_relu_params *p, const int8_t *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t v = input[i] - p->input_zero_point;
    int32_t scaled;
    if (v >= 0) {
      scaled = aq_requantize(v, p->identity_multiplier, p->identity_shift);
    } else {
      scaled = aq_requantize(v, p->alpha_multiplier, p->alpha_shift);
      scaled = p->alpha_negative ? -scaled : scaled;
    }
    output[i] = (int8_t)aq_clamp(p->output_zero_point + scaled, -128, 127);
  }
}
