/* wsframe — RFC 6455 §5 framing and the client-frame decoder. */
#include "wsframe.h"

#include <stdlib.h>
#include <string.h>

/* Between messages a buffer above this is freed so an idle connection that
 * once received a big message does not keep holding it. */
#define WS_DECODER_KEEP_CAPACITY (16u * 1024u)
#define WS_DECODER_MIN_CAPACITY 256u

#define WSFRAME_LENGTH_16 126
#define WSFRAME_LENGTH_64 127

/* Handed out for empty payloads so event data is never NULL. */
static const uint8_t ws_empty_payload[1];

/* ---- headers ---- */

/* Total header length implied by the first two bytes. */
static size_t wsframe_header_size(const uint8_t *buf)
{
    size_t size = 2;
    uint8_t length7 = buf[1] & 0x7F;

    if (length7 == WSFRAME_LENGTH_16)
        size += 2;
    else if (length7 == WSFRAME_LENGTH_64)
        size += 8;
    if (buf[1] & 0x80)
        size += 4;
    return size;
}

static uint64_t wsframe_read_be(const uint8_t *buf, size_t n)
{
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++)
        value = (value << 8) | buf[i];
    return value;
}

static void wsframe_write_be(uint8_t *buf, uint64_t value, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        buf[i - 1] = (uint8_t)value;
        value >>= 8;
    }
}

int wsframe_header_parse(const uint8_t *buf, size_t len, struct wsframe_header *header)
{
    if (len < 2)
        return WSFRAME_NEED_MORE;

    uint8_t length7 = buf[1] & 0x7F;
    /* The top length bit can be judged from its first byte: failing there
     * keeps the error independent of how the header was split. */
    if (length7 == WSFRAME_LENGTH_64 && len > 2 && (buf[2] & 0x80))
        return WSFRAME_ERROR;

    size_t size = wsframe_header_size(buf);
    if (len < size)
        return WSFRAME_NEED_MORE;

    header->fin = (buf[0] & 0x80) != 0;
    header->rsv = (uint8_t)((buf[0] >> 4) & 0x7);
    header->opcode = buf[0] & 0x0F;
    header->masked = (buf[1] & 0x80) != 0;

    size_t at = 2;
    if (length7 == WSFRAME_LENGTH_16) {
        header->payload_length = wsframe_read_be(buf + at, 2);
        at += 2;
    } else if (length7 == WSFRAME_LENGTH_64) {
        header->payload_length = wsframe_read_be(buf + at, 8);
        at += 8;
    } else {
        header->payload_length = length7;
    }

    if (header->masked)
        memcpy(header->mask, buf + at, 4);
    else
        memset(header->mask, 0, 4);
    header->header_length = size;
    return (int)size;
}

size_t wsframe_header_build(uint8_t out[WSFRAME_MAX_HEADER], bool fin, uint8_t rsv,
                            uint8_t opcode, uint64_t payload_length)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F));
    if (payload_length < WSFRAME_LENGTH_16) {
        out[1] = (uint8_t)payload_length;
        return 2;
    }
    if (payload_length <= UINT16_MAX) {
        out[1] = WSFRAME_LENGTH_16;
        wsframe_write_be(out + 2, payload_length, 2);
        return 4;
    }
    out[1] = WSFRAME_LENGTH_64;
    wsframe_write_be(out + 2, payload_length, 8);
    return 10;
}

/* ---- masking ---- */

void wsframe_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* The key is the mask rotated to this offset and repeated to a word;
     * eight is a multiple of four, so the same word fits every step. */
    uint8_t key_bytes[8];
    for (size_t i = 0; i < sizeof key_bytes; i++)
        key_bytes[i] = mask[(offset + i) & 3];

    uint64_t key;
    memcpy(&key, key_bytes, sizeof key);

    size_t i = 0;
    for (; len - i >= sizeof key; i += sizeof key) {
        uint64_t word;
        memcpy(&word, data + i, sizeof word);
        word ^= key;
        memcpy(data + i, &word, sizeof word);
    }
    for (size_t k = 0; i < len; i++, k++)
        data[i] ^= key_bytes[k];
}

/* ---- close frames ---- */

