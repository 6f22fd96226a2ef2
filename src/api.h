/* api — the broker's HTTP endpoints besides static files and upgrades:
 * /healthz, /metrics and the /api/ tree (publish, channels, connections).
 * The connection reads the request (and its body) and writes the response;
 * this module decides it. */
#ifndef WSBROKER_API_H
#define WSBROKER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "http.h"

struct worker;
struct config;
struct cluster_waiter;

struct api_request {
    const struct http_request *http;
    const char *path;              /* raw path (not decoded), no query */
    size_t path_length;
    const char *query;             /* NULL when absent */
    size_t query_length;
    const char *body;              /* Content-Length bytes, NULL when none */
    size_t body_length;
    const struct sockaddr *peer;
    struct cluster_waiter *waiter; /* cluster mode: the connection's */
};

/* status 0: the answer comes later, through conn_api_answer. */
struct api_response {
    int status;
    const char *content_type;
    char *body;                    /* malloc'd; the caller frees it */
    size_t body_length;
    const char *extra_headers;     /* static "Name: value\r\n" lines or NULL */
};

/* Fills response with status and the API's JSON error body
 * {"error":TEXT}; the caller frees response->body. */
void api_refuse(struct api_response *response, int status, const char *text);

/* True when path is one of this module's endpoints. */
bool api_is_endpoint(const char *path, size_t path_length);

/* True for /healthz and /metrics, which stay open when the broker refuses
 * other work for lack of memory. */
bool api_is_monitoring(const char *path, size_t path_length);

/* The body limit for a request to path, before it is read: 0 when the
 * endpoint takes no body. */
size_t api_body_limit(const struct config *config, const char *path, size_t path_length);

/* Refuses a request under /api/ (or /api) from its head alone: 404 while
 * http.api_token is unset, 401 without the right bearer token. Returns
 * true with response filled (the caller frees response->body), false when
 * the request may go on (its body may then be read). */
bool api_refuse_early(const struct config *config, const struct http_request *http,
                      size_t path_length, struct api_response *response);

/* Answers a request for one of this module's endpoints. */
void api_handle(struct worker *worker, const struct config *config,
                const struct api_request *request, struct api_response *response);

#endif
