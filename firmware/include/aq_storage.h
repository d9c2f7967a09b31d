/* Element access to activation tensors in either arena storage (aq_storage in aq_kernels.h):
 * int8 codes, or packed 4-bit codes two per byte. A kernel body takes a `const aq_storage *`
 * per tensor; the int8-storage kernels pass 0, so after inlining the compiler emits their plain
 * byte loads and stores, and only the `*_packed_*` kernels carry the nibble arithmetic.
 * Private to firmware/kernels/: not part of the public API. */
#ifndef AQ_STORAGE_H
#define AQ_STORAGE_H

#include "aq_kernels.h"

/* The code of element i. */
static inline int32_t aq_act_get(const int8_t *t, int32_t i, const aq_storage *s) {
  if (!s || !s->packed) return t[i];
  const uint32_t byte = ((const uint8_t *)t)[i >> 1];
  return (int32_t)((i & 1) ? byte >> 4 : byte & 15u) + s->lo;
}

/* Store `code` (in [lo, lo + 15] for a packed tensor: the producer's clamp guarantees it) as
 * element i. A packed store rewrites one nibble and keeps the other. */
static inline void aq_act_set(int8_t *t, int32_t i, int32_t code, const aq_storage *s) {
  if (!s || !s->packed) {
    t[i] = (int8_t)code;
    return;
  }
  uint8_t *byte = (uint8_t *)t + (i >> 1);
  const uint32_t nibble = (uint32_t)(code - s->lo) & 15u;
  *byte = (i & 1) ? (uint8_t)((*byte & 0x0Fu) | (nibble << 4)) : (uint8_t)((*byte & 0xF0u) | nibble);
}

/* Elements [start, start + n) of a tensor in storage `s` as int8 codes in `dst`, a byte (two
 * codes) at a time. */
static inline void aq_act_unpack(const int8_t *t, int32_t start, int32_t n, const aq_storage *s,
                                 int8_t *dst) {
  int32_t i = 0;
  if (start & 1) {
    dst[0] = (int8_t)aq_act_get(t, start, s);
    i = 1;
  }
  const uint8_t *src = (const uint8_t *)t + ((start + i) >> 1);
  const int32_t lo = s->lo;
  for (; i + 1 < n; i += 2) {
    const uint32_t byte = *src++;
    dst[i] = (int8_t)((int32_t)(byte & 15u) + lo);
    dst[i + 1] = (int8_t)((int32_t)(byte >> 4) + lo);
  }
  if (i < n) dst[i] = (int8_t)aq_act_get(t, start + i, s);
}

/* Store the n int8 codes of `src` as elements [start, start + n) of packed tensor `t`. */
static inline void aq_act_pack(const int8_t *src, int8_t *t, int32_t start, int32_t n,
                               const aq_storage *s) {
  int32_t i = 0;
  if (start & 1) {
    aq_act_set(t, start, src[0], s);
    i = 1;
  }
  uint8_t *dst = (uint8_t *)t + ((start + i) >> 1);
  const int32_t lo = s->lo;
  for (; i + 1 < n; i += 2)
    *dst++ = (uint8_t)(((uint32_t)(src[i] - lo) & 15u) | (((uint32_t)(src[i + 1] - lo) & 15u) << 4));
  if (i < n) aq_act_set(t, start + i, src[i], s);
}

#endif /* AQ_STORAGE_H */
