/* The matrix kernel of the Cortex-M conv / fully connected ports (declared in aq_cm_impl.h):
 * every filter row against the column buffer of four pixels, requantised and stored.
 *
 * Inner loop in hand-allocated registers: per int8 chunk one LDR of 4 weights, 2 SXTB16, 2 LDM
 * of the four pixels' pairs and 8 SMLAD (16 MACs); per INT4 chunk one LDR of 8 weights, 3
 * masks, 4 SXTB16, 4 LDM and 16 SMLAD (32 MACs, each product x16 of an undoubled activation,
 * shifted right by 3 exactly to the doubled sum the requantisation takes). */
#include "aq_cm_impl.h"

#define AQ_CM_QUAD(src)                    \
  "ldmia r0!, {r4, r5, r6, r7}\n\t"        \
  "sxtb16 r12, " src "\n\t"                \
  "smlad r3, r12, r4, r3\n\t"              \
  "smlad r8, r12, r5, r8\n\t"              \
  "smlad r9, r12, r6, r9\n\t"              \
  "smlad r10, r12, r7, r10\n\t"

#define AQ_CM_STEP_S8                      \
  "ldr r11, [r1], #4\n\t"                  \
  AQ_CM_QUAD("r11")                        \
  AQ_CM_QUAD("r11, ror #8")

#define AQ_CM_STEP_S4                                                 \
  "ldr r11, [r1], #4\n\t"                                             \
  "lsl lr, r11, #4\n\t"                                               \
  "and lr, lr, #0xF0F0F0F0\n\t"  /* even elements x16 */              \
  "and r11, r11, #0xF0F0F0F0\n\t" /* odd elements x16 */              \
  AQ_CM_QUAD("lr")                                                    \
  AQ_CM_QUAD("lr, ror #8")                                            \
  AQ_CM_QUAD("r11")                                                   \
  AQ_CM_QUAD("r11, ror #8")

/* INT4 with small sums (s4 == 2, see aq_cm_mm.s4_hi): each pair of weights is masked straight
 * into 16-bit lanes as 4096 * w (the nibble at the top of its halfword, so already signed): one
 * AND with the mask in r12 per four pixels' pairs, no SXTB16. */
#define AQ_CM_QUAD_HI(src)                 \
  "and lr, " src "\n\t"                    \
  "ldmia r0!, {r4, r5, r6, r7}\n\t"        \
  "smlad r3, lr, r4, r3\n\t"               \
  "smlad r8, lr, r5, r8\n\t"               \
  "smlad r9, lr, r6, r9\n\t"               \
  "smlad r10, lr, r7, r10\n\t"

#define AQ_CM_STEP_S4_HI                   \
  "ldr r11, [r1], #4\n\t"                 \
  AQ_CM_QUAD_HI("r12, r11, lsl #12") /* (w0, w4) */ \
  AQ_CM_QUAD_HI("r12, r11, lsl #4")  /* (w2, w6) */ \
  AQ_CM_QUAD_HI("r12, r11, lsl #8")  /* (w1, w5) */ \
  AQ_CM_QUAD_HI("r12, r11")          /* (w3, w7) */

