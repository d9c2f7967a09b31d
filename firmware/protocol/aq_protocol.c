/* Device side of the aqedge serial protocol, version 1: see aq_protocol.h and
 * docs/protocol.md. No dynamic memory; one static receive buffer of AQ_RX_MAX bytes. */
#include "aq_protocol.h"

#include <string.h>

#include "aq_board.h"
#include "aq_model.h"
#include "board_config.h"

#ifndef AQ_RX_MAX
#error "board_config.h must define AQ_RX_MAX (largest decoded frame the device accepts)"
#endif
#if AQ_RX_MAX < 70
#error "AQ_RX_MAX must hold at least a 64-byte PING (70 bytes)"
#endif

/* ---- CRC-32 ------------------------------------------------------------------------------- */

/* crc32 of each 4-bit value, reflected polynomial 0xEDB88320. */
static const uint32_t aq_crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t aq_crc32(uint32_t crc, const uint8_t *data, size_t n)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= data[i];
        c = (c >> 4) ^ aq_crc32_nibble[c & 0xFu];
        c = (c >> 4) ^ aq_crc32_nibble[c & 0xFu];
    }
    return ~c;
}

/* ---- COBS --------------------------------------------------------------------------------- */

size_t aq_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t code_at = 0; /* where the current block's code byte goes */
    size_t o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (code == 0xFFu) { /* full block of 254 data bytes: no implied zero after it */
            out[code_at] = code;
            code_at = o++;
            code = 1;
        }
        if (in[i] == 0u) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            code++;
        }
    }
    out[code_at] = code;
    return o;
}

size_t aq_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_max)
{
    aq_cobs_decoder_t d;
    aq_cobs_decoder_init(&d, out, out_max);
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0u) {
            return AQ_COBS_ERROR;
        }
        (void)aq_cobs_decoder_push(&d, in[i]);
    }
    int r = aq_cobs_decoder_push(&d, 0u);
    if (r == AQ_COBS_FRAME) {
        return d.len;
    }
    return r == AQ_COBS_EMPTY ? 0u : AQ_COBS_ERROR;
}

void aq_cobs_decoder_init(aq_cobs_decoder_t *d, uint8_t *buf, size_t cap)
{
    d->buf = buf;
    d->cap = cap;
    d->len = 0;
    d->code = 0;
    d->left = 0;
    d->overflow = 0;
}

static void aq_cobs_append(aq_cobs_decoder_t *d, uint8_t byte)
{
    if (d->len < d->cap) {
        d->buf[d->len++] = byte;
    } else {
        d->overflow = 1u;
    }
}

int aq_cobs_decoder_push(aq_cobs_decoder_t *d, uint8_t byte)
{
    if (byte == 0u) {
        int r;
        if (d->code == 0u) {
            r = AQ_COBS_EMPTY;
        } else if (d->overflow) {
            r = AQ_COBS_OVERFLOW;
        } else if (d->left != 0u) {
            r = AQ_COBS_MALFORMED;
        } else {
            r = AQ_COBS_FRAME;
        }
        d->code = 0;
        d->left = 0;
        d->overflow = 0;
        if (r == AQ_COBS_EMPTY) {
            d->len = 0;
        }
        /* len stays valid for the caller; the next non-zero byte starts over at 0 */
        return r;
    }
    if (d->code == 0u) { /* first byte of a new frame */
        d->len = 0;
    } else if (d->overflow) {
        return AQ_COBS_MORE; /* discard until the delimiter */
    }
    if (d->left == 0u) {
        if (d->code != 0u && d->code != 0xFFu) {
            aq_cobs_append(d, 0u); /* the zero the previous short block stood for */
        }
        d->code = byte;
        d->left = (uint8_t)(byte - 1u);
    } else {
        aq_cobs_append(d, byte);
        d->left--;
    }
    return AQ_COBS_MORE;
}

/* ---- Frames ------------------------------------------------------------------------------- */

