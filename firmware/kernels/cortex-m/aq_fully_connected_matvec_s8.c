/* FULLY_CONNECTED matrix x vector, int8 weights: Cortex-M4/M7 (DSP extension) port of
 * firmware/kernels/aq_fully_connected_matvec_s8.c, bit-exact with it.
 *
 * Per 4 elements of K and 4 rows: one LDR of activations, 2 SXTB16, one LDM of the 4 rows'
 * weight words, 8 SXTB16 and 8 SMLAD: 20 instructions for 16 MACs (the input offset is in the
 * bias, so activations are used raw). The sums wrap mod 2^32 as TFLite's do. */
#include "aq_cm_matvec.h"

#define AQ_CM_ROW_S8(w, acc)               \
  "sxtb16 r11, " w "\n\t"                  \
  "smlad " acc ", r11, lr, " acc "\n\t"    \
  "sxtb16 " w ", " w ", ror #8\n\t"        \
  "smlad " acc ", " w ", r12, " acc "\n\t"

#define AQ_CM_STEP_FC_S8                   \
  "ldr lr, [r0], #4\n\t"                   \
  "ldmia r1!, {r4, r5, r6, r7}\n\t"        \
  "sxtb16 r12, lr, ror #8\n\t"             \
  "sxtb16 lr, lr\n\t"                      \
  AQ_CM_ROW_S8("r4", "r3")                 \
  AQ_CM_ROW_S8("r5", "r8")                 \
  AQ_CM_ROW_S8("r6", "r9")                 \
  AQ_CM_ROW_S8("r7", "r10")

/* Hand-allocated: every register but sp, so kept out of line (no frame pointer here). */
static void __attribute__((noinline)) aq_cm_rows4_s8(const int8_t *x, const void *w,
                                                     int32_t chunks, int32_t sums[4]) {
  register const int8_t *xp __asm__("r0") = x;
  register const void *wp __asm__("r1") = w;
  register const int8_t *end __asm__("r2") = x + 4 * chunks;
  register int32_t a0 __asm__("r3") = 0;
  register int32_t a1 __asm__("r8") = 0;
  register int32_t a2 __asm__("r9") = 0;
  register int32_t a3 __asm__("r10") = 0;
  __asm__ volatile(
      "sub r11, %[end], %[x]\n\t"
      "tst r11, #4\n\t"
      "beq 2f\n\t"
      AQ_CM_STEP_FC_S8
      "2:\n\t"
      "cmp %[x], %[end]\n\t"
      "beq 3f\n\t"
      "1:\n\t"
      AQ_CM_STEP_FC_S8
      AQ_CM_STEP_FC_S8
      "cmp %[x], %[end]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [x] "+r"(xp), [w] "+r"(wp), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)
      : [end] "r"(end)
      : "r4", "r5", "r6", "r7", "r11", "r12", "lr", "cc", "memory");
  sums[0] = a0; sums[1] = a1; sums[2] = a2; sums[3] = a3;
}

/* Rows 0 and 1 of a block: LDRD of their words, skipping the two padding rows'. */
#define AQ_CM_STEP_FC2_S8                  \
  "ldr lr, [r0], #4\n\t"                   \
  "ldrd r4, r5, [r1], #16\n\t"             \
  "sxtb16 r12, lr, ror #8\n\t"             \
  "sxtb16 lr, lr\n\t"                      \
  AQ_CM_ROW_S8("r4", "r3")                 \
  AQ_CM_ROW_S8("r5", "r8")

static void __attribute__((noinline)) aq_cm_rows2_s8(const int8_t *x, const void *w,
                                                     int32_t chunks, int32_t sums[4]) {
  register const int8_t *xp __asm__("r0") = x;
  register const void *wp __asm__("r1") = w;
  register const int8_t *end __asm__("r2") = x + 4 * chunks;
  register int32_t a0 __asm__("r3") = 0;
  register int32_t a1 __asm__("r8") = 0;
  __asm__ volatile(
      "cmp %[x], %[end]\n\t"
      "beq 3f\n\t"
      "1:\n\t"
      AQ_CM_STEP_FC2_S8
      "cmp %[x], %[end]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [x] "+r"(xp), [w] "+r"(wp), "+r"(a0), "+r"(a1)
      : [end] "r"(end)
      : "r4", "r5", "r11", "r12", "lr", "cc", "memory");
  sums[0] = a0; sums[1] = a1;
}

const aq_cm_matvec_loops aq_cm_matvec_s8 = {aq_cm_rows4_s8, aq_cm_rows2_s8, 1 << 20, 0};

void aq_fully_connected_matvec_s8(const aq_fully_connected_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output) {
  aq_cm_matvec(p, input, filter, bias, output, &aq_cm_matvec_s8);
}
