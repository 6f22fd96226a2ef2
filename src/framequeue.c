/* framequeue — see framequeue.h. */
#include "framequeue.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define FRAME_QUEUE_FIRST 8         /* slots of a new ring */
#define FRAME_QUEUE_KEEP 16         /* an empty queue keeps a ring up to this size:
                                       128 bytes, against one malloc per batch */
#define FRAME_QUEUE_IOV 256         /* iovecs per writev (IOV_MAX is 1024) */
#define FRAME_QUEUE_COPY_MAX 512    /* frames shorter than this are copied ... */
#define FRAME_QUEUE_STAGE 16384     /* ... into a staging buffer of this size */

static size_t frame_queue_slot(const struct frame_queue *queue, size_t index)
{
    return (queue->head + index) & (queue->capacity - 1);
}

/* Doubles the ring, moving the frames to the front of the new one. */
static int frame_queue_grow(struct frame_queue *queue)
{
    size_t capacity = queue->capacity == 0 ? FRAME_QUEUE_FIRST : queue->capacity * 2;
    if (capacity > SIZE_MAX / sizeof(*queue->slots))
        return -1;
    struct shared_frame **slots = malloc(capacity * sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < queue->count; i++)
        slots[i] = queue->slots[frame_queue_slot(queue, i)];
    free(queue->slots);
    queue->slots = slots;
    queue->capacity = capacity;
    queue->head = 0;
    return 0;
}

int frame_queue_push(struct frame_queue *queue, struct shared_frame *frame)
{
    if (queue->count == queue->capacity && frame_queue_grow(queue) != 0)
        return -1;
    queue->slots[frame_queue_slot(queue, queue->count)] = shared_frame_retain(frame);
    queue->count++;
    queue->bytes += frame->length;
    return 0;
}

/* Releases what written bytes cover, from the head. */
static void frame_queue_consume(struct frame_queue *queue, size_t written)
{
    queue->bytes -= written;
    while (written > 0) {
        struct shared_frame *frame = queue->slots[queue->head];
        size_t left = frame->length - queue->offset;
        if (written < left) {
            queue->offset += written;
            return;
        }
        written -= left;
        shared_frame_release(frame);
        queue->head = (queue->head + 1) & (queue->capacity - 1);
        queue->count--;
        queue->offset = 0;
    }
}

/* Releases frames of length 0 at the head: they have nothing to write. */
static void frame_queue_skip_empty(struct frame_queue *queue)
{
    while (queue->count > 0 && queue->slots[queue->head]->length == 0) {
        shared_frame_release(queue->slots[queue->head]);
        queue->head = (queue->head + 1) & (queue->capacity - 1);
        queue->count--;
    }
}

static void frame_queue_settle(struct frame_queue *queue)
{
    if (queue->count == 0) {
        queue->head = 0;
        queue->offset = 0;
        if (queue->capacity > FRAME_QUEUE_KEEP)
            frame_queue_clear(queue);
    }
}

/* The iovecs of the next writev. Runs of small frames are copied into
 * stage and go as one iovec: the kernel's cost per iovec is larger than a
 * small copy, and a fan-out of small messages writes dozens of them. */
static size_t frame_queue_fill(const struct frame_queue *queue, struct iovec *iov,
                               uint8_t *stage, size_t *offered)
{
    size_t n = 0;
    size_t staged = 0;
    *offered = 0;
    for (size_t i = 0; i < queue->count && n < FRAME_QUEUE_IOV; i++) {
        struct shared_frame *frame = queue->slots[frame_queue_slot(queue, i)];
        size_t skip = i == 0 ? queue->offset : 0;
        const uint8_t *bytes = frame->bytes + skip;
        size_t length = frame->length - skip;
        if (length < FRAME_QUEUE_COPY_MAX && length <= FRAME_QUEUE_STAGE - staged) {
            memcpy(stage + staged, bytes, length);
            if (n > 0 && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == stage + staged) {
                iov[n - 1].iov_len += length;
            } else {
                iov[n].iov_base = stage + staged;
                iov[n++].iov_len = length;
            }
            staged += length;
        } else {
            iov[n].iov_base = (void *)bytes;
            iov[n++].iov_len = length;
        }
        *offered += length;
    }
    return n;
}

enum frame_queue_status frame_queue_write(struct frame_queue *queue, int fd)
{
    struct iovec iov[FRAME_QUEUE_IOV];
    uint8_t stage[FRAME_QUEUE_STAGE];
    enum frame_queue_status status = FRAME_QUEUE_EMPTY;
    for (;;) {
        frame_queue_skip_empty(queue);
        if (queue->count == 0)
            break;
        size_t offered;
        size_t n = frame_queue_fill(queue, iov, stage, &offered);
        ssize_t written = writev(fd, iov, (int)n);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            status = errno == EAGAIN || errno == EWOULDBLOCK ? FRAME_QUEUE_BLOCKED
                                                             : FRAME_QUEUE_ERROR;
            break;
        }
        frame_queue_consume(queue, (size_t)written);
        /* A short write means the socket buffer is full: asking again now
         * would only return EAGAIN. */
        if ((size_t)written < offered) {
            status = FRAME_QUEUE_BLOCKED;
            break;
        }
    }
    frame_queue_settle(queue);
    return status;
}

size_t frame_queue_footprint(const struct frame_queue *queue)
{
    return queue->capacity * sizeof(*queue->slots);
}

void frame_queue_clear(struct frame_queue *queue)
{
    for (size_t i = 0; i < queue->count; i++)
        shared_frame_release(queue->slots[frame_queue_slot(queue, i)]);
    free(queue->slots);
    memset(queue, 0, sizeof(*queue));
}