bool wsframe_close_code_acceptable(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Longest prefix of reason[0..len) that fits in max bytes without splitting
 * a character: back off over continuation bytes at the cut. */
static size_t wsframe_utf8_fit(const uint8_t *reason, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && (reason[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

size_t wsframe_close_payload_build(uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD],
                                   unsigned code, const char *reason)
{
    if (code == WS_CLOSE_NO_STATUS)
        return 0;

    wsframe_write_be(out, code, 2);
    if (reason == NULL)
        return 2;

    const uint8_t *bytes = (const uint8_t *)reason;
    size_t length = wsframe_utf8_fit(bytes, strlen(reason), WSFRAME_MAX_CONTROL_PAYLOAD - 2);
    memcpy(out + 2, bytes, length);
    return 2 + length;
}

/* ---- decoder ---- */

static bool ws_opcode_is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

static bool ws_opcode_is_known(uint8_t opcode)
{
    switch (opcode) {
    case WS_OP_CONTINUATION:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return true;
    default:
        return false;
    }
}

static void ws_decoder_error_event(const struct ws_decoder *decoder, struct ws_event *event)
{
    memset(event, 0, sizeof *event);
    event->type = WS_EVENT_ERROR;
    event->close_code = decoder->failed_code;
    event->reason = decoder->failed_reason;
    event->reason_length = strlen(decoder->failed_reason);
}

/* Returns false so rule checks can `return ws_decoder_fail(...)`. */
static bool ws_decoder_fail(struct ws_decoder *decoder, unsigned code, const char *reason)
{
    decoder->failed = true;
    decoder->failed_code = code;
    decoder->failed_reason = reason;
    return false;
}

void ws_decoder_init(struct ws_decoder *decoder, const struct ws_decoder_options *options)
{
    memset(decoder, 0, sizeof *decoder);
    decoder->options = *options;
    decoder->in_header = true;
    utf8_validator_init(&decoder->utf8);
}

void ws_decoder_release(struct ws_decoder *decoder)
{
    free(decoder->message);
    decoder->message = NULL;
    decoder->message_length = 0;
    decoder->message_capacity = 0;
    decoder->deliver_pending = false;
}

void ws_decoder_reuse(struct ws_decoder *decoder, const struct ws_decoder_options *options)
{
    if (decoder->message_capacity > WS_DECODER_KEEP_CAPACITY)
        ws_decoder_release(decoder);
    uint8_t *message = decoder->message;
    size_t capacity = decoder->message_capacity;
    ws_decoder_init(decoder, options);
    decoder->message = message;
    decoder->message_capacity = capacity;
}

bool ws_decoder_idle(const struct ws_decoder *decoder)
{
    return !decoder->failed && decoder->in_header && decoder->header_have == 0 &&
           !decoder->in_message;
}

uint64_t ws_decoder_frames(const struct ws_decoder *decoder)
{
    return decoder->frames;
}

/* The last event lent out the message buffer; now it may be reused. */
static void ws_decoder_recycle_message(struct ws_decoder *decoder)
{
    decoder->deliver_pending = false;
    decoder->message_length = 0;
    if (decoder->message_capacity > WS_DECODER_KEEP_CAPACITY) {
        free(decoder->message);
        decoder->message = NULL;
        decoder->message_capacity = 0;
    }
}

static bool ws_decoder_reserve(struct ws_decoder *decoder, size_t extra)
{
    size_t needed = decoder->message_length + extra;
    if (needed <= decoder->message_capacity)
        return true;

    size_t capacity = decoder->message_capacity;
    capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
    if (capacity < WS_DECODER_MIN_CAPACITY)
        capacity = WS_DECODER_MIN_CAPACITY;
    if (capacity < needed)
        capacity = needed;
    uint64_t limit = decoder->options.max_message_size;
    if (limit != 0 && capacity > limit)
        capacity = (size_t)limit; /* needed <= limit: checked on the header */

    uint8_t *grown = realloc(decoder->message, capacity);
    if (grown == NULL)
        return ws_decoder_fail(decoder, WS_CLOSE_INTERNAL_ERROR, "out of memory");
    decoder->message = grown;
    decoder->message_capacity = capacity;
    return true;
}

/* Collects header bytes; returns how many of data it used. The common case
 * of a whole header in data is parsed in place without copying. */
static size_t ws_decoder_read_header(struct ws_decoder *decoder, const uint8_t *data, size_t len)
{
    struct wsframe_header *header = &decoder->header;

    if (decoder->header_have == 0) {
        int parsed = wsframe_header_parse(data, len, header);
        if (parsed >= 0) {
            decoder->in_header = false;
            return (size_t)parsed;
        }
        /* Partial or bad: the copying path below handles both. */
    }

    size_t used = 0;
    for (;;) {
        int parsed = wsframe_header_parse(decoder->header_bytes, decoder->header_have, header);
        if (parsed >= 0) {
            decoder->in_header = false;
            decoder->header_have = 0;
            return used;
        }
        if (parsed == WSFRAME_ERROR) {
            ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "invalid frame length");
            return used;
        }
        size_t want = decoder->header_have < 2 ? 2 : wsframe_header_size(decoder->header_bytes);
        size_t take = want - decoder->header_have;
        if (take > len - used)
            take = len - used;
        if (take == 0)
            return used;
        memcpy(decoder->header_bytes + decoder->header_have, data + used, take);
        decoder->header_have += take;
        used += take;
    }
}

static bool ws_decoder_check_control(struct ws_decoder *decoder)
{
    const struct wsframe_header *header = &decoder->header;
    if (!header->fin)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame");
    if (header->payload_length > WSFRAME_MAX_CONTROL_PAYLOAD)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "control frame too long");
    if (header->rsv != 0)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "reserved bits set");
    return true;
}

