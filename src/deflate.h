/* deflate — permessage-deflate (RFC 7692): negotiating the extension from a
 * client's offers, and the zlib streams that compress and inflate whole
 * messages. Pure code over zlib; no I/O. */
#ifndef WSBROKER_DEFLATE_H
#define WSBROKER_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* What the operator allows (websocket.compression in the config). */
struct deflate_options {
    bool enabled;
    int level;                 /* zlib level 0..9, default 1 */
    size_t min_size;           /* smaller messages go uncompressed, default 256 */
    int memory_level;          /* zlib memLevel 1..9, default 8 */
    int max_window_bits;       /* 9..15: the largest window the server uses, default 15 */
};

/* The parameters agreed with one client. */
struct deflate_params {
    bool server_no_context_takeover;   /* always true in wsbroker's answers:
                                          it lets one compressed message serve
                                          every receiver with the same window */
    bool client_no_context_takeover;
    int server_max_window_bits;        /* 9..15: window the server compresses with */
    int client_max_window_bits;        /* 8..15: window the client compresses with
                                          (15 when the client did not limit it) */
};

#define DEFLATE_RESPONSE_SIZE 160

/* Reads every Sec-WebSocket-Extensions header of request and accepts the
 * first permessage-deflate offer whose parameters are valid and can be
 * honoured (RFC 7692 §7.1): an offer with an unknown or repeated parameter
 * or a bad value is declined, and the next one considered. On success
 * fills params and writes the response header value (without the header
 * name) into response; returns false when no offer is accepted or options
 * are off. */
bool deflate_negotiate(const struct http_request *request, const struct deflate_options *options,
                       struct deflate_params *params, char response[DEFLATE_RESPONSE_SIZE]);

/* ---- inflating client messages ---- */

struct deflate_inflater;

/* NULL when out of memory. Inflates with a 15-bit window, which reads any
 * params->client_max_window_bits, and resets between messages when
 * client_no_context_takeover. */
struct deflate_inflater *deflate_inflater_new(const struct deflate_params *params);
void deflate_inflater_free(struct deflate_inflater *inflater);   /* NULL ok */

/* Bytes the inflater holds, zlib's state and window included (the window
 * is allocated on first use); 0 for NULL. */
size_t deflate_inflater_footprint(const struct deflate_inflater *inflater);

#define DEFLATE_OK 0
#define DEFLATE_ERROR (-1)      /* corrupt data: fail the connection (1007) */
#define DEFLATE_TOO_BIG (-2)    /* inflated size passes max: close 1009 */
#define DEFLATE_NO_MEMORY (-3)

/* Inflates one whole message (its compressed payload, as received) into a
 * malloc'd buffer (*out, *out_length; freed by the caller). Stops as soon as
 * the output would pass max bytes: a zip bomb never allocates more than max
 * (plus one zlib chunk). */
int deflate_inflate(struct deflate_inflater *inflater, const uint8_t *data, size_t length,
                    size_t max, uint8_t **out, size_t *out_length);

/* ---- compressing server messages ---- */

/* Compresses one whole message with no context takeover (a fresh stream
 * each time) using window_bits and the options' level and memory level, and
 * returns the payload to send with RSV1 set (the trailing 00 00 ff ff
 * removed) in a malloc'd buffer. Because no context is kept, the result
 * depends only on (data, level, memory_level, window_bits), so it can be
 * shared by every receiver with the same window. Returns DEFLATE_OK or
 * DEFLATE_NO_MEMORY/DEFLATE_ERROR. */
int deflate_compress(const struct deflate_options *options, int window_bits,
                     const uint8_t *data, size_t length, uint8_t **out, size_t *out_length);

/* Compressors kept between messages: one zlib stream per window size
 * (9..15), reset after every message instead of being set up and torn down
 * (some 256 KiB of zlib state each time). A reset stream compresses exactly
 * like a fresh one, so the output is that of deflate_compress. Not shared
 * between threads: whoever runs an event loop owns one set and passes it
 * down. */
struct deflate_compressors;

struct deflate_compressors *deflate_compressors_new(void);   /* NULL when out of memory */
void deflate_compressors_free(struct deflate_compressors *set);   /* NULL ok */

/* Bytes the set holds, zlib's state of every stream set up so far included. */
size_t deflate_compressors_footprint(const struct deflate_compressors *set);

/* deflate_compress with a stream of set: same arguments, results and
 * output. A stream is set up on first use of its window and set up again
 * when options' level or memory level changed (a reload). */
int deflate_compressors_compress(struct deflate_compressors *set,
                                 const struct deflate_options *options, int window_bits,
                                 const uint8_t *data, size_t length, uint8_t **out,
                                 size_t *out_length);

#endif
