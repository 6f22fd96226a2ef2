/* deflate — permessage-deflate (RFC 7692).
 *
 * Negotiation reads the client's offers with a small cursor-based parser of
 * the RFC 6455 §9.1 grammar and answers the first offer it can honour. The
 * codec works on whole messages: the server compresses each message with a
 * fresh zlib stream (no context takeover, so one payload can be shared by
 * every receiver), and inflates each client message into a buffer bounded by
 * the caller's maximum so that a small compressed payload cannot make the
 * daemon allocate without limit. */
#define ZLIB_CONST
#include "deflate.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define DEFLATE_NAME "permessage-deflate"
#define DEFLATE_HEADER "Sec-WebSocket-Extensions"

#define DEFLATE_WINDOW_MIN_ZLIB 9   /* zlib's raw deflate refuses an 8-bit window */
#define DEFLATE_WINDOW_MAX 15

#define DEFLATE_CHUNK 16384u        /* first output buffer size */
#define DEFLATE_VALUE_MAX 8         /* longest parameter value worth keeping:
                                       every valid one has at most 2 digits */

/* The empty non-final stored block a sender removes from every message
 * (RFC 7692 §7.2.1) and the receiver puts back (§7.2.2). */
static const uint8_t deflate_tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* ---------------------------------------------------------------------- */
/* Negotiation                                                             */
/* ---------------------------------------------------------------------- */

struct deflate_cursor {
    const char *at;
    const char *end;
};

/* A parameter value after quoted-string unescaping. Values longer than
 * DEFLATE_VALUE_MAX are only remembered as too long: none is valid. */
struct deflate_value {
    char text[DEFLATE_VALUE_MAX];
    size_t length;
    bool too_long;
};

/* What one offer asked for; the *_seen flags catch repeated parameters. */
struct deflate_offer {
    bool is_deflate;                /* the extension token is permessage-deflate */
    bool acceptable;                /* no unknown, repeated or invalid parameter */
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    bool server_window_seen;
    int server_window;              /* valid when server_window_seen */
    bool client_window_seen;
    int client_window;              /* 0 when offered without a value */
};

enum deflate_syntax {
    DEFLATE_SYNTAX_OK,
    DEFLATE_SYNTAX_BAD
};

/* RFC 7230 §3.2.6 tchar. */
static bool deflate_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool deflate_cursor_at(const struct deflate_cursor *cursor, char c)
{
    return cursor->at < cursor->end && *cursor->at == c;
}

static void deflate_skip_ows(struct deflate_cursor *cursor)
{
    while (deflate_cursor_at(cursor, ' ') || deflate_cursor_at(cursor, '\t'))
        cursor->at++;
}

static bool deflate_take_token(struct deflate_cursor *cursor, const char **token, size_t *length)
{
    const char *start = cursor->at;
    while (cursor->at < cursor->end && deflate_is_tchar((unsigned char)*cursor->at))
        cursor->at++;
    *token = start;
    *length = (size_t)(cursor->at - start);
    return *length > 0;
}

static void deflate_value_append(struct deflate_value *value, char c)
{
    if (value->length < sizeof value->text)
        value->text[value->length++] = c;
    else
        value->too_long = true;
}

/* qdtext and the second octet of a quoted-pair, less '"' and '\' for
 * qdtext (RFC 7230 §3.2.6): HTAB, SP, visible ASCII and obs-text. */
