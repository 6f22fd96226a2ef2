"""Load for integration tests: many WebSocket subscribers, numbered
publishing with flow control, slow readers, and the broker's memory.

SubscriberPool runs the subscribers in worker processes (this file run as
a script) so that parsing their frames does not compete with the test
process: each worker opens its share of every group's connections on raw
non-blocking sockets, reads every frame, checks that the numbers arrive in
order without gaps or repeats, and records how long each message took from
its publisher's send to its receipt (CLOCK_MONOTONIC is one clock for every
process on the host). While running, a worker reports the lowest number
every open connection of each group has reached; publish() uses that as
flow control, so a healthy subscriber is never pushed past the broker's
outbound_queue_max however the machine schedules the processes.

A message's payload is its number (u32), its phase (u8, to tell apart the
parts of a test) and its send time (f64 seconds), padded to the size asked
for. Binary frames carry it as is; text frames (the HTTP API) carry
"number phase time" padded with spaces.

SlowReaders are connections that complete the upgrade with a tiny receive
buffer and then never read again, so their share of the fan-out piles up
in the broker's output queue.

The worker protocol: the spec (JSON) on the worker's stdin as one line;
the worker answers "ready" once every connection is upgraded, then
"progress {group: lowest number}" lines as numbers move; "stop" on its
stdin makes it print "result {...}" and exit. Any failure is one "error"
line.
"""

import json
import os
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, accept_key,  # noqa: E402
                      WSClient, build_frame, build_request, http_request, upgrade_headers,
                      ws_connect)
from step2util import API_TOKEN, api_publish  # noqa: E402

STAMP = struct.Struct(">IBd")          # number, phase, send time
ZERO_MASK = b"\0\0\0\0"                 # a valid key that leaves the payload as is
LATENCY_BUCKET = 10000                  # histogram buckets per second (0.1 ms)
PROGRESS_INTERVAL = 0.01
RECV_SIZE = 262144
CONNECT_BATCH = 100                     # handshakes in flight at once per worker


# ---------------------------------------------------------------- payloads

def stamp_binary(number, phase, size):
    head = STAMP.pack(number, phase, time.monotonic())
    return head + b"." * max(0, size - len(head))


def stamp_text(number, phase, size):
    head = "%d %d %.6f" % (number, phase, time.monotonic())
    return head + " " * max(0, size - len(head))


def read_stamp(opcode, payload, start):
    """(number, phase, send time) from a payload at offset start."""
    if opcode == OP_BINARY:
        return STAMP.unpack_from(payload, start)
    fields = bytes(payload[start:start + 48]).split(None, 3)
    return int(fields[0]), int(fields[1]), float(fields[2])


# ---------------------------------------------------------------- the worker

