/* The asm loops of the packed INT4 matrix x vector kernels (aq_fully_connected_matvec_s4,
 * aq_conv_matvec_s4): one block of the matvec layout (per 4 elements of K, two words: rows
 * (0, 1) then (2, 3), nibbles a0 a1 b0 b1 a2 a3 b2 b3; aqedge/codegen/dispatch.py
 * matvec_layout) against the vector, for a block of 4, 3, 2 or 1 rows. Private to
 * firmware/kernels/cortex-m/.
 *
 * Naked functions as in aq_cm_matvec_s8.c (r0 = x, r1 = weights, r2 = chunks, r3 = in, the
 * stack out).
 * Each AND with 0xF000F000 masks two nibbles of a row into the top of the halfwords (4096 * w,
 * already signed: no unpacking) for one SMLAD. A piece's sum is 4096 * S mod 2^32 for the true
 * sum S of its w * x, each in [-1016, 1024]; over pieces of at most AQ_CM_MV_S4_CHUNKS chunks
 * (496 elements) |S| < 2^19, so 4096 * S fits an int32 and sum >> 12 (exact: every product is
 * a multiple of 4096) is S, added to out[] per piece. Loops run 4 chunks (4 and 3 rows) or 8
 * (2 and 1 rows) per iteration. Per 4 elements of K:
 *   4 rows: LDR, 2 SXTB16, LDRD of the 16 nibbles, 8 AND, 8 SMLAD: 20 for 16 MACs;
 *   3 rows: the same without the 4th row: 16 for 12 MACs;
 *   2 rows: LDR, 2 SXTB16, half an LDRD of 2 chunks' words, 4 AND, 4 SMLAD: 11.5 for 8;
 *   1 row:  the same words (row b zero), 2 AND, 2 SMLAD: 7.5 for 4.
 * (The last block of 1 or 2 rows holds one word a chunk, dispatch.py matvec_layout.) */
#include "aq_cm_matvec.h"

/* The loops are naked functions: their parameters arrive in r0-r3 and the stack, which the asm
 * reads directly, so the compiler sees them unused. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* Row a of weight word `w` (shifts 12, 8) or row b (4, 0) into `acc`: activations in lo
 * (x0, x2) and hi (x1, x3), the mask in r6, r11 scratch. */
#define AQ_CM_MV4_HALF(w, s0, s1, lo, hi, acc)     \
  "and r11, r6, " w ", lsl #" s0 "\n\t"            \
  "smlad " acc ", r11, " lo ", " acc "\n\t"        \
  "and r11, r6, " w ", lsl #" s1 "\n\t"            \
  "smlad " acc ", r11, " hi ", " acc "\n\t"

#define AQ_CM_MV4_ROW_A(w, acc) AQ_CM_MV4_HALF(w, "12", "8", "lr", "r12", acc)
#define AQ_CM_MV4_ROW_B(w, acc) AQ_CM_MV4_HALF(w, "4", "0", "lr", "r12", acc)

/* 4 activations from [r0] into lr (x0, x2) and r12 (x1, x3). */
#define AQ_CM_MV4_X                                \
  "ldr lr, [r0], #4\n\t"                           \
  "sxtb16 r12, lr, ror #8\n\t"                     \
  "sxtb16 lr, lr\n\t"

#define AQ_CM_MV4_ADD1 "add r4, r4, r3, asr #12\n\t"
#define AQ_CM_MV4_ADD2 AQ_CM_MV4_ADD1 "add r5, r5, r8, asr #12\n\t"
#define AQ_CM_MV4_ADD3 AQ_CM_MV4_ADD2 "add r7, r7, r9, asr #12\n\t"
#define AQ_CM_MV4_ADD4 AQ_CM_MV4_ADD3 "add r12, r12, r10, asr #12\n\t"

/* The whole loop: out[] = in[] (`regs`, one per row), then per piece of at most
 * AQ_CM_MV_S4_CHUNKS chunks (r7 = its end) the sums r3 r8 r9 r10 from zero and out[] +=
 * sums >> 12 (`adds`). Within a piece, `first` (AQ_CM_MV4_FIRST4 or _FIRST8: the steps a chunk
 * count that is not a whole number of iterations starts with; r7 = the piece's bytes) and
 * then the loop body `body`. The activations take 2^xs bytes a chunk (xs 2: int8; 3: the
 * int16 pairs of aq_cm_matvec_widen), `piece` bytes of them a piece. */
