/* A test-only model implementing aq_model.h that is too big for its board on purpose:
 * HUGE_WEIGHTS bytes of const weights (flash) and HUGE_ARENA bytes of arena (RAM). */
#include <stdint.h>

#include "aq_model.h"

#ifndef HUGE_WEIGHTS
#define HUGE_WEIGHTS 16u
#endif
#ifndef HUGE_ARENA
#define HUGE_ARENA 1024u
#endif

static const int8_t huge_weights[HUGE_WEIGHTS] = {1, 2, 3};
static int8_t huge_arena[HUGE_ARENA];

const uint32_t aq_model_input_bytes = 16u;
const uint32_t aq_model_output_bytes = 16u;
const uint32_t aq_model_arena_bytes = HUGE_ARENA;
const uint8_t aq_model_sha256[32] = {0};

int8_t *aq_model_input(void)
{
    return huge_arena;
}

const int8_t *aq_model_output(void)
{
    return huge_arena + 16;
}

int aq_model_invoke(void)
{
    uint32_t acc = 0u;
    for (uint32_t i = 0; i < HUGE_WEIGHTS; i += 4096u) {
        acc += (uint32_t)huge_weights[i];
    }
    for (uint32_t i = 0; i < 16u; i++) {
        huge_arena[16u + i] = (int8_t)(huge_arena[i] + (int8_t)acc);
    }
    return 0;
}
