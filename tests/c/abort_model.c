/* A test-only model that dies the ways C code can: its invoke looks at input[0]:
 *   1: writes a line on stderr, then fails an assert();
 *   2: calls abort();
 *   3: calls exit(3);
 *   otherwise: copies the first 4 input bytes to the output.
 * Linked with runtime/firmware/board/aq_syscalls.c, as the TFLite Micro export is, so each way
 * out is reported over the serial protocol (ERROR 7 with its reason) and the device halts. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aq_model.h"

static int8_t abort_arena[16 + 4];

const uint32_t aq_model_input_bytes = 16u;
const uint32_t aq_model_output_bytes = 4u;
const uint32_t aq_model_arena_bytes = sizeof abort_arena;
const uint8_t aq_model_sha256[32] = {7};

int8_t *aq_model_input(void)
{
    return abort_arena;
}

const int8_t *aq_model_output(void)
{
    return abort_arena + 16;
}

int aq_model_invoke(void)
{
    switch (abort_arena[0]) {
    case 1:
        fputs("model says: about to fail\n", stderr);
        assert(abort_arena[0] != 1);
        break;
    case 2:
        abort();
    case 3:
        exit(3);
    default:
        break;
    }
    memcpy(abort_arena + 16, abort_arena, 4u);
    return 0;
}
