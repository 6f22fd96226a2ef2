/* notify — readiness and status messages to the service manager.
 *
 * Speaks the sd_notify datagram protocol directly: one datagram of
 * newline-separated VAR=value assignments to the Unix socket named by
 * $NOTIFY_SOCKET ("/path", or "@name" in the abstract namespace). */
#ifndef WSBROKER_NOTIFY_H
#define WSBROKER_NOTIFY_H

/* Sends state (e.g. "READY=1", "STOPPING=1") as one datagram.
 * Returns 0 when sent, 1 when NOTIFY_SOCKET is unset (not started by
 * systemd: nothing to do), -1 on error with errno set (invalid or
 * unreachable socket). The environment is left as it is. */
int notify_send(const char *state);

/* printf-style notify_send, e.g. notify_sendf("STATUS=%zu connections", n).
 * Same results; a message longer than NOTIFY_MESSAGE_MAX - 1 bytes is not
 * sent (-1, errno EMSGSIZE). */
int notify_sendf(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* "RELOADING=1" with MONOTONIC_USEC (CLOCK_MONOTONIC in microseconds), which
 * systemd >= 253 requires to accept a reload notification and older
 * versions ignore. Send READY=1 when the reload is over. */
int notify_reloading(void);

#define NOTIFY_MESSAGE_MAX 4096

#endif
