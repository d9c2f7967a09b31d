/* An elementwise int8 -> int8 function applied through a 256-entry table indexed by the input
 * code. aq_model_prepare() builds each table once, by running the op's own kernels (LOGISTIC,
 * HARD_SWISH, or LOGISTIC then MUL for Swish) on every code, so the looked-up outputs are the
 * kernels' to the bit. */
#include "aq_ops_impl.h"

const int8_t aq_lut_codes[256] = {
#define AQ_ROW(b) (int8_t)(b), (int8_t)(b + 1), (int8_t)(b + 2), (int8_t)(b + 3), \
    (int8_t)(b + 4), (int8_t)(b + 5), (int8_t)(b + 6), (int8_t)(b + 7),            \
    (int8_t)(b + 8), (int8_t)(b + 9), (int8_t)(b + 10), (int8_t)(b + 11),          \
    (int8_t)(b + 12), (int8_t)(b + 13), (int8_t)(b + 14), (int8_t)(b + 15)
    AQ_ROW(-128), AQ_ROW(-112), AQ_ROW(-96), AQ_ROW(-80), AQ_ROW(-64), AQ_ROW(-48),
    AQ_ROW(-32), AQ_ROW(-16), AQ_ROW(0), AQ_ROW(16), AQ_ROW(32), AQ_ROW(48),
    AQ_ROW(64), AQ_ROW(80), AQ_ROW(96), AQ_ROW(112)
#undef AQ_ROW
};

void aq_lut_s8(const aq_lut_params *p, const int8_t *table, const int8_t *input, int8_t *output) {
  aq_lut_impl(p, table, input, output, 0, 0);
}
