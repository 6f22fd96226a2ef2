/* wsload: WebSocket load generator for the broker. One event loop, one
 * process; see bench/README.md.
 *
 *   wsload fanout [options]   1 publisher -> S subscribers on a broadcast route
 *   wsload echo   [options]   C connections doing round trips on an echo route
 *   wsload rooms  [options]   K broadcast rooms of G members, each talking at a rate
 *   wsload idle   [options]   C connections held open, then checked with one echo each
 *
 * Every message starts "SEQ TS " (16 hex digits each: sequence number and
 * CLOCK_MONOTONIC send time in ns) padded with 'x' to the message size, so
 * receivers measure latency, loss and order without any state per message. */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "hist.h"
#include "wsconn.h"

#define STAMP_LEN 34                  /* "%016x %016x " */
#define CONNECTING_MAX 256            /* handshakes in flight at once */
#define PUBLISH_HIGH (256 * 1024)     /* publisher's output kept below this */
#define SENDER_SHIFT 40               /* rooms: seq = member << SENDER_SHIFT | n */
#define ROOMS_TICK_NS 10000000u       /* rooms: members send every 10 ms */
#define SERVER_PIDS_MAX 8             /* -S: a server of several processes */
#define PORTS_MAX 8                   /* -p: connections spread over brokers */

enum scenario { SC_FANOUT, SC_ECHO, SC_ROOMS, SC_IDLE };

struct options {
    const char *scenario;
    enum scenario sc;
    const char *host;
    int ports[PORTS_MAX];  /* connection i goes to ports[i % port_count] */
    int port_count;
    int publisher_port;    /* fanout's publisher; 0 = ports[0] */
    const char *path;
    const char *source;  /* local address to connect from, NULL = any */
    long conns;          /* subscribers (fanout), connections (echo), rooms x members */
    long rooms, members; /* rooms */
    long messages;       /* per run (fanout) or per connection (echo) */
    long size;
    double rate;         /* fanout msg/s, 0 = flat out; rooms: per member */
    double duration;     /* fanout: seconds to send for, replaces messages */
    long window;
    double timeout;
    long server_pid[SERVER_PIDS_MAX]; /* summed over: e.g. nginx master and worker */
    int server_pids;
};

struct peer {
    struct wsconn *c;
    long index;
    uint64_t received;
    uint64_t last_seq;   /* of the previous message, +1; 0 = none yet */
    uint64_t violations;
    uint64_t sent;       /* rooms: messages this member sent */
    uint64_t *last_from; /* rooms: last_seq per member of the room */
    uint64_t t_connect;  /* idle: when its connect started */
};

struct run {
    struct options opt;
    struct event_base *base;
    struct sockaddr_in dst[PORTS_MAX], publisher_dst, src;
    const struct sockaddr_in *srcp;
    long rss_before, rss_open;      /* idle: the server's VmRSS in kB */
    char host[PORTS_MAX][64], publisher_host[64];
    struct peer *peers;
    long opened, started, failed;
    struct peer publisher;
    uint64_t sent, done;        /* fanout: messages sent, and fully delivered */
    uint32_t *acks;             /* fanout: deliveries per in-flight message (ring) */
    uint64_t delivered, violations;
    struct hist lat;
    uint64_t t_start, t_end, t_pump;
    double cpu_start, self_start;
    int sending;
    struct event *tick;
    struct event *hold_end;     /* idle: SIGUSR1 ends the hold early */
    unsigned char *payload;
};

