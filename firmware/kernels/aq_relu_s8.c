/* RELU / RELU6 / RELU_N1_TO_1 as standalone ops, int8 (TFLite Micro ReluQuantized): rescale from
 * the input to the output quantization, then clamp to the activation's range. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_relu_s8(const aq_relu_params *p, const int8_t *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t v = p->output_offset +
                      aq_requantize(input[i] - p->input_zero_point, p->multiplier, p->shift);
    output[i] = (int8_t)aq_clamp(v, p->act_min, p->act_max);
  }
}