/* Running total, not per frame: a message must not grow past the limit one
 * fragment at a time. */
static bool ws_decoder_check_size(struct ws_decoder *decoder)
{
    uint64_t limit = decoder->options.max_message_size;
    uint64_t have = decoder->message_length;
    uint64_t more = decoder->header.payload_length;

    if (limit == 0 || limit > SIZE_MAX)
        limit = SIZE_MAX;
    if (more > limit - have)
        return ws_decoder_fail(decoder, WS_CLOSE_TOO_BIG, "message too big");
    return true;
}

static bool ws_decoder_check_data(struct ws_decoder *decoder)
{
    const struct wsframe_header *header = &decoder->header;

    if (header->opcode == WS_OP_CONTINUATION) {
        if (!decoder->in_message)
            return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "unexpected continuation");
        if (header->rsv != 0)
            return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "reserved bits set");
        return ws_decoder_check_size(decoder);
    }

    if (decoder->in_message)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "expected continuation");
    if ((header->rsv & ~decoder->options.allowed_rsv) != 0)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "reserved bits set");
    if (!ws_decoder_check_size(decoder))
        return false;

    decoder->in_message = true;
    decoder->message_opcode = header->opcode;
    decoder->message_rsv = header->rsv;
    decoder->message_length = 0;
    utf8_validator_init(&decoder->utf8);
    return true;
}

static bool ws_decoder_check_header(struct ws_decoder *decoder)
{
    const struct wsframe_header *header = &decoder->header;

    decoder->payload_have = 0;
    if (decoder->options.require_mask && !header->masked)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "unmasked frame");
    if (!ws_opcode_is_known(header->opcode))
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "reserved opcode");
    if (ws_opcode_is_control(header->opcode))
        return ws_decoder_check_control(decoder);
    return ws_decoder_check_data(decoder);
}

static bool ws_decoder_validates_text(const struct ws_decoder *decoder)
{
    return decoder->message_opcode == WS_OP_TEXT &&
           (decoder->message_rsv & WSFRAME_RSV1) == 0;
}

/* Copies and unmasks up to len payload bytes of the current frame; returns
 * how many it took. Text is validated as it arrives so a bad byte fails the
 * connection before the rest of the frame is even sent. */
static size_t ws_decoder_read_payload(struct ws_decoder *decoder, const uint8_t *data, size_t len)
{
    const struct wsframe_header *header = &decoder->header;
    uint64_t left = header->payload_length - decoder->payload_have;
    size_t take = left < len ? (size_t)left : len;
    if (take == 0)
        return 0;

    uint8_t *dest;
    if (ws_opcode_is_control(header->opcode)) {
        dest = decoder->control + decoder->payload_have;
    } else {
        if (!ws_decoder_reserve(decoder, take))
            return 0;
        dest = decoder->message + decoder->message_length;
    }

    memcpy(dest, data, take);
    if (header->masked)
        wsframe_mask(dest, take, header->mask, decoder->payload_have);
    decoder->payload_have += take;

    if (ws_opcode_is_control(header->opcode))
        return take;

    decoder->message_length += take;
    if (ws_decoder_validates_text(decoder) &&
        utf8_validator_feed(&decoder->utf8, dest, take) == UTF8_INVALID)
        ws_decoder_fail(decoder, WS_CLOSE_INVALID_PAYLOAD, "invalid UTF-8");
    return take;
}

