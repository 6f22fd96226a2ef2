#include "envelope.h"

#include <stdlib.h>
#include <string.h>

#define ENVELOPE_CHANNEL_MAX 128

/* Fields an op accepts beyond op, id and channel, which all ops take. */
#define ENVELOPE_FIELD_SINCE 0x1u
#define ENVELOPE_FIELD_EPOCH 0x2u
#define ENVELOPE_FIELD_DATA 0x4u

struct envelope_op_spec {
    const char *name;
    enum envelope_op op;
    unsigned fields;
};

static const struct envelope_op_spec envelope_ops[] = {
    { "subscribe", ENVELOPE_OP_SUBSCRIBE, ENVELOPE_FIELD_SINCE | ENVELOPE_FIELD_EPOCH },
    { "unsubscribe", ENVELOPE_OP_UNSUBSCRIBE, 0 },
    { "publish", ENVELOPE_OP_PUBLISH, ENVELOPE_FIELD_DATA },
    { "presence", ENVELOPE_OP_PRESENCE, 0 },
};

/* ---- parsing ---- */

static int envelope_fail(struct envelope_error *error, const char *code, const char *message,
                         json_t *id)
{
    error->code = code;
    error->message = message;
    /* The root holding id is freed on failure; the error keeps its own
     * reference so the reply can still echo it. */
    error->id = id != NULL ? json_incref(id) : NULL;
    return -1;
}

/* Compares a JSON string by its length, so an embedded NUL cannot make
 * "publish\u0000x" pass as "publish". */
static bool envelope_string_is(json_t *string, const char *expected)
{
    size_t length = json_string_length(string);
    return length == strlen(expected) && memcmp(json_string_value(string), expected, length) == 0;
}

static const struct envelope_op_spec *envelope_find_op(json_t *op)
{
    for (size_t i = 0; i < sizeof envelope_ops / sizeof envelope_ops[0]; i++)
        if (envelope_string_is(op, envelope_ops[i].name))
            return &envelope_ops[i];
    return NULL;
}

static bool envelope_field_allowed(const char *key, unsigned fields)
{
    if (strcmp(key, "op") == 0 || strcmp(key, "id") == 0 || strcmp(key, "channel") == 0)
        return true;
    if (strcmp(key, "since") == 0)
        return (fields & ENVELOPE_FIELD_SINCE) != 0;
    if (strcmp(key, "epoch") == 0)
        return (fields & ENVELOPE_FIELD_EPOCH) != 0;
    if (strcmp(key, "data") == 0)
        return (fields & ENVELOPE_FIELD_DATA) != 0;
    return false;
}

static bool envelope_fields_known(json_t *root, unsigned fields)
{
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        /* jansson refuses NUL in object keys, so the C string is the
         * whole key and strcmp cannot be fooled by a suffix. */
        if (!envelope_field_allowed(key, fields))
            return false;
    }
    return true;
}

static bool envelope_channel_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("_.:@/-", c) != NULL;
}

static bool envelope_channel_valid(json_t *channel)
{
    if (!json_is_string(channel))
        return false;
    size_t length = json_string_length(channel);
    if (length == 0 || length > ENVELOPE_CHANNEL_MAX)
        return false;
    const char *name = json_string_value(channel);
    for (size_t i = 0; i < length; i++)
        if (!envelope_channel_char((unsigned char)name[i]))
            return false;
    return true;
}

static bool envelope_id_valid(json_t *id)
{
    return !json_is_object(id) && !json_is_array(id);
}

static int envelope_parse_since(json_t *root, struct envelope_request *request,
                                struct envelope_error *error)
{
    json_t *since = json_object_get(root, "since");
    if (since != NULL) {
        if (!json_is_integer(since) || json_integer_value(since) < 0)
            return envelope_fail(error, ENVELOPE_BAD_REQUEST,
                                 "since must be a non-negative integer", request->id);
        request->has_since = true;
        request->since = (uint64_t)json_integer_value(since);
    }
    json_t *epoch = json_object_get(root, "epoch");
    if (epoch != NULL) {
        /* Handed out as a C string, so an embedded NUL would silently
         * shorten it. */
        if (!json_is_string(epoch) || strlen(json_string_value(epoch)) != json_string_length(epoch))
            return envelope_fail(error, ENVELOPE_BAD_REQUEST, "epoch must be a string",
                                 request->id);
        request->epoch = json_string_value(epoch);
    }
    return 0;
}

