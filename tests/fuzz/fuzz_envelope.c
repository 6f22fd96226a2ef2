/* fuzz_envelope — the JSON protocol parser and the replies built from what
 * it returns.
 *
 * Checked:
 *   - a parsed request has a valid channel (1-128 bytes of
 *     [A-Za-z0-9_.:@/-]), an id that is a scalar, data for publish, an
 *     epoch that is a whole C string;
 *   - a failed parse names one of the documented error codes and leaves
 *     no request behind;
 *   - envelope_ok, envelope_error_reply and envelope_presence_event give
 *     JSON text that parses back (strings may carry \u0000, which is
 *     valid JSON), says the right op, and echoes the id unchanged;
 *   - the reported length is the text's length. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "envelope.h"
#include "fuzz.h"

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_envelope: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

static const char *const error_codes[] = {
    ENVELOPE_BAD_REQUEST, ENVELOPE_UNKNOWN_OP, ENVELOPE_BAD_CHANNEL, ENVELOPE_FORBIDDEN,
    ENVELOPE_NOT_SUBSCRIBED, ENVELOPE_TOO_MANY_SUBSCRIPTIONS, ENVELOPE_TOO_LARGE,
    ENVELOPE_RATE_LIMITED, ENVELOPE_UNAVAILABLE,
};

static bool known_code(const char *code)
{
    for (size_t i = 0; i < sizeof error_codes / sizeof error_codes[0]; i++)
        if (code == error_codes[i] || strcmp(code, error_codes[i]) == 0)
            return true;
    return false;
}

static bool channel_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '@' || c == '/' || c == '-';
}

/* Parses a reply, checks its op and id, and returns it (caller decrefs). */
static json_t *check_reply(char *text, size_t length, const char *op, json_t *id)
{
    CHECK(text != NULL);
    CHECK(strlen(text) == length);
    json_error_t error;
    json_t *reply = json_loadb(text, length, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &error);
    if (reply == NULL) {
        fprintf(stderr, "fuzz_envelope: reply is not JSON (%s): %s\n", error.text, text);
        abort();
    }
    CHECK(json_is_object(reply));
    json_t *reply_op = json_object_get(reply, "op");
    CHECK(json_is_string(reply_op) && strcmp(json_string_value(reply_op), op) == 0);
    json_t *reply_id = json_object_get(reply, "id");
    if (id == NULL)
        CHECK(reply_id == NULL);
    else
        CHECK(reply_id != NULL && json_equal(reply_id, id));
    free(text);
    return reply;
}

static void check_request(const struct envelope_request *request)
{
    CHECK(request->root != NULL && json_is_object(request->root));
    CHECK(request->op == ENVELOPE_OP_SUBSCRIBE || request->op == ENVELOPE_OP_UNSUBSCRIBE ||
          request->op == ENVELOPE_OP_PUBLISH || request->op == ENVELOPE_OP_PRESENCE);
    CHECK(request->channel != NULL);
    size_t length = strlen(request->channel);
    CHECK(length >= 1 && length <= 128);
    for (size_t i = 0; i < length; i++)
        CHECK(channel_char((unsigned char)request->channel[i]));
    if (request->id != NULL)
        CHECK(!json_is_object(request->id) && !json_is_array(request->id));
    if (request->op == ENVELOPE_OP_PUBLISH)
        CHECK(request->data != NULL);
    if (request->op != ENVELOPE_OP_SUBSCRIBE)
        CHECK(!request->has_since && request->epoch == NULL);
    if (request->op != ENVELOPE_OP_PUBLISH)
        CHECK(request->data == NULL);
    if (request->epoch != NULL) {
        json_t *epoch = json_object_get(request->root, "epoch");
        CHECK(json_is_string(epoch) && strlen(request->epoch) == json_string_length(epoch));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope_request request;
    struct envelope_error error;
    int rc = envelope_parse((const char *)data, size, &request, &error);
    size_t length = 0;

    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(request.root == NULL && request.id == NULL && request.channel == NULL);
        CHECK(error.code != NULL && known_code(error.code));
        CHECK(error.message != NULL);
        if (error.id != NULL)
            CHECK(!json_is_object(error.id) && !json_is_array(error.id));
        char *text = envelope_error_reply(error.id, error.code, error.message, &length);
        json_t *reply = check_reply(text, length, "error", error.id);
        json_t *code = json_object_get(reply, "code");
        CHECK(json_is_string(code) && strcmp(json_string_value(code), error.code) == 0);
        json_decref(reply);
        envelope_error_clear(&error);
        return 0;
    }

    check_request(&request);

    /* ok with extra fields drawn from the request */
    json_t *extra = json_object();
    CHECK(extra != NULL);
    CHECK(json_object_set_new(extra, "channel", json_string(request.channel)) == 0);
    if (request.has_since)
        CHECK(json_object_set_new(extra, "seq", json_integer((json_int_t)request.since)) == 0);
    if (request.epoch != NULL)
        CHECK(json_object_set_new(extra, "epoch", json_string(request.epoch)) == 0);
    if (request.data != NULL)
        CHECK(json_object_set(extra, "data", request.data) == 0);
    char *text = envelope_ok(request.id, extra, &length);
    json_t *reply = check_reply(text, length, "ok", request.id);
    if (request.data != NULL)
        CHECK(json_equal(json_object_get(reply, "data"), request.data));
    json_decref(reply);

    /* extra may not overwrite op or id */
    CHECK(json_object_set_new(extra, "op", json_string("error")) == 0);
    CHECK(envelope_ok(request.id, extra, NULL) == NULL);
    json_decref(extra);

    /* an error answering this request (e.g. forbidden) */
    text = envelope_error_reply(request.id, ENVELOPE_FORBIDDEN, "not allowed", &length);
    json_decref(check_reply(text, length, "error", request.id));

    /* the epoch stands in for a user name: JSON gave it as UTF-8 */
    if (request.epoch != NULL) {
        text = envelope_presence_event("join", request.channel, request.epoch, &length);
        reply = check_reply(text, length, "join", NULL);
        json_t *user = json_object_get(reply, "user");
        CHECK(json_is_string(user) && strcmp(json_string_value(user), request.epoch) == 0);
        json_decref(reply);
    }

    envelope_request_clear(&request);
    CHECK(request.root == NULL);
    return 0;
}