static inline __attribute__((always_inline)) void aq_cm_matmul(const aq_cm_mm *mm,
                                                               const uint32_t *col, int8_t *out,
                                                               int n_pix, int s4, int common,
                                                               int sat) {
  const aq_requant *q = mm->q;
  const uint8_t *wrow = (const uint8_t *)mm->filter;
  const int32_t stride = mm->out_stride;
  /* int8 weights on the common paths (never guarded): the doubled bias starts the sums */
  const int fold = !s4 && common;
  for (int32_t c = 0; c < mm->n_ch; ++c, wrow += mm->row_bytes, ++out) {
    const int32_t b2 = (common || mm->bias) ? 2 * mm->bias[c] : 0;
    register const uint32_t *x __asm__("r0") = col;
    register const uint8_t *wp __asm__("r1") = wrow;
    register int32_t n __asm__("r2") = mm->kc;
    register int32_t a0 __asm__("r3") = fold ? b2 : 0;
    register int32_t a1 __asm__("r8") = fold ? b2 : 0;
    register int32_t a2 __asm__("r9") = fold ? b2 : 0;
    register int32_t a3 __asm__("r10") = fold ? b2 : 0;
    if (s4 == 2) {
      register uint32_t mask __asm__("r12") = 0xF000F000u;
      __asm__ volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          AQ_CM_STEP_S4_HI
          "2:\n\t"
          "asrs %[n], %[n], #1\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          AQ_CM_STEP_S4_HI
          AQ_CM_STEP_S4_HI
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : [x] "+r"(x), [w] "+r"(wp), [n] "+r"(n), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)
          : "r"(mask)
          : "r4", "r5", "r6", "r7", "r11", "lr", "cc", "memory");
    } else if (s4) {
      __asm__ volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          AQ_CM_STEP_S4
          "2:\n\t"
          "asrs %[n], %[n], #1\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          AQ_CM_STEP_S4
          AQ_CM_STEP_S4
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : [x] "+r"(x), [w] "+r"(wp), [n] "+r"(n), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)
          :
          : "r4", "r5", "r6", "r7", "r11", "r12", "lr", "cc", "memory");
    } else {
      __asm__ volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          AQ_CM_STEP_S8
          "2:\n\t"
          "asrs %[n], %[n], #1\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          AQ_CM_STEP_S8
          AQ_CM_STEP_S8
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : [x] "+r"(x), [w] "+r"(wp), [n] "+r"(n), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)
          :
          : "r4", "r5", "r6", "r7", "r11", "r12", "lr", "cc", "memory");
    }
    /* Doubled sums: INT4 products carry x16 (s4 == 1) or x4096 (s4 == 2) of an undoubled
     * column, shifted back exactly together with adding the doubled bias. */
    const int sh4 = s4 == 2 ? 11 : s4 ? 3 : 0;
    int32_t bb = fold ? 0 : b2;
    if (s4) __asm__("" : "+r"(bb)); /* keep bb whole so the shift folds into the add */
    int32_t y0 = bb + (a0 >> sh4), y1 = bb + (a1 >> sh4), y2 = bb + (a2 >> sh4),
            y3 = bb + (a3 >> sh4);
    const int32_t m = q->multiplier[c], sh = q->shift[c], o2 = mm->off2p1;
    if (!common && mm->guarded) {   /* plain sums + the bias, wrapped as TFLite's; checked */
      const int32_t d0 = a0 >> sh4, d1 = a1 >> sh4, d2 = a2 >> sh4, d3 = a3 >> sh4;
      const uint32_t b = mm->bias ? (uint32_t)mm->bias[c] : 0u;
      y0 = aq_cm_requant_exact((int32_t)((uint32_t)(d0 >> 1) + b), m, sh, o2);
      y1 = aq_cm_requant_exact((int32_t)((uint32_t)(d1 >> 1) + b), m, sh, o2);
      y2 = aq_cm_requant_exact((int32_t)((uint32_t)(d2 >> 1) + b), m, sh, o2);
      y3 = aq_cm_requant_exact((int32_t)((uint32_t)(d3 >> 1) + b), m, sh, o2);
    } else if (common == 1) {   /* right shifts only: the usual layer */
      const int32_t em1 = ~sh;
      y0 = aq_cm_requant2(y0, m, em1, o2);
      y1 = aq_cm_requant2(y1, m, em1, o2);
      y2 = aq_cm_requant2(y2, m, em1, o2);
      y3 = aq_cm_requant2(y3, m, em1, o2);
    } else {
      y0 = aq_cm_requant2_any(y0, m, sh, o2);
      y1 = aq_cm_requant2_any(y1, m, sh, o2);
      y2 = aq_cm_requant2_any(y2, m, sh, o2);
      y3 = aq_cm_requant2_any(y3, m, sh, o2);
    }
    if (sat == 8 || (!sat && mm->sat == 8)) {
      y0 = __ssat(y0, 8); y1 = __ssat(y1, 8); y2 = __ssat(y2, 8); y3 = __ssat(y3, 8);
    } else if (sat == 4 || (!sat && mm->sat == 4)) {
      y0 = __ssat(y0, 4); y1 = __ssat(y1, 4); y2 = __ssat(y2, 4); y3 = __ssat(y3, 4);
    } else {
      y0 = aq_clamp(y0, q->act_min, q->act_max); y1 = aq_clamp(y1, q->act_min, q->act_max);
      y2 = aq_clamp(y2, q->act_min, q->act_max); y3 = aq_clamp(y3, q->act_min, q->act_max);
    }
    if (common || n_pix == 4) {
      int8_t *o = out;
      __asm__("" : "+r"(o)); /* one pointer and the stride, not four pointers kept on the stack */
      o[0] = (int8_t)y0; o[stride] = (int8_t)y1;
      o += 2 * stride;
      o[0] = (int8_t)y2; o[stride] = (int8_t)y3;
    } else {
      out[0] = (int8_t)y0;
      if (n_pix > 1) out[stride] = (int8_t)y1;
      if (n_pix > 2) out[2 * stride] = (int8_t)y2;
    }
  }
}

