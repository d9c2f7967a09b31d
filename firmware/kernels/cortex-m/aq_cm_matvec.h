/* The matrix x vector driver of the Cortex-M ports aq_fully_connected_matvec_* and
 * aq_conv_matvec_* (1x1 convolutions of 1 to 3 pixels):
 * blocks of 4 rows against the input vector, each block's sums from an asm loop for its row
 * count, the last K % 4 elements and the requantisation in C. Private to firmware/kernels/cortex-m/. */
#ifndef AQ_CM_MATVEC_H
#define AQ_CM_MATVEC_H

#include "aq_cm_impl.h"
#include "aq_mac_impl.h"

/* One of the asm loops (aq_cm_matvec_s8.c, aq_cm_matvec_s4.c): out[r] = in[r] + row r of a
 * block (its weights from `w` on) . x over `chunks` x 4 elements, for the loop's 1 to 4 rows
 * (`in` and `out` may be the same array). */
typedef void aq_cm_rows_fn(const int8_t *x, const void *w, int32_t chunks, const int32_t *in,
                           int32_t *out);

/* INT4 sums run in pieces of at most this many chunks (aq_cm_matvec_s4.c). */
#define AQ_CM_MV_S4_CHUNKS 124

/* The asm loops of one weight type: rows[r - 1] for a block of r rows (the last block of a
 * matrix of N % 4 rows) against int8 activations, rows4w for a block of 4 against activations
 * widened by aq_cm_matvec_widen. */
typedef struct {
  aq_cm_rows_fn *rows[4];
  aq_cm_rows_fn *rows4w;
  int s4;
} aq_cm_matvec_loops;

/* The kc whole chunks of x as int16 pairs (x0, x2), (x1, x3), 2 words a chunk, into x16:
 * once per vector, so the blocks of 4 rows load them instead of unpacking x each time (the
 * build gives the layer that scratch, dispatch.py matvec_widen_bytes, when it has enough
 * blocks to pay for it). */
static void __attribute__((noinline)) aq_cm_matvec_widen(const int8_t *x, int32_t kc,
                                                         uint32_t *x16) {
  for (const int8_t *end = x + 4 * kc; x < end; x += 4, x16 += 2) {
    const uint32_t a = aq_cm_ld32(x);
    x16[0] = __sxtb16(a);
    x16[1] = aq_cm_sxtb16_ror8(a);
  }
}

/* The sums of the last K % 4 elements (zero weights in the layout, no activations behind
 * them), added in C; rare, so out of line. */
static void __attribute__((noinline)) aq_cm_matvec_ktail(const void *filter, const int8_t *x,
                                                         int32_t K, int32_t N, int32_t n0,
                                                         int32_t *sums, int s4) {
  const int32_t rows = N - n0 < 4 ? N - n0 : 4;
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t k = K & ~3; k < K; ++k)
      sums[r] = (int32_t)((uint32_t)sums[r] +
                          (uint32_t)(aq_matvec_weight(filter, K, N, n0 + r, k, s4) * x[k]));
}

/* Requantise one row's sum (bias included): the short form (guard 0: every sum is in its
 * range; a right shift the usual case) or checked per output. */
AQ_CM_INLINE int32_t aq_cm_mv_requant(int32_t acc, int32_t m, int32_t s, int32_t off2p1,
                                      int guard) {
  if (guard) return aq_cm_requant_exact(acc, m, s, off2p1);
  if (__builtin_expect(s < 0, 1)) return aq_cm_requant2(2 * acc, m, ~s, off2p1);
  return aq_cm_smmulr((2 * acc) << s, m) + (off2p1 >> 1);
}

/* Per 16-bit lane, the larger / smaller of a and b (SSUB16 sets the GE flags, SEL picks). */
AQ_CM_INLINE uint32_t aq_cm_max16(uint32_t a, uint32_t b) {
  uint32_t t, r;
  __asm__("ssub16 %0, %2, %3\n\tsel %1, %2, %3" : "=&r"(t), "=r"(r) : "r"(a), "r"(b));
  return r;
}

