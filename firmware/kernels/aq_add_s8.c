/* ADD, int8, same-shape inputs (the loop: aq_ops_impl.h aq_add_impl). */
#include "aq_ops_impl.h"

void aq_add_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output) {
  aq_add_impl(p, input1, input2, output, 0, 0, 0);
}
