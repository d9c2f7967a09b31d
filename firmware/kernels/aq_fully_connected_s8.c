/* FULLY_CONNECTED ("batched" variant), int8 activations, int8 weights, per-channel
 * requantization (TFLite reference). Rows are padded with zero weights to whole words
 * (aq_padded_k; aqedge/codegen/dispatch.py column_layout), the layout the Cortex-M column kernel
 * reads. */
#include "aq_mac_impl.h"

void aq_fully_connected_s8(const aq_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output) {
  aq_fully_connected_rows_impl(p, input, filter, bias, output, 0, aq_padded_k(p->accum_depth, 0), 0, 0);
}