#define AQ_CM_MV4_BODY(regs, adds, first, body, xs, piece) \
  "push {r3-r11, lr}\n\t"                          \
  "ldr r11, [sp, #40]\n\t" /* out, the 5th argument */ \
  "ldmia r3, {" regs "}\n\t"                       \
  "stmia r11, {" regs "}\n\t"                      \
  "mov r6, #0xF000F000\n\t"                        \
  "add r2, r0, r2, lsl #" xs "\n\t"                \
  "cmp r0, r2\n\t"                                 \
  "beq 9f\n\t"                                     \
  "0:\n\t"                                         \
  "sub r7, r2, r0\n\t"                             \
  "cmp r7, #" piece "\n\t"                         \
  "it hi\n\t"                                      \
  "movhi r7, #" piece "\n\t"                       \
  "mov r3, #0\n\t"                                 \
  "mov r8, #0\n\t"                                 \
  "mov r9, #0\n\t"                                 \
  "mov r10, #0\n\t"                                \
  first                                            \
  "cmp r0, r7\n\t"                                 \
  "beq 8f\n\t"                                     \
  "1:\n\t"                                         \
  body                                             \
  "cmp r0, r7\n\t"                                 \
  "bne 1b\n\t"                                     \
  "8:\n\t"                                         \
  "ldr r11, [sp, #40]\n\t"                         \
  "ldmia r11, {" regs "}\n\t"                      \
  adds                                             \
  "stmia r11, {" regs "}\n\t"                      \
  "cmp r0, r2\n\t"                                 \
  "bne 0b\n\t"                                     \
  "9:\n\t"                                         \
  "pop {r3-r11, pc}\n\t"

/* Bits 0 (N) and 1 (C) of the piece's chunk count (bit 32 - `bit` of its bytes: 29 for int8
 * activations, 28 for int16 pairs) choose a step of 1 and of 2 chunks (the MAC instructions
 * keep the flags); r7 becomes the piece's end. */
#define AQ_CM_MV4_FIRST4(one, two, bit)            \
  "lsls r11, r7, #" bit "\n\t"                     \
  "add r7, r0, r7\n\t"                             \
  "bpl 5f\n\t"                                     \
  one                                              \
  "5:\n\t"                                         \
  "bcc 6f\n\t"                                     \
  two                                              \
  "6:\n\t"

/* For 8-chunk bodies (2 and 1 rows): bits 0 (N) and 1 (C) of the piece's chunk count choose
 * steps of 1 and 2 chunks, then bit 2 (of the bytes left) one of 4. */
#define AQ_CM_MV4_FIRST8(one, two, four)           \
  "lsls r11, r7, #29\n\t"                          \
  "add r7, r0, r7\n\t"                             \
  "bpl 5f\n\t"                                     \
  one                                              \
  "5:\n\t"                                         \
  "bcc 6f\n\t"                                     \
  two                                              \
  "6:\n\t"                                         \
  "sub r11, r7, r0\n\t"                            \
  "tst r11, #16\n\t"                               \
  "beq 7f\n\t"                                     \
  four                                             \
  "7:\n\t"

/* 4 * AQ_CM_MV_S4_CHUNKS, as asm text. */
#define AQ_CM_MV4_PIECE_BYTES "496"
#define AQ_CM_MV4_PIECE_BYTES16 "992"
_Static_assert(4 * AQ_CM_MV_S4_CHUNKS == 496, "AQ_CM_MV4_PIECE_BYTES");

#define AQ_CM_MV4_FOUR(step) step step step step

/* ---- 4 rows ---- */
#define AQ_CM_MV4_STEP4                            \
  AQ_CM_MV4_X                                      \
  "ldrd r4, r5, [r1], #8\n\t"                      \
  AQ_CM_MV4_ROW_A("r4", "r3") AQ_CM_MV4_ROW_B("r4", "r8")  \
  AQ_CM_MV4_ROW_A("r5", "r9") AQ_CM_MV4_ROW_B("r5", "r10")

static void __attribute__((naked, noinline)) aq_cm_mv4_s4(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(AQ_CM_MV4_BODY("r4, r5, r7, r12", AQ_CM_MV4_ADD4,
                                   AQ_CM_MV4_FIRST4(AQ_CM_MV4_STEP4, AQ_CM_MV4_STEP4 AQ_CM_MV4_STEP4, "29"),
                                   AQ_CM_MV4_FOUR(AQ_CM_MV4_STEP4), "2", AQ_CM_MV4_PIECE_BYTES));
}

/* ---- 4 rows against the widened activations (aq_cm_matvec_widen): LDM of a chunk's pairs
 * r12 (x0, x2), lr (x1, x3) instead of LDR and 2 SXTB16: 18 for 16 MACs ---- */
#define AQ_CM_MV4_STEP4W                           \
  "ldmia r0!, {r12, lr}\n\t"                       \
  "ldrd r4, r5, [r1], #8\n\t"                      \
  AQ_CM_MV4_HALF("r4", "12", "8", "r12", "lr", "r3")   \
  AQ_CM_MV4_HALF("r4", "4", "0", "r12", "lr", "r8")    \
  AQ_CM_MV4_HALF("r5", "12", "8", "r12", "lr", "r9")   \
  AQ_CM_MV4_HALF("r5", "4", "0", "r12", "lr", "r10")

