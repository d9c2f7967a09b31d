/* SOFTMAX, int8 in and out (TFLite reference_ops::Softmax with gemmlowp fixed point):
 * exp of (x - max) in Q5.26, summed in Q12.19, reciprocal by Newton-Raphson, output in 1/256. */
#include "aq_kernels.h"
#include "aq_math.h"

#define SCALED_DIFF_INT_BITS 5
#define ACCUM_INT_BITS 12

/* Saturating x * 2^exponent for exponent > 0 (gemmlowp SaturatingRoundingMultiplyByPOT). */
static int32_t sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return aq_shl(x, exponent);
}

/* exp(a) for a in [-1/4, 0), a and the result in Q0.31. */
static int32_t exp_on_interval_neg_quarter_to_0(int32_t a) {
  const int32_t constant_term = 1895147668;    /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883;
  const int32_t x = a + (1 << 28);             /* a + 1/8 */
  const int32_t x2 = aq_srdhm(x, x);
  const int32_t x3 = aq_srdhm(x2, x);
  const int32_t x4 = aq_srdhm(x2, x2);
  const int32_t x4_over_4 = aq_rdbpot(x4, 2);
  const int32_t poly = aq_rdbpot(aq_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + aq_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given in Q5.26; the result in Q0.31. */
static int32_t exp_on_negative_values(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242};
  const int frac_bits = 31 - SCALED_DIFF_INT_BITS;
  const int32_t one_quarter = 1 << (frac_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result =
      exp_on_interval_neg_quarter_to_0(sat_shl(a_mod_quarter_minus_one_quarter, SCALED_DIFF_INT_BITS));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  for (int e = -2; e <= 4; ++e) { /* exp(-2^e) barrel shifter */
    if (remainder & (1 << (frac_bits + e))) result = aq_srdhm(result, multipliers[e + 2]);
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out. */
static int32_t one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_over_17 = 1515870810;      /* Q2.29 */
  const int32_t c_neg32_over_17 = -1010580540; /* Q2.29 */
  int32_t x = c48_over_17 + aq_srdhm(half_denominator, c_neg32_over_17);
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = aq_srdhm(half_denominator, x);
    const int32_t one_minus = (1 << 29) - half_denominator_times_x;
    x = x + sat_shl(aq_srdhm(x, one_minus), 2);
  }
  return sat_shl(x, 1);
}

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
        sum_of_exps += aq_rdbpot(exp_on_negative_values(scaled), ACCUM_INT_BITS);
      }
    }
    const int headroom_plus_one = __builtin_clz((uint32_t)sum_of_exps);
    const int num_bits_over_unit = ACCUM_INT_BITS - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
    const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
    for (int32_t c = 0; c < p->depth; ++c) {
      const int32_t diff = in[c] - max;
      if (diff >= p->diff_min) {
        const int32_t scaled = aq_srdhm(aq_shl(diff, p->input_left_shift), p->input_multiplier);
        const int32_t e = exp_on_negative_values(scaled);
        const int32_t unsat = aq_rdbpot(aq_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
        out[c] = (int8_t)aq_clamp(unsat - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
  }
}
