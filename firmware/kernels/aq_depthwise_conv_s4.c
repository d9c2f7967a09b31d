/* DEPTHWISE_CONV_2D, int8 activations and packed INT4 weights (TFLite TensorType INT4): the same
 * arithmetic as aq_depthwise_conv_s8, each weight unpacked in a register as it is used. */
#include "aq_mac_impl.h"

void aq_depthwise_conv_s4(const aq_depthwise_conv_params *p, const int8_t *input, const uint8_t *filter,
                          const int32_t *bias, int8_t *output) {
  aq_depthwise_conv_impl(p, input, filter, bias, output, 1);
}
