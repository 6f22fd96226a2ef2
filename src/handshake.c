/* handshake — the server side of the RFC 6455 §4.2 opening handshake. See
 * handshake.h for the contract. */
#include "handshake.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#define HANDSHAKE_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HANDSHAKE_KEY_LENGTH 24     /* base64 of 16 bytes, "==" padded */
#define HANDSHAKE_KEY_MAX 128       /* longer input is no key of ours */
#define HANDSHAKE_SCHEME_MAX 32
#define HANDSHAKE_PORT_NONE 0       /* no port and no default for the scheme */

/* An origin or an allow-list entry split into its parts. host points into
 * the parsed text; IPv6 hosts keep their brackets. port is the effective
 * port: explicit, else the scheme's default, else HANDSHAKE_PORT_NONE. */
struct handshake_origin {
    char scheme[HANDSHAKE_SCHEME_MAX];
    const char *host;
    size_t host_length;
    unsigned port;
    bool wildcard;              /* entry only: host is the part after "*." */
};

static unsigned char handshake_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool handshake_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool handshake_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool handshake_is_base64(unsigned char c)
{
    return handshake_is_alpha(c) || handshake_is_digit(c) || c == '+' || c == '/';
}

static unsigned handshake_default_port(const char *scheme)
{
    if (strcmp(scheme, "http") == 0)
        return 80;
    if (strcmp(scheme, "https") == 0)
        return 443;
    return HANDSHAKE_PORT_NONE;
}

/* Registered names: dot-separated non-empty labels of letters, digits, '-'
 * and '_'. Anything else (userinfo, paths, percent signs) is refused so that
 * two spellings of one host cannot compare differently. */
static bool handshake_reg_name_valid(const char *host, size_t length)
{
    size_t label = 0;
    if (length == 0)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (handshake_is_alpha(c) || handshake_is_digit(c) || c == '-' || c == '_') {
            label++;
        } else {
            return false;
        }
    }
    return true; /* a trailing dot (an absolute name) is kept as written */
}

static bool handshake_ipv6_valid(const char *host, size_t length)
{
    if (length < 3 || host[0] != '[' || host[length - 1] != ']')
        return false;
    for (size_t i = 1; i + 1 < length; i++) {
        unsigned char c = handshake_lower((unsigned char)host[i]);
        bool hex = handshake_is_digit(c) || (c >= 'a' && c <= 'f');
        if (!hex && c != ':' && c != '.')
            return false;
    }
    return true;
}

/* Splits "host[:port]" (the authority of an origin, or a Host header).
 * *port is 0 when no port was written. */
static bool handshake_parse_authority(const char *text, size_t length, const char **host,
                                      size_t *host_length, unsigned *port)
{
    size_t host_end;
    if (length > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', length);
        if (close == NULL)
            return false;
        host_end = (size_t)(close - text) + 1;
        if (!handshake_ipv6_valid(text, host_end))
            return false;
    } else {
        const char *colon = memchr(text, ':', length);
        host_end = colon != NULL ? (size_t)(colon - text) : length;
        if (!handshake_reg_name_valid(text, host_end))
            return false;
    }
    *host = text;
    *host_length = host_end;
    *port = 0;
    if (host_end == length)
        return true;
    /* Canonical ports only (no leading zero): one spelling per origin. */
    if (text[host_end] != ':' || host_end + 1 == length || length - host_end - 1 > 5 ||
        text[host_end + 1] == '0')
        return false;
    unsigned value = 0;
    for (size_t i = host_end + 1; i < length; i++) {
        if (!handshake_is_digit((unsigned char)text[i]))
            return false;
        value = value * 10 + (unsigned)(text[i] - '0');
    }
    if (value > 65535)
        return false;
    *port = value;
    return true;
}

/* Parses "scheme://host[:port]" with nothing after it. A leading "*." in the
 * host is accepted only when allow_wildcard (allow-list entries). */
static bool handshake_parse_origin(const char *text, size_t length, bool allow_wildcard,
                                   struct handshake_origin *origin)
{
    size_t i = 0;
    while (i < length && i + 1 < HANDSHAKE_SCHEME_MAX &&
           (handshake_is_alpha((unsigned char)text[i]) ||
            (i > 0 && (handshake_is_digit((unsigned char)text[i]) || text[i] == '+' ||
                       text[i] == '-' || text[i] == '.')))) {
        origin->scheme[i] = (char)handshake_lower((unsigned char)text[i]);
        i++;
    }
    origin->scheme[i] = '\0';
    if (i == 0 || length - i < 3 || memcmp(text + i, "://", 3) != 0)
        return false;
    i += 3;