static bool deflate_is_quotable(unsigned char c)
{
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

/* Takes a quoted-string starting at its opening quote, unescaping it. */
static bool deflate_take_quoted(struct deflate_cursor *cursor, struct deflate_value *value)
{
    cursor->at++;
    while (cursor->at < cursor->end) {
        unsigned char c = (unsigned char)*cursor->at++;
        if (c == '"')
            return true;
        if (c == '\\') {
            if (cursor->at == cursor->end)
                return false;
            c = (unsigned char)*cursor->at++;
        }
        if (!deflate_is_quotable(c))
            return false;
        deflate_value_append(value, (char)c);
    }
    return false;   /* unterminated */
}

/* value = token / quoted-string (RFC 6455 §9.1). A quoted value must be a
 * token once unescaped; the window-bits check below is stricter than that,
 * and every other parameter refuses values, so it needs no check here. */
static bool deflate_take_value(struct deflate_cursor *cursor, struct deflate_value *value)
{
    if (deflate_cursor_at(cursor, '"'))
        return deflate_take_quoted(cursor, value);
    const char *token;
    size_t length;
    if (!deflate_take_token(cursor, &token, &length))
        return false;
    for (size_t i = 0; i < length; i++)
        deflate_value_append(value, token[i]);
    return true;
}

/* RFC 7692 §7.1.2.1/§7.1.2.2: a decimal integer 8..15 without leading
 * zeroes. */
static bool deflate_parse_window(const struct deflate_value *value, int *bits)
{
    if (value->too_long)
        return false;
    const char *t = value->text;
    if (value->length == 1 && (t[0] == '8' || t[0] == '9')) {
        *bits = t[0] - '0';
        return true;
    }
    if (value->length == 2 && t[0] == '1' && t[1] >= '0' && t[1] <= '5') {
        *bits = 10 + (t[1] - '0');
        return true;
    }
    return false;
}

/* A parameter that takes no value (§7.1.1.1, §7.1.1.2). */
static bool deflate_apply_flag(bool *flag, const struct deflate_value *value)
{
    if (*flag || value != NULL)
        return false;
    *flag = true;
    return true;
}

/* server_max_window_bits requires a value (§7.1.2.1). */
static bool deflate_apply_server_window(struct deflate_offer *offer,
                                        const struct deflate_value *value)
{
    if (offer->server_window_seen || value == NULL)
        return false;
    offer->server_window_seen = true;
    return deflate_parse_window(value, &offer->server_window);
}

/* client_max_window_bits may come without a value (§7.1.2.2). */
static bool deflate_apply_client_window(struct deflate_offer *offer,
                                        const struct deflate_value *value)
{
    if (offer->client_window_seen)
        return false;
    offer->client_window_seen = true;
    if (value == NULL)
        return true;
    return deflate_parse_window(value, &offer->client_window);
}

static bool deflate_name_is(const char *name, size_t length, const char *expected)
{
    return http_equal_nocase(name, length, expected, strlen(expected));
}

/* RFC 7692 §7: an offer with a parameter not defined for offers, a repeated
 * parameter or an invalid value MUST be declined. */
static void deflate_offer_apply(struct deflate_offer *offer, const char *name, size_t length,
                                const struct deflate_value *value)
{
    bool valid;
    if (deflate_name_is(name, length, "server_no_context_takeover"))
        valid = deflate_apply_flag(&offer->server_no_context_takeover, value);
    else if (deflate_name_is(name, length, "client_no_context_takeover"))
        valid = deflate_apply_flag(&offer->client_no_context_takeover, value);
    else if (deflate_name_is(name, length, "server_max_window_bits"))
        valid = deflate_apply_server_window(offer, value);
    else if (deflate_name_is(name, length, "client_max_window_bits"))
        valid = deflate_apply_client_window(offer, value);
    else
        valid = false;
    if (!valid)
        offer->acceptable = false;
}

/* One `; name [= value]` after the ';'. Parameters of other extensions are
 * parsed for syntax only. */
static enum deflate_syntax deflate_parse_param(struct deflate_cursor *cursor,
                                               struct deflate_offer *offer)
{
    const char *name;
    size_t length;
    struct deflate_value value = { .length = 0, .too_long = false };
    bool has_value = false;

    deflate_skip_ows(cursor);
    if (!deflate_take_token(cursor, &name, &length))
        return DEFLATE_SYNTAX_BAD;
    deflate_skip_ows(cursor);
    if (deflate_cursor_at(cursor, '=')) {
        cursor->at++;
        deflate_skip_ows(cursor);
        if (!deflate_take_value(cursor, &value))
            return DEFLATE_SYNTAX_BAD;
        has_value = true;
        deflate_skip_ows(cursor);
    }
    if (offer->acceptable)
        deflate_offer_apply(offer, name, length, has_value ? &value : NULL);
    return DEFLATE_SYNTAX_OK;
}

/* One list element: extension-token *( ";" extension-param ). Leaves the
 * cursor on the ',' that ends it, or at the end of the value. */
static enum deflate_syntax deflate_parse_offer(struct deflate_cursor *cursor,
                                               struct deflate_offer *offer)
{
    const char *name;
    size_t length;

    memset(offer, 0, sizeof *offer);
    if (!deflate_take_token(cursor, &name, &length))
        return DEFLATE_SYNTAX_BAD;
    offer->is_deflate = deflate_name_is(name, length, DEFLATE_NAME);
    offer->acceptable = offer->is_deflate;
    deflate_skip_ows(cursor);
    while (deflate_cursor_at(cursor, ';')) {
        cursor->at++;
        if (deflate_parse_param(cursor, offer) != DEFLATE_SYNTAX_OK)
            return DEFLATE_SYNTAX_BAD;
    }
    if (cursor->at < cursor->end && *cursor->at != ',')
        return DEFLATE_SYNTAX_BAD;
    return DEFLATE_SYNTAX_OK;
}

/* Declining is also allowed for a configuration the server cannot support
 * (§7): zlib cannot compress with an 8-bit window, so an offer that limits
 * the server to 8 bits is declined and the next offer considered. */
static bool deflate_offer_honourable(const struct deflate_offer *offer)
{
    if (!offer->is_deflate || !offer->acceptable)
        return false;
    return !offer->server_window_seen || offer->server_window >= DEFLATE_WINDOW_MIN_ZLIB;
}

/* Builds the response and the agreed parameters for an honourable offer.
 *
 * - server_no_context_takeover is always stated: §7.1.1.1 lets the server
 *   add it to any response, and it is what makes a compressed payload
 *   independent of the connection.
 * - client_no_context_takeover is echoed when offered (§7.1.1.2), so the
 *   client knows we rely on it and the inflater can reset per message.
 * - server_max_window_bits: §7.1.2.1 says a server accepts an offer that
 *   carries it by stating it with the same or a smaller value, and MAY
 *   state it even when the offer did not carry it (it is client_max_window_bits
 *   that must not appear unless offered, §7.1.2.2). So it is stated when
 *   offered, and also when the operator's window is below 15.
 * - client_max_window_bits is never stated: §7.1.2.2 lets the server ignore
 *   the offered value and forbids the parameter when not offered; the
 *   inflater's 15-bit window reads whatever window the client uses. */
static bool deflate_respond(const struct deflate_offer *offer, const struct deflate_options *options,
                            struct deflate_params *params, char response[DEFLATE_RESPONSE_SIZE])
{
    int window = options->max_window_bits;
    if (offer->server_window_seen && offer->server_window < window)
        window = offer->server_window;
    bool state_window = offer->server_window_seen || window < DEFLATE_WINDOW_MAX;

    int written = snprintf(response, DEFLATE_RESPONSE_SIZE, "%s; server_no_context_takeover%s",
                           DEFLATE_NAME,
                           offer->client_no_context_takeover ? "; client_no_context_takeover" : "");
    if (written < 0 || written >= DEFLATE_RESPONSE_SIZE)
        return false;
    if (state_window) {
        size_t used = (size_t)written;
        written = snprintf(response + used, DEFLATE_RESPONSE_SIZE - used,
                           "; server_max_window_bits=%d", window);
        if (written < 0 || (size_t)written >= DEFLATE_RESPONSE_SIZE - used)
            return false;
    }

    params->server_no_context_takeover = true;
    params->client_no_context_takeover = offer->client_no_context_takeover;
    params->server_max_window_bits = window;
    params->client_max_window_bits =
        offer->client_window_seen && offer->client_window != 0 ? offer->client_window
                                                               : DEFLATE_WINDOW_MAX;
    return true;
}

/* Refuses to negotiate what deflate_compress could not then serve. */
static bool deflate_options_usable(const struct deflate_options *options)
{
    return options->enabled && options->level >= 0 && options->level <= 9 &&
           options->memory_level >= 1 && options->memory_level <= 9 &&
           options->max_window_bits >= DEFLATE_WINDOW_MIN_ZLIB &&
           options->max_window_bits <= DEFLATE_WINDOW_MAX;
}

/* Walks one header value's offers in order. A syntax error makes the rest of
 * that header unreadable (a quote or separator may be misplaced), so the
 * rest of it is dropped rather than guessed at; the handshake goes on. */
static bool deflate_negotiate_value(const char *value, size_t length,
                                    const struct deflate_options *options,
                                    struct deflate_params *params,
                                    char response[DEFLATE_RESPONSE_SIZE])
{
    struct deflate_cursor cursor = { value, value + length };
    struct deflate_offer offer;

    for (;;) {
        deflate_skip_ows(&cursor);
        if (cursor.at == cursor.end)
            return false;
        if (*cursor.at == ',') {            /* empty list element (RFC 7230 §7) */
            cursor.at++;
            continue;
        }
        if (deflate_parse_offer(&cursor, &offer) != DEFLATE_SYNTAX_OK)
            return false;
        if (deflate_offer_honourable(&offer) && deflate_respond(&offer, options, params, response))
            return true;
    }
}

bool deflate_negotiate(const struct http_request *request, const struct deflate_options *options,
                       struct deflate_params *params, char response[DEFLATE_RESPONSE_SIZE])
{
    memset(params, 0, sizeof *params);
    response[0] = '\0';
    if (!deflate_options_usable(options))
        return false;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (header->value_length == 0 ||
            !http_equal_nocase(header->name, header->name_length, DEFLATE_HEADER,
                               strlen(DEFLATE_HEADER)))
            continue;
        if (deflate_negotiate_value(header->value, header->value_length, options, params,
                                    response))
            return true;
    }
    memset(params, 0, sizeof *params);
    response[0] = '\0';
    return false;
}

