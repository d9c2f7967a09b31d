/* AVERAGE_POOL_2D over packed activation tensors (p->in_store, p->out_store). */
#include "aq_ops_impl.h"

void aq_avg_pool_packed_s8(const aq_pool_params *p, const int8_t *input, int8_t *output) {
  aq_pool_impl(p, input, output, 1, &p->in_store, &p->out_store);
}
