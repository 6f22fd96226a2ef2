/* fuzz_http — request-head parser, then the opening-handshake checks and
 * the permessage-deflate negotiation on whatever parses.
 *
 * Checked:
 *   - the result is a head length (0 < n <= size) or one of the
 *     HTTP_PARSE_* codes;
 *   - on success the method, target and every header name and value lie
 *     inside the head, the version is 1.0 or 1.1, there are at most
 *     HTTP_MAX_HEADERS headers, and every prefix shorter than the head
 *     parses as "need more" (only what can no longer become valid is an
 *     error);
 *   - "need more" for the whole input is also "need more" for a prefix;
 *   - handshake_check answers one of its documented statuses, and a 101
 *     has a 28-character accept key that matches handshake_accept_key and
 *     a response that fits;
 *   - deflate_negotiate answers a NUL-terminated value and agreed windows
 *     within RFC 7692's ranges;
 *   - http_response_head, given a header value from the request as the
 *     content type, either refuses or writes a head ending in an empty line
 *     that fits the buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deflate.h"
#include "fuzz.h"
#include "handshake.h"
#include "http.h"

#define HEAD_MAX 8192

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_http: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static const char *const allowed_origins[] = {
    "https://app.example.com",
    "https://*.example.org",
    "http://localhost:8080",
    "null",
};

static const char *const subprotocols[] = { "chat.v2", "chat" };

static const struct handshake_policy policy = {
    .allowed_origins = allowed_origins,
    .allowed_origin_count = sizeof allowed_origins / sizeof allowed_origins[0],
    .subprotocols = subprotocols,
    .subprotocol_count = sizeof subprotocols / sizeof subprotocols[0],
};

static const char *const any_origin[] = { "*" };
static const struct handshake_policy open_policy = {
    .allowed_origins = any_origin,
    .allowed_origin_count = 1,
    .subprotocols = subprotocols,
    .subprotocol_count = 1,
};

static bool inside(const char *p, size_t length, const char *start, size_t span)
{
    return p != NULL && p >= start && length <= span && (size_t)(p - start) <= span - length;
}

static void check_handshake(const struct http_request *request,
                            const struct handshake_policy *which)
{
    struct handshake_result result;
    memset(&result, 0x5a, sizeof result);
    int status = handshake_check(request, which, &result);
    CHECK(status == result.status);
    CHECK(status == 101 || status == 400 || status == 403 || status == 426 || status == 500);
    CHECK(result.reason != NULL);
    if (status != 101) {
        CHECK(result.subprotocol == NULL);
        return;
    }
    CHECK(strlen(result.accept) == HANDSHAKE_ACCEPT_SIZE - 1);
    if (result.subprotocol != NULL) {
        bool known = false;
        for (size_t i = 0; i < which->subprotocol_count; i++)
            known = known || result.subprotocol == which->subprotocols[i];
        CHECK(known);
    }

    const struct http_header *key = http_request_header(request, "Sec-WebSocket-Key");
    CHECK(key != NULL);
    char accept[HANDSHAKE_ACCEPT_SIZE];
    CHECK(handshake_accept_key(key->value, key->value_length, accept));
    CHECK(strcmp(accept, result.accept) == 0);

    char response[512];
    int n = handshake_response(response, sizeof response, &result);
    CHECK(n > 0 && (size_t)n < sizeof response);
    CHECK(strlen(response) == (size_t)n);
    CHECK(handshake_response(response, (size_t)n, &result) == -1);   /* no room for NUL */
}

static void check_deflate(const struct http_request *request, int max_window_bits)
{
    struct deflate_options options = {
        .enabled = true,
        .level = 1,
        .min_size = 256,
        .memory_level = 8,
        .max_window_bits = max_window_bits,
    };
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    memset(response, 'x', sizeof response);
    bool accepted = deflate_negotiate(request, &options, &params, response);
    CHECK(memchr(response, '\0', sizeof response) != NULL);
    if (!accepted) {
        CHECK(response[0] == '\0');
        return;
    }
    CHECK(strncmp(response, "permessage-deflate", 18) == 0);
    CHECK(params.server_no_context_takeover);
    CHECK(params.server_max_window_bits >= 9 && params.server_max_window_bits <= max_window_bits);
    CHECK(params.client_max_window_bits >= 8 && params.client_max_window_bits <= 15);
}

