/* One output pixel of the Cortex-M depthwise kernel (aq_cm_conv_impl.h): four channels at a
 * time over the valid taps, weights from the per-call int16 table, requantisation fused. Kept
 * out of line so the tap loop has the registers to itself (the caller has a frame pointer). */
#include "aq_cm_conv_impl.h"

AQ_CM_INLINE void aq_cm_dw_tap(const int8_t *xp, const uint32_t *wp, uint32_t off2, int32_t *a0,
                               int32_t *a1, int32_t *a2, int32_t *a3) {
  const uint32_t x = aq_cm_ld32(xp);
  const uint32_t xl = __sxtab16(off2, x), xh = aq_cm_sxtab16_ror8(off2, x);
  const uint32_t wl = wp[0], wh = wp[1];
  *a0 = aq_cm_smlabb(wl, xl, *a0);
  *a2 = aq_cm_smlatt(wl, xl, *a2);
  *a1 = aq_cm_smlabb(wh, xh, *a1);
  *a3 = aq_cm_smlatt(wh, xh, *a3);
}

void aq_cm_dw_pixel(const aq_cm_dw_px *px, int8_t *out) {
  const aq_requant *q = px->q;
  const uint32_t off2 = px->off2;
  const int32_t xs = px->x_step;
  const uint32_t *wg = px->w00;
  for (int32_t g = 0; g < px->groups; ++g, wg += px->wg_step, out += 4) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *xr = px->x00 + 4 * g;
    const uint32_t *wr = wg;
    for (int32_t ky = 0; ky < px->nky; ++ky, xr += px->y_step, wr += px->wy_step) {
      if (px->nkx == 3) {
        aq_cm_dw_tap(xr, wr, off2, &a0, &a1, &a2, &a3);
        aq_cm_dw_tap(xr + xs, wr + 2, off2, &a0, &a1, &a2, &a3);
        aq_cm_dw_tap(xr + 2 * xs, wr + 4, off2, &a0, &a1, &a2, &a3);
      } else {
        const int8_t *xp = xr;
        const uint32_t *wp = wr;
        for (int32_t kx = 0; kx < px->nkx; ++kx, xp += xs, wp += 2)
          aq_cm_dw_tap(xp, wp, off2, &a0, &a1, &a2, &a3);
      }
    }
    const int32_t c = 4 * g;
    if (px->bias) {
      a0 += px->bias[c]; a1 += px->bias[c + 1]; a2 += px->bias[c + 2]; a3 += px->bias[c + 3];
    }
    const int32_t o2 = px->off2p1;
    int32_t y0, y1, y2, y3;
    if (px->all_right) {
      y0 = aq_cm_requant2(2 * a0, q->multiplier[c], ~q->shift[c], o2);
      y1 = aq_cm_requant2(2 * a1, q->multiplier[c + 1], ~q->shift[c + 1], o2);
      y2 = aq_cm_requant2(2 * a2, q->multiplier[c + 2], ~q->shift[c + 2], o2);
      y3 = aq_cm_requant2(2 * a3, q->multiplier[c + 3], ~q->shift[c + 3], o2);
    } else {
      y0 = aq_cm_requant2_any(2 * a0, q->multiplier[c], q->shift[c], o2);
      y1 = aq_cm_requant2_any(2 * a1, q->multiplier[c + 1], q->shift[c + 1], o2);
      y2 = aq_cm_requant2_any(2 * a2, q->multiplier[c + 2], q->shift[c + 2], o2);
      y3 = aq_cm_requant2_any(2 * a3, q->multiplier[c + 3], q->shift[c + 3], o2);
    }
    if (px->full_range) {
      y0 = __ssat(y0, 8); y1 = __ssat(y1, 8); y2 = __ssat(y2, 8); y3 = __ssat(y3, 8);
    } else {
      y0 = aq_clamp(y0, q->act_min, q->act_max); y1 = aq_clamp(y1, q->act_min, q->act_max);
      y2 = aq_clamp(y2, q->act_min, q->act_max); y3 = aq_clamp(y3, q->act_min, q->act_max);
    }
    out[0] = (int8_t)y0; out[1] = (int8_t)y1; out[2] = (int8_t)y2; out[3] = (int8_t)y3;
  }
}
