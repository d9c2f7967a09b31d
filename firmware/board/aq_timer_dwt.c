/* Timer driver for real Cortex-M3/M4/M7: the DWT cycle counter (CYCCNT), counting core clock
 * cycles, extended to 64 bits.
 *
 * CYCCNT is a free-running 32-bit up-counter (wraps every 2^32 cycles: 36 s at 120 MHz). Every
 * read folds the cycles since the previous read into a 64-bit count; the SysTick interrupt does
 * the same every 2^24 cycles so a wrap is never missed between two reads. That interrupt costs a
 * few dozen cycles per 2^24 inside a timed inference (< 0.001 %).
 *
 * QEMU implements no DWT (CYCCNT reads 0): emulated boards use aq_timer_systick.c instead.
 * NOT verified on hardware. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

#define AQ_REG(addr) (*(volatile uint32_t *)(addr))
#define AQ_DEMCR AQ_REG(0xE000EDFCu)
#define AQ_DWT_CTRL AQ_REG(0xE0001000u)
#define AQ_DWT_CYCCNT AQ_REG(0xE0001004u)
#define AQ_DWT_LAR AQ_REG(0xE0001FB0u) /* lock access register (Cortex-M7) */
#define AQ_SYST_CSR AQ_REG(0xE000E010u)
#define AQ_SYST_RVR AQ_REG(0xE000E014u)
#define AQ_SYST_CVR AQ_REG(0xE000E018u)

#define AQ_DEMCR_TRCENA (1u << 24)
#define AQ_DWT_CTRL_CYCCNTENA (1u << 0)
#define AQ_SYST_ENABLE_TICKINT_CORE 7u

static uint64_t aq_dwt_total;
static uint32_t aq_dwt_last;

static uint64_t aq_dwt_fold(void)
{
    uint32_t now = AQ_DWT_CYCCNT;
    aq_dwt_total += (uint32_t)(now - aq_dwt_last); /* modulo 2^32: correct across one wrap */
    aq_dwt_last = now;
    return aq_dwt_total;
}

void SysTick_Handler(void)
{
    (void)aq_dwt_fold();
}

void aq_timer_init(void)
{
    AQ_DEMCR |= AQ_DEMCR_TRCENA; /* the DWT is part of the trace block: power it */
    AQ_DWT_LAR = 0xC5ACCE55u;    /* unlock on a Cortex-M7; write-ignored where there is no lock */
    AQ_DWT_CYCCNT = 0u;
    AQ_DWT_CTRL |= AQ_DWT_CTRL_CYCCNTENA;
    aq_dwt_total = 0u;
    aq_dwt_last = 0u;
    AQ_SYST_CSR = 0u;
    AQ_SYST_RVR = 0x00FFFFFFu;
    AQ_SYST_CVR = 0u;
    AQ_SYST_CSR = AQ_SYST_ENABLE_TICKINT_CORE; /* processor clock, interrupt, enable */
}

uint64_t aq_timer_ticks(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    uint64_t now = aq_dwt_fold();
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    return now;
}

uint32_t aq_timer_hz(void)
{
    return (uint32_t)AQ_TIMER_HZ;
}