class Conn:
    """One subscriber inside a worker."""

    __slots__ = ("group", "port", "sock", "key", "head", "buf", "upgraded", "count", "first",
                 "last", "errors", "closed", "close_code", "lat")

    def __init__(self, group, sock, key, lat):
        self.group = group
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.key = key
        self.head = b""
        self.buf = b""
        self.upgraded = False
        self.count = 0
        self.first = None
        self.last = 0
        self.errors = []
        self.closed = None          # why the connection ended, or None
        self.close_code = None
        self.lat = lat              # phase -> [seconds], shared by the group

    def error(self, text):
        if len(self.errors) < 5:
            self.errors.append(text)

    def frames(self, data, now):
        """Parses every whole frame of buf + data (server frames: unmasked).
        A whole unfragmented binary frame takes the short way: this loop
        runs for every frame of every subscriber."""
        buf = self.buf + data if self.buf else data
        pos = 0
        end = len(buf)
        unpack = STAMP.unpack_from
        while end - pos >= 2:
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                header = 10
            stop = pos + header + length
            if stop > end:
                break
            first = buf[pos]
            if first == 0x82 and length >= STAMP.size:
                number, phase, sent = unpack(buf, pos + header)
                if number != self.last + 1 and self.first is not None:
                    self.error("%d after %d" % (number, self.last))
                elif self.first is None:
                    self.first = number
                self.last = number
                self.count += 1
                lat = self.lat.get(phase)
                if lat is None:
                    lat = self.lat[phase] = []
                lat.append(now - sent)
            else:
                self.frame(first, buf[pos + header:stop], now)
            pos = stop
        self.buf = buf[pos:]

    def frame(self, first, payload, now):
        opcode = first & 0x0F
        if opcode in (OP_BINARY, OP_TEXT):
            if first & 0xF0 != 0x80:
                self.error("frame with fin/rsv %#x" % first)
            try:
                number, phase, sent = read_stamp(opcode, payload, 0)
            except (struct.error, ValueError, IndexError):
                self.error("unnumbered message %r" % payload[:24])
                return
            if self.first is None:
                self.first = number
            elif number != self.last + 1:
                self.error("%d after %d" % (number, self.last))
            self.last = number
            self.count += 1
            self.lat.setdefault(phase, []).append(now - sent)
        elif opcode == OP_PING:
            self.sock.sendall(build_frame(OP_PONG, payload, mask_key=ZERO_MASK))
        elif opcode == OP_CLOSE:
            if len(payload) >= 2:
                self.close_code = (payload[0] << 8) | payload[1]
            self.closed = "close frame %s" % self.close_code
        elif opcode != OP_PONG:
            self.error("unexpected opcode %#x" % opcode)

    def result(self):
        return {"group": self.group, "port": self.port, "count": self.count, "first": self.first,
                "last": self.last, "errors": self.errors, "closed": self.closed,
                "close_code": self.close_code}


