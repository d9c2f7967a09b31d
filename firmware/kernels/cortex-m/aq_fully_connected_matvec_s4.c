/* FULLY_CONNECTED matrix x vector, packed INT4 weights: Cortex-M4/M7 (DSP extension) port of
 * firmware/kernels/aq_fully_connected_matvec_s4.c, bit-exact with it.
 *
 * Per 4 elements of K and 4 rows: one LDR of activations, 2 SXTB16, one LDRD of the 4 rows'
 * 16 nibbles, 8 AND and 8 SMLAD: 20 instructions for 16 MACs. Each AND masks two nibbles into
 * the top of the halfwords (4096 * w, already signed: no unpacking). Products of 4096 * w * x
 * reach 2^22, so a call sums at most 64 chunks (256 elements, < 2^31) and the driver adds
 * sum >> 12 (exact: every product is a multiple of 4096) into the row's int32 sum. */
#include "aq_cm_matvec.h"

/* Rows a (sum `acc_a`) and b (`acc_b`) of weight word `w`: nibbles a0 a1 b0 b1 a2 a3 b2 b3. */
#define AQ_CM_ROWS2_S4(w, acc_a, acc_b)              \
  "and r11, r6, " w ", lsl #12\n\t" /* a (w0, w2) */ \
  "smlad " acc_a ", r11, lr, " acc_a "\n\t"          \
  "and r11, r6, " w ", lsl #8\n\t"  /* a (w1, w3) */ \
  "smlad " acc_a ", r11, r12, " acc_a "\n\t"         \
  "and r11, r6, " w ", lsl #4\n\t"  /* b (w0, w2) */ \
  "smlad " acc_b ", r11, lr, " acc_b "\n\t"          \
  "and r11, r6, " w "\n\t"          /* b (w1, w3) */ \
  "smlad " acc_b ", r11, r12, " acc_b "\n\t"

#define AQ_CM_STEP_FC_S4                   \
  "ldr lr, [r0], #4\n\t"                   \
  "ldrd r4, r5, [r1], #8\n\t"              \
  "sxtb16 r12, lr, ror #8\n\t"             \
  "sxtb16 lr, lr\n\t"                      \
  AQ_CM_ROWS2_S4("r4", "r3", "r8")         \
  AQ_CM_ROWS2_S4("r5", "r9", "r10")

/* At most this many chunks per call (see above). */
#define AQ_CM_FC_S4_BLOCK 64

static void __attribute__((noinline)) aq_cm_rows4_s4(const int8_t *x, const void *w,
                                                     int32_t chunks, int32_t sums[4]) {
  register const int8_t *xp __asm__("r0") = x;
  register const void *wp __asm__("r1") = w;
  register const int8_t *end __asm__("r2") = x + 4 * chunks;
  register uint32_t mask __asm__("r6") = 0xF000F000u;
  register int32_t a0 __asm__("r3") = 0;
  register int32_t a1 __asm__("r8") = 0;
  register int32_t a2 __asm__("r9") = 0;
  register int32_t a3 __asm__("r10") = 0;
  __asm__ volatile(
      "sub r11, %[end], %[x]\n\t"
      "tst r11, #4\n\t"
      "beq 2f\n\t"
      AQ_CM_STEP_FC_S4
      "2:\n\t"
      "cmp %[x], %[end]\n\t"
      "beq 3f\n\t"
      "1:\n\t"
      AQ_CM_STEP_FC_S4
      AQ_CM_STEP_FC_S4
      "cmp %[x], %[end]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [x] "+r"(xp), [w] "+r"(wp), "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3)
      : [end] "r"(end), "r"(mask)
      : "r4", "r5", "r11", "r12", "lr", "cc", "memory");
  sums[0] = a0; sums[1] = a1; sums[2] = a2; sums[3] = a3;
}

/* Rows 0 and 1 of a block: their word, skipping the padding rows'. */
static void __attribute__((noinline)) aq_cm_rows2_s4(const int8_t *x, const void *w,
                                                     int32_t chunks, int32_t sums[4]) {
  register const int8_t *xp __asm__("r0") = x;
  register const void *wp __asm__("r1") = w;
  register const int8_t *end __asm__("r2") = x + 4 * chunks;
  register uint32_t mask __asm__("r6") = 0xF000F000u;
  register int32_t a0 __asm__("r3") = 0;
  register int32_t a1 __asm__("r8") = 0;
  __asm__ volatile(
      "cmp %[x], %[end]\n\t"
      "beq 3f\n\t"
      "1:\n\t"
      "ldr lr, [r0], #4\n\t"
      "ldr r4, [r1], #8\n\t"
      "sxtb16 r12, lr, ror #8\n\t"
      "sxtb16 lr, lr\n\t"
      AQ_CM_ROWS2_S4("r4", "r3", "r8")
      "cmp %[x], %[end]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [x] "+r"(xp), [w] "+r"(wp), "+r"(a0), "+r"(a1)
      : [end] "r"(end), "r"(mask)
      : "r4", "r11", "r12", "lr", "cc", "memory");
  sums[0] = a0; sums[1] = a1;
}

const aq_cm_matvec_loops aq_cm_matvec_s4 = {aq_cm_rows4_s4, aq_cm_rows2_s4, AQ_CM_FC_S4_BLOCK, 1};

void aq_fully_connected_matvec_s4(const aq_fully_connected_params *p, const int8_t *input,
                                  const uint8_t *filter, const int32_t *bias, int8_t *output) {
  aq_cm_matvec(p, input, filter, bias, output, &aq_cm_matvec_s4);
}