static struct run R;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* utime + stime of pid in seconds, -1 when unreadable. */
static double pid_cpu(long pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');        /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's own CPU seconds: near the wall time means wsload, not the
 * broker, may be what limits the rate. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
         + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS of pid in kB, -1 when unreadable. */
static long pid_rss(long pid)
{
    char path[64], line[256];
    long kb = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* The server's CPU seconds: the sum over its processes (-S), -1 when one is
 * unreadable or none was given. */
static double server_cpu(void)
{
    double sum = 0;
    for (int i = 0; i < R.opt.server_pids; i++) {
        double s = pid_cpu(R.opt.server_pid[i]);
        if (s < 0)
            return -1;
        sum += s;
    }
    return R.opt.server_pids ? sum : -1;
}

/* The server's resident memory in kB, summed the same way. Pages that
 * several of its processes share count once per process, but the
 * differences the report gives do not grow with that. */
static long server_rss(void)
{
    long sum = 0;
    for (int i = 0; i < R.opt.server_pids; i++) {
        long kb = pid_rss(R.opt.server_pid[i]);
        if (kb < 0)
            return -1;
        sum += kb;
    }
    return R.opt.server_pids ? sum : -1;
}

static uint64_t hex16(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        unsigned ch = p[i];
        v = (v << 4) | (ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    return v;
}

/* Writes seq and the send time into the payload's stamp. */
static void stamp(unsigned char *p, uint64_t seq)
{
    char tmp[STAMP_LEN + 1];
    snprintf(tmp, sizeof tmp, "%016" PRIx64 " %016" PRIx64 " ", seq, now_ns());
    memcpy(p, tmp, STAMP_LEN);
}

/* Where p keeps the previous seq + 1 from the sender of seq: one slot per
 * room member in rooms, one in all for the others. */
static uint64_t *peer_last(struct peer *p, uint64_t *seq)
{
    if (R.opt.sc != SC_ROOMS)
        return &p->last_seq;
    uint64_t from = *seq >> SENDER_SHIFT;
    *seq &= ((uint64_t)1 << SENDER_SHIFT) - 1;
    return from < (uint64_t)R.opt.members ? &p->last_from[from] : NULL;
}

/* Checks a received stamp: latency, order. Returns its seq. */
static uint64_t peer_receive(struct peer *p, const unsigned char *head, size_t len)
{
    if (len < STAMP_LEN) {
        p->violations++;
        return UINT64_MAX;
    }
    uint64_t seq = hex16(head), ts = hex16(head + 17), t = now_ns();
    hist_add(&R.lat, t > ts ? t - ts : 0);
    uint64_t *last = peer_last(p, &seq);
    if (!last || seq + 1 <= *last)
        p->violations++;
    else
        *last = seq + 1;
    p->received++;
    R.delivered++;
    return seq;
}

static void finish(void)
{
    if (!R.t_end)
        R.t_end = now_ns();
    event_base_loopbreak(R.base);
}

/* ---------------------------------------------------------------- fanout */

static int fanout_all_sent(void)
{
    if (R.opt.duration > 0)
        return !R.sending;
    return R.sent >= (uint64_t)R.opt.messages;
}

/* How many more the publisher may send now: the window, the rate and the
 * publisher's own output buffer all bound it. */
static uint64_t fanout_budget(void)
{
    if (fanout_all_sent() || wsconn_pending(R.publisher.c) >= PUBLISH_HIGH)
        return 0;
    uint64_t room = R.done + (uint64_t)R.opt.window - R.sent;
    if (R.opt.duration <= 0 && (uint64_t)R.opt.messages - R.sent < room)
        room = (uint64_t)R.opt.messages - R.sent;
    if (R.opt.rate > 0) {
        double due = R.opt.rate * (double)(now_ns() - R.t_start) / 1e9;
        uint64_t allowed = due > (double)R.sent ? (uint64_t)due - R.sent : 0;
        if (allowed < room)
            room = allowed;
    }
    return room;
}

static void fanout_pump(void)
{
    for (uint64_t n = fanout_budget(); n > 0; n--) {
        R.acks[R.sent % (uint64_t)R.opt.window] = 0;
        stamp(R.payload, R.sent);
        wsconn_send_text(R.publisher.c, R.payload, (size_t)R.opt.size);
        R.sent++;
    }
}

static void fanout_check_done(void)
{
    if (fanout_all_sent() && R.done >= R.sent)
        finish();
}

static void fanout_message(struct wsconn *c, const unsigned char *head, size_t len)
{
    struct peer *p = wsconn_user(c);
    if (p == &R.publisher)
        return;                             /* its own messages coming back */
    uint64_t seq = peer_receive(p, head, len);
    if (seq >= R.sent || seq + (uint64_t)R.opt.window < R.sent)
        return;
    uint32_t *a = &R.acks[seq % (uint64_t)R.opt.window];
    if (++*a == (uint32_t)R.opt.conns) {
        while (R.done < R.sent && R.acks[R.done % (uint64_t)R.opt.window] >= (uint32_t)R.opt.conns)
            R.done++;
        fanout_pump();
        fanout_check_done();
    }
}

static void fanout_drained(struct wsconn *c)
{
    (void)c;
    fanout_pump();
}

/* ---------------------------------------------------------------- idle */

/* The hold is over: every connection proves it is still there. */
static void idle_check(void)
{
    if (!R.sending)
        return;
    R.sending = 0;
    for (long i = 0; i < R.opt.conns; i++) {
        stamp(R.payload, 0);
        wsconn_send_text(R.peers[i].c, R.payload, (size_t)R.opt.size);
        R.sent++;
    }
}

/* SIGUSR1: whoever started several wsload processes has measured the
 * server while all of them held their connections. */
static void idle_hold_end(evutil_socket_t sig, short what, void *arg)
{
    (void)sig; (void)what; (void)arg;
    idle_check();
}

/* Everybody is connected: says so on stderr (a line to wait for when
 * several processes share the load) and holds until -d or SIGUSR1. */
static void idle_hold(void)
{
    R.rss_open = server_rss();
    /* Caught before it is announced: a SIGUSR1 right after the line must
     * not find the default action (terminate) still in place. */
    R.hold_end = evsignal_new(R.base, SIGUSR1, idle_hold_end, NULL);
    if (R.hold_end)
        event_add(R.hold_end, NULL);
    fprintf(stderr, "wsload: holding %ld connections\n", R.opt.conns);
    fflush(stderr);
}

static void idle_message(struct wsconn *c, const unsigned char *head, size_t len)
{
    (void)head; (void)len;
    struct peer *p = wsconn_user(c);
    if (p->received++ == 0) {
        R.delivered++;
        if (++R.done == (uint64_t)R.opt.conns)
            finish();
    }
}

/* ---------------------------------------------------------------- rooms */

static int rooms_all_sent(void)
{
    if (R.opt.duration > 0)
        return !R.sending;
    return R.sent >= (uint64_t)R.opt.messages * (uint64_t)R.opt.conns;
}

/* Every member sends what its rate has made due since the start. Member i
 * is i/conns of a period behind member 0, so the members' messages spread
 * over each period instead of all leaving in the same tick. */
static void rooms_pump(uint64_t t)
{
    if (R.t_pump && t - R.t_pump < ROOMS_TICK_NS)
        return;
    R.t_pump = t;
    if (rooms_all_sent())
        return;
    double periods = R.opt.rate * (double)(t - R.t_start) / 1e9 + 1;
    for (long i = 0; i < R.opt.conns; i++) {
        struct peer *p = &R.peers[i];
        double due = periods - (double)i / (double)R.opt.conns;
        if (R.opt.duration <= 0 && due > (double)R.opt.messages)
            due = (double)R.opt.messages;
        while ((double)p->sent < due) {
            stamp(R.payload, (uint64_t)(i % R.opt.members) << SENDER_SHIFT | p->sent);
            wsconn_send_text(p->c, R.payload, (size_t)R.opt.size);
            p->sent++;
            R.sent++;
        }
    }
}

static void rooms_check_done(void)
{
    if (rooms_all_sent() && R.delivered >= R.sent * (uint64_t)R.opt.members)
        finish();
}

static void rooms_message(struct wsconn *c, const unsigned char *head, size_t len)
{
    peer_receive(wsconn_user(c), head, len);
    if (R.delivered >= R.sent * (uint64_t)R.opt.members)
        rooms_check_done();
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    uint64_t t = now_ns();
    if (R.opt.duration > 0 && R.sending && (double)(t - R.t_start) / 1e9 >= R.opt.duration) {
        if (R.opt.sc == SC_IDLE)
            idle_check();
        R.sending = 0;
    }
    if (R.opt.timeout > 0 && (double)(t - R.t_start) / 1e9 >= R.opt.timeout + R.opt.duration) {
        fprintf(stderr, "wsload: timed out, counting what has not arrived as lost\n");
        finish();
        return;
    }
    if (R.opt.sc == SC_FANOUT) {
        fanout_pump();
        fanout_check_done();
    } else if (R.opt.sc == SC_ROOMS) {
        rooms_pump(t);
        rooms_check_done();
    }
}

/* ---------------------------------------------------------------- echo */

static void echo_send(struct peer *p)
{
    stamp(R.payload, p->received);
    wsconn_send_text(p->c, R.payload, (size_t)R.opt.size);
}

static void echo_message(struct wsconn *c, const unsigned char *head, size_t len)
{
    struct peer *p = wsconn_user(c);
    peer_receive(p, head, len);
    if (p->received < (uint64_t)R.opt.messages)
        echo_send(p);
    else if (++R.done == (uint64_t)R.opt.conns)
        finish();
}

/* ---------------------------------------------------------------- setup */

static const struct wsconn_handlers *handlers(void);

static void start_more(void)
{
    while (R.started < R.opt.conns && R.started - R.opened - R.failed < CONNECTING_MAX) {
        struct peer *p = &R.peers[R.started];
        p->index = R.started++;
        char path[512];
        if (R.opt.sc == SC_ROOMS)
            snprintf(path, sizeof path, "%s-%ld", R.opt.path, p->index / R.opt.members);
        else
            snprintf(path, sizeof path, "%s", R.opt.path);
        p->t_connect = now_ns();
        int to = (int)(p->index % R.opt.port_count);
        p->c = wsconn_start(R.base, &R.dst[to], R.srcp, R.host[to], path, handlers(), p);
        if (!p->c) {
            perror("wsload: socket");
            R.failed++;
        }
    }
}

/* Everybody is connected: the measurement starts. */
static void begin(void)
{
    R.cpu_start = server_cpu();
    R.self_start = self_cpu();
    R.t_start = now_ns();
    R.sending = 1;
    struct timeval ms = { 0, 1000 };
    R.tick = event_new(R.base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(R.tick, &ms);
    if (R.opt.sc == SC_FANOUT) {
        fanout_pump();
    } else if (R.opt.sc == SC_ROOMS) {
        rooms_pump(R.t_start);
    } else if (R.opt.sc == SC_IDLE) {
        idle_hold();
    } else {
        for (long i = 0; i < R.opt.conns; i++)
            echo_send(&R.peers[i]);
    }
}

static void on_open(struct wsconn *c)
{
    struct peer *p = wsconn_user(c);
    if (p == &R.publisher) {
        wsconn_on_drain(c, PUBLISH_HIGH / 2, fanout_drained);
        begin();
        return;
    }
    R.opened++;
    if (R.opt.sc == SC_IDLE)
        hist_add(&R.lat, now_ns() - p->t_connect);
    start_more();
    if (R.opened < R.opt.conns)
        return;
    if (R.opt.sc == SC_FANOUT)
        R.publisher.c = wsconn_start(R.base, &R.publisher_dst, R.srcp, R.publisher_host,
                                     R.opt.path, handlers(), &R.publisher);
    else
        begin();
}

static void on_message(struct wsconn *c, const unsigned char *head, size_t len)
{
    if (R.opt.sc == SC_FANOUT)
        fanout_message(c, head, len);
    else if (R.opt.sc == SC_ROOMS)
        rooms_message(c, head, len);
    else if (R.opt.sc == SC_IDLE)
        idle_message(c, head, len);
    else
        echo_message(c, head, len);
}

static void on_fail(struct wsconn *c, const char *why)
{
    struct peer *p = wsconn_user(c);
    fprintf(stderr, "wsload: connection %ld: %s\n", p == &R.publisher ? -1L : p->index, why);
    R.failed++;
    finish();
}

static const struct wsconn_handlers *handlers(void)
{
    static const struct wsconn_handlers h = { on_open, on_message, on_fail };
    return &h;
}

/* ---------------------------------------------------------------- report */


/* Idle: what the open connections cost the server in memory; the
 * percentiles above are the upgrade times (connect to 101). */
static void report_idle(void)
{
    long per = R.rss_before >= 0 && R.rss_open >= 0
        ? (R.rss_open - R.rss_before) * 1024 / R.opt.conns : -1;
    printf(" rss_before_kb=%ld rss_open_kb=%ld rss_per_conn_b=%ld", R.rss_before, R.rss_open, per);
}

static void report(void)
{
    double secs = (double)(R.t_end - R.t_start) / 1e9;
    double cpu_end = server_cpu();
    double self = self_cpu() - R.self_start;
    double cpu = R.cpu_start >= 0 && cpu_end >= 0 ? cpu_end - R.cpu_start : -1;
    uint64_t expected = R.opt.sc == SC_FANOUT ? R.sent * (uint64_t)R.opt.conns
        : R.opt.sc == SC_ROOMS ? R.sent * (uint64_t)R.opt.members
        : R.opt.sc == SC_IDLE ? (uint64_t)R.opt.conns
        : (uint64_t)R.opt.messages * (uint64_t)R.opt.conns;
    uint64_t sent = R.opt.sc == SC_ECHO ? expected : R.sent;
    uint64_t lost = expected > R.delivered ? expected - R.delivered : 0;
    for (long i = 0; i < R.opt.conns; i++)
        R.violations += R.peers[i].violations;
    double rate = secs > 0 ? (double)R.delivered / secs : 0;
    double us[4] = { hist_quantile(&R.lat, 0.5) / 1e3, hist_quantile(&R.lat, 0.99) / 1e3,
                     hist_quantile(&R.lat, 0.999) / 1e3, R.lat.max / 1e3 };
    printf("| scenario | conns | size | sent | delivered | seconds | delivered/s |"
           " p50 us | p99 us | p999 us | max us | lost | order | server cpu s | delivered/cpu s | wsload cpu s |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    printf("| %s | %ld | %ld | %" PRIu64 " | %" PRIu64 " | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f |"
           " %" PRIu64 " | %" PRIu64 " | %.2f | %.0f | %.2f |\n",
           R.opt.scenario, R.opt.conns, R.opt.size,
           sent, R.delivered, secs, rate,
           us[0], us[1], us[2], us[3], lost, R.violations, cpu, cpu > 0 ? R.delivered / cpu : 0, self);
    printf("scenario=%s conns=%ld size=%ld sent=%" PRIu64 " delivered=%" PRIu64 " seconds=%.3f"
           " rate=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f lost=%" PRIu64
           " order_violations=%" PRIu64 " failed=%ld server_cpu_s=%.3f per_cpu_s=%.0f wsload_cpu_s=%.3f server_rss_kb=%ld",
           R.opt.scenario, R.opt.conns, R.opt.size,
           sent, R.delivered, secs, rate,
           us[0], us[1], us[2], us[3], lost, R.violations, R.failed, cpu,
           cpu > 0 ? R.delivered / cpu : 0, self, server_rss());
    if (R.opt.sc == SC_IDLE)
        report_idle();
    printf("\n");
}

/* ---------------------------------------------------------------- options */

static void usage(void)
{
    fprintf(stderr,
            "usage: wsload fanout|echo|rooms|idle [options]\n"
            "  -H, --host ADDR       broker's IPv4 address (127.0.0.1)\n"
            "  -p, --port N[,N...]   broker's port (8080); with several (up to %d), the\n"
            "                        connections take turns (brokers of one cluster)\n"
            "      --publisher-port N  fanout: the publisher's broker (the first -p)\n"
            "  -P, --path PATH       route (/chat/bench for fanout, /echo for echo;\n"
            "                        rooms: room k is PATH-k, /chat/bench by default)\n"
            "  -s, --source ADDR     local IPv4 address to connect from (any)\n"
            "  -c, --conns N         subscribers (fanout, 100) or connections (echo 10, idle 1000)\n"
            "  -k, --rooms K         rooms: rooms (10)\n"
            "  -g, --members G       rooms: members of each room, all talking, 1..1000 (10)\n"
            "  -n, --messages N      messages sent (fanout), round trips per connection (echo)\n"
            "                        or messages per member (rooms) (1000)\n"
            "  -d, --duration SECS   fanout, rooms: send for this long instead of -n messages;\n"
            "                        idle: hold the connections this long, or until\n"
            "                        SIGUSR1 (10)\n"
            "  -b, --size BYTES      message size, %d..%u (64)\n"
            "  -r, --rate N          fanout: messages per second, 0 = flat out (0);\n"
            "                        rooms: messages per second of each member (10)\n"
            "  -w, --window N        fanout: messages not yet delivered to all, at most (64)\n"
            "  -t, --timeout SECS    give up this long after the start (60)\n"
            "  -S, --server-pid PID  report this process's CPU time and memory; several\n"
            "                        (PID,PID or -S again, up to %d) are added up\n",
            PORTS_MAX, STAMP_LEN, WSCONN_PAYLOAD_MAX, SERVER_PIDS_MAX);
    exit(2);
}

/* The defaults of a scenario; usage() for an unknown one. */
static void parse_scenario(const char *name, struct options *o)
{
    *o = (struct options){ .scenario = name, .host = "127.0.0.1", .ports = { 8080 }, .port_count = 1,
                           .path = "/chat/bench", .conns = 100, .rooms = 10, .members = 10,
                           .messages = 1000, .size = 64, .window = 64, .timeout = 60 };
    if (!strcmp(name, "fanout")) {
        o->sc = SC_FANOUT;
    } else if (!strcmp(name, "echo")) {
        o->sc = SC_ECHO;
        o->path = "/echo";
        o->conns = 10;
    } else if (!strcmp(name, "idle")) {
        o->sc = SC_IDLE;
        o->path = "/echo";
        o->conns = 1000;
        o->duration = 10;
    } else if (!strcmp(name, "rooms")) {
        o->sc = SC_ROOMS;
        o->rate = 10;
    } else {
        usage();
    }
}

/* A TCP port, or usage(). */
static int parse_port(const char *text)
{
    char *end;
    long port = strtol(text, &end, 10);
    if (end == text || (*end && *end != ',') || port < 1 || port > 65535)
        usage();
    return (int)port;
}

/* -p PORT[,PORT...] */
static void parse_ports(const char *list, struct options *o)
{
    o->port_count = 0;
    const char *next = list;
    do {
        if (o->port_count == PORTS_MAX)
            usage();
        o->ports[o->port_count++] = parse_port(next);
        next = strchr(next, ',');
    } while (next != NULL && *++next != '\0');
    if (list[strlen(list) - 1] == ',')
        usage();
}

/* -S PID[,PID...], also given several times. */
static void parse_pids(const char *list, struct options *o)
{
    char *end;
    do {
        long pid = strtol(list, &end, 10);
        if (end == list || pid <= 0 || o->server_pids == SERVER_PIDS_MAX || (*end && *end != ','))
            usage();
        o->server_pid[o->server_pids++] = pid;
        list = end + 1;
    } while (*end == ',');
}

static void parse(int argc, char **argv, struct options *o)
{
    static const struct option longs[] = {
        { "host", 1, 0, 'H' }, { "port", 1, 0, 'p' }, { "path", 1, 0, 'P' },
        { "conns", 1, 0, 'c' }, { "messages", 1, 0, 'n' }, { "duration", 1, 0, 'd' },
        { "size", 1, 0, 'b' }, { "rate", 1, 0, 'r' }, { "window", 1, 0, 'w' },
        { "timeout", 1, 0, 't' }, { "server-pid", 1, 0, 'S' }, { "rooms", 1, 0, 'k' },
        { "members", 1, 0, 'g' }, { "source", 1, 0, 's' },
        { "publisher-port", 1, 0, 'u' }, { 0, 0, 0, 0 } };
    if (argc < 2)
        usage();
    parse_scenario(argv[1], o);
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "H:p:P:c:n:d:b:r:w:t:S:k:g:s:", longs, NULL)) != -1) {
        switch (ch) {
        case 'H': o->host = optarg; break;
        case 'p': parse_ports(optarg, o); break;
        case 'u': o->publisher_port = parse_port(optarg); break;
        case 'P': o->path = optarg; break;
        case 'c': o->conns = atol(optarg); break;
        case 'n': o->messages = atol(optarg); break;
        case 'd': o->duration = atof(optarg); break;
        case 'b': o->size = atol(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'w': o->window = atol(optarg); break;
        case 't': o->timeout = atof(optarg); break;
        case 'S': parse_pids(optarg, o); break;
        case 'k': o->rooms = atol(optarg); break;
        case 'g': o->members = atol(optarg); break;
        case 's': o->source = optarg; break;
        default: usage();
        }
    }
    if (o->sc == SC_ROOMS && o->rooms >= 1 && o->members >= 1 && o->rooms <= 100000
        && o->members <= 1000)
        o->conns = o->rooms * o->members;
    if (optind != argc || o->conns < 1 || o->conns > 100000
        || o->messages < 1 || o->size < STAMP_LEN || o->size > (long)WSCONN_PAYLOAD_MAX
        || o->window < 1 || o->window > 1000000 || o->rate < 0 || o->duration < 0
        || o->rooms < 1 || o->members < 1 || o->members > 1000 || (o->sc == SC_ROOMS && o->rate <= 0) || (o->sc == SC_IDLE && o->duration <= 0))
        usage();
}

/* The broker at -H's address and port; host is its Host header. */
static void set_destination(struct sockaddr_in *dst, char host[64], int port)
{
    dst->sin_family = AF_INET;
    dst->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, R.opt.host, &dst->sin_addr) != 1)
        usage();
    snprintf(host, 64, "%s:%d", R.opt.host, port);
}

