/* FULLY_CONNECTED, int8 activations, int8 weights: Cortex-M4/M7 (DSP extension) port of
 * firmware/kernels/aq_fully_connected_s8.c, bit-exact with it. See aq_cm_conv_impl.h. */
#include "aq_cm_conv_impl.h"

void aq_fully_connected_s8(const aq_fully_connected_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                           int8_t *output) {
  aq_cm_fully_connected(p, input, filter, bias, output, 0);
}
