/* LOGISTIC, int8 (TFLite reference_integer_ops::Logistic): the input, rescaled to Q4.27, goes
 * through gemmlowp's fixed-point logistic (exp on negative values, then 1 / (1 + x) by
 * Newton-Raphson), and the Q0.31 result is rounded to 1/256 steps with zero point -128. */
#include "aq_kernels.h"
#include "aq_fixedpoint.h"
#include "aq_math.h"

#define INPUT_INT_BITS 4

/* gemmlowp::logistic for a Q4.27 input; the result in Q0.31. */
static int32_t logistic_q4(int32_t a) {
  if (a == 0) return 1 << 30; /* one half */
  const int32_t abs_a = a > 0 ? a : -a;
  const int32_t positive = aq_one_over_one_plus_x(aq_exp_on_negative_values(-abs_a, INPUT_INT_BITS));
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
