/* The asm loops of the int8 matrix x vector kernels (aq_fully_connected_matvec_s8,
 * aq_conv_matvec_s8): one block of the matvec layout (4 rows side by side per 4 elements of K,
 * aqedge/codegen/dispatch.py matvec_layout) against the vector, for a block of 4, 3, 2 or 1
 * rows (the last block of N % 4 rows). Private to firmware/kernels/cortex-m/.
 *
 * Each loop is a naked function (its own registers; r0 = x, r1 = weights, r2 = chunks of 4
 * elements, r3 = in, the stack out): it starts from in[] (the biases), adds the raw products
 * (the input offset is in the bias) and stores the sums to out[], wrapping mod 2^32 as
 * TFLite's sums do. Instructions per 4 elements of K (SXTB16 of the weights and SMLAD per row,
 * the activations' load and SXTB16 shared by the rows):
 *   4 rows: LDR, 2 SXTB16, LDM of the 4 rows' words, 8 SXTB16, 8 SMLAD: 20 for 16 MACs;
 *   3 rows: the same without the 4th row: 16 for 12 MACs;
 *   2 rows: LDR, 2 SXTB16, half an LDM of 2 chunks' 4 words, 4 SXTB16, 4 SMLAD: 11.5 for 8;
 *   1 row:  LDR, 2 SXTB16, half an LDRD of 2 chunks' words, 2 SXTB16, 2 SMLAD: 7.5 for 4.
 * (The last block of N % 4 rows holds only its rows' words, dispatch.py matvec_layout.)
 * The loops run 4 chunks (4 and 3 rows) or 8 chunks (2 and 1 rows) per iteration; a chunk
 * count that is not a whole number of iterations starts with shorter steps chosen by its low
 * bits (the MAC instructions keep the flags). */
#include "aq_cm_matvec.h"

/* The loops are naked functions: their parameters arrive in r0-r3 and the stack, which the asm
 * reads directly, so the compiler sees them unused. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* Row sum `acc` += weights of word `w` (x0 x1 x2 x3) . activations lo (x0, x2), hi (x1, x3);
 * `t` is a scratch register and `w` is destroyed. */
#define AQ_CM_MV_ROW(w, t, lo, hi, acc)            \
  "sxtb16 " t ", " w "\n\t"                        \
  "smlad " acc ", " t ", " lo ", " acc "\n\t"      \
  "sxtb16 " w ", " w ", ror #8\n\t"                \
  "smlad " acc ", " w ", " hi ", " acc "\n\t"

/* 4 activations from [r0] into lr (x0, x2) and r12 (x1, x3). */
#define AQ_CM_MV_X1                                \
  "ldr lr, [r0], #4\n\t"                           \
  "sxtb16 r12, lr, ror #8\n\t"                     \
  "sxtb16 lr, lr\n\t"

/* 8 activations from [r0] (two LDR: activations need not be word-aligned, LDRD must be):
 * chunk 0 in r4 (x0, x2) r6 (x1, x3), chunk 1 in r5, r7. */
#define AQ_CM_MV_X2                                \
  "ldr r4, [r0], #4\n\t"                           \
  "ldr r5, [r0], #4\n\t"                           \
  "sxtb16 r6, r4, ror #8\n\t"                      \
  "sxtb16 r4, r4\n\t"                              \
  "sxtb16 r7, r5, ror #8\n\t"                      \
  "sxtb16 r5, r5\n\t"

/* The rows' sums r3 r8 r9 r10 from in[] (r3); the exit stores them to out[]. */
#define AQ_CM_MV_ENTRY(regs)                       \
  "push {r3-r11, lr}\n\t"                          \
  "ldmia r3, {" regs "}\n\t"

#define AQ_CM_MV_EXIT(regs)                        \
  "ldr r11, [sp, #40]\n\t" /* out, the 5th argument */ \
  "stmia r11, {" regs "}\n\t"                      \
  "pop {r3-r11, pc}\n\t"

/* The loop skeleton: r2 = chunks on entry. `one` is a step of 1 chunk, `two` of 2 chunks and
 * the loop body `four` of 4; N (bit 0 of chunks) and C (bit 1) choose the first steps. */
#define AQ_CM_MV_LOOP(one, two, four)              \
  AQ_CM_MV_LOOPX(one, two, four, "2")

