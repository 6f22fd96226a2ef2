/* fuzz_wsframe — the streaming frame decoder, fed client bytes in pieces.
 *
 * Input layout:
 *   byte 0     flags: low 4 bits = number of split bytes that follow;
 *              0x10 require_mask; 0x20 client_no_context_takeover for the
 *              inflater; 0x40 compress round trips at level 9 (else 1);
 *              0x80 small inflate bound = 64 * byte 1 (else byte 1)
 *   byte 1     small max_message_size = 1 + 4 * byte (1..1021), and the
 *              small inflate bound
 *   N bytes    piece lengths (0..255 each); the last piece is the rest
 *   rest       the byte stream sent by the "client"
 *
 * Every input is decoded under four option sets: allowed_rsv 0 or RSV1,
 * times max_message_size unlimited or small. Under each, the stream is
 * decoded once in one piece and once in the given pieces (each piece in its
 * own exact-size allocation, so reading past a piece is caught). Checked:
 *   - consumed <= length, and WS_EVENT_NONE only once everything is consumed;
 *   - after WS_EVENT_ERROR every later call returns the same error and
 *     consumes nothing;
 *   - a TEXT message without RSV1 is valid UTF-8, a message is no longer
 *     than max_message_size, carries no RSV bits beyond allowed_rsv;
 *   - control payloads are at most 125 bytes, close codes acceptable and
 *     close reasons UTF-8;
 *   - the events (and the frame count) do not depend on where the stream
 *     was split;
 *   - with RSV1 allowed, a message with RSV1 is inflated with
 *     deflate_inflate bounded by 64 KiB, and the bound holds; what inflates
 *     is compressed again with deflate_compress and must inflate back to
 *     the same bytes. A second inflater bounded by the small inflate bound
 *     runs alongside: its bound holds too, and without context takeover
 *     (where one failure cannot change later messages) it agrees with the
 *     first: the same bytes when they fit, DEFLATE_TOO_BIG when not;
 *   - the server-side encoders agree with the decoder: a header built with
 *     wsframe_header_build for each message parses back to the same fields,
 *     and wsframe_close_payload_build, given a text message as the reason,
 *     keeps the code and cuts the reason to at most 123 bytes on a
 *     character boundary. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deflate.h"
#include "fuzz.h"
#include "utf8.h"
#include "wsframe.h"

#define INFLATE_MAX (64u * 1024u)
#define MAX_PIECES 16

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_wsframe: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

struct summary {
    enum ws_event_type type;
    uint8_t opcode;
    uint8_t rsv;
    size_t length;
    unsigned close_code;
    size_t reason_length;
    uint64_t hash;             /* of data, or of the ERROR reason text */
};

struct run {
    struct summary *events;
    size_t count;
    size_t capacity;
    uint64_t frames;
};

struct setup {
    struct ws_decoder_options options;
    bool inflate;              /* inflate RSV1 messages */
    size_t small_inflate_max;
    bool no_context_takeover;
    int level;
};

