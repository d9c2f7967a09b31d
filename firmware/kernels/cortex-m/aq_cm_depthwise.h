/* The Cortex-M depthwise ports (depth multiplier 1): weights in flash tables built at build time
 * (aqedge/codegen/dispatch.py), four channels at a time, requantisation fused. Channel counts
 * that are not a multiple of 4 run a last partial group (the tables are zero-padded; its
 * activation loads may read up to 3 bytes past a pixel, whose products are 0).
 * Private to firmware/kernels/cortex-m/. */
#ifndef AQ_CM_DEPTHWISE_H
#define AQ_CM_DEPTHWISE_H

#include "aq_cm_impl.h"

/* ---- "table": any kernel size; per 4-channel group and tap, the int16 weight pairs
 * (w0, w2) (w1, w3), the lane order SXTAB16 gives the activations. Valid taps only. ---- */
typedef struct {
  const int8_t *x00;        /* activations of the first valid tap, channel 0 */
  const uint32_t *w00;      /* table entry of the first valid tap, group 0 */
  int32_t nky, nkx;         /* valid taps */
  int32_t x_step, y_step;   /* bytes between taps along x / y */
  int32_t wy_step;          /* table words between tap rows */
  int32_t wg_step;          /* table words between channel groups */
  int32_t channels;
  uint32_t off2;
  int32_t off2p1, full_range;
  int32_t all_right;        /* every channel shifts right (the common requantisation) */
  int32_t guard;            /* aq_requant.guard: range-check every output */
  const int32_t *bias;
  const aq_requant *q;
} aq_cm_dw_px;

/* One output pixel, every channel (aq_cm_dw_pixel.c): depth multiplier 1 ("table") and 2
 * ("mult2", `channels` = input channels, 4 table words per tap and group). */
void aq_cm_dw_pixel(const aq_cm_dw_px *px, int8_t *out);
void aq_cm_dw2_pixel(const aq_cm_dw_px *px, int8_t *out);

/* ---- "3x3": per 4-channel group, 22 words: the doubled bias with the input offset folded in
 * (2 * (bias + input_offset * sum of the 9 weights)), then 9 taps x 2 words of doubled int16
 * weight pairs. Padding taps read the input zero point (edge pixels are copied into a scratch
 * window), so all 9 taps run unconditionally. ---- */
typedef struct {
  const int32_t *multiplier, *shift;
  int32_t off2p1, full_range, act_min, act_max;
} aq_cm_dw3;

/* `nch` channels of one output pixel from the window at `x` (taps `xs` bytes apart along x,
 * `ys` along y), table `w` from the first channel's group on (aq_cm_dw3x3.c). */
void aq_cm_dw3_pixel(const aq_cm_dw3 *d, const uint32_t *w, const int8_t *x, int32_t xs,
                     int32_t ys, int32_t nch, int8_t *out);

/* Channels per scratch window of an edge pixel (9 x 64 bytes on the stack). */
#define AQ_CM_DW3_BLOCK 64
#define AQ_CM_DW3_GROUP_WORDS 22

/* Write the edge pixel whose window starts at (iy0, ix0) through scratch windows. */
AQ_CM_INLINE void aq_cm_dw3_edge(const aq_depthwise_conv_params *p, const aq_cm_dw3 *d,
                                 const uint32_t *table, const int8_t *input, int iy0, int ix0,
                                 int8_t *out) {
  uint32_t scratch[9 * AQ_CM_DW3_BLOCK / 4];
  const int32_t C = p->in_c, row = (int32_t)p->in_w * C;
  const uint32_t zp4 = ((uint32_t)(-p->q.input_offset) & 0xFFu) * 0x01010101u;
  for (int32_t c0 = 0; c0 < C; c0 += AQ_CM_DW3_BLOCK) {
    const int32_t n = C - c0 < AQ_CM_DW3_BLOCK ? C - c0 : AQ_CM_DW3_BLOCK, words = (n + 3) >> 2;
    for (int t = 0; t < 9; ++t) {
      const int iy = iy0 + p->dil_h * (t / 3), ix = ix0 + t % 3;
      uint32_t *dst = scratch + t * (AQ_CM_DW3_BLOCK / 4);
      if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
        const int8_t *src = input + (int32_t)iy * row + ix * C + c0;
        for (int32_t i = 0; i < words; ++i) dst[i] = aq_cm_ld32(src + 4 * i);
      } else {
        for (int32_t i = 0; i < words; ++i) dst[i] = zp4;
      }
    }
    aq_cm_dw3 block = *d;   /* the block's channels: its multipliers and shifts */
    block.multiplier += c0;
    block.shift += c0;
    aq_cm_dw3_pixel(&block, table + (c0 >> 2) * AQ_CM_DW3_GROUP_WORDS, (const int8_t *)scratch,
                    AQ_CM_DW3_BLOCK, 3 * AQ_CM_DW3_BLOCK, n, out + c0);
  }
}

