/* http — strict, size-bounded HTTP/1.x request-head parser and response-head
 * writer. See http.h for the contract. */
#include "http.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef PACKAGE_VERSION
#define HTTP_SERVER_NAME "wsbroker/" PACKAGE_VERSION
#else
#define HTTP_SERVER_NAME "wsbroker"
#endif

/* Result of checking one line: it may be fine so far, wrong, or (for the
 * header section) one header too many. */
enum http_line_result {
    HTTP_LINE_OK = 0,
    HTTP_LINE_ERROR = HTTP_PARSE_ERROR,
    HTTP_LINE_TOO_MANY = HTTP_PARSE_TOO_LARGE,
};

static bool http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool http_is_vchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* field-content: visible ASCII, SP, HTAB and obs-text; never another CTL. */
static bool http_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool http_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char http_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

bool http_equal_nocase(const char *a, size_t a_length, const char *b, size_t b_length)
{
    if (a_length != b_length)
        return false;
    for (size_t i = 0; i < a_length; i++) {
        if (http_lower((unsigned char)a[i]) != http_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

/* The line is checked as far as it goes: when complete is false it is a
 * prefix of a line, and only what can no longer become valid is an error.
 * This rejects garbage (a TLS hello on a plain port) before the head ends. */
static enum http_line_result http_request_line(const char *line, size_t n, bool complete,
                                               struct http_request *request)
{
    static const char version[] = "HTTP/1.";
    const enum http_line_result short_line = complete ? HTTP_LINE_ERROR : HTTP_LINE_OK;
    size_t i = 0;

    while (i < n && http_is_tchar((unsigned char)line[i]))
        i++;
    if (i == n)
        return short_line;
    if (i == 0 || line[i] != ' ')
        return HTTP_LINE_ERROR;
    size_t method_length = i++;

    size_t target_start = i;
    if (i == n)
        return short_line;
    if (line[i] != '/')
        return HTTP_LINE_ERROR;
    while (i < n && http_is_vchar((unsigned char)line[i]))
        i++;
    if (i == n)
        return short_line;
    if (line[i] != ' ')
        return HTTP_LINE_ERROR;
    size_t target_length = i - target_start;
    i++;

    const char *v = line + i;
    size_t v_length = n - i;
    if (v_length > sizeof version)
        return HTTP_LINE_ERROR;
    size_t prefix = v_length < sizeof version - 1 ? v_length : sizeof version - 1;
    if (memcmp(v, version, prefix) != 0)
        return HTTP_LINE_ERROR;
    if (v_length == sizeof version && v[7] != '0' && v[7] != '1')
        return HTTP_LINE_ERROR;
    if (v_length < sizeof version)
        return short_line;

    request->method = line;
    request->method_length = method_length;
    request->target = line + target_start;
    request->target_length = target_length;
    request->version_minor = v[7] - '0';
    return HTTP_LINE_OK;
}

static void http_store_header(struct http_request *request, const char *line, size_t name_length,
                              size_t n)
{
    size_t start = name_length + 1;
    size_t end = n;
    while (start < end && http_is_ows(line[start]))
        start++;
    while (end > start && http_is_ows(line[end - 1]))
        end--;

    struct http_header *header = &request->headers[request->header_count++];
    header->name = line;
    header->name_length = name_length;
    header->value = line + start;
    header->value_length = end - start;
}

/* One non-empty header line (or a prefix of one, when complete is false). */
static enum http_line_result http_header_line(const char *line, size_t n, bool complete,
                                              struct http_request *request)
{
    const enum http_line_result short_line = complete ? HTTP_LINE_ERROR : HTTP_LINE_OK;

    if (request->header_count >= HTTP_MAX_HEADERS)
        return HTTP_LINE_TOO_MANY;
    /* A leading SP/HTAB is obsolete line folding (RFC 9112 §5.2): refused. */
    size_t i = 0;
    while (i < n && http_is_tchar((unsigned char)line[i]))
        i++;
    if (i == n)
        return short_line;
    if (i == 0 || line[i] != ':')
        return HTTP_LINE_ERROR;
    for (size_t k = i + 1; k < n; k++) {
        if (!http_is_field_char((unsigned char)line[k]))
            return HTTP_LINE_ERROR;
    }
    if (complete)
        http_store_header(request, line, i, n);
    return HTTP_LINE_OK;
}

/* Finds the end of the line starting at buf[pos]: *line_length excludes the
 * CRLF. Returns 1 for a complete line, 0 when the window ends first, -1 for a
 * bare LF or a CR not followed by LF. */
static int http_line_end(const char *buf, size_t window, size_t pos, size_t *line_length)
{
    size_t i = pos;
    while (i < window && buf[i] != '\r' && buf[i] != '\n')
        i++;
    *line_length = i - pos;
    if (i == window)
        return 0;
    if (buf[i] == '\n')
        return -1;
    if (i + 1 == window)
        return 0;
    return buf[i + 1] == '\n' ? 1 : -1;
}

int http_request_parse(const char *buf, size_t len, size_t max_head_size,
                       struct http_request *request)
{
    size_t limit = max_head_size < (size_t)INT_MAX ? max_head_size : (size_t)INT_MAX;
    size_t window = len < limit ? len : limit;
    size_t pos = 0;

    request->method = NULL;
    request->method_length = 0;
    request->target = NULL;
    request->target_length = 0;
    request->version_minor = 0;
    request->header_count = 0;

    for (;;) {
        size_t n;
        int end = http_line_end(buf, window, pos, &n);
        if (end < 0)
            return HTTP_PARSE_ERROR;
        bool complete = end == 1;
        const char *line = buf + pos;
        enum http_line_result checked;

        if (pos == 0)
            checked = http_request_line(line, n, complete, request);
        else if (n == 0)
            checked = HTTP_LINE_OK; /* the empty line, or nothing yet */
        else
            checked = http_header_line(line, n, complete, request);
        if (checked != HTTP_LINE_OK)
            return (int)checked;
        if (!complete)
            break;
        pos += n + 2;
        if (n == 0)
            return (int)pos; /* the request line is never empty */
    }
    return len >= limit ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_NEED_MORE;
}

const struct http_header *http_request_header(const struct http_request *request,
                                              const char *name)
{
    size_t name_length = strlen(name);
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (http_equal_nocase(header->name, header->name_length, name, name_length))
            return header;
    }
    return NULL;
}

size_t http_request_header_count(const struct http_request *request, const char *name)
{
    size_t name_length = strlen(name);
    size_t count = 0;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (http_equal_nocase(header->name, header->name_length, name, name_length))
            count++;
    }
    return count;
}

static bool http_list_has(const char *list, size_t length, const char *token, size_t token_length)
{
    size_t i = 0;
    while (i <= length) {
        size_t start = i;
        while (i < length && list[i] != ',')
            i++;
        size_t end = i;
        while (start < end && http_is_ows(list[start]))
            start++;
        while (end > start && http_is_ows(list[end - 1]))
            end--;
        if (http_equal_nocase(list + start, end - start, token, token_length))
            return true;
        i++;
    }
    return false;
}

bool http_request_has_token(const struct http_request *request, const char *name,
                            const char *token)
{
    size_t name_length = strlen(name);
    size_t token_length = strlen(token);
    /* An empty token would match an empty list element: never wanted. */
    if (token_length == 0)
        return false;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (http_equal_nocase(header->name, header->name_length, name, name_length) &&
            http_list_has(header->value, header->value_length, token, token_length))
            return true;
    }
    return false;
}