/* ---------------------------------------------------------------------- */
/* Output buffers                                                          */
/* ---------------------------------------------------------------------- */

/* A growing output buffer that zlib writes into. limit caps its capacity:
 * asking for room beyond it is DEFLATE_TOO_BIG. */
struct deflate_buffer {
    uint8_t *data;
    size_t capacity;
    size_t limit;
};

static int deflate_buffer_init(struct deflate_buffer *buffer, size_t first, size_t limit,
                               z_stream *stream)
{
    buffer->limit = limit;
    buffer->capacity = first < limit ? first : limit;
    if (buffer->capacity == 0)
        buffer->capacity = 1;
    buffer->data = malloc(buffer->capacity);
    if (buffer->data == NULL)
        return DEFLATE_NO_MEMORY;
    stream->next_out = buffer->data;
    stream->avail_out = 0;
    return DEFLATE_OK;
}

static size_t deflate_buffer_used(const struct deflate_buffer *buffer, const z_stream *stream)
{
    return (size_t)(stream->next_out - buffer->data);
}

/* Makes stream->avail_out non-zero, growing the buffer when it is full.
 * Growth doubles, but jumps straight to the limit once doubling would reach
 * half of it, so the largest buffer ever allocated is the limit itself. */
static int deflate_buffer_room(struct deflate_buffer *buffer, z_stream *stream)
{
    size_t used = deflate_buffer_used(buffer, stream);
    if (used == buffer->capacity) {
        if (buffer->capacity >= buffer->limit)
            return DEFLATE_TOO_BIG;
        size_t grown = buffer->capacity >= buffer->limit / 2 ? buffer->limit
                                                             : buffer->capacity * 2;
        uint8_t *data = realloc(buffer->data, grown);
        if (data == NULL)
            return DEFLATE_NO_MEMORY;
        buffer->data = data;
        buffer->capacity = grown;
        stream->next_out = data + used;
    }
    size_t room = buffer->capacity - used;
    stream->avail_out = room < UINT_MAX ? (uInt)room : UINT_MAX;
    return DEFLATE_OK;
}

