/* DEPTHWISE_CONV_2D 3x3, depth multiplier 1: the "3x3" variant for INT4 weights (doubled int16
 * pairs and the folded bias in one table built at build time, aqedge/codegen/dispatch.py). */
#include "aq_mac_impl.h"

void aq_depthwise_conv_3x3_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                              const uint8_t *filter, const int32_t *bias, int8_t *output) {
  (void)bias; /* folded into the table */
  aq_depthwise_conv_3x3_impl(p, input, filter, output);
}
