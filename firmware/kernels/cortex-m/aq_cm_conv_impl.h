/* CONV_2D, FULLY_CONNECTED and DEPTHWISE_CONV_2D bodies for Cortex-M4/M7, instantiated by the
 * aq_<op>_<s8|s4>.c files of this folder with a constant `s4` flag. Shapes the fast paths do not
 * cover (grouped conv, depth multiplier > 1, INT4 rows that start mid-byte) fall back to the
 * portable loop bodies of aq_mac_impl.h. */
#ifndef AQ_CM_CONV_IMPL_H
#define AQ_CM_CONV_IMPL_H

#include "aq_cm_impl.h"
#include "aq_mac_impl.h"

/* Fill pixel slot `pix` of the column buffer with the receptive field of output (oy, ox). */
AQ_CM_INLINE void aq_cm_conv_fill(const aq_conv_params *p, const int8_t *input, int oy, int ox,
                                  uint32_t *col, int32_t kc, int pix, uint32_t off2, int s4) {
  const int iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
  const int32_t C = p->in_c, row = p->k_w * C;
  int32_t k = 0;
  for (int ky = 0; ky < p->k_h; ++ky) {
    const int iy = iy0 + p->dil_h * ky;
    if (iy < 0 || iy >= p->in_h) {
      k = aq_cm_put_run(col, kc, pix, k, 0, row, off2, s4);
      continue;
    }
    const int8_t *src = input + (int32_t)iy * p->in_w * C;
    if (p->dil_w == 1) {
      int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = p->in_w - ix0;
      if (kx1 > p->k_w) kx1 = p->k_w;
      if (kx1 < kx0) kx1 = kx0;
      if (kx0) k = aq_cm_put_run(col, kc, pix, k, 0, kx0 * C, off2, s4);
      if (kx1 > kx0)
        k = aq_cm_put_run(col, kc, pix, k, src + (ix0 + kx0) * C, (kx1 - kx0) * C, off2, s4);
      if (kx1 < p->k_w) k = aq_cm_put_run(col, kc, pix, k, 0, (p->k_w - kx1) * C, off2, s4);
    } else {
      for (int kx = 0; kx < p->k_w; ++kx) {
        const int ix = ix0 + p->dil_w * kx;
        const int inside = ix >= 0 && ix < p->in_w;
        k = aq_cm_put_run(col, kc, pix, k, inside ? src + ix * C : 0, C, off2, s4);
      }
    }
  }
}

/* Largest INT4 row the x16 sums keep inside int32 (16 * K * 8 * 255 < 2^31, with margin). */
#define AQ_CM_S4_MAX_K 32000

AQ_CM_INLINE void aq_cm_conv(const aq_conv_params *p, const int8_t *input, const void *filter,
                             const int32_t *bias, int8_t *output, int s4) {
  const int32_t K = (int32_t)p->k_h * p->k_w * p->in_c;
  if (p->filter_in_c != p->in_c || (s4 && ((K & 1) || K > AQ_CM_S4_MAX_K)) ||
      !aq_cm_fast_ok(&p->q, bias, p->out_c, (int64_t)K * (s4 ? 8 : 128) * 255)) {
    aq_conv_impl(p, input, filter, bias, output, s4);
    return;
  }
  const int32_t kc = K / AQ_CM_CHUNK(s4);
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  uint32_t col[aq_cm_col_words(K, s4)];
  aq_cm_mm mm;
  aq_cm_mm_init(&mm, K, filter, bias, p->out_c, &p->q, p->out_c, s4);
  const int32_t n_px = (int32_t)p->out_h * p->out_w;
  int oy = 0, ox = 0;
  for (int32_t px = 0; px < n_px; px += AQ_CM_PIXELS) {
    const int n = n_px - px < AQ_CM_PIXELS ? (int)(n_px - px) : AQ_CM_PIXELS;
    for (int i = 0; i < AQ_CM_PIXELS; ++i) {
      if (i < n) {
        aq_cm_conv_fill(p, input, oy, ox, col, kc, i, off2, s4);
        if (++ox == p->out_w) {
          ox = 0;
          ++oy;
        }
      } else {
        aq_cm_put_run(col, kc, i, 0, 0, K, off2, s4);
      }
    }
    (s4 ? aq_cm_matmul_4px_s4 : aq_cm_matmul_4px_s8)(&mm, col, output + px * p->out_c, n);
  }
}