int main(int argc, char **argv)
{
    parse(argc, argv, &R.opt);
    for (int i = 0; i < R.opt.port_count; i++)
        set_destination(&R.dst[i], R.host[i], R.opt.ports[i]);
    set_destination(&R.publisher_dst, R.publisher_host,
                    R.opt.publisher_port ? R.opt.publisher_port : R.opt.ports[0]);
    if (R.opt.source) {
        R.src.sin_family = AF_INET;
        if (inet_pton(AF_INET, R.opt.source, &R.src.sin_addr) != 1)
            usage();
        R.srcp = &R.src;
    }
    R.base = event_base_new();
    R.peers = calloc((size_t)R.opt.conns, sizeof *R.peers);
    R.acks = calloc((size_t)R.opt.window, sizeof *R.acks);
    R.payload = malloc((size_t)R.opt.size);
    if (!R.base || !R.peers || !R.acks || !R.payload)
        return 1;
    uint64_t *last_from = NULL;
    if (R.opt.sc == SC_ROOMS) {
        last_from = calloc((size_t)R.opt.conns * (size_t)R.opt.members, sizeof *last_from);
        if (!last_from)
            return 1;
        for (long i = 0; i < R.opt.conns; i++)
            R.peers[i].last_from = last_from + i * R.opt.members;
    }
    memset(R.payload, 'x', (size_t)R.opt.size);
    hist_init(&R.lat);
    R.publisher.index = -1;
    R.rss_before = server_rss();
    start_more();
    event_base_dispatch(R.base);
    if (R.t_start)
        report();
    else
        fprintf(stderr, "wsload: could not set up the connections\n");
    for (long i = 0; i < R.opt.conns; i++)
        wsconn_free(R.peers[i].c);
    wsconn_free(R.publisher.c);
    if (R.tick)
        event_free(R.tick);
    if (R.hold_end)
        event_free(R.hold_end);
    event_base_free(R.base);
    free(R.peers);
    free(R.acks);
    free(R.payload);
    free(last_from);
    return R.failed || !R.t_start ? 1 : 0;
}
