/* LOGISTIC, int8 (TFLite reference_integer_ops::Logistic): the input, rescaled to Q4.27, goes
 * through gemmlowp's fixed-point logistic (exp on negative values, then 1 / (1 + x) by
 * Newton-Raphson), and the Q0.31 result is rounded to 1/256 steps with zero point -128. */
#include "aq_kernels.h"
#include "aq_math.h"

#define INPUT_INT_BITS 4
#define FRAC_BITS (31 - INPUT_INT_BITS)

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent. */
static int32_t sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return aq_shl(x, exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_neg_quarter(int32_t a) {
  const int32_t constant_term = 1895147668; /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);          /* a + 1/8 */
  const int32_t x2 = aq_srdhm(x, x);
  const int32_t x3 = aq_srdhm(x2, x);
  const int32_t x4 = aq_srdhm(x2, x2);
  const int32_t x4_over_4 = aq_rdbpot(x4, 2);
  const int32_t poly = aq_rdbpot(aq_srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + aq_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 in Q4.27; the result in Q0.31. */
static int32_t exp_on_negative_values(int32_t a) {
  /* exp(-2^e) in Q0.31 for e = -2 .. 3 (gemmlowp applies e < integer bits) */
  static const int32_t multipliers[6] = {1672461947, 1302514674, 790015084,
                                         290630308,  39332535,   720401};
  const int32_t one_quarter = 1 << (FRAC_BITS - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result = exp_neg_quarter(sat_shl(a_mod_quarter_minus_one_quarter, INPUT_INT_BITS));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  for (int e = -2; e < INPUT_INT_BITS; ++e) {
    if (remainder & (1 << (FRAC_BITS + e))) result = aq_srdhm(result, multipliers[e + 2]);
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 1 / (1 + x) for x in [0, 1], Q0.31 in and out. */
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

/* gemmlowp::logistic for a Q4.27 input; the result in Q0.31. */
static int32_t logistic_q4(int32_t a) {
  if (a == 0) return 1 << 30; /* one half */
  const int32_t abs_a = a > 0 ? a : -a;
  const int32_t positive = one_over_one_plus_x(exp_on_negative_values(-abs_a));
  return a > 0 ? positive : INT32_MAX - positive;
}

void aq_logistic_s8(const aq_logistic_params *p, const int8_t *input, int8_t *output) {
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t x = input[i] - p->input_zero_point;
    if (x <= -p->input_range_radius) {
      output[i] = -128;
    } else if (x >= p->input_range_radius) {
      output[i] = 127;
    } else {
      const int32_t in_q4 = aq_requantize(x, p->input_multiplier, p->input_left_shift);
      const int32_t out = aq_rdbpot(logistic_q4(in_q4), 31 - 8) - 128;
      output[i] = (int8_t)aq_clamp(out, -128, 127);
    }
  }
}