/* The same over activations of 2^xs bytes a chunk (xs 3: aq_cm_matvec_widen's int16 pairs). */
#define AQ_CM_MV_LOOPX(one, two, four, xs)         \
  "lsls r11, r2, #31\n\t"                          \
  "add r2, r0, r2, lsl #" xs "\n\t"                \
  "bpl 5f\n\t"                                     \
  one                                              \
  "5:\n\t"                                         \
  "bcc 6f\n\t"                                     \
  two                                              \
  "6:\n\t"                                         \
  "cmp r0, r2\n\t"                                 \
  "beq 3f\n\t"                                     \
  "1:\n\t"                                         \
  four                                             \
  "cmp r0, r2\n\t"                                 \
  "bne 1b\n\t"                                     \
  "3:\n\t"

/* The same with a loop body `eight` of 8 chunks (2 and 1 rows): bits 0 (N) and 1 (C) of
 * chunks choose steps of 1 and 2 chunks, then bit 2 (of the bytes left) one of 4. */
#define AQ_CM_MV_LOOP8(one, two, four, eight)      \
  "lsls r11, r2, #31\n\t"                          \
  "add r2, r0, r2, lsl #2\n\t"                     \
  "bpl 5f\n\t"                                     \
  one                                              \
  "5:\n\t"                                         \
  "bcc 6f\n\t"                                     \
  two                                              \
  "6:\n\t"                                         \
  "sub r11, r2, r0\n\t"                            \
  "tst r11, #16\n\t"                               \
  "beq 7f\n\t"                                     \
  four                                             \
  "7:\n\t"                                         \
  "cmp r0, r2\n\t"                                 \
  "beq 3f\n\t"                                     \
  "1:\n\t"                                         \
  eight                                            \
  "cmp r0, r2\n\t"                                 \
  "bne 1b\n\t"                                     \
  "3:\n\t"

/* ---- 4 rows: r3 r8 r9 r10, weights r4..r7 ---- */
#define AQ_CM_MV4_STEP                             \
  AQ_CM_MV_X1                                      \
  "ldmia r1!, {r4, r5, r6, r7}\n\t"                \
  AQ_CM_MV_ROW("r4", "r11", "lr", "r12", "r3")     \
  AQ_CM_MV_ROW("r5", "r11", "lr", "r12", "r8")     \
  AQ_CM_MV_ROW("r6", "r11", "lr", "r12", "r9")     \
  AQ_CM_MV_ROW("r7", "r11", "lr", "r12", "r10")

static void __attribute__((naked, noinline)) aq_cm_mv4_s8(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(
      AQ_CM_MV_ENTRY("r3, r8, r9, r10")
      AQ_CM_MV_LOOP(AQ_CM_MV4_STEP, AQ_CM_MV4_STEP AQ_CM_MV4_STEP,
                    AQ_CM_MV4_STEP AQ_CM_MV4_STEP AQ_CM_MV4_STEP AQ_CM_MV4_STEP)
      AQ_CM_MV_EXIT("r3, r8, r9, r10"));
}

/* ---- 4 rows against the widened activations (aq_cm_matvec_widen): LDM of a chunk's pairs
 * r11 (x0, x2), r12 (x1, x3) instead of LDR and 2 SXTB16: 18 for 16 MACs ---- */
#define AQ_CM_MV4W_STEP                            \
  "ldmia r0!, {r11, r12}\n\t"                      \
  "ldmia r1!, {r4, r5, r6, r7}\n\t"                \
  AQ_CM_MV_ROW("r4", "lr", "r11", "r12", "r3")     \
  AQ_CM_MV_ROW("r5", "lr", "r11", "r12", "r8")     \
  AQ_CM_MV_ROW("r6", "lr", "r11", "r12", "r9")     \
  AQ_CM_MV_ROW("r7", "lr", "r11", "r12", "r10")

static void __attribute__((naked, noinline)) aq_cm_mv4w_s8(const int8_t *x, const void *w,
                                                           int32_t chunks, const int32_t *in,
                                                           int32_t *out) {
  __asm__ volatile(
      AQ_CM_MV_ENTRY("r3, r8, r9, r10")
      AQ_CM_MV_LOOPX(AQ_CM_MV4W_STEP, AQ_CM_MV4W_STEP AQ_CM_MV4W_STEP,
                     AQ_CM_MV4W_STEP AQ_CM_MV4W_STEP AQ_CM_MV4W_STEP AQ_CM_MV4W_STEP, "3")
      AQ_CM_MV_EXIT("r3, r8, r9, r10"));
}

