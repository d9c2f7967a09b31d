/* ADD and SUB, int8, inputs broadcast onto the output shape (TFLite BroadcastAdd4DSlow /
 * BroadcastQuantSubSlow): each element is computed exactly as in aq_add_s8, the scaled second
 * input negated for SUB (q->input2_sign = -1); only the indexing differs. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_add_broadcast_s8(const aq_add_broadcast_params *p, const int8_t *input1,
                         const int8_t *input2, int8_t *output) {
  const aq_add_params *q = &p->q;
  const aq_broadcast4 *s = &p->shape;
  int32_t o = 0;
  for (int32_t b = 0; b < s->dims[0]; ++b) {
    for (int32_t y = 0; y < s->dims[1]; ++y) {
      for (int32_t x = 0; x < s->dims[2]; ++x) {
        const int32_t base1 = b * s->stride1[0] + y * s->stride1[1] + x * s->stride1[2];
        const int32_t base2 = b * s->stride2[0] + y * s->stride2[1] + x * s->stride2[2];
        for (int32_t c = 0; c < s->dims[3]; ++c) {
          const int32_t a = aq_shl(input1[base1 + c * s->stride1[3]] + q->input1_offset, q->left_shift);
          const int32_t d = aq_shl(input2[base2 + c * s->stride2[3]] + q->input2_offset, q->left_shift);
          const int32_t sum = aq_requantize(a, q->input1_multiplier, q->input1_shift) +
                              q->input2_sign * aq_requantize(d, q->input2_multiplier, q->input2_shift);
          const int32_t out =
              aq_requantize(sum, q->output_multiplier, q->output_shift) + q->output_offset;
          output[o++] = (int8_t)aq_clamp(out, q->act_min, q->act_max);
        }
      }
    }
  }
}
