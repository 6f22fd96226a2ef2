/* shared_frame — bytes of one encoded WebSocket frame, refcounted, so one
 * encoding serves every receiver: plain connections' frame queues hold
 * references to it (framequeue.h), TLS connections' bufferevents a
 * reference or, for small frames, a copy. Immutable once shared. */
#ifndef WSBROKER_SHARED_FRAME_H
#define WSBROKER_SHARED_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct shared_frame {
    unsigned refcount;
    size_t length;
    uint8_t bytes[];
};

/* A frame with room for length bytes and refcount 1; NULL when out of memory. */
struct shared_frame *shared_frame_new(size_t length);

/* An unmasked, final (server) frame of opcode carrying payload. */
struct shared_frame *shared_frame_encode(uint8_t opcode, const void *payload, size_t length);

/* Where the payload starts: the unmasked header is 2, 4 or 10 bytes. */
size_t shared_frame_payload_offset(const struct shared_frame *frame);

struct shared_frame *shared_frame_retain(struct shared_frame *frame);
void shared_frame_release(struct shared_frame *frame);   /* NULL ok */

#endif
