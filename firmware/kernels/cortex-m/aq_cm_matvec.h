/* The matrix x vector driver of the Cortex-M ports aq_fully_connected_matvec_* and
 * aq_conv_matvec_* (1x1 convolutions of 1 to 3 pixels):
 * blocks of 4 rows against the input vector, the block's 4 sums from an asm loop, the last K % 4
 * elements and the requantisation in C. Private to firmware/kernels/cortex-m/. */
#ifndef AQ_CM_MATVEC_H
#define AQ_CM_MATVEC_H

#include "aq_cm_impl.h"
#include "aq_mac_impl.h"

/* The 4 sums of one block over `chunks` x 4 elements: `x` raw int8 activations, `w` the
 * block's weights from its first chunk on (one of the asm loops); the 2-row loops fill sums[0]
 * and sums[1] only, for a last block of 1 or 2 rows. */
typedef void aq_cm_rows4_fn(const int8_t *x, const void *w, int32_t chunks, int32_t sums[4]);

/* The asm loops of one weight type and the most chunks one call may sum. */
typedef struct {
  aq_cm_rows4_fn *rows4, *rows2;
  int32_t block_chunks;
  int s4;
} aq_cm_matvec_loops;

/* out[n] for every row n of the N x K matrix against the vector x. */
AQ_CM_INLINE void aq_cm_matvec_vector(const aq_cm_matvec_loops *l, const int8_t *x,
                                      const void *filter, const int32_t *bias,
                                      const aq_requant *q, int32_t K, int32_t N, int8_t *out) {
  const int s4 = l->s4;
  const int32_t kc = K >> 2, chunk_bytes = s4 ? 8 : 16, block_bytes = ((K + 3) >> 2) * chunk_bytes;
  const int32_t off2p1 = 2 * q->output_offset + 1;
  for (int32_t n0 = 0; n0 < N; n0 += 4) {
    const uint8_t *w = (const uint8_t *)filter + (n0 >> 2) * block_bytes;
    uint32_t acc[4] = {0, 0, 0, 0};
    const int32_t rows = N - n0 < 4 ? N - n0 : 4;
    aq_cm_rows4_fn *fn = rows > 2 ? l->rows4 : l->rows2;   /* a last block of 1 or 2 rows */
    for (int32_t c = 0; c < kc; c += l->block_chunks) {
      int32_t sums[4] = {0, 0, 0, 0};
      fn(x + 4 * c, w + c * chunk_bytes, kc - c < l->block_chunks ? kc - c : l->block_chunks, sums);
      for (int r = 0; r < 4; ++r) acc[r] += (uint32_t)(s4 ? sums[r] >> 12 : sums[r]);
    }
    for (int r = 0; r < rows; ++r) {
      const int32_t n = n0 + r;
      uint32_t a = acc[r] + (uint32_t)bias[n];
      for (int32_t k = kc * 4; k < K; ++k)
        a += (uint32_t)(aq_matvec_weight(filter, K, n, k, s4) * x[k]);
      const int32_t y = aq_cm_requant_exact((int32_t)a, q->multiplier[n], q->shift[n], off2p1);
      out[n] = (int8_t)aq_clamp(y, q->act_min, q->act_max);
    }
  }
}

/* FULLY_CONNECTED: every batch. */
AQ_CM_INLINE void aq_cm_matvec(const aq_fully_connected_params *p, const int8_t *input,
                               const void *filter, const int32_t *bias, int8_t *output,
                               const aq_cm_matvec_loops *l) {
  for (int32_t b = 0; b < p->batches; ++b)
    aq_cm_matvec_vector(l, input + b * p->accum_depth, filter, bias, &p->q, p->accum_depth,
                        p->out_c, output + b * p->out_c);
}

/* 1x1 CONV_2D without padding: every output pixel's input pixel. */
AQ_CM_INLINE void aq_cm_conv_matvec(const aq_conv_params *p, const int8_t *input,
                                    const void *filter, const int32_t *bias, int8_t *output,
                                    const aq_cm_matvec_loops *l) {
  for (int oy = 0; oy < p->out_h; ++oy)
    for (int ox = 0; ox < p->out_w; ++ox)
      aq_cm_matvec_vector(l, input + ((int32_t)oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c,
                          filter, bias, &p->q, p->in_c, p->out_c,
                          output + ((int32_t)oy * p->out_w + ox) * p->out_c);
}

#endif /* AQ_CM_MATVEC_H */