static uint64_t hash_bytes(const uint8_t *data, size_t length)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < length; i++) {
        h ^= data[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h ^ length;
}

/* Inflates with a fresh inflater that resets per message: used to check
 * that compress → inflate gives back the original. */
static struct deflate_inflater *round_trip_inflater(void)
{
    static struct deflate_inflater *inflater;
    if (inflater == NULL) {
        struct deflate_params params = {
            .server_no_context_takeover = true,
            .client_no_context_takeover = true,
            .server_max_window_bits = 15,
            .client_max_window_bits = 15,
        };
        inflater = deflate_inflater_new(&params);
        CHECK(inflater != NULL);
    }
    return inflater;
}

static void round_trip(const struct setup *setup, const uint8_t *plain, size_t length)
{
    struct deflate_options options = {
        .enabled = true,
        .level = setup->level,
        .min_size = 0,
        .memory_level = 8,
        .max_window_bits = 15,
    };
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    int rc = deflate_compress(&options, 15, plain, length, &packed, &packed_length);
    CHECK(rc == DEFLATE_OK);
    CHECK(packed != NULL);

    uint8_t *back = NULL;
    size_t back_length = 0;
    rc = deflate_inflate(round_trip_inflater(), packed, packed_length, INFLATE_MAX, &back,
                         &back_length);
    CHECK(rc == DEFLATE_OK);
    CHECK(back_length == length);
    CHECK(length == 0 || memcmp(back, plain, length) == 0);
    free(back);
    free(packed);
}

static void inflate_message(const struct setup *setup, struct deflate_inflater *inflater,
                            struct deflate_inflater *small, const struct ws_event *event)
{
    uint8_t *out = NULL;
    size_t out_length = 0;
    int rc = deflate_inflate(inflater, event->data, event->length, INFLATE_MAX, &out,
                             &out_length);
    CHECK(rc == DEFLATE_OK || rc == DEFLATE_ERROR || rc == DEFLATE_TOO_BIG ||
          rc == DEFLATE_NO_MEMORY);

    uint8_t *small_out = NULL;
    size_t small_length = 0;
    int small_rc = deflate_inflate(small, event->data, event->length, setup->small_inflate_max,
                                   &small_out, &small_length);
    if (small_rc == DEFLATE_OK) {
        CHECK(small_out != NULL);
        CHECK(small_length <= setup->small_inflate_max);
    } else {
        CHECK(small_out == NULL);
    }
    if (setup->no_context_takeover) {
        if (rc == DEFLATE_OK && out_length <= setup->small_inflate_max) {
            CHECK(small_rc == DEFLATE_OK && small_length == out_length);
            CHECK(out_length == 0 || memcmp(out, small_out, out_length) == 0);
        } else if (rc == DEFLATE_OK || rc == DEFLATE_TOO_BIG) {
            CHECK(small_rc == DEFLATE_TOO_BIG);
        } else {
            CHECK(small_rc == rc || small_rc == DEFLATE_TOO_BIG);
        }
    }
    free(small_out);

    if (rc != DEFLATE_OK) {
        CHECK(out == NULL);
        return;
    }
    CHECK(out != NULL);
    CHECK(out_length <= INFLATE_MAX);
    /* The caller validates inflated text; here it only has to be readable. */
    if (event->opcode == WS_OP_TEXT)
        (void)utf8_is_valid(out, out_length);
    round_trip(setup, out, out_length);
    free(out);
}

/* Server header for this message (and for a 63-bit length drawn from its
 * hash) parses back to what was built. */
static void check_header_build(const struct ws_event *event, uint64_t hash)
{
    uint64_t lengths[2] = { event->length, hash & (UINT64_MAX >> 1) };
    for (size_t i = 0; i < 2; i++) {
        uint8_t out[WSFRAME_MAX_HEADER];
        size_t n = wsframe_header_build(out, true, event->rsv, event->opcode, lengths[i]);
        CHECK(n == 2 || n == 4 || n == 10);
        struct wsframe_header header;
        CHECK(wsframe_header_parse(out, n, &header) == (int)n);
        CHECK(header.fin && !header.masked);
        CHECK(header.rsv == event->rsv && header.opcode == event->opcode);
        CHECK(header.payload_length == lengths[i] && header.header_length == n);
        CHECK(wsframe_header_parse(out, n - 1, &header) == WSFRAME_NEED_MORE);
    }
}

/* A valid UTF-8 text (up to its first NUL) as a close reason. */
static void check_close_build(const uint8_t *text, size_t length, uint64_t hash)
{
    static const unsigned codes[] = { 1000, 1001, 1002, 1003, 1005, 1007, 1008, 1009,
                                      1011, 1013, 3000, 4999 };
    unsigned code = codes[hash % (sizeof codes / sizeof codes[0])];
    char *reason = malloc(length + 1);
    CHECK(reason != NULL);
    memcpy(reason, text, length);
    reason[length] = '\0';
    size_t reason_length = strlen(reason);

    uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD];
    size_t n = wsframe_close_payload_build(out, code, (hash & 1) ? reason : NULL);
    if (code == WS_CLOSE_NO_STATUS) {
        CHECK(n == 0);
    } else if ((hash & 1) == 0) {
        CHECK(n == 2 && (unsigned)(out[0] << 8 | out[1]) == code);
    } else {
        CHECK(n >= 2 && n <= WSFRAME_MAX_CONTROL_PAYLOAD);
        CHECK((unsigned)(out[0] << 8 | out[1]) == code);
        size_t kept = n - 2;
        if (reason_length <= WSFRAME_MAX_CONTROL_PAYLOAD - 2)
            CHECK(kept == reason_length);
        else
            CHECK(kept + 3 >= WSFRAME_MAX_CONTROL_PAYLOAD - 2);   /* cut inside one character */
        CHECK(memcmp(out + 2, reason, kept) == 0);
        CHECK(utf8_is_valid(out + 2, kept));
    }
    free(reason);
}

