/* DEPTHWISE_CONV_2D, depth multiplier 2, any kernel size: the "mult2" variant for INT4 weights
 * (widened to int16 pairs at build time, aqedge/codegen/dispatch.py), TFLite's arithmetic. */
#include "aq_mac_impl.h"

void aq_depthwise_conv_mult2_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                                const uint8_t *filter, const int32_t *bias, int8_t *output) {
  aq_depthwise_conv_table_impl(p, input, filter, bias, output);
}
