/* DEPTHWISE_CONV_2D "mult2" variant (depth multiplier 2), INT4 weights (int16 table):
 * Cortex-M4/M7 (DSP extension) port of firmware/kernels/aq_depthwise_conv_mult2_s4.c,
 * bit-exact with it. */
#include "aq_cm_depthwise.h"

void aq_depthwise_conv_mult2_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                                const uint8_t *filter, const int32_t *bias, int8_t *output) {
  aq_cm_depthwise_mult2(p, input, (const uint32_t *)(const void *)filter, bias, output);
}
