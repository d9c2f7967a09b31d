/* UART driver for the STM32F2/F4 USART (RM0090 section 30), polled, 8N1.
 *
 * AQ_UART_BASE picks the instance (USART1/6 sit on APB2, USART2/3 and UART4/5 on APB1). The
 * peripheral clock is assumed to be the one the usual 168 MHz clock tree gives (APB2 = HCLK/2,
 * APB1 = HCLK/4); a board with another tree defines AQ_UART_CLK_HZ in its board_config.h.
 * Nothing here waits on an RCC ready bit: QEMU's RCC is a stub whose ready bits never set. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

#define AQ_RCC_BASE 0x40023800u
#define AQ_RCC_APB1ENR (*(volatile uint32_t *)(AQ_RCC_BASE + 0x40u))
#define AQ_RCC_APB2ENR (*(volatile uint32_t *)(AQ_RCC_BASE + 0x44u))

#define AQ_USART_REG(off) (*(volatile uint32_t *)((uintptr_t)AQ_UART_BASE + (off)))
#define AQ_USART_SR AQ_USART_REG(0x00u)
#define AQ_USART_DR AQ_USART_REG(0x04u)
#define AQ_USART_BRR AQ_USART_REG(0x08u)
#define AQ_USART_CR1 AQ_USART_REG(0x0Cu)
#define AQ_USART_CR2 AQ_USART_REG(0x10u)
#define AQ_USART_CR3 AQ_USART_REG(0x14u)

#define AQ_SR_RXNE (1u << 5)
#define AQ_SR_TC (1u << 6)
#define AQ_SR_TXE (1u << 7)
#define AQ_CR1_RE (1u << 2)
#define AQ_CR1_TE (1u << 3)
#define AQ_CR1_UE (1u << 13)

/* Which bus and enable bit the instance has (RCC_APBxENR). */
#if AQ_UART_BASE == 0x40011000u /* USART1 */
#define AQ_UART_ON_APB2 1
#define AQ_UART_EN_BIT 4
#elif AQ_UART_BASE == 0x40011400u /* USART6 */
#define AQ_UART_ON_APB2 1
#define AQ_UART_EN_BIT 5
#elif AQ_UART_BASE == 0x40004400u /* USART2 */
#define AQ_UART_ON_APB2 0
#define AQ_UART_EN_BIT 17
#elif AQ_UART_BASE == 0x40004800u /* USART3 */
#define AQ_UART_ON_APB2 0
#define AQ_UART_EN_BIT 18
#elif AQ_UART_BASE == 0x40004C00u /* UART4 */
#define AQ_UART_ON_APB2 0
#define AQ_UART_EN_BIT 19
#elif AQ_UART_BASE == 0x40005000u /* UART5 */
#define AQ_UART_ON_APB2 0
#define AQ_UART_EN_BIT 20
#else
#error "AQ_UART_BASE is not an STM32F4 USART/UART instance"
#endif

#ifndef AQ_UART_CLK_HZ
#if AQ_UART_ON_APB2
#define AQ_UART_CLK_HZ (AQ_CPU_HZ / 2u)
#else
#define AQ_UART_CLK_HZ (AQ_CPU_HZ / 4u)
#endif
#endif

void aq_uart_init(void)
{
#if AQ_UART_ON_APB2
    AQ_RCC_APB2ENR |= (1u << AQ_UART_EN_BIT);
    (void)AQ_RCC_APB2ENR; /* read back: the clock is on before the first register access */
#else
    AQ_RCC_APB1ENR |= (1u << AQ_UART_EN_BIT);
    (void)AQ_RCC_APB1ENR;
#endif
    AQ_USART_CR1 = 0u; /* disabled while configuring; M = 0 (8 data bits), no parity */
    AQ_USART_CR2 = 0u; /* 1 stop bit */
    AQ_USART_CR3 = 0u; /* no flow control, no DMA */
    /* OVER8 = 0: USARTDIV = f_ck / (16 * baud); BRR holds it in 12.4 fixed point, which is
     * f_ck / baud rounded to the nearest integer. */
    AQ_USART_BRR = ((uint32_t)AQ_UART_CLK_HZ + (uint32_t)AQ_UART_BAUD / 2u) / (uint32_t)AQ_UART_BAUD;
    AQ_USART_CR1 = AQ_CR1_UE | AQ_CR1_TE | AQ_CR1_RE;
}

void aq_uart_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while ((AQ_USART_SR & AQ_SR_TXE) == 0u) {
        }
        AQ_USART_DR = buf[i];
    }
    while ((AQ_USART_SR & AQ_SR_TC) == 0u) {
    }
}

int aq_uart_read_byte(void)
{
    /* Reading SR then DR also clears an overrun (ORE): the protocol's CRC catches lost bytes. */
    while ((AQ_USART_SR & AQ_SR_RXNE) == 0u) {
    }
    return (int)(AQ_USART_DR & 0xFFu);
}
