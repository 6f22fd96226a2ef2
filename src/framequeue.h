/* framequeue — one connection's queue of outgoing frames, written to its
 * socket with writev. A delivery queues a reference to a shared frame (a
 * pointer, no copy and, once the queue has grown to its working size, no
 * allocation), so a frame encoded once is read from directly by every
 * receiver's write. */
#ifndef WSBROKER_FRAMEQUEUE_H
#define WSBROKER_FRAMEQUEUE_H

#include <stddef.h>

#include "shared_frame.h"

struct frame_queue {
    struct shared_frame **slots;    /* ring of capacity slots (a power of two) */
    size_t capacity;
    size_t head;                    /* oldest frame */
    size_t count;
    size_t offset;                  /* bytes of the oldest frame already written */
    size_t bytes;                   /* bytes not yet written */
};

enum frame_queue_status {
    FRAME_QUEUE_EMPTY,      /* everything is written */
    FRAME_QUEUE_BLOCKED,    /* the socket takes no more now: wait for EV_WRITE */
    FRAME_QUEUE_ERROR,      /* the socket failed (errno says why) */
};

/* An all-zero struct frame_queue is an empty queue. */

/* Queues a reference to frame (retained). Returns 0, or -1 when out of
 * memory (the frame is then not retained). */
int frame_queue_push(struct frame_queue *queue, struct shared_frame *frame);

static inline size_t frame_queue_bytes(const struct frame_queue *queue)
{
    return queue->bytes;
}

/* Writes from the head until the queue is empty or the socket would block;
 * fully written frames are released. A queue that empties gives back a
 * ring larger than it needs to keep, so an idle connection holds none. */
enum frame_queue_status frame_queue_write(struct frame_queue *queue, int fd);

/* Bytes the queue itself holds (its ring; the frames are shared). */
size_t frame_queue_footprint(const struct frame_queue *queue);

/* Releases every frame and the ring; the queue is empty again. */
void frame_queue_clear(struct frame_queue *queue);

#endif
