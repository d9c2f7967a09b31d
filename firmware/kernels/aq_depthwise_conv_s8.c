/* DEPTHWISE_CONV_2D, int8 activations and int8 weights, per-channel requantization (TFLite reference). */
#include "aq_mac_impl.h"

void aq_depthwise_conv_s8(const aq_depthwise_conv_params *p, const int8_t *input, const int8_t *filter,
                          const int32_t *bias, int8_t *output) {
  aq_depthwise_conv_impl(p, input, filter, bias, output, 0);
}
