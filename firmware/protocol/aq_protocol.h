/* Device side of the aqedge serial protocol, version 1 (docs/protocol.md).
 *
 * Wire format: COBS(type, seq, payload, crc32_le(type+seq+payload)) followed by 0x00.
 * The receive buffer is static and holds AQ_RX_MAX decoded bytes (board_config.h): the largest
 * frame the device accepts (type + seq + payload + CRC). Anything longer is answered with
 * ERROR 4 and its bytes are discarded up to the next 0x00. */
#ifndef AQ_PROTOCOL_H
#define AQ_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AQ_PROTOCOL_VERSION 1u

/* Message types. */
#define AQ_MSG_HELLO 0x01u
#define AQ_MSG_PING 0x02u
#define AQ_MSG_INFER 0x03u
#define AQ_MSG_PROFILE 0x04u /* INFER that also times each op (capability AQ_CAP_PROFILE) */
#define AQ_MSG_ERROR 0x7Fu
#define AQ_MSG_READY 0x81u
#define AQ_MSG_PONG 0x82u
#define AQ_MSG_RESULT 0x83u
#define AQ_MSG_PROFILE_RESULT 0x84u

/* Capability flags, READY payload byte 1 (reserved and 0 in firmware before them). */
#define AQ_CAP_PROFILE 0x01u /* the model reports per-op ticks: PROFILE is answered */

/* Most ops a PROFILE_RESULT reports (later ops are timed into the last entry's successor
 * and not reported; the host sees n_ops < the model's op count). */
#ifndef AQ_PROFILE_MAX_OPS
#define AQ_PROFILE_MAX_OPS 256u
#endif

/* ERROR codes. A frame whose COBS encoding is broken (a block cut short by the delimiter)
 * counts as a bad CRC: its integrity check failed. */
#define AQ_ERR_BAD_CRC 1u
#define AQ_ERR_BAD_LENGTH 2u
#define AQ_ERR_UNKNOWN_TYPE 3u
#define AQ_ERR_TOO_LONG 4u
#define AQ_ERR_VERSION 5u
/* aqedge extension, not in protocol version 1's table: aq_model_invoke() returned non-zero. */
#define AQ_ERR_INVOKE_FAILED 6u
/* aqedge extension: the firmware stopped for good (abort(), a failed assert(), exit(): see
 * board/aq_syscalls.c). The ERROR payload carries a short ASCII reason after the version byte;
 * the device then halts and answers nothing more. */
#define AQ_ERR_ABORTED 7u
/* Most text bytes an ERROR frame carries after code and version. */
#define AQ_ERROR_TEXT_MAX 120u

#define AQ_FRAME_OVERHEAD 6u /* type + seq + CRC-32 */
#define AQ_PING_MAX 64u

/* ---- CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) ---------------------------------------
 * Chains like zlib.crc32: crc = aq_crc32(0, a, na); crc = aq_crc32(crc, b, nb). */
uint32_t aq_crc32(uint32_t crc, const uint8_t *data, size_t n);

/* ---- COBS ---------------------------------------------------------------------------------- */
/* Largest encoding of n bytes (no delimiter). */
#define AQ_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encode n bytes into out (room for AQ_COBS_MAX_ENCODED(n)); returns the encoded length.
 * The 0x00 delimiter is not written. */
size_t aq_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);

/* Decode n encoded bytes (without the delimiter) into out (room for out_max bytes); returns
 * the decoded length, or AQ_COBS_ERROR if the input holds a 0x00, ends inside a block or does
 * not fit. */
#define AQ_COBS_ERROR ((size_t)-1)
size_t aq_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_max);

/* Streaming decoder: one byte at a time into a caller's buffer. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;      /* decoded bytes so far (at most cap) */
    uint8_t code;    /* code byte of the current block, 0 before the first one */
    uint8_t left;    /* data bytes still expected in the current block */
    uint8_t overflow;
} aq_cobs_decoder_t;

enum {
    AQ_COBS_MORE = 0,      /* byte taken, frame not complete */
    AQ_COBS_FRAME = 1,     /* delimiter: buf[0..len) holds a complete frame */
    AQ_COBS_EMPTY = 2,     /* delimiter with nothing before it: ignore */
    AQ_COBS_OVERFLOW = 3,  /* delimiter ending a frame longer than cap (its head is in buf) */
    AQ_COBS_MALFORMED = 4, /* delimiter inside a block: bytes were lost */
};

void aq_cobs_decoder_init(aq_cobs_decoder_t *d, uint8_t *buf, size_t cap);
/* Feed one byte; on anything but AQ_COBS_MORE the caller reads buf/len, then the decoder is
 * ready for the next frame on the following push. */
int aq_cobs_decoder_push(aq_cobs_decoder_t *d, uint8_t byte);

/* ---- Frames -------------------------------------------------------------------------------- */
typedef struct {
    uint8_t type;
    uint8_t seq;
    const uint8_t *payload; /* points into the receive buffer: valid until the next receive */
    uint32_t len;
} aq_frame_t;

/* Check a decoded frame's length and CRC; fills *out and returns 0, or an AQ_ERR_ code. */
int aq_frame_parse(const uint8_t *buf, size_t n, aq_frame_t *out);

/* Send one frame whose payload is a followed by b (either may be empty). */
void aq_protocol_send(uint8_t type, uint8_t seq, const uint8_t *a, size_t na, const uint8_t *b,
                      size_t nb);
void aq_protocol_send_error(uint8_t seq, uint8_t code);
/* ERROR followed by up to AQ_ERROR_TEXT_MAX bytes of ASCII text (why). */
void aq_protocol_send_error_text(uint8_t seq, uint8_t code, const char *text, size_t n);
/* The seq of the request being answered (0 before the first one): lets code outside the
 * handler (a fatal error in the middle of an inference) answer that request. */
uint8_t aq_protocol_current_seq(void);
/* READY: protocol version, timer, model sizes and hash, AQ_BOARD_NAME. */
void aq_protocol_send_ready(uint8_t seq);

/* Block until a frame with a good CRC arrives. Broken frames are answered with ERROR here
 * and never returned. */
void aq_protocol_receive(aq_frame_t *out);

/* Per-op ticks of one profiled inference: n_ops little-endian u32 values at op_ticks_le. */
typedef struct {
    const uint8_t *op_ticks_le;
    uint32_t n_ops;
} aq_profile_t;

/* Runs one inference on `input` (exactly aq_model_input_bytes) and stores the elapsed timer
 * ticks; returns 0 on success. The output is read from aq_model_output(). With `profile`
 * non-NULL the ticks of each op are recorded too and described in *profile. */
typedef int (*aq_infer_fn)(const uint8_t *input, uint32_t n, uint64_t *ticks, aq_profile_t *profile);

/* The capability flags this firmware announces in READY (AQ_CAP_*). */
uint8_t aq_protocol_capabilities(void);

/* Answer one received frame: HELLO -> READY (or ERROR 5), PING -> PONG, INFER -> on_infer then
 * RESULT, PROFILE -> on_infer with a profile then PROFILE_RESULT (ERROR 3 without the
 * capability), anything else -> ERROR 3; wrong payload lengths -> ERROR 2. */
void aq_protocol_handle(const aq_frame_t *frame, aq_infer_fn on_infer);

#ifdef __cplusplus
}
#endif
#endif /* AQ_PROTOCOL_H */
