/* ADD, int8, same-shape inputs: Cortex-M4/M7 port of firmware/kernels/aq_add_s8.c, bit-exact
 * with it. Each input's rescaling (offset, << left_shift, requantise) depends on the int8
 * value only, so it is tabulated once per call (2 x 256 int32 on the stack); the per-element
 * work is two lookups, one add and the fused output requantisation. */
#include "aq_cm_impl.h"

/* The fast loop, instantiated per clamp: `sat` 8 ([-128, 127]) and 4 (the 4-bit [-8, 7]) clamp
 * with one SSAT, 0 with two compares. */
AQ_CM_INLINE void aq_cm_add_fast(const aq_add_params *p, const int32_t *l1, const int32_t *l2,
                                 const int8_t *input1, const int8_t *input2, int8_t *output,
                                 int sat) {
  const int32_t m = p->output_multiplier, em1 = ~p->output_shift;
  const int32_t off2p1 = 2 * p->output_offset + 1;
  for (int32_t i = 0; i < p->size; ++i) {
    int32_t y = aq_cm_requant2(l1[input1[i]] + l2[input2[i]], m, em1, off2p1);
    y = sat == 8 ? __ssat(y, 8) : sat == 4 ? __ssat(y, 4) : aq_clamp(y, p->act_min, p->act_max);
    output[i] = (int8_t)y;
  }
}

void aq_add_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output) {
  int32_t t1[256], t2[256];
  int64_t max1 = 0, max2 = 0;
  for (int32_t v = -128; v < 128; ++v) {
    const int32_t a = aq_requantize(aq_shl(v + p->input1_offset, p->left_shift),
                                    p->input1_multiplier, p->input1_shift);
    const int32_t b = aq_requantize(aq_shl(v + p->input2_offset, p->left_shift),
                                    p->input2_multiplier, p->input2_shift);
    t1[v + 128] = a;
    t2[v + 128] = b;
    const int64_t aa = a < 0 ? -(int64_t)a : a, bb = b < 0 ? -(int64_t)b : b;
    if (aa > max1) max1 = aa;
    if (bb > max2) max2 = bb;
  }
  const int32_t *l1 = t1 + 128, *l2 = t2 + 128;
  if (p->output_shift < 0 && p->output_multiplier >= 0 && max1 + max2 < ((int64_t)1 << 30)) {
    /* Fast requantisation (aq_cm_requant2 on 2 * sum): exact for |sum| < 2^30. */
    for (int32_t i = 0; i < 256; ++i) {
      t1[i] *= 2;
      t2[i] *= 2;
    }
    if (p->act_min <= -128 && p->act_max >= 127)
      aq_cm_add_fast(p, l1, l2, input1, input2, output, 8);
    else if (p->act_min == -8 && p->act_max == 7)
      aq_cm_add_fast(p, l1, l2, input1, input2, output, 4);
    else
      aq_cm_add_fast(p, l1, l2, input1, input2, output, 0);
    return;
  }
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t out = aq_requantize(l1[input1[i]] + l2[input2[i]], p->output_multiplier,
                                      p->output_shift) + p->output_offset;
    output[i] = (int8_t)aq_clamp(out, p->act_min, p->act_max);
  }
}
