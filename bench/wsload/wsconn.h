/* wsconn: the client side of one WebSocket connection on a bufferevent:
 * connect, upgrade, read server frames, send masked text frames. Nothing is
 * allocated per message: frames are built in one static buffer and copied
 * into the bufferevent's output, and a received message is handed over as
 * its first WSCONN_HEAD_MAX bytes and its length. */
#ifndef WSLOAD_WSCONN_H
#define WSLOAD_WSCONN_H

#include <stddef.h>
#include <netinet/in.h>

struct event_base;
struct wsconn;

#define WSCONN_HEAD_MAX 64
#define WSCONN_PAYLOAD_MAX (1u << 20)

struct wsconn_handlers {
    /* The server answered 101: frames may be sent. */
    void (*open)(struct wsconn *c);
    /* A whole text or binary message arrived; head holds its first
     * min(len, WSCONN_HEAD_MAX) bytes. */
    void (*message)(struct wsconn *c, const unsigned char *head, size_t len);
    /* The connection failed or was closed; why says how. The connection is
     * dead but not freed: the owner calls wsconn_free. */
    void (*fail)(struct wsconn *c, const char *why);
};

/* Starts connecting to dst (from src when not NULL, e.g. 127.0.0.2) and
 * upgrading on path with Host: host. user is the owner's pointer. NULL
 * when the socket cannot be set up. */
struct wsconn *wsconn_start(struct event_base *base, const struct sockaddr_in *dst,
                            const struct sockaddr_in *src, const char *host,
                            const char *path, const struct wsconn_handlers *h, void *user);
/* Queues one masked text frame; only after open. 0, or -1 when len is
 * past WSCONN_PAYLOAD_MAX or the connection is not open. */
int wsconn_send_text(struct wsconn *c, const unsigned char *payload, size_t len);
/* Bytes queued and not yet written to the socket. */
size_t wsconn_pending(const struct wsconn *c);
/* Calls drained(c) once the output buffer falls to low bytes or less
 * (NULL turns it off). */
void wsconn_on_drain(struct wsconn *c, size_t low, void (*drained)(struct wsconn *c));
void *wsconn_user(const struct wsconn *c);
/* Closes the socket at once and frees c. */
void wsconn_free(struct wsconn *c);

#endif