static int envelope_parse_object(json_t *root, struct envelope_request *request,
                                 struct envelope_error *error)
{
    json_t *id = json_object_get(root, "id");
    if (id != NULL && !envelope_id_valid(id))
        return envelope_fail(error, ENVELOPE_BAD_REQUEST,
                             "id must be a string, number, boolean or null", NULL);
    request->id = id;

    json_t *op = json_object_get(root, "op");
    if (op == NULL)
        return envelope_fail(error, ENVELOPE_BAD_REQUEST, "op is missing", id);
    if (!json_is_string(op))
        return envelope_fail(error, ENVELOPE_BAD_REQUEST, "op must be a string", id);
    const struct envelope_op_spec *spec = envelope_find_op(op);
    if (spec == NULL)
        return envelope_fail(error, ENVELOPE_UNKNOWN_OP, "unknown op", id);
    request->op = spec->op;
    if (!envelope_fields_known(root, spec->fields))
        return envelope_fail(error, ENVELOPE_BAD_REQUEST, "unknown field", id);

    json_t *channel = json_object_get(root, "channel");
    if (channel == NULL)
        return envelope_fail(error, ENVELOPE_BAD_CHANNEL, "channel is missing", id);
    if (!envelope_channel_valid(channel))
        return envelope_fail(error, ENVELOPE_BAD_CHANNEL, "invalid channel name", id);
    request->channel = json_string_value(channel);

    if (envelope_parse_since(root, request, error) != 0)
        return -1;
    request->data = json_object_get(root, "data");
    if (spec->op == ENVELOPE_OP_PUBLISH && request->data == NULL)
        return envelope_fail(error, ENVELOPE_BAD_REQUEST, "publish needs data", id);
    return 0;
}

static json_t *envelope_load(const char *text, size_t length, struct envelope_error *error)
{
    if (text == NULL) {
        envelope_fail(error, ENVELOPE_BAD_REQUEST, "invalid JSON", NULL);
        return NULL;
    }
    json_error_t json_error;
    /* Any top-level value is decoded so that "not an object" gets its own
     * message; NUL is allowed inside strings because data may carry it. */
    json_t *root = json_loadb(text, length,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                              &json_error);
    if (root == NULL) {
        if (json_error_code(&json_error) == json_error_out_of_memory)
            envelope_fail(error, ENVELOPE_UNAVAILABLE, "out of memory", NULL);
        else
            envelope_fail(error, ENVELOPE_BAD_REQUEST, "invalid JSON", NULL);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        envelope_fail(error, ENVELOPE_BAD_REQUEST, "request must be a JSON object", NULL);
        return NULL;
    }
    return root;
}

int envelope_parse(const char *text, size_t length, struct envelope_request *request,
                   struct envelope_error *error)
{
    memset(request, 0, sizeof *request);
    memset(error, 0, sizeof *error);
    json_t *root = envelope_load(text, length, error);
    if (root == NULL)
        return -1;
    if (envelope_parse_object(root, request, error) != 0) {
        json_decref(root);
        memset(request, 0, sizeof *request);
        return -1;
    }
    request->root = root;
    return 0;
}

void envelope_request_clear(struct envelope_request *request)
{
    if (request == NULL)
        return;
    json_decref(request->root);
    memset(request, 0, sizeof *request);
}

void envelope_error_clear(struct envelope_error *error)
{
    if (error == NULL)
        return;
    json_decref(error->id);
    memset(error, 0, sizeof *error);
}

/* ---- replies ---- */

/* Text is collected in plain malloc memory rather than taken from
 * json_dumps, so callers may free() it whatever allocator jansson uses. */