    origin->wildcard = false;
    if (allow_wildcard && length - i >= 2 && text[i] == '*' && text[i + 1] == '.') {
        origin->wildcard = true;
        i += 2;
    }
    unsigned port;
    if (!handshake_parse_authority(text + i, length - i, &origin->host, &origin->host_length,
                                   &port))
        return false;
    unsigned default_port = handshake_default_port(origin->scheme);
    origin->port = port != 0 ? port : default_port;
    return true;
}

/* Same host: the origin's host and effective port equal the Host header's,
 * a Host without a port taking the origin scheme's default. */
static bool handshake_same_host(const struct handshake_origin *origin, const char *host,
                                size_t host_length, const char *request_scheme)
{
    const char *name;
    size_t name_length;
    unsigned port;

    /* Only http and https pages share a host with us; other schemes
     * (extensions, ws:) are foreign unless listed. */
    if (handshake_default_port(origin->scheme) == HANDSHAKE_PORT_NONE)
        return false;
    if (!handshake_parse_authority(host, host_length, &name, &name_length, &port))
        return false;
    if (port == 0)
        port = handshake_default_port(request_scheme != NULL ? request_scheme : origin->scheme);
    return port == origin->port &&
           http_equal_nocase(origin->host, origin->host_length, name, name_length);
}

/* "*.example.com" matches one or more labels before ".example.com". Labels
 * were validated as non-empty, so a non-empty rest followed by '.' is enough. */
static bool handshake_wildcard_host(const struct handshake_origin *entry,
                                    const struct handshake_origin *origin)
{
    if (origin->host[0] == '[' || origin->host_length < entry->host_length + 2)
        return false;
    size_t rest = origin->host_length - entry->host_length;
    return origin->host[rest - 1] == '.' &&
           http_equal_nocase(origin->host + rest, entry->host_length, entry->host,
                                  entry->host_length);
}

static bool handshake_entry_matches(const char *entry, const struct handshake_origin *origin)
{
    struct handshake_origin allowed;
    if (!handshake_parse_origin(entry, strlen(entry), true, &allowed))
        return false;  /* a malformed entry allows nothing */
    if (strcmp(allowed.scheme, origin->scheme) != 0 || allowed.port != origin->port)
        return false;
    if (allowed.wildcard)
        return handshake_wildcard_host(&allowed, origin);
    return http_equal_nocase(allowed.host, allowed.host_length, origin->host,
                                  origin->host_length);
}

static bool handshake_listed(const struct handshake_policy *policy, const char *entry)
{
    for (size_t i = 0; i < policy->allowed_origin_count; i++) {
        if (strcmp(policy->allowed_origins[i], entry) == 0)
            return true;
    }
    return false;
}

bool handshake_origin_allowed(const char *origin, size_t origin_length, const char *host,
                              size_t host_length, const struct handshake_policy *policy)
{
    if (handshake_listed(policy, "*"))
        return true;
    /* Sandboxed frames and file: pages send "null": they share no host. */
    if (origin_length == 4 && memcmp(origin, "null", 4) == 0)
        return handshake_listed(policy, "null");

    struct handshake_origin parsed;
    if (!handshake_parse_origin(origin, origin_length, false, &parsed))
        return false;
    if (host != NULL && handshake_same_host(&parsed, host, host_length, policy->request_scheme))
        return true;
    for (size_t i = 0; i < policy->allowed_origin_count; i++) {
        if (handshake_entry_matches(policy->allowed_origins[i], &parsed))
            return true;
    }
    return false;
}

static bool handshake_key_valid(const char *key, size_t length)
{
    if (length != HANDSHAKE_KEY_LENGTH)
        return false;
    for (size_t i = 0; i < HANDSHAKE_KEY_LENGTH - 2; i++) {
        if (!handshake_is_base64((unsigned char)key[i]))
            return false;
    }
    return key[22] == '=' && key[23] == '=';
}

bool handshake_accept_key(const char *key, size_t key_length, char out[HANDSHAKE_ACCEPT_SIZE])
{
    unsigned char input[HANDSHAKE_KEY_MAX + sizeof HANDSHAKE_GUID];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;

    out[0] = '\0';
    if (key_length > HANDSHAKE_KEY_MAX || (key == NULL && key_length > 0))
        return false;
    if (key_length > 0)
        memcpy(input, key, key_length);
    memcpy(input + key_length, HANDSHAKE_GUID, sizeof HANDSHAKE_GUID - 1);
    if (EVP_Digest(input, key_length + sizeof HANDSHAKE_GUID - 1, digest, &digest_length,
                   EVP_sha1(), NULL) != 1 || digest_length != 20)
        return false;
    if (EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_length) !=
        HANDSHAKE_ACCEPT_SIZE - 1)
        return false;
    return true;
}

/* Case-sensitive membership in a comma list: subprotocol names are compared
 * exactly (RFC 6455 §11.3.4 registers them case-sensitively). */
