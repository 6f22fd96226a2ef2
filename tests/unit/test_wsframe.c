/* Unit tests for frame headers, masking, close payloads and the decoder.
 *
 * Every decoder vector goes through check_stream(), which feeds it whole,
 * byte by byte, cut in two at every offset and (when short) cut in three at
 * every pair of offsets, and demands the same events each time: the decoder
 * must not care how TCP happened to split the bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wsframe.h"

/* ---- byte buffers and frame building (independent of wsframe.c) ---- */

struct bytes {
    uint8_t *data;
    size_t len;
    size_t cap;
};

static void bytes_put(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void bytes_put_byte(struct bytes *b, uint8_t byte)
{
    bytes_put(b, &byte, 1);
}

static void bytes_free(struct bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static uint32_t test_random_state = 0x9E3779B9;

static uint32_t test_random(void)
{
    /* xorshift32: the same sequence on every run */
    uint32_t x = test_random_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    test_random_state = x;
    return x;
}

static void put_length(struct bytes *b, uint8_t mask_bit, uint64_t len)
{
    if (len < 126) {
        bytes_put_byte(b, (uint8_t)(mask_bit | len));
    } else if (len <= 0xFFFF) {
        bytes_put_byte(b, mask_bit | 126);
        bytes_put_byte(b, (uint8_t)(len >> 8));
        bytes_put_byte(b, (uint8_t)len);
    } else {
        bytes_put_byte(b, mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8)
            bytes_put_byte(b, (uint8_t)(len >> shift));
    }
}

/* A client frame with the given mask (NULL: unmasked). */
static void put_frame_with(struct bytes *b, bool fin, uint8_t rsv, uint8_t opcode,
                           const uint8_t *mask, const void *payload, size_t len)
{
    bytes_put_byte(b, (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode));
    put_length(b, mask ? 0x80 : 0, len);
    if (mask)
        bytes_put(b, mask, 4);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        bytes_put_byte(b, mask ? (uint8_t)(p[i] ^ mask[i % 4]) : p[i]);
}

/* A masked client frame with a fresh pseudo-random mask. */
static void put_frame(struct bytes *b, bool fin, uint8_t rsv, uint8_t opcode,
                      const void *payload, size_t len)
{
    uint32_t r = test_random();
    uint8_t mask[4] = { (uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24) };
    put_frame_with(b, fin, rsv, opcode, mask, payload, len);
}

static void put_text(struct bytes *b, bool fin, uint8_t opcode, const char *text)
{
    put_frame(b, fin, 0, opcode, text, strlen(text));
}

static void put_close(struct bytes *b, unsigned code, const void *reason, size_t len)
{
    uint8_t payload[2 + 200];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, len);
    put_frame(b, true, 0, WS_OP_CLOSE, payload, 2 + len);
}

/* ---- expected events and the split-everywhere harness ---- */

struct expect {
    enum ws_event_type type;
    uint8_t opcode;
    uint8_t rsv;
    const void *data;
    size_t length;
    unsigned close_code;
    const char *reason;     /* CLOSE: reason bytes; ERROR: exact text or NULL */
    size_t reason_length;
};

#define EV_MESSAGE(op, bits, bytes, len) \
    { .type = WS_EVENT_MESSAGE, .opcode = (op), .rsv = (bits), .data = (bytes), .length = (len) }
#define EV_TEXT(str) EV_MESSAGE(WS_OP_TEXT, 0, str, sizeof(str) - 1)
#define EV_BINARY(bytes, len) EV_MESSAGE(WS_OP_BINARY, 0, bytes, len)
#define EV_PING(str) { .type = WS_EVENT_PING, .data = (str), .length = sizeof(str) - 1 }
#define EV_PONG(str) { .type = WS_EVENT_PONG, .data = (str), .length = sizeof(str) - 1 }
#define EV_CLOSE(code, str) \
    { .type = WS_EVENT_CLOSE, .close_code = (code), .reason = (str), .reason_length = sizeof(str) - 1 }
#define EV_ERROR(code, why) { .type = WS_EVENT_ERROR, .close_code = (code), .reason = (why) }
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct run {
    struct ws_decoder decoder;
    const struct expect *expected;
    size_t expected_count;
    size_t seen;
    bool errored;
    unsigned error_code;
    const char *label;
};

static void check_event(struct run *run, const struct ws_event *ev)
{
    if (run->seen >= run->expected_count)
        fail_msg("%s: unexpected extra event type %d (code %u)", run->label, ev->type,
                 ev->close_code);
    const struct expect *want = &run->expected[run->seen++];
    if (ev->type != want->type)
        fail_msg("%s: event %zu: type %d, expected %d (code %u, %s)", run->label,
                 run->seen - 1, ev->type, want->type, ev->close_code,
                 ev->type == WS_EVENT_ERROR ? ev->reason : "-");

    switch (want->type) {
    case WS_EVENT_MESSAGE:
        assert_int_equal(ev->opcode, want->opcode);
        assert_int_equal(ev->rsv, want->rsv);
        /* fall through */
    case WS_EVENT_PING:
    case WS_EVENT_PONG:
        assert_non_null(ev->data);
        assert_int_equal(ev->length, want->length);
        /* memcmp first: cmocka compares byte by byte, too slow for the
         * 64 KiB vector fed split at every offset */
        if (want->length > 0 && memcmp(ev->data, want->data, want->length) != 0)
            assert_memory_equal(ev->data, want->data, want->length);
        break;
    case WS_EVENT_CLOSE:
        assert_int_equal(ev->close_code, want->close_code);
        assert_int_equal(ev->reason_length, want->reason_length);
        if (want->reason_length > 0)
            assert_memory_equal(ev->reason, want->reason, want->reason_length);
        break;
    case WS_EVENT_ERROR:
        if (ev->close_code != want->close_code)
            fail_msg("%s: error code %u (%s), expected %u", run->label, ev->close_code,
                     ev->reason, want->close_code);
        assert_non_null(ev->reason);
        assert_true(ev->reason_length > 0);
        assert_int_equal(strlen(ev->reason), ev->reason_length);
        if (want->reason)
            assert_string_equal(ev->reason, want->reason);
        break;
    case WS_EVENT_NONE:
        fail_msg("NONE is never an expected event");
    }
}

/* After a failure every feed repeats the error and consumes nothing. */
static void check_still_failed(struct run *run, const uint8_t *data, size_t len)
{
    struct ws_event ev;
    assert_int_equal(ws_decoder_feed(&run->decoder, data, len, &ev), 0);
    assert_int_equal(ev.type, WS_EVENT_ERROR);
    assert_int_equal(ev.close_code, run->error_code);
}

static void feed_chunk(struct run *run, const uint8_t *data, size_t len)
{
    if (run->errored) {
        check_still_failed(run, data, len);
        return;
    }
    for (;;) {
        struct ws_event ev;
        size_t used = ws_decoder_feed(&run->decoder, data, len, &ev);
        assert_true(used <= len);
        if (ev.type == WS_EVENT_NONE) {
            assert_int_equal(used, len);
            return;
        }
        check_event(run, &ev);
        data += used;
        len -= used;
        if (ev.type == WS_EVENT_ERROR) {
            run->errored = true;
            run->error_code = ev.close_code;
            check_still_failed(run, data, len);
            check_still_failed(run, (const uint8_t *)"\x81\x80\0\0\0\0", 6);
            return;
        }
        if (len == 0)
            return;
    }
}

static void run_start(struct run *run, const struct ws_decoder_options *options,
                      const struct expect *expected, size_t count, const char *label)
{
    memset(run, 0, sizeof *run);
    ws_decoder_init(&run->decoder, options);
    run->expected = expected;
    run->expected_count = count;
    run->label = label;
}

static void run_finish(struct run *run)
{
    if (run->seen != run->expected_count)
        fail_msg("%s: %zu of %zu events seen", run->label, run->seen, run->expected_count);
    ws_decoder_release(&run->decoder);
}

#define THREE_WAY_MAX 48

static void check_stream(const struct ws_decoder_options *options, const uint8_t *data,
                         size_t len, const struct expect *expected, size_t count)
{
    struct run run;
    char label[64];

    run_start(&run, options, expected, count, "whole");
    feed_chunk(&run, data, len);
    run_finish(&run);

    run_start(&run, options, expected, count, "bytewise");
    for (size_t i = 0; i < len; i++)
        feed_chunk(&run, data + i, 1);
    run_finish(&run);

    for (size_t cut = 0; cut <= len; cut++) {
        snprintf(label, sizeof label, "split at %zu", cut);
        run_start(&run, options, expected, count, label);
        feed_chunk(&run, data, cut);
        feed_chunk(&run, data + cut, len - cut);
        run_finish(&run);
    }

    if (len > THREE_WAY_MAX)
        return;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            snprintf(label, sizeof label, "split at %zu,%zu", a, b);
            run_start(&run, options, expected, count, label);
            feed_chunk(&run, data, a);
            feed_chunk(&run, data + a, b - a);
            feed_chunk(&run, data + b, len - b);
            run_finish(&run);
        }
    }
}

