/* The "3x3" depthwise variant of the Cortex-M kernels (aq_cm_depthwise.h): one output pixel,
 * four channels at a time, all nine taps unrolled. Padding taps read bytes
 * equal to the input zero point (the caller copies an edge pixel's window into a scratch
 * buffer), so x + input_offset is 0 there; the input offset is folded into the per-channel
 * bias (bias + input_offset * sum of the channel's 9 weights), the integer identity
 *   sum_valid w (x + off) + bias == sum_all w x + (bias + off * sum_all w)   (x = zp outside)
 * keeps every accumulator exactly TFLite's. Weights and bias are doubled (see aq_cm_requant2).
 * Kept out of line so the tap loop has the registers to itself. */
#include "aq_cm_depthwise.h"

/* One tap: 4 activations (one word) at `addr`, 2 words of weight pairs from the table. */
#define AQ_CM_DW3_TAP(addr)              \
  "ldr r12, " addr "\n\t"                \
  "sxtb16 r4, r12\n\t"                   \
  "sxtb16 r5, r12, ror #8\n\t"           \
  "ldmia %[w]!, {r6, r7}\n\t"            \
  "smlabb r8, r6, r4, r8\n\t"            \
  "smlatt r10, r6, r4, r10\n\t"          \
  "smlabb r9, r7, r5, r9\n\t"            \
  "smlatt r11, r7, r5, r11\n\t"

#define AQ_CM_DW3_ROW \
  AQ_CM_DW3_TAP("[lr]") AQ_CM_DW3_TAP("[lr, %[c]]") AQ_CM_DW3_TAP("[lr, %[c], lsl #1]")

/* Store the first n (1..4) of 4 outputs. */
AQ_CM_INLINE void aq_cm_store4(int8_t *out, int32_t y0, int32_t y1, int32_t y2, int32_t y3, int32_t n) {
  out[0] = (int8_t)y0;
  if (n > 1) out[1] = (int8_t)y1;
  if (n > 2) out[2] = (int8_t)y2;
  if (n > 3) out[3] = (int8_t)y3;
}

AQ_CM_INLINE void aq_cm_dw3_impl(const aq_cm_dw3 *d, const uint32_t *w, const int8_t *x,
                                 int32_t xs, int32_t ys, int32_t nch, int8_t *out, int full) {
  const int32_t o2 = d->off2p1;
  for (int32_t c = 0; c < nch; c += 4, x += 4) {
    /* Hand-allocated: every register but sp (like aq_cm_matmul.c). Table per group: 4 words of
     * doubled folded bias (the accumulators' start), then 9 taps x 2 words of weights. */
    register const int8_t *xr __asm__("r0") = x;
    register const uint32_t *wp __asm__("r1") = w;
    register int32_t cc __asm__("r2") = xs;
    register int32_t yy __asm__("r3") = ys;
    register int32_t a0 __asm__("r8");
    register int32_t a1 __asm__("r9");
    register int32_t a2 __asm__("r10");
    register int32_t a3 __asm__("r11");
    __asm__ volatile(
        "ldmia %[w]!, {r8, r9, r10, r11}\n\t"
        "mov lr, %[x]\n\t"
        AQ_CM_DW3_ROW
        "add lr, lr, %[ys]\n\t"
        AQ_CM_DW3_ROW
        "add lr, lr, %[ys]\n\t"
        AQ_CM_DW3_ROW
        : [w] "+r"(wp), "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3)
        : [x] "r"(xr), [c] "r"(cc), [ys] "r"(yy)
        : "r4", "r5", "r6", "r7", "r12", "lr", "memory");
    w = wp;
    const int32_t *m = d->multiplier + c, *sh = d->shift + c;
    int32_t y0 = aq_cm_requant2(a0, m[0], ~sh[0], o2);
    int32_t y1 = aq_cm_requant2(a1, m[1], ~sh[1], o2);
    int32_t y2 = aq_cm_requant2(a2, m[2], ~sh[2], o2);
    int32_t y3 = aq_cm_requant2(a3, m[3], ~sh[3], o2);
    if (full) {
      y0 = __ssat(y0, 8); y1 = __ssat(y1, 8); y2 = __ssat(y2, 8); y3 = __ssat(y3, 8);
    } else {
      y0 = aq_clamp(y0, d->act_min, d->act_max); y1 = aq_clamp(y1, d->act_min, d->act_max);
      y2 = aq_clamp(y2, d->act_min, d->act_max); y3 = aq_clamp(y3, d->act_min, d->act_max);
    }
    if (nch - c >= 4) {
      out[c] = (int8_t)y0; out[c + 1] = (int8_t)y1; out[c + 2] = (int8_t)y2; out[c + 3] = (int8_t)y3;
    } else {
      aq_cm_store4(out + c, y0, y1, y2, y3, nch - c);
    }
  }
}

void aq_cm_dw3_pixel(const aq_cm_dw3 *d, const uint32_t *w, const int8_t *x, int32_t xs,
                     int32_t ys, int32_t nch, int8_t *out) {
  if (d->full_range)
    aq_cm_dw3_impl(d, w, x, xs, ys, nch, out, 1);
  else
    aq_cm_dw3_impl(d, w, x, xs, ys, nch, out, 0);
}
