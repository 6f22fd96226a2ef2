/* Unit tests for shared frames and published messages: the exact bytes of
 * both wire encodings, that each is built once and shared, and that
 * reference counts free everything exactly once (ASan checks the rest). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "message.h"
#include "shared_frame.h"
#include "wsframe.h"

/* ---- helpers ---- */

/* Checks frame is one final, unmasked, RSV-free frame of opcode whose
 * header declares exactly the bytes that follow; returns its payload. */
static const uint8_t *frame_payload(const struct shared_frame *frame, uint8_t opcode,
                                    size_t *length)
{
    assert_non_null(frame);
    struct wsframe_header header;
    int header_length = wsframe_header_parse(frame->bytes, frame->length, &header);
    assert_true(header_length >= 2);
    assert_true(header.fin);
    assert_int_equal(header.rsv, 0);
    assert_false(header.masked);
    assert_int_equal(header.opcode, opcode);
    assert_true(header.payload_length == frame->length - (size_t)header_length);
    /* Minimal length encoding, as wsframe_header_build writes it. */
    size_t expected_header = header.payload_length < 126 ? 2
                             : header.payload_length <= 65535 ? 4 : 10;
    assert_int_equal((size_t)header_length, expected_header);
    *length = (size_t)header.payload_length;
    return frame->bytes + header_length;
}

static void assert_frame(const struct shared_frame *frame, uint8_t opcode, const void *payload,
                         size_t length)
{
    size_t actual_length;
    const uint8_t *actual = frame_payload(frame, opcode, &actual_length);
    assert_int_equal(actual_length, length);
    if (length > 0)
        assert_memory_equal(actual, payload, length);
}

static void assert_text_frame(const struct shared_frame *frame, const char *text)
{
    size_t length;
    const uint8_t *payload = frame_payload(frame, WS_OP_TEXT, &length);
    char *copy = malloc(length + 1);
    assert_non_null(copy);
    memcpy(copy, payload, length);
    copy[length] = '\0';
    if (length != strlen(text) || strcmp(copy, text) != 0)
        fail_msg("frame text\n  %s\nexpected\n  %s", copy, text);
    free(copy);
}

static struct message *new_message(enum message_kind kind, const char *channel, const char *from,
                                   const char *payload)
{
    struct message *message = message_new(kind, channel, from, payload, strlen(payload));
    assert_non_null(message);
    return message;
}

static void expect_envelope(enum message_kind kind, const char *from, const void *payload,
                            size_t length, uint64_t seq, const char *expected)
{
    struct message *message = message_new(kind, "news", from, payload, length);
    assert_non_null(message);
    message->seq = seq;
    struct shared_frame *frame = message_envelope_frame(message);
    assert_text_frame(frame, expected);
    /* Whatever the payload, the envelope is one valid JSON object (integers
     * read as reals: jansson's own integers stop below UINT64_MAX). */
    size_t text_length;
    const uint8_t *text = frame_payload(frame, WS_OP_TEXT, &text_length);
    json_error_t error;
    json_t *root = json_loadb((const char *)text, text_length,
                              JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &error);
    if (root == NULL)
        fail_msg("envelope is not JSON: %s", error.text);
    assert_true(json_is_object(root));
    json_decref(root);
    message_release(message);
}

static void expect_envelope_str(enum message_kind kind, const char *from, const char *payload,
                                const char *expected)
{
    expect_envelope(kind, from, payload, strlen(payload), 1, expected);
}

