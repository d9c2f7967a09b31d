/* UART driver for the STM32L4/L4+ USART and LPUART (RM0432 sections "USART" and "LPUART"; the
 * same ISR/TDR/RDR layout as the F7/H7), polled, 8N1.
 *
 * AQ_UART_BASE picks the instance; its kernel clock is PCLK (RCC_CCIPR reset value) given as
 * AQ_UART_CLK_HZ (the board TOML's [uart] clk_hz). The pins are set up by aq_soc_stm32l4.c.
 * NOT verified on hardware. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

#define AQ_REG(addr) (*(volatile uint32_t *)(addr))
#define AQ_RCC_APB1ENR1 AQ_REG(0x40021058u)
#define AQ_RCC_APB1ENR2 AQ_REG(0x4002105Cu)
#define AQ_RCC_APB2ENR AQ_REG(0x40021060u)

#define AQ_UART_REG(off) (*(volatile uint32_t *)((uintptr_t)AQ_UART_BASE + (off)))
#define AQ_UART_CR1 AQ_UART_REG(0x00u)
#define AQ_UART_CR2 AQ_UART_REG(0x04u)
#define AQ_UART_CR3 AQ_UART_REG(0x08u)
#define AQ_UART_BRR AQ_UART_REG(0x0Cu)
#define AQ_UART_ISR AQ_UART_REG(0x1Cu)
#define AQ_UART_ICR AQ_UART_REG(0x20u)
#define AQ_UART_RDR AQ_UART_REG(0x24u)
#define AQ_UART_TDR AQ_UART_REG(0x28u)

#define AQ_CR1_UE (1u << 0)
#define AQ_CR1_RE (1u << 2)
#define AQ_CR1_TE (1u << 3)
#define AQ_ISR_ORE (1u << 3)
#define AQ_ISR_RXNE (1u << 5)
#define AQ_ISR_TC (1u << 6)
#define AQ_ISR_TXE (1u << 7)
#define AQ_ICR_ORECF (1u << 3)

#if AQ_UART_BASE == 0x40008000u /* LPUART1: APB1ENR2 bit 0 */
#define AQ_UART_LP 1
#define AQ_UART_ENR AQ_RCC_APB1ENR2
#define AQ_UART_EN_BIT 0
#elif AQ_UART_BASE == 0x40013800u /* USART1: APB2ENR bit 14 */
#define AQ_UART_LP 0
#define AQ_UART_ENR AQ_RCC_APB2ENR
#define AQ_UART_EN_BIT 14
#elif AQ_UART_BASE == 0x40004400u /* USART2: APB1ENR1 bit 17 */
#define AQ_UART_LP 0
#define AQ_UART_ENR AQ_RCC_APB1ENR1
#define AQ_UART_EN_BIT 17
#elif AQ_UART_BASE == 0x40004800u /* USART3: APB1ENR1 bit 18 */
#define AQ_UART_LP 0
#define AQ_UART_ENR AQ_RCC_APB1ENR1
#define AQ_UART_EN_BIT 18
#else
#error "AQ_UART_BASE is not an STM32L4 USART1/2/3 or LPUART1"
#endif

#ifndef AQ_UART_CLK_HZ
#error "the board TOML must give [uart] clk_hz (the UART's kernel clock) for this driver"
#endif
#if AQ_UART_LP && (AQ_UART_CLK_HZ < 3u * AQ_UART_BAUD || AQ_UART_CLK_HZ > 4096u * AQ_UART_BAUD)
#error "LPUART: the kernel clock must be within 3x..4096x the baud rate"
#endif

void aq_uart_init(void)
{
    AQ_UART_ENR |= (1u << AQ_UART_EN_BIT);
    (void)AQ_UART_ENR;
    AQ_UART_CR1 = 0u; /* disabled while configuring: 8 data bits, no parity, no FIFO */
    AQ_UART_CR2 = 0u; /* 1 stop bit */
    AQ_UART_CR3 = 0u;
#if AQ_UART_LP
    /* LPUART: BRR = 256 * f_ck / baud (needs 64 bits: 256 * 120 MHz > 2^32). */
    AQ_UART_BRR = (uint32_t)((256ull * AQ_UART_CLK_HZ + AQ_UART_BAUD / 2u) / AQ_UART_BAUD);
#else
    /* USART, 16x oversampling: BRR = f_ck / baud. */
    AQ_UART_BRR = ((uint32_t)AQ_UART_CLK_HZ + (uint32_t)AQ_UART_BAUD / 2u) / (uint32_t)AQ_UART_BAUD;
#endif
    AQ_UART_CR1 = AQ_CR1_TE | AQ_CR1_RE | AQ_CR1_UE;
}

void aq_uart_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while ((AQ_UART_ISR & AQ_ISR_TXE) == 0u) {
        }
        AQ_UART_TDR = buf[i];
    }
    while ((AQ_UART_ISR & AQ_ISR_TC) == 0u) {
    }
}

int aq_uart_read_byte(void)
{
    for (;;) {
        uint32_t isr = AQ_UART_ISR;
        if ((isr & AQ_ISR_RXNE) != 0u) {
            return (int)(AQ_UART_RDR & 0xFFu);
        }
        if ((isr & AQ_ISR_ORE) != 0u) {
            /* Unlike the F4 USART, an overrun here stops reception until cleared. The lost
             * byte is caught by the protocol's CRC. */
            AQ_UART_ICR = AQ_ICR_ORECF;
        }
    }
}
