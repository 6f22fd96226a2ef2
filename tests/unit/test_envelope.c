/* Unit tests for the pubsub JSON protocol: request parsing (every error
 * code, with and without the id echoed) and the exact text of replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"

/* ---- helpers ---- */

static char *dump_any(json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(text);
    return text;
}

static void assert_json_text(json_t *value, const char *expected)
{
    char *text = dump_any(value);
    assert_string_equal(text, expected);
    free(text);
}

static void parse_ok_n(const char *text, size_t length, struct envelope_request *request)
{
    struct envelope_error error;
    if (envelope_parse(text, length, request, &error) != 0)
        fail_msg("%s: unexpected %s (%s)", text, error.code, error.message);
    assert_null(error.code);
    assert_null(error.id);
    assert_non_null(request->root);
}

static void parse_ok(const char *text, struct envelope_request *request)
{
    parse_ok_n(text, strlen(text), request);
}

/* expected_id: the id's compact JSON when it must be echoed, else NULL. */
static void expect_error_n(const char *text, size_t length, const char *code,
                           const char *expected_id)
{
    struct envelope_request request;
    struct envelope_error error;
    memset(&request, 0x5a, sizeof request);
    if (envelope_parse(text, length, &request, &error) != -1)
        fail_msg("%s: parsed, expected %s", text, code);
    if (strcmp(error.code, code) != 0)
        fail_msg("%s: code %s, expected %s", text, error.code, code);
    assert_non_null(error.message);
    assert_true(strlen(error.message) > 0);
    /* A failed parse leaves nothing behind to free or misuse. */
    assert_null(request.root);
    assert_null(request.id);
    assert_null(request.channel);
    if (expected_id == NULL) {
        if (error.id != NULL)
            fail_msg("%s: id echoed, expected none", text);
    } else {
        if (error.id == NULL)
            fail_msg("%s: id not echoed, expected %s", text, expected_id);
        assert_json_text(error.id, expected_id);
    }
    envelope_error_clear(&error);
    assert_null(error.id);
    assert_null(error.code);
}

static void expect_error(const char *text, const char *code, const char *expected_id)
{
    expect_error_n(text, strlen(text), code, expected_id);
}

static void expect_error_message(const char *text, const char *code, const char *message)
{
    struct envelope_request request;
    struct envelope_error error;
    assert_int_equal(envelope_parse(text, strlen(text), &request, &error), -1);
    assert_string_equal(error.code, code);
    assert_string_equal(error.message, message);
    envelope_error_clear(&error);
}

/* length is read through a pointer, after the builder has run: as a
 * plain argument it could be read before the call fills it. */
static void expect_reply(char *reply, const size_t *length, const char *expected)
{
    assert_non_null(reply);
    assert_string_equal(reply, expected);
    assert_int_equal(*length, strlen(expected));
    free(reply);
}

/* ---- successful parses ---- */

static void test_parse_subscribe(void **state)
{
    (void)state;
    struct envelope_request request;
    parse_ok("{\"op\":\"subscribe\",\"channel\":\"news\",\"id\":1}", &request);
    assert_int_equal(request.op, ENVELOPE_OP_SUBSCRIBE);
    assert_string_equal(request.channel, "news");
    assert_json_text(request.id, "1");
    assert_false(request.has_since);
    assert_int_equal(request.since, 0);
    assert_null(request.epoch);
    assert_null(request.data);
    envelope_request_clear(&request);
    assert_null(request.root);

    parse_ok("{\"since\":41,\"epoch\":\"e-1\",\"channel\":\"news\",\"op\":\"subscribe\"}",
             &request);
    assert_int_equal(request.op, ENVELOPE_OP_SUBSCRIBE);
    assert_null(request.id);
    assert_true(request.has_since);
    assert_int_equal(request.since, 41);
    assert_string_equal(request.epoch, "e-1");
    envelope_request_clear(&request);
}

static void test_parse_since_bounds(void **state)
{
    (void)state;
    struct envelope_request request;
    parse_ok("{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":0}", &request);
    assert_true(request.has_since);
    assert_int_equal(request.since, 0);
    envelope_request_clear(&request);

    parse_ok("{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":9223372036854775807}", &request);
    assert_true(request.since == UINT64_C(9223372036854775807));
    envelope_request_clear(&request);

    parse_ok("{\"op\":\"subscribe\",\"channel\":\"c\",\"epoch\":\"\"}", &request);
    assert_false(request.has_since);
    assert_string_equal(request.epoch, "");
    envelope_request_clear(&request);
}

