/* CONCATENATION, int8, any axis (TFLite reference_ops::Concatenation): for each outer index,
 * each input's slab is copied in turn. TFLite Micro copies int8 bytes without rescaling (the
 * converter gives all inputs the output's quantization), and so does this kernel. */
#include <stdarg.h>
#include <string.h>

#include "aq_kernels.h"

#define AQ_CONCAT_MAX_INPUTS 16

void aq_concatenation_s8(const aq_concatenation_params *p, int8_t *output, ...) {
  const int8_t *inputs[AQ_CONCAT_MAX_INPUTS];
  va_list ap;
  va_start(ap, output);
  for (int32_t i = 0; i < p->num_inputs && i < AQ_CONCAT_MAX_INPUTS; ++i) {
    inputs[i] = va_arg(ap, const int8_t *);
  }
  va_end(ap);
  for (int32_t k = 0; k < p->outer; ++k) {
    for (int32_t i = 0; i < p->num_inputs && i < AQ_CONCAT_MAX_INPUTS; ++i) {
      const int32_t n = p->copy_size[i];
      memcpy(output, inputs[i] + k * n, (size_t)n);
      output += n;
    }
  }
}