/* Base64 written the slow, obvious way, to check the real one against. */
static char *reference_base64(const uint8_t *data, size_t length)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((length + 2) / 3 * 4 + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < length; i += 3) {
        uint32_t group = (uint32_t)data[i] << 16;
        if (i + 1 < length)
            group |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < length)
            group |= data[i + 2];
        out[o++] = alphabet[(group >> 18) & 63];
        out[o++] = alphabet[(group >> 12) & 63];
        out[o++] = i + 1 < length ? alphabet[(group >> 6) & 63] : '=';
        out[o++] = i + 2 < length ? alphabet[group & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* ---- shared_frame ---- */

static void test_shared_frame_new(void **state)
{
    (void)state;
    struct shared_frame *frame = shared_frame_new(10);
    assert_non_null(frame);
    assert_int_equal(frame->refcount, 1);
    assert_int_equal(frame->length, 10);
    memset(frame->bytes, 0xab, 10);
    shared_frame_release(frame);

    frame = shared_frame_new(0);
    assert_non_null(frame);
    assert_int_equal(frame->length, 0);
    shared_frame_release(frame);

    assert_null(shared_frame_new(SIZE_MAX));
    assert_null(shared_frame_new(SIZE_MAX - sizeof(struct shared_frame) + 1));
}

static void test_shared_frame_refcount(void **state)
{
    (void)state;
    struct shared_frame *frame = shared_frame_encode(WS_OP_TEXT, "hi", 2);
    assert_non_null(frame);
    assert_int_equal(frame->refcount, 1);
    assert_ptr_equal(shared_frame_retain(frame), frame);
    assert_ptr_equal(shared_frame_retain(frame), frame);
    assert_int_equal(frame->refcount, 3);
    shared_frame_release(frame);
    shared_frame_release(frame);
    assert_int_equal(frame->refcount, 1);
    assert_text_frame(frame, "hi");
    shared_frame_release(frame);   /* freed: ASan reports a leak otherwise */
    shared_frame_release(NULL);
}

static void test_shared_frame_encode_lengths(void **state)
{
    (void)state;
    static const size_t lengths[] = { 0, 1, 125, 126, 127, 65535, 65536, 70000 };
    uint8_t *payload = malloc(70000);
    assert_non_null(payload);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        struct shared_frame *frame = shared_frame_encode(WS_OP_BINARY, payload, lengths[i]);
        assert_frame(frame, WS_OP_BINARY, payload, lengths[i]);
        assert_int_equal(frame->length - shared_frame_payload_offset(frame), lengths[i]);
        shared_frame_release(frame);
    }
    free(payload);

    struct shared_frame *frame = shared_frame_encode(WS_OP_TEXT, NULL, 0);
    assert_frame(frame, WS_OP_TEXT, NULL, 0);
    assert_int_equal(frame->length, 2);
    assert_int_equal(frame->bytes[0], 0x81);
    assert_int_equal(frame->bytes[1], 0x00);
    shared_frame_release(frame);
}