/* The common case (4 pixels, a bias) gets its own copies of the loop: `common` 1 when the layer
 * is `plain` (every channel shifting right), with no per-channel check (per activation range:
 * [-128, 127] or the 4-bit [-8, 7] by SSAT, any other by a clamp), 2 when some channel shifts
 * left (ranges of SSAT only). */
static inline __attribute__((always_inline)) void aq_cm_matmul_any(const aq_cm_mm *mm,
                                                                   const uint32_t *col,
                                                                   int8_t *out, int n_pix,
                                                                   int s4) {
  const int common = n_pix == 4 && mm->bias && !mm->guarded ? (mm->plain ? 1 : 2) : 0;
  if (common == 1 && mm->sat == 8) {
    if (s4 && mm->s4_hi)
      aq_cm_matmul(mm, col, out, 4, 2, 1, 8);
    else
      aq_cm_matmul(mm, col, out, 4, s4, 1, 8);
  } else if (common == 1 && mm->sat == 4) {
    if (s4 && mm->s4_hi)
      aq_cm_matmul(mm, col, out, 4, 2, 1, 4);
    else
      aq_cm_matmul(mm, col, out, 4, s4, 1, 4);
  } else if (common == 1) {   /* any other activation range (sat 1: clamp to it) */
    if (s4 && mm->s4_hi)
      aq_cm_matmul(mm, col, out, 4, 2, 1, 1);
    else
      aq_cm_matmul(mm, col, out, 4, s4, 1, 1);
  } else if (common == 2 && mm->sat) {   /* one copy for both clamps: less code */
    if (s4 && mm->s4_hi)
      aq_cm_matmul(mm, col, out, 4, 2, 2, 0);
    else
      aq_cm_matmul(mm, col, out, 4, s4, 2, 0);
  } else if (mm->sat == 4) {
    aq_cm_matmul(mm, col, out, n_pix, s4, 0, 4);
  } else {
    aq_cm_matmul(mm, col, out, n_pix, s4, 0, 0);
  }
}

void aq_cm_matmul_4px_s8(const aq_cm_mm *mm, const uint32_t *col, int8_t *out, int n_pix) {
  aq_cm_matmul_any(mm, col, out, n_pix, 0);
}

void aq_cm_matmul_4px_s4(const aq_cm_mm *mm, const uint32_t *col, int8_t *out, int n_pix) {
  aq_cm_matmul_any(mm, col, out, n_pix, 1);
}
