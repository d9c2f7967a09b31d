/* SoC bring-up for the STM32L4/L4+ (RM0432 for the L4R5/L4S5/L4R9): HSI16 (or HSE) -> main PLL
 * -> SYSCLK, range 1 boost above 80 MHz, flash wait states, bus prescalers, VDDIO2 for port G,
 * then the UART pins' alternate function.
 *
 * Numbers come from the board TOML's [soc] table via board_config.h (AQ_SOC_*). Never used on
 * QEMU. NOT verified on hardware: written from the reference manual only. */
#include <stdint.h>

#include "aq_board.h"
#include "aq_stm32_gpio.h"
#include "board_config.h"

#define AQ_REG(addr) (*(volatile uint32_t *)(addr))
#define AQ_RCC_CR AQ_REG(0x40021000u)
#define AQ_RCC_CFGR AQ_REG(0x40021008u)
#define AQ_RCC_PLLCFGR AQ_REG(0x4002100Cu)
#define AQ_RCC_AHB2ENR AQ_REG(0x4002104Cu)
#define AQ_RCC_APB1ENR1 AQ_REG(0x40021058u)
#define AQ_FLASH_ACR AQ_REG(0x40022000u)
#define AQ_PWR_CR1 AQ_REG(0x40007000u)
#define AQ_PWR_CR2 AQ_REG(0x40007004u)
#define AQ_PWR_SR2 AQ_REG(0x40007014u)
#define AQ_PWR_CR5 AQ_REG(0x40007080u)
#define AQ_GPIO_BASE(port) (0x48000000u + 0x400u * (uint32_t)(port))

#define AQ_CR_HSION (1u << 8)
#define AQ_CR_HSIRDY (1u << 10)
#define AQ_CR_HSEON (1u << 16)
#define AQ_CR_HSERDY (1u << 17)
#define AQ_CR_HSEBYP (1u << 18)
#define AQ_CR_PLLON (1u << 24)
#define AQ_CR_PLLRDY (1u << 25)

#include "aq_stm32_rcc.h" /* needs the AQ_CR_* bits above */
#define AQ_APB1ENR1_PWREN (1u << 28)
#define AQ_PWR_SR2_VOSF (1u << 10)
#define AQ_PWR_CR2_IOSV (1u << 9)
#define AQ_PWR_CR5_R1MODE (1u << 8)
#define AQ_ACR_PRFTEN (1u << 8)
#define AQ_ACR_ICEN (1u << 9)
#define AQ_ACR_DCEN (1u << 10)
/* PLLCFGR: PLLSRC[1:0] (2 = HSI16, 3 = HSE), PLLM[7:4] = M - 1, PLLN[14:8], PLLREN[24],
 * PLLR[26:25] = R/2 - 1. */
#define AQ_PLLCFGR_PLLREN (1u << 24)
#define AQ_PLLCFGR_MASK (3u | (0xFu << 4) | (0x7Fu << 8) | (1u << 24) | (3u << 25))
#define AQ_HPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 8u : (d) == 4 ? 9u : (d) == 8 ? 10u : 11u)
#define AQ_PPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 4u : (d) == 4 ? 5u : (d) == 8 ? 6u : 7u)

#if defined(AQ_SOC_SOURCE_HSE) || defined(AQ_SOC_SOURCE_HSE_BYPASS)
#define AQ_PLL_IN_HZ AQ_SOC_HSE_HZ
#define AQ_PLLSRC 3u
#else
#define AQ_PLL_IN_HZ AQ_SOC_HSI_HZ
#define AQ_PLLSRC 2u
#endif
#ifndef AQ_SOC_BOOST
#define AQ_SOC_BOOST 0
#endif
#ifndef AQ_SOC_VDDIO2
#define AQ_SOC_VDDIO2 0
#endif