static const struct ws_decoder_options server_options = {
    .max_message_size = 0, .allowed_rsv = 0, .require_mask = true,
};
static const struct ws_decoder_options lenient_options = {
    .max_message_size = 0, .allowed_rsv = 0, .require_mask = false,
};
static const struct ws_decoder_options deflate_options = {
    .max_message_size = 0, .allowed_rsv = WSFRAME_RSV1, .require_mask = true,
};

#define CHECK(options, b, events) check_stream((options), (b).data, (b).len, (events), COUNT(events))

/* ---- headers ---- */

static void test_header_build_lengths(void **state)
{
    static const struct {
        uint64_t length;
        size_t size;
        uint8_t bytes[10];
    } cases[] = {
        { 0, 2, { 0x82, 0x00 } },
        { 125, 2, { 0x82, 0x7D } },
        { 126, 4, { 0x82, 0x7E, 0x00, 0x7E } },
        { 65535, 4, { 0x82, 0x7E, 0xFF, 0xFF } },
        { 65536, 10, { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 } },
        { 0x0102030405060708, 10, { 0x82, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8 } },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        uint8_t out[WSFRAME_MAX_HEADER];
        memset(out, 0xAA, sizeof out);
        size_t n = wsframe_header_build(out, true, 0, WS_OP_BINARY, cases[i].length);
        assert_int_equal(n, cases[i].size);
        assert_memory_equal(out, cases[i].bytes, n);
    }
}

static void test_header_build_bits(void **state)
{
    uint8_t out[WSFRAME_MAX_HEADER];
    assert_int_equal(wsframe_header_build(out, false, 0, WS_OP_TEXT, 3), 2);
    assert_int_equal(out[0], 0x01);
    assert_int_equal(out[1], 0x03); /* server frames are never masked */
    wsframe_header_build(out, true, WSFRAME_RSV1, WS_OP_TEXT, 0);
    assert_int_equal(out[0], 0xC1);
    wsframe_header_build(out, true, WSFRAME_RSV1 | WSFRAME_RSV2 | WSFRAME_RSV3, WS_OP_CLOSE, 0);
    assert_int_equal(out[0], 0xF8);
    wsframe_header_build(out, false, WSFRAME_RSV3, WS_OP_CONTINUATION, 0);
    assert_int_equal(out[0], 0x10);
    wsframe_header_build(out, true, 0, WS_OP_PONG, 0);
    assert_int_equal(out[0], 0x8A);
}

static void test_header_roundtrip(void **state)
{
    static const uint64_t lengths[] = { 0, 1, 125, 126, 127, 65535, 65536, UINT64_C(1) << 40,
                                        INT64_MAX };
    for (size_t i = 0; i < COUNT(lengths); i++) {
        uint8_t out[WSFRAME_MAX_HEADER];
        struct wsframe_header h;
        size_t n = wsframe_header_build(out, i % 2 == 0, WSFRAME_RSV2, WS_OP_PING, lengths[i]);
        assert_int_equal(wsframe_header_parse(out, n, &h), (int)n);
        assert_int_equal(h.header_length, n);
        assert_true(h.payload_length == lengths[i]);
        assert_int_equal(h.fin, i % 2 == 0);
        assert_int_equal(h.rsv, WSFRAME_RSV2);
        assert_int_equal(h.opcode, WS_OP_PING);
        assert_false(h.masked);
    }
}

static void test_header_parse_rfc_masked(void **state)
{
    static const uint8_t frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f };
    struct wsframe_header h;
    assert_int_equal(wsframe_header_parse(frame, sizeof frame, &h), 6);
    assert_true(h.fin);
    assert_int_equal(h.rsv, 0);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_true(h.masked);
    assert_memory_equal(h.mask, frame + 2, 4);
    assert_int_equal(h.payload_length, 5);
    assert_int_equal(h.header_length, 6);
}

static void test_header_parse_need_more(void **state)
{
    static const uint8_t headers[][14] = {
        { 0x81, 0x85, 1, 2, 3, 4 },
        { 0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4 },
        { 0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4 },
        { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 },
    };
    static const size_t sizes[] = { 6, 8, 14, 10 };
    static const uint64_t lengths[] = { 5, 256, 65536, 65536 };
    for (size_t i = 0; i < COUNT(sizes); i++) {
        struct wsframe_header h;
        for (size_t have = 0; have < sizes[i]; have++)
            assert_int_equal(wsframe_header_parse(headers[i], have, &h), WSFRAME_NEED_MORE);
        assert_int_equal(wsframe_header_parse(headers[i], sizes[i], &h), (int)sizes[i]);
        assert_true(h.payload_length == lengths[i]);
    }
}