static void check_response_head(const struct http_request *request, uint8_t seed)
{
    const struct http_header *type = request->header_count > 0
                                         ? &request->headers[seed % request->header_count]
                                         : NULL;
    char content_type[HEAD_MAX + 1];
    if (type != NULL) {
        memcpy(content_type, type->value, type->value_length);
        content_type[type->value_length] = '\0';
    }
    static const int statuses[] = { 101, 200, 204, 400, 403, 404, 426, 431, 503, 599, 99, 600 };
    int status = statuses[seed % (sizeof statuses / sizeof statuses[0])];
    const char *extra = (seed & 0x10) ? "Sec-WebSocket-Version: 13\r\n" : NULL;
    char out[512];
    size_t sizes[] = { sizeof out, (size_t)seed % sizeof out };
    for (size_t i = 0; i < 2; i++) {
        memset(out, 'x', sizeof out);
        int n = http_response_head(out, sizes[i], status, type != NULL ? content_type : NULL,
                                   (seed & 0x20) ? (long long)seed : -1, (seed & 0x40) != 0,
                                   extra);
        if (status < 100 || status > 599)
            CHECK(n == -1);
        if (n < 0)
            continue;
        CHECK((size_t)n < sizes[i] && out[n] == '\0' && strlen(out) == (size_t)n);
        CHECK(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
        CHECK(strncmp(out, "HTTP/1.1 ", 9) == 0);
    }
}

static void check_target(const struct http_request *request)
{
    size_t path_length;
    const char *query;
    size_t query_length;
    http_target_split(request->target, request->target_length, &path_length, &query,
                      &query_length);
    CHECK(path_length <= request->target_length);
    if (query != NULL)
        CHECK(inside(query, query_length, request->target, request->target_length));

    char decoded[HEAD_MAX + 1];
    int n = http_percent_decode(request->target, path_length, decoded, sizeof decoded);
    CHECK(n < 0 || (size_t)n <= path_length);
    if (n >= 0)
        CHECK(strlen(decoded) == (size_t)n);
    n = http_query_param(query, query_length, "token", decoded, sizeof decoded);
    CHECK(n >= -2 && (n < 0 || (size_t)n <= query_length));
    if (n >= 0)
        CHECK(strlen(decoded) == (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_request request;
    int rc = http_request_parse(buf, size, HEAD_MAX, &request);

    if (rc == HTTP_PARSE_NEED_MORE) {
        CHECK(size < HEAD_MAX);
        if (size > 0) {
            struct http_request shorter;
            CHECK(http_request_parse(buf, size - 1, HEAD_MAX, &shorter) == HTTP_PARSE_NEED_MORE);
        }
        return 0;
    }
    if (rc == HTTP_PARSE_TOO_LARGE) {
        CHECK(size >= HEAD_MAX || request.header_count == HTTP_MAX_HEADERS);
        return 0;
    }
    if (rc == HTTP_PARSE_ERROR)
        return 0;

    CHECK(rc > 0);
    size_t head = (size_t)rc;
    CHECK(head <= size && head <= HEAD_MAX);
    CHECK(head >= 4 && memcmp(buf + head - 4, "\r\n\r\n", 4) == 0);
    CHECK(request.version_minor == 0 || request.version_minor == 1);
    CHECK(request.header_count <= HTTP_MAX_HEADERS);
    CHECK(request.method == buf && request.method_length > 0);
    CHECK(inside(request.method, request.method_length, buf, head));
    CHECK(inside(request.target, request.target_length, buf, head));
    CHECK(request.target_length > 0 && request.target[0] == '/');
    for (size_t i = 0; i < request.header_count; i++) {
        const struct http_header *h = &request.headers[i];
        CHECK(h->name_length > 0);
        CHECK(inside(h->name, h->name_length, buf, head));
        CHECK(inside(h->value, h->value_length, buf, head));
        CHECK(h->value >= h->name + h->name_length);
        if (h->value_length > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_length - 1] != ' ' && h->value[h->value_length - 1] != '\t');
        }
        for (size_t k = 0; k < h->value_length; k++)
            CHECK(h->value[k] != '\r' && h->value[k] != '\n');
    }

    /* The same head alone parses to the same length; any shorter prefix
     * is not yet complete (a few prefixes keep this cheap). */
    struct http_request again;
    CHECK(http_request_parse(buf, head, HEAD_MAX, &again) == rc);
    CHECK(again.header_count == request.header_count);
    size_t prefixes[] = { head - 1, head - 2, head / 2, head > 0 ? data[0] % head : 0 };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        CHECK(http_request_parse(buf, prefixes[i], HEAD_MAX, &again) == HTTP_PARSE_NEED_MORE);

    check_target(&request);
    check_response_head(&request, data[size - 1]);
    check_handshake(&request, &policy);
    check_handshake(&request, &open_policy);
    check_deflate(&request, 15);
    check_deflate(&request, 10);

    const struct http_header *origin = http_request_header(&request, "Origin");
    const struct http_header *host = http_request_header(&request, "Host");
    if (origin != NULL)
        (void)handshake_origin_allowed(origin->value, origin->value_length,
                                       host != NULL ? host->value : NULL,
                                       host != NULL ? host->value_length : 0, &policy);
    return 0;
}
