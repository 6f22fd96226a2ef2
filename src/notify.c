/* notify — readiness and status messages to the service manager. */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fills address from a NOTIFY_SOCKET value. An abstract name ("@name") has
 * no terminating NUL: its length is exactly what the address length says,
 * so the length must not include padding or a NUL, or it names another
 * socket. Returns the address length, or 0 for an unusable value. */
static socklen_t notify_address(const char *value, struct sockaddr_un *address)
{
    size_t length = strlen(value);

    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (value[0] == '@') {
        if (length < 2 || length > sizeof(address->sun_path))
            return 0;
        memcpy(address->sun_path, value, length);
        address->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    }
    /* Relative paths would depend on our working directory, not systemd's. */
    if (value[0] != '/' || length >= sizeof(address->sun_path))
        return 0;
    memcpy(address->sun_path, value, length + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
}

static int notify_sendto(const struct sockaddr_un *address, socklen_t address_length,
                         const char *state, size_t length)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;

    ssize_t sent;
    do {
        sent = sendto(fd, state, length, MSG_NOSIGNAL, (const struct sockaddr *)address,
                      address_length);
    } while (sent < 0 && errno == EINTR);

    int saved_errno = errno;
    close(fd);
    if (sent < 0) {
        errno = saved_errno;
        return -1;
    }
    /* A datagram is all or nothing; anything else is not a message. */
    if ((size_t)sent != length) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

int notify_send(const char *state)
{
    const char *value = getenv("NOTIFY_SOCKET");
    if (value == NULL)
        return 1;
    if (state == NULL) {
        errno = EINVAL;
        return -1;
    }

    struct sockaddr_un address;
    socklen_t address_length = notify_address(value, &address);
    if (address_length == 0) {
        errno = EINVAL;
        return -1;
    }
    return notify_sendto(&address, address_length, state, strlen(state));
}

int notify_sendf(const char *format, ...)
{
    /* Not under systemd: skip formatting, as notify_send would. */
    if (getenv("NOTIFY_SOCKET") == NULL)
        return 1;

    char message[NOTIFY_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    int length = vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    if (length < 0)
        return -1;
    /* A cut assignment could change its meaning; send nothing instead. */
    if ((size_t)length >= sizeof(message)) {
        errno = EMSGSIZE;
        return -1;
    }
    return notify_send(message);
}

int notify_reloading(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return -1;
    unsigned long long usec =
        (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000ULL;
    return notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}
