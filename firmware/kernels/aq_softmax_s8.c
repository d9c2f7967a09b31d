/* SOFTMAX, int8 in and out (TFLite reference_ops::Softmax with gemmlowp fixed point):
 * exp of (x - max) in Q5.26, summed in Q12.19, reciprocal by Newton-Raphson, output in 1/256. */
#include "aq_kernels.h"
#include "aq_fixedpoint.h"
#include "aq_math.h"

#define SCALED_DIFF_INT_BITS 5
#define ACCUM_INT_BITS 12

void aq_softmax_s8(const aq_softmax_params *p, const int8_t *input, int8_t *output) {
  for (int32_t r = 0; r < p->rows; ++r) {
    const int8_t *in = input + r * p->depth;
    int8_t *out = output + r * p->depth;
    int32_t max = -128;
    for (int32_t c = 0; c < p->depth; ++c) {
      if (in[c] > max) max = in[c];
    }
    int32_t sum_of_exps = 0; /* Q12.19 */
    for (int32_t c = 0; c < p->depth; ++c) {
      const int32_t diff = in[c] - max;
      if (diff >= p->diff_min) {
        const int32_t scaled = aq_srdhm(aq_shl(diff, p->input_left_shift), p->input_multiplier);
        sum_of_exps += aq_rdbpot(aq_exp_on_negative_values(scaled, SCALED_DIFF_INT_BITS), ACCUM_INT_BITS);
      }
    }
    const int headroom_plus_one = __builtin_clz((uint32_t)sum_of_exps);
    const int num_bits_over_unit = ACCUM_INT_BITS - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
    const int32_t shifted_scale = aq_one_over_one_plus_x(shifted_sum_minus_one);
    for (int32_t c = 0; c < p->depth; ++c) {
      const int32_t diff = in[c] - max;
      if (diff >= p->diff_min) {
        const int32_t scaled = aq_srdhm(aq_shl(diff, p->input_left_shift), p->input_multiplier);
        const int32_t e = aq_exp_on_negative_values(scaled, SCALED_DIFF_INT_BITS);
        const int32_t unsat = aq_rdbpot(aq_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
        out[c] = (int8_t)aq_clamp(unsat - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
  }
}