static void test_header_parse_length_top_bit(void **state)
{
    static const uint8_t bad[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    static const uint8_t max[] = { 0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
    struct wsframe_header h;
    assert_int_equal(wsframe_header_parse(bad, sizeof bad, &h), WSFRAME_ERROR);
    /* known from the first length byte, so no split can delay it */
    assert_int_equal(wsframe_header_parse(bad, 3, &h), WSFRAME_ERROR);
    assert_int_equal(wsframe_header_parse(bad, 2, &h), WSFRAME_NEED_MORE);
    assert_int_equal(wsframe_header_parse(max, sizeof max, &h), 10);
    assert_true(h.payload_length == INT64_MAX);
}

/* ---- masking ---- */

static void test_mask_rfc(void **state)
{
    static const uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
    uint8_t data[] = { 'H', 'e', 'l', 'l', 'o' };
    wsframe_mask(data, sizeof data, mask, 0);
    static const uint8_t masked[] = { 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    assert_memory_equal(data, masked, sizeof masked);
    wsframe_mask(data, sizeof data, mask, 0);
    assert_memory_equal(data, "Hello", 5);
}

static void test_mask_offsets_and_pieces(void **state)
{
    static const uint8_t mask[4] = { 0x01, 0x80, 0xFE, 0x5A };
    uint8_t plain[80], whole[80], pieces[80];
    for (size_t i = 0; i < sizeof plain; i++)
        plain[i] = (uint8_t)(i * 7 + 3);

    for (size_t len = 0; len <= sizeof plain; len++) {
        for (uint64_t offset = 0; offset < 9; offset++) {
            memcpy(whole, plain, len);
            wsframe_mask(whole, len, mask, offset);
            for (size_t i = 0; i < len; i++)
                assert_int_equal(whole[i], plain[i] ^ mask[(offset + i) % 4]);
        }
        memcpy(whole, plain, len);
        wsframe_mask(whole, len, mask, 0);
        for (size_t cut = 0; cut <= len; cut++) {
            memcpy(pieces, plain, len);
            wsframe_mask(pieces, cut, mask, 0);
            wsframe_mask(pieces + cut, len - cut, mask, cut);
            assert_memory_equal(pieces, whole, len);
        }
    }
    /* a large offset keeps only its low two bits */
    memcpy(whole, plain, 8);
    wsframe_mask(whole, 8, mask, (UINT64_C(1) << 40) + 3);
    assert_int_equal(whole[0], plain[0] ^ mask[3]);
    assert_int_equal(whole[1], plain[1] ^ mask[0]);
}

/* ---- close codes and payloads ---- */

static void test_close_code_table(void **state)
{
    static const struct { unsigned code; bool ok; } table[] = {
        { 0, false }, { 999, false }, { 1000, true }, { 1001, true }, { 1002, true },
        { 1003, true }, { 1004, false }, { 1005, false }, { 1006, false }, { 1007, true },
        { 1008, true }, { 1009, true }, { 1010, true }, { 1011, true }, { 1012, true },
        { 1013, true }, { 1014, true }, { 1015, false }, { 1016, false }, { 2000, false },
        { 2999, false }, { 3000, true }, { 4000, true }, { 4999, true }, { 5000, false },
        { 65535, false }, { 65536 + 1000, false },
    };
    for (size_t i = 0; i < COUNT(table); i++)
        if (wsframe_close_code_acceptable(table[i].code) != table[i].ok)
            fail_msg("close code %u should be %s", table[i].code, table[i].ok ? "ok" : "bad");

    for (unsigned code = 0; code < 70000; code++) {
        bool ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                  (code >= 3000 && code <= 4999);
        assert_int_equal(wsframe_close_code_acceptable(code), ok);
    }
}

static void test_close_payload_basic(void **state)
{
    uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD];
    assert_int_equal(wsframe_close_payload_build(out, 1000, "bye"), 5);
    assert_memory_equal(out, "\x03\xE8" "bye", 5);
    assert_int_equal(wsframe_close_payload_build(out, 4999, ""), 2);
    assert_memory_equal(out, "\x13\x87", 2);
    assert_int_equal(wsframe_close_payload_build(out, 1001, NULL), 2);
    assert_memory_equal(out, "\x03\xE9", 2);
    assert_int_equal(wsframe_close_payload_build(out, WS_CLOSE_NO_STATUS, "ignored"), 0);
}

static void test_close_payload_truncation(void **state)
{
    static const struct { size_t prefix; const char *tail; size_t expect_reason; } cases[] = {
        { 123, "", 123 },
        { 124, "", 123 },
        { 200, "", 123 },
        { 121, "\xC3\xA9", 123 },            /* fits exactly */
        { 122, "\xC3\xA9", 122 },            /* é would straddle 123 */
        { 120, "\xE2\x82\xAC", 123 },
        { 121, "\xE2\x82\xAC", 121 },
        { 122, "\xE2\x82\xAC", 122 },
        { 119, "\xF0\x9F\x98\x80", 123 },
        { 120, "\xF0\x9F\x98\x80", 120 },
        { 121, "\xF0\x9F\x98\x80", 121 },
        { 122, "\xF0\x9F\x98\x80", 122 },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char reason[256];
        memset(reason, 'r', cases[i].prefix);
        strcpy(reason + cases[i].prefix, cases[i].tail);
        uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD + 8];
        memset(out, 0xEE, sizeof out);
        size_t n = wsframe_close_payload_build(out, 1008, reason);
        assert_int_equal(n, 2 + cases[i].expect_reason);
        assert_true(n <= WSFRAME_MAX_CONTROL_PAYLOAD);
        assert_int_equal(out[WSFRAME_MAX_CONTROL_PAYLOAD], 0xEE);
        assert_memory_equal(out, "\x03\xF0", 2);
        assert_memory_equal(out + 2, reason, n - 2);
        assert_true(utf8_is_valid(out + 2, n - 2));
        assert_true(wsframe_close_code_acceptable((unsigned)out[0] << 8 | out[1]));
    }
    /* all multi-byte: 60 é are 120 bytes and fit; 62 are cut to 61 */
    char reason[256] = "";
    for (int i = 0; i < 62; i++)
        strcat(reason, "\xC3\xA9");
    uint8_t out[WSFRAME_MAX_CONTROL_PAYLOAD];
    assert_int_equal(wsframe_close_payload_build(out, 1000, reason), 2 + 122);
    assert_true(utf8_is_valid(out + 2, 122));
}

/* ---- decoder: RFC 6455 §5.7 examples ---- */

static void test_rfc_unmasked_text(void **state)
{
    static const uint8_t frame[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const struct expect ok[] = { EV_TEXT("Hello") };
    static const struct expect bad[] = { EV_ERROR(1002, "unmasked frame") };
    check_stream(&lenient_options, frame, sizeof frame, ok, COUNT(ok));
    check_stream(&server_options, frame, sizeof frame, bad, COUNT(bad));
}

static void test_rfc_masked_text(void **state)
{
    static const uint8_t frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                     0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const struct expect ok[] = { EV_TEXT("Hello") };
    check_stream(&server_options, frame, sizeof frame, ok, COUNT(ok));
    check_stream(&lenient_options, frame, sizeof frame, ok, COUNT(ok));
}

static void test_rfc_fragmented_text(void **state)
{
    static const uint8_t frames[] = { 0x01, 0x03, 0x48, 0x65, 0x6c,
                                      0x80, 0x02, 0x6c, 0x6f };
    static const struct expect ok[] = { EV_TEXT("Hello") };
    check_stream(&lenient_options, frames, sizeof frames, ok, COUNT(ok));

    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_TEXT, "Hel");
    put_text(&b, true, WS_OP_CONTINUATION, "lo");
    CHECK(&server_options, b, ok);
    bytes_free(&b);
}

static void test_rfc_ping_pong(void **state)
{
    static const uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const struct expect ping_ev[] = { EV_PING("Hello") };
    static const struct expect pong_ev[] = { EV_PONG("Hello") };
    check_stream(&lenient_options, ping, sizeof ping, ping_ev, COUNT(ping_ev));
    check_stream(&server_options, pong, sizeof pong, pong_ev, COUNT(pong_ev));
}

static void check_binary_of_size(size_t size, const uint8_t *expect_header, size_t header_size)
{
    uint8_t *payload = malloc(size);
    assert_non_null(payload);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 31 + (i >> 8));
    const struct expect ok[] = { EV_BINARY(payload, size) };

    /* the RFC's unmasked form, byte for byte */
    struct bytes b = { 0 };
    bytes_put(&b, expect_header, header_size);
    bytes_put(&b, payload, size);
    CHECK(&lenient_options, b, ok);
    bytes_free(&b);

    /* the same message as a client must send it */
    put_frame(&b, true, 0, WS_OP_BINARY, payload, size);
    assert_int_equal(b.len, header_size + 4 + size);
    CHECK(&server_options, b, ok);
    bytes_free(&b);
    free(payload);
}

static void test_rfc_256_binary(void **state)
{
    static const uint8_t header[] = { 0x82, 0x7E, 0x01, 0x00 };
    check_binary_of_size(256, header, sizeof header);
}

static void test_rfc_64k_binary(void **state)
{
    static const uint8_t header[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 };
    check_binary_of_size(65536, header, sizeof header);
}

/* ---- decoder rules ---- */

static void test_unmasked_frames_rejected(void **state)
{
    static const uint8_t opcodes[] = { WS_OP_TEXT, WS_OP_BINARY, WS_OP_PING, WS_OP_PONG,
                                       WS_OP_CLOSE };
    static const struct expect bad[] = { EV_ERROR(1002, "unmasked frame") };
    for (size_t i = 0; i < COUNT(opcodes); i++) {
        struct bytes b = { 0 };
        put_frame_with(&b, true, 0, opcodes[i], NULL, "ab", 2);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
    }
    /* an unmasked continuation of a masked start */
    static const struct expect cont[] = { EV_ERROR(1002, "unmasked frame") };
    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_TEXT, "ab");
    put_frame_with(&b, true, 0, WS_OP_CONTINUATION, NULL, "cd", 2);
    CHECK(&server_options, b, cont);
    bytes_free(&b);
}