bool http_request_bearer(const struct http_request *request, const char **token, size_t *length)
{
    static const char scheme[] = "Bearer ";
    const size_t scheme_length = sizeof(scheme) - 1;
    const struct http_header *header = http_request_header(request, "Authorization");
    if (header == NULL || header->value_length <= scheme_length ||
        !http_equal_nocase(header->value, scheme_length, scheme, scheme_length))
        return false;
    *token = header->value + scheme_length;
    *length = header->value_length - scheme_length;
    return true;
}

bool http_request_method_is(const struct http_request *request, const char *method)
{
    size_t length = strlen(method);
    return request->method != NULL && request->method_length == length &&
           memcmp(request->method, method, length) == 0;
}

void http_target_split(const char *target, size_t target_length, size_t *path_length,
                       const char **query, size_t *query_length)
{
    const char *mark = target_length > 0 ? memchr(target, '?', target_length) : NULL;
    if (mark == NULL) {
        *path_length = target_length;
        *query = NULL;
        *query_length = 0;
        return;
    }
    *path_length = (size_t)(mark - target);
    *query = mark + 1;
    *query_length = target_length - *path_length - 1;
}

static int http_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = http_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes the byte at in[*i], advancing *i. Returns the byte (1..255) or -1
 * for a malformed escape or a NUL, raw or escaped (it would cut C strings). */