/* Hands the first length bytes to the caller, shrinking the buffer so a
 * small message does not keep a large allocation alive. */
static void deflate_buffer_take(struct deflate_buffer *buffer, size_t length, uint8_t **out,
                                size_t *out_length)
{
    if (length < buffer->capacity) {
        uint8_t *data = realloc(buffer->data, length > 0 ? length : 1);
        if (data != NULL)           /* on failure the larger block still works */
            buffer->data = data;
    }
    *out = buffer->data;
    *out_length = length;
    buffer->data = NULL;
}

/* ---------------------------------------------------------------------- */
/* Inflating                                                               */
/* ---------------------------------------------------------------------- */

struct deflate_inflater {
    z_stream stream;
    bool reset_each_message;    /* client_no_context_takeover */
    size_t zlib_bytes;          /* what zlib allocated for this stream */
};

/* zlib's allocations for an inflater are counted on it, so /metrics can
 * say what compression costs per connection. Each block carries its size
 * in front, aligned for any type. */
union deflate_block_head {
    size_t size;
    max_align_t align;
};

/* opaque is the size_t that counts the stream's bytes. */
static voidpf deflate_counted_alloc(voidpf opaque, uInt items, uInt size)
{
    size_t *counter = opaque;
    size_t bytes = (size_t)items * size;
    union deflate_block_head *head = malloc(sizeof(*head) + bytes);
    if (head == NULL)
        return Z_NULL;
    head->size = bytes;
    *counter += bytes;
    return head + 1;
}

