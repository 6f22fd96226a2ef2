#include "wsconn.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

enum wsconn_state { WSCONN_UPGRADING, WSCONN_OPEN, WSCONN_DEAD };

struct wsconn {
    struct bufferevent *bev;
    const struct wsconn_handlers *h;
    void *user;
    enum wsconn_state state;
    unsigned char mask[4];
    void (*drained)(struct wsconn *c);
    /* a fragmented message being received */
    int in_fragments;
    size_t frag_len;
    size_t frag_head_len;
    unsigned char frag_head[WSCONN_HEAD_MAX];
};

/* One frame at a time is built here before being copied out. */
static unsigned char wsconn_frame_buf[14 + WSCONN_PAYLOAD_MAX];

static void wsconn_random(void *buf, size_t len)
{
    if (getrandom(buf, len, 0) != (ssize_t)len) {
        unsigned char *p = buf;                 /* never expected; still random enough for a key */
        for (size_t i = 0; i < len; i++)
            p[i] = (unsigned char)rand();
    }
}

static void wsconn_base64(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len) v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static void wsconn_die(struct wsconn *c, const char *why)
{
    if (c->state == WSCONN_DEAD)
        return;
    c->state = WSCONN_DEAD;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->h->fail(c, why);
}

/* Queues a frame with the given opcode; control frames too. */
static void wsconn_queue(struct wsconn *c, unsigned opcode, const unsigned char *p, size_t len)
{
    unsigned char *f = wsconn_frame_buf;
    size_t n = 0;
    f[n++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        f[n++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        f[n++] = 0x80 | 126;
        f[n++] = (unsigned char)(len >> 8);
        f[n++] = (unsigned char)len;
    } else {
        f[n++] = 0x80 | 127;
        for (int s = 56; s >= 0; s -= 8)
            f[n++] = (unsigned char)((uint64_t)len >> s);
    }
    memcpy(f + n, c->mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        f[n + i] = p[i] ^ c->mask[i & 3];
    evbuffer_add(bufferevent_get_output(c->bev), f, n + len);
}

int wsconn_send_text(struct wsconn *c, const unsigned char *payload, size_t len)
{
    if (c->state != WSCONN_OPEN || len > WSCONN_PAYLOAD_MAX)
        return -1;
    wsconn_queue(c, 0x1, payload, len);
    return 0;
}

/* Parses the header at the front of in: 1 and fills the fields when whole,
 * 0 when more bytes are needed. */
static int wsconn_header(struct evbuffer *in, unsigned *b0, size_t *hlen, uint64_t *plen, int *masked)
{
    unsigned char h[14];
    size_t have = evbuffer_copyout(in, h, sizeof h);
    if (have < 2)
        return 0;
    *b0 = h[0];
    *masked = (h[1] & 0x80) != 0;
    uint64_t len = h[1] & 0x7f;
    size_t n = 2;
    if (len == 126 || len == 127) {
        size_t ext = len == 126 ? 2 : 8;
        if (have < 2 + ext)
            return 0;
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = (len << 8) | h[2 + i];
        n += ext;
    }
    if (*masked)
        n += 4;
    *hlen = n;
    *plen = len;
    return 1;
}

/* A control frame: ping is answered, close ends the connection. */
static void wsconn_control(struct wsconn *c, unsigned opcode, const unsigned char *p, size_t len)
{
    if (opcode == 0x9)
        wsconn_queue(c, 0xA, p, len);
    else if (opcode == 0x8) {
        wsconn_queue(c, 0x8, p, len < 2 ? len : 2);
        wsconn_die(c, "closed by server");
    }
}

/* A data frame of len bytes sits at the front of in (header gone). */
static void wsconn_data(struct wsconn *c, unsigned b0, struct evbuffer *in, size_t len)
{
    unsigned char head[WSCONN_HEAD_MAX];
    size_t hl = evbuffer_copyout(in, head, len < sizeof head ? len : sizeof head);
    evbuffer_drain(in, len);
    int fin = (b0 & 0x80) != 0;
    if ((b0 & 0x0f) != 0 || !c->in_fragments) {   /* first frame of a message */
        c->frag_len = 0;
        c->frag_head_len = hl;
        memcpy(c->frag_head, head, hl);
    } else if (c->frag_head_len < sizeof c->frag_head) {
        size_t room = sizeof c->frag_head - c->frag_head_len;
        size_t take = hl < room ? hl : room;
        memcpy(c->frag_head + c->frag_head_len, head, take);
        c->frag_head_len += take;
    }
    c->frag_len += len;
    c->in_fragments = !fin;
    if (fin)
        c->h->message(c, c->frag_head, c->frag_len);
}

/* Handles every whole frame in the input buffer. */
static void wsconn_frames(struct wsconn *c, struct evbuffer *in)
{
    unsigned b0;
    size_t hlen;
    uint64_t plen;
    int masked;
    while (c->state == WSCONN_OPEN && wsconn_header(in, &b0, &hlen, &plen, &masked)) {
        if (masked || plen > WSCONN_PAYLOAD_MAX + 14) {
            wsconn_die(c, masked ? "masked frame from server" : "frame too large");
            return;
        }
        if (evbuffer_get_length(in) < hlen + plen)
            return;
        evbuffer_drain(in, hlen);
        unsigned opcode = b0 & 0x0f;
        if (opcode >= 0x8) {
            unsigned char ctl[125];
            size_t n = evbuffer_remove(in, ctl, plen < sizeof ctl ? plen : sizeof ctl);
            wsconn_control(c, opcode, ctl, n);
        } else {
            wsconn_data(c, b0, in, (size_t)plen);
        }
    }
}

/* Waits for the whole response head and checks its status is 101. */
static void wsconn_upgrade_reply(struct wsconn *c, struct evbuffer *in)
{
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > 16384)
            wsconn_die(c, "response head too large");
        return;
    }
    char status[13] = { 0 };
    evbuffer_copyout(in, status, 12);
    evbuffer_drain(in, (size_t)end.pos + 4);
    if (strncmp(status, "HTTP/1.1 101", 12) != 0) {
        wsconn_die(c, "upgrade refused");
        return;
    }
    c->state = WSCONN_OPEN;
    c->h->open(c);
}

