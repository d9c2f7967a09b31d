/* CONV_2D 1x1 without padding over 1 to 3 output pixels, packed INT4 weights in the matvec
 * layout: Cortex-M4/M7 (DSP extension) port of firmware/kernels/aq_conv_matvec_s4.c, bit-exact
 * with it; the loops of aq_cm_matvec_s4.c, per output pixel. */
#include "aq_cm_matvec.h"

extern const aq_cm_matvec_loops aq_cm_matvec_s4;

void aq_conv_matvec_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                      const int32_t *bias, int8_t *output) {
  aq_cm_conv_matvec(p, input, filter, bias, output, &aq_cm_matvec_s4);
}
