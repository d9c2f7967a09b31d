/* Row bands of CONV_2D / DEPTHWISE_CONV_2D over packed activation tensors (aq_band_params in
 * aq_kernels.h): which input rows an output row reads, their unpacking into an int8 band
 * buffer (keeping the rows the previous band already unpacked) and the packing of the output
 * row. The layer's own kernel computes each row on the band as a layer of one output row whose
 * input is the band (its height and top padding adjusted), so every row equals the whole
 * layer's. */
#include <string.h>

#include "aq_storage.h"

aq_band aq_band_of(const aq_band_params *b, int32_t oy) {
  const int32_t top = oy * b->stride_h - b->pad_h;              /* row of tap 0 */
  const int32_t bottom = top + b->dil_h * (b->k_h - 1);         /* row of the last tap */
  aq_band band;
  band.first = top < 0 ? 0 : top;
  band.rows = (bottom < b->in_h ? bottom : b->in_h - 1) - band.first + 1;
  if (band.rows < 0) band.rows = 0;
  band.pad = band.first - top;
  return band;
}

const int8_t *aq_band_input(const aq_band_params *b, const aq_band *band, const aq_band *prev,
                            const int8_t *input, int8_t *buffer) {
  const int32_t row = b->in_row;
  if (!b->in_store.packed) return input + band->first * row;
  int32_t kept = 0;   /* leading rows of this band that the previous one holds */
  if (prev->rows > 0 && band->first >= prev->first && band->first < prev->first + prev->rows) {
    kept = prev->first + prev->rows - band->first;
    if (kept > band->rows) kept = band->rows;
    if (band->first != prev->first)
      memmove(buffer, buffer + (band->first - prev->first) * row, (size_t)(kept * row));
  }
  aq_act_unpack(input, (band->first + kept) * row, (band->rows - kept) * row, &b->in_store,
            buffer + kept * row);
  return buffer;
}

int8_t *aq_band_output(const aq_band_params *b, int8_t *output, int32_t oy, int8_t *staging) {
  return b->out_store.packed ? staging : output + oy * b->out_row;
}

void aq_band_store(const aq_band_params *b, const int8_t *row, int8_t *output, int32_t oy) {
  if (b->out_store.packed) aq_act_pack(row, output, oy * b->out_row, b->out_row, &b->out_store);
}
