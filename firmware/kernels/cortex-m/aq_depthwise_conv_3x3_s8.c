/* DEPTHWISE_CONV_2D "3x3" variant, int8 weights (int16 table): Cortex-M4/M7 (DSP extension)
 * port of firmware/kernels/aq_depthwise_conv_3x3_s8.c, bit-exact with it. */
#include "aq_cm_depthwise.h"

void aq_depthwise_conv_3x3_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                              const int8_t *filter, const int32_t *bias, int8_t *output) {
  (void)bias; /* folded into the table */
  aq_cm_depthwise_3x3(p, input, (const uint32_t *)(const void *)filter, output);
}