static uint32_t aq_get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void aq_put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int aq_frame_parse(const uint8_t *buf, size_t n, aq_frame_t *out)
{
    if (n < AQ_FRAME_OVERHEAD) {
        return (int)AQ_ERR_BAD_LENGTH;
    }
    size_t body = n - 4u;
    if (aq_crc32(0u, buf, body) != aq_get_u32le(buf + body)) {
        return (int)AQ_ERR_BAD_CRC;
    }
    out->type = buf[0];
    out->seq = buf[1];
    out->payload = buf + 2;
    out->len = (uint32_t)(body - 2u);
    return 0;
}

/* Streaming COBS encoder straight to the UART: one block (code + up to 254 bytes) at a time. */
typedef struct {
    uint8_t block[255];
    uint8_t n; /* data bytes in block[1..] */
} aq_cobs_writer_t;

static void aq_writer_flush(aq_cobs_writer_t *w)
{
    w->block[0] = (uint8_t)(w->n + 1u);
    aq_uart_write(w->block, (size_t)w->n + 1u);
    w->n = 0;
}

static void aq_writer_put(aq_cobs_writer_t *w, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w->n == 254u) {
            aq_writer_flush(w); /* code 0xFF: no implied zero */
        }
        if (p[i] == 0u) {
            aq_writer_flush(w);
        } else {
            w->block[++w->n] = p[i];
        }
    }
}

/* Send one frame whose payload is the concatenation of a, b and c (any may be empty). */
static void aq_protocol_send3(uint8_t type, uint8_t seq, const uint8_t *a, size_t na,
                              const uint8_t *b, size_t nb, const uint8_t *c, size_t nc)
{
    static aq_cobs_writer_t w; /* static: keeps 256 bytes off the stack */
    uint8_t head[2] = {type, seq};
    uint8_t tail[5];
    uint32_t crc = aq_crc32(0u, head, 2u);
    crc = aq_crc32(crc, a, na);
    crc = aq_crc32(crc, b, nb);
    crc = aq_crc32(crc, c, nc);
    aq_put_u32le(tail, crc);
    tail[4] = 0u;

    w.n = 0;
    aq_writer_put(&w, head, 2u);
    aq_writer_put(&w, a, na);
    aq_writer_put(&w, b, nb);
    aq_writer_put(&w, c, nc);
    aq_writer_put(&w, tail, 4u);
    aq_writer_flush(&w);
    aq_uart_write(&tail[4], 1u); /* delimiter */
}

void aq_protocol_send(uint8_t type, uint8_t seq, const uint8_t *a, size_t na, const uint8_t *b,
                      size_t nb)
{
    aq_protocol_send3(type, seq, a, na, b, nb, NULL, 0u);
}

uint8_t aq_protocol_capabilities(void)
{
    /* Weak symbols (aq_model.h): NULL when the model was not generated with profiling. */
    if (&aq_model_op_count != NULL && &aq_model_op_hook != NULL && aq_model_op_count > 0u) {
        return (uint8_t)AQ_CAP_PROFILE;
    }
    return 0u;
}

void aq_protocol_send_error(uint8_t seq, uint8_t code)
{
    uint8_t p[2] = {code, (uint8_t)AQ_PROTOCOL_VERSION};
    aq_protocol_send(AQ_MSG_ERROR, seq, p, sizeof p, NULL, 0u);
}

void aq_protocol_send_error_text(uint8_t seq, uint8_t code, const char *text, size_t n)
{
    uint8_t p[2] = {code, (uint8_t)AQ_PROTOCOL_VERSION};
    aq_protocol_send(AQ_MSG_ERROR, seq, p, sizeof p, (const uint8_t *)text,
                     n < AQ_ERROR_TEXT_MAX ? n : AQ_ERROR_TEXT_MAX);
}

static uint8_t aq_current_seq;

uint8_t aq_protocol_current_seq(void)
{
    return aq_current_seq;
}

