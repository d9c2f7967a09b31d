/* Shared machinery of the Cortex-M4/M7 kernels (ARMv7E-M DSP extension, ACLE <arm_acle.h>).
 * Private to firmware/kernels/cortex-m/; every kernel here is bit-exact with its portable twin
 * in firmware/kernels/ (TFLite Micro's reference arithmetic).
 *
 * MAC kernels (conv, fully connected) expand the activations of two output pixels at a time
 * into an int16 "column" buffer on the stack, input offset added, in the lane order that
 * SXTB16 gives the weights, and then run a 2-channel x 2-pixel SMLAD loop that reads int8 or
 * packed INT4 weights straight from flash (unpacked in registers, never copied to RAM).
 *
 * Requantisation is fused into the output loop. Its short form needs |acc| < 2^30 and a right
 * shift (the normal case); where the build could not prove that for every channel and input
 * (aq_requant.guard, from the layer's weights and biases), every output is range-checked and
 * takes TFLite's long form when needed (aq_cm_requant_exact). The MAC loops are the same. */
#ifndef AQ_CM_IMPL_H
#define AQ_CM_IMPL_H

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "aq_kernels.h"
#include "aq_math.h"

#if !defined(__ARM_FEATURE_SIMD32) || !defined(__ARM_FEATURE_DSP)
#error "firmware/kernels/cortex-m/ needs a core with the DSP extension (Cortex-M4/M7)"
#endif

#define AQ_CM_INLINE static inline __attribute__((always_inline))

/* A 32-bit load from any address (LDR allows unaligned access on ARMv7-M). */
AQ_CM_INLINE uint32_t aq_cm_ld32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

AQ_CM_INLINE uint32_t aq_cm_ld16(const void *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* SXTB16 of x rotated by 8: bytes 1 and 3 sign-extended to two halfwords. */
AQ_CM_INLINE uint32_t aq_cm_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* a + SXTB16(x ror 8), per halfword. */
AQ_CM_INLINE uint32_t aq_cm_sxtab16_ror8(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}

/* Bottom halfword of a, bottom halfword of b in the top. */
AQ_CM_INLINE uint32_t aq_cm_pkhbt16(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* Top halfword of a, top halfword of b in the bottom. */
AQ_CM_INLINE uint32_t aq_cm_pkhtb16(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* (a * b + 2^31) >> 32. */
AQ_CM_INLINE int32_t aq_cm_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* Signed 16-bit lanes x bottom/top halves. */
AQ_CM_INLINE int32_t aq_cm_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}

AQ_CM_INLINE int32_t aq_cm_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}

AQ_CM_INLINE int32_t aq_cm_smlatb(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlatb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}

AQ_CM_INLINE int32_t aq_cm_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlabt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}

/* The offset in both halfwords, for SXTAB16. */
AQ_CM_INLINE uint32_t aq_cm_dup16(int32_t v) {
  return ((uint32_t)v & 0xFFFFu) * 0x10001u;
}

/* ---- The 4-pixel column buffer ----
 * Rows hold whole words of weights (K padded with zero weights to aq_padded_k, see
 * aqedge/codegen/dispatch.py column_layout), so the buffer is whole chunks of AQ_CM_CHUNK(s4)
 * elements (4 for int8 weights, 8 for INT4). A chunk holds int16 pairs (input offset added;
 * doubled for int8 weights, see aq_cm_requant2; not for INT4, whose x16 weight products are
 * shifted right by 3 instead) in the order the weight word unpacks to, each pair for the four
 * pixels A B C D in a row (one LDM):
 *   int8:  (x0,x2) (x1,x3)                   SXTB16(w), SXTB16(w ror 8)
 *   INT4:  (x0,x4) (x2,x6) (x1,x5) (x3,x7)   SXTB16(lo), SXTB16(lo ror 8), same for hi, where
 *          lo = (w << 4) & 0xF0F0F0F0 (even elements x16), hi = w & 0xF0F0F0F0 (odd x16) */
#define AQ_CM_CHUNK(s4) ((s4) ? 8 : 4)
#define AQ_CM_PAIRS(s4) ((s4) ? 4 : 2)
#define AQ_CM_PIXELS 4

/* Words of column buffer for rows of Kp (padded) elements. */
AQ_CM_INLINE int32_t aq_cm_col_words(int32_t Kp, int s4) {
  return (Kp / AQ_CM_CHUNK(s4)) * AQ_CM_PIXELS * AQ_CM_PAIRS(s4);
}