static void test_parse_unsubscribe_and_presence(void **state)
{
    (void)state;
    struct envelope_request request;
    parse_ok("{\"op\":\"unsubscribe\",\"channel\":\"room:a\",\"id\":\"x\"}", &request);
    assert_int_equal(request.op, ENVELOPE_OP_UNSUBSCRIBE);
    assert_string_equal(request.channel, "room:a");
    assert_json_text(request.id, "\"x\"");
    envelope_request_clear(&request);

    parse_ok("{\"op\":\"presence\",\"channel\":\"room:a\"}", &request);
    assert_int_equal(request.op, ENVELOPE_OP_PRESENCE);
    assert_null(request.id);
    envelope_request_clear(&request);
}

static void test_parse_publish_data_kinds(void **state)
{
    (void)state;
    static const char *const data[] = {
        "{\"a\":[1,2,{\"b\":null}]}", "[]", "[1,\"x\"]", "{}", "42", "-1.5", "\"text\"",
        "\"\"", "true", "false", "null", "\"a\\u0000b\"",
    };
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":%s,\"id\":7}",
                 data[i]);
        struct envelope_request request;
        parse_ok(text, &request);
        assert_int_equal(request.op, ENVELOPE_OP_PUBLISH);
        assert_non_null(request.data);
        assert_json_text(request.data, data[i]);
        assert_json_text(request.id, "7");
        envelope_request_clear(&request);
    }
}

static void test_parse_id_scalars(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "0", "-3", "1.5", "\"abc\"", "\"\"", "true", "false", "null",
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"op\":\"presence\",\"channel\":\"c\",\"id\":%s}", ids[i]);
        struct envelope_request request;
        parse_ok(text, &request);
        /* A present null id is an id (echoed as null), not an absent one. */
        assert_non_null(request.id);
        assert_json_text(request.id, ids[i]);
        envelope_request_clear(&request);
    }
}

static void test_parse_whitespace_and_length(void **state)
{
    (void)state;
    struct envelope_request request;
    parse_ok(" \n{ \"op\" : \"presence\" ,\t\"channel\":\"c\" }\r\n", &request);
    envelope_request_clear(&request);

    /* Only length bytes are read: the text need not be NUL-terminated. */
    const char text[] = "{\"op\":\"presence\",\"channel\":\"c\"}garbage";
    parse_ok_n(text, sizeof text - 1 - strlen("garbage"), &request);
    envelope_request_clear(&request);
}

static void test_channel_names(void **state)
{
    (void)state;
    char name[130];
    memset(name, 'x', 128);
    name[128] = '\0';
    char text[256];
    snprintf(text, sizeof text, "{\"op\":\"subscribe\",\"channel\":\"%s\"}", name);
    struct envelope_request request;
    parse_ok(text, &request);
    assert_int_equal(strlen(request.channel), 128);
    envelope_request_clear(&request);

    parse_ok("{\"op\":\"subscribe\",\"channel\":"
             "\"azAZ09_.:@/-\"}", &request);
    assert_string_equal(request.channel, "azAZ09_.:@/-");
    envelope_request_clear(&request);

    parse_ok("{\"op\":\"subscribe\",\"channel\":\"a\"}", &request);
    envelope_request_clear(&request);

    /* Every byte outside the set is refused. */
    for (int c = 1; c < 256; c++) {
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || strchr("_.:@/-", c) != NULL;
        json_t *channel = json_stringn((const char[]){ 'a', (char)c }, 2);
        if (channel == NULL) {
            assert_true(c >= 0x80);   /* a lone byte >= 0x80 is not UTF-8 */
            continue;
        }
        json_t *root = json_pack("{s:s,s:o}", "op", "subscribe", "channel", channel);
        assert_non_null(root);
        char *dumped = json_dumps(root, JSON_COMPACT);
        assert_non_null(dumped);
        json_decref(root);
        struct envelope_error error;
        int rc = envelope_parse(dumped, strlen(dumped), &request, &error);
        if (allowed) {
            assert_int_equal(rc, 0);
            envelope_request_clear(&request);
        } else {
            if (rc != -1)
                fail_msg("byte 0x%02x accepted in a channel name", c);
            assert_string_equal(error.code, ENVELOPE_BAD_CHANNEL);
            envelope_error_clear(&error);
        }
        free(dumped);
    }
}