static void __attribute__((naked, noinline)) aq_cm_mv4w_s4(const int8_t *x, const void *w,
                                                           int32_t chunks, const int32_t *in,
                                                           int32_t *out) {
  __asm__ volatile(AQ_CM_MV4_BODY("r4, r5, r7, r12", AQ_CM_MV4_ADD4,
                                   AQ_CM_MV4_FIRST4(AQ_CM_MV4_STEP4W, AQ_CM_MV4_STEP4W AQ_CM_MV4_STEP4W, "28"),
                                   AQ_CM_MV4_FOUR(AQ_CM_MV4_STEP4W), "3", AQ_CM_MV4_PIECE_BYTES16));
}

/* ---- 3 rows: without row b of the second word ---- */
#define AQ_CM_MV4_STEP3                            \
  AQ_CM_MV4_X                                      \
  "ldrd r4, r5, [r1], #8\n\t"                      \
  AQ_CM_MV4_ROW_A("r4", "r3") AQ_CM_MV4_ROW_B("r4", "r8")  \
  AQ_CM_MV4_ROW_A("r5", "r9")

static void __attribute__((naked, noinline)) aq_cm_mv3_s4(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(AQ_CM_MV4_BODY("r4, r5, r7", AQ_CM_MV4_ADD3,
                                   AQ_CM_MV4_FIRST4(AQ_CM_MV4_STEP3, AQ_CM_MV4_STEP3 AQ_CM_MV4_STEP3, "29"),
                                   AQ_CM_MV4_FOUR(AQ_CM_MV4_STEP3), "2", AQ_CM_MV4_PIECE_BYTES));
}

/* ---- 2 rows: the last block holds a word (rows 0, 1) a chunk: LDR for one, LDRD for two ---- */
#define AQ_CM_MV4_STEP2                            \
  AQ_CM_MV4_X                                      \
  "ldr r4, [r1], #4\n\t"                           \
  AQ_CM_MV4_ROW_A("r4", "r3") AQ_CM_MV4_ROW_B("r4", "r8")

/* 2 chunks: activations r4 (x0, x2) r12 (x1, x3), then r5 lr; weights r9, r10. */
#define AQ_CM_MV4_X2                               \
  "ldr r4, [r0], #4\n\t"                           \
  "ldr r5, [r0], #4\n\t"                           \
  "ldrd r9, r10, [r1], #8\n\t"                     \
  "sxtb16 r12, r4, ror #8\n\t"                     \
  "sxtb16 r4, r4\n\t"                              \
  "sxtb16 lr, r5, ror #8\n\t"                      \
  "sxtb16 r5, r5\n\t"

#define AQ_CM_MV4_TWO2                             \
  AQ_CM_MV4_X2                                     \
  AQ_CM_MV4_HALF("r9", "12", "8", "r4", "r12", "r3")  \
  AQ_CM_MV4_HALF("r9", "4", "0", "r4", "r12", "r8")   \
  AQ_CM_MV4_HALF("r10", "12", "8", "r5", "lr", "r3")  \
  AQ_CM_MV4_HALF("r10", "4", "0", "r5", "lr", "r8")

static void __attribute__((naked, noinline)) aq_cm_mv2_s4(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(AQ_CM_MV4_BODY("r4, r5", AQ_CM_MV4_ADD2,
                                   AQ_CM_MV4_FIRST8(AQ_CM_MV4_STEP2, AQ_CM_MV4_TWO2,
                                                    AQ_CM_MV4_TWO2 AQ_CM_MV4_TWO2),
                                   AQ_CM_MV4_FOUR(AQ_CM_MV4_TWO2), "2", AQ_CM_MV4_PIECE_BYTES));
}

/* ---- 1 row: row a of the same words (row b zero) ---- */
#define AQ_CM_MV4_STEP1                            \
  AQ_CM_MV4_X                                      \
  "ldr r4, [r1], #4\n\t"                           \
  AQ_CM_MV4_ROW_A("r4", "r3")

#define AQ_CM_MV4_TWO1                             \
  AQ_CM_MV4_X2                                     \
  AQ_CM_MV4_HALF("r9", "12", "8", "r4", "r12", "r3")  \
  AQ_CM_MV4_HALF("r10", "12", "8", "r5", "lr", "r3")

static void __attribute__((naked, noinline)) aq_cm_mv1_s4(const int8_t *x, const void *w,
                                                          int32_t chunks, const int32_t *in,
                                                          int32_t *out) {
  __asm__ volatile(AQ_CM_MV4_BODY("r4", AQ_CM_MV4_ADD1,
                                   AQ_CM_MV4_FIRST8(AQ_CM_MV4_STEP1, AQ_CM_MV4_TWO1,
                                                    AQ_CM_MV4_TWO1 AQ_CM_MV4_TWO1),
                                   AQ_CM_MV4_FOUR(AQ_CM_MV4_TWO1), "2", AQ_CM_MV4_PIECE_BYTES));
}

const aq_cm_matvec_loops aq_cm_matvec_s4 = {{aq_cm_mv1_s4, aq_cm_mv2_s4, aq_cm_mv3_s4, aq_cm_mv4_s4},
                                            aq_cm_mv4w_s4, 1};
