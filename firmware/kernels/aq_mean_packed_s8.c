/* MEAN over a packed input and / or into a packed output (p->in_store, p->out_store). */
#include "aq_ops_impl.h"

void aq_mean_packed_s8(const aq_mean_params *p, const int8_t *input, int8_t *output) {
  aq_mean_impl(p, input, output, &p->in_store, &p->out_store);
}
