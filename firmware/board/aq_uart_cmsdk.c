/* UART driver for the Arm CMSDK APB UART (Cortex-M System Design Kit, as on the MPS2 FPGA
 * images and QEMU's mps2-* machines), polled, 8N1.
 *
 * Registers: DATA 0x00, STATE 0x04 (bit 0 TX buffer full, bit 1 RX buffer full), CTRL 0x08
 * (bit 0 TX enable, bit 1 RX enable), INTSTATUS/INTCLEAR 0x0C, BAUDDIV 0x10 (>= 16). The UART
 * clock is the peripheral clock, AQ_CPU_HZ unless the board sets AQ_UART_CLK_HZ. */
#include <stdint.h>

#include "aq_board.h"
#include "board_config.h"

#define AQ_CMSDK_REG(off) (*(volatile uint32_t *)((uintptr_t)AQ_UART_BASE + (off)))
#define AQ_CMSDK_DATA AQ_CMSDK_REG(0x00u)
#define AQ_CMSDK_STATE AQ_CMSDK_REG(0x04u)
#define AQ_CMSDK_CTRL AQ_CMSDK_REG(0x08u)
#define AQ_CMSDK_BAUDDIV AQ_CMSDK_REG(0x10u)

#define AQ_STATE_TXFULL (1u << 0)
#define AQ_STATE_RXFULL (1u << 1)
#define AQ_CTRL_TX_EN (1u << 0)
#define AQ_CTRL_RX_EN (1u << 1)

#ifndef AQ_UART_CLK_HZ
#define AQ_UART_CLK_HZ AQ_CPU_HZ
#endif

void aq_uart_init(void)
{
    AQ_CMSDK_CTRL = 0u;
    uint32_t div = ((uint32_t)AQ_UART_CLK_HZ + (uint32_t)AQ_UART_BAUD / 2u) / (uint32_t)AQ_UART_BAUD;
    AQ_CMSDK_BAUDDIV = div < 16u ? 16u : div;
    AQ_CMSDK_CTRL = AQ_CTRL_TX_EN | AQ_CTRL_RX_EN;
}

void aq_uart_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while ((AQ_CMSDK_STATE & AQ_STATE_TXFULL) != 0u) {
        }
        AQ_CMSDK_DATA = buf[i];
    }
    /* The CMSDK UART has no "transmission complete" flag: an empty holding register is the
     * closest, and the byte is on its way. */
    while ((AQ_CMSDK_STATE & AQ_STATE_TXFULL) != 0u) {
    }
}

int aq_uart_read_byte(void)
{
    while ((AQ_CMSDK_STATE & AQ_STATE_RXFULL) == 0u) {
    }
    return (int)(AQ_CMSDK_DATA & 0xFFu);
}