/* ---- errors ---- */

static void test_error_not_json(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", " ", "{", "}", "{\"op\":", "{\"op\":\"subscribe\",}", "{'op':'subscribe'}",
        "{\"op\":\"presence\",\"channel\":\"c\"} x",
        "{\"op\":\"presence\",\"channel\":\"c\"}{}", "nul", "\"unterminated",
        "{\"op\":\"presence\",\"channel\":\"c\",\"id\":NaN}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], ENVELOPE_BAD_REQUEST, NULL);
    expect_error_message("{", ENVELOPE_BAD_REQUEST, "invalid JSON");

    /* Invalid UTF-8 inside a string. */
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"id\":\"\xff\"}", ENVELOPE_BAD_REQUEST,
                 NULL);
    /* A NUL byte in the text itself. */
    const char with_nul[] = "{\"op\":\"presence\",\0\"channel\":\"c\"}";
    expect_error_n(with_nul, sizeof with_nul - 1, ENVELOPE_BAD_REQUEST, NULL);
    /* Beyond jansson's integer range: refused rather than rounded. */
    expect_error("{\"op\":\"publish\",\"channel\":\"c\",\"id\":1,\"data\":18446744073709551616}",
                 ENVELOPE_BAD_REQUEST, NULL);

    struct envelope_request request;
    struct envelope_error error;
    assert_int_equal(envelope_parse(NULL, 0, &request, &error), -1);
    assert_string_equal(error.code, ENVELOPE_BAD_REQUEST);
    envelope_error_clear(&error);
}

static void test_error_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 5000;
    const char *head = "{\"op\":\"publish\",\"channel\":\"c\",\"data\":";
    size_t length = strlen(head) + 2 * depth + 1;
    char *text = malloc(length + 1);
    assert_non_null(text);
    char *p = text + strlen(head);
    memcpy(text, head, strlen(head));
    memset(p, '[', depth);
    memset(p + depth, ']', depth);
    p[2 * depth] = '}';
    p[2 * depth + 1] = '\0';
    expect_error_n(text, length, ENVELOPE_BAD_REQUEST, NULL);
    free(text);
}

static void test_error_not_an_object(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]", "[{\"op\":\"presence\",\"channel\":\"c\"}]", "\"subscribe\"", "1", "null", "true",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], ENVELOPE_BAD_REQUEST, NULL);
    expect_error_message("[]", ENVELOPE_BAD_REQUEST, "request must be a JSON object");
}

static void test_error_duplicate_keys(void **state)
{
    (void)state;
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"channel\":\"d\"}", ENVELOPE_BAD_REQUEST,
                 NULL);
    expect_error("{\"op\":\"presence\",\"op\":\"publish\",\"channel\":\"c\"}", ENVELOPE_BAD_REQUEST,
                 NULL);
}

static void test_error_bad_id(void **state)
{
    (void)state;
    /* An id that cannot be echoed is not echoed, whatever else is wrong. */
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"id\":{}}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"id\":[1]}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":\"nope\",\"id\":{\"a\":1}}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"id\":[]}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error_message("{\"op\":\"presence\",\"channel\":\"c\",\"id\":[]}", ENVELOPE_BAD_REQUEST,
                         "id must be a string, number, boolean or null");
}

