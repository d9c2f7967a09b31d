/* Startup for every Cortex-M board: vector table, reset handler, default exception handlers
 * and aq_board_init(). Needs the symbols of templates/firmware/linker.ld.j2. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

/* Linker script symbols. */
extern uint32_t _sidata; /* .data load address in flash */
extern uint32_t _sdata, _edata;
extern uint32_t _sbss, _ebss;
extern uint32_t _estack; /* initial stack pointer: top of the stack section */

int main(void);

void Reset_Handler(void);
void aq_default_handler(void);
void aq_fault_handler(void);

/* Weak aliases: a driver (e.g. the SysTick timer) defines the handler it needs. */
void NMI_Handler(void) __attribute__((weak, alias("aq_default_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("aq_fault_handler")));
void MemManage_Handler(void) __attribute__((weak, alias("aq_fault_handler")));
void BusFault_Handler(void) __attribute__((weak, alias("aq_fault_handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("aq_fault_handler")));
void SVC_Handler(void) __attribute__((weak, alias("aq_default_handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("aq_default_handler")));
void PendSV_Handler(void) __attribute__((weak, alias("aq_default_handler")));
void SysTick_Handler(void) __attribute__((weak, alias("aq_default_handler")));

typedef void (*aq_vector_t)(void);

/* The 16 system exception vectors of ARMv7-M. No peripheral interrupt is enabled by the
 * firmware, so the table stops there. */
__attribute__((section(".isr_vector"), used)) const aq_vector_t aq_vector_table[16] = {
    (aq_vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0,
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
};

#define AQ_SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

#ifdef AQ_CORE_CORTEX_M7
/* Cortex-M7 L1 caches (ARMv7-M ARM B2.2.7 / Cortex-M7 TRM): system control space registers. */
#define AQ_SCB_CCR (*(volatile uint32_t *)0xE000ED14u)
#define AQ_SCB_CCSIDR (*(volatile uint32_t *)0xE000ED80u)  /* cache size ID of the selected cache */
#define AQ_SCB_CSSELR (*(volatile uint32_t *)0xE000ED84u)  /* selects it: 0 = L1 data */
#define AQ_SCB_ICIALLU (*(volatile uint32_t *)0xE000EF50u) /* invalidate all I-cache to PoU */
#define AQ_SCB_DCISW (*(volatile uint32_t *)0xE000EF60u)   /* invalidate D-cache line by set/way */
#define AQ_CCR_DC (1u << 16)
#define AQ_CCR_IC (1u << 17)

#define AQ_DSB_ISB() __asm volatile("dsb 0xF\n\tisb 0xF" ::: "memory")

/* Invalidate, then enable, the instruction and data caches. The caches' contents are undefined
 * after reset, so both are invalidated first (the D-cache by set/way: every line of every way),
 * with barriers so no access overtakes the maintenance. Nothing in the firmware uses DMA, so the
 * write-back D-cache needs no maintenance afterwards. */
__attribute__((noinline)) static void aq_cm7_cache_enable(void)
{
    AQ_DSB_ISB();
    AQ_SCB_ICIALLU = 0u;
    AQ_DSB_ISB();
    AQ_SCB_CCR |= AQ_CCR_IC;
    AQ_DSB_ISB();

    AQ_SCB_CSSELR = 0u; /* level 1, data cache */
    AQ_DSB_ISB();
    uint32_t ccsidr = AQ_SCB_CCSIDR;
    uint32_t sets = (ccsidr >> 13) & 0x7FFFu;  /* NumSets - 1 */
    uint32_t ways = (ccsidr >> 3) & 0x3FFu;    /* Associativity - 1 */
    uint32_t set_shift = (ccsidr & 7u) + 4u;   /* log2(line bytes): LineSize = log2(words) - 2 */
    uint32_t way_shift = ways ? (uint32_t)__builtin_clz(ways) : 0u; /* ways in the top bits */
    for (uint32_t set = 0u;; set++) {
        for (uint32_t way = 0u;; way++) {
            AQ_SCB_DCISW = (ways ? (way << way_shift) : 0u) | (set << set_shift);
            if (way == ways) {
                break;
            }
        }
        if (set == sets) {
            break;
        }
    }
    AQ_DSB_ISB();
    AQ_SCB_CCR |= AQ_CCR_DC;
    AQ_DSB_ISB();
}
#endif

void Reset_Handler(void)
{
    /* Full access to CP10/CP11 (the FPU) before any floating-point instruction runs. Harmless
     * on cores without an FPU (the bits read back as zero). */
    AQ_SCB_CPACR |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#ifdef AQ_CORE_CORTEX_M7
    aq_cm7_cache_enable();
#endif

    const uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }

#ifdef AQ_RUN_CONSTRUCTORS
    /* C++ projects (the TFLite Micro export) need their static constructors run. */
    extern void __libc_init_array(void);
    __libc_init_array();
#endif
    (void)main();
    for (;;) {
    }
}

void aq_default_handler(void)
{
    for (;;) {
    }
}

/* A separate symbol so a debugger shows at once that the core faulted. */
void aq_fault_handler(void)
{
    for (;;) {
    }
}

void aq_board_init(void)
{
    aq_soc_init();
    aq_uart_init();
    aq_timer_init();
    __asm volatile("cpsie i" ::: "memory");
}

/* newlib's crt0 is not linked (-nostartfiles); these keep __libc_init_array linkable. */
void _init(void) {}
void _fini(void) {}
