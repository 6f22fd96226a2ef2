#include "message.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "utf8.h"
#include "wsframe.h"

/* One compressed encoding of a message. */
struct message_deflated {
    struct message_deflated *next;
    bool envelope;
    int window_bits;
    int level;
    int memory_level;
    struct shared_frame *frame;
};

/* ---- lifetime ---- */

static char *message_copy_string(const char *text)
{
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy != NULL)
        memcpy(copy, text, length + 1);
    return copy;
}

static void message_free(struct message *message)
{
    free(message->channel);
    free(message->from);
    free(message->payload);
    shared_frame_release(message->raw_frame);
    shared_frame_release(message->envelope_frame);
    while (message->deflated != NULL) {
        struct message_deflated *next = message->deflated->next;
        shared_frame_release(message->deflated->frame);
        free(message->deflated);
        message->deflated = next;
    }
    free(message);
}

static bool message_kind_valid(enum message_kind kind)
{
    return kind == MESSAGE_TEXT || kind == MESSAGE_BINARY || kind == MESSAGE_JSON;
}

struct message *message_new(enum message_kind kind, const char *channel, const char *from,
                            const void *payload, size_t length)
{
    /* Empty text is never a JSON value; refusing it here keeps the
     * envelope from ever reading "data":}. */
    if (!message_kind_valid(kind) || channel == NULL || (payload == NULL && length > 0) ||
        (kind == MESSAGE_JSON && length == 0) || length == SIZE_MAX)
        return NULL;
    struct message *message = calloc(1, sizeof *message);
    if (message == NULL)
        return NULL;
    message->refcount = 1;
    message->kind = kind;
    message->length = length;
    message->channel = message_copy_string(channel);
    message->from = from != NULL ? message_copy_string(from) : NULL;
    /* A trailing NUL that is not part of the payload lets text payloads be
     * inspected as C strings while debugging. */
    message->payload = malloc(length + 1);
    if (message->channel == NULL || (from != NULL && message->from == NULL) ||
        message->payload == NULL) {
        message_free(message);
        return NULL;
    }
    if (length > 0)
        memcpy(message->payload, payload, length);
    message->payload[length] = '\0';
    return message;
}

/* Refcounts are atomic: a published message is held by the history ring
 * and by the inboxes and output queues of several worker threads. */
struct message *message_retain(struct message *message)
{
    __atomic_add_fetch(&message->refcount, 1, __ATOMIC_RELAXED);
    return message;
}

/* Lazily built encodings are read by every worker that delivers the
 * message: each is built outside any lock and swapped into place once;
 * a thread that lost the race frees its copy and uses the winner's. */