static void deflate_counted_free(voidpf opaque, voidpf address)
{
    size_t *counter = opaque;
    if (address == Z_NULL)
        return;
    union deflate_block_head *head = (union deflate_block_head *)address - 1;
    *counter -= head->size;
    free(head);
}

/* The input of one message: its payload, then the tail put back. */
struct deflate_feed {
    const uint8_t *data;        /* payload bytes not yet handed to zlib */
    size_t left;
    bool tail_given;
};

struct deflate_inflater *deflate_inflater_new(const struct deflate_params *params)
{
    struct deflate_inflater *inflater = calloc(1, sizeof *inflater);
    if (inflater == NULL)
        return NULL;
    inflater->reset_each_message = params->client_no_context_takeover;
    inflater->stream.zalloc = deflate_counted_alloc;
    inflater->stream.zfree = deflate_counted_free;
    inflater->stream.opaque = &inflater->zlib_bytes;
    /* Always the full 15-bit window: it reads any client window 8..15,
     * including zlib-based clients that ask for 8 but really compress with
     * 9 bits, at a fixed cost of 32 KiB per inflater. */
    if (inflateInit2(&inflater->stream, -DEFLATE_WINDOW_MAX) != Z_OK) {
        free(inflater);
        return NULL;
    }
    return inflater;
}

size_t deflate_inflater_footprint(const struct deflate_inflater *inflater)
{
    return inflater != NULL ? sizeof(*inflater) + inflater->zlib_bytes : 0;
}

void deflate_inflater_free(struct deflate_inflater *inflater)
{
    if (inflater == NULL)
        return;
    inflateEnd(&inflater->stream);
    free(inflater);
}

/* Gives zlib the next piece of input once it has used the last; payloads
 * over UINT_MAX bytes go in several pieces. Once all is given it does
 * nothing, and zlib is only asked to drain its pending output. */
static void deflate_feed_next(struct deflate_feed *feed, z_stream *stream)
{
    if (feed->left > 0) {
        size_t piece = feed->left < UINT_MAX ? feed->left : UINT_MAX;
        stream->next_in = feed->data;
        stream->avail_in = (uInt)piece;
        feed->data += piece;
        feed->left -= piece;
    } else if (!feed->tail_given) {
        stream->next_in = deflate_tail;
        stream->avail_in = sizeof deflate_tail;
        feed->tail_given = true;
    }
}

static bool deflate_feed_done(const struct deflate_feed *feed, const z_stream *stream)
{
    return stream->avail_in == 0 && feed->left == 0 && feed->tail_given;
}

/* Payload bytes (not counting the tail) zlib has not consumed yet. */
static size_t deflate_feed_payload_left(const struct deflate_feed *feed, const z_stream *stream)
{
    return feed->tail_given ? 0 : feed->left + stream->avail_in;
}

/* Starts a new zlib stream that still sees the sliding window of the old
 * one. Needed after a block with BFINAL set: RFC 7692 §7.2.3.4 lets a
 * sender flush with final blocks, and the LZ77 window of the message (and,
 * with context takeover, of the connection) carries on past them. */
/* Starts a new deflate stream after a final block while keeping the
 * sliding window, so later blocks may still refer back into it. zlib's
 * inflateResetKeep does exactly that in place; copying the 32 KiB window out
 * and back for every (2-byte) final block let one message cost seconds. */
static int deflate_restart(z_stream *stream)
{
    return inflateResetKeep(stream) == Z_OK ? DEFLATE_OK : DEFLATE_ERROR;
}

