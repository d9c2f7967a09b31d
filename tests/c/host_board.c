/* Board support for running the real firmware (aq_main.c + protocol) on the host, for tests:
 * the UART is stdin/stdout, the timer advances 7 ticks per read. End of input ends the program. */
#include <stdio.h>
#include <stdlib.h>

#include "aq_board.h"

void aq_board_init(void) {}
void aq_uart_init(void) {}
void aq_timer_init(void) {}

void aq_uart_write(const uint8_t *buf, size_t n)
{
    fwrite(buf, 1, n, stdout);
}

int aq_uart_read_byte(void)
{
    int c = getchar();
    if (c == EOF) {
        fflush(stdout);
        exit(0);
    }
    return c;
}

uint64_t aq_timer_ticks(void)
{
    static uint64_t t;
    t += 7u;
    return t;
}

uint32_t aq_timer_hz(void)
{
    return 1000u;
}
