/* AVERAGE_POOL_2D, int8 (TFLite reference_integer_ops::AveragePool): the mean over the taps
 * inside the image, rounded half away from zero. */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_avg_pool_s8(const aq_pool_params *p, const int8_t *input, int8_t *output) {
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
        int32_t acc = 0;
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            acc += input[((int32_t)(in_y0 + ky) * p->in_w + in_x0 + kx) * p->channels + c];
          }
        }
        if (count > 0) {
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        output[((int32_t)oy * p->out_w + ox) * p->channels + c] =
            (int8_t)aq_clamp(acc, p->act_min, p->act_max);
      }
    }
  }
}
