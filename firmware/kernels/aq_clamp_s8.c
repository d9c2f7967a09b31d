/* MINIMUM / MAXIMUM of an int8 tensor and a constant scalar, as a standalone op: the clamps that
 * cannot be folded into the producer's output clamp (the producer has none, or the clamped
 * tensor has other readers). TFLite Micro compares the raw int8 codes (no requantization), so
 * a chain of them is one clamp of the codes to [act_min, act_max]. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_clamp_s8(const aq_clamp_params *p, const int8_t *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    output[i] = (int8_t)aq_clamp(input[i], p->act_min, p->act_max);
  }
}