static void test_error_op(void **state)
{
    (void)state;
    expect_error("{}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"channel\":\"c\",\"id\":5}", ENVELOPE_BAD_REQUEST, "5");
    expect_error("{\"op\":1,\"channel\":\"c\",\"id\":\"a\"}", ENVELOPE_BAD_REQUEST, "\"a\"");
    expect_error("{\"op\":null,\"channel\":\"c\"}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":[\"subscribe\"],\"channel\":\"c\",\"id\":null}", ENVELOPE_BAD_REQUEST,
                 "null");
    expect_error_message("{\"channel\":\"c\"}", ENVELOPE_BAD_REQUEST, "op is missing");
    expect_error_message("{\"op\":true}", ENVELOPE_BAD_REQUEST, "op must be a string");
}

static void test_error_unknown_op(void **state)
{
    (void)state;
    expect_error("{\"op\":\"ping\",\"channel\":\"c\"}", ENVELOPE_UNKNOWN_OP, NULL);
    expect_error("{\"op\":\"ping\",\"channel\":\"c\",\"id\":9}", ENVELOPE_UNKNOWN_OP, "9");
    expect_error("{\"op\":\"Subscribe\",\"channel\":\"c\",\"id\":true}", ENVELOPE_UNKNOWN_OP,
                 "true");
    expect_error("{\"op\":\"\",\"id\":false}", ENVELOPE_UNKNOWN_OP, "false");
    expect_error("{\"op\":\"subscribe \",\"channel\":\"c\"}", ENVELOPE_UNKNOWN_OP, NULL);
    expect_error("{\"op\":\"subscribe\\u0000\",\"channel\":\"c\",\"id\":1.5}", ENVELOPE_UNKNOWN_OP,
                 "1.5");
    expect_error("{\"op\":\"ok\",\"id\":\"r\"}", ENVELOPE_UNKNOWN_OP, "\"r\"");
    /* The op decides which fields are known, so an unknown op wins. */
    expect_error("{\"op\":\"ping\",\"extra\":1}", ENVELOPE_UNKNOWN_OP, NULL);
    expect_error_message("{\"op\":\"x\"}", ENVELOPE_UNKNOWN_OP, "unknown op");
}

static void test_error_unknown_field(void **state)
{
    (void)state;
    expect_error("{\"op\":\"subscribe\",\"channel\":\"c\",\"foo\":1}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":\"subscribe\",\"channel\":\"c\",\"foo\":1,\"id\":2}",
                 ENVELOPE_BAD_REQUEST, "2");
    expect_error("{\"op\":\"subscribe\",\"channel\":\"c\",\"ID\":1}", ENVELOPE_BAD_REQUEST, NULL);
    /* Fields of one op are unknown to the others. */
    expect_error("{\"op\":\"subscribe\",\"channel\":\"c\",\"data\":1,\"id\":3}",
                 ENVELOPE_BAD_REQUEST, "3");
    expect_error("{\"op\":\"publish\",\"channel\":\"c\",\"data\":1,\"since\":1,\"id\":4}",
                 ENVELOPE_BAD_REQUEST, "4");
    expect_error("{\"op\":\"publish\",\"channel\":\"c\",\"data\":1,\"epoch\":\"e\"}",
                 ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":\"unsubscribe\",\"channel\":\"c\",\"since\":1,\"id\":\"u\"}",
                 ENVELOPE_BAD_REQUEST, "\"u\"");
    expect_error("{\"op\":\"unsubscribe\",\"channel\":\"c\",\"data\":1}", ENVELOPE_BAD_REQUEST,
                 NULL);
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"epoch\":\"e\",\"id\":5}",
                 ENVELOPE_BAD_REQUEST, "5");
    expect_error("{\"op\":\"presence\",\"channel\":\"c\",\"data\":null}", ENVELOPE_BAD_REQUEST,
                 NULL);
    /* Unknown field is checked before the channel. */
    expect_error("{\"op\":\"presence\",\"extra\":1}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error_message("{\"op\":\"presence\",\"channel\":\"c\",\"x\":0}", ENVELOPE_BAD_REQUEST,
                         "unknown field");
}

static void test_error_bad_channel(void **state)
{
    (void)state;
    expect_error("{\"op\":\"subscribe\"}", ENVELOPE_BAD_CHANNEL, NULL);
    expect_error("{\"op\":\"subscribe\",\"id\":1}", ENVELOPE_BAD_CHANNEL, "1");
    expect_error("{\"op\":\"publish\",\"data\":1,\"id\":2}", ENVELOPE_BAD_CHANNEL, "2");
    expect_error("{\"op\":\"unsubscribe\",\"channel\":\"\",\"id\":3}", ENVELOPE_BAD_CHANNEL, "3");
    expect_error("{\"op\":\"presence\",\"channel\":\"a b\",\"id\":4}", ENVELOPE_BAD_CHANNEL, "4");
    expect_error("{\"op\":\"subscribe\",\"channel\":\"caf\\u00e9\"}", ENVELOPE_BAD_CHANNEL, NULL);
    expect_error("{\"op\":\"subscribe\",\"channel\":\"a\\u0000b\",\"id\":5}", ENVELOPE_BAD_CHANNEL,
                 "5");
    expect_error("{\"op\":\"subscribe\",\"channel\":\"a#b\"}", ENVELOPE_BAD_CHANNEL, NULL);
    /* A channel of the wrong type is a bad channel too. */
    expect_error("{\"op\":\"subscribe\",\"channel\":1,\"id\":6}", ENVELOPE_BAD_CHANNEL, "6");
    expect_error("{\"op\":\"subscribe\",\"channel\":null}", ENVELOPE_BAD_CHANNEL, NULL);
    expect_error("{\"op\":\"subscribe\",\"channel\":[\"c\"]}", ENVELOPE_BAD_CHANNEL, NULL);

    char name[130];
    memset(name, 'x', 129);
    name[129] = '\0';
    char text[256];
    snprintf(text, sizeof text, "{\"op\":\"subscribe\",\"channel\":\"%s\",\"id\":7}", name);
    expect_error(text, ENVELOPE_BAD_CHANNEL, "7");

    expect_error_message("{\"op\":\"subscribe\"}", ENVELOPE_BAD_CHANNEL, "channel is missing");
    expect_error_message("{\"op\":\"subscribe\",\"channel\":\"\"}", ENVELOPE_BAD_CHANNEL,
                         "invalid channel name");
}

static void test_error_since(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "-1", "1.0", "1e3", "\"5\"", "true", "null", "[1]", "{}", "-9223372036854775808",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text,
                 "{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":%s,\"id\":8}", bad[i]);
        expect_error(text, ENVELOPE_BAD_REQUEST, "8");
        snprintf(text, sizeof text, "{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":%s}",
                 bad[i]);
        expect_error(text, ENVELOPE_BAD_REQUEST, NULL);
    }
    expect_error_message("{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":-1}",
                         ENVELOPE_BAD_REQUEST, "since must be a non-negative integer");
}

