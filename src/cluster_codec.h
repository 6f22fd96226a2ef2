/* cluster_codec — what cluster nodes say to each other through Redis, as
 * pure functions: the redis:// URL of the cluster group, the payload a
 * publish carries (PUBLISHed to every node and kept in the channel's
 * history stream), the Lua scripts that number and read a channel
 * atomically, and where a resuming subscriber stands.
 *
 * Payload: one header line, then the publisher's name and the body, raw:
 *   "m KIND SEQ EPOCH PUBLISHED_AT NODE EXCEPT FROMLEN\n" FROM BODY
 *   "p OP NODE USERLEN\n" USER           (presence: OP is join or leave)
 * KIND is t (text), b (binary) or j (JSON); NODE the publishing node's id
 * and EXCEPT the hub subscriber there that is not to get it (0: none), both
 * hex; PUBLISHED_AT Redis's clock in milliseconds. */
#ifndef WSBROKER_CLUSTER_CODEC_H
#define WSBROKER_CLUSTER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message.h"

#define CLUSTER_EPOCH_MAX 23            /* fits HUB_EPOCH_SIZE with its NUL */
#define CLUSTER_HOST_MAX 255

struct cluster_url {
    char host[CLUSTER_HOST_MAX + 1];
    unsigned port;                      /* default 6379 */
    unsigned db;                        /* default 0 */
    char *user;                         /* NULL: none (malloc'd) */
    char *password;                     /* NULL: no AUTH (malloc'd) */
};

/* Parses redis://[[user]:password@]host[:port][/db]. Returns 0, or -1 with
 * *problem saying why. On success free with cluster_url_clear. */
int cluster_url_parse(const char *text, struct cluster_url *url, const char **problem);
void cluster_url_clear(struct cluster_url *url);

/* A channel prefix: 1 to 64 printable ASCII characters without spaces. */
bool cluster_prefix_valid(const char *prefix);

enum cluster_wire_type { CLUSTER_WIRE_MESSAGE, CLUSTER_WIRE_PRESENCE };

/* A decoded payload; pointers are into the decoded bytes. */
struct cluster_wire {
    enum cluster_wire_type type;
    enum message_kind kind;             /* MESSAGE */
    uint64_t seq;                       /* MESSAGE */
    char epoch[CLUSTER_EPOCH_MAX + 1];  /* MESSAGE */
    int64_t published_at;               /* MESSAGE */
    uint64_t node;
    uint64_t except;                    /* MESSAGE */
    bool join;                          /* PRESENCE: join, else leave */
    const char *from;                   /* MESSAGE: publisher, PRESENCE: user */
    size_t from_length;                 /* 0: none */
    const uint8_t *body;                /* MESSAGE */
    size_t body_length;
};

/* Returns 0, or -1 when data is not a well-formed payload. */
int cluster_wire_decode(const void *data, size_t length, struct cluster_wire *wire);

/* Builds a payload as the publish script does (for tests and presence);
 * malloc'd, *length set; NULL when out of memory. */
char *cluster_wire_encode(const struct cluster_wire *wire, size_t *length);

/* The letter of a message kind in payloads and the script's arguments. */
char cluster_kind_letter(enum message_kind kind);

/* Lua: KEYS seq, epoch, stream; ARGV redis channel, history size, history
 * ttl (s), a fresh epoch, kind letter, node (hex), except (hex), from,
 * body, idle expiry (s). INCRs seq, creates the epoch once, XADDs the
 * payload to the stream (when history > 0) and PUBLISHes it. Returns
 * {seq, epoch}. */
extern const char cluster_publish_script[];

/* Lua: KEYS seq, epoch, stream; ARGV a fresh epoch, "1" to read history,
 * history ttl (s), idle expiry (s). Returns {seq, epoch, {payload...}}
 * with the held payloads oldest first. */
extern const char cluster_position_script[];

/* Presence lives in a sorted set per channel of "user\tnode" members
 * scored by when they expire (Redis's clock, ms); a user is present while
 * one of its entries is unexpired.
 * add: KEYS set, redis channel; ARGV member, expiry (ms), join payload.
 *   Adds member; PUBLISHes the join when the user had no other entry.
 * remove: KEYS set, redis channel; ARGV member, leave payload. Removes it;
 *   PUBLISHes the leave when the user has no entry left.
 * refresh: KEYS set, redis channel; ARGV node (hex), expiry (ms), members.
 *   Refreshes them, drops expired entries and PUBLISHes a leave for each
 *   user left without one.
 * list: KEYS set. The unexpired members. */
extern const char cluster_presence_add_script[];
extern const char cluster_presence_remove_script[];
extern const char cluster_presence_refresh_script[];
extern const char cluster_presence_list_script[];

/* Where a subscriber stands after reading the channel's numbering: what
 * the subscribe reply says and which held messages to replay. */
struct cluster_resume {
    bool recovered;
    uint64_t replay_after;              /* replay held messages with seq > this */
};

/* seq/epoch: the channel's in Redis; oldest_held: the seq of the first
 * held message, 0 when none. Same rules as a single broker's history. */
void cluster_resume_plan(bool has_since, uint64_t since, const char *client_epoch,
                         uint64_t seq, const char *epoch, uint64_t oldest_held,
                         struct cluster_resume *plan);

#endif