static int deflate_inflate_status(int z)
{
    if (z == Z_MEM_ERROR)
        return DEFLATE_NO_MEMORY;
    if (z == Z_OK || z == Z_BUF_ERROR)
        return DEFLATE_OK;
    return DEFLATE_ERROR;          /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
}

/* Runs zlib over the whole feed. A final block followed by more payload
 * (RFC 7692 §7.2.3.4 puts a 0x00 octet after it) restarts the stream and
 * goes on. A final block that ends the payload ends the message, and the
 * rest of the tail is not needed: *final_end reports that case, where the
 * stream is left finished. */
static int deflate_inflate_run(struct deflate_inflater *inflater, struct deflate_feed *feed,
                               struct deflate_buffer *buffer, bool *final_end)
{
    z_stream *stream = &inflater->stream;
    *final_end = false;
    stream->avail_in = 0;
    for (;;) {
        if (stream->avail_in == 0)
            deflate_feed_next(feed, stream);
        int rc = deflate_buffer_room(buffer, stream);
        if (rc != DEFLATE_OK)
            return rc;
        bool had_input = stream->avail_in > 0;
        int z = inflate(stream, Z_SYNC_FLUSH);
        if (z == Z_STREAM_END) {
            if (deflate_feed_payload_left(feed, stream) == 0) {
                *final_end = true;
                return DEFLATE_OK;
            }
            rc = deflate_restart(stream);
            if (rc != DEFLATE_OK)
                return rc;
            continue;
        }
        rc = deflate_inflate_status(z);
        if (rc != DEFLATE_OK)
            return rc;
        if (deflate_feed_done(feed, stream) && stream->avail_out > 0)
            return DEFLATE_OK;
        /* zlib makes progress whenever it has input and room; a stall with
         * both would loop forever, so treat it as corrupt input. */
        if (z == Z_BUF_ERROR && had_input && stream->avail_out > 0)
            return DEFLATE_ERROR;
    }
}

/* After the tail, a well-formed message leaves zlib between blocks
 * (RFC 7692 §7.2.1 has every message end with an empty stored block).
 * Anything else is a truncated block, which would also poison the next
 * message's context. zlib reports "between blocks" as bit 128 of
 * data_type. */
static bool deflate_at_block_boundary(const z_stream *stream)
{
    return (stream->data_type & 128) != 0;
}

/* Leaves the stream ready for the next message. */
static int deflate_inflate_finish(struct deflate_inflater *inflater, bool final_end)
{
    z_stream *stream = &inflater->stream;
    if (inflater->reset_each_message)
        return inflateReset(stream) == Z_OK ? DEFLATE_OK : DEFLATE_ERROR;
    if (final_end)
        return deflate_restart(stream);
    return DEFLATE_OK;
}

static int deflate_empty_result(uint8_t **out, size_t *out_length)
{
    *out = malloc(1);
    if (*out == NULL)
        return DEFLATE_NO_MEMORY;
    *out_length = 0;
    return DEFLATE_OK;
}

int deflate_inflate(struct deflate_inflater *inflater, const uint8_t *data, size_t length,
                    size_t max, uint8_t **out, size_t *out_length)
{
    *out = NULL;
    *out_length = 0;
    /* A compressed message is never empty (even an empty one is 0x00,
     * §7.2.3.6), but an empty payload can only mean an empty message; it is
     * answered without touching the stream so that no half-read stored
     * block header is left in the context. */
    if (length == 0)
        return deflate_empty_result(out, out_length);

    struct deflate_feed feed = { data, length, false };
    struct deflate_buffer buffer;
    size_t limit = max < SIZE_MAX ? max + 1 : SIZE_MAX;   /* one byte over max proves too big */
    bool final_end = false;

    int rc = deflate_buffer_init(&buffer, DEFLATE_CHUNK, limit, &inflater->stream);
    if (rc == DEFLATE_OK)
        rc = deflate_inflate_run(inflater, &feed, &buffer, &final_end);
    if (rc == DEFLATE_OK && !final_end && !deflate_at_block_boundary(&inflater->stream))
        rc = DEFLATE_ERROR;
    if (rc == DEFLATE_OK && deflate_buffer_used(&buffer, &inflater->stream) > max)
        rc = DEFLATE_TOO_BIG;
    if (rc == DEFLATE_OK)
        rc = deflate_inflate_finish(inflater, final_end);
    if (rc != DEFLATE_OK) {
        /* The connection is failed on any error; the reset only keeps a
         * later call from reading garbage state. */
        (void)inflateReset(&inflater->stream);
        free(buffer.data);
        return rc;
    }
    deflate_buffer_take(&buffer, deflate_buffer_used(&buffer, &inflater->stream), out, out_length);
    return DEFLATE_OK;
}

