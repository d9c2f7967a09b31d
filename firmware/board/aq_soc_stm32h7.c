/* SoC bring-up for the STM32H742/743/753/750 (RM0433): LDO supply configuration, voltage scale 1,
 * HSI 64 MHz -> PLL1 (wide VCO) -> sys_ck, the D1/D2/D3 domain prescalers, flash wait states and
 * programming delay, then the VCP UART's bus clock and its pins' alternate function.
 *
 * CPU clock = sys_ck / D1CPRE (the board's clock_hz); AXI/AHB = CPU / HPRE; each APB = AHB / its
 * prescaler. The Cortex-M7 L1 caches are enabled by the startup (aq_startup_cortexm.c,
 * AQ_CORE_CORTEX_M7). Numbers come from the board TOML's [soc] table via board_config.h
 * (AQ_SOC_*); the preprocessor checks they give AQ_CPU_HZ.
 * NOT verified on hardware: written from the reference manual only. */
#include <stdint.h>

#include "aq_board.h"
#include "aq_stm32_gpio.h"
#include "board_config.h"

#define AQ_REG(addr) (*(volatile uint32_t *)(addr))
#define AQ_RCC_BASE 0x58024400u
#define AQ_RCC_CR AQ_REG(AQ_RCC_BASE + 0x00u)
#define AQ_RCC_CFGR AQ_REG(AQ_RCC_BASE + 0x10u)
#define AQ_RCC_D1CFGR AQ_REG(AQ_RCC_BASE + 0x18u)
#define AQ_RCC_D2CFGR AQ_REG(AQ_RCC_BASE + 0x1Cu)
#define AQ_RCC_D3CFGR AQ_REG(AQ_RCC_BASE + 0x20u)
#define AQ_RCC_PLLCKSELR AQ_REG(AQ_RCC_BASE + 0x28u)
#define AQ_RCC_PLLCFGR AQ_REG(AQ_RCC_BASE + 0x2Cu)
#define AQ_RCC_PLL1DIVR AQ_REG(AQ_RCC_BASE + 0x30u)
#define AQ_RCC_AHB4ENR AQ_REG(AQ_RCC_BASE + 0xE0u)
#define AQ_RCC_APB1LENR AQ_REG(AQ_RCC_BASE + 0xE8u)
#define AQ_RCC_APB2ENR AQ_REG(AQ_RCC_BASE + 0xF0u)
#define AQ_PWR_BASE 0x58024800u
#define AQ_PWR_CSR1 AQ_REG(AQ_PWR_BASE + 0x04u)
#define AQ_PWR_CR3 AQ_REG(AQ_PWR_BASE + 0x0Cu)
#define AQ_PWR_D3CR AQ_REG(AQ_PWR_BASE + 0x18u)
#define AQ_FLASH_ACR AQ_REG(0x52002000u)
#define AQ_GPIO_BASE(port) (0x58020000u + 0x400u * (uint32_t)(port))

#define AQ_CR_HSION (1u << 0)
#define AQ_CR_HSIRDY (1u << 2)
#define AQ_CR_PLL1ON (1u << 24)
#define AQ_CR_PLL1RDY (1u << 25)
#define AQ_PWR_CR3_BYPASS (1u << 0)
#define AQ_PWR_CR3_LDOEN (1u << 1)
#define AQ_PWR_CR3_SCUEN (1u << 2)
#define AQ_PWR_CSR1_ACTVOSRDY (1u << 13)
#define AQ_PWR_D3CR_VOSRDY (1u << 13)
/* PLLCFGR: PLL1FRACEN[0], PLL1VCOSEL[1] (0 = wide VCO), PLL1RGE[3:2], DIVP1EN/DIVQ1EN/DIVR1EN
 * [16]/[17]/[18]. */
#define AQ_PLLCFGR_PLL1_MASK (0xFu | (7u << 16))
#define AQ_PLLCFGR_DIV1EN (7u << 16)
/* D1CPRE / HPRE encodings (4 bits: 0xxx = 1, 1000 = 2, 1001 = 4 ... 1111 = 512) and the APB
 * prescalers (3 bits: 0xx = 1, 100 = 2, 101 = 4, 110 = 8, 111 = 16). */
#define AQ_HPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 8u : (d) == 4 ? 9u : (d) == 8 ? 10u : 11u)
#define AQ_PPRE_BITS(d) ((d) == 1 ? 0u : (d) == 2 ? 4u : (d) == 4 ? 5u : (d) == 8 ? 6u : 7u)

/* PLL1 input range (PLL1RGE): 0 = 1..2 MHz, 1 = 2..4, 2 = 4..8, 3 = 8..16 MHz. */
#define AQ_PLL_REF_HZ (AQ_SOC_HSI_HZ / AQ_SOC_PLL_M)
#define AQ_PLL1RGE (AQ_PLL_REF_HZ > 8000000u ? 3u : AQ_PLL_REF_HZ > 4000000u ? 2u \
                    : AQ_PLL_REF_HZ > 2000000u ? 1u : 0u)

#if (AQ_SOC_HSI_HZ / AQ_SOC_PLL_M * AQ_SOC_PLL_N / AQ_SOC_PLL_P / AQ_SOC_D1CPRE_DIV) != AQ_CPU_HZ
#error "[soc] PLL1 settings do not give the board's clock_hz"
#endif
#if AQ_PLL_REF_HZ < 2000000u || AQ_PLL_REF_HZ > 16000000u
#error "[soc] the wide VCO needs a 2..16 MHz reference (hsi_hz / pll_m)"
#endif
#if AQ_SOC_PLL_P != 1 && (AQ_SOC_PLL_P % 2) != 0
#error "[soc] PLL1's P divider must be 1 or even"
#endif

