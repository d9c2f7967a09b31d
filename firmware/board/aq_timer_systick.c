/* Timer driver: the ARMv7-M SysTick on the processor clock, extended to 64 bits.
 *
 * SysTick is a 24-bit down-counter reloading 0xFFFFFF, so one wrap is 2^24 ticks; its interrupt
 * counts the wraps. Each aq_timer_ticks() call folds the ticks counted so far into a 64-bit base
 * and restarts the counter (a write to SYST_CVR). That makes the count's phase start at the
 * read instead of at some earlier, data-dependent moment: on QEMU with -icount, where a tick is
 * 1e9 / AQ_TIMER_HZ instructions (5.95 at 168 MHz), t1 - t0 around the same code is then the
 * same on every run instead of jittering by one tick. The price is that the few cycles between
 * the read and the restart are not counted: the count stays monotonic but runs slightly slow
 * against wall time, which does not matter for timing a section of code.
 *
 * ticks -> instructions on QEMU -icount shift=0: instructions = ticks * 1e9 / AQ_TIMER_HZ. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

#define AQ_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define AQ_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define AQ_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define AQ_SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

#define AQ_CSR_ENABLE (1u << 0)
#define AQ_CSR_TICKINT (1u << 1)
#define AQ_CSR_CLKSOURCE (1u << 2) /* 1: processor clock */
#define AQ_ICSR_PENDSTCLR (1u << 25)
#define AQ_ICSR_PENDSTSET (1u << 26)
#define AQ_SYSTICK_RELOAD 0x00FFFFFFu
#define AQ_SYSTICK_PERIOD 0x01000000u /* RELOAD + 1 */

static volatile uint32_t aq_systick_wraps; /* wraps since the last restart */
static uint64_t aq_systick_base;           /* ticks counted before the last restart */

void SysTick_Handler(void)
{
    aq_systick_wraps++;
}

void aq_timer_init(void)
{
    AQ_SYST_CSR = 0u;
    aq_systick_wraps = 0u;
    aq_systick_base = 0u;
    AQ_SYST_RVR = AQ_SYSTICK_RELOAD;
    AQ_SYST_CVR = 0u; /* any write clears the counter: it loads RELOAD on the next tick */
    AQ_SCB_ICSR = AQ_ICSR_PENDSTCLR;
    AQ_SYST_CSR = AQ_CSR_CLKSOURCE | AQ_CSR_TICKINT | AQ_CSR_ENABLE;
}

uint64_t aq_timer_ticks(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    uint32_t wraps = aq_systick_wraps;
    uint32_t val = AQ_SYST_CVR & AQ_SYSTICK_RELOAD;
    /* A wrap whose interrupt has not run yet (masked just now, or still pending) shows as
     * PENDSTSET: count it, and re-read VAL so it is certainly from after that wrap. */
    if ((AQ_SCB_ICSR & AQ_ICSR_PENDSTSET) != 0u) {
        wraps++;
        val = AQ_SYST_CVR & AQ_SYSTICK_RELOAD;
    }
    /* After a restart the counter holds 0, loads RELOAD on the first tick, and reaches 0 again
     * (raising the interrupt) after AQ_SYSTICK_PERIOD ticks. */
    uint64_t now = aq_systick_base + (uint64_t)wraps * AQ_SYSTICK_PERIOD +
                   (uint64_t)((AQ_SYSTICK_PERIOD - val) & AQ_SYSTICK_RELOAD);
    AQ_SYST_CVR = 0u;                  /* restart: the next count starts here */
    AQ_SCB_ICSR = AQ_ICSR_PENDSTCLR;   /* a wrap in the last few cycles is already counted */
    aq_systick_wraps = 0u;
    aq_systick_base = now;
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    return now;
}

uint32_t aq_timer_hz(void)
{
    return (uint32_t)AQ_TIMER_HZ;
}