/* ---- 3 rows: the 4-row step without the 4th row (the last block holds 3 words a chunk) ---- */
#define AQ_CM_MV3_STEP                             \
  AQ_CM_MV_X1                                      \
  "ldmia r1!, {r4, r5, r6}\n\t"                    \
  AQ_CM_MV_ROW("r4", "r11", "lr", "r12", "r3")     \
  AQ_CM_MV_ROW("r5", "r11", "lr", "r12", "r8")     \
  AQ_CM_MV_ROW("r6", "r11", "lr", "r12", "r9")

static void __attribute__((naked, noinline)) aq_cm_mv3_s8(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(
      AQ_CM_MV_ENTRY("r3, r8, r9")
      AQ_CM_MV_LOOP(AQ_CM_MV3_STEP, AQ_CM_MV3_STEP AQ_CM_MV3_STEP,
                    AQ_CM_MV3_STEP AQ_CM_MV3_STEP AQ_CM_MV3_STEP AQ_CM_MV3_STEP)
      AQ_CM_MV_EXIT("r3, r8, r9"));
}

/* ---- 2 rows: r3 r8; the last block holds 2 words a chunk: LDRD for one, LDM for two ---- */
#define AQ_CM_MV2_ONE                              \
  "ldr r4, [r0], #4\n\t"                           \
  "sxtb16 r6, r4, ror #8\n\t"                      \
  "sxtb16 r4, r4\n\t"                              \
  "ldrd r11, r12, [r1], #8\n\t"                    \
  AQ_CM_MV_ROW("r11", "lr", "r4", "r6", "r3")      \
  AQ_CM_MV_ROW("r12", "lr", "r4", "r6", "r8")

#define AQ_CM_MV2_TWO                              \
  AQ_CM_MV_X2                                      \
  "ldmia r1!, {r9, r10, r11, r12}\n\t"             \
  AQ_CM_MV_ROW("r9", "lr", "r4", "r6", "r3")       \
  AQ_CM_MV_ROW("r10", "lr", "r4", "r6", "r8")      \
  AQ_CM_MV_ROW("r11", "lr", "r5", "r7", "r3")      \
  AQ_CM_MV_ROW("r12", "lr", "r5", "r7", "r8")

static void __attribute__((naked, noinline)) aq_cm_mv2_s8(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(
      AQ_CM_MV_ENTRY("r3, r8")
      AQ_CM_MV_LOOP8(AQ_CM_MV2_ONE, AQ_CM_MV2_TWO, AQ_CM_MV2_TWO AQ_CM_MV2_TWO,
                     AQ_CM_MV2_TWO AQ_CM_MV2_TWO AQ_CM_MV2_TWO AQ_CM_MV2_TWO)
      AQ_CM_MV_EXIT("r3, r8"));
}

/* ---- 1 row: r3; the last block holds a word a chunk: LDR for one, LDRD for two ---- */
#define AQ_CM_MV1_ONE                              \
  "ldr r4, [r0], #4\n\t"                           \
  "sxtb16 r6, r4, ror #8\n\t"                      \
  "sxtb16 r4, r4\n\t"                              \
  "ldr r11, [r1], #4\n\t"                          \
  AQ_CM_MV_ROW("r11", "lr", "r4", "r6", "r3")

#define AQ_CM_MV1_TWO                              \
  AQ_CM_MV_X2                                      \
  "ldrd r11, r12, [r1], #8\n\t"                    \
  AQ_CM_MV_ROW("r11", "lr", "r4", "r6", "r3")      \
  AQ_CM_MV_ROW("r12", "lr", "r5", "r7", "r3")

static void __attribute__((naked, noinline)) aq_cm_mv1_s8(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(
      AQ_CM_MV_ENTRY("r3")
      AQ_CM_MV_LOOP8(AQ_CM_MV1_ONE, AQ_CM_MV1_TWO, AQ_CM_MV1_TWO AQ_CM_MV1_TWO,
                     AQ_CM_MV1_TWO AQ_CM_MV1_TWO AQ_CM_MV1_TWO AQ_CM_MV1_TWO)
      AQ_CM_MV_EXIT("r3"));
}

const aq_cm_matvec_loops aq_cm_matvec_s8 = {{aq_cm_mv1_s8, aq_cm_mv2_s8, aq_cm_mv3_s8, aq_cm_mv4_s8},
                                            aq_cm_mv4w_s8, 0};
