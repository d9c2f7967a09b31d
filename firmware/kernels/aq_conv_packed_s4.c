/* CONV_2D over packed activation tensors (aq_storage: p->in_store, p->out_store), packed INT4 weights
 * in TFLite's OHWI layout: the portable loops, nibbles unpacked and packed in registers. */
#include "aq_mac_impl.h"

void aq_conv_packed_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                       const int32_t *bias, int8_t *output) {
  aq_conv_impl(p, input, filter, bias, output, 1, &p->in_store, &p->out_store);
}