static void test_error_epoch(void **state)
{
    (void)state;
    static const char *const bad[] = { "1", "null", "true", "[\"e\"]", "{}", "\"a\\u0000b\"" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text,
                 "{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":1,\"epoch\":%s,\"id\":\"e\"}",
                 bad[i]);
        expect_error(text, ENVELOPE_BAD_REQUEST, "\"e\"");
        snprintf(text, sizeof text, "{\"op\":\"subscribe\",\"channel\":\"c\",\"epoch\":%s}",
                 bad[i]);
        expect_error(text, ENVELOPE_BAD_REQUEST, NULL);
    }
    expect_error_message("{\"op\":\"subscribe\",\"channel\":\"c\",\"epoch\":1}",
                         ENVELOPE_BAD_REQUEST, "epoch must be a string");
}

static void test_error_publish_without_data(void **state)
{
    (void)state;
    expect_error("{\"op\":\"publish\",\"channel\":\"c\"}", ENVELOPE_BAD_REQUEST, NULL);
    expect_error("{\"op\":\"publish\",\"channel\":\"c\",\"id\":10}", ENVELOPE_BAD_REQUEST, "10");
    expect_error_message("{\"op\":\"publish\",\"channel\":\"c\"}", ENVELOPE_BAD_REQUEST,
                         "publish needs data");
    /* null is data. */
    struct envelope_request request;
    parse_ok("{\"op\":\"publish\",\"channel\":\"c\",\"data\":null}", &request);
    assert_true(json_is_null(request.data));
    envelope_request_clear(&request);
}

static void test_error_id_outlives_request(void **state)
{
    (void)state;
    struct envelope_request request;
    struct envelope_error error;
    const char *text = "{\"op\":\"publish\",\"channel\":\"c\",\"id\":\"keep me\"}";
    assert_int_equal(envelope_parse(text, strlen(text), &request, &error), -1);
    size_t length = 0;
    char *reply = envelope_error_reply(error.id, error.code, error.message, &length);
    expect_reply(reply, &length,
                 "{\"op\":\"error\",\"id\":\"keep me\",\"code\":\"bad_request\","
                 "\"message\":\"publish needs data\"}");
    envelope_error_clear(&error);
    envelope_error_clear(&error);
}

static void test_clear_is_safe(void **state)
{
    (void)state;
    struct envelope_request request;
    memset(&request, 0, sizeof request);
    envelope_request_clear(&request);
    envelope_request_clear(NULL);
    struct envelope_error error;
    memset(&error, 0, sizeof error);
    envelope_error_clear(&error);
    envelope_error_clear(NULL);

    parse_ok("{\"op\":\"presence\",\"channel\":\"c\"}", &request);
    envelope_request_clear(&request);
    envelope_request_clear(&request);
}

