/* A standalone clamp (aq_clamp_s8) over packed activation tensors (p->in_store, p->out_store). */
#include "aq_ops_impl.h"

void aq_clamp_packed_s8(const aq_clamp_params *p, const int8_t *input, int8_t *output) {
  aq_clamp_impl(p, input, output, &p->in_store, &p->out_store);
}
