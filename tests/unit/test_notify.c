/* Unit tests for the sd_notify sender: the test plays the service manager,
 * binding a Unix datagram socket (by path and in the abstract namespace)
 * and checking the exact datagrams that arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"

struct receiver {
    char directory[64];
    char value[128];   /* what NOTIFY_SOCKET is set to */
    int fd;
};

static int receiver_open(struct receiver *receiver, const struct sockaddr_un *address,
                         socklen_t length)
{
    receiver->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (receiver->fd < 0)
        return -1;
    return bind(receiver->fd, (const struct sockaddr *)address, length);
}

static int setup_path(void **state)
{
    struct receiver *receiver = calloc(1, sizeof(*receiver));
    if (receiver == NULL)
        return -1;
    snprintf(receiver->directory, sizeof(receiver->directory), "/tmp/wsbroker-notify-XXXXXX");
    if (mkdtemp(receiver->directory) == NULL)
        return -1;
    snprintf(receiver->value, sizeof(receiver->value), "%s/notify", receiver->directory);

    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (strlen(receiver->value) >= sizeof(address.sun_path))
        return -1;
    memcpy(address.sun_path, receiver->value, strlen(receiver->value) + 1);
    if (receiver_open(receiver, &address, sizeof(address)) != 0)
        return -1;
    if (setenv("NOTIFY_SOCKET", receiver->value, 1) != 0)
        return -1;
    *state = receiver;
    return 0;
}

static int setup_abstract(void **state)
{
    struct receiver *receiver = calloc(1, sizeof(*receiver));
    if (receiver == NULL)
        return -1;
    snprintf(receiver->value, sizeof(receiver->value), "@wsbroker-test-notify/%ld/%ld",
             (long)getpid(), (long)time(NULL));

    /* The abstract name is exactly the bytes after '@', with no NUL. */
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    size_t length = strlen(receiver->value);
    memcpy(address.sun_path + 1, receiver->value + 1, length - 1);
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    if (receiver_open(receiver, &address, address_length) != 0)
        return -1;
    if (setenv("NOTIFY_SOCKET", receiver->value, 1) != 0)
        return -1;
    *state = receiver;
    return 0;
}

static int teardown(void **state)
{
    struct receiver *receiver = *state;
    unsetenv("NOTIFY_SOCKET");
    if (receiver == NULL)
        return 0;
    if (receiver->fd >= 0)
        close(receiver->fd);
    if (receiver->directory[0] != '\0') {
        unlink(receiver->value);
        rmdir(receiver->directory);
    }
    free(receiver);
    return 0;
}

/* Receives the next datagram without waiting: a Unix datagram is queued
 * by the time sendto returns. */
static void expect_datagram(struct receiver *receiver, const char *expected)
{
    char buffer[NOTIFY_MESSAGE_MAX + 16];
    ssize_t received = recv(receiver->fd, buffer, sizeof(buffer), MSG_DONTWAIT | MSG_TRUNC);
    assert_true(received >= 0);
    assert_int_equal((size_t)received, strlen(expected));
    assert_memory_equal(buffer, expected, (size_t)received);
}