/* ---------------------------------------------------------------------- */
/* Compressing                                                             */
/* ---------------------------------------------------------------------- */

/* Feeds all of data, in pieces of at most UINT_MAX bytes, and ends with a
 * sync flush, which closes the data with the empty stored block 00 00 ff ff
 * (RFC 7692 §7.2.1). */
static int deflate_compress_run(z_stream *stream, const uint8_t *data, size_t length,
                                struct deflate_buffer *buffer)
{
    size_t left = length;
    stream->avail_in = 0;
    for (;;) {
        if (stream->avail_in == 0 && left > 0) {
            size_t piece = left < UINT_MAX ? left : UINT_MAX;
            stream->next_in = data + (length - left);
            stream->avail_in = (uInt)piece;
            left -= piece;
        }
        int flush = left == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        int rc = deflate_buffer_room(buffer, stream);
        if (rc != DEFLATE_OK)
            return rc == DEFLATE_TOO_BIG ? DEFLATE_ERROR : rc;
        int z = deflate(stream, flush);
        if (z != Z_OK && z != Z_BUF_ERROR)
            return DEFLATE_ERROR;
        /* Room left over after a sync flush means the flush is complete. */
        if (flush == Z_SYNC_FLUSH && stream->avail_in == 0 && stream->avail_out > 0)
            return DEFLATE_OK;
    }
}

/* RFC 7692 §7.2.3.6: a single 0x00 octet (the header of an empty stored
 * block) is the compressed form of an empty message. Answering it directly
 * also spares setting up a zlib stream for nothing. */
static int deflate_compress_empty(uint8_t **out, size_t *out_length)
{
    *out = malloc(1);
    if (*out == NULL)
        return DEFLATE_NO_MEMORY;
    (*out)[0] = 0x00;
    *out_length = 1;
    return DEFLATE_OK;
}

static int deflate_compress_stream(z_stream *stream, const uint8_t *data, size_t length,
                                   uint8_t **out, size_t *out_length)
{
    struct deflate_buffer buffer;
    /* deflateBound covers one Z_FINISH; the margin covers the flush's empty
     * stored block. The buffer still grows if zlib ever needs more. */
    uLong bound = deflateBound(stream, (uLong)length);
    size_t first = bound < SIZE_MAX - 64 ? (size_t)bound + 64 : SIZE_MAX;

    int rc = deflate_buffer_init(&buffer, first, SIZE_MAX, stream);
    if (rc == DEFLATE_OK)
        rc = deflate_compress_run(stream, data, length, &buffer);
    size_t used = rc == DEFLATE_OK ? deflate_buffer_used(&buffer, stream) : 0;
    if (rc == DEFLATE_OK &&
        (used < sizeof deflate_tail ||
         memcmp(buffer.data + used - sizeof deflate_tail, deflate_tail, sizeof deflate_tail) != 0))
        rc = DEFLATE_ERROR;         /* a sync flush always ends so; never guess */
    if (rc != DEFLATE_OK) {
        free(buffer.data);
        return rc;
    }
    deflate_buffer_take(&buffer, used - sizeof deflate_tail, out, out_length);
    return DEFLATE_OK;
}

