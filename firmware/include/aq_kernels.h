/* aqedge kernels: int8 activations (asymmetric, zero point), int8 symmetric per-channel weights,
 * int32 bias, TFLite's exact integer arithmetic. Tensors are NHWC with batch 1; filters OHWI.
 * Every fixed-point parameter is computed at build time (aqedge/codegen/lower.py), the way
 * TFLite Micro's Prepare computes it, and passed in as constants. One kernel per file. */
#ifndef AQ_KERNELS_H
#define AQ_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Output quantization shared by the MAC kernels. */
typedef struct {
  int32_t input_offset;      /* -input zero point */
  int32_t output_offset;     /* output zero point */
  int32_t act_min, act_max;  /* fused activation clamp, in output integers */
  const int32_t *multiplier; /* per output channel */
  const int32_t *shift;      /* per output channel, > 0 is a left shift */
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
} aq_conv_params;

/* CONV_2D, int8 weights. */
void aq_conv_s8(const aq_conv_params *p, const int8_t *input, const int8_t *filter,
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

typedef struct {
  int32_t batches;
  int32_t accum_depth;
  int32_t out_c;
  aq_requant q;               /* per-tensor models repeat the same multiplier per channel */
} aq_fully_connected_params;

/* FULLY_CONNECTED, int8 weights (filter [out_c, accum_depth]). */
void aq_fully_connected_s8(const aq_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output);

typedef struct {
  int16_t in_h, in_w, channels;
  int16_t out_h, out_w;
  int16_t k_h, k_w;
  int16_t stride_h, stride_w;
  int16_t pad_h, pad_w;
  int32_t act_min, act_max;
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
} aq_add_params;

/* ADD of two int8 tensors of the same shape. */
void aq_add_s8(const aq_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output);

#ifdef __cplusplus
}
#endif
#endif /* AQ_KERNELS_H */
