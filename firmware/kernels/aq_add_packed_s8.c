/* ADD, same-shape inputs, either input and the output stored packed (p->in1_store,
 * p->in2_store, p->out_store), TFLite's arithmetic (as aq_add_s8). A packed input holds 16
 * codes, so its rescaling is tabulated for those 16; with both inputs packed the output is a
 * function of the two nibbles alone and is tabulated whole (256 entries, once per call), so
 * each element costs two nibble loads, one lookup and a nibble store. */
#include "aq_math.h"
#include "aq_storage.h"

/* One input's rescaling (offset, << left_shift, requantise) of code v. */
static int32_t aq_add_rescale(const aq_add_params *p, int32_t v, int second) {
  return second ? aq_requantize(aq_shl(v + p->input2_offset, p->left_shift), p->input2_multiplier, p->input2_shift)
                : aq_requantize(aq_shl(v + p->input1_offset, p->left_shift), p->input1_multiplier, p->input1_shift);
}

static int32_t aq_add_out(const aq_add_params *p, int32_t sum) {
  return aq_clamp(aq_requantize(sum, p->output_multiplier, p->output_shift) + p->output_offset,
                  p->act_min, p->act_max);
}

void aq_add_packed_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
                      int8_t *output) {
  if (p->in1_store.packed && p->in2_store.packed) {
    int8_t table[256];   /* [16 * nibble1 + nibble2] */
    int32_t r2[16];
    for (int32_t n = 0; n < 16; ++n) r2[n] = aq_add_rescale(p, n + p->in2_store.lo, 1);
    for (int32_t n1 = 0; n1 < 16; ++n1) {
      const int32_t r1 = aq_add_rescale(p, n1 + p->in1_store.lo, 0);
      for (int32_t n2 = 0; n2 < 16; ++n2) table[16 * n1 + n2] = (int8_t)aq_add_out(p, r1 + r2[n2]);
    }
    const aq_storage nibbles = {1, 0};   /* the packed codes minus their lo */
    for (int32_t i = 0; i < p->size; ++i) {
      const int32_t n1 = aq_act_get(input1, i, &nibbles), n2 = aq_act_get(input2, i, &nibbles);
      aq_act_set(output, i, table[16 * n1 + n2], &p->out_store);
    }
    return;
  }
  int32_t r1[256], r2[256];   /* rescaled code - base, base = lo (packed) or -128 */
  const int32_t base1 = p->in1_store.packed ? p->in1_store.lo : -128;
  const int32_t base2 = p->in2_store.packed ? p->in2_store.lo : -128;
  for (int32_t v = 0; v < (p->in1_store.packed ? 16 : 256); ++v) r1[v] = aq_add_rescale(p, v + base1, 0);
  for (int32_t v = 0; v < (p->in2_store.packed ? 16 : 256); ++v) r2[v] = aq_add_rescale(p, v + base2, 1);
  for (int32_t i = 0; i < p->size; ++i) {
    const int32_t a = aq_act_get(input1, i, &p->in1_store) - base1;
    const int32_t b = aq_act_get(input2, i, &p->in2_store) - base2;
    aq_act_set(output, i, aq_add_out(p, r1[a] + r2[b]), &p->out_store);
  }
}