static void test_reserved_opcodes(void **state)
{
    static const uint8_t reserved[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
    static const struct expect bad[] = { EV_ERROR(1002, "reserved opcode") };
    static const struct expect bad_inside[] = { EV_ERROR(1002, "reserved opcode") };
    for (size_t i = 0; i < COUNT(reserved); i++) {
        struct bytes b = { 0 };
        put_frame(&b, true, 0, reserved[i], "x", 1);
        CHECK(&server_options, b, bad);
        bytes_free(&b);

        put_text(&b, false, WS_OP_BINARY, "ab");
        put_frame(&b, true, 0, reserved[i], "", 0);
        CHECK(&server_options, b, bad_inside);
        bytes_free(&b);
    }
}

static void test_control_fragmented(void **state)
{
    static const uint8_t opcodes[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    static const struct expect bad[] = { EV_ERROR(1002, "fragmented control frame") };
    for (size_t i = 0; i < COUNT(opcodes); i++) {
        struct bytes b = { 0 };
        put_frame(&b, false, 0, opcodes[i], "\x03\xE8", 2);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
    }
}

static void test_control_too_long(void **state)
{
    uint8_t payload[126];
    memset(payload, 'p', sizeof payload);
    static const uint8_t opcodes[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    static const struct expect bad[] = { EV_ERROR(1002, "control frame too long") };
    for (size_t i = 0; i < COUNT(opcodes); i++) {
        /* only the header: the error must not wait for the payload */
        struct bytes b = { 0 };
        put_frame(&b, true, 0, opcodes[i], payload, 126);
        b.len = 2 + 2 + 4;
        CHECK(&server_options, b, bad);
        bytes_free(&b);
    }
    /* 125 is the largest allowed */
    struct expect ok[] = { EV_PING("") };
    ok[0].data = payload;
    ok[0].length = 125;
    struct bytes b = { 0 };
    put_frame(&b, true, 0, WS_OP_PING, payload, 125);
    CHECK(&server_options, b, ok);
    bytes_free(&b);
}

static void test_rsv_rules(void **state)
{
    static const struct expect bad[] = { EV_ERROR(1002, "reserved bits set") };
    static const uint8_t rsv_bits[] = { WSFRAME_RSV1, WSFRAME_RSV2, WSFRAME_RSV3,
                                        WSFRAME_RSV1 | WSFRAME_RSV2 };
    struct bytes b = { 0 };

    for (size_t i = 0; i < COUNT(rsv_bits); i++) {
        /* no extension: any RSV bit on any frame fails */
        put_frame(&b, true, rsv_bits[i], WS_OP_TEXT, "a", 1);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
        put_frame(&b, true, rsv_bits[i], WS_OP_PING, "", 0);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
        put_text(&b, false, WS_OP_TEXT, "a");
        put_frame(&b, true, rsv_bits[i], WS_OP_CONTINUATION, "b", 1);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
    }

    /* RSV1 allowed on a message's first frame only */
    static const struct expect compressed[] = {
        EV_MESSAGE(WS_OP_BINARY, WSFRAME_RSV1, "abcd", 4),
        EV_MESSAGE(WS_OP_TEXT, WSFRAME_RSV1, "x", 1),
    };
    put_frame(&b, false, WSFRAME_RSV1, WS_OP_BINARY, "ab", 2);
    put_frame(&b, true, 0, WS_OP_CONTINUATION, "cd", 2);
    put_frame(&b, true, WSFRAME_RSV1, WS_OP_TEXT, "x", 1);
    CHECK(&deflate_options, b, compressed);
    bytes_free(&b);

    static const struct expect bad_after_ok[] = {
        EV_MESSAGE(WS_OP_TEXT, WSFRAME_RSV1, "x", 1),
        EV_ERROR(1002, "reserved bits set"),
    };
    put_frame(&b, true, WSFRAME_RSV1, WS_OP_TEXT, "x", 1);
    put_frame(&b, true, WSFRAME_RSV2, WS_OP_TEXT, "y", 1);
    CHECK(&deflate_options, b, bad_after_ok);
    bytes_free(&b);

    put_frame(&b, true, WSFRAME_RSV1 | WSFRAME_RSV3, WS_OP_TEXT, "x", 1);
    CHECK(&deflate_options, b, bad);
    bytes_free(&b);

    put_frame(&b, false, WSFRAME_RSV1, WS_OP_TEXT, "a", 1);
    put_frame(&b, true, WSFRAME_RSV1, WS_OP_CONTINUATION, "b", 1);
    CHECK(&deflate_options, b, bad);
    bytes_free(&b);

    put_frame(&b, true, WSFRAME_RSV1, WS_OP_PING, "", 0);
    CHECK(&deflate_options, b, bad);
    bytes_free(&b);

    put_frame(&b, true, WSFRAME_RSV1, WS_OP_CLOSE, "\x03\xE8", 2);
    CHECK(&deflate_options, b, bad);
    bytes_free(&b);
}

static void test_continuation_without_message(void **state)
{
    static const struct expect bad[] = { EV_ERROR(1002, "unexpected continuation") };
    static const struct expect bad_after[] = { EV_TEXT("a"), EV_ERROR(1002, "unexpected continuation") };
    struct bytes b = { 0 };
    put_text(&b, true, WS_OP_CONTINUATION, "x");
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    put_text(&b, false, WS_OP_CONTINUATION, "");
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    put_text(&b, true, WS_OP_TEXT, "a");
    put_text(&b, true, WS_OP_CONTINUATION, "b");
    CHECK(&server_options, b, bad_after);
    bytes_free(&b);
}

static void test_data_frame_inside_message(void **state)
{
    static const struct expect bad[] = { EV_ERROR(1002, "expected continuation") };
    static const uint8_t opcodes[] = { WS_OP_TEXT, WS_OP_BINARY };
    for (size_t i = 0; i < COUNT(opcodes); i++) {
        for (size_t j = 0; j < COUNT(opcodes); j++) {
            struct bytes b = { 0 };
            put_text(&b, false, opcodes[i], "ab");
            put_text(&b, true, opcodes[j], "cd");
            CHECK(&server_options, b, bad);
            bytes_free(&b);
        }
    }
}

static void test_length_top_bit_before_size_limit(void **state)
{
    static const uint8_t header[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    static const uint8_t header_max[] = { 0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                          0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4 };
    static const struct expect bad[] = { EV_ERROR(1002, NULL) };
    struct ws_decoder_options limited = server_options;
    limited.max_message_size = 10;
    check_stream(&limited, header, sizeof header, bad, COUNT(bad));
    check_stream(&server_options, header, sizeof header, bad, COUNT(bad));
    check_stream(&limited, header_max, sizeof header_max, bad, COUNT(bad));
    /* also when it is a continuation of an open message */
    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_BINARY, "ab");
    bytes_put(&b, "\x80", 1);
    bytes_put(&b, header + 1, sizeof header - 1);
    CHECK(&limited, b, bad);
    bytes_free(&b);
}

static void test_size_limit_single_frame(void **state)
{
    struct ws_decoder_options limited = server_options;
    limited.max_message_size = 10;
    static const struct expect ok[] = { EV_TEXT("0123456789") };
    static const struct expect too_big[] = { EV_ERROR(1009, "message too big") };
    struct bytes b = { 0 };

    put_text(&b, true, WS_OP_TEXT, "0123456789");
    CHECK(&limited, b, ok);
    bytes_free(&b);

    /* header only: rejected before any payload byte arrives */
    put_text(&b, true, WS_OP_TEXT, "0123456789A");
    b.len = 6;
    CHECK(&limited, b, too_big);
    bytes_free(&b);

    /* a huge declared length costs no allocation */
    static const uint8_t huge[] = { 0x82, 0xFF, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    check_stream(&limited, huge, sizeof huge, too_big, COUNT(too_big));
}

/* A masked binary header declaring length, continuation or not, plus five
 * payload bytes. */
static void put_declared(struct bytes *b, uint8_t opcode, uint64_t length)
{
    bytes_put_byte(b, (uint8_t)(0x80 | opcode));
    put_length(b, 0x80, length);
    bytes_put(b, "\x01\x02\x03\x04", 4);
    bytes_put(b, "abcde", 5);
}

/* Lengths compared as 64-bit numbers near the largest limit the config
 * allows (2^31): a comparison done in 32 bits would read 2^32 + 5 as 5. */
static void test_size_limit_near_the_largest(void **state)
{
    struct ws_decoder_options limited = server_options;
    limited.max_message_size = UINT64_C(1) << 31;
    static const struct expect too_big[] = { EV_ERROR(1009, "message too big") };
    static const uint64_t over[] = {
        (UINT64_C(1) << 32) + 5, UINT64_C(1) << 32, (UINT64_C(1) << 31) + 1,
        (UINT64_C(1) << 63) - 1, (UINT64_C(1) << 33) + (UINT64_C(1) << 31),
    };
    struct bytes b = { 0 };
    for (size_t i = 0; i < COUNT(over); i++) {
        put_declared(&b, WS_OP_BINARY, over[i]);
        CHECK(&limited, b, too_big);
        bytes_free(&b);
    }

    /* The limit itself is no error: the header is taken, payload awaited. */
    put_declared(&b, WS_OP_BINARY, UINT64_C(1) << 31);
    check_stream(&limited, b.data, b.len, NULL, 0);
    bytes_free(&b);

    /* Running totals: 10 bytes, then a continuation of 2^31 - 10 fits and
     * one of 2^31 - 9 does not. */
    put_text(&b, false, WS_OP_BINARY, "0123456789");
    put_declared(&b, WS_OP_CONTINUATION, (UINT64_C(1) << 31) - 10);
    check_stream(&limited, b.data, b.len, NULL, 0);
    bytes_free(&b);
    put_text(&b, false, WS_OP_BINARY, "0123456789");
    put_declared(&b, WS_OP_CONTINUATION, (UINT64_C(1) << 31) - 9);
    CHECK(&limited, b, too_big);
    bytes_free(&b);

    /* Without a limit the largest legal length is taken, and memory follows
     * the bytes that arrive, not the declaration. */
    put_declared(&b, WS_OP_BINARY, (UINT64_C(1) << 63) - 1);
    check_stream(&server_options, b.data, b.len, NULL, 0);
    bytes_free(&b);
}

static void test_size_limit_running_total(void **state)
{
    struct ws_decoder_options limited = server_options;
    limited.max_message_size = 10;
    struct bytes b = { 0 };

    /* 6 + 6: the second header is refused before its payload is sent */
    static const struct expect too_big[] = { EV_ERROR(1009, "message too big") };
    put_text(&b, false, WS_OP_TEXT, "abcdef");
    size_t first = b.len;
    put_text(&b, true, WS_OP_CONTINUATION, "ghijkl");
    b.len = first + 6;
    CHECK(&limited, b, too_big);
    bytes_free(&b);

    /* 5 + 5 with control frames between is exactly the limit */
    static const struct expect ok[] = { EV_PING("0123456789ab"), EV_TEXT("abcdefghij") };
    put_text(&b, false, WS_OP_TEXT, "abcde");
    put_text(&b, true, WS_OP_PING, "0123456789ab");
    put_text(&b, true, WS_OP_CONTINUATION, "fghij");
    CHECK(&limited, b, ok);
    bytes_free(&b);

    /* 10 + 0 is fine, 10 + 1 is not */
    static const struct expect ok_empty_tail[] = { EV_BINARY("0123456789", 10) };
    put_text(&b, false, WS_OP_BINARY, "0123456789");
    put_text(&b, true, WS_OP_CONTINUATION, "");
    CHECK(&limited, b, ok_empty_tail);
    bytes_free(&b);

    put_text(&b, false, WS_OP_BINARY, "0123456789");
    put_text(&b, true, WS_OP_CONTINUATION, "x");
    CHECK(&limited, b, too_big);
    bytes_free(&b);

    /* the total restarts with each message */
    static const struct expect two[] = { EV_TEXT("12345678"), EV_TEXT("87654321") };
    put_text(&b, false, WS_OP_TEXT, "1234");
    put_text(&b, true, WS_OP_CONTINUATION, "5678");
    put_text(&b, true, WS_OP_TEXT, "87654321");
    CHECK(&limited, b, two);
    bytes_free(&b);
}

static void test_text_invalid_utf8(void **state)
{
    static const struct expect bad[] = { EV_ERROR(1007, "invalid UTF-8") };
    static const char *const payloads[] = {
        "\xFF", "abc\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80", "ok\xE2\x82\x41",
    };
    for (size_t i = 0; i < COUNT(payloads); i++) {
        struct bytes b = { 0 };
        put_text(&b, true, WS_OP_TEXT, payloads[i]);
        CHECK(&server_options, b, bad);
        bytes_free(&b);
    }
    /* binary is not text */
    static const struct expect bin[] = { EV_BINARY("\xFF\xC0\xAF", 3) };
    struct bytes b = { 0 };
    put_text(&b, true, WS_OP_BINARY, "\xFF\xC0\xAF");
    CHECK(&server_options, b, bin);
    bytes_free(&b);
}

static void test_text_utf8_fails_mid_frame(void **state)
{
    /* a 100-byte frame of which only "ab\xFF" is sent: the verdict must not
     * wait for the other 97 bytes */
    static const struct expect bad[] = { EV_ERROR(1007, "invalid UTF-8") };
    uint8_t payload[100];
    memset(payload, 'x', sizeof payload);
    memcpy(payload, "ab\xFF", 3);
    struct bytes b = { 0 };
    put_frame(&b, true, 0, WS_OP_TEXT, payload, sizeof payload);
    b.len = 2 + 4 + 3;
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    /* a bad second byte of a sequence is caught the same way */
    memcpy(payload, "\xE0\x80", 2);
    put_frame(&b, true, 0, WS_OP_TEXT, payload, sizeof payload);
    b.len = 2 + 4 + 2;
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    /* and in a later fragment */
    put_text(&b, false, WS_OP_TEXT, "fine");
    put_frame(&b, true, 0, WS_OP_CONTINUATION, "\xC3\x28xxxxxxxx", 10);
    b.len -= 8;
    CHECK(&server_options, b, bad);
    bytes_free(&b);
}

static void test_text_utf8_across_fragments(void **state)
{
    /* € and 😀 cut across frames with control frames between */
    static const struct expect ok[] = {
        EV_PING(""), EV_PONG("x"), EV_TEXT("a\xE2\x82\xAC" "b\xF0\x9F\x98\x80"),
    };
    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_TEXT, "a\xE2");
    put_text(&b, true, WS_OP_PING, "");
    put_text(&b, false, WS_OP_CONTINUATION, "\x82");
    put_text(&b, true, WS_OP_PONG, "x");
    put_text(&b, false, WS_OP_CONTINUATION, "\xAC" "b\xF0\x9F");
    put_text(&b, true, WS_OP_CONTINUATION, "\x98\x80");
    CHECK(&server_options, b, ok);
    bytes_free(&b);

    /* a sequence broken across a frame boundary */
    static const struct expect bad[] = { EV_ERROR(1007, "invalid UTF-8") };
    put_text(&b, false, WS_OP_TEXT, "\xE2\x82");
    put_text(&b, true, WS_OP_CONTINUATION, "A");
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    /* a message that ends inside a character */
    put_text(&b, false, WS_OP_TEXT, "ok");
    put_text(&b, true, WS_OP_CONTINUATION, "\xE2\x82");
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    put_text(&b, true, WS_OP_TEXT, "\xF0\x9F\x98");
    CHECK(&server_options, b, bad);
    bytes_free(&b);

    /* the validator restarts with each message */
    static const struct expect two[] = { EV_TEXT("\xC3\xA9"), EV_TEXT("z") };
    put_text(&b, true, WS_OP_TEXT, "\xC3\xA9");
    put_text(&b, true, WS_OP_TEXT, "z");
    CHECK(&server_options, b, two);
    bytes_free(&b);
}

static void test_compressed_text_not_validated(void **state)
{
    /* RSV1 text is still compressed: the caller validates after inflating */
    static const struct expect ok[] = {
        EV_MESSAGE(WS_OP_TEXT, WSFRAME_RSV1, "\xFF\xE2\x82\xED\xA0\x80", 6),
        EV_ERROR(1007, "invalid UTF-8"),
    };
    struct bytes b = { 0 };
    put_frame(&b, false, WSFRAME_RSV1, WS_OP_TEXT, "\xFF\xE2", 2);
    put_frame(&b, true, 0, WS_OP_CONTINUATION, "\x82\xED\xA0\x80", 4);
    /* the next, uncompressed, text message is validated again */
    put_text(&b, true, WS_OP_TEXT, "\xFF");
    CHECK(&deflate_options, b, ok);
    bytes_free(&b);
}

static void test_close_frames(void **state)
{
    struct bytes b = { 0 };

    static const struct expect empty[] = { EV_CLOSE(WS_CLOSE_NO_STATUS, "") };
    put_frame(&b, true, 0, WS_OP_CLOSE, "", 0);
    CHECK(&server_options, b, empty);
    bytes_free(&b);

    static const struct expect one_byte[] = { EV_ERROR(1002, "invalid close payload") };
    put_frame(&b, true, 0, WS_OP_CLOSE, "\x03", 1);
    CHECK(&server_options, b, one_byte);
    bytes_free(&b);

    static const struct expect normal[] = { EV_CLOSE(1000, "bye") };
    put_close(&b, 1000, "bye", 3);
    CHECK(&server_options, b, normal);
    bytes_free(&b);

    static const struct expect no_reason[] = { EV_CLOSE(4999, "") };
    put_close(&b, 4999, "", 0);
    CHECK(&server_options, b, no_reason);
    bytes_free(&b);

    char long_reason[123];
    memset(long_reason, 'r', sizeof long_reason);
    struct expect longest[] = { EV_CLOSE(3000, "") };
    longest[0].reason = long_reason;
    longest[0].reason_length = sizeof long_reason;
    put_close(&b, 3000, long_reason, sizeof long_reason);
    CHECK(&server_options, b, longest);
    bytes_free(&b);

    static const struct expect utf8_reason[] = { EV_CLOSE(1001, "\xE2\x82\xAC") };
    put_close(&b, 1001, "\xE2\x82\xAC", 3);
    CHECK(&server_options, b, utf8_reason);
    bytes_free(&b);

    static const struct expect bad_reason[] = { EV_ERROR(1007, NULL) };
    put_close(&b, 1000, "a\xFF", 2);
    CHECK(&server_options, b, bad_reason);
    bytes_free(&b);
    put_close(&b, 1000, "a\xE2\x82", 3);
    CHECK(&server_options, b, bad_reason);
    bytes_free(&b);
}

static void test_close_codes_on_the_wire(void **state)
{
    static const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
    static const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                                    2999, 5000, 65535 };
    for (size_t i = 0; i < COUNT(good); i++) {
        struct expect ev[] = { EV_CLOSE(good[i], "why") };
        struct bytes b = { 0 };
        put_close(&b, good[i], "why", 3);
        CHECK(&server_options, b, ev);
        bytes_free(&b);
    }
    static const struct expect refused[] = { EV_ERROR(1002, "invalid close code") };
    for (size_t i = 0; i < COUNT(bad); i++) {
        struct bytes b = { 0 };
        put_close(&b, bad[i], "why", 3);
        CHECK(&server_options, b, refused);
        bytes_free(&b);
    }
}

static void test_control_between_fragments(void **state)
{
    static const struct expect ok[] = {
        EV_PING("ping"), EV_PONG(""), EV_PING(""), EV_TEXT("Hello"),
        EV_BINARY("\x00\x01\x02\x03", 4),
    };
    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_TEXT, "Hel");
    put_text(&b, true, WS_OP_PING, "ping");
    put_text(&b, true, WS_OP_PONG, "");
    put_text(&b, false, WS_OP_CONTINUATION, "l");
    put_text(&b, true, WS_OP_PING, "");
    put_text(&b, true, WS_OP_CONTINUATION, "o");
    put_frame(&b, true, 0, WS_OP_BINARY, "\x00\x01\x02\x03", 4);
    CHECK(&server_options, b, ok);
    bytes_free(&b);

    /* a close in the middle is reported; the message is left intact */
    static const struct expect with_close[] = {
        EV_CLOSE(1000, "done"), EV_BINARY("abcdef", 6),
    };
    put_text(&b, false, WS_OP_BINARY, "abc");
    put_close(&b, 1000, "done", 4);
    put_text(&b, true, WS_OP_CONTINUATION, "def");
    CHECK(&server_options, b, with_close);
    bytes_free(&b);
}

static void test_zero_length(void **state)
{
    static const struct expect ok[] = {
        EV_TEXT(""), EV_BINARY("", 0), EV_PING(""), EV_PONG(""), EV_TEXT("a"),
        EV_BINARY("", 0),
    };
    struct bytes b = { 0 };
    put_text(&b, true, WS_OP_TEXT, "");
    put_text(&b, true, WS_OP_BINARY, "");
    put_text(&b, true, WS_OP_PING, "");
    put_text(&b, true, WS_OP_PONG, "");
    put_text(&b, false, WS_OP_TEXT, "");
    put_text(&b, false, WS_OP_CONTINUATION, "");
    put_text(&b, false, WS_OP_CONTINUATION, "a");
    put_text(&b, true, WS_OP_CONTINUATION, "");
    put_text(&b, false, WS_OP_BINARY, "");
    put_text(&b, true, WS_OP_CONTINUATION, "");
    CHECK(&server_options, b, ok);
    bytes_free(&b);
}

static void test_non_minimal_lengths_accepted(void **state)
{
    /* RFC 6455 asks senders for the shortest length form; receivers in the
     * wild accept longer ones and so does this decoder */
    static const uint8_t frames[] = {
        0x81, 0xFE, 0x00, 0x02, 0, 0, 0, 0, 'h', 'i',
        0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 'x',
    };
    static const struct expect ok[] = { EV_TEXT("hi"), EV_BINARY("x", 1) };
    check_stream(&server_options, frames, sizeof frames, ok, COUNT(ok));
}

/* ---- decoder bookkeeping ---- */

static size_t feed_expect(struct ws_decoder *d, const uint8_t *data, size_t len,
                          enum ws_event_type type)
{
    struct ws_event ev;
    size_t used = ws_decoder_feed(d, data, len, &ev);
    assert_int_equal(ev.type, type);
    return used;
}

static void test_error_is_sticky(void **state)
{
    struct ws_decoder d;
    struct ws_event ev;
    ws_decoder_init(&d, &server_options);
    static const uint8_t unmasked[] = { 0x81, 0x01, 'a' };
    ws_decoder_feed(&d, unmasked, sizeof unmasked, &ev);
    assert_int_equal(ev.type, WS_EVENT_ERROR);
    assert_int_equal(ev.close_code, 1002);
    assert_string_equal(ev.reason, "unmasked frame");

    struct bytes b = { 0 };
    put_text(&b, true, WS_OP_TEXT, "valid");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ws_decoder_feed(&d, b.data, b.len, &ev), 0);
        assert_int_equal(ev.type, WS_EVENT_ERROR);
        assert_int_equal(ev.close_code, 1002);
        assert_string_equal(ev.reason, "unmasked frame");
    }
    assert_int_equal(ws_decoder_feed(&d, NULL, 0, &ev), 0);
    assert_int_equal(ev.type, WS_EVENT_ERROR);
    bytes_free(&b);
    ws_decoder_release(&d);
}

