/* The matrix x vector driver of the Cortex-M FULLY_CONNECTED ports (aq_fully_connected_matvec_*):
 * blocks of 4 rows against the input vector, the block's 4 sums from an asm loop, the last K % 4
 * elements and the requantisation in C. Private to firmware/kernels/cortex-m/. */
#ifndef AQ_CM_MATVEC_H
#define AQ_CM_MATVEC_H

#include "aq_cm_impl.h"
#include "aq_mac_impl.h"

/* The 4 sums of one block over `chunks` x 4 elements: `x` raw int8 activations, `w` the
 * block's weights from its first chunk on (one of the asm loops). */
typedef void aq_cm_rows4_fn(const int8_t *x, const void *w, int32_t chunks, int32_t sums[4]);

AQ_CM_INLINE void aq_cm_matvec(const aq_fully_connected_params *p, const int8_t *input,
                               const void *filter, const int32_t *bias, int8_t *output, int s4,
                               aq_cm_rows4_fn *rows4, int32_t block_chunks) {
  const int32_t K = p->accum_depth, N = p->out_c, kc = K >> 2;
  const int32_t chunk_bytes = s4 ? 8 : 16, block_bytes = ((K + 3) >> 2) * chunk_bytes;
  const int32_t off2p1 = 2 * p->q.output_offset + 1;
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * K;
    int8_t *out = output + b * N;
    for (int32_t n0 = 0; n0 < N; n0 += 4) {
      const uint8_t *w = (const uint8_t *)filter + (n0 >> 2) * block_bytes;
      uint32_t acc[4] = {0, 0, 0, 0};
      for (int32_t c = 0; c < kc; c += block_chunks) {
        int32_t sums[4];
        rows4(x + 4 * c, w + c * chunk_bytes, kc - c < block_chunks ? kc - c : block_chunks, sums);
        for (int r = 0; r < 4; ++r) acc[r] += (uint32_t)(s4 ? sums[r] >> 12 : sums[r]);
      }
      const int32_t rows = N - n0 < 4 ? N - n0 : 4;
      for (int r = 0; r < rows; ++r) {
        const int32_t n = n0 + r;
        uint32_t a = acc[r] + (uint32_t)bias[n];
        for (int32_t k = kc * 4; k < K; ++k)
          a += (uint32_t)(aq_matvec_weight(filter, K, n, k, s4) * x[k]);
        const int32_t y = aq_cm_requant_exact((int32_t)a, p->q.multiplier[n], p->q.shift[n], off2p1);
        out[n] = (int8_t)aq_clamp(y, p->q.act_min, p->q.act_max);
      }
    }
  }
}

#endif /* AQ_CM_MATVEC_H */
