/* AVERAGE_POOL_2D, int8 (TFLite reference_integer_ops::AveragePool; the loop: aq_ops_impl.h). */
#include "aq_ops_impl.h"

void aq_avg_pool_s8(const aq_pool_params *p, const int8_t *input, int8_t *output) {
  aq_pool_impl(p, input, output, 1, 0, 0);
}
