/* CONV_2D over packed activation tensors (aq_storage: p->in_store, p->out_store), int8 weights
 * in TFLite's OHWI layout: the portable loops, nibbles unpacked and packed in registers. */
#include "aq_mac_impl.h"

void aq_conv_packed_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, int8_t *output) {
  aq_conv_impl(p, input, filter, bias, output, 0, &p->in_store, &p->out_store);
}
