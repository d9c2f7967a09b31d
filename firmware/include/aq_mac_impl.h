/* Loop bodies shared by the int8-weight (s8) and packed-INT4-weight (s4) MAC kernels.
 * Each aq_<op>_<s8|s4>.c instantiates one with a constant `s4` flag, so the compiler emits a
 * specialised kernel per weight type; INT4 weights are unpacked in registers, never into RAM.
 * Private to firmware/kernels/: not part of the public API. */
#ifndef AQ_MAC_IMPL_H
#define AQ_MAC_IMPL_H

#include "aq_kernels.h"
#include "aq_math.h"
#include "aq_storage.h"

/* Weight i of a filter: int8, or TFLite INT4 (element 2k in the low nibble of byte k, 2k+1 in
 * the high nibble, two's complement). */
static inline int32_t aq_weight(const void *filter, int32_t i, int s4) {
  if (!s4) return ((const int8_t *)filter)[i];
  const int8_t byte = ((const int8_t *)filter)[i >> 1];
  return (i & 1) ? (byte >> 4) : ((int8_t)(byte << 4) >> 4);
}

/* CONV_2D with filter rows (output channels) `row` weights apart. */
static inline void aq_conv_rows_impl(const aq_conv_params *p, const int8_t *input,
                                     const void *filter, const int32_t *bias, int8_t *output,
                                     int s4, int32_t row) {
  const int out_per_group = p->out_c / (p->in_c / p->filter_in_c);
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int in_y0 = oy * p->stride_h - p->pad_h;
    for (int ox = 0; ox < p->out_w; ++ox) {
      const int in_x0 = ox * p->stride_w - p->pad_w;
      for (int oc = 0; oc < p->out_c; ++oc) {
        const int group = oc / out_per_group;
        const int32_t w0 = (int32_t)oc * row;
        int32_t acc = 0;
        for (int ky = 0; ky < p->k_h; ++ky) {
          const int in_y = in_y0 + p->dil_h * ky;
          if (in_y < 0 || in_y >= p->in_h) continue;
          for (int kx = 0; kx < p->k_w; ++kx) {
            const int in_x = in_x0 + p->dil_w * kx;
            if (in_x < 0 || in_x >= p->in_w) continue;
            const int8_t *x = input + ((int32_t)in_y * p->in_w + in_x) * p->in_c +
                              group * p->filter_in_c;
            const int32_t wk = w0 + (ky * p->k_w + kx) * p->filter_in_c;
            for (int ic = 0; ic < p->filter_in_c; ++ic) {
              acc += aq_weight(filter, wk + ic, s4) * (x[ic] + p->q.input_offset);
            }
          }
        }
        if (bias) acc += bias[oc];
        acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
        output[((int32_t)oy * p->out_w + ox) * p->out_c + oc] =
            (int8_t)aq_clamp(acc, p->q.act_min, p->q.act_max);
      }
    }
  }
}

/* CONV_2D, TFLite's filter layout (INT4: packed across rows). */
static inline void aq_conv_impl(const aq_conv_params *p, const int8_t *input, const void *filter,
                                const int32_t *bias, int8_t *output, int s4) {
  aq_conv_rows_impl(p, input, filter, bias, output, s4, (int32_t)p->k_h * p->k_w * p->filter_in_c);
}

static inline void aq_depthwise_conv_impl(const aq_depthwise_conv_params *p, const int8_t *input,
                                          const void *filter, const int32_t *bias,
                                          int8_t *output, int s4) {
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int in_y0 = oy * p->stride_h - p->pad_h;
    for (int ox = 0; ox < p->out_w; ++ox) {
      const int in_x0 = ox * p->stride_w - p->pad_w;
      for (int ic = 0; ic < p->in_c; ++ic) {
        for (int m = 0; m < p->depth_multiplier; ++m) {
          const int oc = ic * p->depth_multiplier + m;
          int32_t acc = 0;
          for (int ky = 0; ky < p->k_h; ++ky) {
            const int in_y = in_y0 + p->dil_h * ky;
            if (in_y < 0 || in_y >= p->in_h) continue;
            for (int kx = 0; kx < p->k_w; ++kx) {
              const int in_x = in_x0 + p->dil_w * kx;
              if (in_x < 0 || in_x >= p->in_w) continue;
              const int32_t x = input[((int32_t)in_y * p->in_w + in_x) * p->in_c + ic];
              const int32_t w = aq_weight(filter, (ky * p->k_w + kx) * p->out_c + oc, s4);
              acc += w * (x + p->q.input_offset);
            }
          }
          if (bias) acc += bias[oc];
          acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
          output[((int32_t)oy * p->out_w + ox) * p->out_c + oc] =
              (int8_t)aq_clamp(acc, p->q.act_min, p->q.act_max);
        }
      }
    }
  }
}

/* FULLY_CONNECTED with rows `row` weights apart; `si` / `so`: the input's and output's storage
 * (aq_storage.h), 0 (int8) in the int8 kernels, the params' in aq_fully_connected_packed_*. */