AQ_CM_INLINE void aq_cm_fully_connected(const aq_fully_connected_params *p, const int8_t *input,
                                        const void *filter, const int32_t *bias, int8_t *output,
                                        int s4) {
  const int32_t K = p->accum_depth;
  if ((s4 && ((K & 1) || K > AQ_CM_S4_MAX_K)) ||
      !aq_cm_fast_ok(&p->q, bias, p->out_c, (int64_t)K * (s4 ? 8 : 128) * 255)) {
    aq_fully_connected_impl(p, input, filter, bias, output, s4);
    return;
  }
  const int32_t kc = K / AQ_CM_CHUNK(s4);
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  uint32_t col[aq_cm_col_words(K, s4)];
  aq_cm_mm mm;
  aq_cm_mm_init(&mm, K, filter, bias, p->out_c, &p->q, p->out_c, s4);
  for (int32_t b = 0; b < p->batches; b += AQ_CM_PIXELS) {
    const int n = p->batches - b < AQ_CM_PIXELS ? (int)(p->batches - b) : AQ_CM_PIXELS;
    for (int i = 0; i < AQ_CM_PIXELS; ++i)
      aq_cm_put_run(col, kc, i, 0, i < n ? input + (b + i) * K : 0, K, off2, s4);
    (s4 ? aq_cm_matmul_4px_s4 : aq_cm_matmul_4px_s8)(&mm, col, output + b * p->out_c, n);
  }
}

/* One output pixel of the table depthwise: every channel group, valid taps only. */
typedef struct {
  const int8_t *x00;        /* activations of the first valid tap, channel 0 */
  const uint32_t *w00;      /* table entry of the first valid tap, group 0 */
  int32_t nky, nkx;         /* valid taps */
  int32_t x_step, y_step;   /* bytes between taps along x / y */
  int32_t wy_step;          /* table words between tap rows */
  int32_t wg_step;          /* table words between channel groups */
  int32_t groups;
  uint32_t off2;
  int32_t off2p1, full_range;
  int32_t all_right;        /* every channel shifts right (the common requantisation) */
  const int32_t *bias;
  const aq_requant *q;
} aq_cm_dw_px;

void aq_cm_dw_pixel(const aq_cm_dw_px *px, int8_t *out);

/* The 3x3 fast path (aq_cm_dw3x3.c): per 4-channel group, `w` holds 4 words of doubled folded
 * bias then 18 words of doubled int16 weight pairs (tap-major, (w0,w2) (w1,w3)); `rq` holds 8
 * words: multiplier and ~shift of the 4 channels. */
typedef struct {
  const uint32_t *w;
  const int32_t *rq;
  int32_t C, off2p1, full_range, act_min, act_max;
} aq_cm_dw3;

void aq_cm_dw3_pixel(const aq_cm_dw3 *d, const int8_t *x, int32_t ys, int8_t *out);

/* Channels the 3x3 path takes (its stack: 46 bytes per channel). */
#define AQ_CM_DW3_MAX_C 64

/* Copy n bytes (a multiple of 4) word by word; dst is word-aligned. */
AQ_CM_INLINE void aq_cm_copy_words(uint32_t *dst, const int8_t *src, int32_t n) {
  for (int32_t i = 0; i < n / 4; ++i) dst[i] = aq_cm_ld32(src + 4 * i);
}

/* Depthwise 3x3, depth multiplier 1, dilation 1 along x, channels a multiple of 4, fast
 * requantisation with right shifts only. Returns 0 (nothing written) when it does not apply.
 *
 * Loop order (the in-place bound of lower.py _window_lead relies on it): output pixels in
 * memory order; for each, an edge pixel's 3x3 window is first copied into a stack scratch
 * (reads of that pixel's field only), then per 4-channel group the 9 taps are read and the 4
 * outputs written. After writing into pixel p, reads stay within the fields of pixels >= p. */
