/* CONV_2D, int8 activations, packed INT4 weights, unpacked in registers:
 * Cortex-M4/M7 (DSP extension) port of
 * firmware/kernels/aq_conv_s4.c, bit-exact with it. See aq_cm_conv_impl.h. */
#include "aq_cm_conv_impl.h"

void aq_conv_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter, const int32_t *bias,
                int8_t *output) {
  aq_cm_conv(p, input, filter, bias, output, 1);
}
