/* STM32 GPIO alternate-function setup, shared by the STM32 SoC drivers. The register layout
 * (MODER, OTYPER, OSPEEDR, PUPDR, AFRL/AFRH) is the same on the F2/F4/F7/H7/L4/L4+ families; only
 * the port base addresses and the RCC enable register differ, which the caller passes.
 * Pins come from board_config.h: AQ_UART_TX_PORT/_PIN, AQ_UART_RX_PORT/_PIN, AQ_UART_AF. */
#ifndef AQ_STM32_GPIO_H
#define AQ_STM32_GPIO_H

#include <stdint.h>

#define AQ_GPIO_REG(base, off) (*(volatile uint32_t *)((uintptr_t)(base) + (off)))

/* Put `pin` of the port at `base` in alternate function `af`: push-pull, high speed, with a
 * pull-up (keeps an idle RX line at mark while the ST-LINK side is not driving it). */
static inline void aq_stm32_gpio_af(uintptr_t base, uint32_t pin, uint32_t af)
{
    uint32_t two = pin * 2u;
    AQ_GPIO_REG(base, 0x20u + (pin / 8u) * 4u) =
        (AQ_GPIO_REG(base, 0x20u + (pin / 8u) * 4u) & ~(0xFu << ((pin % 8u) * 4u))) |
        (af << ((pin % 8u) * 4u));                                                     /* AFR */
    AQ_GPIO_REG(base, 0x04u) &= ~(1u << pin);                                          /* OTYPER: push-pull */
    AQ_GPIO_REG(base, 0x08u) = (AQ_GPIO_REG(base, 0x08u) & ~(3u << two)) | (2u << two); /* OSPEEDR: high */
    AQ_GPIO_REG(base, 0x0Cu) = (AQ_GPIO_REG(base, 0x0Cu) & ~(3u << two)) | (1u << two); /* PUPDR: pull-up */
    AQ_GPIO_REG(base, 0x00u) = (AQ_GPIO_REG(base, 0x00u) & ~(3u << two)) | (2u << two); /* MODER: AF */
}

#endif /* AQ_STM32_GPIO_H */