static struct shared_frame *message_install(struct shared_frame **slot, struct shared_frame *built)
{
    struct shared_frame *expected = NULL;
    if (built == NULL ||
        __atomic_compare_exchange_n(slot, &expected, built, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return built;
    shared_frame_release(built);
    return expected;
}

static struct shared_frame *message_load(struct shared_frame *const *slot)
{
    return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

void message_forget_envelope(struct message *message)
{
    shared_frame_release(message->envelope_frame);
    message->envelope_frame = NULL;
    struct message_deflated **link = &message->deflated;
    while (*link != NULL) {
        struct message_deflated *d = *link;
        if (!d->envelope) {
            link = &d->next;
            continue;
        }
        *link = d->next;
        shared_frame_release(d->frame);
        free(d);
    }
}

static size_t message_frame_bytes(const struct shared_frame *frame)
{
    return frame != NULL ? sizeof(*frame) + frame->length : 0;
}

size_t message_footprint(const struct message *message)
{
    size_t bytes = sizeof(*message) + message->length + strlen(message->channel) + 1 +
                   (message->from != NULL ? strlen(message->from) + 1 : 0) +
                   message_frame_bytes(message_load(&message->raw_frame)) +
                   message_frame_bytes(message_load(&message->envelope_frame));
    for (const struct message_deflated *d = __atomic_load_n(&message->deflated, __ATOMIC_ACQUIRE);
         d != NULL; d = d->next)
        bytes += sizeof(*d) + message_frame_bytes(d->frame);
    return bytes;
}

void message_release(struct message *message)
{
    if (message != NULL && __atomic_sub_fetch(&message->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        message_free(message);
}

/* ---- raw frame ---- */

static bool message_json_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A JSON string reaches raw receivers as its characters, anything else as
 * its JSON text. Only strings are decoded, so a large object or array is
 * never parsed here. */
static struct shared_frame *message_json_raw_frame(const struct message *message)
{
    size_t start = 0;
    while (start < message->length && message_json_space(message->payload[start]))
        start++;
    if (start == message->length || message->payload[start] != '"')
        return shared_frame_encode(WS_OP_TEXT, message->payload, message->length);

    json_error_t error;
    json_t *value = json_loadb((const char *)message->payload, message->length,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    struct shared_frame *frame = NULL;
    if (json_is_string(value))
        frame = shared_frame_encode(WS_OP_TEXT, json_string_value(value),
                                    json_string_length(value));
    json_decref(value);
    return frame;
}

static struct shared_frame *message_build_raw_frame(const struct message *message)
{
    switch (message->kind) {
    case MESSAGE_TEXT:
        return shared_frame_encode(WS_OP_TEXT, message->payload, message->length);
    case MESSAGE_BINARY:
        return shared_frame_encode(WS_OP_BINARY, message->payload, message->length);
    case MESSAGE_JSON:
        return message_json_raw_frame(message);
    }
    return NULL;
}

struct shared_frame *message_raw_frame(struct message *message)
{
    struct shared_frame *frame = message_load(&message->raw_frame);
    return frame != NULL ? frame
                         : message_install(&message->raw_frame, message_build_raw_frame(message));
}

/* ---- envelope frame ----
 *
 * The envelope is assembled from pieces straight into the frame: each piece
 * is measured first (so the header, whose size depends on the total, can be
 * written before the payload), then written once. The JSON data of a
 * publish is spliced in as it is, never parsed again. */

enum message_piece_kind {
    MESSAGE_PIECE_RAW,      /* bytes as they are */
    MESSAGE_PIECE_STRING,   /* bytes as a quoted, escaped JSON string */
    MESSAGE_PIECE_BASE64,   /* bytes as a quoted base64 JSON string */
};

struct message_piece {
    enum message_piece_kind kind;
    const uint8_t *bytes;
    size_t length;
};

#define MESSAGE_MAX_PIECES 10
/* A multiple of 3, so only the last chunk carries '=' padding; small
 * enough for EVP_EncodeBlock's int length. */
#define MESSAGE_BASE64_CHUNK ((size_t)3 * 1024 * 1024)

static bool message_add(size_t *total, size_t more)
{
    if (more > SIZE_MAX - *total)
        return false;
    *total += more;
    return true;
}

static size_t message_escape_width(uint8_t c)
{
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
        return 2;
    return c < 0x20 ? 6 : 1;
}

/* Escaped length with quotes; false when the bytes are not UTF-8 (the
 * result would not be JSON) or the size overflows. */
static bool message_string_length(const uint8_t *bytes, size_t length, size_t *out)
{
    if (!utf8_is_valid(bytes, length))
        return false;
    size_t total = 2;
    for (size_t i = 0; i < length; i++)
        if (!message_add(&total, message_escape_width(bytes[i])))
            return false;
    *out = total;
    return true;
}

/* Escapes the way jansson does, so every server text looks alike. */
static uint8_t *message_write_string(uint8_t *out, const uint8_t *bytes, size_t length)
{
    static const char hex[] = "0123456789ABCDEF";
    *out++ = '"';
    for (size_t i = 0; i < length; i++) {
        uint8_t c = bytes[i];
        const char *named = NULL;
        switch (c) {
        case '"': named = "\\\""; break;
        case '\\': named = "\\\\"; break;
        case '\b': named = "\\b"; break;
        case '\f': named = "\\f"; break;
        case '\n': named = "\\n"; break;
        case '\r': named = "\\r"; break;
        case '\t': named = "\\t"; break;
        default: break;
        }
        if (named != NULL) {
            memcpy(out, named, 2);
            out += 2;
        } else if (c < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = (uint8_t)hex[c >> 4];
            out[5] = (uint8_t)hex[c & 0x0F];
            out += 6;
        } else {
            *out++ = c;
        }
    }
    *out++ = '"';
    return out;
}

static bool message_base64_length(size_t length, size_t *out)
{
    size_t groups = length / 3 + (length % 3 != 0);
    if (groups > (SIZE_MAX - 2) / 4)
        return false;
    *out = groups * 4 + 2;
    return true;
}

static uint8_t *message_write_base64(uint8_t *out, const uint8_t *bytes, size_t length)
{
    *out++ = '"';
    while (length > 0) {
        size_t chunk = length < MESSAGE_BASE64_CHUNK ? length : MESSAGE_BASE64_CHUNK;
        /* EVP_EncodeBlock also writes a NUL after its output; that byte is
         * within the frame (at least the closing quote follows) and is
         * overwritten next. */
        int written = EVP_EncodeBlock(out, bytes, (int)chunk);
        size_t expected = (chunk + 2) / 3 * 4;
        if (written < 0 || (size_t)written != expected)
            return NULL;
        out += expected;
        bytes += chunk;
        length -= chunk;
    }
    *out++ = '"';
    return out;
}

static bool message_piece_length(const struct message_piece *piece, size_t *out)
{
    switch (piece->kind) {
    case MESSAGE_PIECE_RAW:
        *out = piece->length;
        return true;
    case MESSAGE_PIECE_STRING:
        return message_string_length(piece->bytes, piece->length, out);
    case MESSAGE_PIECE_BASE64:
        return message_base64_length(piece->length, out);
    }
    return false;
}

static uint8_t *message_piece_write(uint8_t *out, const struct message_piece *piece)
{
    switch (piece->kind) {
    case MESSAGE_PIECE_RAW:
        if (piece->length > 0)
            memcpy(out, piece->bytes, piece->length);
        return out + piece->length;
    case MESSAGE_PIECE_STRING:
        return message_write_string(out, piece->bytes, piece->length);
    case MESSAGE_PIECE_BASE64:
        return message_write_base64(out, piece->bytes, piece->length);
    }
    return NULL;
}

struct message_pieces {
    struct message_piece piece[MESSAGE_MAX_PIECES];
    size_t count;
    char seq[24];   /* decimal seq; UINT64_MAX has 20 digits */
};

static void message_pieces_add(struct message_pieces *pieces, enum message_piece_kind kind,
                               const void *bytes, size_t length)
{
    pieces->piece[pieces->count++] = (struct message_piece){
        .kind = kind, .bytes = bytes, .length = length,
    };
}

static void message_pieces_raw(struct message_pieces *pieces, const char *text)
{
    message_pieces_add(pieces, MESSAGE_PIECE_RAW, text, strlen(text));
}

static void message_pieces_data(struct message_pieces *pieces, const struct message *message)
{
    switch (message->kind) {
    case MESSAGE_TEXT:
        message_pieces_raw(pieces, ",\"data\":");
        message_pieces_add(pieces, MESSAGE_PIECE_STRING, message->payload, message->length);
        break;
    case MESSAGE_BINARY:
        message_pieces_raw(pieces, ",\"data_base64\":");
        message_pieces_add(pieces, MESSAGE_PIECE_BASE64, message->payload, message->length);
        break;
    case MESSAGE_JSON:
        message_pieces_raw(pieces, ",\"data\":");
        message_pieces_add(pieces, MESSAGE_PIECE_RAW, message->payload, message->length);
        break;
    }
}

static void message_format_seq(char out[24], uint64_t seq)
{
    char digits[24];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq != 0);
    for (size_t i = 0; i < count; i++)
        out[i] = digits[count - 1 - i];
    out[count] = '\0';
}

static void message_pieces_fill(struct message_pieces *pieces, const struct message *message)
{
    pieces->count = 0;
    message_format_seq(pieces->seq, message->seq);
    message_pieces_raw(pieces, "{\"op\":\"message\",\"channel\":");
    message_pieces_add(pieces, MESSAGE_PIECE_STRING, message->channel, strlen(message->channel));
    message_pieces_raw(pieces, ",\"seq\":");
    message_pieces_raw(pieces, pieces->seq);
    message_pieces_data(pieces, message);
    if (message->from != NULL) {
        message_pieces_raw(pieces, ",\"from\":");
        message_pieces_add(pieces, MESSAGE_PIECE_STRING, message->from, strlen(message->from));
    }
    message_pieces_raw(pieces, "}");
}

static struct shared_frame *message_pieces_encode(const struct message_pieces *pieces)
{
    size_t total = 0;
    for (size_t i = 0; i < pieces->count; i++) {
        size_t length;
        if (!message_piece_length(&pieces->piece[i], &length) || !message_add(&total, length))
            return NULL;
    }
    uint8_t header[WSFRAME_MAX_HEADER];
    size_t header_length = wsframe_header_build(header, true, 0, WS_OP_TEXT, total);
    if (total > SIZE_MAX - header_length)
        return NULL;
    struct shared_frame *frame = shared_frame_new(header_length + total);
    if (frame == NULL)
        return NULL;
    memcpy(frame->bytes, header, header_length);
    uint8_t *out = frame->bytes + header_length;
    for (size_t i = 0; i < pieces->count && out != NULL; i++)
        out = message_piece_write(out, &pieces->piece[i]);
    /* Measuring and writing must agree byte for byte; anything else would
     * put a malformed frame on the wire. */
    if (out != frame->bytes + frame->length) {
        shared_frame_release(frame);
        return NULL;
    }
    return frame;
}

struct shared_frame *message_envelope_frame(struct message *message)
{
    struct shared_frame *frame = message_load(&message->envelope_frame);
    if (frame != NULL)
        return frame;
    struct message_pieces pieces;
    message_pieces_fill(&pieces, message);
    return message_install(&message->envelope_frame, message_pieces_encode(&pieces));
}

/* ---- compressed frames ---- */

static struct shared_frame *message_compress_frame(const struct shared_frame *plain,
                                                   struct deflate_compressors *compressors,
                                                   const struct deflate_options *options,
                                                   int window_bits)
{
    size_t header = shared_frame_payload_offset(plain);
    uint8_t opcode = plain->bytes[0] & 0x0f;
    uint8_t *compressed = NULL;
    size_t compressed_length = 0;
    if (deflate_compressors_compress(compressors, options, window_bits, plain->bytes + header,
                                     plain->length - header, &compressed,
                                     &compressed_length) != DEFLATE_OK)
        return NULL;
    uint8_t frame_header[WSFRAME_MAX_HEADER];
    size_t frame_header_length =
        wsframe_header_build(frame_header, true, WSFRAME_RSV1, opcode, compressed_length);
    struct shared_frame *frame = shared_frame_new(frame_header_length + compressed_length);
    if (frame != NULL) {
        memcpy(frame->bytes, frame_header, frame_header_length);
        memcpy(frame->bytes + frame_header_length, compressed, compressed_length);
    }
    free(compressed);
    return frame;
}

/* The entry for these parameters among the list from head up to (not
 * including) stop. */
static struct message_deflated *message_deflated_find(struct message_deflated *head,
                                                      struct message_deflated *stop, bool envelope,
                                                      const struct deflate_options *options,
                                                      int window_bits)
{
    for (struct message_deflated *d = head; d != stop; d = d->next) {
        if (d->envelope == envelope && d->window_bits == window_bits &&
            d->level == options->level && d->memory_level == options->memory_level)
            return d;
    }
    return NULL;
}

/* Pushes d onto the list, which was head when it was searched; another
 * thread may have pushed the same encoding meanwhile: then d is freed and
 * theirs is used. */
static struct shared_frame *message_deflated_push(struct message *message,
                                                  struct message_deflated *d,
                                                  struct message_deflated *head,
                                                  const struct deflate_options *options)
{
    for (;;) {
        d->next = head;
        if (__atomic_compare_exchange_n(&message->deflated, &head, d, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return d->frame;
        /* head is now the newer list: look only at what was added since. */
        struct message_deflated *theirs =
            message_deflated_find(head, d->next, d->envelope, options, d->window_bits);
        if (theirs != NULL) {
            shared_frame_release(d->frame);
            free(d);
            return theirs->frame;
        }
    }
}

struct shared_frame *message_deflated_frame(struct message *message, bool envelope,
                                            struct deflate_compressors *compressors,
                                            const struct deflate_options *options,
                                            int window_bits)
{
    if (window_bits < 9 || window_bits > 15)
        return NULL;
    struct message_deflated *head = __atomic_load_n(&message->deflated, __ATOMIC_ACQUIRE);
    struct message_deflated *found =
        message_deflated_find(head, NULL, envelope, options, window_bits);
    if (found != NULL)
        return found->frame;
    struct shared_frame *plain =
        envelope ? message_envelope_frame(message) : message_raw_frame(message);
    struct message_deflated *d = plain != NULL ? calloc(1, sizeof(*d)) : NULL;
    if (d == NULL)
        return NULL;
    d->frame = message_compress_frame(plain, compressors, options, window_bits);
    if (d->frame == NULL) {
        free(d);
        return NULL;
    }
    d->envelope = envelope;
    d->window_bits = window_bits;
    d->level = options->level;
    d->memory_level = options->memory_level;
    return message_deflated_push(message, d, head, options);
}