static void record(struct run *run, const struct ws_event *event)
{
    CHECK(run->count < run->capacity);  /* every event costs >= 2 stream bytes */
    struct summary *s = &run->events[run->count++];
    memset(s, 0, sizeof *s);
    s->type = event->type;
    s->opcode = event->opcode;
    s->rsv = event->rsv;
    s->length = event->length;
    s->close_code = event->close_code;
    s->reason_length = event->reason_length;
    if (event->type == WS_EVENT_ERROR)
        s->hash = hash_bytes((const uint8_t *)event->reason, strlen(event->reason));
    else if (event->type == WS_EVENT_CLOSE)
        s->hash = hash_bytes((const uint8_t *)event->reason, event->reason_length);
    else
        s->hash = hash_bytes(event->data, event->length);
}

static void check_event(const struct setup *setup, const struct ws_event *event)
{
    const struct ws_decoder_options *options = &setup->options;
    switch (event->type) {
    case WS_EVENT_MESSAGE:
        CHECK(event->opcode == WS_OP_TEXT || event->opcode == WS_OP_BINARY);
        CHECK((event->rsv & ~options->allowed_rsv) == 0);
        CHECK(event->data != NULL);
        if (options->max_message_size != 0)
            CHECK(event->length <= options->max_message_size);
        if (event->opcode == WS_OP_TEXT && (event->rsv & WSFRAME_RSV1) == 0)
            CHECK(utf8_is_valid(event->data, event->length));
        break;
    case WS_EVENT_PING:
    case WS_EVENT_PONG:
        CHECK(event->data != NULL);
        CHECK(event->length <= WSFRAME_MAX_CONTROL_PAYLOAD);
        break;
    case WS_EVENT_CLOSE:
        if (event->close_code == WS_CLOSE_NO_STATUS) {
            CHECK(event->reason_length == 0);
        } else {
            CHECK(wsframe_close_code_acceptable(event->close_code));
            CHECK(event->reason_length <= WSFRAME_MAX_CONTROL_PAYLOAD - 2);
            CHECK(utf8_is_valid((const uint8_t *)event->reason, event->reason_length));
        }
        break;
    case WS_EVENT_ERROR:
        CHECK(event->close_code == WS_CLOSE_PROTOCOL_ERROR ||
              event->close_code == WS_CLOSE_INVALID_PAYLOAD ||
              event->close_code == WS_CLOSE_TOO_BIG ||
              event->close_code == WS_CLOSE_INTERNAL_ERROR);
        CHECK(event->reason != NULL);
        CHECK(event->reason_length == strlen(event->reason));
        break;
    default:
        CHECK(false);
    }
}

/* After an error the decoder must keep answering it, consuming nothing. */
static void check_sticky_error(struct ws_decoder *decoder, const struct ws_event *first,
                               const uint8_t *rest, size_t rest_length)
{
    struct ws_event again;
    size_t used = ws_decoder_feed(decoder, rest, rest_length, &again);
    CHECK(used == 0);
    CHECK(again.type == WS_EVENT_ERROR);
    CHECK(again.close_code == first->close_code);
    CHECK(again.reason == first->reason);
    static const uint8_t ping[] = { 0x89, 0x00 };
    used = ws_decoder_feed(decoder, ping, sizeof ping, &again);
    CHECK(used == 0);
    CHECK(again.type == WS_EVENT_ERROR && again.close_code == first->close_code);
    used = ws_decoder_feed(decoder, NULL, 0, &again);
    CHECK(used == 0);
    CHECK(again.type == WS_EVENT_ERROR && again.close_code == first->close_code);
}

