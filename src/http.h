/* http — strict, size-bounded HTTP/1.x request-head parser and response-head
 * writer. Pure code, no I/O: the parser points into the caller's buffer. */
#ifndef WSBROKER_HTTP_H
#define WSBROKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64

#define HTTP_PARSE_ERROR (-1)     /* malformed: answer 400 */
#define HTTP_PARSE_NEED_MORE (-2) /* head not complete yet */
#define HTTP_PARSE_TOO_LARGE (-3) /* head over the size bound or more than
                                     HTTP_MAX_HEADERS headers: answer 431 */

struct http_header {
    const char *name;
    size_t name_length;
    const char *value;       /* leading and trailing whitespace removed */
    size_t value_length;
};

struct http_request {
    const char *method;
    size_t method_length;
    const char *target;      /* request-target as sent (origin-form) */
    size_t target_length;
    int version_minor;       /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
};

/* Parses the request head at buf[0..len). Returns the head length including
 * the terminating empty line (> 0), or one of the HTTP_PARSE_* codes.
 * max_head_size bounds the head: once len reaches it without a complete head
 * the result is HTTP_PARSE_TOO_LARGE.
 *
 * Strict: lines end in CRLF; request line is `METHOD SP target SP HTTP/1.x`
 * with a token method and a target starting with '/' made of visible ASCII;
 * header names are tokens immediately followed by ':'; values hold no control
 * characters but HTAB; obsolete line folding is an error. */
int http_request_parse(const char *buf, size_t len, size_t max_head_size,
                       struct http_request *request);

/* True when a[0..a_length) and b[0..b_length) are equal ignoring ASCII case. */
bool http_equal_nocase(const char *a, size_t a_length, const char *b, size_t b_length);

/* First header named name (case-insensitive), or NULL. */
const struct http_header *http_request_header(const struct http_request *request,
                                              const char *name);

/* How many headers are named name (case-insensitive). */
size_t http_request_header_count(const struct http_request *request, const char *name);

/* True when any header named name holds token in its comma-separated list
 * (case-insensitive, optional whitespace around elements). */
bool http_request_has_token(const struct http_request *request, const char *name,
                            const char *token);

/* The credentials of an "Authorization: Bearer <token>" header (scheme
 * matched case-insensitively): true with *token pointing into the request
 * and *length > 0, false when there is none. */
bool http_request_bearer(const struct http_request *request, const char **token, size_t *length);

/* True when the method is exactly method (methods are case-sensitive). */
bool http_request_method_is(const struct http_request *request, const char *method);

/* Splits the target at '?': *path_length is the length of the path part;
 * *query and *query_length the part after '?' (NULL and 0 when absent). */
void http_target_split(const char *target, size_t target_length, size_t *path_length,
                       const char **query, size_t *query_length);

/* Percent-decodes in[0..len) into out (NUL-terminated). Returns the decoded
 * length, or -1 for a malformed escape, a decoded NUL byte, or out too small. */
int http_percent_decode(const char *in, size_t len, char *out, size_t out_size);

/* Finds parameter name in a query string (a=1&b=2), percent-decodes its
 * value ('+' as space) into out. Returns the value length, -1 when absent,
 * -2 when malformed or too long for out. */
int http_query_param(const char *query, size_t query_length, const char *name,
                     char *out, size_t out_size);

/* Standard reason phrase for a status code ("Unknown" for others). */
const char *http_status_reason(int status);

/* Writes a response head into out: status line, Server, Content-Type (when
 * not NULL), Content-Length (when content_length >= 0), Connection: close when
 * close is true, then extra_headers verbatim (NULL or whole "Name: value\r\n"
 * lines), then the empty line. Returns its length, or -1 when it does not fit. */
int http_response_head(char *out, size_t out_size, int status, const char *content_type,
                       long long content_length, bool close, const char *extra_headers);

#endif
