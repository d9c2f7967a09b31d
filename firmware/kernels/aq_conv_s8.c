/* CONV_2D ("im2col" variant), int8 activations, int8 weights, TFLite's arithmetic.
 * Filter rows are padded with zero weights to whole words (aq_padded_k; aqedge/codegen/dispatch.py
 * column_layout), the layout the Cortex-M column kernel reads. */
#include "aq_mac_impl.h"

void aq_conv_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
                const int32_t *bias, int8_t *output) {
  const int32_t K = (int32_t)p->k_h * p->k_w * p->filter_in_c;
  aq_conv_rows_impl(p, input, filter, bias, output, 0, aq_padded_k(K, 0));
}
