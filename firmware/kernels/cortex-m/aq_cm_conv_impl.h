/* CONV_2D and FULLY_CONNECTED (4-pixel column buffer) bodies for Cortex-M4/M7, instantiated by
 * the aq_<op>_<s8|s4>.c files of this folder with a constant `s4` flag. The build sends them only
 * the shapes they cover (aqedge/codegen/dispatch.py): not grouped, INT4 rows of an even number
 * of weights up to AQ_CM_S4_MAX_K. */
#ifndef AQ_CM_CONV_IMPL_H
#define AQ_CM_CONV_IMPL_H

#include <string.h>

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

/* The receptive field of output (oy, ox) as bytes, padding taps and the row's padding to Kp at
 * the input zero point (x + offset = 0): for input depths that are not whole chunks, whose runs
 * would otherwise go element by element into the column buffer. */
AQ_CM_INLINE void aq_cm_conv_gather(const aq_conv_params *p, const int8_t *input, int oy, int ox,
                                    int8_t *rf, int32_t Kp) {
  const int iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
  const int32_t C = p->in_c, row = (int32_t)p->k_w * C;
  const int8_t zp = (int8_t)(-p->q.input_offset);
  int8_t *dst = rf;
  for (int ky = 0; ky < p->k_h; ++ky, dst += row) {
    const int iy = iy0 + p->dil_h * ky;
    if (iy < 0 || iy >= p->in_h) {
      memset(dst, zp, (size_t)row);
      continue;
    }
    const int8_t *src = input + (int32_t)iy * p->in_w * C;
    if (p->dil_w == 1) {   /* the row's valid taps are one run */
      int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = p->in_w - ix0;
      if (kx1 > p->k_w) kx1 = p->k_w;
      if (kx1 < kx0) kx1 = kx0;
      if (kx0) memset(dst, zp, (size_t)(kx0 * C));
      if (kx1 > kx0) memcpy(dst + kx0 * C, src + (ix0 + kx0) * C, (size_t)((kx1 - kx0) * C));
      if (kx1 < p->k_w) memset(dst + kx1 * C, zp, (size_t)((p->k_w - kx1) * C));
      continue;
    }
    for (int kx = 0; kx < p->k_w; ++kx) {
      const int ix = ix0 + p->dil_w * kx;
      if (ix >= 0 && ix < p->in_w)
        memcpy(dst + kx * C, src + ix * C, (size_t)C);
      else
        memset(dst + kx * C, zp, (size_t)C);
    }
  }
  memset(dst, zp, (size_t)(rf + Kp - dst));
}

/* Fill pixel slot `pix` with the input pixel `src` of a 1x1 convolution without padding: its
 * whole chunks of channels straight from the input, the last C % chunk channels and the row's
 * padding (the zero point: x + offset = 0) through a chunk of bytes. */
AQ_CM_INLINE void aq_cm_conv_fill_1x1(const aq_conv_params *p, const int8_t *src, uint32_t *col,
                                      int32_t kc, int pix, uint32_t off2, int s4) {
  const int32_t C = p->in_c, full = C - C % AQ_CM_CHUNK(s4);
  const int32_t k = full ? aq_cm_put_run(col, kc, pix, 0, src, full, off2, s4) : 0;
  if (full == C) return;
  int8_t last[8];
  for (int32_t e = 0; e < AQ_CM_CHUNK(s4); ++e)
    last[e] = full + e < C ? src[full + e] : (int8_t)(-p->q.input_offset);
  aq_cm_put_run(col, kc, pix, k, last, AQ_CM_CHUNK(s4), off2, s4);
}

/* Largest INT4 row the x16 sums keep inside int32 (16 * K * 8 * 255 < 2^31, with margin);
 * dispatch.py COLUMN_S4_MAX_K. */
#define AQ_CM_S4_MAX_K 32000

AQ_CM_INLINE void aq_cm_conv(const aq_conv_params *p, const int8_t *input, const void *filter,
                             const int32_t *bias, int8_t *output, int s4) {
  const int32_t Kp = aq_padded_k((int32_t)p->k_h * p->k_w * p->in_c, s4);
  const int32_t kc = Kp / AQ_CM_CHUNK(s4);
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  uint32_t *col = (uint32_t *)p->scratch; /* aq_cm_col_words(Kp, s4) words */
  /* input depths of whole chunks fill the buffer tap by tap; others through a byte gather
   * (after the buffer in the scratch, dispatch.py column_bytes), but for a 1x1 convolution
   * without padding, whose receptive field is one run: its pixel's channels, then zeros */
  const int one_run = p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  int8_t *rf = (p->in_c % AQ_CM_CHUNK(s4)) && !one_run ? (int8_t *)(col + aq_cm_col_words(Kp, s4)) : 0;
  aq_cm_mm mm;
  aq_cm_mm_init(&mm, Kp, filter, bias, p->out_c, &p->q, p->out_c, s4);
  const int32_t n_px = (int32_t)p->out_h * p->out_w;
  int oy = 0, ox = 0;
  for (int32_t px = 0; px < n_px; px += AQ_CM_PIXELS) {
    const int n = n_px - px < AQ_CM_PIXELS ? (int)(n_px - px) : AQ_CM_PIXELS;
    for (int i = 0; i < AQ_CM_PIXELS; ++i) {
      if (i < n) {
        if (one_run) {
          aq_cm_conv_fill_1x1(p, input + ((int32_t)oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c,
                              col, kc, i, off2, s4);
        } else if (rf) {
          aq_cm_conv_gather(p, input, oy, ox, rf, Kp);
          aq_cm_put_run(col, kc, i, 0, rf, Kp, off2, s4);
        } else {
          aq_cm_conv_fill(p, input, oy, ox, col, kc, i, off2, s4);   /* K == Kp */
        }
        if (++ox == p->out_w) {
          ox = 0;
          ++oy;
        }
      } else {
        aq_cm_put_run(col, kc, i, 0, 0, Kp, off2, s4);
      }
    }
    (s4 ? aq_cm_matmul_4px_s4 : aq_cm_matmul_4px_s8)(&mm, col, output + px * p->out_c, n);
  }
}

AQ_CM_INLINE void aq_cm_fully_connected(const aq_fully_connected_params *p, const int8_t *input,
                                        const void *filter, const int32_t *bias, int8_t *output,
                                        int s4) {
  const int32_t K = p->accum_depth, Kp = aq_padded_k(K, s4);
  const int32_t kc = Kp / AQ_CM_CHUNK(s4);
  const uint32_t off2 = aq_cm_dup16(p->q.input_offset);
  uint32_t *col = (uint32_t *)p->scratch; /* aq_cm_col_words(Kp, s4) words */
  aq_cm_mm mm;
  aq_cm_mm_init(&mm, Kp, filter, bias, p->out_c, &p->q, p->out_c, s4);
  for (int32_t b = 0; b < p->batches; b += AQ_CM_PIXELS) {
    const int n = p->batches - b < AQ_CM_PIXELS ? (int)(p->batches - b) : AQ_CM_PIXELS;
    for (int i = 0; i < AQ_CM_PIXELS; ++i) {
      const int32_t k = aq_cm_put_run(col, kc, i, 0, i < n ? input + (b + i) * K : 0, K, off2, s4);
      aq_cm_put_run(col, kc, i, k, 0, Kp - K, off2, s4);
    }
    (s4 ? aq_cm_matmul_4px_s4 : aq_cm_matmul_4px_s8)(&mm, col, output + b * p->out_c, n);
  }
}

#endif /* AQ_CM_CONV_IMPL_H */