static bool ws_decoder_finish_close(struct ws_decoder *decoder, struct ws_event *event)
{
    size_t length = (size_t)decoder->header.payload_length;

    event->type = WS_EVENT_CLOSE;
    event->reason = (const char *)decoder->control;
    if (length == 0) {
        event->close_code = WS_CLOSE_NO_STATUS;
        return true;
    }
    if (length == 1)
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "invalid close payload");

    unsigned code = (unsigned)wsframe_read_be(decoder->control, 2);
    if (!wsframe_close_code_acceptable(code))
        return ws_decoder_fail(decoder, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
    if (!utf8_is_valid(decoder->control + 2, length - 2))
        return ws_decoder_fail(decoder, WS_CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in close reason");

    event->close_code = code;
    event->reason = (const char *)decoder->control + 2;
    event->reason_length = length - 2;
    return true;
}

static bool ws_decoder_finish_control(struct ws_decoder *decoder, struct ws_event *event)
{
    event->data = decoder->control;
    event->length = (size_t)decoder->header.payload_length;
    switch (decoder->header.opcode) {
    case WS_OP_PING:
        event->type = WS_EVENT_PING;
        return true;
    case WS_OP_PONG:
        event->type = WS_EVENT_PONG;
        return true;
    default:
        return ws_decoder_finish_close(decoder, event);
    }
}

/* Returns true when the finished message is handed out in event. */
static bool ws_decoder_finish_data(struct ws_decoder *decoder, struct ws_event *event)
{
    if (!decoder->header.fin)
        return false;

    if (ws_decoder_validates_text(decoder) &&
        utf8_validator_feed(&decoder->utf8, NULL, 0) != UTF8_COMPLETE)
        return ws_decoder_fail(decoder, WS_CLOSE_INVALID_PAYLOAD, "invalid UTF-8");

    decoder->in_message = false;
    decoder->deliver_pending = true;
    event->type = WS_EVENT_MESSAGE;
    event->opcode = decoder->message_opcode;
    event->rsv = decoder->message_rsv;
    event->data = decoder->message != NULL ? decoder->message : ws_empty_payload;
    event->length = decoder->message_length;
    return true;
}

/* The current frame's payload is complete. Returns true when it produced an
 * event (a failure leaves decoder->failed set instead). */
static bool ws_decoder_finish_frame(struct ws_decoder *decoder, struct ws_event *event)
{
    bool produced;

    decoder->in_header = true;
    if (ws_opcode_is_control(decoder->header.opcode))
        produced = ws_decoder_finish_control(decoder, event);
    else
        produced = ws_decoder_finish_data(decoder, event);
    if (!decoder->failed)
        decoder->frames++;
    return produced;
}

size_t ws_decoder_feed(struct ws_decoder *decoder, const uint8_t *data, size_t len,
                       struct ws_event *event)
{
    memset(event, 0, sizeof *event);
    if (decoder->failed) {
        ws_decoder_error_event(decoder, event);
        return 0;
    }
    if (decoder->deliver_pending)
        ws_decoder_recycle_message(decoder);

    size_t used = 0;
    for (;;) {
        if (decoder->in_header) {
            if (used == len)
                break;
            used += ws_decoder_read_header(decoder, data + used, len - used);
            if (decoder->failed)
                break;
            if (decoder->in_header)
                continue;
            if (!ws_decoder_check_header(decoder))
                break;
        }

        used += ws_decoder_read_payload(decoder, data + used, len - used);
        if (decoder->failed)
            break;
        if (decoder->payload_have < decoder->header.payload_length)
            break;
        if (ws_decoder_finish_frame(decoder, event))
            return used;
        if (decoder->failed)
            break;
    }

    if (decoder->failed)
        ws_decoder_error_event(decoder, event);
    return used;
}
