/* MINIMUM / MAXIMUM of an int8 tensor and a constant scalar, as a standalone op: the clamps that
 * cannot be folded into the producer's output clamp (the producer has none, or the clamped
 * tensor has other readers). TFLite Micro compares the raw int8 codes (no requantization), so
 * a chain of them is one clamp of the codes to [act_min, act_max]. */
#include "aq_ops_impl.h"

void aq_clamp_s8(const aq_clamp_params *p, const int8_t *input, int8_t *output) {
  aq_clamp_impl(p, input, output, 0, 0);
}
