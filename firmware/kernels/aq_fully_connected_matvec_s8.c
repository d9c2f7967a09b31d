/* FULLY_CONNECTED, batch 1 to 3: matrix x vector, int8 weights in the matvec layout (4 rows
 * side by side, aqedge/codegen/dispatch.py), input offset folded into the bias at build time. */
#include "aq_mac_impl.h"

void aq_fully_connected_matvec_s8(const aq_fully_connected_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output) {
  aq_fully_connected_matvec_impl(p, input, filter, bias, output, 0);
}