static void test_shared_frame_encode_exact_bytes(void **state)
{
    (void)state;
    struct shared_frame *frame = shared_frame_encode(WS_OP_TEXT, "Hello", 5);
    assert_non_null(frame);
    /* RFC 6455 §5.7: a single-frame unmasked text message. */
    static const uint8_t expected[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
    assert_int_equal(frame->length, sizeof expected);
    assert_memory_equal(frame->bytes, expected, sizeof expected);
    shared_frame_release(frame);

    uint8_t close_payload[2] = { 0x03, 0xe8 };
    frame = shared_frame_encode(WS_OP_CLOSE, close_payload, 2);
    static const uint8_t close_expected[] = { 0x88, 0x02, 0x03, 0xe8 };
    assert_non_null(frame);
    assert_memory_equal(frame->bytes, close_expected, sizeof close_expected);
    shared_frame_release(frame);
}

static void test_shared_frame_encode_refuses_invalid(void **state)
{
    (void)state;
    uint8_t payload[126] = { 0 };
    assert_null(shared_frame_encode(WS_OP_PING, payload, 126));
    assert_null(shared_frame_encode(WS_OP_CLOSE, payload, 126));
    assert_null(shared_frame_encode(0x10, payload, 1));
    assert_null(shared_frame_encode(WS_OP_TEXT, NULL, 1));
    struct shared_frame *frame = shared_frame_encode(WS_OP_PONG, payload, 125);
    assert_frame(frame, WS_OP_PONG, payload, 125);
    shared_frame_release(frame);
}

/* ---- message lifetime ---- */

static void test_message_new_copies(void **state)
{
    (void)state;
    char channel[] = "room:a";
    char from[] = "alice";
    char payload[] = "hello";
    struct message *message = message_new(MESSAGE_TEXT, channel, from, payload, 5);
    assert_non_null(message);
    channel[0] = from[0] = payload[0] = 'X';
    assert_int_equal(message->refcount, 1);
    assert_int_equal(message->kind, MESSAGE_TEXT);
    assert_string_equal(message->channel, "room:a");
    assert_string_equal(message->from, "alice");
    assert_int_equal(message->length, 5);
    assert_memory_equal(message->payload, "hello", 5);
    assert_ptr_not_equal(message->channel, channel);
    assert_ptr_not_equal(message->from, from);
    assert_ptr_not_equal((void *)message->payload, (void *)payload);
    assert_int_equal(message->seq, 0);
    assert_null(message->raw_frame);
    assert_null(message->envelope_frame);
    message_release(message);

    message = message_new(MESSAGE_BINARY, "c", NULL, NULL, 0);
    assert_non_null(message);
    assert_null(message->from);
    assert_int_equal(message->length, 0);
    message_release(message);
}

static void test_message_new_refuses_invalid(void **state)
{
    (void)state;
    assert_null(message_new(MESSAGE_TEXT, NULL, "u", "x", 1));
    assert_null(message_new(MESSAGE_TEXT, "c", "u", NULL, 1));
    /* Empty text is not a JSON value. */
    assert_null(message_new(MESSAGE_JSON, "c", "u", "", 0));
    assert_null(message_new((enum message_kind)99, "c", "u", "x", 1));
    assert_null(message_new(MESSAGE_BINARY, "c", NULL, "x", SIZE_MAX));
}

static void test_message_refcount(void **state)
{
    (void)state;
    struct message *message = new_message(MESSAGE_TEXT, "c", "u", "x");
    assert_ptr_equal(message_retain(message), message);
    assert_int_equal(message->refcount, 2);
    message_release(message);
    assert_int_equal(message->refcount, 1);
    assert_string_equal(message->channel, "c");
    message_release(message);   /* freed: ASan reports a leak otherwise */
    message_release(NULL);
}

static void test_frames_outlive_message(void **state)
{
    (void)state;
    struct message *message = new_message(MESSAGE_TEXT, "c", "u", "kept");
    struct shared_frame *raw = shared_frame_retain(message_raw_frame(message));
    struct shared_frame *envelope = shared_frame_retain(message_envelope_frame(message));
    assert_int_equal(raw->refcount, 2);
    assert_int_equal(envelope->refcount, 2);
    message_release(message);
    /* The message dropped its references; ours keep the bytes alive. */
    assert_int_equal(raw->refcount, 1);
    assert_int_equal(envelope->refcount, 1);
    assert_text_frame(raw, "kept");
    assert_text_frame(envelope,
                      "{\"op\":\"message\",\"channel\":\"c\",\"seq\":0,\"data\":\"kept\","
                      "\"from\":\"u\"}");
    shared_frame_release(raw);
    shared_frame_release(envelope);
}

/* ---- caching ---- */

static void test_frames_built_once(void **state)
{
    (void)state;
    static const enum message_kind kinds[] = { MESSAGE_TEXT, MESSAGE_BINARY, MESSAGE_JSON };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        struct message *message = new_message(kinds[i], "c", "u", "\"v\"");
        struct shared_frame *raw = message_raw_frame(message);
        assert_non_null(raw);
        assert_ptr_equal(message->raw_frame, raw);
        assert_ptr_equal(message_raw_frame(message), raw);
        assert_int_equal(raw->refcount, 1);

        struct shared_frame *envelope = message_envelope_frame(message);
        assert_non_null(envelope);
        assert_ptr_equal(message->envelope_frame, envelope);
        assert_ptr_equal(message_envelope_frame(message), envelope);
        assert_ptr_not_equal(envelope, raw);
        assert_int_equal(envelope->refcount, 1);
        assert_ptr_equal(message_raw_frame(message), raw);
        message_release(message);
    }
}

static void test_envelope_seq_fixed_at_first_build(void **state)
{
    (void)state;
    struct message *message = new_message(MESSAGE_JSON, "c", NULL, "1");
    message->seq = 5;
    struct shared_frame *first = message_envelope_frame(message);
    assert_text_frame(first, "{\"op\":\"message\",\"channel\":\"c\",\"seq\":5,\"data\":1}");
    message->seq = 6;
    assert_ptr_equal(message_envelope_frame(message), first);
    assert_text_frame(first, "{\"op\":\"message\",\"channel\":\"c\",\"seq\":5,\"data\":1}");
    message_release(message);
}

/* ---- raw frames ---- */