static void expect_no_datagram(struct receiver *receiver)
{
    char buffer[16];
    assert_int_equal(recv(receiver->fd, buffer, sizeof(buffer), MSG_DONTWAIT), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- both address kinds ---- */

static void test_send_ready(void **state)
{
    struct receiver *receiver = *state;
    assert_int_equal(notify_send("READY=1"), 0);
    expect_datagram(receiver, "READY=1");
    assert_int_equal(notify_send("STOPPING=1"), 0);
    expect_datagram(receiver, "STOPPING=1");
    expect_no_datagram(receiver);
}

static void test_sendf(void **state)
{
    struct receiver *receiver = *state;
    assert_int_equal(notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu", 1234567ULL), 0);
    expect_datagram(receiver, "RELOADING=1\nMONOTONIC_USEC=1234567");
    assert_int_equal(notify_sendf("STATUS=%u connections on %s", 3u, "/chat"), 0);
    expect_datagram(receiver, "STATUS=3 connections on /chat");
}

static void test_environment_kept(void **state)
{
    struct receiver *receiver = *state;
    assert_int_equal(notify_send("READY=1"), 0);
    const char *value = getenv("NOTIFY_SOCKET");
    assert_non_null(value);
    assert_string_equal(value, receiver->value);
}

static unsigned long long monotonic_usec(void)
{
    struct timespec now;
    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &now), 0);
    return (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
}

static void test_reloading(void **state)
{
    struct receiver *receiver = *state;
    unsigned long long before = monotonic_usec();
    assert_int_equal(notify_reloading(), 0);
    unsigned long long after = monotonic_usec();

    char buffer[128];
    ssize_t received = recv(receiver->fd, buffer, sizeof(buffer) - 1, MSG_DONTWAIT);
    assert_true(received > 0);
    buffer[received] = '\0';
    static const char prefix[] = "RELOADING=1\nMONOTONIC_USEC=";
    assert_memory_equal(buffer, prefix, sizeof(prefix) - 1);
    const char *digits = buffer + sizeof(prefix) - 1;
    assert_true(digits[0] >= '0' && digits[0] <= '9');
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(digits, &end, 10);
    assert_int_equal(errno, 0);
    assert_int_equal(*end, '\0');
    assert_true(usec >= before && usec <= after);
}

static void test_too_long_not_sent(void **state)
{
    struct receiver *receiver = *state;
    char status[NOTIFY_MESSAGE_MAX];
    memset(status, 'x', sizeof(status) - 1);
    status[sizeof(status) - 1] = '\0';
    errno = 0;
    assert_int_equal(notify_sendf("STATUS=%s", status), -1);
    assert_int_equal(errno, EMSGSIZE);
    expect_no_datagram(receiver);

    /* The longest message that fits is sent whole. */
    status[NOTIFY_MESSAGE_MAX - 1 - strlen("STATUS=")] = '\0';
    assert_int_equal(notify_sendf("STATUS=%s", status), 0);
    char expected[NOTIFY_MESSAGE_MAX];
    memcpy(expected, "STATUS=", 7);
    memcpy(expected + 7, status, strlen(status) + 1);
    expect_datagram(receiver, expected);
}

/* ---- no socket, bad sockets ---- */

static void test_unset(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
    assert_int_equal(notify_send("READY=1"), 1);
    assert_int_equal(notify_sendf("STATUS=%d", 1), 1);
    assert_int_equal(notify_reloading(), 1);
}

static void expect_error(const char *value, int expected_errno)
{
    assert_int_equal(setenv("NOTIFY_SOCKET", value, 1), 0);
    errno = 0;
    assert_int_equal(notify_send("READY=1"), -1);
    assert_int_equal(errno, expected_errno);
    errno = 0;
    assert_int_equal(notify_sendf("STATUS=%d", 1), -1);
    assert_int_equal(errno, expected_errno);
}

static void test_bad_sockets(void **state)
{
    (void)state;
    expect_error("/nonexistent-wsbroker-dir/notify", ENOENT);
    expect_error("relative/notify", EINVAL);
    expect_error("", EINVAL);
    expect_error("@", EINVAL);

    char too_long[sizeof(((struct sockaddr_un *)0)->sun_path) + 2];
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[0] = '/';
    too_long[sizeof(too_long) - 1] = '\0';
    expect_error(too_long, EINVAL);
    too_long[0] = '@';
    expect_error(too_long, EINVAL);

    /* Nobody listening on that abstract name. */
    expect_error("@wsbroker-test-notify/nobody-listens", ECONNREFUSED);
    unsetenv("NOTIFY_SOCKET");
}

static void test_null_state(void **state)
{
    struct receiver *receiver = *state;
    errno = 0;
    assert_int_equal(notify_send(NULL), -1);
    assert_int_equal(errno, EINVAL);
    expect_no_datagram(receiver);
}

/* Every sending test runs once per address kind, named after both. */
#define BOTH(test)                                                  \
    { #test " (path)", test, setup_path, teardown, NULL },          \
    { #test " (abstract)", test, setup_abstract, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_send_ready),
        BOTH(test_sendf),
        BOTH(test_environment_kept),
        BOTH(test_reloading),
        BOTH(test_too_long_not_sent),
        BOTH(test_null_state),
        cmocka_unit_test_teardown(test_unset, teardown),
        cmocka_unit_test_teardown(test_bad_sockets, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
