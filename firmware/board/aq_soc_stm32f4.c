/* SoC bring-up for the STM32F4 (RM0368 for the F401, RM0390 for the F446, RM0090 for the
 * F405/F407): oscillator -> main PLL -> SYSCLK, regulator scale (and over-drive above 168 MHz),
 * flash wait states, AHB/APB prescalers, then the UART pins' alternate function.
 *
 * Every number comes from the board TOML's [soc] table via board_config.h (AQ_SOC_*); the
 * preprocessor checks that they give AQ_CPU_HZ. Never used on QEMU (its RCC is a stub whose
 * ready bits never set): emulated boards use aq_soc_none.c.
 * NOT verified on hardware: written from the reference manuals only. */
#include <stdint.h>

#include "aq_board.h"
#include "aq_stm32_gpio.h"
#include "board_config.h"

#define AQ_REG(addr) (*(volatile uint32_t *)(addr))
#define AQ_RCC_CR AQ_REG(0x40023800u)
#define AQ_RCC_PLLCFGR AQ_REG(0x40023804u)
#define AQ_RCC_CFGR AQ_REG(0x40023808u)
#define AQ_RCC_AHB1ENR AQ_REG(0x40023830u)
#define AQ_RCC_APB1ENR AQ_REG(0x40023840u)
#define AQ_FLASH_ACR AQ_REG(0x40023C00u)
#define AQ_PWR_CR AQ_REG(0x40007000u)
#define AQ_PWR_CSR AQ_REG(0x40007004u)
#define AQ_GPIO_BASE(port) (0x40020000u + 0x400u * (uint32_t)(port))

#define AQ_CR_HSION (1u << 0)
#define AQ_CR_HSIRDY (1u << 1)
#define AQ_CR_HSEON (1u << 16)
#define AQ_CR_HSERDY (1u << 17)
#define AQ_CR_HSEBYP (1u << 18)
#define AQ_CR_PLLON (1u << 24)
#define AQ_CR_PLLRDY (1u << 25)

#include "aq_stm32_rcc.h" /* needs the AQ_CR_* bits above */
#define AQ_APB1ENR_PWREN (1u << 28)
#define AQ_PWR_CR_ODEN (1u << 16)
#define AQ_PWR_CR_ODSWEN (1u << 17)
#define AQ_PWR_CSR_ODRDY (1u << 16)
#define AQ_PWR_CSR_ODSWRDY (1u << 17)
#define AQ_ACR_PRFTEN (1u << 8)
#define AQ_ACR_ICEN (1u << 9)
#define AQ_ACR_DCEN (1u << 10)
/* PLLCFGR fields: PLLM[5:0], PLLN[14:6], PLLP[17:16] = P/2 - 1, PLLSRC[22], PLLQ[27:24]. */
#define AQ_PLLCFGR_MASK (0x3Fu | (0x1FFu << 6) | (3u << 16) | (1u << 22) | (0xFu << 24))
/* CFGR prescaler encodings: HPRE[7:4] (1, 2, 4 ... 512), PPRE1[12:10] and PPRE2[15:13]. */
#define AQ_HPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 8u : (d) == 4 ? 9u : (d) == 8 ? 10u : 11u)
#define AQ_PPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 4u : (d) == 4 ? 5u : (d) == 8 ? 6u : 7u)

#if defined(AQ_SOC_SOURCE_HSE) || defined(AQ_SOC_SOURCE_HSE_BYPASS)
#define AQ_PLL_IN_HZ AQ_SOC_HSE_HZ
#define AQ_PLLSRC 1u
#else
#define AQ_PLL_IN_HZ AQ_SOC_HSI_HZ
#define AQ_PLLSRC 0u
#endif
#ifndef AQ_SOC_OVERDRIVE
#define AQ_SOC_OVERDRIVE 0
#endif