static void test_raw_text_and_binary(void **state)
{
    (void)state;
    struct message *message =
        new_message(MESSAGE_TEXT, "c", "u", "{\"user\":\"a\",\"message\":\"hi\"}");
    assert_text_frame(message_raw_frame(message), "{\"user\":\"a\",\"message\":\"hi\"}");
    message_release(message);

    const uint8_t bytes[] = { 0x00, 0xff, 0x80, 0x0a, 0x00 };
    message = message_new(MESSAGE_BINARY, "c", NULL, bytes, sizeof bytes);
    assert_non_null(message);
    assert_frame(message_raw_frame(message), WS_OP_BINARY, bytes, sizeof bytes);
    message_release(message);

    message = message_new(MESSAGE_TEXT, "c", NULL, "", 0);
    assert_non_null(message);
    assert_frame(message_raw_frame(message), WS_OP_TEXT, NULL, 0);
    message_release(message);

    message = message_new(MESSAGE_BINARY, "c", NULL, NULL, 0);
    assert_non_null(message);
    assert_frame(message_raw_frame(message), WS_OP_BINARY, NULL, 0);
    message_release(message);
}

static void test_raw_json_string_is_its_characters(void **state)
{
    (void)state;
    struct message *message = new_message(MESSAGE_JSON, "c", "u", "\"hello\"");
    assert_text_frame(message_raw_frame(message), "hello");
    message_release(message);

    message = new_message(MESSAGE_JSON, "c", "u", "\"say \\\"hi\\\"\\n\\u00e9\\ud83d\\ude00\\\\\"");
    assert_text_frame(message_raw_frame(message), "say \"hi\"\n\xc3\xa9\xf0\x9f\x98\x80\\");
    message_release(message);

    message = new_message(MESSAGE_JSON, "c", "u", "\"\"");
    assert_frame(message_raw_frame(message), WS_OP_TEXT, NULL, 0);
    message_release(message);

    message = new_message(MESSAGE_JSON, "c", "u", " \n\"padded\" ");
    assert_text_frame(message_raw_frame(message), "padded");
    message_release(message);

    /* An embedded NUL is a character like any other. */
    message = new_message(MESSAGE_JSON, "c", "u", "\"a\\u0000b\"");
    assert_frame(message_raw_frame(message), WS_OP_TEXT, "a\0b", 3);
    message_release(message);
}

static void test_raw_json_other_values_as_text(void **state)
{
    (void)state;
    static const char *const values[] = {
        "{\"a\":\"b\",\"c\":[1,2]}", "[\"x\",{}]", "[]", "{}", "42", "-0.5", "true", "false",
        "null",
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct message *message = new_message(MESSAGE_JSON, "c", "u", values[i]);
        assert_text_frame(message_raw_frame(message), values[i]);
        message_release(message);
    }
}

static void test_raw_json_broken_string_fails_closed(void **state)
{
    (void)state;
    /* The caller promised valid JSON; if it is not, nothing is sent. */
    struct message *message = new_message(MESSAGE_JSON, "c", "u", "\"unterminated");
    assert_null(message_raw_frame(message));
    message_release(message);
    message = new_message(MESSAGE_JSON, "c", "u", "\"a\" \"b\"");
    assert_null(message_raw_frame(message));
    message_release(message);
}

/* ---- envelope frames ---- */

static void test_envelope_text(void **state)
{
    (void)state;
    expect_envelope_str(MESSAGE_TEXT, "alice", "hi",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":\"hi\","
                        "\"from\":\"alice\"}");
    expect_envelope_str(MESSAGE_TEXT, NULL, "hi",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":\"hi\"}");
    expect_envelope_str(MESSAGE_TEXT, NULL, "",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":\"\"}");
    /* A raw text frame that looks like JSON is still just text. */
    expect_envelope_str(MESSAGE_TEXT, NULL, "{\"a\":1}",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,"
                        "\"data\":\"{\\\"a\\\":1}\"}");
}

static void test_envelope_text_escaping(void **state)
{
    (void)state;
    expect_envelope_str(MESSAGE_TEXT, NULL, "say \"hi\"\nback\\slash\ttab\r\b\f/",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,"
                        "\"data\":\"say \\\"hi\\\"\\nback\\\\slash\\ttab\\r\\b\\f/\"}");
    expect_envelope_str(MESSAGE_TEXT, NULL, "\x01\x1f\x7f",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,"
                        "\"data\":\"\\u0001\\u001F\x7f\"}");
    /* UTF-8 (2, 3 and 4 bytes, U+2028 too) is written as it is. */
    expect_envelope_str(MESSAGE_TEXT, NULL,
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,"
                        "\"data\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\"}");
    expect_envelope(MESSAGE_TEXT, NULL, "a\0b", 3, 1,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":\"a\\u0000b\"}");
}