static void test_one_event_per_feed(void **state)
{
    struct bytes b = { 0 };
    put_text(&b, true, WS_OP_TEXT, "one");
    size_t first = b.len;
    put_text(&b, true, WS_OP_PING, "two");
    size_t second = b.len;
    put_text(&b, true, WS_OP_BINARY, "three");

    struct ws_decoder d;
    struct ws_event ev;
    ws_decoder_init(&d, &server_options);
    assert_int_equal(ws_decoder_feed(&d, b.data, b.len, &ev), first);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_memory_equal(ev.data, "one", 3);
    assert_int_equal(ws_decoder_feed(&d, b.data + first, b.len - first, &ev), second - first);
    assert_int_equal(ev.type, WS_EVENT_PING);
    assert_int_equal(ws_decoder_feed(&d, b.data + second, b.len - second, &ev), b.len - second);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
    assert_int_equal(ws_decoder_feed(&d, NULL, 0, &ev), 0);
    assert_int_equal(ev.type, WS_EVENT_NONE);
    ws_decoder_release(&d);
    bytes_free(&b);
}

static void test_frame_counter(void **state)
{
    struct ws_decoder d;
    ws_decoder_init(&d, &server_options);
    assert_int_equal(ws_decoder_frames(&d), 0);

    struct bytes b = { 0 };
    put_text(&b, false, WS_OP_TEXT, "abc");
    /* header and part of the payload: not a frame yet */
    assert_int_equal(feed_expect(&d, b.data, b.len - 1, WS_EVENT_NONE), b.len - 1);
    assert_int_equal(ws_decoder_frames(&d), 0);
    feed_expect(&d, b.data + b.len - 1, 1, WS_EVENT_NONE);
    assert_int_equal(ws_decoder_frames(&d), 1); /* a non-final fragment counts */
    bytes_free(&b);

    put_text(&b, true, WS_OP_PING, "");
    feed_expect(&d, b.data, b.len, WS_EVENT_PING);
    assert_int_equal(ws_decoder_frames(&d), 2);
    bytes_free(&b);

    put_text(&b, true, WS_OP_PONG, "");
    feed_expect(&d, b.data, 3, WS_EVENT_NONE); /* part of a header */
    assert_int_equal(ws_decoder_frames(&d), 2);
    feed_expect(&d, b.data + 3, b.len - 3, WS_EVENT_PONG);
    assert_int_equal(ws_decoder_frames(&d), 3);
    bytes_free(&b);

    put_text(&b, true, WS_OP_CONTINUATION, "d");
    feed_expect(&d, b.data, b.len, WS_EVENT_MESSAGE);
    assert_int_equal(ws_decoder_frames(&d), 4);
    bytes_free(&b);

    put_close(&b, 1000, "", 0);
    feed_expect(&d, b.data, b.len, WS_EVENT_CLOSE);
    assert_int_equal(ws_decoder_frames(&d), 5);
    bytes_free(&b);

    /* a frame that fails is not counted */
    put_close(&b, 1005, "", 0);
    feed_expect(&d, b.data, b.len, WS_EVENT_ERROR);
    assert_int_equal(ws_decoder_frames(&d), 5);
    bytes_free(&b);
    ws_decoder_release(&d);
}

