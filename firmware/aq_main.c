/* Firmware main loop: announce READY, then answer the host's frames forever.
 * The model comes from the generated model.c (aq_model.h); the board from board_config.h. */
#include <stdint.h>
#include <string.h>

#include "aq_board.h"
#include "aq_model.h"
#include "aq_protocol.h"
#include "board_config.h"

/* Copy the input into the arena and time exactly one aq_model_invoke(). */
static int aq_run_inference(const uint8_t *input, uint32_t n, uint64_t *ticks)
{
    memcpy(aq_model_input(), input, n);
    uint64_t t0 = aq_timer_ticks();
    int rc = aq_model_invoke();
    uint64_t t1 = aq_timer_ticks();
    *ticks = t1 - t0;
    return rc;
}

int main(void)
{
    aq_board_init();
    aq_protocol_send_ready(0u);
    for (;;) {
        aq_frame_t frame;
        aq_protocol_receive(&frame);
        aq_protocol_handle(&frame, aq_run_inference);
    }
}