#if (AQ_PLL_IN_HZ / AQ_SOC_PLL_M * AQ_SOC_PLL_N / AQ_SOC_PLL_P / AQ_SOC_AHB_DIV) != AQ_CPU_HZ
#error "[soc] PLL settings do not give the board's clock_hz"
#endif
#if (AQ_SOC_PLL_P != 2) && (AQ_SOC_PLL_P != 4) && (AQ_SOC_PLL_P != 6) && (AQ_SOC_PLL_P != 8)
#error "[soc] pll_p must be 2, 4, 6 or 8"
#endif

void aq_soc_init(void)
{
    /* Regulator: the PWR block needs its clock; VOS may only change while the PLL is off. */
    AQ_RCC_APB1ENR |= AQ_APB1ENR_PWREN;
    (void)AQ_RCC_APB1ENR;
    AQ_PWR_CR = (AQ_PWR_CR & ~(3u << 14)) | ((uint32_t)AQ_SOC_VOS << 14);

    /* Oscillator. HSI is on at reset; an HSE (crystal or, with bypass, the ST-LINK's MCO) must
     * be started. SYSCLK stays on HSI until the PLL is locked. */
    aq_stm32_pll_input_on_pll_off(&AQ_RCC_CR);
    AQ_RCC_PLLCFGR = (AQ_RCC_PLLCFGR & ~AQ_PLLCFGR_MASK) | (uint32_t)AQ_SOC_PLL_M |
                     ((uint32_t)AQ_SOC_PLL_N << 6) | (((uint32_t)AQ_SOC_PLL_P / 2u - 1u) << 16) |
                     (AQ_PLLSRC << 22) | ((uint32_t)AQ_SOC_PLL_Q << 24);
    AQ_RCC_CR |= AQ_CR_PLLON;

#if AQ_SOC_OVERDRIVE
    /* Over-drive (F42x/F43x/F446/F469): enable, then switch the core domain to it, while the
     * PLL locks (RM0390 5.1.4 "Entering Over-drive mode"). */
    AQ_PWR_CR |= AQ_PWR_CR_ODEN;
    while ((AQ_PWR_CSR & AQ_PWR_CSR_ODRDY) == 0u) {
    }
    AQ_PWR_CR |= AQ_PWR_CR_ODSWEN;
    while ((AQ_PWR_CSR & AQ_PWR_CSR_ODSWRDY) == 0u) {
    }
#endif

    /* Flash wait states before the clock goes up; read back so the new latency is in effect.
     * Prefetch and the ART instruction/data caches make 0-wait-state-like execution likely. */
    AQ_FLASH_ACR = (uint32_t)AQ_SOC_FLASH_LATENCY | AQ_ACR_PRFTEN | AQ_ACR_ICEN | AQ_ACR_DCEN;
    while ((AQ_FLASH_ACR & 0xFu) != (uint32_t)AQ_SOC_FLASH_LATENCY) {
    }

    /* Bus prescalers (APB1/APB2 within their maxima before SYSCLK rises), then SYSCLK = PLL. */
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) |
                  (AQ_HPRE_BITS(AQ_SOC_AHB_DIV) << 4) | (AQ_PPRE_BITS(AQ_SOC_APB1_DIV) << 10) |
                  (AQ_PPRE_BITS(AQ_SOC_APB2_DIV) << 13);
    while ((AQ_RCC_CR & AQ_CR_PLLRDY) == 0u) {
    }
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~3u) | 2u; /* SW = PLL */
    while (((AQ_RCC_CFGR >> 2) & 3u) != 2u) {
    }

#ifdef AQ_UART_TX_PORT
    /* UART pins: GPIO port clocks on (AHB1ENR bit n = port n), then alternate function. */
    AQ_RCC_AHB1ENR |= (1u << AQ_UART_TX_PORT) | (1u << AQ_UART_RX_PORT);
    (void)AQ_RCC_AHB1ENR;
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_TX_PORT), AQ_UART_TX_PIN, AQ_UART_AF);
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_RX_PORT), AQ_UART_RX_PIN, AQ_UART_AF);
#endif
}