static void test_big_buffer_freed_between_messages(void **state)
{
    struct ws_decoder d;
    ws_decoder_init(&d, &server_options);
    size_t big = 20000;
    uint8_t *payload = calloc(1, big);
    assert_non_null(payload);

    struct bytes b = { 0 };
    put_frame(&b, true, 0, WS_OP_BINARY, payload, big);
    feed_expect(&d, b.data, b.len, WS_EVENT_MESSAGE);
    assert_true(d.message_capacity >= big);
    bytes_free(&b);

    /* the next feed, whatever it carries, lets go of the big buffer */
    put_text(&b, true, WS_OP_PING, "");
    feed_expect(&d, b.data, 1, WS_EVENT_NONE);
    assert_null(d.message);
    assert_int_equal(d.message_capacity, 0);
    feed_expect(&d, b.data + 1, b.len - 1, WS_EVENT_PING);
    bytes_free(&b);

    /* a small buffer is kept for reuse */
    put_text(&b, true, WS_OP_TEXT, "small");
    feed_expect(&d, b.data, b.len, WS_EVENT_MESSAGE);
    feed_expect(&d, NULL, 0, WS_EVENT_NONE);
    assert_non_null(d.message);
    assert_true(d.message_capacity > 0 && d.message_capacity <= 16 * 1024);
    bytes_free(&b);

    free(payload);
    ws_decoder_release(&d);
    assert_null(d.message);
}

