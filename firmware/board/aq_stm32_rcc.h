/* The RCC steps the STM32 F4, F7 and L4 SoC drivers share: start the PLL's input oscillator and
 * stop the PLL before it is reconfigured. The bit positions differ by family (HSI is bit 0 on
 * F4/F7, bit 8 on L4), so the including SoC file defines AQ_CR_HSION, AQ_CR_HSIRDY, AQ_CR_HSEON,
 * AQ_CR_HSERDY, AQ_CR_HSEBYP, AQ_CR_PLLON and AQ_CR_PLLRDY first; board_config.h says which
 * oscillator feeds the PLL (AQ_SOC_SOURCE_HSE_BYPASS: the ST-LINK's MCO, AQ_SOC_SOURCE_HSE: a
 * crystal, neither: HSI). Not verified on hardware. */
#ifndef AQ_STM32_RCC_H
#define AQ_STM32_RCC_H

#include <stdint.h>

#if defined(AQ_SOC_SOURCE_HSE_BYPASS)
#define AQ_STM32_PLL_INPUT_ON (AQ_CR_HSEBYP | AQ_CR_HSEON)
#define AQ_STM32_PLL_INPUT_READY AQ_CR_HSERDY
#elif defined(AQ_SOC_SOURCE_HSE)
#define AQ_STM32_PLL_INPUT_ON AQ_CR_HSEON
#define AQ_STM32_PLL_INPUT_READY AQ_CR_HSERDY
#else
#define AQ_STM32_PLL_INPUT_ON AQ_CR_HSION
#define AQ_STM32_PLL_INPUT_READY AQ_CR_HSIRDY
#endif

/* `rcc_cr` is RCC_CR. SYSCLK stays on its reset source (HSI/MSI) until the caller switches it. */
static inline void aq_stm32_pll_input_on_pll_off(volatile uint32_t *rcc_cr)
{
    *rcc_cr |= AQ_STM32_PLL_INPUT_ON;
    while ((*rcc_cr & AQ_STM32_PLL_INPUT_READY) == 0u) {
    }
    *rcc_cr &= ~AQ_CR_PLLON;
    while ((*rcc_cr & AQ_CR_PLLRDY) != 0u) {
    }
}

#endif /* AQ_STM32_RCC_H */
