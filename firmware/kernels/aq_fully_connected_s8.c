/* FULLY_CONNECTED, int8 activations and symmetric int8 weights (TFLite FullyConnected). */
#include "aq_kernels.h"
#include "aq_math.h"

void aq_fully_connected_s8(const aq_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output) {
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * p->accum_depth;
    for (int32_t oc = 0; oc < p->out_c; ++oc) {
      const int8_t *w = filter + oc * p->accum_depth;
      int32_t acc = 0;
      for (int32_t d = 0; d < p->accum_depth; ++d) {
        acc += w[d] * (x[d] + p->q.input_offset);
      }
      if (bias) acc += bias[oc];
      acc = aq_requantize(acc, p->q.multiplier[oc], p->q.shift[oc]) + p->q.output_offset;
      output[b * p->out_c + oc] = (int8_t)aq_clamp(acc, p->q.act_min, p->q.act_max);
    }
  }
}
