/* framequeue: frames queued by reference come out of the socket whole and
 * in order, across short writes, and the queue holds nothing once empty. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "framequeue.h"
#include "shared_frame.h"

/* A non-blocking stream socketpair; fds[0] is written, fds[1] read. */
static void make_pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
}

static struct shared_frame *frame_of(size_t length, uint8_t seed)
{
    struct shared_frame *frame = shared_frame_new(length);
    assert_non_null(frame);
    for (size_t i = 0; i < length; i++)
        frame->bytes[i] = (uint8_t)(seed + i * 7);
    return frame;
}

/* Reads everything the socket has now into buffer at *at. */
static void drain(int fd, uint8_t *buffer, size_t capacity, size_t *at)
{
    for (;;) {
        ssize_t got = read(fd, buffer + *at, capacity - *at);
        if (got <= 0) {
            assert_true(got == 0 || errno == EAGAIN || errno == EWOULDBLOCK);
            return;
        }
        *at += (size_t)got;
    }
}

static void test_frames_come_out_in_order(void **state)
{
    (void)state;
    int fds[2];
    make_pair(fds);
    struct frame_queue queue;
    memset(&queue, 0, sizeof queue);
    struct shared_frame *shared = frame_of(66, 1);
    size_t expected_length = 0;
    uint8_t expected[100 * 66 + 3 * 300];
    for (unsigned i = 0; i < 100; i++) {
        struct shared_frame *frame = i % 40 == 39 ? frame_of(300, (uint8_t)i) : shared;
        assert_int_equal(frame_queue_push(&queue, frame), 0);
        memcpy(expected + expected_length, frame->bytes, frame->length);
        expected_length += frame->length;
        if (frame != shared)
            shared_frame_release(frame);   /* the queue holds the only reference */
    }
    assert_int_equal(shared->refcount, 1 + 98);
    assert_int_equal(frame_queue_bytes(&queue), expected_length);
    assert_true(frame_queue_footprint(&queue) >= 100 * sizeof(void *));

    assert_int_equal(frame_queue_write(&queue, fds[0]), FRAME_QUEUE_EMPTY);
    assert_int_equal(frame_queue_bytes(&queue), 0);
    assert_int_equal(frame_queue_footprint(&queue), 0);   /* a large ring is given back */
    assert_int_equal(shared->refcount, 1);

    uint8_t got[sizeof expected];
    size_t got_length = 0;
    drain(fds[1], got, sizeof got, &got_length);
    assert_int_equal(got_length, expected_length);
    assert_memory_equal(got, expected, expected_length);
    shared_frame_release(shared);
    close(fds[0]);
    close(fds[1]);
}

/* A socket that takes only part of the queue: the rest waits, resumes in
 * the middle of a frame (copied small ones and referenced large ones
 * alike), and the reader sees one unbroken stream. */
static void test_short_writes_resume(void **state)
{
    (void)state;
    int fds[2];
    make_pair(fds);
    int small = 4096;
    (void)setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct frame_queue queue;
    memset(&queue, 0, sizeof queue);
    enum { FRAMES = 300, LARGE = 1001, SMALL = 100, MOST = FRAMES * LARGE };
    uint8_t *expected = malloc(MOST);
    uint8_t *got = malloc(MOST);
    assert_non_null(expected);
    assert_non_null(got);
    size_t total = 0;
    for (unsigned i = 0; i < FRAMES; i++) {
        size_t length = i % 3 == 0 ? LARGE : SMALL;
        struct shared_frame *frame = frame_of(length, (uint8_t)(i * 13));
        assert_int_equal(frame_queue_push(&queue, frame), 0);
        memcpy(expected + total, frame->bytes, length);
        total += length;
        shared_frame_release(frame);
    }
    size_t got_length = 0;
    unsigned blocked = 0;
    for (unsigned round = 0; round < 10000; round++) {
        enum frame_queue_status status = frame_queue_write(&queue, fds[0]);
        assert_int_not_equal(status, FRAME_QUEUE_ERROR);
        /* Written bytes are never counted twice nor lost. */
        assert_true(frame_queue_bytes(&queue) + got_length <= total);
        if (status == FRAME_QUEUE_EMPTY)
            break;
        blocked++;
        drain(fds[1], got, MOST, &got_length);
    }
    drain(fds[1], got, MOST, &got_length);
    assert_true(blocked > 0);      /* the small buffer did cut writes short */
    assert_int_equal(frame_queue_bytes(&queue), 0);
    assert_int_equal(got_length, total);
    assert_memory_equal(got, expected, total);
    free(expected);
    free(got);
    frame_queue_clear(&queue);
    close(fds[0]);
    close(fds[1]);
}

static void test_closed_peer_is_an_error(void **state)
{
    (void)state;
    int fds[2];
    make_pair(fds);
    close(fds[1]);
    struct frame_queue queue;
    memset(&queue, 0, sizeof queue);
    struct shared_frame *frame = frame_of(10, 3);
    assert_int_equal(frame_queue_push(&queue, frame), 0);
    assert_int_equal(frame_queue_write(&queue, fds[0]), FRAME_QUEUE_ERROR);
    assert_int_equal(frame_queue_bytes(&queue), 10);   /* nothing counted as written */
    frame_queue_clear(&queue);
    assert_int_equal(frame_queue_bytes(&queue), 0);
    assert_int_equal(frame->refcount, 1);               /* clear released the queue's */
    shared_frame_release(frame);
    close(fds[0]);
}

/* A small ring is kept for the next batch; empty frames write nothing. */
static void test_small_ring_kept_and_empty_frames(void **state)
{
    (void)state;
    int fds[2];
    make_pair(fds);
    struct frame_queue queue;
    memset(&queue, 0, sizeof queue);
    struct shared_frame *empty = shared_frame_new(0);
    struct shared_frame *frame = frame_of(5, 9);
    assert_non_null(empty);
    for (unsigned round = 0; round < 50; round++) {
        assert_int_equal(frame_queue_push(&queue, empty), 0);
        assert_int_equal(frame_queue_push(&queue, frame), 0);
        assert_int_equal(frame_queue_push(&queue, empty), 0);
        assert_int_equal(frame_queue_write(&queue, fds[0]), FRAME_QUEUE_EMPTY);
        assert_true(frame_queue_footprint(&queue) > 0);
        uint8_t got[16];
        size_t got_length = 0;
        drain(fds[1], got, sizeof got, &got_length);
        assert_int_equal(got_length, 5);
        assert_memory_equal(got, frame->bytes, 5);
    }
    assert_int_equal(empty->refcount, 1);
    assert_int_equal(frame->refcount, 1);
    frame_queue_clear(&queue);
    assert_int_equal(frame_queue_footprint(&queue), 0);
    shared_frame_release(empty);
    shared_frame_release(frame);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as the daemon does: a closed peer is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_come_out_in_order),
        cmocka_unit_test(test_short_writes_resume),
        cmocka_unit_test(test_closed_peer_is_an_error),
        cmocka_unit_test(test_small_ring_kept_and_empty_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
