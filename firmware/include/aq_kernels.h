/* aqedge kernels: int8 activations (asymmetric, zero point), int8 symmetric per-channel weights,
 * (or packed INT4) weights, int32 bias, TFLite's exact integer arithmetic. Tensors are NHWC with batch 1; filters OHWI.
 * Every fixed-point parameter is computed at build time (aqedge/codegen/lower.py), the way
 * TFLite Micro's Prepare computes it, and passed in as constants. One kernel per file. */
#ifndef AQ_KERNELS_H
#define AQ_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How an activation tensor is stored in the arena, chosen at build time
 * (aqedge/codegen/storage.py; docs/architecture.md, "Packed activations"). packed = 0: one int8
 * code per byte. packed = 1: a tensor whose codes all lie in [lo, lo + 15] (a 4-bit activation),
 * two per byte: element 2k in the low nibble of byte k, element 2k + 1 in the high nibble, each
 * stored as code - lo (0 .. 15). Only the `*_packed_*` kernels and aq_band_* read these fields; a params struct
 * initialised without them (zero) describes int8 storage. */
typedef struct {
  int32_t packed;
  int32_t lo;
} aq_storage;

/* Output quantization shared by the MAC kernels. */
typedef struct {
  int32_t input_offset;      /* -input zero point */
  int32_t output_offset;     /* output zero point */
  int32_t act_min, act_max;  /* fused activation clamp, in output integers */
  const int32_t *multiplier; /* per output channel */
  const int32_t *shift;      /* per output channel, > 0 is a left shift */
  int32_t guard;             /* 1: some channel's sums can leave the range of the optimised
                              * ports' short requantisation, so they range-check every output
                              * (set at build time, aqedge/codegen/dispatch.py requant_guard) */
} aq_requant;

typedef struct {
  int16_t in_h, in_w, in_c;
  int16_t out_h, out_w, out_c;
  int16_t k_h, k_w;
  int16_t filter_in_c;       /* in_c / groups */
  int16_t stride_h, stride_w;
  int16_t dil_h, dil_w;
  int16_t pad_h, pad_w;      /* top / left padding */
  aq_requant q;
  int32_t *scratch;          /* the optimised ports' column buffer (RAM, sized at build time by
                              * aqedge/codegen/dispatch.py column_bytes), or 0 */
} aq_conv_params;

/* CONV_2D, int8 weights. */
void aq_conv_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
                const int32_t *bias, int8_t *output);
/* CONV_2D, packed INT4 weights (two per byte, low nibble first). */
void aq_conv_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                const int32_t *bias, int8_t *output);

/* CONV_2D 1x1 without padding over 1 to 3 output pixels: matrix x vector per pixel, weights
 * in the matvec layout and the input offset folded into `bias`, as aq_fully_connected_matvec_*. */
void aq_conv_matvec_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, int8_t *output);
void aq_conv_matvec_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                       const int32_t *bias, int8_t *output);

/* CONV_2D through the portable loops on every target: grouped convolutions, INT4 rows that start
 * mid-byte. */
void aq_conv_loops_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, int8_t *output);
void aq_conv_loops_s4(const aq_conv_params *p, const int8_t *input, const uint8_t *filter,
                      const int32_t *bias, int8_t *output);

typedef struct {
  int16_t in_h, in_w, in_c;
  int16_t out_h, out_w, out_c; /* out_c = in_c * depth_multiplier */
  int16_t k_h, k_w;
  int16_t depth_multiplier;
  int16_t stride_h, stride_w;
  int16_t dil_h, dil_w;
  int16_t pad_h, pad_w;
  aq_requant q;
} aq_depthwise_conv_params;

/* DEPTHWISE_CONV_2D, int8 weights (filter layout 1HWC). */
void aq_depthwise_conv_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output);
/* DEPTHWISE_CONV_2D, packed INT4 weights. */
void aq_depthwise_conv_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                          const uint8_t *filter, const int32_t *bias, int8_t *output);

