/* MUL, int8 (TFLite reference_integer_ops::MulElementwise and BroadcastMul4DSlow): the product
 * of the offset inputs, requantized once to the output. */
#include "aq_kernels.h"
#include "aq_math.h"

static inline int8_t mul_one(const aq_mul_params *p, int32_t a, int32_t b) {
  const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
  const int32_t out = aq_requantize(prod, p->output_multiplier, p->output_shift) + p->output_offset;
  return (int8_t)aq_clamp(out, p->act_min, p->act_max);
}

void aq_mul_s8(const aq_mul_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output) {
  if (!p->broadcast) {
    for (int32_t i = 0; i < p->size; ++i) output[i] = mul_one(p, input1[i], input2[i]);
    return;
  }
  const aq_broadcast4 *s = &p->shape;
  int32_t o = 0;
  for (int32_t b = 0; b < s->dims[0]; ++b) {
    for (int32_t y = 0; y < s->dims[1]; ++y) {
      for (int32_t x = 0; x < s->dims[2]; ++x) {
        const int32_t base1 = b * s->stride1[0] + y * s->stride1[1] + x * s->stride1[2];
        const int32_t base2 = b * s->stride2[0] + y * s->stride2[1] + x * s->stride2[2];
        for (int32_t c = 0; c < s->dims[3]; ++c) {
          output[o++] = mul_one(p, input1[base1 + c * s->stride1[3]], input2[base2 + c * s->stride2[3]]);
        }
      }
    }
  }
}
