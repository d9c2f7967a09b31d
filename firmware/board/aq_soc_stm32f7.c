/* SoC bring-up for the STM32F74x/F75x (RM0385): HSI (or HSE) -> main PLL -> SYSCLK, regulator
 * scale 1 and over-drive above 180 MHz, flash wait states with the ART accelerator, AHB/APB
 * prescalers, the VCP UART's bus clock and its pins' alternate function.
 *
 * The RCC, PWR and GPIO register layout is the F4's at the same addresses; FLASH_ACR differs
 * (ARTEN at bit 9 instead of the F4's ICEN/DCEN). The Cortex-M7 L1 caches are enabled by the
 * startup (aq_startup_cortexm.c, AQ_CORE_CORTEX_M7). Numbers come from the board TOML's [soc]
 * table via board_config.h (AQ_SOC_*); the preprocessor checks they give AQ_CPU_HZ.
 * NOT verified on hardware: written from the reference manual only. */
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
#define AQ_RCC_APB2ENR AQ_REG(0x40023844u)
#define AQ_FLASH_ACR AQ_REG(0x40023C00u)
#define AQ_PWR_CR1 AQ_REG(0x40007000u)
#define AQ_PWR_CSR1 AQ_REG(0x40007004u)
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
#define AQ_PWR_CR1_ODEN (1u << 16)
#define AQ_PWR_CR1_ODSWEN (1u << 17)
#define AQ_PWR_CSR1_ODRDY (1u << 16)
#define AQ_PWR_CSR1_ODSWRDY (1u << 17)
#define AQ_ACR_PRFTEN (1u << 8)
#define AQ_ACR_ARTEN (1u << 9)
/* PLLCFGR fields as on the F4: PLLM[5:0], PLLN[14:6], PLLP[17:16] = P/2 - 1, PLLSRC[22],
 * PLLQ[27:24]. */
#define AQ_PLLCFGR_MASK (0x3Fu | (0x1FFu << 6) | (3u << 16) | (1u << 22) | (0xFu << 24))
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

/* The VCP UART's bus clock: USART1/USART6 on APB2, USART2/3, UART4/5/7/8 on APB1. */
#if AQ_UART_BASE == 0x40011000u
#define AQ_UART_ENR AQ_RCC_APB2ENR
#define AQ_UART_EN_BIT 4 /* USART1EN */
#elif AQ_UART_BASE == 0x40011400u
#define AQ_UART_ENR AQ_RCC_APB2ENR
#define AQ_UART_EN_BIT 5 /* USART6EN */
#elif AQ_UART_BASE == 0x40004400u
#define AQ_UART_ENR AQ_RCC_APB1ENR
#define AQ_UART_EN_BIT 17 /* USART2EN */
#elif AQ_UART_BASE == 0x40004800u
#define AQ_UART_ENR AQ_RCC_APB1ENR
#define AQ_UART_EN_BIT 18 /* USART3EN */
#else
#error "AQ_UART_BASE is not an STM32F7 USART1/2/3/6"
#endif

void aq_soc_init(void)
{
    /* Regulator scale: the PWR block needs its clock; VOS is written while the PLL is off. */
    AQ_RCC_APB1ENR |= AQ_APB1ENR_PWREN;
    (void)AQ_RCC_APB1ENR;
    AQ_PWR_CR1 = (AQ_PWR_CR1 & ~(3u << 14)) | ((uint32_t)AQ_SOC_VOS << 14);

    aq_stm32_pll_input_on_pll_off(&AQ_RCC_CR);
    AQ_RCC_PLLCFGR = (AQ_RCC_PLLCFGR & ~AQ_PLLCFGR_MASK) | (uint32_t)AQ_SOC_PLL_M |
                     ((uint32_t)AQ_SOC_PLL_N << 6) | (((uint32_t)AQ_SOC_PLL_P / 2u - 1u) << 16) |
                     (AQ_PLLSRC << 22) | ((uint32_t)AQ_SOC_PLL_Q << 24);
    AQ_RCC_CR |= AQ_CR_PLLON;

#if AQ_SOC_OVERDRIVE
    /* Over-drive: enable it, then switch the core domain to it, while the PLL locks
     * (RM0385 4.1.4). Required above 180 MHz. */
    AQ_PWR_CR1 |= AQ_PWR_CR1_ODEN;
    while ((AQ_PWR_CSR1 & AQ_PWR_CSR1_ODRDY) == 0u) {
    }
    AQ_PWR_CR1 |= AQ_PWR_CR1_ODSWEN;
    while ((AQ_PWR_CSR1 & AQ_PWR_CSR1_ODSWRDY) == 0u) {
    }
#endif

    /* Wait states before the clock rises (read back until in effect); prefetch and the ART
     * accelerator serve code fetched over the flash's AXIM/ITCM paths. */
    AQ_FLASH_ACR = (uint32_t)AQ_SOC_FLASH_LATENCY | AQ_ACR_PRFTEN | AQ_ACR_ARTEN;
    while ((AQ_FLASH_ACR & 0xFu) != (uint32_t)AQ_SOC_FLASH_LATENCY) {
    }

    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) |
                  (AQ_HPRE_BITS(AQ_SOC_AHB_DIV) << 4) | (AQ_PPRE_BITS(AQ_SOC_APB1_DIV) << 10) |
                  (AQ_PPRE_BITS(AQ_SOC_APB2_DIV) << 13);
    while ((AQ_RCC_CR & AQ_CR_PLLRDY) == 0u) {
    }
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~3u) | 2u; /* SW = PLL */
    while (((AQ_RCC_CFGR >> 2) & 3u) != 2u) {
    }

    /* The VCP UART: bus clock (its kernel clock stays PCLK, the DCKCFGR2 reset value), then the
     * pins: GPIO port clocks (AHB1ENR bit n = port n) and alternate function. */
    AQ_UART_ENR |= (1u << AQ_UART_EN_BIT);
    (void)AQ_UART_ENR;
    AQ_RCC_AHB1ENR |= (1u << AQ_UART_TX_PORT) | (1u << AQ_UART_RX_PORT);
    (void)AQ_RCC_AHB1ENR;
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_TX_PORT), AQ_UART_TX_PIN, AQ_UART_AF);
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_RX_PORT), AQ_UART_RX_PIN, AQ_UART_AF);
}