/* DEPTHWISE_CONV_2D, depth multiplier 1, weights in a table built at build time (int8 and INT4
 * weights alike widened to int16, aqedge/codegen/dispatch.py):
 * "table": any kernel size, per 4-channel group and tap the pairs (w0, w2) (w1, w3);
 * "3x3": 3x3 kernels, the input offset and the bias folded into the table (`bias` unused). */
void aq_depthwise_conv_table_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int8_t *output);
void aq_depthwise_conv_table_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                                const uint8_t *filter, const int32_t *bias, int8_t *output);
/* "mult2": depth multiplier 2, any kernel size, per 8 outputs and tap the pairs (w0, w1) ... */
void aq_depthwise_conv_mult2_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int8_t *output);
void aq_depthwise_conv_mult2_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                                const uint8_t *filter, const int32_t *bias, int8_t *output);
void aq_depthwise_conv_3x3_s8(const aq_depthwise_conv_params *p, const int8_t *input,
                              const int8_t *filter, const int32_t *bias, int8_t *output);
void aq_depthwise_conv_3x3_s4(const aq_depthwise_conv_params *p, const int8_t *input,
                              const uint8_t *filter, const int32_t *bias, int8_t *output);

typedef struct {
  int32_t batches;
  int32_t accum_depth;
  int32_t out_c;
  aq_requant q;               /* per-tensor models repeat the same multiplier per channel */
  int32_t *scratch;           /* as aq_conv_params.scratch */
  aq_storage in_store, out_store;   /* read by aq_fully_connected_packed_* only */
} aq_fully_connected_params;

/* FULLY_CONNECTED, int8 weights (filter [out_c, accum_depth]). */
void aq_fully_connected_s8(const aq_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output);
/* FULLY_CONNECTED, packed INT4 weights. */
void aq_fully_connected_s4(const aq_fully_connected_params *p, const int8_t *input,
                           const uint8_t *filter, const int32_t *bias, int8_t *output);
/* FULLY_CONNECTED, matrix x vector per batch (batches 1 to 3): weights in the matvec layout
 * (4 rows side by side, see aqedge/codegen/dispatch.py), `bias` = bias + input_offset * row sum
 * (required). */
void aq_fully_connected_matvec_s8(const aq_fully_connected_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output);
void aq_fully_connected_matvec_s4(const aq_fully_connected_params *p, const int8_t *input,
                                  const uint8_t *filter, const int32_t *bias, int8_t *output);

typedef struct {
  int16_t in_h, in_w, channels;
  int16_t out_h, out_w;
  int16_t k_h, k_w;
  int16_t stride_h, stride_w;
  int16_t pad_h, pad_w;
  int32_t act_min, act_max;
  aq_storage in_store, out_store;   /* read by aq_*_pool_packed_s8 only */
} aq_pool_params;

/* MAX_POOL_2D and AVERAGE_POOL_2D (input and output share scale and zero point). */
void aq_max_pool_s8(const aq_pool_params *p, const int8_t *input, int8_t *output);
void aq_avg_pool_s8(const aq_pool_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t rows, depth;
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
} aq_softmax_params;

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_offset;
  int32_t multiplier, shift;   /* input scale / output scale */
  int32_t act_min, act_max;
} aq_relu_params;

/* RELU, RELU6, RELU_N1_TO_1 (standalone, with requantization). */
void aq_relu_s8(const aq_relu_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  aq_storage in_store, out_store;   /* read by aq_lut_packed_s8 only */
} aq_lut_params;

/* The int8 codes -128 .. 127 in order: the input that builds a table (table[c + 128] is the
 * op's output for code c). */
extern const int8_t aq_lut_codes[256];

/* output[i] = table[input[i] + 128]: LOGISTIC, HARD_SWISH and Swish through a table of their
 * outputs. */
void aq_lut_s8(const aq_lut_params *p, const int8_t *table, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  int32_t act_min, act_max;
  aq_storage in_store, out_store;   /* read by aq_clamp_packed_s8 only */
} aq_clamp_params;

/* MINIMUM / MAXIMUM against constant scalars that could not be folded into the producer: the
 * raw int8 codes clamped to [act_min, act_max]. */
