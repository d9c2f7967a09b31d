/* The interface every generated model implements (model.c / model_data.c, rendered by
 * `aqedge build` from templates/). The firmware main loop and the host runner only use this. */
#ifndef AQ_MODEL_H
#define AQ_MODEL_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes in bytes of the model's single input and single output tensor (int8). */
extern const uint32_t aq_model_input_bytes;
extern const uint32_t aq_model_output_bytes;
/* Bytes of the activation arena (all intermediate tensors, planned at build time). */
extern const uint32_t aq_model_arena_bytes;
/* SHA-256 of the .tflite file this model was built from. */
extern const uint8_t aq_model_sha256[32];

/* Where to write the input and read the output: both point into the arena. */
int8_t *aq_model_input(void);
const int8_t *aq_model_output(void);

/* One-time set-up before the first aq_model_invoke() (it builds the lookup tables of LOGISTIC,
 * HARD_SWISH and Swish). Weak: models without it (hand-written test models) need none. */
extern void aq_model_prepare(void) __attribute__((weak));

/* Run one inference on what aq_model_input() holds. Returns 0 on success. */
int aq_model_invoke(void);

/* Per-op profiling (optional). A generated model exports how many kernel calls its
 * aq_model_invoke() makes, and calls aq_model_op_hook(i) right after call i (0-based) whenever
 * the hook is set (NULL: no profiling, one load and branch per op). Declared weak so the firmware
 * also links with models that lack them (hand-written test models): their addresses are then
 * NULL and the device announces no profiling capability. */
extern const uint32_t aq_model_op_count __attribute__((weak));
extern void (*aq_model_op_hook)(uint32_t op) __attribute__((weak));

#ifdef __cplusplus
}
#endif
#endif /* AQ_MODEL_H */
