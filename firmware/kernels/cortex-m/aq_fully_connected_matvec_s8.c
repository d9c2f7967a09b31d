/* FULLY_CONNECTED matrix x vector, int8 weights: Cortex-M4/M7 (DSP extension) port of
 * firmware/kernels/aq_fully_connected_matvec_s8.c, bit-exact with it: the driver of
 * aq_cm_matvec.h with the loops of aq_cm_matvec_s8.c (about 1.25 instructions per MAC in
 * blocks of 4 rows). */
#include "aq_cm_matvec.h"

extern const aq_cm_matvec_loops aq_cm_matvec_s8;

void aq_fully_connected_matvec_s8(const aq_fully_connected_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output) {
  aq_cm_matvec(p, input, filter, bias, output, &aq_cm_matvec_s8);
}
