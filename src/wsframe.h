/* wsframe — RFC 6455 §5 framing: frame headers, masking, close payloads and a
 * streaming decoder that turns client bytes into whole messages and control
 * frames. Pure code: bytes in, events out; no sockets, no libevent. */
#ifndef WSBROKER_WSFRAME_H
#define WSBROKER_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_NO_STATUS = 1005,      /* never sent: a close frame without payload */
    WS_CLOSE_ABNORMAL = 1006,       /* never sent: TCP closed without a close frame */
    WS_CLOSE_INVALID_PAYLOAD = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
};

#define WSFRAME_RSV1 0x4u
#define WSFRAME_RSV2 0x2u
#define WSFRAME_RSV3 0x1u
#define WSFRAME_MAX_HEADER 14         /* 2 + 8 (length) + 4 (mask) */
#define WSFRAME_MAX_CONTROL_PAYLOAD 125
#define WSFRAME_NEED_MORE (-2)
#define WSFRAME_ERROR (-1)

struct wsframe_header {
    bool fin;
    uint8_t rsv;            /* the three RSV bits: RSV1 = 0x4, RSV2 = 0x2, RSV3 = 0x1 */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t payload_length;
    size_t header_length;   /* bytes the header occupies on the wire */
};

/* Parses the header at buf. Returns the header length (2..14),
 * WSFRAME_NEED_MORE when buf holds only part of it, or WSFRAME_ERROR when a
 * 64-bit length has its most significant bit set. No other rule is checked
 * here; the decoder below applies them. */
int wsframe_header_parse(const uint8_t *buf, size_t len, struct wsframe_header *header);

/* Writes an unmasked (server) frame header for a payload of payload_length
 * bytes into out and returns its length (2, 4 or 10). rsv uses the bit
 * values above. */
size_t wsframe_header_build(uint8_t out[WSFRAME_MAX_HEADER], bool fin, uint8_t rsv,
                            uint8_t opcode, uint64_t payload_length);

/* XORs data with the 4-byte mask; offset is the position of data[0] within
 * the frame payload, so a payload can be unmasked in pieces. */
void wsframe_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* True when a close code received from a peer is acceptable:
 * 1000-1003, 1007-1014, 3000-4999. */
bool wsframe_close_code_acceptable(unsigned code);

/* Builds a close payload (2-byte code + reason, reason cut to fit 123 bytes
 * on a UTF-8 character boundary) into out; returns its length. code
 * WS_CLOSE_NO_STATUS gives an empty payload. */
size_t wsframe_close_payload_build(uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD],
                                   unsigned code, const char *reason);

/* ---- streaming decoder for client → server bytes ---- */

struct ws_decoder_options {
    uint64_t max_message_size; /* whole message after reassembly; 0 = no limit */
    uint8_t allowed_rsv;       /* RSV bits a negotiated extension allows on a
                                  message's first frame (WSFRAME_RSV1 for
                                  permessage-deflate), else 0 */
    bool require_mask;         /* true on a server: unmasked client frames → 1002 */
};

enum ws_event_type {
    WS_EVENT_NONE = 0,   /* every byte given was consumed; feed more */
    WS_EVENT_MESSAGE,    /* a whole data message: opcode, rsv, data, length */
    WS_EVENT_PING,       /* data/length: the ping payload (≤125 bytes) */
    WS_EVENT_PONG,       /* data/length: the pong payload */
    WS_EVENT_CLOSE,      /* a valid close frame: close_code (WS_CLOSE_NO_STATUS
                            when the payload was empty), reason/reason_length */
    WS_EVENT_ERROR,      /* the connection must be failed with close_code;
                            reason is a static text for the log and close frame */
};

struct ws_event {
    enum ws_event_type type;
    uint8_t opcode;          /* MESSAGE: WS_OP_TEXT or WS_OP_BINARY */
    uint8_t rsv;             /* MESSAGE: RSV bits of its first frame */
    const uint8_t *data;     /* unmasked payload, owned by the decoder, valid
                                until the next feed or release call */
    size_t length;
    unsigned close_code;
    const char *reason;      /* CLOSE: points into data, not NUL-terminated;
                                ERROR: static NUL-terminated text */
    size_t reason_length;
};

/* Fields are private; embed the struct and use the functions. */
struct ws_decoder {
    struct ws_decoder_options options;
    struct wsframe_header header;   /* current frame */
    uint8_t header_bytes[WSFRAME_MAX_HEADER];
    size_t header_have;             /* bytes of the current header seen */
    bool in_header;                 /* waiting for (the rest of) a header */
    uint64_t payload_have;          /* payload bytes of the current frame seen */
    bool in_message;                /* a fragmented data message is open */
    uint8_t message_opcode;
    uint8_t message_rsv;
    uint8_t *message;               /* reassembled, unmasked message bytes */
    size_t message_length;
    size_t message_capacity;
    bool deliver_pending;           /* last event handed out message bytes;
                                       reset on the next feed */
    uint8_t control[WSFRAME_MAX_CONTROL_PAYLOAD];
    struct utf8_validator utf8;
    bool failed;
    unsigned failed_code;
    const char *failed_reason;
    uint64_t frames;                /* frames fully received, any opcode */
};

void ws_decoder_init(struct ws_decoder *decoder, const struct ws_decoder_options *options);

/* Frees the message buffer. The decoder may be initialised again. */
void ws_decoder_release(struct ws_decoder *decoder);

/* Starts the decoder afresh with options, as ws_decoder_init does, but
 * keeps its message buffer (when no larger than the decoder keeps between
 * messages anyway) for the next message: one decoder can serve many
 * connections in turn while each is between frames. */
void ws_decoder_reuse(struct ws_decoder *decoder, const struct ws_decoder_options *options);

/* True when the decoder holds nothing of a frame or message: it sits at a
 * frame boundary outside a fragmented message and has not failed. */
bool ws_decoder_idle(const struct ws_decoder *decoder);

/* Consumes bytes from data and stops after the first event. Returns how many
 * bytes were consumed (0..len) and fills *event. WS_EVENT_NONE means all len
 * bytes were consumed and more are needed. After WS_EVENT_ERROR the decoder
 * has failed and every later call returns the same error consuming nothing.
 *
 * Rules enforced (close code in brackets): unmasked client frame when
 * require_mask [1002]; RSV bits not allowed, or on a continuation or control
 * frame [1002]; reserved opcode [1002]; control frame over 125 bytes or
 * fragmented [1002]; continuation without an open message, or a new data
 * frame inside one [1002]; 64-bit length with the top bit set [1002, checked
 * before any size limit]; running message size over max_message_size,
 * checked on each header before its payload is buffered [1009]; text that is
 * not UTF-8, failing at the first bad byte even mid-frame [1007] (skipped for
 * messages whose first frame has RSV1 set: the caller validates after
 * inflating); close payload of 1 byte or a code not acceptable [1002]; close
 * reason not UTF-8 [1007]. Control frames may arrive between fragments. */
size_t ws_decoder_feed(struct ws_decoder *decoder, const uint8_t *data, size_t len,
                       struct ws_event *event);

/* Frames fully received so far (any opcode): the keep-alive clock. */
uint64_t ws_decoder_frames(const struct ws_decoder *decoder);

#endif
