#include "shared_frame.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

struct shared_frame *shared_frame_new(size_t length)
{
    if (length > SIZE_MAX - sizeof(struct shared_frame))
        return NULL;
    struct shared_frame *frame = malloc(sizeof(*frame) + length);
    if (frame == NULL)
        return NULL;
    frame->refcount = 1;
    frame->length = length;
    return frame;
}

/* A frame no peer could accept is refused here rather than sent: the
 * opcode must fit its four bits and a control frame carries at most 125
 * bytes (RFC 6455 §5.5). */
static bool shared_frame_encodable(uint8_t opcode, size_t length)
{
    if (opcode > 0x0F)
        return false;
    if ((opcode & 0x08) != 0 && length > WSFRAME_MAX_CONTROL_PAYLOAD)
        return false;
    return true;
}

struct shared_frame *shared_frame_encode(uint8_t opcode, const void *payload, size_t length)
{
    if (!shared_frame_encodable(opcode, length) || (payload == NULL && length > 0))
        return NULL;
    uint8_t header[WSFRAME_MAX_HEADER];
    size_t header_length = wsframe_header_build(header, true, 0, opcode, length);
    if (length > SIZE_MAX - header_length)
        return NULL;
    struct shared_frame *frame = shared_frame_new(header_length + length);
    if (frame == NULL)
        return NULL;
    memcpy(frame->bytes, header, header_length);
    if (length > 0)
        memcpy(frame->bytes + header_length, payload, length);
    return frame;
}

struct shared_frame *shared_frame_retain(struct shared_frame *frame)
{
    /* atomic: frames are shared by the output queues of several workers */
    __atomic_add_fetch(&frame->refcount, 1, __ATOMIC_RELAXED);
    return frame;
}

void shared_frame_release(struct shared_frame *frame)
{
    if (frame != NULL && __atomic_sub_fetch(&frame->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        free(frame);
}

size_t shared_frame_payload_offset(const struct shared_frame *frame)
{
    unsigned length_code = frame->bytes[1] & 0x7f;
    return length_code == 127 ? 10 : length_code == 126 ? 4 : 2;
}
