/* UART driver for the STM32F7 and STM32H7 USART (RM0385 / RM0433 "USART"; the ISR/TDR/RDR
 * register layout also found on the L4), polled, 8N1, 16x oversampling, FIFO off (H7).
 *
 * The bus clock of the instance is switched on by the SoC driver (aq_soc_stm32f7.c,
 * aq_soc_stm32h7.c: the RCC differs between the two families); its kernel clock is the PCLK the
 * reset value of the kernel clock mux selects, given as AQ_UART_CLK_HZ ([uart] clk_hz).
 * NOT verified on hardware. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

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

#ifndef AQ_UART_CLK_HZ
#error "the board TOML must give [uart] clk_hz (the UART's kernel clock) for this driver"
#endif
#if AQ_UART_CLK_HZ / AQ_UART_BAUD < 16u || AQ_UART_CLK_HZ / AQ_UART_BAUD > 0xFFFFu
#error "USART (16x oversampling): BRR = clk / baud must be within 16..65535"
#endif

void aq_uart_init(void)
{
    AQ_UART_CR1 = 0u; /* disabled while configuring: 8 data bits, no parity, FIFO off */
    AQ_UART_CR2 = 0u; /* 1 stop bit */
    AQ_UART_CR3 = 0u;
    AQ_UART_BRR = ((uint32_t)AQ_UART_CLK_HZ + (uint32_t)AQ_UART_BAUD / 2u) / (uint32_t)AQ_UART_BAUD;
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
            /* An overrun stops reception until cleared; the protocol's CRC catches the loss. */
            AQ_UART_ICR = AQ_ICR_ORECF;
        }
    }
}