static inline void aq_fully_connected_rows_impl(const aq_fully_connected_params *p,
                                                const int8_t *input, const void *filter,
                                                const int32_t *bias, int8_t *output, int s4,
                                                int32_t row, const aq_storage *si,
                                                const aq_storage *so) {
  for (int32_t b = 0; b < p->batches; ++b) {
    const int32_t x = b * p->accum_depth;
    for (int32_t oc = 0; oc < p->out_c; ++oc) {
      const int32_t w0 = oc * row;
      int32_t acc = 0;
      for (int32_t d = 0; d < p->accum_depth; ++d) {
        acc += aq_weight(filter, w0 + d, s4) * (aq_act_get(input, x + d, si) + p->q.input_offset);
      }
      if (bias) acc += bias[oc];
      acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
      aq_act_set(output, b * p->out_c + oc, aq_clamp(acc, p->q.act_min, p->q.act_max), so);
    }
  }
}

/* FULLY_CONNECTED, TFLite's weight layout (INT4: packed across rows). */
static inline void aq_fully_connected_impl(const aq_fully_connected_params *p,
                                           const int8_t *input, const void *filter,
                                           const int32_t *bias, int8_t *output, int s4,
                                           const aq_storage *si, const aq_storage *so) {
  aq_fully_connected_rows_impl(p, input, filter, bias, output, s4, p->accum_depth, si, so);
}

/* Row length of the column kernels' weights: K rounded up to a word (4 int8, 8 INT4). */
static inline int32_t aq_padded_k(int32_t K, int s4) {
  return s4 ? (K + 7) & ~7 : (K + 3) & ~3;
}

/* Weight (n, k) of an N x K matrix in the matrix x vector layout (aqedge/codegen/dispatch.py
 * matvec_layout): blocks of 4 rows; per block and 4 elements of K, the block's rows side by
 * side (int8: a word per row; INT4: a word per two rows, (0, 1) then (2, 3), nibbles a0 a1 b0
 * b1 a2 a3 b2 b3); the last block of N % 4 rows holds only those rows (INT4: one word for 1 or
 * 2 rows). */
static inline int32_t aq_matvec_weight(const void *filter, int32_t K, int32_t N, int32_t n,
                                       int32_t k, int s4) {
  const int32_t k4 = (K + 3) & ~3, block = n >> 2, r = n & 3, chunk = k >> 2, e = k & 3;
  const int32_t rows = N - 4 * block < 4 ? N - 4 * block : 4;
  if (!s4) return ((const int8_t *)filter)[block * k4 * 4 + chunk * 4 * rows + r * 4 + e];
  const int32_t nib = ((e >> 1) << 2) | ((r & 1) << 1) | (e & 1), words = (rows + 1) >> 1;
  const int8_t byte = ((const int8_t *)filter)[block * k4 * 2 + chunk * 4 * words + (r >> 1) * 4 +
                                               (nib >> 1)];
  return (nib & 1) ? (byte >> 4) : ((int8_t)(byte << 4) >> 4);
}

/* One vector against the N x K matrix in the matvec layout, `bias` with the input offset folded
 * in (bias + input_offset * row sum, wrapped to int32): the int32 sums wrap as TFLite's do, so
 * the result is TFLite's exactly. */
static inline void aq_matvec_impl(const int8_t *x, const void *filter, const int32_t *bias,
                                  const aq_requant *q, int32_t K, int32_t N, int8_t *out, int s4) {
  for (int32_t n = 0; n < N; ++n) {
    uint32_t acc = (uint32_t)bias[n];
    for (int32_t k = 0; k < K; ++k)
      acc += (uint32_t)(aq_matvec_weight(filter, K, N, n, k, s4) * x[k]);
    const int32_t y = aq_requantize((int32_t)acc, q->multiplier[n], q->shift[n]) + q->output_offset;
    out[n] = (int8_t)aq_clamp(y, q->act_min, q->act_max);
  }
}

/* FULLY_CONNECTED as matrix x vector per batch. */
static inline void aq_fully_connected_matvec_impl(const aq_fully_connected_params *p,
                                                  const int8_t *input, const void *filter,
                                                  const int32_t *bias, int8_t *output, int s4) {
  for (int32_t b = 0; b < p->batches; ++b)
    aq_matvec_impl(input + b * p->accum_depth, filter, bias, &p->q, p->accum_depth, p->out_c,
                   output + b * p->out_c, s4);
}

