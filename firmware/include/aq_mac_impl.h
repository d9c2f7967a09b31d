/* Loop bodies shared by the int8-weight (s8) and packed-INT4-weight (s4) MAC kernels.
 * Each aq_<op>_<s8|s4>.c instantiates one with a constant `s4` flag, so the compiler emits a
 * specialised kernel per weight type; INT4 weights are unpacked in registers, never into RAM.
 * Private to firmware/kernels/: not part of the public API. */
#ifndef AQ_MAC_IMPL_H
#define AQ_MAC_IMPL_H

#include "aq_kernels.h"
#include "aq_math.h"

/* Weight i of a filter: int8, or TFLite INT4 (element 2k in the low nibble of byte k, 2k+1 in
 * the high nibble, two's complement). */
static inline int32_t aq_weight(const void *filter, int32_t i, int s4) {
  if (!s4) return ((const int8_t *)filter)[i];
  const int8_t byte = ((const int8_t *)filter)[i >> 1];
  return (i & 1) ? (byte >> 4) : ((int8_t)(byte << 4) >> 4);
}

static inline void aq_conv_impl(const aq_conv_params *p, const int8_t *input, const void *filter,
                                const int32_t *bias, int8_t *output, int s4) {
  const int out_per_group = p->out_c / (p->in_c / p->filter_in_c);
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int in_y0 = oy * p->stride_h - p->pad_h;
    for (int ox = 0; ox < p->out_w; ++ox) {
      const int in_x0 = ox * p->stride_w - p->pad_w;
      for (int oc = 0; oc < p->out_c; ++oc) {
        const int group = oc / out_per_group;
        const int32_t w0 = (int32_t)oc * p->k_h * p->k_w * p->filter_in_c;
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

static inline void aq_fully_connected_impl(const aq_fully_connected_params *p,
                                           const int8_t *input, const void *filter,
                                           const int32_t *bias, int8_t *output, int s4) {
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * p->accum_depth;
    for (int32_t oc = 0; oc < p->out_c; ++oc) {
      const int32_t w0 = oc * p->accum_depth;
      int32_t acc = 0;
      for (int32_t d = 0; d < p->accum_depth; ++d) {
        acc += aq_weight(filter, w0 + d, s4) * (x[d] + p->q.input_offset);
      }
      if (bias) acc += bias[oc];
      acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
      output[b * p->out_c + oc] = (int8_t)aq_clamp(acc, p->q.act_min, p->q.act_max);
    }
  }
}

#endif /* AQ_MAC_IMPL_H */