static int http_decode_byte(const char *in, size_t len, size_t *i, bool plus_is_space)
{
    unsigned char c = (unsigned char)in[*i];
    if (c == '%') {
        if (len - *i < 3)
            return -1;
        int high = http_hex((unsigned char)in[*i + 1]);
        int low = http_hex((unsigned char)in[*i + 2]);
        if (high < 0 || low < 0)
            return -1;
        *i += 3;
        c = (unsigned char)(high * 16 + low);
    } else {
        *i += 1;
        if (plus_is_space && c == '+')
            c = ' ';
    }
    return c == '\0' ? -1 : c;
}

static int http_decode(const char *in, size_t len, char *out, size_t out_size, bool plus_is_space)
{
    size_t used = 0;
    size_t i = 0;
    if (out_size == 0 || len >= (size_t)INT_MAX)
        return -1;
    while (i < len) {
        int c = http_decode_byte(in, len, &i, plus_is_space);
        if (c < 0 || used + 1 >= out_size)
            return -1;
        out[used++] = (char)c;
    }
    out[used] = '\0';
    return (int)used;
}

int http_percent_decode(const char *in, size_t len, char *out, size_t out_size)
{
    return http_decode(in, len, out, out_size, false);
}

/* True when the encoded key in[0..len) decodes to exactly name. */
static bool http_key_is(const char *in, size_t len, const char *name)
{
    size_t i = 0;
    size_t k = 0;
    while (i < len) {
        int c = http_decode_byte(in, len, &i, true);
        if (c < 0 || name[k] == '\0' || (unsigned char)name[k] != c)
            return false;
        k++;
    }
    return name[k] == '\0';
}

int http_query_param(const char *query, size_t query_length, const char *name, char *out,
                     size_t out_size)
{
    size_t i = 0;
    if (query == NULL)
        return -1;
    while (i < query_length) {
        const char *pair = query + i;
        const char *amp = memchr(pair, '&', query_length - i);
        size_t pair_length = amp != NULL ? (size_t)(amp - pair) : query_length - i;
        const char *eq = memchr(pair, '=', pair_length);
        size_t key_length = eq != NULL ? (size_t)(eq - pair) : pair_length;

        if (http_key_is(pair, key_length, name)) {
            const char *value = eq != NULL ? eq + 1 : pair + pair_length;
            size_t value_length = pair_length - (size_t)(value - pair);
            int decoded = http_decode(value, value_length, out, out_size, true);
            return decoded < 0 ? -2 : decoded;
        }
        i += pair_length + 1;
    }
    return -1;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

struct http_writer {
    char *out;
    size_t size;
    size_t used;
    bool failed;
};

__attribute__((format(printf, 2, 3)))
static void http_writer_add(struct http_writer *writer, const char *format, ...)
{
    if (writer->failed)
        return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(writer->out + writer->used, writer->size - writer->used, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= writer->size - writer->used) {
        writer->failed = true;
        return;
    }
    writer->used += (size_t)n;
}

/* A value carrying CR or LF would let it forge headers or end the head. */
static bool http_safe_value(const char *value)
{
    return strpbrk(value, "\r\n") == NULL;
}

/* extra_headers is spliced in verbatim, so it must be whole lines: anything
 * not ending in CRLF would run into the empty line and corrupt the framing. */
static bool http_whole_lines(const char *text)
{
    size_t length = strlen(text);
    return length == 0 || (length >= 2 && text[length - 2] == '\r' && text[length - 1] == '\n');
}

int http_response_head(char *out, size_t out_size, int status, const char *content_type,
                       long long content_length, bool close, const char *extra_headers)
{
    /* Capped so the length always fits the int result. */
    size_t size = out_size < (size_t)INT_MAX ? out_size : (size_t)INT_MAX;
    struct http_writer writer = { out, size, 0, false };

    if (out == NULL || size == 0 || status < 100 || status > 599)
        return -1;
    if (content_type != NULL && !http_safe_value(content_type))
        return -1;
    if (extra_headers != NULL && !http_whole_lines(extra_headers))
        return -1;

    http_writer_add(&writer, "HTTP/1.1 %d %s\r\nServer: %s\r\n", status,
                    http_status_reason(status), HTTP_SERVER_NAME);
    if (content_type != NULL)
        http_writer_add(&writer, "Content-Type: %s\r\n", content_type);
    if (content_length >= 0)
        http_writer_add(&writer, "Content-Length: %lld\r\n", content_length);
    if (close)
        http_writer_add(&writer, "Connection: close\r\n");
    if (extra_headers != NULL)
        http_writer_add(&writer, "%s", extra_headers);
    http_writer_add(&writer, "\r\n");
    return writer.failed ? -1 : (int)writer.used;
}
