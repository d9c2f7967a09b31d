/* Fixed-point helpers with TFLite's exact integer semantics (gemmlowp rounding, the default
 * double-rounding MultiplyByQuantizedMultiplier of TFLite Micro's reference kernels). */
#ifndef AQ_MATH_H
#define AQ_MATH_H

#include <stdint.h>

/* SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating the one overflow case. */
static inline int32_t aq_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C division truncates toward zero */
}

/* RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero. */
static inline int32_t aq_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Left shift with int32 wrap-around (TFLite multiplies by 1 << shift). */
static inline int32_t aq_shl(int32_t x, int shift) {
  return (int32_t)((uint32_t)x << shift);
}

/* MultiplyByQuantizedMultiplier: x * multiplier * 2^shift (shift > 0: left). */
static inline int32_t aq_requantize(int32_t x, int32_t multiplier, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return aq_rdbpot(aq_srdhm(aq_shl(x, left), multiplier), right);
}

static inline int32_t aq_clamp(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

#endif /* AQ_MATH_H */