/* 1x1 CONV_2D without padding as matrix x vector per output pixel. */
static inline void aq_conv_matvec_impl(const aq_conv_params *p, const int8_t *input,
                                       const void *filter, const int32_t *bias, int8_t *output,
                                       int s4) {
  for (int oy = 0; oy < p->out_h; ++oy)
    for (int ox = 0; ox < p->out_w; ++ox)
      aq_matvec_impl(input + ((int32_t)oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c,
                     filter, bias, &p->q, p->in_c, p->out_c,
                     output + ((int32_t)oy * p->out_w + ox) * p->out_c, s4);
}

/* Lane `hi` (0 low, 1 high) of word `word` of a depthwise table (dispatch.py): int16. */
static inline int32_t aq_dw_lane(const void *table, int32_t word, int hi) {
  const uint8_t *b = (const uint8_t *)table + 4 * word + 2 * hi;
  return (int16_t)(uint16_t)(b[0] | (b[1] << 8));
}

/* Table word of channel c (lane c & 2) in group c / 4 for a tap whose pair words start at `w0`. */
#define AQ_DW_PAIR_WORD(w0, c) ((w0) + ((c) & 1))
#define AQ_DW_PAIR_HI(c) (((c) >> 1) & 1)

/* Weight of output channel oc at tap t in the "table" layout (depth multiplier 1: per 4
 * channels and tap the pairs (w0, w2) (w1, w3)) or the "mult2" one (2: per 8 outputs and tap
 * (w0, w1) (w2, w3) (w4, w5) (w6, w7)); dispatch.py depthwise_table_layout / _mult2_layout. */
static inline int32_t aq_dw_table_weight(const void *table, int32_t taps, int32_t t, int32_t oc,
                                         int32_t mult) {
  if (mult == 1) return aq_dw_lane(table, AQ_DW_PAIR_WORD(((oc >> 2) * taps + t) * 2, oc), AQ_DW_PAIR_HI(oc));
  return aq_dw_lane(table, ((oc >> 3) * taps + t) * 4 + ((oc & 7) >> 1), oc & 1);
}

/* DEPTHWISE_CONV_2D, depth multiplier 1 or 2, weights in the "table" / "mult2" layout. Valid
 * taps only, as TFLite. */
static inline void aq_depthwise_conv_table_impl(const aq_depthwise_conv_params *p,
                                                const int8_t *input, const void *table,
                                                const int32_t *bias, int8_t *output) {
  const int32_t taps = (int32_t)p->k_h * p->k_w, mult = p->depth_multiplier;
  for (int oy = 0; oy < p->out_h; ++oy) {
    for (int ox = 0; ox < p->out_w; ++ox) {
      for (int oc = 0; oc < p->out_c; ++oc) {
        int32_t acc = 0;
        for (int t = 0; t < taps; ++t) {
          const int in_y = oy * p->stride_h - p->pad_h + p->dil_h * (t / p->k_w);
          const int in_x = ox * p->stride_w - p->pad_w + p->dil_w * (t % p->k_w);
          if (in_y < 0 || in_y >= p->in_h || in_x < 0 || in_x >= p->in_w) continue;
          const int32_t x = input[((int32_t)in_y * p->in_w + in_x) * p->in_c + oc / mult];
          acc += aq_dw_table_weight(table, taps, t, oc, mult) * (x + p->q.input_offset);
        }
        if (bias) acc += bias[oc];
        acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
        output[((int32_t)oy * p->out_w + ox) * p->out_c + oc] = (int8_t)aq_clamp(acc, p->q.act_min, p->q.act_max);
      }
    }
  }
}

/* DEPTHWISE_CONV_2D 3x3, depth multiplier 1, "3x3" layout (dispatch.py depthwise_3x3_layout):
 * per 4-channel group 22 words, the doubled bias with the input offset folded in, then 9 taps of
 * doubled int16 pairs. Every tap counts, padding taps at the input zero point:
 *   sum_valid w (x + off) + bias == sum_all w x' + (bias + off * sum_all w),  x' = zp outside,
 * exact in int32 (the build checks the doubled sums cannot overflow). */
static inline void aq_depthwise_conv_3x3_impl(const aq_depthwise_conv_params *p,
                                              const int8_t *input, const void *table,
                                              int8_t *output) {
  for (int oy = 0; oy < p->out_h; ++oy) {
    for (int ox = 0; ox < p->out_w; ++ox) {
      for (int c = 0; c < p->in_c; ++c) {
        const int32_t g = (c >> 2) * 22;
        uint32_t acc2 = ((uint32_t)aq_dw_lane(table, g + (c & 3), 0) & 0xFFFFu) |
                        ((uint32_t)aq_dw_lane(table, g + (c & 3), 1) << 16);
        for (int t = 0; t < 9; ++t) {
          const int in_y = oy * p->stride_h - p->pad_h + p->dil_h * (t / 3);
          const int in_x = ox * p->stride_w - p->pad_w + p->dil_w * (t % 3);
          const int inside = in_y >= 0 && in_y < p->in_h && in_x >= 0 && in_x < p->in_w;
          const int32_t x = inside ? input[((int32_t)in_y * p->in_w + in_x) * p->in_c + c]
                                   : -p->q.input_offset;
          acc2 += (uint32_t)(aq_dw_lane(table, AQ_DW_PAIR_WORD(g + 4 + 2 * t, c), AQ_DW_PAIR_HI(c)) * x);
        }
        const int32_t acc = (int32_t)acc2 >> 1;
        const int32_t y = aq_requantize(acc, p->q.multiplier[c], p->q.shift[c]) + p->q.output_offset;
        output[((int32_t)oy * p->out_w + ox) * p->out_c + c] = (int8_t)aq_clamp(y, p->q.act_min, p->q.act_max);
      }
    }
  }
}

#endif /* AQ_MAC_IMPL_H */
