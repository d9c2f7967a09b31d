/* A 256-entry table (aq_lut_s8) over packed activation tensors (p->in_store, p->out_store). */
#include "aq_ops_impl.h"

void aq_lut_packed_s8(const aq_lut_params *p, const int8_t *table, const int8_t *input,
                      int8_t *output) {
  aq_lut_impl(p, table, input, output, &p->in_store, &p->out_store);
}