int deflate_compress(const struct deflate_options *options, int window_bits,
                     const uint8_t *data, size_t length, uint8_t **out, size_t *out_length)
{
    *out = NULL;
    *out_length = 0;
    if (window_bits < DEFLATE_WINDOW_MIN_ZLIB || window_bits > DEFLATE_WINDOW_MAX)
        return DEFLATE_ERROR;
    if (length == 0)
        return deflate_compress_empty(out, out_length);

    z_stream stream;
    memset(&stream, 0, sizeof stream);
    stream.zalloc = Z_NULL;
    stream.zfree = Z_NULL;
    stream.opaque = Z_NULL;
    int z = deflateInit2(&stream, options->level, Z_DEFLATED, -window_bits,
                         options->memory_level, Z_DEFAULT_STRATEGY);
    if (z == Z_MEM_ERROR)
        return DEFLATE_NO_MEMORY;
    if (z != Z_OK)
        return DEFLATE_ERROR;       /* level or memory level out of range */
    int rc = deflate_compress_stream(&stream, data, length, out, out_length);
    (void)deflateEnd(&stream);      /* Z_DATA_ERROR here only means unfinished, which is intended */
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Compressors kept between messages                                       */
/* ---------------------------------------------------------------------- */

#define DEFLATE_WINDOW_COUNT (DEFLATE_WINDOW_MAX - DEFLATE_WINDOW_MIN_ZLIB + 1)

struct deflate_compressor {
    z_stream stream;
    bool ready;                 /* deflateInit2 done with level and memory_level */
    int level;
    int memory_level;
    size_t zlib_bytes;          /* what zlib allocated for this stream */
};

struct deflate_compressors {
    struct deflate_compressor window[DEFLATE_WINDOW_COUNT];   /* index: bits - 9 */
};

struct deflate_compressors *deflate_compressors_new(void)
{
    return calloc(1, sizeof(struct deflate_compressors));
}

static void deflate_compressor_end(struct deflate_compressor *compressor)
{
    if (compressor->ready)
        (void)deflateEnd(&compressor->stream);   /* Z_DATA_ERROR: unfinished, intended */
    compressor->ready = false;
}

void deflate_compressors_free(struct deflate_compressors *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < DEFLATE_WINDOW_COUNT; i++)
        deflate_compressor_end(&set->window[i]);
    free(set);
}

size_t deflate_compressors_footprint(const struct deflate_compressors *set)
{
    if (set == NULL)
        return 0;
    size_t bytes = sizeof(*set);
    for (size_t i = 0; i < DEFLATE_WINDOW_COUNT; i++)
        bytes += set->window[i].zlib_bytes;
    return bytes;
}

/* The stream for window_bits with options' level and memory level, set up
 * when missing or when a reload changed them. */
static int deflate_compressor_ready(struct deflate_compressor *compressor,
                                    const struct deflate_options *options, int window_bits)
{
    if (compressor->ready && compressor->level == options->level &&
        compressor->memory_level == options->memory_level)
        return DEFLATE_OK;
    deflate_compressor_end(compressor);
    memset(&compressor->stream, 0, sizeof compressor->stream);
    compressor->stream.zalloc = deflate_counted_alloc;
    compressor->stream.zfree = deflate_counted_free;
    compressor->stream.opaque = &compressor->zlib_bytes;
    int z = deflateInit2(&compressor->stream, options->level, Z_DEFLATED, -window_bits,
                         options->memory_level, Z_DEFAULT_STRATEGY);
    if (z == Z_MEM_ERROR)
        return DEFLATE_NO_MEMORY;
    if (z != Z_OK)
        return DEFLATE_ERROR;       /* level or memory level out of range */
    compressor->ready = true;
    compressor->level = options->level;
    compressor->memory_level = options->memory_level;
    return DEFLATE_OK;
}

int deflate_compressors_compress(struct deflate_compressors *set,
                                 const struct deflate_options *options, int window_bits,
                                 const uint8_t *data, size_t length, uint8_t **out,
                                 size_t *out_length)
{
    *out = NULL;
    *out_length = 0;
    if (window_bits < DEFLATE_WINDOW_MIN_ZLIB || window_bits > DEFLATE_WINDOW_MAX)
        return DEFLATE_ERROR;
    if (length == 0)
        return deflate_compress_empty(out, out_length);
    struct deflate_compressor *compressor = &set->window[window_bits - DEFLATE_WINDOW_MIN_ZLIB];
    int rc = deflate_compressor_ready(compressor, options, window_bits);
    if (rc != DEFLATE_OK)
        return rc;
    rc = deflate_compress_stream(&compressor->stream, data, length, out, out_length);
    /* No context takeover: the next message starts from an empty window,
     * exactly as with a fresh stream. A stream that cannot be reset is
     * set up again next time. */
    if (deflateReset(&compressor->stream) != Z_OK)
        deflate_compressor_end(compressor);
    return rc;
}