/* ---- replies ---- */

static void test_ok_reply(void **state)
{
    (void)state;
    size_t length = 0;
    expect_reply(envelope_ok(NULL, NULL, &length), &length, "{\"op\":\"ok\"}");

    json_t *id = json_integer(3);
    assert_non_null(id);
    expect_reply(envelope_ok(id, NULL, &length), &length, "{\"op\":\"ok\",\"id\":3}");
    json_decref(id);

    id = json_string("a\"b");
    expect_reply(envelope_ok(id, NULL, &length), &length, "{\"op\":\"ok\",\"id\":\"a\\\"b\"}");
    json_decref(id);

    id = json_null();
    expect_reply(envelope_ok(id, NULL, &length), &length, "{\"op\":\"ok\",\"id\":null}");

    /* The length pointer is optional. */
    char *reply = envelope_ok(NULL, NULL, NULL);
    assert_string_equal(reply, "{\"op\":\"ok\"}");
    free(reply);
}

static void test_ok_reply_subscribe(void **state)
{
    (void)state;
    json_t *id = json_integer(1);
    json_t *extra = json_object();
    assert_non_null(id);
    assert_non_null(extra);
    /* Insertion order is kept, not sorted: the spec fixes the key order. */
    assert_int_equal(json_object_set_new(extra, "channel", json_string("room:a")), 0);
    assert_int_equal(json_object_set_new(extra, "seq", json_integer(42)), 0);
    assert_int_equal(json_object_set_new(extra, "epoch", json_string("e1")), 0);
    assert_int_equal(json_object_set_new(extra, "recovered", json_false()), 0);
    size_t length = 0;
    expect_reply(envelope_ok(id, extra, &length), &length,
                 "{\"op\":\"ok\",\"id\":1,\"channel\":\"room:a\",\"seq\":42,\"epoch\":\"e1\","
                 "\"recovered\":false}");
    /* extra is borrowed, not consumed. */
    assert_int_equal(json_object_size(extra), 4);
    expect_reply(envelope_ok(NULL, extra, &length), &length,
                 "{\"op\":\"ok\",\"channel\":\"room:a\",\"seq\":42,\"epoch\":\"e1\","
                 "\"recovered\":false}");
    json_decref(extra);
    json_decref(id);
}

static void test_ok_reply_publish_and_presence(void **state)
{
    (void)state;
    json_t *id = json_string("p");
    json_t *extra = json_pack("{s:I}", "seq", (json_int_t)7);
    assert_non_null(id);
    assert_non_null(extra);
    size_t length = 0;
    expect_reply(envelope_ok(id, extra, &length), &length,
                 "{\"op\":\"ok\",\"id\":\"p\",\"seq\":7}");
    json_decref(extra);

    extra = json_pack("{s:[s,s]}", "users", "alice", "bob");
    assert_non_null(extra);
    expect_reply(envelope_ok(id, extra, &length), &length,
                 "{\"op\":\"ok\",\"id\":\"p\",\"users\":[\"alice\",\"bob\"]}");
    json_decref(extra);

    extra = json_object();
    assert_non_null(extra);
    expect_reply(envelope_ok(id, extra, &length), &length, "{\"op\":\"ok\",\"id\":\"p\"}");
    json_decref(extra);
    json_decref(id);
}

static void test_ok_reply_refuses_bad_extra(void **state)
{
    (void)state;
    json_t *extra = json_pack("{s:i,s:s}", "seq", 1, "op", "error");
    assert_non_null(extra);
    assert_null(envelope_ok(NULL, extra, NULL));
    json_decref(extra);

    extra = json_pack("{s:i}", "id", 2);
    assert_non_null(extra);
    json_t *id = json_integer(1);
    assert_null(envelope_ok(id, extra, NULL));
    json_decref(extra);
    json_decref(id);

    extra = json_array();
    assert_non_null(extra);
    assert_null(envelope_ok(NULL, extra, NULL));
    json_decref(extra);
}

