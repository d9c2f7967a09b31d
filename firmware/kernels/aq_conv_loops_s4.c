/* CONV_2D, packed INT4 weights, through the portable loops on every target (the "loops" variant:
 * grouped convolutions, INT4 rows that start mid-byte; see aqedge/codegen/dispatch.py). */
#include "aq_mac_impl.h"

void aq_conv_loops_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                      const int32_t *bias, int8_t *output) {
  aq_conv_impl(p, input, filter, bias, output, 1);
}
