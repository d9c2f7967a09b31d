/* HARD_SWISH, int8 (TFLite reference_ops::HardSwish): x * relu6(x + 3) / 6 in 16-bit fixed
 * point. Every step keeps TFLite's int16 arithmetic: rounding and saturation included. The
 * final saturation to int8 is to [act_min, act_max], which folded clamps narrow. */
#include "aq_kernels.h"

/* gemmlowp SaturatingRoundingDoublingHighMul, int16. */
static int16_t srdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  const int32_t ab = (int32_t)a * (int32_t)b;
  const int16_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  return (int16_t)((ab + nudge) / (1 << 15));
}

/* SaturatingDoublingHighMul (rounds toward zero), int16. */
static int16_t sdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp RoundingDivideByPOT on int16 values. */
static int16_t rdbpot16(int16_t x, int exponent) {
  const int16_t mask = (int16_t)(((int64_t)1 << exponent) - 1);
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

static int16_t sat_left_shift16(int16_t value, int amount) {
  const int64_t r = (int64_t)value * ((int64_t)1 << amount);
  return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

void aq_hard_swish_s8(const aq_hard_swish_params *p, const int8_t *input, int8_t *output) {
  const int16_t out_mult = (int16_t)p->output_multiplier_fixedpoint_int16;
  const int16_t relu_mult = (int16_t)p->reluish_multiplier_fixedpoint_int16;
  const int relu_exp = p->reluish_multiplier_exponent;
  for (int32_t i = 0; i < p->size; ++i) {
    const int16_t x = (int16_t)(input[i] - p->input_zero_point);
    const int16_t x_hires = (int16_t)(x * (1 << 7));
    const int16_t x_out_scale = srdhm16(x_hires, out_mult);
    int16_t reluish = x_hires;
    if (relu_exp > 0) reluish = sat_left_shift16(reluish, relu_exp - 1);
    reluish = srdhm16(reluish, relu_mult);
    if (relu_exp > 0) reluish = sat_left_shift16(reluish, 1);
    if (relu_exp < 0) reluish = rdbpot16(reluish, -relu_exp);
    reluish = (int16_t)((reluish + (1 << 15)) >> 1);
    const int16_t preshift = sdhm16(reluish, x_out_scale);
    int16_t out = rdbpot16(preshift, -p->output_multiplier_exponent);
    out = (int16_t)(out + p->output_zero_point);
    output[i] = (int8_t)(out > p->act_max ? p->act_max : (out < p->act_min ? p->act_min : out));
  }
}
