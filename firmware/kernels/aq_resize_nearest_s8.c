/* RESIZE_NEAREST_NEIGHBOR, int8 (TFLite reference_ops::ResizeNearestNeighbor): each output
 * pixel is a copy of the input pixel its row and column map to. The maps are computed at build
 * time (aqedge/codegen/lower.py: TFLite's float32 GetNearestNeighbor, align_corners and
 * half_pixel_centers included), so the kernel only copies. */
#include <string.h>

#include "aq_kernels.h"

void aq_resize_nearest_s8(const aq_resize_nearest_params *p, const int8_t *input, int8_t *output) {
  const int32_t depth = p->depth;
  const int32_t row = p->in_w * depth;
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t *image = input + b * p->in_h * row;
    for (int32_t y = 0; y < p->out_h; ++y) {
      const int8_t *src = image + p->rows[y] * row;
      for (int32_t x = 0; x < p->out_w; ++x) {
        memcpy(output, src + p->cols[x] * depth, (size_t)depth);
        output += depth;
      }
    }
  }
}
