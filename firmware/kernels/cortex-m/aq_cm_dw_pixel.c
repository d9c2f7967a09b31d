/* One output pixel of the Cortex-M "table" depthwise variant (aq_cm_depthwise.h): four channels
 * at a time over the valid taps, weights from the flash table, requantisation fused. Kept
 * out of line so the tap loop has the registers to itself (the caller has a frame pointer). */
#include "aq_cm_depthwise.h"

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

/* The 4 outputs of channels c..c+3 from their sums: bias, the short requantisation (the build
 * proved it exact: aq_requant.guard 0), the clamp. */
AQ_CM_INLINE void aq_cm_dw_out4(const aq_cm_dw_px *px, int32_t a0, int32_t a1, int32_t a2,
                                int32_t a3, int32_t c, int8_t *o) {
  const aq_requant *q = px->q;
  const int32_t *m = q->multiplier + c, *sh = q->shift + c, o2 = px->off2p1;
  if (px->guard) {   /* plain sums + the bias (wrapped as TFLite's), checked per output */
    const int32_t *b = px->bias ? px->bias + c : 0;
    o[0] = (int8_t)aq_clamp(aq_cm_requant_exact((int32_t)((uint32_t)a0 + (b ? (uint32_t)b[0] : 0u)), m[0], sh[0], o2), q->act_min, q->act_max);
    o[1] = (int8_t)aq_clamp(aq_cm_requant_exact((int32_t)((uint32_t)a1 + (b ? (uint32_t)b[1] : 0u)), m[1], sh[1], o2), q->act_min, q->act_max);
    o[2] = (int8_t)aq_clamp(aq_cm_requant_exact((int32_t)((uint32_t)a2 + (b ? (uint32_t)b[2] : 0u)), m[2], sh[2], o2), q->act_min, q->act_max);
    o[3] = (int8_t)aq_clamp(aq_cm_requant_exact((int32_t)((uint32_t)a3 + (b ? (uint32_t)b[3] : 0u)), m[3], sh[3], o2), q->act_min, q->act_max);
    return;
  }
  if (px->bias) {
    a0 += px->bias[c]; a1 += px->bias[c + 1]; a2 += px->bias[c + 2]; a3 += px->bias[c + 3];
  }
  int32_t y0, y1, y2, y3;
  if (px->all_right) {
    y0 = aq_cm_requant2(2 * a0, m[0], ~sh[0], o2); y1 = aq_cm_requant2(2 * a1, m[1], ~sh[1], o2);
    y2 = aq_cm_requant2(2 * a2, m[2], ~sh[2], o2); y3 = aq_cm_requant2(2 * a3, m[3], ~sh[3], o2);
  } else {
    y0 = aq_cm_requant2_any(2 * a0, m[0], sh[0], o2); y1 = aq_cm_requant2_any(2 * a1, m[1], sh[1], o2);
    y2 = aq_cm_requant2_any(2 * a2, m[2], sh[2], o2); y3 = aq_cm_requant2_any(2 * a3, m[3], sh[3], o2);
  }
  if (px->full_range) {
    y0 = __ssat(y0, 8); y1 = __ssat(y1, 8); y2 = __ssat(y2, 8); y3 = __ssat(y3, 8);
  } else {
    y0 = aq_clamp(y0, q->act_min, q->act_max); y1 = aq_clamp(y1, q->act_min, q->act_max);
    y2 = aq_clamp(y2, q->act_min, q->act_max); y3 = aq_clamp(y3, q->act_min, q->act_max);
  }
  o[0] = (int8_t)y0; o[1] = (int8_t)y1; o[2] = (int8_t)y2; o[3] = (int8_t)y3;
}

void aq_cm_dw_pixel(const aq_cm_dw_px *px, int8_t *out) {
  const uint32_t off2 = px->off2;
  const int32_t xs = px->x_step;
  const uint32_t *wg = px->w00;
  int8_t tmp[4];
  for (int32_t c0 = 0; c0 < px->channels; c0 += 4, wg += px->wg_step) {
    /* a last partial group is computed in full and its valid outputs copied */
    int8_t *o = px->channels - c0 >= 4 ? out + c0 : tmp;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *xr = px->x00 + c0;
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
    aq_cm_dw_out4(px, a0, a1, a2, a3, c0, o);
    if (o == tmp)
      for (int32_t i = 0; i < px->channels - c0; ++i) out[c0 + i] = tmp[i];
  }
}


/* The "mult2" variant (depth multiplier 2): per 4 input channels (one activation word) and
 * tap, 8 outputs; outputs 2c and 2c + 1 read input channel c. `px->channels` counts input
 * channels, the table holds 4 words per tap and group. */
void aq_cm_dw2_pixel(const aq_cm_dw_px *px, int8_t *out) {
  const uint32_t off2 = px->off2;
  const int32_t xs = px->x_step;
  const uint32_t *wg = px->w00;
  int8_t tmp[8];
  for (int32_t c0 = 0; c0 < px->channels; c0 += 4, wg += px->wg_step) {
    const int32_t n = px->channels - c0 >= 4 ? 8 : 2 * (px->channels - c0);
    int8_t *o = n == 8 ? out + 2 * c0 : tmp;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    const int8_t *xr = px->x00 + c0;
    const uint32_t *wr = wg;
    for (int32_t ky = 0; ky < px->nky; ++ky, xr += px->y_step, wr += px->wy_step) {
      const int8_t *xp = xr;
      const uint32_t *wp = wr;
      for (int32_t kx = 0; kx < px->nkx; ++kx, xp += xs, wp += 4) {
        const uint32_t x = aq_cm_ld32(xp);
        const uint32_t xl = __sxtab16(off2, x), xh = aq_cm_sxtab16_ror8(off2, x);
        const uint32_t w0 = wp[0], w1 = wp[1], w2 = wp[2], w3 = wp[3];
        a0 = aq_cm_smlabb(w0, xl, a0); a1 = aq_cm_smlatb(w0, xl, a1);   /* input c0 */
        a2 = aq_cm_smlabb(w1, xh, a2); a3 = aq_cm_smlatb(w1, xh, a3);   /* c0 + 1 */
        a4 = aq_cm_smlabt(w2, xl, a4); a5 = aq_cm_smlatt(w2, xl, a5);   /* c0 + 2 */
        a6 = aq_cm_smlabt(w3, xh, a6); a7 = aq_cm_smlatt(w3, xh, a7);   /* c0 + 3 */
      }
    }
    aq_cm_dw_out4(px, a0, a1, a2, a3, 2 * c0, o);
    aq_cm_dw_out4(px, a4, a5, a6, a7, 2 * c0 + 4, o + 4);
    if (o == tmp)
      for (int32_t i = 0; i < n; ++i) out[2 * c0 + i] = tmp[i];
  }
}