class Worker:
    def __init__(self, spec):
        self.port = spec["port"]
        self.host = spec.get("host", "127.0.0.1")
        self.groups = spec["groups"]          # [{"name", "path", "count"}]
        self.deadline = time.monotonic() + spec.get("connect_timeout", 30)
        self.selector = selectors.DefaultSelector()
        self.conns = []
        self.lats = {g["name"]: {} for g in self.groups}
        self.reported = None
        self.stopping = False

    def out(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # -- connecting

    def pending(self):
        for group in self.groups:
            for _ in range(group["count"]):
                yield group

    def open(self, group):
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        sock.connect((self.host, self.port))
        headers = upgrade_headers(self.port, host=self.host)
        sock.sendall(build_request("GET", group["path"], headers))
        sock.setblocking(False)
        conn = Conn(group["name"], sock, headers["Sec-WebSocket-Key"],
                    self.lats[group["name"]])
        self.conns.append(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn)
        return conn

    def upgrade(self, conn, data):
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > 8192:
                raise RuntimeError("response head too long")
            return
        lines = conn.head[:end].decode("iso-8859-1").split("\r\n")
        status = lines[0].split(" ")
        accept = [l.split(":", 1)[1].strip() for l in lines[1:]
                  if l.lower().startswith("sec-websocket-accept:")]
        if len(status) < 2 or status[1] != "101" or accept != [accept_key(conn.key)]:
            raise RuntimeError("upgrade refused: %r" % conn.head[:end])
        conn.upgraded = True
        rest = conn.head[end + 4:]
        conn.head = b""
        if rest:
            conn.frames(rest, time.monotonic())

    def connect_all(self):
        todo = self.pending()
        waiting = 0
        more = True
        while more or waiting:
            while more and waiting < CONNECT_BATCH:
                group = next(todo, None)
                if group is None:
                    more = False
                    break
                self.open(group)
                waiting += 1
            if time.monotonic() > self.deadline:
                raise RuntimeError("%d upgrades unanswered" % waiting)
            for key, _ in self.selector.select(0.1):
                conn = key.data
                if conn.upgraded:
                    self.read(conn)
                    continue
                data = conn.sock.recv(RECV_SIZE)
                if not data:
                    raise RuntimeError("closed during the upgrade")
                self.upgrade(conn, data)
                if conn.upgraded:
                    waiting -= 1

    # -- running

    def read(self, conn):
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (ConnectionResetError, BrokenPipeError) as exc:
            data = None
            conn.closed = conn.closed or "reset: %s" % exc
        if data:
            conn.frames(data, time.monotonic())
            return
        conn.closed = conn.closed or "EOF"
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def progress(self):
        lowest = {}
        for conn in self.conns:
            if conn.closed is None:
                old = lowest.get(conn.group)
                lowest[conn.group] = conn.last if old is None else min(old, conn.last)
        if lowest != self.reported:
            self.reported = lowest
            self.out("progress " + json.dumps(lowest))

    def command(self):
        line = sys.stdin.readline()
        if not line or line.strip() == "stop":
            self.stopping = True

    def run(self):
        self.connect_all()
        self.selector.register(sys.stdin, selectors.EVENT_READ, None)
        self.out("ready")
        next_report = 0.0
        while not self.stopping:
            for key, _ in self.selector.select(PROGRESS_INTERVAL):
                if key.data is None:
                    self.command()
                else:
                    self.read(key.data)
            now = time.monotonic()
            if now >= next_report:
                self.progress()
                next_report = now + PROGRESS_INTERVAL
        self.out("result " + json.dumps({
            "conns": [c.result() for c in self.conns],
            "hists": {g: {str(p): histogram(lat) for p, lat in phases.items()}
                      for g, phases in self.lats.items()}}))


def histogram(latencies):
    """{bucket: count} of latencies in LATENCY_BUCKET steps."""
    hist = {}
    for seconds in latencies:
        bucket = int(seconds * LATENCY_BUCKET)
        hist[bucket] = hist.get(bucket, 0) + 1
    return hist


def worker_main():
    spec = json.loads(sys.stdin.readline())
    try:
        Worker(spec).run()
    except Exception as exc:           # reported to the parent as one line
        sys.stdout.write("error %s: %s\n" % (type(exc).__name__, exc))
        sys.stdout.flush()
        sys.exit(1)


# ---------------------------------------------------------------- the pool

class Latency:
    """A merged histogram of latencies (0.1 ms buckets)."""

    def __init__(self):
        self.buckets = {}

    def add(self, hist):
        for bucket, count in hist.items():
            bucket = int(bucket)
            self.buckets[bucket] = self.buckets.get(bucket, 0) + count

    @property
    def count(self):
        return sum(self.buckets.values())

    def percentile(self, p):
        """Upper edge, in seconds, of the bucket holding the p-th percentile."""
        total = self.count
        if total == 0:
            raise AssertionError("no latency samples")
        rank = p / 100.0 * total
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return (bucket + 1) / LATENCY_BUCKET
        return (max(self.buckets) + 1) / LATENCY_BUCKET

    def summary(self):
        return "n=%d p50=%.1fms p99=%.1fms max=%.1fms" % (
            self.count, 1000 * self.percentile(50), 1000 * self.percentile(99),
            1000 * self.percentile(100))


class Results:
    """What the workers saw: per connection and per (group, phase) latency."""

    def __init__(self, outputs):
        self.conns = [c for out in outputs for c in out["conns"]]
        self.latencies = {}
        for out in outputs:
            for group, phases in out["hists"].items():
                for phase, hist in phases.items():
                    self.latencies.setdefault((group, int(phase)), Latency()).add(hist)

    def group(self, name):
        return [c for c in self.conns if c["group"] == name]

    def latency(self, group, phases):
        """The latencies of group's messages of one phase or of several."""
        if isinstance(phases, int):
            phases = [phases]
        merged = Latency()
        for phase in phases:
            merged.add(self.latencies.get((group, phase), Latency()).buckets)
        return merged

    def failures(self, group, first, last):
        """Connections of group that did not get first..last exactly once in
        order, each as a short description."""
        bad = []
        for i, c in enumerate(self.group(group)):
            expected = last - first + 1
            if (c["errors"] or c["closed"] or c["count"] != expected or c["first"] != first
                    or c["last"] != last):
                bad.append("#%d: got %d (%s..%s) errors=%s closed=%s" % (
                    i, c["count"], c["first"], c["last"], c["errors"], c["closed"]))
        return bad


class SubscriberPool:
    """Subscribers spread over `processes` worker processes.

    groups: [{"name": ..., "path": ..., "count": ...}]; a group's count is
    split over the workers. A thread per worker takes in its reports as
    they come, so a worker never blocks on a full pipe while the test is
    busy elsewhere. Use as a context manager, or call close()."""

    def __init__(self, port, groups, processes=1, host="127.0.0.1", timeout=30.0):
        self.groups = groups
        self.procs = []
        self.threads = []
        self.changed = threading.Condition()
        self.ready = [False] * processes
        self.lowest = [{} for _ in range(processes)]
        self.outputs = [None] * processes
        self.failed = []
        try:
            for index in range(processes):
                self.start(index, processes, port, host, timeout)
            self._wait(lambda: all(self.ready), timeout, "workers ready")
        except BaseException:
            self.close()
            raise

    def start(self, index, processes, port, host, timeout):
        share = [dict(g, count=g["count"] // processes +
                      (1 if index < g["count"] % processes else 0)) for g in self.groups]
        spec = {"port": port, "host": host, "groups": share, "connect_timeout": timeout}
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.procs.append(proc)
        proc.stdin.write((json.dumps(spec) + "\n").encode())
        proc.stdin.flush()
        thread = threading.Thread(target=self.listen, args=(index, proc), daemon=True)
        thread.start()
        self.threads.append(thread)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def listen(self, index, proc):
        """Runs in a thread: takes in one worker's reports until it exits."""
        for raw in proc.stdout:
            line = raw.decode().rstrip("\n")
            with self.changed:
                if line == "ready":
                    self.ready[index] = True
                elif line.startswith("progress "):
                    self.lowest[index] = json.loads(line[len("progress "):])
                elif line.startswith("result "):
                    self.outputs[index] = json.loads(line[len("result "):])
                else:
                    self.failed.append("load worker %d: %s" % (index, line))
                self.changed.notify_all()
        with self.changed:
            if self.outputs[index] is None:
                self.failed.append("load worker %d exited (status %s)" % (index, proc.wait()))
            self.changed.notify_all()

    def poll(self, timeout=0.0):
        """Waits up to timeout for a report; fails if a worker failed."""
        with self.changed:
            if not self.failed and timeout > 0:
                self.changed.wait(timeout)
            if self.failed:
                raise AssertionError("; ".join(self.failed))

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            with self.changed:
                if predicate():
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("%s: not within %.1f s" % (what, timeout))
            self.poll(min(remaining, 0.1))

    def reached(self, group):
        """The lowest number every open connection of group has reached
        (None when none is open)."""
        with self.changed:
            values = [low[group] for low in self.lowest if group in low]
        return min(values) if values else None

    def wait_reached(self, group, number, timeout):
        """Waits until every open connection of group has number; returns
        False on timeout (the results then tell who is missing what)."""
        try:
            self._wait(lambda: (self.reached(group) or 0) >= number
                       or self.reached(group) is None, timeout, "group %s" % group)
            return True
        except AssertionError:
            if self.failed:
                raise
            return False

    def stop(self, timeout=30.0):
        """Stops the workers and returns their Results."""
        for proc in self.procs:
            try:
                proc.stdin.write(b"stop\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
        self._wait(lambda: all(o is not None for o in self.outputs), timeout, "worker results")
        for proc in self.procs:
            proc.wait(timeout)
        return Results(self.outputs)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            try:
                proc.stdin.close()
            except OSError:
                pass
        for thread in self.threads:
            thread.join(5)
        for proc in self.procs:
            proc.stdout.close()


# ---------------------------------------------------------------- publishing

class Publisher:
    """Sends numbered messages on a broadcast route as masked binary frames
    (a zero mask: valid, and nothing to compute)."""

    def __init__(self, port, path, size=1024, host="127.0.0.1"):
        self.ws = ws_connect(port, path, host=host)
        self.size = size
        self.sent = 0

    def send(self, count, phase=0):
        frames = []
        for _ in range(count):
            self.sent += 1
            frames.append(build_frame(OP_BINARY, stamp_binary(self.sent, phase, self.size),
                                      mask_key=ZERO_MASK))
        self.ws.sock.sendall(b"".join(frames))

    def close(self):
        self.ws.close()


class ApiPublisher:
    """Sends numbered messages with POST /api/publish (text/plain, one
    HTTP connection each), so the receivers get text frames."""

    def __init__(self, port, channel, size=64, token=API_TOKEN):
        self.port = port
        self.channel = channel
        self.size = size
        self.token = token
        self.sent = 0

    def send(self, count, phase=0):
        for _ in range(count):
            self.sent += 1
            response = api_publish(self.port, self.channel, token=self.token,
                                   text=stamp_text(self.sent, phase, self.size))
            assert response.status == 202, response

    def close(self):
        pass


class Stream:
    """count more messages from publisher to the subscribers of group, at
    about rate per second, in bursts of burst messages (a burst reaches
    each subscriber in one write, as a busy channel's messages would), and
    never more than window ahead of the slowest open subscriber of group."""

    def __init__(self, group, publisher, count, rate, window, phase=0, burst=10):
        self.group = group
        self.publisher = publisher
        self.count = count
        self.rate = rate
        self.window = window
        self.phase = phase
        self.burst = burst
        self.first = publisher.sent
        self.target = publisher.sent + count
        self.last_reached = None
        self.last_move = None

    @property
    def done(self):
        return self.publisher.sent >= self.target

    def turn(self, pool, started, now, stall):
        """Sends what is due; returns whether it sent anything."""
        reached = pool.reached(self.group) or 0
        if reached != self.last_reached:
            self.last_reached, self.last_move = reached, now
        if now - self.last_move > stall:
            raise AssertionError("group %s stuck at %d of %d sent" %
                                 (self.group, reached, self.publisher.sent))
        due = self.first + min(self.count, int((now - started) * self.rate) + 1)
        allowed = min(due, reached + self.window) - self.publisher.sent
        if allowed <= 0 or allowed < min(self.burst, self.target - self.publisher.sent):
            return False
        self.publisher.send(allowed, self.phase)
        return True


def publish(pool, streams, stall=30.0, between=None):
    """Runs the streams side by side until each has sent its count.
    between(), when given, runs on every turn of the loop (other load, a
    sampler). Returns the seconds it took; fails when a stream's
    subscribers stop moving for stall seconds."""
    started = time.monotonic()
    for stream in streams:
        stream.last_move = started
    while not all(stream.done for stream in streams):
        pool.poll()
        now = time.monotonic()
        sent = False
        for stream in streams:
            if not stream.done:
                sent = stream.turn(pool, started, now, stall) or sent
        if not sent:
            pool.poll(0.002)
        if between is not None:
            between()
    return time.monotonic() - started


def publish_paced(pool, group, publisher, count, rate, window, phase=0, burst=10, **kwargs):
    """publish() with one Stream."""
    return publish(pool, [Stream(group, publisher, count, rate, window, phase, burst)],
                   **kwargs)


# ---------------------------------------------------------------- slow readers

class SlowReaders:
    """Connections that upgrade with a small receive buffer, then stop
    reading.

    maxseg sets the MSS they announce. Over loopback a peer announces about
    64 KiB, and Linux sizes a new connection's send buffer from it (about
    3 x 10 segments of 128 KiB, capped by tcp_wmem[2], 4 MiB by default),
    so the broker's kernel would swallow megabytes for each slow reader
    before its own queue saw any of it. A client across a real network
    announces about 1400 bytes, which starts that buffer near 80 KiB: the
    default emulates that client."""

    def __init__(self, port, path, count, rcvbuf=2048, maxseg=1400, host="127.0.0.1"):
        self.clients = []
        try:
            for _ in range(count):
                self.clients.append(self.connect(port, path, rcvbuf, maxseg, host))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def connect(port, path, rcvbuf, maxseg, host):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        client = WSClient(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if maxseg is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
            sock.settimeout(10)
            sock.connect((host, port))
            response = client.handshake(port, path, host=host)
            if response.status != 101:
                raise AssertionError("upgrade of %s refused: %r" % (path, response))
        except BaseException:
            client.close()
            raise
        return client

    def addresses(self):
        """Their "address:port" as the broker names them in its log."""
        return ["%s:%d" % ws.sock.getsockname()[:2] for ws in self.clients]

    def outcomes(self, timeout=10.0):
        """Reads each connection to its end; one dict per reader: "ended"
        (EOF or reset within timeout), "bytes" read, "frames" whole, the
        "numbers" of the numbered ones, and "close_code" when a close frame
        was among them."""
        sel = selectors.DefaultSelector()
        state = {}
        for ws in self.clients:
            ws.sock.setblocking(False)
            state[ws] = {"ended": False, "bytes": len(ws.buf), "data": bytes(ws.buf)}
            sel.register(ws.sock, selectors.EVENT_READ, ws)
        deadline = time.monotonic() + timeout
        open_count = len(self.clients)
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                ws = key.data
                try:
                    data = ws.sock.recv(RECV_SIZE)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                except BlockingIOError:
                    continue
                st = state[ws]
                if data:
                    st["bytes"] += len(data)
                    st["data"] += data
                    continue
                st["ended"] = True
                sel.unregister(ws.sock)
                open_count -= 1
        sel.close()
        results = []
        for ws in self.clients:
            st = state[ws]
            frames, numbers, close_code = scan_frames(st.pop("data"))
            st.update(frames=frames, numbers=numbers, close_code=close_code)
            results.append(st)
        return results

    def close(self):
        for ws in self.clients:
            ws.close()


def scan_frames(data):
    """(whole frames, numbers of the whole numbered binary frames, close
    code of the last whole close frame or None)."""
    pos = 0
    frames = 0
    numbers = []
    close_code = None
    while len(data) - pos >= 2:
        length = data[pos + 1] & 0x7F
        header = 2
        if length == 126:
            if len(data) - pos < 4:
                break
            length = struct.unpack_from(">H", data, pos + 2)[0]
            header = 4
        elif length == 127:
            if len(data) - pos < 10:
                break
            length = struct.unpack_from(">Q", data, pos + 2)[0]
            header = 10
        if pos + header + length > len(data):
            break
        opcode = data[pos] & 0x0F
        if opcode == OP_CLOSE and length >= 2:
            close_code = struct.unpack_from(">H", data, pos + header)[0]
        elif opcode == OP_BINARY and length >= STAMP.size:
            numbers.append(STAMP.unpack_from(data, pos + header)[0])
        frames += 1
        pos += header + length
    return frames, numbers, close_code


# ---------------------------------------------------------------- the broker

def proc_status_kib(pid, field):
    """A "kB" field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def rss_kib(pid):
    return proc_status_kib(pid, "VmRSS")


def reset_peak_rss(pid):
    """Sets VmHWM back to the current RSS (clear_refs 5), so that a later
    read of VmHWM is the peak since now. False when the kernel refuses."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every interval; peak is the highest seen."""

    def __init__(self, pid, interval=0.005):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = rss_kib(pid)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(5)
        return self.peak


class PeakRss:
    """The highest RSS of a process from now until stop(): sampled, and
    the kernel's own high-water mark (reset here), which also catches a
    peak between two samples."""

    def __init__(self, pid):
        self.pid = pid
        self.hwm_reset = reset_peak_rss(pid)
        self.sampler = RssSampler(pid)
        self.sampler.start()

    def stop(self):
        peak = self.sampler.stop()
        if self.hwm_reset:
            peak = max(peak, proc_status_kib(self.pid, "VmHWM"))
        return peak


def sanitized(binary):
    """Whether binary is built with AddressSanitizer, whose allocator pads
    every block and parks freed ones in a quarantine: its RSS is then no
    measure of what the daemon needs."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


SLOW_READER_LINE = re.compile(r"slow reader (\S+) \S+: (\d+) bytes queued, closing 1008")


def dropped_peers(log_lines):
    """{peer address: bytes queued} of the connections a broker's log says
    it cut off as slow readers."""
    matches = (SLOW_READER_LINE.search(line) for line in log_lines)
    return {m.group(1): int(m.group(2)) for m in matches if m}


def wait_metric(port, name, value, timeout):
    """Waits until the metric reaches value; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = metric(port, name)
        if got >= value or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def metric(port, name):
    """The value of an unlabelled sample of GET /metrics."""
    response = http_request(port, "/metrics")
    assert response.status == 200, response
    for line in response.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker_main()
