/* ADD, same-shape inputs, either input and the output stored packed (p->in1_store,
 * p->in2_store, p->out_store). */
#include "aq_ops_impl.h"

void aq_add_packed_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
                      int8_t *output) {
  aq_add_impl(p, input1, input2, output, &p->in1_store, &p->in2_store, &p->out_store);
}