void aq_clamp_s8(const aq_clamp_params *p, const int8_t *input, int8_t *output);

/* SOFTMAX, int8 in, int8 out (scale 1/256, zero point -128). */
void aq_softmax_s8(const aq_softmax_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  int32_t left_shift;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t input1_multiplier, input1_shift;
  int32_t input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
  int32_t input2_sign;       /* +1 ADD, -1 SUB (read by aq_add_broadcast_s8; aq_add_s8 adds) */
  aq_storage in1_store, in2_store, out_store;   /* read by aq_add_packed_s8 only */
} aq_add_params;

/* ADD of two int8 tensors of the same shape. */
void aq_add_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output);

/* ---- Elementwise, reduction and data-movement kernels (MUL, broadcasting ADD, MEAN, PAD,
 * CONCATENATION, LOGISTIC, HARD_SWISH, QUANTIZE). Shapes are extended to 4-D by prepending 1s,
 * as TFLite's RuntimeShape::ExtendedShape does. ---- */

/* Broadcast of two 4-D inputs onto the output shape: element strides of each input
 * (0 along a broadcast dimension), TFLite's NdArrayDescsForElementwiseBroadcast. */
typedef struct {
  int32_t dims[4];           /* output shape */
  int32_t stride1[4];        /* input 1 element strides */
  int32_t stride2[4];        /* input 2 element strides */
} aq_broadcast4;

typedef struct {
  aq_add_params q;           /* .size is unused */
  aq_broadcast4 shape;
} aq_add_broadcast_params;

/* ADD of two int8 tensors whose shapes broadcast (TFLite BroadcastAdd4DSlow). */
void aq_add_broadcast_s8(const aq_add_broadcast_params *p, const int8_t *input1,
                         const int8_t *input2, int8_t *output);

typedef struct {
  int32_t size;              /* output elements */
  int32_t broadcast;         /* 0: same shapes (flat loop), 1: use .shape */
  int32_t input1_offset, input2_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
  aq_broadcast4 shape;
} aq_mul_params;

/* MUL, int8 (TFLite MulElementwise / BroadcastMul4DSlow). */
void aq_mul_s8(const aq_mul_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output);

typedef struct {
  int32_t dims[4];           /* input shape */
  int32_t reduce[4];         /* 1 = this axis is reduced */
  int32_t count;             /* elements reduced into one output */
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift; /* 1/count folded in (QuantizedMeanOrSum) */
  aq_storage in_store, out_store;   /* read by aq_mean_packed_s8 only */
} aq_mean_params;

/* MEAN over any set of axes, int8 (TFLite reference_ops::QuantizedMeanOrSum). */
void aq_mean_s8(const aq_mean_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t in_dims[4];
  int32_t out_dims[4];
  int32_t before[4];         /* leading padding per axis */
  int32_t pad_value;
} aq_pad_params;

/* PAD / PADV2 with a constant, int8 (input and output share quantization). */
void aq_pad_s8(const aq_pad_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t batches, in_h, in_w, depth, out_h, out_w;
  const int32_t *rows;       /* per output row: the input row it copies */
  const int32_t *cols;       /* per output column: the input column it copies */
} aq_resize_nearest_params;

/* RESIZE_NEAREST_NEIGHBOR, int8 (input and output share quantization: bytes are copied). */
void aq_resize_nearest_s8(const aq_resize_nearest_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t num_inputs;
  int32_t outer;             /* product of the dimensions before the axis */
  const int32_t *copy_size;  /* per input: product of its dimensions from the axis on */
} aq_concatenation_params;

/* CONCATENATION, int8: `num_inputs` input pointers (const int8_t *) follow `output`.
 * A byte copy: like TFLite Micro, inputs must share the output quantization (no rescaling). */
void aq_concatenation_s8(const aq_concatenation_params *p, int8_t *output, ...);

typedef struct {
  int32_t size;
  int32_t input_zero_point;
  int32_t input_range_radius;
  int32_t input_multiplier, input_left_shift;
} aq_logistic_params;