AQ_CM_INLINE uint32_t aq_cm_min16(uint32_t a, uint32_t b) {
  uint32_t t, r;
  __asm__("ssub16 %0, %2, %3\n\tsel %1, %3, %2" : "=&r"(t), "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* The 4 outputs of a full block: each requantised and saturated to 16 bits, then clamped two
 * lanes at a time against lo2 / hi2 (the range in both halfwords) and stored as one word. */
AQ_CM_INLINE void aq_cm_mv_out4(const int32_t *sums, const int32_t *m, const int32_t *s,
                                int32_t off2p1, uint32_t lo2, uint32_t hi2, int8_t *out,
                                int guard) {
  const int32_t y0 = __ssat(aq_cm_mv_requant(sums[0], m[0], s[0], off2p1, guard), 16);
  const int32_t y1 = __ssat(aq_cm_mv_requant(sums[1], m[1], s[1], off2p1, guard), 16);
  const int32_t y2 = __ssat(aq_cm_mv_requant(sums[2], m[2], s[2], off2p1, guard), 16);
  const int32_t y3 = __ssat(aq_cm_mv_requant(sums[3], m[3], s[3], off2p1, guard), 16);
  const uint32_t p02 = aq_cm_min16(aq_cm_max16(aq_cm_pkhbt16((uint32_t)y0, (uint32_t)y2), lo2), hi2);
  const uint32_t p13 = aq_cm_min16(aq_cm_max16(aq_cm_pkhbt16((uint32_t)y1, (uint32_t)y3), lo2), hi2);
  const uint32_t word = (p02 & 0x00FF00FFu) | ((p13 & 0x00FF00FFu) << 8);
  memcpy(out, &word, 4);
}

/* The rows of the N x K matrix against the vector x: blocks of 4 rows (against x widened into
 * x16 when the build gave the layer that scratch), then a block of N % 4 rows with its own
 * loop; each block's sums (bias included) requantised (aq_cm_mv_requant) and clamped. */
AQ_CM_INLINE void aq_cm_matvec_rows(const aq_cm_matvec_loops *l, const int8_t *x,
                                    const void *filter, const int32_t *bias,
                                    const aq_requant *q, int32_t K, int32_t N, int8_t *out,
                                    int32_t *x16, int guard) {
  const int s4 = l->s4;
  const int32_t kc = K >> 2, block_bytes = ((K + 3) >> 2) * (s4 ? 8 : 16);
  const int32_t off2p1 = 2 * q->output_offset + 1, lo = q->act_min, hi = q->act_max;
  const uint32_t lo2 = aq_cm_dup16(lo), hi2 = aq_cm_dup16(hi);
  const int32_t *m = q->multiplier, *s = q->shift;
  const uint8_t *w = (const uint8_t *)filter;
  aq_cm_rows_fn *four = l->rows[3];
  const int8_t *xb = x;   /* the activations the blocks of 4 rows read */
  if (x16) {
    aq_cm_matvec_widen(x, kc, (uint32_t *)x16);
    four = l->rows4w;
    xb = (const int8_t *)x16;
  }
  int32_t sums[4], n0 = 0;
  for (; n0 + 4 <= N; n0 += 4, w += block_bytes) {
    four(xb, w, kc, bias + n0, sums);
    if (K & 3) aq_cm_matvec_ktail(filter, x, K, N, n0, sums, s4);
    aq_cm_mv_out4(sums, m + n0, s + n0, off2p1, lo2, hi2, out + n0, guard);
  }
  if (n0 == N) return;
  l->rows[N - n0 - 1](x, w, kc, bias + n0, sums);
  if (K & 3) aq_cm_matvec_ktail(filter, x, K, N, n0, sums, s4);
  for (int32_t n = n0; n < N; ++n)
    out[n] = (int8_t)aq_clamp(aq_cm_mv_requant(sums[n - n0], m[n], s[n], off2p1, guard), lo, hi);
}

/* FULLY_CONNECTED: every batch (one copy of the loops per requantisation form). */
AQ_CM_INLINE void aq_cm_matvec(const aq_fully_connected_params *p, const int8_t *input,
                               const void *filter, const int32_t *bias, int8_t *output,
                               const aq_cm_matvec_loops *l) {
  const int32_t K = p->accum_depth, N = p->out_c;
  if (p->q.guard) {
    for (int32_t b = 0; b < p->batches; ++b)
      aq_cm_matvec_rows(l, input + b * K, filter, bias, &p->q, K, N, output + b * N,
                        p->scratch, 1);
  } else {
    for (int32_t b = 0; b < p->batches; ++b)
      aq_cm_matvec_rows(l, input + b * K, filter, bias, &p->q, K, N, output + b * N,
                        p->scratch, 0);
  }
}

/* 1x1 CONV_2D without padding: every output pixel's input pixel. */
AQ_CM_INLINE void aq_cm_conv_matvec_pixels(const aq_conv_params *p, const int8_t *input,
                                           const void *filter, const int32_t *bias,
                                           int8_t *output, const aq_cm_matvec_loops *l,
                                           int guard) {
  for (int oy = 0; oy < p->out_h; ++oy)
    for (int ox = 0; ox < p->out_w; ++ox)
      aq_cm_matvec_rows(l, input + ((int32_t)oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c,
                        filter, bias, &p->q, p->in_c, p->out_c,
                        output + ((int32_t)oy * p->out_w + ox) * p->out_c, p->scratch, guard);
}

AQ_CM_INLINE void aq_cm_conv_matvec(const aq_conv_params *p, const int8_t *input,
                                    const void *filter, const int32_t *bias, int8_t *output,
                                    const aq_cm_matvec_loops *l) {
  if (p->q.guard)
    aq_cm_conv_matvec_pixels(p, input, filter, bias, output, l, 1);
  else
    aq_cm_conv_matvec_pixels(p, input, filter, bias, output, l, 0);
}

#endif /* AQ_CM_MATVEC_H */
