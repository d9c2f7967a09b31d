/* CONV_2D, int8 activations and packed INT4 weights (TFLite TensorType INT4): the same
 * arithmetic as aq_conv_s8, each weight unpacked in a register as it is used. Filter rows start
 * on whole bytes: an odd row is padded with a zero nibble (aqedge/codegen/dispatch.py). */
#include "aq_mac_impl.h"

void aq_conv_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                const int32_t *bias, int8_t *output) {
  const int32_t K = (int32_t)p->k_h * p->k_w * p->filter_in_c;
  aq_conv_rows_impl(p, input, filter, bias, output, 1, (K + 1) & ~1);
}
