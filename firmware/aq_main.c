/* Firmware main loop: announce READY, then answer the host's frames forever.
 * The model comes from the generated model.c (aq_model.h); the board from board_config.h. */
#include <stdint.h>
#include <string.h>

#include "aq_board.h"
#include "aq_model.h"
#include "aq_protocol.h"
#include "board_config.h"

/* ---- per-op profile (PROFILE requests) ---------------------------------------------------- */

static uint8_t aq_profile_le[AQ_PROFILE_MAX_OPS * 4u]; /* u32 LE ticks of each op */
static uint64_t aq_profile_last;                        /* timer at the end of the previous op */

static void aq_profile_mark(uint32_t op)
{
    uint64_t now = aq_timer_ticks();
    uint64_t d = now - aq_profile_last;
    uint32_t v = d > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)d; /* saturate: > 2^32 ticks per op */
    aq_profile_last = now;
    if (op < AQ_PROFILE_MAX_OPS) {
        uint8_t *p = aq_profile_le + 4u * op;
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    }
}

/* Copy the input into the arena and time exactly one aq_model_invoke(); with `profile`, the
 * model's hook records the ticks of each op as well (the timer read after op i - the read after
 * op i-1, or the start for op 0: the op ticks add up to the whole inference's). */
static int aq_run_inference(const uint8_t *input, uint32_t n, uint64_t *ticks, aq_profile_t *profile)
{
    memcpy(aq_model_input(), input, n);
    if (profile != NULL) {
        uint32_t ops = aq_model_op_count;
        memset(aq_profile_le, 0, sizeof aq_profile_le);
        profile->op_ticks_le = aq_profile_le;
        profile->n_ops = ops < AQ_PROFILE_MAX_OPS ? ops : AQ_PROFILE_MAX_OPS;
        aq_model_op_hook = aq_profile_mark;
    }
    uint64_t t0 = aq_timer_ticks();
    aq_profile_last = t0;
    int rc = aq_model_invoke();
    uint64_t t1 = aq_timer_ticks();
    if (profile != NULL) {
        aq_model_op_hook = NULL;
    }
    *ticks = t1 - t0;
    return rc;
}

int main(void)
{
    aq_board_init();
    if (aq_model_prepare) {
        aq_model_prepare();
    }
    aq_protocol_send_ready(0u);
    for (;;) {
        aq_frame_t frame;
        aq_protocol_receive(&frame);
        aq_protocol_handle(&frame, aq_run_inference);
    }
}
