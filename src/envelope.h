/* envelope — the JSON protocol (version 1) of pubsub routes: parsing a
 * client's request and building the server's replies and events. Pure code
 * over jansson; see wsbroker-protocol(7). */
#ifndef WSBROKER_ENVELOPE_H
#define WSBROKER_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Stable error codes sent in {"op":"error","code":...}. */
#define ENVELOPE_BAD_REQUEST "bad_request"
#define ENVELOPE_UNKNOWN_OP "unknown_op"
#define ENVELOPE_BAD_CHANNEL "bad_channel"
#define ENVELOPE_FORBIDDEN "forbidden"
#define ENVELOPE_NOT_SUBSCRIBED "not_subscribed"
#define ENVELOPE_TOO_MANY_SUBSCRIPTIONS "too_many_subscriptions"
#define ENVELOPE_TOO_LARGE "too_large"
#define ENVELOPE_RATE_LIMITED "rate_limited"
#define ENVELOPE_UNAVAILABLE "unavailable"

enum envelope_op {
    ENVELOPE_OP_SUBSCRIBE,
    ENVELOPE_OP_UNSUBSCRIBE,
    ENVELOPE_OP_PUBLISH,
    ENVELOPE_OP_PRESENCE,
};

struct envelope_request {
    enum envelope_op op;
    json_t *id;            /* borrowed from root; NULL when absent. Any JSON
                              scalar (string, number, true/false/null) */
    const char *channel;   /* borrowed from root, NUL-terminated, valid name */
    bool has_since;
    uint64_t since;        /* subscribe: resume after this seq */
    const char *epoch;     /* subscribe: borrowed; NULL when absent */
    json_t *data;          /* publish: borrowed from root */
    json_t *root;          /* owned: envelope_request_clear releases it */
};

struct envelope_error {
    const char *code;      /* one of ENVELOPE_* */
    const char *message;   /* static, human-readable */
    json_t *id;            /* the request's id when it could be read (owned:
                              envelope_error_clear releases it), else NULL */
};

/* Parses one text message. Returns 0 with *request filled, or -1 with
 * *error filled: not JSON, not an object, op missing or not a string, a
 * field of the wrong type, an id that is an object or array, since not a
 * non-negative integer, epoch not a string, publish without data, an
 * unknown field → bad_request; an unknown op → unknown_op; channel missing
 * or not a valid name (1-128 bytes of [A-Za-z0-9_.:@/-]) → bad_channel. */
int envelope_parse(const char *text, size_t length, struct envelope_request *request,
                   struct envelope_error *error);
void envelope_request_clear(struct envelope_request *request);
void envelope_error_clear(struct envelope_error *error);

/* Builders return malloc'd compact JSON text (NUL-terminated; *length set
 * when length is not NULL), or NULL when out of memory. id may be NULL. */

/* {"op":"ok","id":ID, ...fields of extra (an object, may be NULL)} */
char *envelope_ok(json_t *id, json_t *extra, size_t *length);
/* {"op":"error","id":ID,"code":CODE,"message":MESSAGE} */
char *envelope_error_reply(json_t *id, const char *code, const char *message, size_t *length);
/* {"op":"join"|"leave","channel":CHANNEL,"user":USER} */
char *envelope_presence_event(const char *op, const char *channel, const char *user,
                              size_t *length);

#endif