#if (AQ_PLL_IN_HZ / AQ_SOC_PLL_M * AQ_SOC_PLL_N / AQ_SOC_PLL_R / AQ_SOC_AHB_DIV) != AQ_CPU_HZ
#error "[soc] PLL settings do not give the board's clock_hz"
#endif
#if AQ_CPU_HZ > 80000000 && !AQ_SOC_BOOST
#error "[soc] above 80 MHz the L4+ needs range 1 boost (boost = true)"
#endif

void aq_soc_init(void)
{
    AQ_RCC_APB1ENR1 |= AQ_APB1ENR1_PWREN;
    (void)AQ_RCC_APB1ENR1;
    /* Voltage range 1 (VOS = 01, the reset value), wait until the regulator has settled. */
    AQ_PWR_CR1 = (AQ_PWR_CR1 & ~(3u << 9)) | (1u << 9);
    while ((AQ_PWR_SR2 & AQ_PWR_SR2_VOSF) != 0u) {
    }
#if AQ_SOC_BOOST
    /* Range 1 boost (R1MODE = 0) while SYSCLK is still slow (MSI 4 MHz at reset). */
    AQ_PWR_CR5 &= ~AQ_PWR_CR5_R1MODE;
#endif

    /* Flash wait states for the target HCLK before raising it; read back to apply. */
    AQ_FLASH_ACR = (AQ_FLASH_ACR & ~0xFu) | (uint32_t)AQ_SOC_FLASH_LATENCY | AQ_ACR_PRFTEN |
                   AQ_ACR_ICEN | AQ_ACR_DCEN;
    while ((AQ_FLASH_ACR & 0xFu) != (uint32_t)AQ_SOC_FLASH_LATENCY) {
    }

    aq_stm32_pll_input_on_pll_off(&AQ_RCC_CR);
    AQ_RCC_PLLCFGR = (AQ_RCC_PLLCFGR & ~AQ_PLLCFGR_MASK) | AQ_PLLSRC |
                     (((uint32_t)AQ_SOC_PLL_M - 1u) << 4) | ((uint32_t)AQ_SOC_PLL_N << 8) |
                     AQ_PLLCFGR_PLLREN | (((uint32_t)AQ_SOC_PLL_R / 2u - 1u) << 25);
    AQ_RCC_CR |= AQ_CR_PLLON;
    while ((AQ_RCC_CR & AQ_CR_PLLRDY) == 0u) {
    }

    /* Above 80 MHz, switch with HCLK = SYSCLK / 2 for at least 1 us, then go to full speed
     * (RM0432: the intermediate step limits the current step on the regulator). */
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~((0xFu << 4) | (7u << 8) | (7u << 11))) | (AQ_HPRE_BITS(2) << 4) |
                  (AQ_PPRE_BITS(AQ_SOC_APB1_DIV) << 8) | (AQ_PPRE_BITS(AQ_SOC_APB2_DIV) << 11);
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~3u) | 3u; /* SW = PLL */
    while (((AQ_RCC_CFGR >> 2) & 3u) != 3u) {
    }
    for (volatile uint32_t i = 0; i < 200u; i++) { /* >= 1 us at HCLK = 60 MHz */
    }
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~(0xFu << 4)) | (AQ_HPRE_BITS(AQ_SOC_AHB_DIV) << 4);

#if AQ_SOC_VDDIO2
    /* Port G[15:2] is supplied by VDDIO2, isolated until IOSV is set (RM0432 PWR_CR2). */
    AQ_PWR_CR2 |= AQ_PWR_CR2_IOSV;
#endif
#ifdef AQ_UART_TX_PORT
    AQ_RCC_AHB2ENR |= (1u << AQ_UART_TX_PORT) | (1u << AQ_UART_RX_PORT);
    (void)AQ_RCC_AHB2ENR;
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_TX_PORT), AQ_UART_TX_PIN, AQ_UART_AF);
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_RX_PORT), AQ_UART_RX_PIN, AQ_UART_AF);
#endif
}