#if AQ_UART_BASE == 0x40004800u
#define AQ_UART_ENR AQ_RCC_APB1LENR
#define AQ_UART_EN_BIT 18 /* USART3EN */
#elif AQ_UART_BASE == 0x40004400u
#define AQ_UART_ENR AQ_RCC_APB1LENR
#define AQ_UART_EN_BIT 17 /* USART2EN */
#elif AQ_UART_BASE == 0x40011000u
#define AQ_UART_ENR AQ_RCC_APB2ENR
#define AQ_UART_EN_BIT 4 /* USART1EN */
#else
#error "AQ_UART_BASE is not an STM32H7 USART1/2/3"
#endif

void aq_soc_init(void)
{
    /* Supply: the LDO (the Nucleo's configuration). PWR_CR3's supply bits may be written once
     * after power-on; then wait until the regulator output is ready (ACTVOSRDY). */
    AQ_PWR_CR3 = (AQ_PWR_CR3 & ~(AQ_PWR_CR3_SCUEN | AQ_PWR_CR3_BYPASS)) | AQ_PWR_CR3_LDOEN;
    while ((AQ_PWR_CSR1 & AQ_PWR_CSR1_ACTVOSRDY) == 0u) {
    }
    /* Voltage scale (VOS1 for 400 MHz), then wait for VOSRDY before raising the clock. */
    AQ_PWR_D3CR = (AQ_PWR_D3CR & ~(3u << 14)) | ((uint32_t)AQ_SOC_VOS << 14);
    while ((AQ_PWR_D3CR & AQ_PWR_D3CR_VOSRDY) == 0u) {
    }

    /* HSI 64 MHz: on at reset, HSIDIV = 1. */
    AQ_RCC_CR |= AQ_CR_HSION;
    while ((AQ_RCC_CR & AQ_CR_HSIRDY) == 0u) {
    }

    /* PLL1: off (as after reset), source HSI (PLLSRC = 0), DIVM1, range and wide VCO, dividers. */
    AQ_RCC_CR &= ~AQ_CR_PLL1ON;
    while ((AQ_RCC_CR & AQ_CR_PLL1RDY) != 0u) {
    }
    AQ_RCC_PLLCKSELR = (AQ_RCC_PLLCKSELR & ~(3u | (0x3Fu << 4))) | ((uint32_t)AQ_SOC_PLL_M << 4);
    AQ_RCC_PLLCFGR = (AQ_RCC_PLLCFGR & ~AQ_PLLCFGR_PLL1_MASK) | (AQ_PLL1RGE << 2) |
                     AQ_PLLCFGR_DIV1EN;
    AQ_RCC_PLL1DIVR = ((uint32_t)AQ_SOC_PLL_N - 1u) | (((uint32_t)AQ_SOC_PLL_P - 1u) << 9) |
                      (((uint32_t)AQ_SOC_PLL_Q - 1u) << 16) | (((uint32_t)AQ_SOC_PLL_R - 1u) << 24);
    AQ_RCC_CR |= AQ_CR_PLL1ON;

    /* Flash: read latency and programming delay for the AXI clock, read back until in effect. */
    AQ_FLASH_ACR = (uint32_t)AQ_SOC_FLASH_LATENCY | ((uint32_t)AQ_SOC_WRHIGHFREQ << 4);
    while ((AQ_FLASH_ACR & 0x3Fu) != ((uint32_t)AQ_SOC_FLASH_LATENCY | ((uint32_t)AQ_SOC_WRHIGHFREQ << 4))) {
    }

    /* Domain prescalers before the switch: D1CPRE, HPRE, D1PPRE (APB3); D2PPRE1/2; D3PPRE. */
    AQ_RCC_D1CFGR = (AQ_HPRE_BITS(AQ_SOC_D1CPRE_DIV) << 8) | (AQ_PPRE_BITS(AQ_SOC_APB3_DIV) << 4) |
                    AQ_HPRE_BITS(AQ_SOC_AHB_DIV);
    AQ_RCC_D2CFGR = (AQ_PPRE_BITS(AQ_SOC_APB2_DIV) << 8) | (AQ_PPRE_BITS(AQ_SOC_APB1_DIV) << 4);
    AQ_RCC_D3CFGR = AQ_PPRE_BITS(AQ_SOC_APB4_DIV) << 4;

    while ((AQ_RCC_CR & AQ_CR_PLL1RDY) == 0u) {
    }
    AQ_RCC_CFGR = (AQ_RCC_CFGR & ~7u) | 3u; /* SW = PLL1 */
    while (((AQ_RCC_CFGR >> 3) & 7u) != 3u) {
    }

    /* The VCP UART's bus clock, then its pins: GPIO port clocks (AHB4ENR bit n = port n) and
     * alternate function (same GPIO register layout as the F4/F7/L4). */
    AQ_UART_ENR |= (1u << AQ_UART_EN_BIT);
    (void)AQ_UART_ENR;
    AQ_RCC_AHB4ENR |= (1u << AQ_UART_TX_PORT) | (1u << AQ_UART_RX_PORT);
    (void)AQ_RCC_AHB4ENR;
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_TX_PORT), AQ_UART_TX_PIN, AQ_UART_AF);
    aq_stm32_gpio_af(AQ_GPIO_BASE(AQ_UART_RX_PORT), AQ_UART_RX_PIN, AQ_UART_AF);
}