/* Every byte value escapes exactly as jansson would escape it. */
static void test_envelope_escaping_matches_jansson(void **state)
{
    (void)state;
    char text[128];
    for (int c = 0; c < 128; c++)
        text[c] = (char)c;
    json_t *string = json_stringn(text, sizeof text);
    assert_non_null(string);
    char *escaped = json_dumps(string, JSON_ENCODE_ANY);
    assert_non_null(escaped);
    json_decref(string);

    struct message *message = message_new(MESSAGE_TEXT, "c", NULL, text, sizeof text);
    assert_non_null(message);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "{\"op\":\"message\",\"channel\":\"c\",\"seq\":0,\"data\":%s}", escaped);
    assert_text_frame(message_envelope_frame(message), expected);
    message_release(message);
    free(escaped);
}

static void test_envelope_invalid_utf8_fails_closed(void **state)
{
    (void)state;
    struct message *message = message_new(MESSAGE_TEXT, "c", NULL, "\xc3", 1);
    assert_non_null(message);
    assert_null(message_envelope_frame(message));
    assert_text_frame(message_raw_frame(message), "\xc3");
    message_release(message);

    message = new_message(MESSAGE_JSON, "c", "\xff", "1");
    assert_null(message_envelope_frame(message));
    message_release(message);

    message = new_message(MESSAGE_JSON, "\xed\xa0\x80", NULL, "1");
    assert_null(message_envelope_frame(message));
    message_release(message);
}

static void test_envelope_binary_base64(void **state)
{
    (void)state;
    struct {
        const char *bytes;
        size_t length;
        const char *base64;
    } cases[] = {
        { "", 0, "" },
        { "f", 1, "Zg==" },
        { "fo", 2, "Zm8=" },
        { "foo", 3, "Zm9v" },
        { "foob", 4, "Zm9vYg==" },
        { "fooba", 5, "Zm9vYmE=" },
        { "foobar", 6, "Zm9vYmFy" },
        { "\0", 1, "AA==" },
        { "\xff\xfe\xfd", 3, "//79" },
        { "\xfb\xff", 2, "+/8=" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char expected[256];
        snprintf(expected, sizeof expected,
                 "{\"op\":\"message\",\"channel\":\"news\",\"seq\":3,\"data_base64\":\"%s\","
                 "\"from\":\"bob\"}", cases[i].base64);
        expect_envelope(MESSAGE_BINARY, "bob", cases[i].bytes, cases[i].length, 3, expected);
    }
    expect_envelope(MESSAGE_BINARY, NULL, NULL, 0, 3,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":3,\"data_base64\":\"\"}");
}

/* Lengths around the internal chunk size (3 MiB) and the frame header
 * size steps, each against the reference encoder. */
static void test_envelope_binary_large(void **state)
{
    (void)state;
    static const size_t lengths[] = {
        90, 91, 92, 49000, 3 * 1024 * 1024 - 1, 3 * 1024 * 1024, 3 * 1024 * 1024 + 1,
        3 * 1024 * 1024 + 2, 6 * 1024 * 1024 + 4,
    };
    size_t max = 6 * 1024 * 1024 + 4;
    uint8_t *bytes = malloc(max);
    assert_non_null(bytes);
    uint32_t x = 12345;
    for (size_t i = 0; i < max; i++) {
        x = x * 1103515245u + 12345u;
        bytes[i] = (uint8_t)(x >> 16);
    }
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        struct message *message = message_new(MESSAGE_BINARY, "c", NULL, bytes, lengths[i]);
        assert_non_null(message);
        char *base64 = reference_base64(bytes, lengths[i]);
        const char *head = "{\"op\":\"message\",\"channel\":\"c\",\"seq\":0,\"data_base64\":\"";
        size_t length;
        const uint8_t *payload = frame_payload(message_envelope_frame(message), WS_OP_TEXT,
                                               &length);
        size_t base64_length = strlen(base64);
        assert_int_equal(length, strlen(head) + base64_length + 2);
        assert_memory_equal(payload, head, strlen(head));
        assert_memory_equal(payload + strlen(head), base64, base64_length);
        assert_memory_equal(payload + strlen(head) + base64_length, "\"}", 2);
        free(base64);
        message_release(message);
    }
    free(bytes);
}