/* Element k (already offset, and doubled for int8 weights) of pixel pix. */
AQ_CM_INLINE void aq_cm_put(uint32_t *col, int pix, int32_t k, int32_t v, int s4) {
  const int32_t chunk = k / AQ_CM_CHUNK(s4), e = k % AQ_CM_CHUNK(s4);
  const int32_t pair = s4 ? (((e & 1) << 1) | ((e >> 1) & 1)) : (e & 1);
  const int32_t half = s4 ? ((e >> 2) & 1) : ((e >> 1) & 1);
  *((int16_t *)(col + (chunk * AQ_CM_PAIRS(s4) + pair) * AQ_CM_PIXELS + pix) + half) = (int16_t)v;
}

/* Append n int8 elements from src (or n padding elements, 0 after the offset, when src is
 * NULL) at element k of pixel pix; returns the next k. Values are stored as 2 * (x + offset)
 * for int8 weights, x + offset for INT4. */
static inline int32_t aq_cm_put_run(uint32_t *col, int32_t kc, int pix, int32_t k,
                                    const int8_t *src, int32_t n, uint32_t off2, int s4) {
  const int32_t chunk = AQ_CM_CHUNK(s4), stride = AQ_CM_PIXELS;
  while (n > 0 && (k % chunk) != 0) {
    aq_cm_put(col, pix, k++, src ? (s4 ? 1 : 2) * (*src++ + (int16_t)off2) : 0, s4);
    --n;
  }
  uint32_t *dst = col + (k / chunk) * AQ_CM_PAIRS(s4) * stride + pix;
  int32_t full = n / chunk;
  if (full > kc - k / chunk) full = kc - k / chunk;
  if (full > 0) {
    if (s4) {
      if (src) {
        for (int32_t j = 0; j < full; ++j, src += 8, dst += 4 * stride) {
          const uint32_t a = aq_cm_ld32(src), b = aq_cm_ld32(src + 4);
          const uint32_t al = __sxtab16(off2, a), ah = aq_cm_sxtab16_ror8(off2, a);
          const uint32_t bl = __sxtab16(off2, b), bh = aq_cm_sxtab16_ror8(off2, b);
          dst[0] = aq_cm_pkhbt16(al, bl);
          dst[stride] = aq_cm_pkhtb16(bl, al);
          dst[2 * stride] = aq_cm_pkhbt16(ah, bh);
          dst[3 * stride] = aq_cm_pkhtb16(bh, ah);
        }
      } else {
        for (int32_t j = 0; j < full; ++j, dst += 4 * stride)
          dst[0] = dst[stride] = dst[2 * stride] = dst[3 * stride] = 0;
      }
    } else {
      if (src) {
        for (int32_t j = 0; j < full; ++j, src += 4, dst += 2 * stride) {
          const uint32_t a = aq_cm_ld32(src);
          const uint32_t lo = __sxtab16(off2, a), hi = aq_cm_sxtab16_ror8(off2, a);
          dst[0] = __sadd16(lo, lo);
          dst[stride] = __sadd16(hi, hi);
        }
      } else {
        for (int32_t j = 0; j < full; ++j, dst += 2 * stride) dst[0] = dst[stride] = 0;
      }
    }
    k += full * chunk;
    n -= full * chunk;
  }
  while (n > 0) {
    aq_cm_put(col, pix, k++, src ? (s4 ? 1 : 2) * (*src++ + (int16_t)off2) : 0, s4);
    --n;
  }
  return k;
}

/* Weight element i of an int8 / packed INT4 filter row. */
AQ_CM_INLINE int32_t aq_cm_weight(const void *w, int32_t i, int s4) {
  if (!s4) return ((const int8_t *)w)[i];
  const int8_t byte = ((const int8_t *)w)[i >> 1];
  return (i & 1) ? (byte >> 4) : ((int8_t)(byte << 4) >> 4);
}

/* What the per-quad matmul needs about a layer (filled once per kernel call). */
typedef struct {
  int32_t K, kc, row_bytes, n_ch, out_stride;
  const void *filter;
  const int32_t *bias;
  const aq_requant *q;
  int32_t full_range;     /* act range is [-128, 127]: SSAT alone clamps */
  int32_t sat;            /* 8: act range [-128, 127], 4: [-8, 7] (SSAT #sat clamps); else 0 */
  int32_t s4_hi;          /* INT4 sums fit 4096 * |sum| < 2^31: the x4096 lanes (aq_cm_matmul.c) */
  int32_t off2p1;         /* 2 * output_offset + 1 */
  int32_t plain;          /* every channel shifts right, no guard: the usual case */
  int32_t guarded;        /* q->guard: range-check every output (aq_cm_requant_exact) */
} aq_cm_mm;

