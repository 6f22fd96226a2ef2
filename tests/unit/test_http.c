/* Unit tests for the http module: request-head parsing (whole and byte by
 * byte), size and header-count bounds, lookups, decoding and the response
 * writer. Every buffer handed to the parser is a heap copy of exactly the
 * bytes under test, so a read past the end trips AddressSanitizer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define BIG 65536

struct parsed {
    char *buf;
    struct http_request request;
    int result;
};

static void parsed_free(struct parsed *p)
{
    free(p->buf);
    p->buf = NULL;
}

/* Parses text[0..len) from an exact-size heap copy; p->buf stays alive for
 * the request's pointers until parsed_free. */
static int parse_n(struct parsed *p, const char *text, size_t len, size_t max)
{
    p->buf = malloc(len > 0 ? len : 1);
    assert_non_null(p->buf);
    if (len > 0)
        memcpy(p->buf, text, len);
    p->result = http_request_parse(p->buf, len, max, &p->request);
    return p->result;
}

static int parse_once(const char *text, size_t len, size_t max)
{
    struct parsed p;
    int result = parse_n(&p, text, len, max);
    parsed_free(&p);
    return result;
}

/* Feeds every prefix of text. A valid head must need more at every prefix
 * and parse to its full length at the end; an invalid one may be refused
 * early but, once refused, stays refused, and ends with expected. */
static void assert_every_boundary(const char *text, size_t len, size_t max, int expected)
{
    bool refused = false;
    for (size_t k = 0; k < len; k++) {
        int r = parse_once(text, k, max);
        if (expected > 0) {
            if (r != HTTP_PARSE_NEED_MORE)
                fail_msg("prefix %zu of %zu gave %d, expected need-more", k, len, r);
        } else if (refused) {
            if (r != expected)
                fail_msg("prefix %zu: %d after an earlier refusal", k, r);
        } else if (r == expected) {
            refused = true;
        } else if (r != HTTP_PARSE_NEED_MORE) {
            fail_msg("prefix %zu of %zu gave %d, expected %d or need-more", k, len, r,
                     expected);
        }
    }
    assert_int_equal(parse_once(text, len, max), expected);
}

static void assert_header(const struct http_header *h, const char *name, const char *value)
{
    assert_non_null(h);
    assert_int_equal(h->name_length, strlen(name));
    assert_memory_equal(h->name, name, strlen(name));
    assert_int_equal(h->value_length, strlen(value));
    if (h->value_length > 0)
        assert_memory_equal(h->value, value, strlen(value));
}

static const char upgrade_request[] =
    "GET /chat/room1?since=4 HTTP/1.1\r\n"
    "Host: example.com:8080\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://example.com:8080\r\n"
    "\r\n";