static inline __attribute__((always_inline)) int aq_cm_depthwise_3x3(
    const aq_depthwise_conv_params *p, const int8_t *input, const void *filter,
    const int32_t *bias, int8_t *output, int s4) {
  const int32_t C = p->in_c, groups = C / 4;
  for (int32_t c = 0; c < C; ++c)
    if (p->q.shift[c] >= 0) return 0;
  uint32_t table[AQ_CM_DW3_MAX_C / 4 * 22];
  int32_t rq[AQ_CM_DW3_MAX_C / 4 * 8];
  uint32_t scratch[9 * AQ_CM_DW3_MAX_C / 4];
  const int32_t off = p->q.input_offset;
  for (int32_t g = 0; g < groups; ++g) {
    int32_t sum[4] = {0, 0, 0, 0};
    for (int32_t t = 0; t < 9; ++t) {
      int32_t w4[4];
      for (int32_t j = 0; j < 4; ++j) {
        w4[j] = aq_cm_weight(filter, t * C + 4 * g + j, s4);
        sum[j] += w4[j];
      }
      table[g * 22 + 4 + 2 * t] = ((uint32_t)(2 * w4[0]) & 0xFFFFu) | ((uint32_t)(2 * w4[2]) << 16);
      table[g * 22 + 5 + 2 * t] = ((uint32_t)(2 * w4[1]) & 0xFFFFu) | ((uint32_t)(2 * w4[3]) << 16);
    }
    for (int32_t j = 0; j < 4; ++j) {
      const int32_t c = 4 * g + j;
      const int64_t b2 = 2 * ((int64_t)(bias ? bias[c] : 0) + (int64_t)off * sum[j]);
      if (b2 >= ((int64_t)1 << 31) || b2 < -((int64_t)1 << 31)) return 0;
      table[g * 22 + j] = (uint32_t)(int32_t)b2;
      rq[g * 8 + j] = p->q.multiplier[c];
      rq[g * 8 + 4 + j] = ~p->q.shift[c];
    }
  }
  const aq_cm_dw3 d = {table, rq, C, 2 * p->q.output_offset + 1,
                       p->q.act_min <= -128 && p->q.act_max >= 127, p->q.act_min, p->q.act_max};
  const uint32_t zp4 = ((uint32_t)(-off) & 0xFFu) * 0x01010101u;
  const int32_t row = (int32_t)p->in_w * C, ys = (int32_t)p->dil_h * row;
  int8_t *out = output;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_h;
    const int rows_in = iy0 >= 0 && iy0 + 2 * p->dil_h < p->in_h;
    for (int ox = 0; ox < p->out_w; ++ox, out += C) {
      const int ix0 = ox * p->stride_w - p->pad_w;
      if (rows_in && ix0 >= 0 && ix0 + 2 < p->in_w) {
        aq_cm_dw3_pixel(&d, input + (int32_t)iy0 * row + ix0 * C, ys, out);
        continue;
      }
      for (int ky = 0; ky < 3; ++ky) {
        const int iy = iy0 + p->dil_h * ky;
        for (int kx = 0; kx < 3; ++kx) {
          const int ix = ix0 + kx;
          uint32_t *dst = scratch + (ky * 3 + kx) * (C / 4);
          if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w)
            aq_cm_copy_words(dst, input + (int32_t)iy * row + ix * C, C);
          else
            for (int32_t i = 0; i < C / 4; ++i) dst[i] = zp4;
        }
      }
      aq_cm_dw3_pixel(&d, (const int8_t *)scratch, 3 * C, out);
    }
  }
  return 1;
}

/* Largest stack table of unpacked depthwise weights (int16, taps x channels). */
#define AQ_CM_DW_TABLE_BYTES 2304

/* Depthwise, depth multiplier 1, channels a multiple of 4: the weights are unpacked once per
 * call into a stack table of int16 pairs, (w0,w2) (w1,w3) per 4 channels and tap, in the lane
 * order SXTAB16 gives the activations; each tap then costs one activation word, two SXTAB16,
 * one LDRD of weights and four 16x16 MACs for four channels. */