static void test_envelope_json_values(void **state)
{
    (void)state;
    static const char *const values[] = {
        "{\"a\":1,\"b\":[true,null]}", "[1,\"two\",{}]", "[]", "{}", "0", "-12.5e3", "\"str\"",
        "\"\"", "null", "true", "false", "\"quote \\\" and \\u00e9\"",
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char expected[256];
        snprintf(expected, sizeof expected,
                 "{\"op\":\"message\",\"channel\":\"news\",\"seq\":42,\"data\":%s,"
                 "\"from\":\"alice\"}", values[i]);
        expect_envelope(MESSAGE_JSON, "alice", values[i], strlen(values[i]), 42, expected);
        snprintf(expected, sizeof expected,
                 "{\"op\":\"message\",\"channel\":\"news\",\"seq\":42,\"data\":%s}", values[i]);
        expect_envelope(MESSAGE_JSON, NULL, values[i], strlen(values[i]), 42, expected);
    }
}

static void test_envelope_seq_values(void **state)
{
    (void)state;
    expect_envelope(MESSAGE_JSON, NULL, "1", 1, 0,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":0,\"data\":1}");
    expect_envelope(MESSAGE_JSON, NULL, "1", 1, 10,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":10,\"data\":1}");
    expect_envelope(MESSAGE_JSON, NULL, "1", 1, 1234567890123ULL,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1234567890123,\"data\":1}");
    expect_envelope(MESSAGE_JSON, NULL, "1", 1, UINT64_MAX,
                    "{\"op\":\"message\",\"channel\":\"news\",\"seq\":18446744073709551615,"
                    "\"data\":1}");
}

static void test_envelope_from_and_channel_escaped(void **state)
{
    (void)state;
    expect_envelope_str(MESSAGE_JSON, "J\xc3\xbcrgen \"the\" \\ one", "1",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":1,"
                        "\"from\":\"J\xc3\xbcrgen \\\"the\\\" \\\\ one\"}");
    expect_envelope_str(MESSAGE_JSON, "", "1",
                        "{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":1,"
                        "\"from\":\"\"}");
    struct message *message = new_message(MESSAGE_TEXT, "a\"b", "u", "x");
    assert_text_frame(message_envelope_frame(message),
                      "{\"op\":\"message\",\"channel\":\"a\\\"b\",\"seq\":0,\"data\":\"x\","
                      "\"from\":\"u\"}");
    message_release(message);
}

static void test_envelope_header_sizes(void **state)
{
    (void)state;
    /* Envelope lengths on both sides of the 126 and 65536 header steps. */
    size_t fixed = strlen("{\"op\":\"message\",\"channel\":\"news\",\"seq\":1,\"data\":\"\"}");
    static const size_t totals[] = { 125, 126, 65535, 65536 };
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        size_t length = totals[i] - fixed;
        char *text = malloc(length + 1);
        assert_non_null(text);
        memset(text, 'x', length);
        text[length] = '\0';
        struct message *message = new_message(MESSAGE_TEXT, "news", NULL, text);
        message->seq = 1;
        size_t payload_length;
        frame_payload(message_envelope_frame(message), WS_OP_TEXT, &payload_length);
        assert_int_equal(payload_length, totals[i]);
        message_release(message);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_frame_new),
        cmocka_unit_test(test_shared_frame_refcount),
        cmocka_unit_test(test_shared_frame_encode_lengths),
        cmocka_unit_test(test_shared_frame_encode_exact_bytes),
        cmocka_unit_test(test_shared_frame_encode_refuses_invalid),
        cmocka_unit_test(test_message_new_copies),
        cmocka_unit_test(test_message_new_refuses_invalid),
        cmocka_unit_test(test_message_refcount),
        cmocka_unit_test(test_frames_outlive_message),
        cmocka_unit_test(test_frames_built_once),
        cmocka_unit_test(test_envelope_seq_fixed_at_first_build),
        cmocka_unit_test(test_raw_text_and_binary),
        cmocka_unit_test(test_raw_json_string_is_its_characters),
        cmocka_unit_test(test_raw_json_other_values_as_text),
        cmocka_unit_test(test_raw_json_broken_string_fails_closed),
        cmocka_unit_test(test_envelope_text),
        cmocka_unit_test(test_envelope_text_escaping),
        cmocka_unit_test(test_envelope_escaping_matches_jansson),
        cmocka_unit_test(test_envelope_invalid_utf8_fails_closed),
        cmocka_unit_test(test_envelope_binary_base64),
        cmocka_unit_test(test_envelope_binary_large),
        cmocka_unit_test(test_envelope_json_values),
        cmocka_unit_test(test_envelope_seq_values),
        cmocka_unit_test(test_envelope_from_and_channel_escaped),
        cmocka_unit_test(test_envelope_header_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