static void test_error_reply(void **state)
{
    (void)state;
    size_t length = 0;
    expect_reply(envelope_error_reply(NULL, ENVELOPE_FORBIDDEN, "not allowed", &length), &length,
                 "{\"op\":\"error\",\"code\":\"forbidden\",\"message\":\"not allowed\"}");
    json_t *id = json_real(2.5);
    assert_non_null(id);
    expect_reply(envelope_error_reply(id, ENVELOPE_NOT_SUBSCRIBED, "not subscribed", &length),
                 &length,
                 "{\"op\":\"error\",\"id\":2.5,\"code\":\"not_subscribed\","
                 "\"message\":\"not subscribed\"}");
    json_decref(id);
    id = json_true();
    expect_reply(envelope_error_reply(id, ENVELOPE_TOO_LARGE, "say \"less\"", &length), &length,
                 "{\"op\":\"error\",\"id\":true,\"code\":\"too_large\","
                 "\"message\":\"say \\\"less\\\"\"}");
    assert_null(envelope_error_reply(NULL, NULL, "x", NULL));
    assert_null(envelope_error_reply(NULL, ENVELOPE_UNAVAILABLE, NULL, NULL));
}

static void test_error_codes_are_stable(void **state)
{
    (void)state;
    assert_string_equal(ENVELOPE_BAD_REQUEST, "bad_request");
    assert_string_equal(ENVELOPE_UNKNOWN_OP, "unknown_op");
    assert_string_equal(ENVELOPE_BAD_CHANNEL, "bad_channel");
    assert_string_equal(ENVELOPE_FORBIDDEN, "forbidden");
    assert_string_equal(ENVELOPE_NOT_SUBSCRIBED, "not_subscribed");
    assert_string_equal(ENVELOPE_TOO_MANY_SUBSCRIPTIONS, "too_many_subscriptions");
    assert_string_equal(ENVELOPE_TOO_LARGE, "too_large");
    assert_string_equal(ENVELOPE_RATE_LIMITED, "rate_limited");
    assert_string_equal(ENVELOPE_UNAVAILABLE, "unavailable");
}

static void test_presence_events(void **state)
{
    (void)state;
    size_t length = 0;
    expect_reply(envelope_presence_event("join", "room:a", "alice", &length), &length,
                 "{\"op\":\"join\",\"channel\":\"room:a\",\"user\":\"alice\"}");
    expect_reply(envelope_presence_event("leave", "room:a", "alice", &length), &length,
                 "{\"op\":\"leave\",\"channel\":\"room:a\",\"user\":\"alice\"}");
    /* UTF-8 stays as it is; quotes and control characters are escaped. */
    expect_reply(envelope_presence_event("join", "c", "J\xc3\xbcrgen \"J\"\t", &length), &length,
                 "{\"op\":\"join\",\"channel\":\"c\",\"user\":\"J\xc3\xbcrgen \\\"J\\\"\\t\"}");
    assert_null(envelope_presence_event("message", "c", "u", NULL));
    assert_null(envelope_presence_event(NULL, "c", "u", NULL));
    assert_null(envelope_presence_event("join", NULL, "u", NULL));
    assert_null(envelope_presence_event("join", "c", NULL, NULL));
    /* Not UTF-8: no JSON text can carry it. */
    assert_null(envelope_presence_event("join", "c", "\xff", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_subscribe),
        cmocka_unit_test(test_parse_since_bounds),
        cmocka_unit_test(test_parse_unsubscribe_and_presence),
        cmocka_unit_test(test_parse_publish_data_kinds),
        cmocka_unit_test(test_parse_id_scalars),
        cmocka_unit_test(test_parse_whitespace_and_length),
        cmocka_unit_test(test_channel_names),
        cmocka_unit_test(test_error_not_json),
        cmocka_unit_test(test_error_deep_nesting),
        cmocka_unit_test(test_error_not_an_object),
        cmocka_unit_test(test_error_duplicate_keys),
        cmocka_unit_test(test_error_bad_id),
        cmocka_unit_test(test_error_op),
        cmocka_unit_test(test_error_unknown_op),
        cmocka_unit_test(test_error_unknown_field),
        cmocka_unit_test(test_error_bad_channel),
        cmocka_unit_test(test_error_since),
        cmocka_unit_test(test_error_epoch),
        cmocka_unit_test(test_error_publish_without_data),
        cmocka_unit_test(test_error_id_outlives_request),
        cmocka_unit_test(test_clear_is_safe),
        cmocka_unit_test(test_ok_reply),
        cmocka_unit_test(test_ok_reply_subscribe),
        cmocka_unit_test(test_ok_reply_publish_and_presence),
        cmocka_unit_test(test_ok_reply_refuses_bad_extra),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_error_codes_are_stable),
        cmocka_unit_test(test_presence_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