static inline __attribute__((always_inline)) void aq_cm_depthwise_table(
    const aq_depthwise_conv_params *p, const int8_t *input, const void *filter,
    const int32_t *bias, int8_t *output, int s4) {
  const int32_t C = p->in_c, taps = (int32_t)p->k_h * p->k_w, groups = C / 4;
  uint32_t table[taps * groups * 2];
  for (int32_t t = 0; t < taps; ++t) {
    for (int32_t g = 0; g < groups; ++g) {
      uint32_t wl, wh;
      const int32_t e = t * C + 4 * g;
      if (s4) {
        const uint32_t h = aq_cm_ld16((const uint8_t *)filter + (e >> 1));
        const uint32_t u = h | (h << 8);
        wh = __sxtb16(u & 0x00F000F0u);        /* (16 w1, 16 w3) */
        wl = __sxtb16((u << 4) & 0x00F000F0u); /* (16 w0, 16 w2) */
        /* back to plain int4 values: arithmetic shift of each halfword by 4 */
        wl = (uint32_t)(((int32_t)(wl << 16) >> 20) & 0xFFFF) | (uint32_t)(((int32_t)wl >> 20) << 16);
        wh = (uint32_t)(((int32_t)(wh << 16) >> 20) & 0xFFFF) | (uint32_t)(((int32_t)wh >> 20) << 16);
      } else {
        const uint32_t w = aq_cm_ld32((const int8_t *)filter + e);
        wl = __sxtb16(w);
        wh = aq_cm_sxtb16_ror8(w);
      }
      table[(g * taps + t) * 2] = wl;
      table[(g * taps + t) * 2 + 1] = wh;
    }
  }
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  const int32_t x_step = (int32_t)p->dil_w * C, y_step = (int32_t)p->dil_h * p->in_w * C;
  const int32_t off2p1 = 2 * p->q.output_offset + 1;
  const int full_range = p->q.act_min <= -128 && p->q.act_max >= 127;
  int32_t all_right = 1;
  for (int32_t c = 0; c < C; ++c) all_right &= p->q.shift[c] < 0;
  int8_t *out = output;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_h;
    int ky0 = 0, ky1 = p->k_h;
    while (ky0 < ky1 && iy0 + p->dil_h * ky0 < 0) ++ky0;
    while (ky1 > ky0 && iy0 + p->dil_h * (ky1 - 1) >= p->in_h) --ky1;
    for (int ox = 0; ox < p->out_w; ++ox, out += C) {
      const int ix0 = ox * p->stride_w - p->pad_w;
      int kx0 = 0, kx1 = p->k_w;
      while (kx0 < kx1 && ix0 + p->dil_w * kx0 < 0) ++kx0;
      while (kx1 > kx0 && ix0 + p->dil_w * (kx1 - 1) >= p->in_w) --kx1;
      const int nkx = kx1 - kx0;
      const int8_t *x00 = input + ((int32_t)(iy0 + p->dil_h * ky0) * p->in_w + ix0 + p->dil_w * kx0) * C;
      const aq_cm_dw_px px = {x00, table + ((int32_t)ky0 * p->k_w + kx0) * 2, ky1 - ky0, nkx,
                              x_step, y_step, (int32_t)p->k_w * 2, taps * 2, groups, off2,
                              off2p1, full_range, all_right, bias, &p->q};
      aq_cm_dw_pixel(&px, out);
    }
  }
}

/* Depthwise, depth multiplier 1: per output pixel, four channels at a time; each tap loads
 * four activations and four weights as one word each and runs four 16x16 MACs. */