/* Decodes the pieces in order; returns after an error or the last piece. */
static void decode(const struct setup *setup, const uint8_t *const *pieces,
                   const size_t *lengths, size_t piece_count, struct run *run)
{
    struct ws_decoder decoder;
    ws_decoder_init(&decoder, &setup->options);

    struct deflate_inflater *inflater = NULL;
    struct deflate_inflater *small = NULL;
    if (setup->inflate) {
        struct deflate_params params = {
            .server_no_context_takeover = true,
            .client_no_context_takeover = setup->no_context_takeover,
            .server_max_window_bits = 15,
            .client_max_window_bits = 15,
        };
        inflater = deflate_inflater_new(&params);
        small = deflate_inflater_new(&params);
        CHECK(inflater != NULL && small != NULL);
    }

    uint64_t frames = 0;
    bool failed = false;
    for (size_t p = 0; p < piece_count && !failed; p++) {
        const uint8_t *piece = pieces[p];
        size_t length = lengths[p];
        size_t at = 0;
        for (;;) {
            struct ws_event event;
            size_t used = ws_decoder_feed(&decoder, piece + at, length - at, &event);
            CHECK(used <= length - at);
            at += used;
            CHECK(ws_decoder_frames(&decoder) >= frames);
            frames = ws_decoder_frames(&decoder);
            if (event.type == WS_EVENT_NONE) {
                CHECK(at == length);
                break;
            }
            check_event(setup, &event);
            record(run, &event);
            if (event.type == WS_EVENT_ERROR) {
                check_sticky_error(&decoder, &event, piece + at, length - at);
                failed = true;
                break;
            }
            if (event.type == WS_EVENT_MESSAGE) {
                uint64_t hash = run->events[run->count - 1].hash;
                check_header_build(&event, hash);
                if (event.opcode == WS_OP_TEXT && (event.rsv & WSFRAME_RSV1) == 0)
                    check_close_build(event.data, event.length, hash);
            }
            if (event.type == WS_EVENT_MESSAGE && inflater != NULL &&
                (event.rsv & WSFRAME_RSV1) != 0)
                inflate_message(setup, inflater, small, &event);
        }
    }
    run->frames = ws_decoder_frames(&decoder);
    ws_decoder_release(&decoder);
    deflate_inflater_free(inflater);
    deflate_inflater_free(small);
}

static void compare(const struct run *a, const struct run *b)
{
    CHECK(a->count == b->count);
    CHECK(a->frames == b->frames);
    for (size_t i = 0; i < a->count; i++) {
        const struct summary *x = &a->events[i];
        const struct summary *y = &b->events[i];
        CHECK(x->type == y->type);
        CHECK(x->opcode == y->opcode);
        CHECK(x->rsv == y->rsv);
        CHECK(x->length == y->length);
        CHECK(x->close_code == y->close_code);
        CHECK(x->reason_length == y->reason_length);
        CHECK(x->hash == y->hash);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    uint64_t small_max = 1 + 4 * (uint64_t)data[1];
    size_t split_count = flags & 0x0F;
    if (size < 2 + split_count)
        return 0;
    const uint8_t *split_bytes = data + 2;
    const uint8_t *stream = data + 2 + split_count;
    size_t stream_length = size - 2 - split_count;

    /* The pieces, each copied into an allocation of its own size. */
    uint8_t *pieces[MAX_PIECES + 1];
    size_t lengths[MAX_PIECES + 1];
    size_t piece_count = 0;
    size_t at = 0;
    for (size_t i = 0; i < split_count; i++) {
        size_t length = split_bytes[i];
        if (length > stream_length - at)
            length = stream_length - at;
        lengths[piece_count++] = length;
        at += length;
    }
    lengths[piece_count++] = stream_length - at;
    at = 0;
    for (size_t i = 0; i < piece_count; i++) {
        pieces[i] = malloc(lengths[i] > 0 ? lengths[i] : 1);
        CHECK(pieces[i] != NULL);
        if (lengths[i] > 0)
            memcpy(pieces[i], stream + at, lengths[i]);
        at += lengths[i];
    }

    size_t capacity = stream_length / 2 + 2;
    struct run whole = { .events = calloc(capacity, sizeof(struct summary)),
                         .capacity = capacity };
    struct run split = { .events = calloc(capacity, sizeof(struct summary)),
                         .capacity = capacity };
    CHECK(whole.events != NULL && split.events != NULL);

    for (int variant = 0; variant < 4; variant++) {
        struct setup setup = {
            .options = {
                .max_message_size = (variant & 2) ? small_max : 0,
                .allowed_rsv = (variant & 1) ? WSFRAME_RSV1 : 0,
                .require_mask = (flags & 0x10) != 0,
            },
            .inflate = false,
            .small_inflate_max = (flags & 0x80) ? 64 * (size_t)data[1] : data[1],
            .no_context_takeover = (flags & 0x20) != 0,
            .level = (flags & 0x40) ? 9 : 1,
        };
        const uint8_t *one[1] = { stream };
        size_t one_length[1] = { stream_length };
        whole.count = 0;
        decode(&setup, one, one_length, 1, &whole);

        setup.inflate = (variant & 1) != 0;
        split.count = 0;
        decode(&setup, (const uint8_t *const *)pieces, lengths, piece_count, &split);
        compare(&whole, &split);
    }

    free(whole.events);
    free(split.events);
    for (size_t i = 0; i < piece_count; i++)
        free(pieces[i]);
    return 0;
}
