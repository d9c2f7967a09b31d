/* gemmlowp fixed-point transcendentals as TFLite's reference SOFTMAX and LOGISTIC use them
 * (QI.F: I integer bits, F = 31 - I fractional bits, in an int32). Private to the kernels. */
#ifndef AQ_FIXEDPOINT_H
#define AQ_FIXEDPOINT_H

#include <stdint.h>

#include "aq_math.h"

/* SaturatingRoundingMultiplyByPOT for a positive exponent: x * 2^exponent, saturated. */
static inline int32_t aq_sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return aq_shl(x, exponent);
}

/* exp(a) for a in [-1/4, 0): a and the result in Q0.31 (Taylor series around -1/8). */
static inline int32_t aq_exp_on_interval_neg_quarter_to_0(int32_t a) {
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

/* exp(a) for a <= 0 given in Q<int_bits>.<31-int_bits> (int_bits <= 5); the result in Q0.31. */
static inline int32_t aq_exp_on_negative_values(int32_t a, int int_bits) {
  /* exp(-2^e) in Q0.31 for e = -2 .. 4 (the barrel shifter applies e < int_bits) */
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242};
  const int frac_bits = 31 - int_bits;
  const int32_t one_quarter = 1 << (frac_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result = aq_exp_on_interval_neg_quarter_to_0(
      aq_sat_shl(a_mod_quarter_minus_one_quarter, int_bits));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  for (int e = -2; e < int_bits; ++e) {
    if (remainder & (1 << (frac_bits + e))) result = aq_srdhm(result, multipliers[e + 2]);
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 1 / (1 + x) for x in [0, 1]: Q0.31 in and out (Newton-Raphson, three steps). */
static inline int32_t aq_one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_over_17 = 1515870810;      /* Q2.29 */
  const int32_t c_neg32_over_17 = -1010580540; /* Q2.29 */
  int32_t x = c48_over_17 + aq_srdhm(half_denominator, c_neg32_over_17);
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = aq_srdhm(half_denominator, x);
    const int32_t one_minus = (1 << 29) - half_denominator_times_x;
    x = x + aq_sat_shl(aq_srdhm(x, one_minus), 2);
  }
  return aq_sat_shl(x, 1);
}

#endif /* AQ_FIXEDPOINT_H */
