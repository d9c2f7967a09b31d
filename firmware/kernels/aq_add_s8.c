/* ADD, int8, same-shape inputs (TFLite reference_integer_ops::AddElementwise): both inputs are
 * brought to a common scale with 20 bits of headroom, summed, then requantized. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_add_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t a = aq_shl(input1[i] + p->input1_offset, p->left_shift);
    const int32_t b = aq_shl(input2[i] + p->input2_offset, p->left_shift);
    const int32_t sum = aq_requantize(a, p->input1_multiplier, p->input1_shift) +
                        aq_requantize(b, p->input2_multiplier, p->input2_shift);
    const int32_t out = aq_requantize(sum, p->output_multiplier, p->output_shift) + p->output_offset;
    output[i] = (int8_t)aq_clamp(out, p->act_min, p->act_max);
  }
}