static void test_parse_upgrade_request(void **state)
{
    struct parsed p;
    size_t len = strlen(upgrade_request);
    assert_int_equal(parse_n(&p, upgrade_request, len, 8192), (int)len);
    const struct http_request *r = &p.request;
    assert_int_equal(r->method_length, 3);
    assert_memory_equal(r->method, "GET", 3);
    assert_ptr_equal(r->method, p.buf);
    assert_int_equal(r->target_length, strlen("/chat/room1?since=4"));
    assert_memory_equal(r->target, "/chat/room1?since=4", r->target_length);
    assert_int_equal(r->version_minor, 1);
    assert_int_equal(r->header_count, 6);
    assert_header(&r->headers[0], "Host", "example.com:8080");
    assert_header(&r->headers[3], "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_header(&r->headers[5], "Origin", "http://example.com:8080");
    /* pointers are into the caller's buffer, not copies */
    assert_true(r->headers[5].value > p.buf && r->headers[5].value < p.buf + len);
    parsed_free(&p);
}

static void test_parse_returns_head_length_with_trailing_bytes(void **state)
{
    char text[256];
    size_t head = strlen(upgrade_request);
    snprintf(text, sizeof text, "%sbody-bytes\r\n\r\nmore", upgrade_request);
    assert_int_equal(parse_once(text, strlen(text), 8192), (int)head);
}

static void test_parse_http10_and_minimal(void **state)
{
    struct parsed p;
    assert_int_equal(parse_n(&p, "GET / HTTP/1.0\r\n\r\n", 18, 8192), 18);
    assert_int_equal(p.request.version_minor, 0);
    assert_int_equal(p.request.header_count, 0);
    assert_int_equal(p.request.target_length, 1);
    parsed_free(&p);
}

static void test_parse_every_boundary_valid(void **state)
{
    static const char *const requests[] = {
        upgrade_request,
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "POST /api/publish/news HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
        "GET /a HTTP/1.1\r\nX-Empty:\r\nX-Tabs:\t a \t\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
        "M-SEARCH! /%2F?x=%20 HTTP/1.1\r\nX~y|z: v\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        size_t len = strlen(requests[i]);
        assert_every_boundary(requests[i], len, 8192, (int)len);
        /* exactly at the bound is still fine */
        assert_int_equal(parse_once(requests[i], len, len), (int)len);
    }
}

static void test_parse_value_ows_trimmed(void **state)
{
    static const char text[] =
        "GET / HTTP/1.1\r\nA:   x y  \t\r\nB:\r\nC: \t \r\nD:z\r\nE: \xff\x80 \r\n\r\n";
    struct parsed p;
    assert_int_equal(parse_n(&p, text, strlen(text), 8192), (int)strlen(text));
    assert_int_equal(p.request.header_count, 5);
    assert_header(&p.request.headers[0], "A", "x y");
    assert_header(&p.request.headers[1], "B", "");
    assert_header(&p.request.headers[2], "C", "");
    assert_header(&p.request.headers[3], "D", "z");
    assert_header(&p.request.headers[4], "E", "\xff\x80");
    parsed_free(&p);
}

static void test_parse_method_case_kept(void **state)
{
    struct parsed p;
    static const char text[] = "get / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_n(&p, text, strlen(text), 8192), (int)strlen(text));
    assert_false(http_request_method_is(&p.request, "GET"));
    assert_true(http_request_method_is(&p.request, "get"));
    parsed_free(&p);
}

/* A literal and its length, so embedded NULs count. */
#define LIT(s) s, sizeof(s) - 1

struct bad_case {
    const char *text;
    size_t length;
    const char *what;
};

static void test_parse_malformed(void **state)
{
    static const struct bad_case cases[] = {
        { LIT(" / HTTP/1.1\r\n\r\n"), "empty method" },
        { LIT("G@T / HTTP/1.1\r\n\r\n"), "method not a token" },
        { LIT("GE(T / HTTP/1.1\r\n\r\n"), "method with separator" },
        { LIT("GET  / HTTP/1.1\r\n\r\n"), "two spaces" },
        { LIT("GET\t/ HTTP/1.1\r\n\r\n"), "tab separator" },
        { LIT("OPTIONS * HTTP/1.1\r\n\r\n"), "asterisk-form" },
        { LIT("GET http://h/ HTTP/1.1\r\n\r\n"), "absolute-form" },
        { LIT("GET h/ HTTP/1.1\r\n\r\n"), "target without slash" },
        { LIT("GET /\x80 HTTP/1.1\r\n\r\n"), "non-ASCII target" },
        { LIT("GET /a\x01 HTTP/1.1\r\n\r\n"), "CTL in target" },
        { LIT("GET /a\x7f HTTP/1.1\r\n\r\n"), "DEL in target" },
        { LIT("GET /\r\n\r\n"), "no version" },
        { LIT("GET / \r\n\r\n"), "empty version" },
        { LIT("GET / HTTP/1.2\r\n\r\n"), "HTTP/1.2" },
        { LIT("GET / HTTP/2.0\r\n\r\n"), "HTTP/2.0" },
        { LIT("GET / HTTP/1.10\r\n\r\n"), "HTTP/1.10" },
        { LIT("GET / HTTP/1.\r\n\r\n"), "HTTP/1." },
        { LIT("GET / http/1.1\r\n\r\n"), "lowercase version" },
        { LIT("GET / HTTP/1.1 \r\n\r\n"), "space after version" },
        { LIT("GET / HTTP/1.1 x\r\n\r\n"), "extra field" },
        { LIT("GET / HTTP/1.1\n\n"), "bare LF request line" },
        { LIT("GET / HTTP/1.1\r\nHost: a\n\r\n"), "bare LF header" },
        { LIT("GET / HTTP/1.1\r\nHost: a\r\n\n"), "bare LF final" },
        { LIT("GET / HTTP/1.1\rX\r\n\r\n"), "CR without LF" },
        { LIT("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), "CR inside value" },
        { LIT("GET / HTTP/1.1\r\n\r\r\n"), "CR CR LF ending" },
        { LIT("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), "space before colon" },
        { LIT("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), "tab before colon" },
        { LIT("GET / HTTP/1.1\r\nHost a\r\n\r\n"), "no colon" },
        { LIT("GET / HTTP/1.1\r\nHost\r\n\r\n"), "name only" },
        { LIT("GET / HTTP/1.1\r\n: a\r\n\r\n"), "empty name" },
        { LIT("GET / HTTP/1.1\r\nX(y): a\r\n\r\n"), "separator in name" },
        { LIT("GET / HTTP/1.1\r\nX y: a\r\n\r\n"), "space in name" },
        { LIT("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), "obs-fold SP" },
        { LIT("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), "obs-fold HTAB" },
        { LIT("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), "first header folded" },
        { LIT("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), "CTL in value" },
        { LIT("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), "DEL in value" },
        { LIT("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n"), "ESC in value" },
        { LIT("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), "NUL in value" },
        { LIT("GET /\0 HTTP/1.1\r\n\r\n"), "NUL in target" },
        { LIT("\r\nGET / HTTP/1.1\r\n\r\n"), "leading empty line" },
        { LIT("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), "TLS client hello" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].length;
        int r = parse_once(cases[i].text, len, 8192);
        if (r != HTTP_PARSE_ERROR)
            fail_msg("%s: got %d, expected %d", cases[i].what, r, HTTP_PARSE_ERROR);
        assert_every_boundary(cases[i].text, len, 8192, HTTP_PARSE_ERROR);
    }
}

/* Garbage is refused as soon as it is seen, not when a CRLF finally comes. */
static void test_parse_fails_fast(void **state)
{
    assert_int_equal(parse_once("\x16", 1, 8192), HTTP_PARSE_ERROR);
    assert_int_equal(parse_once("GET /x HTTP/9", 13, 8192), HTTP_PARSE_ERROR);
    assert_int_equal(parse_once("GET / HTTP/1.1\r\nBad Name", 24, 8192), HTTP_PARSE_ERROR);
    assert_int_equal(parse_once("GET / HTTP/1.1\r\nX: \x01", 20, 8192), HTTP_PARSE_ERROR);
    assert_int_equal(parse_once("GET / HTTP/1.1\r\n ", 17, 8192), HTTP_PARSE_ERROR);
    assert_int_equal(parse_once("GET / HTTP/1.1\r\nHost: a", 23, 8192), HTTP_PARSE_NEED_MORE);
}

static char *make_head(size_t header_count, size_t *length)
{
    size_t size = 64 + header_count * 32;
    char *text = malloc(size);
    assert_non_null(text);
    size_t used = (size_t)snprintf(text, size, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < header_count; i++)
        used += (size_t)snprintf(text + used, size - used, "X-H%zu: v%zu\r\n", i, i);
    used += (size_t)snprintf(text + used, size - used, "\r\n");
    *length = used;
    return text;
}

static void test_parse_too_large(void **state)
{
    size_t len;
    char *text = make_head(3, &len);
    assert_int_equal(parse_once(text, len, len), (int)len);
    assert_int_equal(parse_once(text, len, len - 1), HTTP_PARSE_TOO_LARGE);
    /* incomplete: need-more below the bound, too large once it is reached */
    assert_int_equal(parse_once(text, len - 2, len - 1), HTTP_PARSE_NEED_MORE);
    assert_int_equal(parse_once(text, len - 1, len - 1), HTTP_PARSE_TOO_LARGE);
    /* more bytes than the bound: only the first max_head_size are looked at */
    assert_int_equal(parse_once(text, len, 20), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(parse_once(text, len, 0), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(parse_once(text, 0, 8192), HTTP_PARSE_NEED_MORE);
    assert_every_boundary(text, len, len - 1, HTTP_PARSE_TOO_LARGE);
    free(text);

    /* a long single header line with no end in sight */
    char *flood = malloc(BIG);
    assert_non_null(flood);
    memcpy(flood, "GET / HTTP/1.1\r\nX: ", 19);
    memset(flood + 19, 'a', BIG - 19);
    assert_int_equal(parse_once(flood, BIG, 8192), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(parse_once(flood, 8191, 8192), HTTP_PARSE_NEED_MORE);
    free(flood);
}

/* A malformation inside the window is reported as such even at the bound. */
static void test_parse_error_wins_within_window(void **state)
{
    static const char text[] = "GET / HTTP/1.1\r\nX : y\r\nZ: aaaaaaaaaaaaa";
    assert_int_equal(parse_once(text, strlen(text), 30), HTTP_PARSE_ERROR);
}

static void test_parse_header_count_bound(void **state)
{
    size_t len;
    char *text = make_head(HTTP_MAX_HEADERS, &len);
    struct parsed p;
    assert_int_equal(parse_n(&p, text, len, BIG), (int)len);
    assert_int_equal(p.request.header_count, HTTP_MAX_HEADERS);
    assert_header(&p.request.headers[63], "X-H63", "v63");
    parsed_free(&p);
    free(text);

    text = make_head(HTTP_MAX_HEADERS + 1, &len);
    assert_int_equal(parse_once(text, len, BIG), HTTP_PARSE_TOO_LARGE);
    assert_every_boundary(text, len, BIG, HTTP_PARSE_TOO_LARGE);
    /* refused as soon as the 65th header begins */
    const char *extra = strstr(text, "X-H64:");
    assert_non_null(extra);
    assert_int_equal(parse_once(text, (size_t)(extra - text) + 1, BIG), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(parse_once(text, (size_t)(extra - text), BIG), HTTP_PARSE_NEED_MORE);
    free(text);
}

static const char lookup_request[] =
    "GET / HTTP/1.1\r\n"
    "Host: h\r\n"
    "connection: keep-alive, Upgrade\r\n"
    "X-List: ,, a ,\tb\t,\r\n"
    "CONNECTION: close\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "Upgrade: websockets\r\n"
    "X-Word: up grade, upgrades\r\n"
    "\r\n";

static void test_header_lookup(void **state)
{
    struct parsed p;
    assert_true(parse_n(&p, lookup_request, strlen(lookup_request), 8192) > 0);
    const struct http_header *h = http_request_header(&p.request, "Connection");
    assert_header(h, "connection", "keep-alive, Upgrade");
    assert_ptr_equal(http_request_header(&p.request, "CONNECTION"), h);
    assert_ptr_equal(http_request_header(&p.request, "sec-websocket-protocol"),
                     &p.request.headers[4]);
    assert_null(http_request_header(&p.request, "Origin"));
    assert_null(http_request_header(&p.request, "Hos"));
    assert_null(http_request_header(&p.request, "Hostx"));
    assert_int_equal(http_request_header_count(&p.request, "connection"), 2);
    assert_int_equal(http_request_header_count(&p.request, "host"), 1);
    assert_int_equal(http_request_header_count(&p.request, "origin"), 0);
    parsed_free(&p);
}

static void test_bearer(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        const char *token;   /* NULL: no bearer credentials */
    } cases[] = {
        { "GET / HTTP/1.1\r\nAuthorization: Bearer abc.def\r\n\r\n", "abc.def" },
        { "GET / HTTP/1.1\r\nAuthorization: bearer xyz\r\n\r\n", "xyz" },
        { "GET / HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n", NULL },
        { "GET / HTTP/1.1\r\nAuthorization: Basic YWI6Y2Q=\r\n\r\n", NULL },
        { "GET / HTTP/1.1\r\nAuthorization: Bearerabc\r\n\r\n", NULL },
        { "GET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parsed p;
        assert_true(parse_n(&p, cases[i].head, strlen(cases[i].head), 8192) > 0);
        const char *token = NULL;
        size_t length = 0;
        bool found = http_request_bearer(&p.request, &token, &length);
        if (cases[i].token == NULL) {
            assert_false(found);
        } else {
            assert_true(found);
            assert_int_equal(length, strlen(cases[i].token));
            assert_memory_equal(token, cases[i].token, length);
        }
        parsed_free(&p);
    }
}

static void test_has_token(void **state)
{
    struct parsed p;
    assert_true(parse_n(&p, lookup_request, strlen(lookup_request), 8192) > 0);
    assert_true(http_request_has_token(&p.request, "Connection", "upgrade"));
    assert_true(http_request_has_token(&p.request, "Connection", "KEEP-ALIVE"));
    assert_true(http_request_has_token(&p.request, "Connection", "close")); /* 2nd header */
    assert_false(http_request_has_token(&p.request, "Connection", "keep"));
    assert_false(http_request_has_token(&p.request, "Connection", "keep-alive, Upgrade"));
    assert_true(http_request_has_token(&p.request, "X-List", "a"));
    assert_true(http_request_has_token(&p.request, "X-List", "b"));
    assert_false(http_request_has_token(&p.request, "X-List", ""));
    assert_false(http_request_has_token(&p.request, "Upgrade", "websocket"));
    assert_false(http_request_has_token(&p.request, "X-Word", "upgrade"));
    assert_false(http_request_has_token(&p.request, "Host", "upgrade"));
    assert_false(http_request_has_token(&p.request, "Origin", "upgrade"));
    parsed_free(&p);
}

static void test_method_is(void **state)
{
    struct parsed p;
    assert_true(parse_n(&p, "GETX / HTTP/1.1\r\n\r\n", 19, 8192) > 0);
    assert_false(http_request_method_is(&p.request, "GET"));
    assert_true(http_request_method_is(&p.request, "GETX"));
    parsed_free(&p);
    assert_true(parse_n(&p, "GET / HTTP/1.1\r\n\r\n", 18, 8192) > 0);
    assert_true(http_request_method_is(&p.request, "GET"));
    assert_false(http_request_method_is(&p.request, "GE"));
    assert_false(http_request_method_is(&p.request, "Get"));
    parsed_free(&p);
}

static void test_target_split(void **state)
{
    size_t path_length = 99;
    const char *query = NULL;
    size_t query_length = 99;
    const char *t = "/chat/a?since=4&x=1";
    http_target_split(t, strlen(t), &path_length, &query, &query_length);
    assert_int_equal(path_length, 7);
    assert_ptr_equal(query, t + 8);
    assert_int_equal(query_length, strlen("since=4&x=1"));

    http_target_split("/plain", 6, &path_length, &query, &query_length);
    assert_int_equal(path_length, 6);
    assert_null(query);
    assert_int_equal(query_length, 0);

    t = "/a?";
    http_target_split(t, 3, &path_length, &query, &query_length);
    assert_int_equal(path_length, 2);
    assert_ptr_equal(query, t + 3);
    assert_int_equal(query_length, 0);

    t = "/?x?y";
    http_target_split(t, 5, &path_length, &query, &query_length);
    assert_int_equal(path_length, 1);
    assert_int_equal(query_length, 3);

    /* only target_length bytes count */
    http_target_split("/ab?c", 3, &path_length, &query, &query_length);
    assert_int_equal(path_length, 3);
    assert_null(query);
}

static void test_percent_decode(void **state)
{
    char out[64];
    assert_int_equal(http_percent_decode("%41%62c", 7, out, sizeof out), 3);
    assert_string_equal(out, "Abc");
    assert_int_equal(http_percent_decode("a%2fb%2F", 8, out, sizeof out), 4);
    assert_string_equal(out, "a/b/");
    assert_int_equal(http_percent_decode("caf%C3%a9", 9, out, sizeof out), 5);
    assert_string_equal(out, "caf\xc3\xa9");
    assert_int_equal(http_percent_decode("a+b", 3, out, sizeof out), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(http_percent_decode("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_percent_decode("%2e%2E", 6, out, sizeof out), 2);
    assert_string_equal(out, "..");

    assert_int_equal(http_percent_decode("%", 1, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a%4", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%zz", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%4g", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%g4", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("% 41", 4, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a%00b", 5, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a\0b", 3, out, sizeof out), -1);
    /* the length bounds the input: "%41" cut after "%4" is malformed */
    assert_int_equal(http_percent_decode("%41", 2, out, sizeof out), -1);

    /* room for the NUL is needed */
    assert_int_equal(http_percent_decode("abc", 3, out, 3), -1);
    assert_int_equal(http_percent_decode("abc", 3, out, 4), 3);
    assert_int_equal(http_percent_decode("%41", 3, out, 2), 1);
    assert_int_equal(http_percent_decode("%41", 3, out, 1), -1);
    assert_int_equal(http_percent_decode("", 0, out, 0), -1);
}

static void test_query_param(void **state)
{
    char out[16];
    const char *q = "a=1&since=41&b=x+y%21&empty=&bare&a=2&b%61r=ok&ab=no";
    size_t n = strlen(q);
    assert_int_equal(http_query_param(q, n, "since", out, sizeof out), 2);
    assert_string_equal(out, "41");
    assert_int_equal(http_query_param(q, n, "a", out, sizeof out), 1);
    assert_string_equal(out, "1"); /* first occurrence wins */
    assert_int_equal(http_query_param(q, n, "b", out, sizeof out), 4);
    assert_string_equal(out, "x y!");
    assert_int_equal(http_query_param(q, n, "empty", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param(q, n, "bare", out, sizeof out), 0);
    assert_int_equal(http_query_param(q, n, "bar", out, sizeof out), 2);
    assert_string_equal(out, "ok");
    assert_int_equal(http_query_param(q, n, "missing", out, sizeof out), -1);
    assert_int_equal(http_query_param(q, n, "s", out, sizeof out), -1);
    assert_int_equal(http_query_param(q, n, "ab=no", out, sizeof out), -1);
    assert_int_equal(http_query_param(q, 3, "since", out, sizeof out), -1);

    assert_int_equal(http_query_param("x=%zz&y=1", 9, "x", out, sizeof out), -2);
    assert_int_equal(http_query_param("x=%zz&y=1", 9, "y", out, sizeof out), 1);
    assert_int_equal(http_query_param("x=%00", 5, "x", out, sizeof out), -2);
    assert_int_equal(http_query_param("x=0123456789abcdef", 18, "x", out, sizeof out), -2);
    assert_int_equal(http_query_param("x=0123456789abcde", 17, "x", out, sizeof out), 15);
    assert_int_equal(http_query_param(NULL, 0, "x", out, sizeof out), -1);
    assert_int_equal(http_query_param("", 0, "x", out, sizeof out), -1);
    assert_int_equal(http_query_param("&&x=5&", 6, "x", out, sizeof out), 1);
    assert_string_equal(out, "5");
}

static void test_status_reason(void **state)
{
    assert_string_equal(http_status_reason(101), "Switching Protocols");
    assert_string_equal(http_status_reason(200), "OK");
    assert_string_equal(http_status_reason(400), "Bad Request");
    assert_string_equal(http_status_reason(403), "Forbidden");
    assert_string_equal(http_status_reason(404), "Not Found");
    assert_string_equal(http_status_reason(405), "Method Not Allowed");
    assert_string_equal(http_status_reason(408), "Request Timeout");
    assert_string_equal(http_status_reason(426), "Upgrade Required");
    assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_reason(500), "Internal Server Error");
    assert_string_equal(http_status_reason(503), "Service Unavailable");
    assert_string_equal(http_status_reason(799), "Unknown");
    assert_string_equal(http_status_reason(-1), "Unknown");
}

static void test_response_head(void **state)
{
    char out[512];
    char expected[512];
    snprintf(expected, sizeof expected,
             "HTTP/1.1 404 Not Found\r\nServer: %s\r\nContent-Type: text/plain\r\n"
             "Content-Length: 10\r\nConnection: close\r\nRetry-After: 1\r\nX-A: b\r\n\r\n",
#ifdef PACKAGE_VERSION
             "wsbroker/" PACKAGE_VERSION
#else
             "wsbroker"
#endif
    );
    int n = http_response_head(out, sizeof out, 404, "text/plain", 10, true,
                               "Retry-After: 1\r\nX-A: b\r\n");
    assert_int_equal(n, (int)strlen(expected));
    assert_string_equal(out, expected);

    n = http_response_head(out, sizeof out, 426, NULL, -1, false, NULL);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(out));
    assert_non_null(strstr(out, "HTTP/1.1 426 Upgrade Required\r\nServer: wsbroker"));
    assert_null(strstr(out, "Content-Type"));
    assert_null(strstr(out, "Content-Length"));
    assert_null(strstr(out, "Connection"));
    assert_memory_equal(out + n - 4, "\r\n\r\n", 4);

    n = http_response_head(out, sizeof out, 204, NULL, 0, false, "");
    assert_true(n > 0);
    assert_non_null(strstr(out, "\r\nContent-Length: 0\r\n\r\n"));

    n = http_response_head(out, sizeof out, 499, NULL, -1, false, NULL);
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 499 Unknown\r\n"));
}

static void test_response_head_refuses(void **state)
{
    char out[512];
    int full = http_response_head(out, sizeof out, 200, "text/html", 1234, true, "X: y\r\n");
    assert_true(full > 0);
    /* every buffer short of length + NUL fails, none overflows */
    for (size_t size = 0; size <= (size_t)full; size++) {
        char *small = malloc(size > 0 ? size : 1);
        assert_non_null(small);
        assert_int_equal(http_response_head(small, size, 200, "text/html", 1234, true,
                                            "X: y\r\n"), -1);
        free(small);
    }
    char *exact = malloc((size_t)full + 1);
    assert_non_null(exact);
    assert_int_equal(http_response_head(exact, (size_t)full + 1, 200, "text/html", 1234, true,
                                        "X: y\r\n"), full);
    free(exact);

    assert_int_equal(http_response_head(out, sizeof out, 200, "text/html\r\nX: y", -1, false,
                                        NULL), -1);
    assert_int_equal(http_response_head(out, sizeof out, 200, NULL, -1, false, "X: y"), -1);
    assert_int_equal(http_response_head(out, sizeof out, 200, NULL, -1, false, "X: y\n"), -1);
    assert_int_equal(http_response_head(out, sizeof out, 99, NULL, -1, false, NULL), -1);
    assert_int_equal(http_response_head(out, sizeof out, 600, NULL, -1, false, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_upgrade_request),
        cmocka_unit_test(test_parse_returns_head_length_with_trailing_bytes),
        cmocka_unit_test(test_parse_http10_and_minimal),
        cmocka_unit_test(test_parse_every_boundary_valid),
        cmocka_unit_test(test_parse_value_ows_trimmed),
        cmocka_unit_test(test_parse_method_case_kept),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_fails_fast),
        cmocka_unit_test(test_parse_too_large),
        cmocka_unit_test(test_parse_error_wins_within_window),
        cmocka_unit_test(test_parse_header_count_bound),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_method_is),
        cmocka_unit_test(test_target_split),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_status_reason),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_response_head_refuses),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