static void wsconn_read_cb(struct bufferevent *bev, void *arg)
{
    struct wsconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == WSCONN_UPGRADING)
        wsconn_upgrade_reply(c, in);
    if (c->state == WSCONN_OPEN)
        wsconn_frames(c, in);
}

static void wsconn_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct wsconn *c = arg;
    if (c->drained && c->state == WSCONN_OPEN)
        c->drained(c);
}

static void wsconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct wsconn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    wsconn_die(c, (what & BEV_EVENT_EOF) ? "connection closed" : strerror(EVUTIL_SOCKET_ERROR()));
}

static void wsconn_send_upgrade(struct wsconn *c, const char *host, const char *path)
{
    unsigned char raw[16];
    char key[25];
    wsconn_random(raw, sizeof raw);
    wsconn_base64(raw, sizeof raw, key);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n", path, host, key);
}

/* A non-blocking socket bound to src when given. -1 on failure. */
static int wsconn_socket(const struct sockaddr_in *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Without it a message whose last segment is short waits for the
     * peer's delayed ACK (about 40 ms) and latency measures Nagle. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* The port is then picked at connect() for this destination: bind()
     * alone would look for one free on the address as a whole, which gets
     * slow (and runs out) once an earlier run's connections from it are in
     * TIME_WAIT. */
    if (src)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    if (src && bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct wsconn *wsconn_start(struct event_base *base, const struct sockaddr_in *dst,
                            const struct sockaddr_in *src, const char *host,
                            const char *path, const struct wsconn_handlers *h, void *user)
{
    int fd = wsconn_socket(src);
    if (fd < 0)
        return NULL;
    struct wsconn *c = calloc(1, sizeof *c);
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        return NULL;
    }
    c->h = h;
    c->user = user;
    wsconn_random(c->mask, sizeof c->mask);
    bufferevent_setcb(c->bev, wsconn_read_cb, wsconn_write_cb, wsconn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    wsconn_send_upgrade(c, host, path);
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)dst, sizeof *dst) < 0) {
        bufferevent_free(c->bev);
        free(c);
        return NULL;
    }
    return c;
}

size_t wsconn_pending(const struct wsconn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void wsconn_on_drain(struct wsconn *c, size_t low, void (*drained)(struct wsconn *c))
{
    c->drained = drained;
    bufferevent_setwatermark(c->bev, EV_WRITE, low, 0);
}

void *wsconn_user(const struct wsconn *c)
{
    return c->user;
}

void wsconn_free(struct wsconn *c)
{
    if (!c)
        return;
    bufferevent_free(c->bev);
    free(c);
}
