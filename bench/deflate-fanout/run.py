#!/usr/bin/env python3
"""deflate-fanout: what permessage-deflate costs the daemon in a 1 -> N fan-out.

One publisher sends M text messages (JSON-ish, SIZE bytes each) to a
broadcast channel with N subscribers, in three runs against a fresh daemon
each:

  none      no subscriber negotiates permessage-deflate
  shared    every subscriber negotiates it with the same window (15 bits):
            the daemon compresses each message once
  windows   every subscriber negotiates it with server_max_window_bits
            cycling 9..15: the daemon compresses each message 7 times

The daemon's CPU time (utime + stime from /proc/PID/stat) is read before the
first and after the last message has reached every subscriber. From
`windows` - `shared` comes the daemon's cost of one extra compression, which
gives the estimated cost of compressing once per subscriber; Python's zlib
at the daemon's default settings gives a second, independent estimate.

Loopback only; every socket is closed and the daemon stopped at the end.
See bench/README.md.
"""

import argparse
import json
import os
import platform
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from wsclient import OP_TEXT, build_frame, ws_connect  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
EXT = "Sec-WebSocket-Extensions"
SCENARIO_TIMEOUT = 120.0

CONFIG = """\
listen = ( {{ address = "127.0.0.1"; port = {port}; }} );
websocket = {{
  max_message_size = 1048576;
  ping_interval = 0;
  handshake_timeout = 30;
  compression = {{ enabled = true; level = {level}; min_size = 256; max_window_bits = 15; }};
}};
limits = {{ max_connections = 10000; outbound_queue_max = 268435456; }};
routes = (
  {{ path = "/sub/:room"; mode = "broadcast"; channel = "bench:{{room}}"; }},
  {{ path = "/pub/:room"; mode = "broadcast"; channel = "bench:{{room}}"; echo_self = false; }}
);
log_level = "warn";
shutdown_timeout = 2;
"""


# ---------------------------------------------------------------- the daemon

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of the process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # fields 14 and 15


