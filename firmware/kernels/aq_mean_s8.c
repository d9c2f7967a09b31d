/* MEAN, int8, over any subset of the 4 (extended) axes (TFLite QuantizedMeanOrSum; the loop:
 * aq_ops_impl.h). */
#include "aq_ops_impl.h"

void aq_mean_s8(const aq_mean_params *p, const int8_t *input, int8_t *output) {
  aq_mean_impl(p, input, output, 0, 0);
}
