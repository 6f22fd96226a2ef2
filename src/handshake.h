/* handshake — the server side of the RFC 6455 §4.2 opening handshake: request
 * checks, Origin policy, subprotocol choice, Sec-WebSocket-Accept and the 101
 * response. Pure code, no I/O. */
#ifndef WSBROKER_HANDSHAKE_H
#define WSBROKER_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

#define HANDSHAKE_ACCEPT_SIZE 29 /* 28 base64 characters + NUL */

struct handshake_policy {
    /* Origins allowed besides the request's own host. Entries:
     * "*" (any origin), "null", "scheme://host[:port]" matched exactly after
     * normalisation (case-insensitive host, default port elided), or
     * a wildcard "scheme://" + "*.domain[:port]" (e.g. https, example.com)
     * matching one or more leading labels before ".domain". */
    const char *const *allowed_origins;
    size_t allowed_origin_count;
    /* Subprotocols the server speaks, in order of preference. */
    const char *const *subprotocols;
    size_t subprotocol_count;
    /* The scheme the client used to reach us, "http" or "https" (a TLS
     * listener, or X-Forwarded-Proto from a trusted proxy). A Host without a
     * port stands for this scheme's default port. NULL: unknown, the
     * origin's scheme is assumed. */
    const char *request_scheme;
};

struct handshake_result {
    int status;                 /* 101 when the upgrade may proceed, else the
                                   HTTP status to answer with */
    const char *reason;         /* static text for the log and response body */
    char accept[HANDSHAKE_ACCEPT_SIZE];  /* Sec-WebSocket-Accept (status 101) */
    const char *subprotocol;    /* chosen entry of policy->subprotocols, or NULL */
};

/* Checks an upgrade request, in this order, answering the first failure:
 * method not GET → 400; HTTP/1.0 → 400; Host missing or repeated → 400;
 * Upgrade lacks token "websocket" → 400; Connection lacks token "upgrade"
 * → 400; Sec-WebSocket-Version missing or not exactly "13" → 426 (respond
 * with "Sec-WebSocket-Version: 13"); Sec-WebSocket-Key missing, repeated, or
 * not the base64 of 16 bytes → 400; Origin present and not allowed → 403.
 * Then picks the subprotocol. Returns result->status. */
int handshake_check(const struct http_request *request,
                    const struct handshake_policy *policy,
                    struct handshake_result *result);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)). false on failure. */
bool handshake_accept_key(const char *key, size_t key_length,
                          char out[HANDSHAKE_ACCEPT_SIZE]);

/* True when origin may open a WebSocket on a request that named host (the
 * Host header). Same host is always allowed: the origin's host and port equal
 * Host's, host compared case-insensitively, a missing port being the
 * default (http 80, https 443) of the origin's scheme, and for Host of
 * policy->request_scheme when set. "null" and
 * non-http(s) origins are foreign unless listed. No prefix matching. */
bool handshake_origin_allowed(const char *origin, size_t origin_length,
                              const char *host, size_t host_length,
                              const struct handshake_policy *policy);

/* Writes the 101 Switching Protocols response for a successful check.
 * Returns its length, or -1 when it does not fit. */
int handshake_response(char *out, size_t out_size, const struct handshake_result *result);

#endif
