/* CONV_2D 1x1 without padding over 1 to 3 output pixels: matrix x vector per pixel,
 * packed INT4 weights in the matvec layout, input offset folded into the bias
 * (aqedge/codegen/dispatch.py). */
#include "aq_mac_impl.h"

void aq_conv_matvec_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                      const int32_t *bias, int8_t *output) {
  aq_conv_matvec_impl(p, input, filter, bias, output, 1);
}