/* Loop order (the in-place bound of lower.py _window_lead relies on it): output pixels in
 * memory order; each reads only its own window before writing its channels. */
AQ_CM_INLINE void aq_cm_depthwise_3x3(const aq_depthwise_conv_params *p, const int8_t *input,
                                      const uint32_t *table, int8_t *output) {
  const aq_cm_dw3 d = {p->q.multiplier, p->q.shift, 2 * p->q.output_offset + 1,
                       p->q.act_min <= -128 && p->q.act_max >= 127, p->q.act_min, p->q.act_max};
  const int32_t C = p->in_c, row = (int32_t)p->in_w * C, ys = (int32_t)p->dil_h * row;
  int8_t *out = output;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_h;
    const int rows_in = iy0 >= 0 && iy0 + 2 * p->dil_h < p->in_h;
    for (int ox = 0; ox < p->out_w; ++ox, out += C) {
      const int ix0 = ox * p->stride_w - p->pad_w;
      if (rows_in && ix0 >= 0 && ix0 + 2 < p->in_w)
        aq_cm_dw3_pixel(&d, table, input + (int32_t)iy0 * row + ix0 * C, C, ys, C, out);
      else
        aq_cm_dw3_edge(p, &d, table, input, iy0, ix0, out);
    }
  }
}

/* The "table" (depth multiplier 1) and "mult2" (2) variants: valid taps of each output pixel
 * against the flash table, `words` table words per tap and 4 input channels. */
AQ_CM_INLINE void aq_cm_depthwise_valid_taps(const aq_depthwise_conv_params *p,
                                             const int8_t *input, const uint32_t *table,
                                             const int32_t *bias, int8_t *output, int32_t words) {
  const int32_t C = p->in_c, taps = (int32_t)p->k_h * p->k_w;
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  const int32_t x_step = (int32_t)p->dil_w * C, y_step = (int32_t)p->dil_h * p->in_w * C;
  const int32_t off2p1 = 2 * p->q.output_offset + 1;
  const int full_range = p->q.act_min <= -128 && p->q.act_max >= 127;
  int32_t all_right = 1;
  for (int32_t c = 0; c < p->out_c; ++c) all_right &= p->q.shift[c] < 0;
  int8_t *out = output;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_h;
    int ky0 = 0, ky1 = p->k_h;
    while (ky0 < ky1 && iy0 + p->dil_h * ky0 < 0) ++ky0;
    while (ky1 > ky0 && iy0 + p->dil_h * (ky1 - 1) >= p->in_h) --ky1;
    for (int ox = 0; ox < p->out_w; ++ox, out += p->out_c) {
      const int ix0 = ox * p->stride_w - p->pad_w;
      int kx0 = 0, kx1 = p->k_w;
      while (kx0 < kx1 && ix0 + p->dil_w * kx0 < 0) ++kx0;
      while (kx1 > kx0 && ix0 + p->dil_w * (kx1 - 1) >= p->in_w) --kx1;
      const int8_t *x00 = input + ((int32_t)(iy0 + p->dil_h * ky0) * p->in_w + ix0 + p->dil_w * kx0) * C;
      const aq_cm_dw_px px = {x00, table + ((int32_t)ky0 * p->k_w + kx0) * words, ky1 - ky0,
                              kx1 - kx0, x_step, y_step, (int32_t)p->k_w * words, taps * words,
                              C, off2, off2p1, full_range, all_right, p->q.guard, bias, &p->q};
      if (words == 2)
        aq_cm_dw_pixel(&px, out);
      else
        aq_cm_dw2_pixel(&px, out);
    }
  }
}

AQ_CM_INLINE void aq_cm_depthwise_table(const aq_depthwise_conv_params *p, const int8_t *input,
                                        const uint32_t *table, const int32_t *bias,
                                        int8_t *output) {
  aq_cm_depthwise_valid_taps(p, input, table, bias, output, 2);
}

AQ_CM_INLINE void aq_cm_depthwise_mult2(const aq_depthwise_conv_params *p, const int8_t *input,
                                        const uint32_t *table, const int32_t *bias,
                                        int8_t *output) {
  aq_cm_depthwise_valid_taps(p, input, table, bias, output, 4);
}

#endif /* AQ_CM_DEPTHWISE_H */
