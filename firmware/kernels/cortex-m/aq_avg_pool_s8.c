/* AVERAGE_POOL_2D, int8: Cortex-M4/M7 port of firmware/kernels/aq_avg_pool_s8.c, bit-exact
 * with it. Four channels at a time: one word load and two SXTB16 + two SADD16 per tap, the
 * sums kept in 16-bit lanes (exact while taps x 128 < 2^15, else the portable loop). */
#include "aq_cm_impl.h"

static int8_t aq_cm_avg_round(int32_t acc, int32_t count, const aq_pool_params *p) {
  if (count > 0) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
  return (int8_t)aq_clamp(acc, p->act_min, p->act_max);
}

void aq_avg_pool_s8(const aq_pool_params *p, const int8_t *input, int8_t *output) {
  const int32_t C = p->channels;
  for (int oy = 0; oy < p->out_h; ++oy) {
    const int in_y0 = oy * p->stride_h - p->pad_h;
    const int ky0 = in_y0 < 0 ? -in_y0 : 0;
    const int ky1 = p->k_h < p->in_h - in_y0 ? p->k_h : p->in_h - in_y0;
    for (int ox = 0; ox < p->out_w; ++ox) {
      const int in_x0 = ox * p->stride_w - p->pad_w;
      const int kx0 = in_x0 < 0 ? -in_x0 : 0;
      const int kx1 = p->k_w < p->in_w - in_x0 ? p->k_w : p->in_w - in_x0;
      const int32_t count = (ky1 - ky0) * (kx1 - kx0);
      int8_t *out = output + ((int32_t)oy * p->out_w + ox) * C;
      int32_t c = 0;
      if (count > 0 && count < 256) {
        for (; c + 4 <= C; c += 4) {
          uint32_t lo = 0, hi = 0; /* (c, c+2) and (c+1, c+3) sums */
          for (int ky = ky0; ky < ky1; ++ky) {
            const int8_t *x = input + ((int32_t)(in_y0 + ky) * p->in_w + in_x0 + kx0) * C + c;
            for (int kx = kx0; kx < kx1; ++kx, x += C) {
              const uint32_t v = aq_cm_ld32(x);
              lo = __sadd16(lo, __sxtb16(v));
              hi = __sadd16(hi, aq_cm_sxtb16_ror8(v));
            }
          }
          out[c] = aq_cm_avg_round((int16_t)lo, count, p);
          out[c + 1] = aq_cm_avg_round((int16_t)hi, count, p);
          out[c + 2] = aq_cm_avg_round((int32_t)lo >> 16, count, p);
          out[c + 3] = aq_cm_avg_round((int32_t)hi >> 16, count, p);
        }
      }
      for (; c < C; ++c) {
        int32_t acc = 0;
        for (int ky = ky0; ky < ky1; ++ky)
          for (int kx = kx0; kx < kx1; ++kx)
            acc += input[((int32_t)(in_y0 + ky) * p->in_w + in_x0 + kx) * C + c];
        out[c] = aq_cm_avg_round(acc, count, p);
      }
    }
  }
}
