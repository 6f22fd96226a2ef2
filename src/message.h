/* message — one published message: its payload, its place in its channel
 * (seq), who sent it, and its two wire encodings, each built once on first
 * use and then shared by every receiver and by the history ring. Pure code. */
#ifndef WSBROKER_MESSAGE_H
#define WSBROKER_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "deflate.h"
#include "shared_frame.h"

struct message_deflated;

enum message_kind {
    MESSAGE_TEXT,     /* a raw text frame's bytes (valid UTF-8) */
    MESSAGE_BINARY,   /* a raw binary frame's bytes */
    MESSAGE_JSON,     /* compact JSON text of a pubsub or API "data" value */
};

struct message {
    unsigned refcount;
    enum message_kind kind;
    uint64_t seq;               /* set by the hub when published */
    int64_t published_at;       /* monotonic milliseconds, set by the hub */
    char *channel;
    char *from;                 /* publishing user, or NULL */
    uint8_t *payload;
    size_t length;
    struct shared_frame *raw_frame;       /* private: built on first use */
    struct shared_frame *envelope_frame;  /* private: built on first use */
    /* private: compressed frames, one per (form, window, level, memory
     * level) asked for; usually one */
    struct message_deflated *deflated;
};

/* Copies channel, from (may be NULL) and payload. For MESSAGE_JSON, payload
 * must be one valid JSON value (it is stored as given). Refcount 1; NULL
 * when out of memory. */
struct message *message_new(enum message_kind kind, const char *channel, const char *from,
                            const void *payload, size_t length);
struct message *message_retain(struct message *message);

/* Drops the envelope encodings built so far (they carry seq): for the hub,
 * when the seq a publisher built them with was not the one the message
 * got. Only while no other thread can see the message. */
void message_forget_envelope(struct message *message);

/* Bytes the message holds: itself, its strings, its payload and whichever
 * encodings have been built so far. */
size_t message_footprint(const struct message *message);
void message_release(struct message *message);   /* NULL ok */

/* The frame a raw (broadcast route) receiver gets: TEXT and BINARY as they
 * came; JSON as a text frame holding the string's characters when the value
 * is a string, else the compact JSON text. Borrowed: valid while the
 * message lives; retain it to keep it. NULL when out of memory. */
struct shared_frame *message_raw_frame(struct message *message);

/* The text frame a pubsub receiver gets:
 * {"op":"message","channel":C,"seq":N,"data":<value>,"from":U}
 * where data is the JSON value, a TEXT payload as a JSON string, and a
 * BINARY payload becomes "data_base64":"<base64>" instead; "from" only
 * when set. Borrowed like message_raw_frame. NULL when out of memory. */
struct shared_frame *message_envelope_frame(struct message *message);

/* The raw (envelope = false) or envelope frame compressed for
 * permessage-deflate with options' level and memory level and window_bits
 * (9..15), RSV1 set, using a stream of compressors (owned by the caller's
 * event loop). Built once per parameter set: compression keeps no
 * context between messages, so every receiver with the same window and
 * level shares the bytes.
 * Borrowed like message_raw_frame. NULL when it cannot be built. */
struct shared_frame *message_deflated_frame(struct message *message, bool envelope,
                                            struct deflate_compressors *compressors,
                                            const struct deflate_options *options,
                                            int window_bits);

#endif
