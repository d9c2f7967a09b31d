/* board_config.h for the host build of the firmware (tests/test_protocol.py). */
#ifndef AQ_BOARD_CONFIG_H
#define AQ_BOARD_CONFIG_H
#define AQ_BOARD_NAME "host"
#define AQ_CPU_HZ 1000u
#define AQ_TIMER_HZ 1000u
#define AQ_RX_MAX 790u
#endif