class Daemon:
    def __init__(self, binary, workdir, level):
        self.port = free_port()
        self.config = os.path.join(workdir, "bench.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(port=self.port, level=level))
        self.log = open(os.path.join(workdir, "daemon.log"), "ab")
        self.proc = subprocess.Popen([binary, "-f", "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("the daemon exited at start (status %s); see %s" %
                                 (self.proc.returncode, self.log.name))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start listening")
                time.sleep(0.02)

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- subscribers

class Reader:
    """Counts the frames arriving on one subscriber socket without keeping
    their payloads (server frames are unmasked)."""

    def __init__(self, sock, leftover=b""):
        self.sock = sock
        if sock is not None:
            sock.setblocking(False)
        self.header = bytearray()
        self.skip = 0                     # payload bytes of the current frame still due
        self.frames = 0
        self.compressed = 0
        self.payload_bytes = 0
        self.closed = False
        self.chunk = bytearray(262144)
        self._consume(bytes(leftover))    # bytes that came along with the 101

    def _header_need(self):
        if len(self.header) < 2:
            return 2
        short = self.header[1] & 0x7F
        return 4 if short == 126 else 10 if short == 127 else 2

    def _header_done(self):
        head = self.header
        short = head[1] & 0x7F
        if short == 126:
            length = int.from_bytes(head[2:4], "big")
        elif short == 127:
            length = int.from_bytes(head[2:10], "big")
        else:
            length = short
        if head[0] & 0x40:
            self.compressed += 1
        if head[0] & 0x0F == 0x8:
            self.closed = True
        self.payload_bytes += length
        self.header = bytearray()
        if length:
            self.skip = length
        else:
            self.frames += 1

    def _consume(self, data):
        pos, n = 0, len(data)
        while True:
            if self.skip:
                if pos >= n:
                    return
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
                if not self.skip:
                    self.frames += 1
                continue
            need = self._header_need()
            if len(self.header) < need:
                if pos >= n:
                    return
                take = min(need - len(self.header), n - pos)
                self.header += data[pos:pos + take]
                pos += take
                continue
            self._header_done()

    def read(self):
        while True:
            try:
                n = self.sock.recv_into(self.chunk)
            except BlockingIOError:
                return
            if n == 0:
                self.closed = True
                return
            self._consume(memoryview(self.chunk)[:n])


def self_test_reader():
    """Reader._consume on a stream of frames cut into pieces of many sizes."""
    frames = [bytes([0x81, 5]) + b"hello", bytes([0xC1, 126]) + (300).to_bytes(2, "big") +
              b"x" * 300, bytes([0x82, 127]) + (70000).to_bytes(8, "big") + b"y" * 70000,
              bytes([0x81, 0])]
    stream = b"".join(frames)
    for cut in (1, 2, 3, 7, 11, 301, 4096, len(stream)):
        r = Reader(None, stream[:5])
        for i in range(5, len(stream), cut):
            r._consume(stream[i:i + cut])
        assert (r.frames, r.compressed, r.payload_bytes) == (4, 1, 70305), \
            (cut, r.frames, r.compressed, r.payload_bytes)


# ---------------------------------------------------------------- messages

def make_messages(count, size, seed=1):
    """Distinct JSON-ish texts of exactly `size` bytes: chat-like objects."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    out = []
    for n in range(count):
        items = []
        length = 2
        while length < size:
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12)))
            item = json.dumps({"id": n * 1000 + len(items),
                               "user": "user%03d" % rng.randrange(500),
                               "ts": 1790000000 + rng.randrange(10 ** 6), "text": text,
                               "score": round(rng.random() * 100, 3)}, separators=(",", ":"))
            items.append(item)
            length += len(item) + 1
        text = ("[" + ",".join(items) + "]")[:size - 1] + "]"
        out.append(text.encode())
    return out


# ---------------------------------------------------------------- one run

def run(binary, workdir, name, offers, messages, batch, level):
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    daemon = Daemon(binary, directory, level)
    readers = []
    try:
        for offer in offers:
            ws = ws_connect(daemon.port, "/sub/room",
                            headers={EXT: offer} if offer else None, timeout=10)
            agreed = ws.response.header(EXT)
            if bool(agreed) != bool(offer):
                raise SystemExit("%s: offer %r answered with %r" % (name, offer, agreed))
            readers.append(Reader(ws.sock, ws.buf))
        publisher = ws_connect(daemon.port, "/pub/room", timeout=10)
        frames = [build_frame(OP_TEXT, m) for m in messages]
        selector = selectors.DefaultSelector()
        for r in readers:
            selector.register(r.sock, selectors.EVENT_READ, r)

        def pump(target, deadline):
            behind = [r for r in readers if r.frames < target]
            while behind:
                if time.monotonic() > deadline:
                    raise SystemExit("%s: subscribers stalled (%d behind)" % (name, len(behind)))
                for key, _ in selector.select(timeout=1.0):
                    key.data.read()
                    if key.data.closed:
                        raise SystemExit("%s: the daemon closed a subscriber" % name)
                behind = [r for r in behind if r.frames < target]

        deadline = time.monotonic() + SCENARIO_TIMEOUT
        # warm-up message, not counted
        publisher.sock.sendall(frames[0])
        pump(1, deadline)
        base = [(r.frames, r.compressed, r.payload_bytes) for r in readers]
        cpu_before = daemon.cpu()
        wall_before = time.monotonic()
        for start in range(0, len(frames), batch):
            publisher.sock.sendall(b"".join(frames[start:start + batch]))
            pump(1 + min(start + batch, len(frames)), deadline)
        wall = time.monotonic() - wall_before
        cpu = daemon.cpu() - cpu_before
        deliveries = sum(r.frames - b[0] for r, b in zip(readers, base))
        compressed = sum(r.compressed - b[1] for r, b in zip(readers, base))
        payload = sum(r.payload_bytes - b[2] for r, b in zip(readers, base))
        expected = len(messages) * len(readers)
        if deliveries != expected:
            raise SystemExit("%s: %d deliveries, expected %d" % (name, deliveries, expected))
        if compressed != (expected if offers[0] else 0):
            raise SystemExit("%s: %d compressed frames of %d" % (name, compressed, expected))
        publisher.close()
        return {"name": name, "cpu": cpu, "wall": wall, "deliveries": deliveries,
                "payload": payload}
    finally:
        for r in readers:
            r.sock.close()
        daemon.stop()


def python_zlib_cost(messages, level, wbits, repeat=3):
    """Seconds of this process's CPU per compression, the daemon's way: a
    fresh raw deflate stream (level, window wbits, memory level 8) and a
    sync flush for each message. The best of `repeat` passes."""
    best = None
    for _ in range(repeat):
        start = time.process_time()
        for m in messages:
            c = zlib.compressobj(level, zlib.DEFLATED, -wbits, 8)
            c.compress(m)
            c.flush(zlib.Z_SYNC_FLUSH)
        spent = (time.process_time() - start) / len(messages)
        best = spent if best is None else min(best, spent)
    return best


# ---------------------------------------------------------------- main

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("WSBROKER_BIN") or
                        os.path.join(ROOT, "src", "wsbroker"), help="the wsbroker binary")
    parser.add_argument("-n", "--subscribers", type=int, default=200)
    parser.add_argument("-m", "--messages", type=int, default=2000)
    parser.add_argument("-s", "--size", type=int, default=4096, help="message size in bytes")
    parser.add_argument("--batch", type=int, default=50,
                        help="messages sent before waiting for every subscriber")
    parser.add_argument("--level", type=int, default=1, help="websocket.compression.level")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each scenario; the one with the least CPU time counts")
    parser.add_argument("--quick", action="store_true", help="n=50, m=200: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.messages, args.repeat = 50, 200, 1
    if not (1 <= args.subscribers <= 2000 and 1 <= args.messages <= 100000 and
            256 <= args.size <= 1048576 and 0 <= args.level <= 9 and 1 <= args.repeat <= 10):
        parser.error("out of bounds: 1..2000 subscribers, 1..100000 messages, "
                     "256..1048576 bytes, level 0..9, repeat 1..10")
    if not os.access(args.bin, os.X_OK):
        parser.error("no executable daemon at %s (use --bin or WSBROKER_BIN)" % args.bin)
    self_test_reader()

    n, m = args.subscribers, args.messages
    messages = make_messages(m + 1, args.size)       # [0] is the warm-up message
    windows = [9 + i % 7 for i in range(n)]
    scenarios = [
        ("none", [None] * n),
        ("shared", ["permessage-deflate"] * n),
        ("windows", ["permessage-deflate; server_max_window_bits=%d" % w for w in windows]),
    ]
    workdir = tempfile.mkdtemp(prefix="deflate-fanout-")
    results = {}
    try:
        for round_ in range(args.repeat):
            for name, offers in scenarios:      # interleaved, so drifts hit all alike
                print("run %d/%d: %-8s n=%d m=%d size=%d" % (round_ + 1, args.repeat, name, n,
                                                          m, args.size),
                      file=sys.stderr, flush=True)
                r = run(args.bin, os.path.join(workdir, str(round_)), name, offers, messages,
                        args.batch, args.level)
                if name not in results or r["cpu"] < results[name]["cpu"]:
                    results[name] = r
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    sample = messages[1:1 + min(m, 500)]
    python_cost = {w: python_zlib_cost(sample, args.level, w) for w in sorted(set(windows))}
    deliveries = n * m
    none, shared, multi = results["none"], results["shared"], results["windows"]
    # `windows` makes one compression per distinct window, `shared` one (at
    # 15 bits): the difference is the daemon's cost of the extra windows.
    extra = sorted(set(windows) - {15})
    daemon_extra = max(0.0, (multi["cpu"] - shared["cpu"]) / m)          # per message
    python_extra = sum(python_cost[w] for w in extra)                      # per message
    # Small windows cost zlib more than 15 bits does, so the daemon's cost of
    # one 15-bit compression is Python's, scaled by how the daemon compared
    # with Python on the extra windows.
    scale = daemon_extra / python_extra if python_extra else float("nan")
    daemon_15 = python_cost[15] * scale
    per_sub_daemon = shared["cpu"] + (n - 1) * m * daemon_15
    per_sub_python = shared["cpu"] + (n - 1) * m * python_cost[15]

    def us(seconds):
        return seconds / deliveries * 1e6

    def ratio(a, b):
        return a / b if b else float("nan")

    print()
    print("deflate-fanout: %d subscribers, %d messages of %d bytes, level %d; %s, Linux %s" %
          (n, m, args.size, args.level, cpu_model(), platform.release()))
    print()
    print("| run | compressions per message | daemon CPU (s) | CPU per delivery (µs) "
          "| bytes per delivery | wall (s) | vs none | vs shared |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("none: no subscriber negotiates deflate", none, 0),
            ("shared: all negotiate deflate, one window", shared, 1),
            ("windows: server_max_window_bits 9..15 cycling", multi, len(set(windows)))]
    for label, r, per_message in rows:
        print("| %s | %d | %.2f | %.2f | %.0f | %.1f | %.2f× | %.2f× |" % (
            label, per_message, r["cpu"], us(r["cpu"]), r["payload"] / r["deliveries"],
            r["wall"], ratio(r["cpu"], none["cpu"]), ratio(r["cpu"], shared["cpu"])))
    for label, total in (("per subscriber (estimate, daemon-calibrated)", per_sub_daemon),
                         ("per subscriber (estimate, Python zlib)", per_sub_python)):
        print("| %s | %d | %.2f | %.2f | | | %.2f× | %.2f× |" % (
            label, n, total, us(total), ratio(total, none["cpu"]), ratio(total, shared["cpu"])))
    print()
    print("One compression of a %d-byte message, µs: Python zlib %s; the daemon's extra "
          "windows (%s) cost %.0f µs per message against Python's %.0f µs (×%.2f), so one "
          "15-bit compression in the daemon ≈ %.1f µs." % (
              args.size, ", ".join("%d bits %.1f" % (w, c * 1e6) for w, c in python_cost.items()),
              ",".join(str(w) for w in extra), daemon_extra * 1e6, python_extra * 1e6, scale,
              daemon_15 * 1e6))
    print("Shared compression costs %.2f× the uncompressed fan-out; compressing once per "
          "subscriber would cost %.1f× (daemon-calibrated) or %.1f× (Python zlib) the shared "
          "run. CPU times have a resolution of %.0f ms." % (
              ratio(shared["cpu"], none["cpu"]), ratio(per_sub_daemon, shared["cpu"]),
              ratio(per_sub_python, shared["cpu"]), 1000.0 / CLK_TCK))


if __name__ == "__main__":
    main()
