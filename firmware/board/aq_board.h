/* Board support: the few services the firmware main loop and the protocol need from a board.
 *
 * One startup file (aq_startup_cortexm.c) serves every Cortex-M board; the UART and the timer
 * each come from a driver file picked by the board's TOML (`aq_uart_<driver>.c`,
 * `aq_timer_<driver>.c`). Board constants come from the generated board_config.h. */
#ifndef AQ_BOARD_H
#define AQ_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up the clocks the firmware relies on, the UART (8N1 at AQ_UART_BAUD) and the timer.
 * Interrupts are enabled on return. */
void aq_board_init(void);

/* SoC bring-up (aq_soc_<driver>.c, picked by the board TOML's [soc] driver): clock tree to the
 * board's rated frequency (oscillator, PLL, regulator, flash wait states, bus prescalers) and the
 * UART's GPIO alternate function. Runs first in aq_board_init(). The "none" driver (emulated
 * boards: QEMU's RCC is a stub whose ready bits never set) does nothing. */
void aq_soc_init(void);

/* UART driver (aq_uart_<driver>.c). */
void aq_uart_init(void);
/* Send n bytes; returns once the last byte is in the transmitter. */
void aq_uart_write(const uint8_t *buf, size_t n);
/* Wait for one received byte and return it (0..255). */
int aq_uart_read_byte(void);

/* Timer driver (aq_timer_<driver>.c). */
void aq_timer_init(void);
/* Monotonic 64-bit tick count since aq_timer_init(), at aq_timer_hz() ticks per second. */
uint64_t aq_timer_ticks(void);
uint32_t aq_timer_hz(void);

/* newlib system calls and fatal errors (aq_syscalls.c, linked into firmware that uses the C
 * library's I/O or C++ libraries: the TFLite Micro export). aq_fatal() reports `what` (and the
 * last diagnostic text) as protocol ERROR 7 for the request being served, then halts. */
void aq_fatal(const char *what) __attribute__((noreturn));
/* Keep text for the next fatal report (stdout/stderr writes, TFLM's log). */
void aq_diag_write(const char *s, size_t n);
void aq_diag_puts(const char *s);

#ifdef __cplusplus
}
#endif
#endif /* AQ_BOARD_H */
