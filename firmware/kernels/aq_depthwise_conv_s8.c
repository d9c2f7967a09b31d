/* DEPTHWISE_CONV_2D, int8, per-channel requantization (TFLite DepthwiseConvPerChannel). */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_depthwise_conv_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output) {
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
              const int32_t w = filter[(ky * p->k_w + kx) * p->out_c + oc];
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