AQ_CM_INLINE void aq_cm_depthwise(const aq_depthwise_conv_params *p, const int8_t *input,
                                  const void *filter, const int32_t *bias, int8_t *output,
                                  int s4) {
  const int32_t C = p->in_c;
  if (p->depth_multiplier != 1 || (s4 && (C & 1))) {
    aq_depthwise_conv_impl(p, input, filter, bias, output, s4);
    return;
  }
  const int fast = aq_cm_fast_ok(&p->q, bias, C, (int64_t)p->k_h * p->k_w * (s4 ? 8 : 128) * 255);
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  const int32_t x_step = (int32_t)p->dil_w * C, y_step = (int32_t)p->dil_h * p->in_w * C;
  const int32_t taps = (int32_t)p->k_h * p->k_w;
  if (fast && (C & 3) == 0 && p->k_h == 3 && p->k_w == 3 && p->dil_w == 1 &&
      C <= AQ_CM_DW3_MAX_C && aq_cm_depthwise_3x3(p, input, filter, bias, output, s4))
    return;
  if (fast && (C & 3) == 0 && taps * C * 2 <= AQ_CM_DW_TABLE_BYTES) {
    aq_cm_depthwise_table(p, input, filter, bias, output, s4);
    return;
  }
  const uint8_t *wbytes = (const uint8_t *)filter;
  int8_t *out = output;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_h;
    int ky0 = 0, ky1 = p->k_h;
    while (ky0 < ky1 && iy0 + p->dil_h * ky0 < 0) ++ky0;
    while (ky1 > ky0 && iy0 + p->dil_h * (ky1 - 1) >= p->in_h) --ky1;
    for (int ox = 0; ox < p->out_w; ++ox, out += C) {
      const int ix0 = ox * p->stride_w - p->pad_w;
      int kx0 = 0, kx1 = p->k_w;
      while (kx0 < kx1 && ix0 + p->dil_w * kx0 < 0) ++kx0;
      while (kx1 > kx0 && ix0 + p->dil_w * (kx1 - 1) >= p->in_w) --kx1;
      const int8_t *x00 = input + ((int32_t)(iy0 + p->dil_h * ky0) * p->in_w + ix0 + p->dil_w * kx0) * C;
      const int32_t w00 = ((int32_t)ky0 * p->k_w + kx0) * C;
      int32_t c = 0;
      for (; c + 4 <= C; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *xr = x00 + c;
        int32_t wr = w00 + c;
        for (int ky = ky0; ky < ky1; ++ky, xr += y_step, wr += (int32_t)p->k_w * C) {
          const int8_t *xp = xr;
          int32_t wi = wr;
          for (int kx = kx0; kx < kx1; ++kx, xp += x_step, wi += C) {
            uint32_t wl, wh;
            if (s4) {
              const uint32_t h = aq_cm_ld16(wbytes + (wi >> 1));
              const uint32_t t = h | (h << 8);
              wh = __sxtb16(t & 0x00F000F0u);        /* (16 w1, 16 w3) */
              wl = __sxtb16((t << 4) & 0x00F000F0u); /* (16 w0, 16 w2) */
            } else {
              const uint32_t w = aq_cm_ld32(wbytes + wi);
              wl = __sxtb16(w);
              wh = aq_cm_sxtb16_ror8(w);
            }
            const uint32_t x = aq_cm_ld32(xp);
            const uint32_t xl = __sxtab16(off2, x), xh = aq_cm_sxtab16_ror8(off2, x);
            a0 = aq_cm_smlabb(wl, xl, a0);
            a2 = aq_cm_smlatt(wl, xl, a2);
            a1 = aq_cm_smlabb(wh, xh, a1);
            a3 = aq_cm_smlatt(wh, xh, a3);
          }
        }
        if (s4) {
          a0 >>= 4; a1 >>= 4; a2 >>= 4; a3 >>= 4;
        }
        if (bias) {
          a0 += bias[c]; a1 += bias[c + 1]; a2 += bias[c + 2]; a3 += bias[c + 3];
        }
        out[c] = aq_cm_out(a0, &p->q, c, fast);
        out[c + 1] = aq_cm_out(a1, &p->q, c + 1, fast);
        out[c + 2] = aq_cm_out(a2, &p->q, c + 2, fast);
        out[c + 3] = aq_cm_out(a3, &p->q, c + 3, fast);
      }
      for (; c < C; ++c) {
        int32_t acc = 0;
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int32_t x = x00[(ky - ky0) * y_step + (kx - kx0) * x_step + c];
            acc += aq_cm_weight(filter, (ky * p->k_w + kx) * C + c, s4) * (x + p->q.input_offset);
          }
        }
        if (bias) acc += bias[c];
        out[c] = aq_cm_out(acc, &p->q, c, fast);
      }
    }
  }
}

#endif /* AQ_CM_CONV_IMPL_H */