static void test_buffer_never_beyond_limit(void **state)
{
    struct ws_decoder_options limited = server_options;
    limited.max_message_size = 1000;
    struct ws_decoder d;
    ws_decoder_init(&d, &limited);

    uint8_t chunk[100];
    memset(chunk, 'z', sizeof chunk);
    for (int i = 0; i < 10; i++) {
        struct bytes b = { 0 };
        put_frame(&b, i == 9, 0, i == 0 ? WS_OP_BINARY : WS_OP_CONTINUATION, chunk,
                  sizeof chunk);
        feed_expect(&d, b.data, b.len, i == 9 ? WS_EVENT_MESSAGE : WS_EVENT_NONE);
        assert_true(d.message_capacity <= 1000);
        bytes_free(&b);
    }
    ws_decoder_release(&d);
}

static void test_release_and_reinit(void **state)
{
    struct ws_decoder d;
    struct bytes b = { 0 };
    ws_decoder_init(&d, &server_options);
    put_text(&b, false, WS_OP_TEXT, "half a message");
    feed_expect(&d, b.data, b.len, WS_EVENT_NONE);
    ws_decoder_release(&d);
    bytes_free(&b);

    ws_decoder_init(&d, &server_options);
    put_text(&b, true, WS_OP_TEXT, "fresh");
    struct ws_event ev;
    ws_decoder_feed(&d, b.data, b.len, &ev);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_int_equal(ev.length, 5);
    assert_memory_equal(ev.data, "fresh", 5);
    ws_decoder_release(&d);
    ws_decoder_release(&d); /* harmless twice */
    bytes_free(&b);
}

/* Idle only between frames outside a fragmented message: a partial
 * header, a partial payload, an open fragmented message and a failure
 * all hold state. */
static void test_idle_only_between_frames(void **state)
{
    (void)state;
    struct ws_decoder d;
    struct bytes b = { 0 };
    struct ws_event ev;
    ws_decoder_init(&d, &server_options);
    assert_true(ws_decoder_idle(&d));
    put_text(&b, true, WS_OP_TEXT, "hello");
    assert_int_equal(ws_decoder_feed(&d, b.data, 1, &ev), 1);
    assert_false(ws_decoder_idle(&d));                  /* one header byte */
    assert_int_equal(ws_decoder_feed(&d, b.data + 1, 7, &ev), 7);
    assert_false(ws_decoder_idle(&d));                  /* header, part of the payload */
    ws_decoder_feed(&d, b.data + 8, b.len - 8, &ev);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_true(ws_decoder_idle(&d));
    bytes_free(&b);

    put_text(&b, false, WS_OP_TEXT, "first half");
    feed_expect(&d, b.data, b.len, WS_EVENT_NONE);
    assert_false(ws_decoder_idle(&d));                  /* a fragmented message is open */
    bytes_free(&b);

    put_text(&b, true, WS_OP_TEXT, "not a continuation");
    ws_decoder_feed(&d, b.data, b.len, &ev);
    assert_int_equal(ev.type, WS_EVENT_ERROR);
    assert_false(ws_decoder_idle(&d));                  /* failed */
    bytes_free(&b);
    ws_decoder_release(&d);
}