struct envelope_buffer {
    char *data;
    size_t length;
    size_t capacity;
};

static int envelope_buffer_grow(struct envelope_buffer *buffer, size_t needed)
{
    size_t capacity = buffer->capacity != 0 ? buffer->capacity : 128;
    while (capacity < needed) {
        if (capacity > SIZE_MAX / 2)
            return -1;
        capacity *= 2;
    }
    char *data = realloc(buffer->data, capacity);
    if (data == NULL)
        return -1;
    buffer->data = data;
    buffer->capacity = capacity;
    return 0;
}

static int envelope_buffer_append(const char *piece, size_t size, void *context)
{
    struct envelope_buffer *buffer = context;
    /* One spare byte is always kept for the final NUL. */
    if (size > SIZE_MAX - buffer->length - 1)
        return -1;
    size_t needed = buffer->length + size + 1;
    if (needed > buffer->capacity && envelope_buffer_grow(buffer, needed) != 0)
        return -1;
    memcpy(buffer->data + buffer->length, piece, size);
    buffer->length += size;
    return 0;
}

/* Dumps and releases reply (NULL tolerated, for a failed build). */
static char *envelope_dump(json_t *reply, size_t *length)
{
    if (reply == NULL)
        return NULL;
    struct envelope_buffer buffer = { 0 };
    int rc = json_dump_callback(reply, envelope_buffer_append, &buffer, JSON_COMPACT);
    json_decref(reply);
    if (rc != 0 || buffer.data == NULL) {
        free(buffer.data);
        return NULL;
    }
    buffer.data[buffer.length] = '\0';
    if (length != NULL)
        *length = buffer.length;
    return buffer.data;
}

/* Starts {"op":OP,"id":ID}; NULL when out of memory. */
static json_t *envelope_reply_new(const char *op, json_t *id)
{
    json_t *reply = json_object();
    if (reply == NULL)
        return NULL;
    if (json_object_set_new(reply, "op", json_string(op)) != 0 ||
        (id != NULL && json_object_set(reply, "id", id) != 0)) {
        json_decref(reply);
        return NULL;
    }
    return reply;
}

/* Appends extra's fields after op and id. Keys that would overwrite op or
 * id are refused: the reply could otherwise claim to be something else. */
static int envelope_merge(json_t *reply, json_t *extra)
{
    if (extra == NULL)
        return 0;
    if (!json_is_object(extra))
        return -1;
    const char *key;
    json_t *value;
    json_object_foreach(extra, key, value) {
        if (strcmp(key, "op") == 0 || strcmp(key, "id") == 0)
            return -1;
        if (json_object_set(reply, key, value) != 0)
            return -1;
    }
    return 0;
}

char *envelope_ok(json_t *id, json_t *extra, size_t *length)
{
    json_t *reply = envelope_reply_new("ok", id);
    if (reply != NULL && envelope_merge(reply, extra) != 0) {
        json_decref(reply);
        return NULL;
    }
    return envelope_dump(reply, length);
}

char *envelope_error_reply(json_t *id, const char *code, const char *message, size_t *length)
{
    if (code == NULL || message == NULL)
        return NULL;
    json_t *reply = envelope_reply_new("error", id);
    if (reply != NULL && (json_object_set_new(reply, "code", json_string(code)) != 0 ||
                          json_object_set_new(reply, "message", json_string(message)) != 0)) {
        json_decref(reply);
        return NULL;
    }
    return envelope_dump(reply, length);
}

char *envelope_presence_event(const char *op, const char *channel, const char *user,
                              size_t *length)
{
    if (op == NULL || channel == NULL || user == NULL ||
        (strcmp(op, "join") != 0 && strcmp(op, "leave") != 0))
        return NULL;
    json_t *event = envelope_reply_new(op, NULL);
    if (event != NULL && (json_object_set_new(event, "channel", json_string(channel)) != 0 ||
                          json_object_set_new(event, "user", json_string(user)) != 0)) {
        json_decref(event);
        return NULL;
    }
    return envelope_dump(event, length);
}