/* LOGISTIC, int8 in, int8 out (scale 1/256, zero point -128): gemmlowp fixed-point logistic. */
void aq_logistic_s8(const aq_logistic_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t reluish_multiplier_fixedpoint_int16, reluish_multiplier_exponent;
  int32_t output_multiplier_fixedpoint_int16, output_multiplier_exponent;
  int32_t act_min, act_max;   /* [-128, 127], narrowed by folded MINIMUM / MAXIMUM clamps */
} aq_hard_swish_params;

/* HARD_SWISH, int8 (TFLite reference_ops::HardSwish, 16-bit fixed point). */
void aq_hard_swish_s8(const aq_hard_swish_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t identity_multiplier, identity_shift;   /* input scale / output scale */
  int32_t alpha_multiplier, alpha_shift;         /* |alpha| * input scale / output scale */
  int32_t alpha_negative;                        /* 1: alpha < 0, the scaled value negated */
} aq_leaky_relu_params;

/* LEAKY_RELU, int8 (TFLite reference_ops::QuantizeLeakyRelu). */
void aq_leaky_relu_s8(const aq_leaky_relu_params *p, const int8_t *input, int8_t *output);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
} aq_quantize_params;

/* QUANTIZE int8 -> int8 (TFLite reference_ops::Requantize). */
void aq_quantize_s8(const aq_quantize_params *p, const int8_t *input, int8_t *output);

/* The model's float edges: QUANTIZE float32 -> int8 and DEQUANTIZE int8 -> float32. */
typedef struct {
  int32_t size;
  float scale;
  int32_t zero_point;
} aq_affine_params;

void aq_quantize_f32_s8(const aq_affine_params *p, const float *input, int8_t *output);
void aq_dequantize_s8_f32(const aq_affine_params *p, const int8_t *input, float *output);

/* ---- Ops over tensors stored packed (aq_storage): the params' *_store fields say which of the
 * input(s) and output are packed. Portable C on every target. ---- */

/* CONV_2D and DEPTHWISE_CONV_2D over packed tensors run their usual kernel (variant, Cortex-M
 * port and all) one output row at a time: the input rows that row reads unpacked into an int8
 * band buffer, the row written to a staging buffer and packed (generated model.c, from these). */
typedef struct {
  int16_t in_h, k_h, stride_h, dil_h, pad_h;   /* the layer's */
  int32_t in_row, out_row;                      /* elements per input / output row */
  aq_storage in_store, out_store;
} aq_band_params;

typedef struct {
  int32_t first, rows, pad;   /* first input row read, rows read, padding rows above them */
} aq_band;

aq_band aq_band_of(const aq_band_params *b, int32_t oy);
/* The band's rows as int8: unpacked into `buffer` (the rows `prev`, the band before it, left
 * there are moved down, not unpacked again), or in place when the input is int8. */
const int8_t *aq_band_input(const aq_band_params *b, const aq_band *band, const aq_band *prev,
                            const int8_t *input, int8_t *buffer);
/* Where the kernel writes output row oy: `staging` when the output is packed, else the row. */
int8_t *aq_band_output(const aq_band_params *b, int8_t *output, int32_t oy, int8_t *staging);
/* Pack the staged row into output row oy (nothing when the output is int8). */
void aq_band_store(const aq_band_params *b, const int8_t *row, int8_t *output, int32_t oy);

void aq_fully_connected_packed_s8(const aq_fully_connected_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output);
void aq_fully_connected_packed_s4(const aq_fully_connected_params *p, const int8_t *input,
                                  const uint8_t *filter, const int32_t *bias, int8_t *output);
void aq_add_packed_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
                      int8_t *output);
void aq_max_pool_packed_s8(const aq_pool_params *p, const int8_t *input, int8_t *output);
void aq_avg_pool_packed_s8(const aq_pool_params *p, const int8_t *input, int8_t *output);
void aq_lut_packed_s8(const aq_lut_params *p, const int8_t *table, const int8_t *input,
                      int8_t *output);
void aq_clamp_packed_s8(const aq_clamp_params *p, const int8_t *input, int8_t *output);
void aq_mean_packed_s8(const aq_mean_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif
#endif /* AQ_KERNELS_H */