/* A reused decoder starts afresh (options, failure, counters) and keeps
 * its message buffer, which the next message goes into. */
static void test_reuse_keeps_buffer(void **state)
{
    (void)state;
    struct ws_decoder d;
    struct bytes b = { 0 };
    struct ws_event ev;
    ws_decoder_init(&d, &lenient_options);
    put_text(&b, true, WS_OP_TEXT, "a first message");
    ws_decoder_feed(&d, b.data, b.len, &ev);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    const uint8_t *buffer = ev.data;
    assert_int_equal(ws_decoder_frames(&d), 1);
    bytes_free(&b);

    ws_decoder_reuse(&d, &server_options);
    assert_true(ws_decoder_idle(&d));
    assert_int_equal(ws_decoder_frames(&d), 0);
    put_text(&b, true, WS_OP_TEXT, "second");
    ws_decoder_feed(&d, b.data, b.len, &ev);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_ptr_equal(ev.data, buffer);
    assert_memory_equal(ev.data, "second", 6);
    bytes_free(&b);

    /* The new options apply: an unmasked frame now fails. */
    uint8_t unmasked[] = { 0x81, 0x01, 'x' };
    ws_decoder_feed(&d, unmasked, sizeof(unmasked), &ev);
    assert_int_equal(ev.type, WS_EVENT_ERROR);
    assert_int_equal(ev.close_code, WS_CLOSE_PROTOCOL_ERROR);
    ws_decoder_reuse(&d, &server_options);
    assert_true(ws_decoder_idle(&d));
    bytes_free(&b);

    /* A buffer grown past what is kept between messages is not kept. */
    static uint8_t big[64 * 1024];
    memset(big, 'b', sizeof(big));
    put_frame(&b, true, 0, WS_OP_BINARY, big, sizeof(big));
    ws_decoder_feed(&d, b.data, b.len, &ev);
    assert_int_equal(ev.type, WS_EVENT_MESSAGE);
    assert_true(d.message_capacity >= sizeof(big));
    ws_decoder_reuse(&d, &server_options);
    assert_int_equal(d.message_capacity, 0);
    assert_null(d.message);
    bytes_free(&b);
    ws_decoder_release(&d);
}

/* ---- randomized streams ---- */

struct owned_expect {
    struct expect ev;
    uint8_t *owned;
};

static void random_text(uint8_t *out, size_t len)
{
    static const char *const pieces[] = { "a", "Z", " ", "\xC3\xA9", "\xE2\x82\xAC",
                                          "\xF0\x9F\x98\x80", "\xED\x9F\xBF" };
    size_t at = 0;
    while (at < len) {
        const char *p = pieces[test_random() % COUNT(pieces)];
        size_t n = strlen(p);
        if (at + n > len)
            p = "q", n = 1;
        memcpy(out + at, p, n);
        at += n;
    }
}

static void test_random_streams(void **state)
{
    for (int round = 0; round < 150; round++) {
        struct bytes b = { 0 };
        struct owned_expect events[64];
        size_t count = 0;
        uint64_t frames = 0;

        while (count < 40) {
            bool text = test_random() % 2;
            size_t len = test_random() % 3 == 0 ? test_random() % 70000 : test_random() % 200;
            uint8_t *msg = malloc(len + 1);
            assert_non_null(msg);
            if (text)
                random_text(msg, len);
            else
                for (size_t i = 0; i < len; i++)
                    msg[i] = (uint8_t)test_random();

            size_t at = 0;
            size_t fragments = 1 + test_random() % 4;
            for (size_t f = 0; f < fragments; f++) {
                bool last = f + 1 == fragments;
                size_t n = last ? len - at : (len - at) * (test_random() % 100) / 100;
                put_frame(&b, last, 0, f == 0 ? (text ? WS_OP_TEXT : WS_OP_BINARY)
                                              : WS_OP_CONTINUATION, msg + at, n);
                at += n;
                frames++;
                if (!last && test_random() % 3 == 0) {
                    put_text(&b, true, WS_OP_PING, "between");
                    frames++;
                    events[count++] = (struct owned_expect){ .ev = EV_PING("between") };
                }
            }
            events[count++] = (struct owned_expect){
                .ev = EV_MESSAGE(text ? WS_OP_TEXT : WS_OP_BINARY, 0, msg, len),
                .owned = msg,
            };
        }

        struct expect flat[64];
        for (size_t i = 0; i < count; i++)
            flat[i] = events[i].ev;

        struct run run;
        run_start(&run, &server_options, flat, count, "random chunks");
        size_t at = 0;
        while (at < b.len) {
            size_t n = 1 + test_random() % (test_random() % 2 ? 16 : 40000);
            if (n > b.len - at)
                n = b.len - at;
            feed_chunk(&run, b.data + at, n);
            at += n;
        }
        assert_int_equal(ws_decoder_frames(&run.decoder), frames);
        run_finish(&run);

        for (size_t i = 0; i < count; i++)
            free(events[i].owned);
        bytes_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_build_lengths),
        cmocka_unit_test(test_header_build_bits),
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_header_parse_rfc_masked),
        cmocka_unit_test(test_header_parse_need_more),
        cmocka_unit_test(test_header_parse_length_top_bit),
        cmocka_unit_test(test_mask_rfc),
        cmocka_unit_test(test_mask_offsets_and_pieces),
        cmocka_unit_test(test_close_code_table),
        cmocka_unit_test(test_close_payload_basic),
        cmocka_unit_test(test_close_payload_truncation),
        cmocka_unit_test(test_rfc_unmasked_text),
        cmocka_unit_test(test_rfc_masked_text),
        cmocka_unit_test(test_rfc_fragmented_text),
        cmocka_unit_test(test_rfc_ping_pong),
        cmocka_unit_test(test_rfc_256_binary),
        cmocka_unit_test(test_rfc_64k_binary),
        cmocka_unit_test(test_unmasked_frames_rejected),
        cmocka_unit_test(test_reserved_opcodes),
        cmocka_unit_test(test_control_fragmented),
        cmocka_unit_test(test_control_too_long),
        cmocka_unit_test(test_rsv_rules),
        cmocka_unit_test(test_continuation_without_message),
        cmocka_unit_test(test_data_frame_inside_message),
        cmocka_unit_test(test_length_top_bit_before_size_limit),
        cmocka_unit_test(test_size_limit_single_frame),
        cmocka_unit_test(test_size_limit_near_the_largest),
        cmocka_unit_test(test_size_limit_running_total),
        cmocka_unit_test(test_text_invalid_utf8),
        cmocka_unit_test(test_text_utf8_fails_mid_frame),
        cmocka_unit_test(test_text_utf8_across_fragments),
        cmocka_unit_test(test_compressed_text_not_validated),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_close_codes_on_the_wire),
        cmocka_unit_test(test_control_between_fragments),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_non_minimal_lengths_accepted),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_one_event_per_feed),
        cmocka_unit_test(test_frame_counter),
        cmocka_unit_test(test_big_buffer_freed_between_messages),
        cmocka_unit_test(test_buffer_never_beyond_limit),
        cmocka_unit_test(test_release_and_reinit),
        cmocka_unit_test(test_idle_only_between_frames),
        cmocka_unit_test(test_reuse_keeps_buffer),
        cmocka_unit_test(test_random_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