void aq_protocol_send_ready(uint8_t seq)
{
    static const char name[] = AQ_BOARD_NAME;
    uint8_t p[18 + 32];
    p[0] = (uint8_t)AQ_PROTOCOL_VERSION;
    p[1] = aq_protocol_capabilities();
    aq_put_u32le(p + 2, aq_timer_hz());
    aq_put_u32le(p + 6, aq_model_arena_bytes);
    aq_put_u32le(p + 10, aq_model_input_bytes);
    aq_put_u32le(p + 14, aq_model_output_bytes);
    memcpy(p + 18, aq_model_sha256, 32u);
    aq_protocol_send(AQ_MSG_READY, seq, p, sizeof p, (const uint8_t *)name, sizeof name - 1u);
}

static uint8_t aq_rx_buf[AQ_RX_MAX];

void aq_protocol_receive(aq_frame_t *out)
{
    aq_cobs_decoder_t d;
    aq_cobs_decoder_init(&d, aq_rx_buf, sizeof aq_rx_buf);
    for (;;) {
        int r = aq_cobs_decoder_push(&d, (uint8_t)aq_uart_read_byte());
        if (r == AQ_COBS_MORE || r == AQ_COBS_EMPTY) {
            continue;
        }
        uint8_t seq = d.len >= 2u ? aq_rx_buf[1] : 0u;
        if (r == AQ_COBS_OVERFLOW) {
            aq_protocol_send_error(seq, AQ_ERR_TOO_LONG);
        } else if (r == AQ_COBS_MALFORMED) {
            aq_protocol_send_error(seq, AQ_ERR_BAD_CRC);
        } else {
            int err = aq_frame_parse(aq_rx_buf, d.len, out);
            if (err == 0) {
                return;
            }
            aq_protocol_send_error(seq, (uint8_t)err);
        }
    }
}

void aq_protocol_handle(const aq_frame_t *f, aq_infer_fn on_infer)
{
    aq_current_seq = f->seq;
    switch (f->type) {
    case AQ_MSG_HELLO:
        if (f->len < 1u) {
            aq_protocol_send_error(f->seq, AQ_ERR_BAD_LENGTH);
        } else if (f->payload[0] != AQ_PROTOCOL_VERSION) {
            aq_protocol_send_error(f->seq, AQ_ERR_VERSION);
        } else {
            aq_protocol_send_ready(f->seq);
        }
        break;
    case AQ_MSG_PING:
        if (f->len > AQ_PING_MAX) {
            aq_protocol_send_error(f->seq, AQ_ERR_BAD_LENGTH);
        } else {
            aq_protocol_send(AQ_MSG_PONG, f->seq, f->payload, f->len, NULL, 0u);
        }
        break;
    case AQ_MSG_INFER:
    case AQ_MSG_PROFILE: {
        int profiled = f->type == AQ_MSG_PROFILE;
        if (profiled && (aq_protocol_capabilities() & AQ_CAP_PROFILE) == 0u) {
            aq_protocol_send_error(f->seq, AQ_ERR_UNKNOWN_TYPE);
            break;
        }
        if (f->len != aq_model_input_bytes) {
            aq_protocol_send_error(f->seq, AQ_ERR_BAD_LENGTH);
            break;
        }
        uint64_t ticks = 0u;
        aq_profile_t profile = {NULL, 0u};
        if (on_infer(f->payload, f->len, &ticks, profiled ? &profile : NULL) != 0) {
            aq_protocol_send_error(f->seq, AQ_ERR_INVOKE_FAILED);
            break;
        }
        uint8_t t[12];
        aq_put_u32le(t, (uint32_t)ticks);
        aq_put_u32le(t + 4, (uint32_t)(ticks >> 32));
        if (profiled) {
            aq_put_u32le(t + 8, profile.n_ops);
            aq_protocol_send3(AQ_MSG_PROFILE_RESULT, f->seq, t, sizeof t, profile.op_ticks_le,
                              (size_t)profile.n_ops * 4u, (const uint8_t *)aq_model_output(),
                              aq_model_output_bytes);
        } else {
            aq_protocol_send(AQ_MSG_RESULT, f->seq, t, 8u, (const uint8_t *)aq_model_output(),
                             aq_model_output_bytes);
        }
        break;
    }
    default:
        aq_protocol_send_error(f->seq, AQ_ERR_UNKNOWN_TYPE);
        break;
    }
}