AQ_CM_INLINE void aq_cm_mm_init(aq_cm_mm *mm, int32_t K, const void *filter, const int32_t *bias,
                                int32_t n_ch, const aq_requant *q, int32_t out_stride, int s4) {
  mm->K = K;
  mm->kc = K / AQ_CM_CHUNK(s4);
  mm->row_bytes = s4 ? K / 2 : K;   /* K: the padded row length */
  mm->n_ch = n_ch;
  mm->out_stride = out_stride;
  mm->filter = filter;
  mm->bias = bias;
  mm->q = q;
  mm->full_range = q->act_min <= -128 && q->act_max >= 127;
  mm->sat = mm->full_range ? 8 : (q->act_min == -8 && q->act_max == 7) ? 4 : 0;
  mm->off2p1 = 2 * q->output_offset + 1;
  /* Largest |x + input_offset| times largest |w| (8) times K. */
  const int32_t xo = q->input_offset, xmax = (xo + 127 > 128 - xo) ? xo + 127 : 128 - xo;
  mm->s4_hi = s4 && (int64_t)K * 8 * xmax < ((int64_t)1 << 19);
  mm->guarded = q->guard;
  mm->plain = !q->guard;
  for (int32_t c = 0; c < n_ch; ++c) mm->plain &= q->shift[c] < 0;
}

/* Requantise 2 * acc (the column buffer doubles activations) of one channel: needs
 * |acc << left| < 2^30. With a right shift (shift < 0, em1 = ~shift = -shift - 1):
 * SaturatingRoundingDoublingHighMul(acc, m) = floor((acc*m + 2^30) / 2^31) = SMMULR(2*acc, m),
 * and RoundingDivideByPOT(x, e) (ties away from zero) = ((x' >> (e - 1)) + 1) >> 1 with
 * x' = x - (x < 0); off2p1 = 2 * output_offset + 1 folds the offset into the last shift. */
AQ_CM_INLINE int32_t aq_cm_requant2(int32_t acc2, int32_t m, int32_t em1, int32_t off2p1) {
  int32_t x = aq_cm_smmulr(acc2, m);
  x += x >> 31;
  return ((x >> em1) + off2p1) >> 1;
}

/* The same for any shift (a left shift, shift >= 0, has no rounding division). */
AQ_CM_INLINE int32_t aq_cm_requant2_any(int32_t acc2, int32_t m, int32_t shift, int32_t off2p1) {
  if (shift < 0) return aq_cm_requant2(acc2, m, ~shift, off2p1);
  return aq_cm_smmulr(acc2 << shift, m) + (off2p1 >> 1);
}

/* Requantise one (not doubled) accumulator, TFLite's result for every acc and shift: the
 * SMMULR form when it is exact (a right shift, |acc| < 2^30), aq_requantize() otherwise (a
 * per-output guard, not a slower path for the layer). */
AQ_CM_INLINE int32_t aq_cm_requant_exact(int32_t acc, int32_t m, int32_t shift, int32_t off2p1) {
  if (shift < 0 && (uint32_t)acc + 0x40000000u < 0x80000000u)
    return aq_cm_requant2(2 * acc, m, ~shift, off2p1);
  return aq_requantize(acc, m, shift) + (off2p1 >> 1);
}

/* Requantise one (not doubled) accumulator of channel c to int8; fast when the call
 * checked aq_cm_fast_ok(). */
AQ_CM_INLINE int8_t aq_cm_out(int32_t acc, const aq_requant *q, int32_t c, int fast) {
  const int32_t o2 = 2 * q->output_offset + 1;
  int32_t x = fast ? aq_cm_requant2_any(2 * acc, q->multiplier[c], q->shift[c], o2)
                   : aq_cm_requant_exact(acc, q->multiplier[c], q->shift[c], o2);
  x = x < q->act_min ? q->act_min : x;
  x = x > q->act_max ? q->act_max : x;
  return (int8_t)x;
}

/* Every output channel of n_pix <= 4 pixels from a filled column buffer: pixel p's outputs
 * go to out + p * out_stride. In aq_cm_matmul.c: its inner loop is hand-allocated
 * asm needing every register including r7, so it must not be inlined into a kernel with a
 * frame pointer. */
void aq_cm_matmul_4px_s8(const aq_cm_mm *mm, const uint32_t *col, int8_t *out, int n_pix);
void aq_cm_matmul_4px_s4(const aq_cm_mm *mm, const uint32_t *col, int8_t *out, int n_pix);

#endif /* AQ_CM_IMPL_H */