static bool handshake_list_has_exact(const char *list, size_t length, const char *name)
{
    size_t name_length = strlen(name);
    size_t i = 0;
    while (i <= length) {
        size_t start = i;
        while (i < length && list[i] != ',')
            i++;
        size_t end = i;
        while (start < end && (list[start] == ' ' || list[start] == '\t'))
            start++;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end - start == name_length && name_length > 0 &&
            memcmp(list + start, name, name_length) == 0)
            return true;
        i++;
    }
    return false;
}

static bool handshake_client_offers(const struct http_request *request, const char *name)
{
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        if (http_equal_nocase(header->name, header->name_length, "Sec-WebSocket-Protocol",
                                   strlen("Sec-WebSocket-Protocol")) &&
            handshake_list_has_exact(header->value, header->value_length, name))
            return true;
    }
    return false;
}

/* The server's preference wins, not the client's order. */
static const char *handshake_pick_subprotocol(const struct http_request *request,
                                              const struct handshake_policy *policy)
{
    for (size_t i = 0; i < policy->subprotocol_count; i++) {
        if (handshake_client_offers(request, policy->subprotocols[i]))
            return policy->subprotocols[i];
    }
    return NULL;
}

static int handshake_answer(struct handshake_result *result, int status, const char *reason)
{
    result->status = status;
    result->reason = reason;
    return status;
}

static bool handshake_version_ok(const struct http_request *request)
{
    const struct http_header *version = http_request_header(request, "Sec-WebSocket-Version");
    return version != NULL && http_request_header_count(request, "Sec-WebSocket-Version") == 1 &&
           version->value_length == 2 && memcmp(version->value, "13", 2) == 0;
}

static bool handshake_key_ok(const struct http_request *request)
{
    const struct http_header *key = http_request_header(request, "Sec-WebSocket-Key");
    return key != NULL && http_request_header_count(request, "Sec-WebSocket-Key") == 1 &&
           handshake_key_valid(key->value, key->value_length);
}

/* An absent Origin is a non-browser client (Tornado's rule); a repeated one
 * is ambiguous and refused. */
static bool handshake_origin_ok(const struct http_request *request,
                                const struct handshake_policy *policy)
{
    size_t count = http_request_header_count(request, "Origin");
    if (count == 0)
        return true;
    if (count > 1)
        return false;
    const struct http_header *origin = http_request_header(request, "Origin");
    const struct http_header *host = http_request_header(request, "Host");
    return handshake_origin_allowed(origin->value, origin->value_length, host->value,
                                    host->value_length, policy);
}

int handshake_check(const struct http_request *request, const struct handshake_policy *policy,
                    struct handshake_result *result)
{
    result->accept[0] = '\0';
    result->subprotocol = NULL;

    if (!http_request_method_is(request, "GET"))
        return handshake_answer(result, 400, "WebSocket upgrade needs GET");
    if (request->version_minor < 1)
        return handshake_answer(result, 400, "WebSocket upgrade needs HTTP/1.1");
    if (http_request_header_count(request, "Host") != 1)
        return handshake_answer(result, 400, "Host header missing or repeated");
    if (!http_request_has_token(request, "Upgrade", "websocket"))
        return handshake_answer(result, 400, "Upgrade header must be websocket");
    if (!http_request_has_token(request, "Connection", "upgrade"))
        return handshake_answer(result, 400, "Connection header must hold upgrade");
    if (!handshake_version_ok(request))
        return handshake_answer(result, 426, "Sec-WebSocket-Version must be 13");
    if (!handshake_key_ok(request))
        return handshake_answer(result, 400, "Sec-WebSocket-Key missing or invalid");
    if (!handshake_origin_ok(request, policy))
        return handshake_answer(result, 403, "origin not allowed");

    const struct http_header *key = http_request_header(request, "Sec-WebSocket-Key");
    if (!handshake_accept_key(key->value, key->value_length, result->accept))
        return handshake_answer(result, 500, "cannot compute Sec-WebSocket-Accept");
    result->subprotocol = handshake_pick_subprotocol(request, policy);
    return handshake_answer(result, 101, "Switching Protocols");
}

int handshake_response(char *out, size_t out_size, const struct handshake_result *result)
{
    if (result->status != 101 ||
        strnlen(result->accept, HANDSHAKE_ACCEPT_SIZE) != HANDSHAKE_ACCEPT_SIZE - 1)
        return -1;
    if (result->subprotocol != NULL && strpbrk(result->subprotocol, "\r\n") != NULL)
        return -1;

    int n;
    if (result->subprotocol != NULL)
        n = snprintf(out, out_size,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n\r\n",
                     result->accept, result->subprotocol);
    else
        n = snprintf(out, out_size,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     result->accept);
    if (n < 0 || (size_t)n >= out_size)
        return -1;
    return n;
}
