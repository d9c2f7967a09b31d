/* Loop bodies of the non-MAC kernels that meet 4-bit tensors (pooling, tables, clamps, MEAN),
 * shared by the int8-storage kernel (storages 0) and its aq_*_packed_s8 twin (the params'
 * *_store fields; aq_storage.h). Private to firmware/kernels/: not part of the public
 * API. */
#ifndef AQ_OPS_IMPL_H
#define AQ_OPS_IMPL_H

#include "aq_kernels.h"
#include "aq_math.h"
#include "aq_storage.h"

/* MAX_POOL_2D (avg = 0, TFLite reference_integer_ops::MaxPool) or AVERAGE_POOL_2D (avg = 1,
 * AveragePool: the mean over the taps inside the image, rounded half away from zero). */
static inline void aq_pool_impl(const aq_pool_params *p, const int8_t *input, int8_t *output,
                                int avg, const aq_storage *si, const aq_storage *so) {
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int in_y0 = oy * p->stride_h - p->pad_h;
    const int ky0 = in_y0 < 0 ? -in_y0 : 0;
    const int ky1 = p->k_h < p->in_h - in_y0 ? p->k_h : p->in_h - in_y0;
    for (int ox = 0; ox < p->out_w; ++ox) {
      const int in_x0 = ox * p->stride_w - p->pad_w;
      const int kx0 = in_x0 < 0 ? -in_x0 : 0;
      const int kx1 = p->k_w < p->in_w - in_x0 ? p->k_w : p->in_w - in_x0;
      const int32_t count = (ky1 - ky0) * (kx1 - kx0);
      for (int c = 0; c < p->channels; ++c) {
        int32_t acc = avg ? 0 : -128;
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int32_t v = aq_act_get(
                input, ((int32_t)(in_y0 + ky) * p->in_w + in_x0 + kx) * p->channels + c, si);
            if (avg) acc += v;
            else if (v > acc) acc = v;
          }
        }
        if (avg && count > 0) {
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        aq_act_set(output, ((int32_t)oy * p->out_w + ox) * p->channels + c,
                   aq_clamp(acc, p->act_min, p->act_max), so);
      }
    }
  }
}

/* output[i] = table[input[i] + 128]. */
static inline void aq_lut_impl(const aq_lut_params *p, const int8_t *table, const int8_t *input,
                               int8_t *output, const aq_storage *si, const aq_storage *so) {
  for (int32_t i = 0; i < p->size; ++i) {
    aq_act_set(output, i, table[aq_act_get(input, i, si) + 128], so);
  }
}

/* The codes clamped to [act_min, act_max]. */
static inline void aq_clamp_impl(const aq_clamp_params *p, const int8_t *input, int8_t *output,
                                 const aq_storage *si, const aq_storage *so) {
  for (int32_t i = 0; i < p->size; ++i) {
    aq_act_set(output, i, aq_clamp(aq_act_get(input, i, si), p->act_min, p->act_max), so);
  }
}

/* MEAN over any subset of the 4 (extended) axes (TFLite QuantizedMeanOrSum, which TFLite Micro
 * uses even when input and output share their quantization): the zero-point-corrected sum
 * requantized with 1/count folded into the multiplier. Outputs are produced in order, so
 * keep_dims does not change the layout. */
static inline void aq_mean_impl(const aq_mean_params *p, const int8_t *input, int8_t *output,
                                const aq_storage *si, const aq_storage *so) {
  const int32_t *d = p->dims;
  const int32_t st[4] = {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
  int32_t od[4], rd[4];
  for (int k = 0; k < 4; ++k) {
    od[k] = p->reduce[k] ? 1 : d[k];
    rd[k] = p->reduce[k] ? d[k] : 1;
  }
  int32_t o = 0;
  for (int32_t i0 = 0; i0 < od[0]; ++i0)
    for (int32_t i1 = 0; i1 < od[1]; ++i1)
      for (int32_t i2 = 0; i2 < od[2]; ++i2)
        for (int32_t i3 = 0; i3 < od[3]; ++i3) {
          const int32_t base = i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3];
          int32_t sum = 0;
          for (int32_t r0 = 0; r0 < rd[0]; ++r0)
            for (int32_t r1 = 0; r1 < rd[1]; ++r1)
              for (int32_t r2 = 0; r2 < rd[2]; ++r2)
                for (int32_t r3 = 0; r3 < rd[3]; ++r3)
                  sum += aq_act_get(input, base + r0 * st[0] + r1 * st[1] + r2 * st[2] + r3 * st[3], si);
          const int32_t shifted = sum - p->input_zero_point * p->count;
          const int32_t out = aq_requantize(shifted, p->multiplier, p->shift) + p->output_zero_point;
          aq_act_set(output, o++, aq_clamp(out, -128, 127), so);
        }
}

#endif /* AQ_OPS_IMPL_H */
