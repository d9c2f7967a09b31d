/* A test-only model implementing aq_model.h, for the firmware/protocol tests on QEMU.
 *
 * Input: 784 int8, output: 10 int8 where, with all arithmetic modulo 2^32,
 *   acc_k = k; for j = k, k+10, k+20, ... < 784: acc_k = acc_k * 31 + (uint8)input[j]
 *   output[k] = (int8)(acc_k & 0xFF)
 * (tests/test_firmware_qemu.py computes the same in Python). The arena is a static buffer:
 * input at offset 0, output right after it. The "sha256" is bytes 7*i + 1. */
#include <stdint.h>

#include "aq_model.h"

#define ECHO_IN 784u
#define ECHO_OUT 10u

static int8_t echo_arena[ECHO_IN + ECHO_OUT + 2u] __attribute__((aligned(8)));

const uint32_t aq_model_input_bytes = ECHO_IN;
const uint32_t aq_model_output_bytes = ECHO_OUT;
const uint32_t aq_model_arena_bytes = sizeof echo_arena;
const uint8_t aq_model_sha256[32] = {
    1, 8, 15, 22, 29, 36, 43, 50, 57, 64, 71, 78, 85, 92, 99, 106,
    113, 120, 127, 134, 141, 148, 155, 162, 169, 176, 183, 190, 197, 204, 211, 218,
};

int8_t *aq_model_input(void)
{
    return echo_arena;
}

const int8_t *aq_model_output(void)
{
    return echo_arena + ECHO_IN;
}

int aq_model_invoke(void)
{
    const uint8_t *in = (const uint8_t *)echo_arena;
    int8_t *out = echo_arena + ECHO_IN;
    for (uint32_t k = 0; k < ECHO_OUT; k++) {
        uint32_t acc = k;
        for (uint32_t j = k; j < ECHO_IN; j += ECHO_OUT) {
            acc = acc * 31u + in[j];
        }
        out[k] = (int8_t)(uint8_t)(acc & 0xFFu);
    }
    return 0;
}
