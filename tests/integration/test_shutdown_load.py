"""Graceful shutdown with 10,000 connections open, and a reload under load."""

import collections
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from conftest import DEFAULT_ROUTES
from step2util import JsonWS
from wsclient import OP_BINARY, OP_TEXT, upgrade, ws_connect

MASSCLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "massclient.py")
SHUTDOWN_TIMEOUT = 4
SLACK = 2.0


class MassClients:
    """Client processes holding many connections each (see massclient.py)."""

    def __init__(self, port, spread, path):
        self.procs = []
        for index, (count, silent) in enumerate(spread):
            args = [sys.executable, MASSCLIENT, str(port), str(count),
                    "127.0.0.%d" % (2 + index), path] + (["--silent"] if silent else [])
            self.procs.append(subprocess.Popen(args, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True))

    def read(self, proc, timeout):
        """One line from proc's stdout within timeout (the client bounds its
        own waits; this guards against a client that died)."""
        deadline = time.monotonic() + timeout
        line = proc.stdout.readline()
        assert line, "client exited with status %s" % proc.wait(timeout=5)
        assert time.monotonic() <= deadline + 1, "client answered late"
        return line.strip()

    def wait_ready(self, timeout):
        for proc in self.procs:
            line = self.read(proc, timeout)
            assert line.startswith("ready "), line

    def command(self, text, timeout):
        for proc in self.procs:
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
        return [json.loads(self.read(proc, timeout)) for proc in self.procs]

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def require_descriptors(count):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard >= count + 100, \
        "the broker needs %d descriptors; the hard limit is %d" % (count + 100, hard)


def test_sigterm_with_10000_connections_closes_all_with_1001_in_time(broker):
    require_descriptors(10000)
    # Two processes answer the close frame; the third never does, so the
    # broker has to give up on those at shutdown_timeout, not close_timeout.
    spread = [(4000, False), (4000, False), (2000, True)]
    b = broker(limits={"max_connections": 10100}, log_level="warn",
               shutdown_timeout=SHUTDOWN_TIMEOUT, websocket={"close_timeout": 30})
    clients = MassClients(b.port, spread, "/chat/crowd")
    try:
        clients.wait_ready(timeout=90)
        assert clients.command("ping", timeout=30) == [{"open": n, "pongs": n} for n, _ in spread]
        started = time.monotonic()
        b.signal(signal.SIGTERM)
        status = b.wait_exit(timeout=SHUTDOWN_TIMEOUT + 30)
        exited = time.monotonic() - started
        results = clients.command("finish 30", timeout=40)
    finally:
        clients.close()
    assert status == 0
    assert exited <= SHUTDOWN_TIMEOUT + SLACK, "exit took %.1f s" % exited
    for (count, silent), result in zip(spread, results):
        assert result["close_codes"] == {"1001": count}, result
        assert result["eof"] == count and result["eof_without_close"] == 0, result
        assert result["data_frames"] == 0, result
        assert result["last_close_at"] - started <= SHUTDOWN_TIMEOUT, result
    # The silent ones held the broker until the grace period was over.
    assert exited >= SHUTDOWN_TIMEOUT - 0.5, "exit after %.1f s" % exited
    assert "dropping the connections still open" in b.log()


# ---------------------------------------------------------------- SIGHUP under load

RELOAD_ROUTES = DEFAULT_ROUTES + [
    {"path": "/ws", "mode": "pubsub"},
    {"path": "/wsq", "mode": "pubsub", "echo_self": False},
]
BIG = 2000             # message size: under the old max_message_size, over the new one
NEW_MAX = 1024
PACE = 0.004           # seconds between two messages of one publisher


class Publisher(threading.Thread):
    """Sends numbered messages of BIG bytes until told to stop. On a pubsub
    route it also reads the replies, all of which must be ok (and skips the
    other pubsub publisher's messages, which reach it as a member)."""

    def __init__(self, port, number, pubsub):
        super().__init__(daemon=True)
        self.number = number
        self.pubsub = pubsub
        self.ws = ws_connect(port, "/wsq" if pubsub else "/quiet/feed")
        self.sent = 0
        self.stop = threading.Event()
        self.replies = collections.Counter()
        self.error = None
        if pubsub:       # publishing needs membership; /wsq sends no copy back
            JsonWS(self.ws).subscribe("feed")
            self.reader = threading.Thread(target=self.read_replies, daemon=True)

    def message(self, seq):
        if self.pubsub:
            text = json.dumps({"op": "publish", "channel": "feed", "id": seq,
                               "data": {"p": self.number, "n": seq, "pad": ""}})
            return text.replace('"pad": ""', '"pad": "%s"' % ("x" * (BIG - len(text))))
        head = struct.pack(">HI", self.number, seq)
        return head + b"b" * (BIG - len(head))

    def run(self):
        if self.pubsub:
            self.reader.start()
        try:
            while not self.stop.is_set() and self.sent < 100000:
                message = self.message(self.sent)
                if self.pubsub:
                    self.ws.send_text(message)
                else:
                    self.ws.send_binary(message)
                self.sent += 1
                time.sleep(PACE)
        except Exception as exc:             # reported by the test
            self.error = exc

    def read_replies(self):
        try:
            while self.replies["ok"] + self.replies["error"] < 100000:
                try:
                    reply = json.loads(self.ws.recv_text(timeout=0.5))
                except socket.timeout:
                    if self.stop.is_set() and self.replies["ok"] + self.replies["error"] >= self.sent:
                        return
                    continue
                if reply["op"] != "message":
                    self.replies[reply["op"]] += 1
        except Exception as exc:
            self.error = exc


class Subscriber(threading.Thread):
    """Reads the feed and checks that every publisher's messages arrive one
    after the other, none missing."""

    def __init__(self, port, pubsub):
        super().__init__(daemon=True)
        self.pubsub = pubsub
        if pubsub:
            self.ws = ws_connect(port, "/ws")
            JsonWS(self.ws).subscribe("feed")
        else:
            self.ws = ws_connect(port, "/chat/feed")
        self.next = collections.Counter()      # publisher -> next expected number
        self.error = None
        self.done = threading.Event()
        self.expected = None                   # publisher -> count, set at the end

    def parse(self, opcode, payload):
        if self.pubsub:
            event = json.loads(payload)
            assert event["op"] == "message" and event["channel"] == "feed", event
            return event["data"]["p"], event["data"]["n"]
        assert opcode == OP_BINARY and len(payload) == BIG, (opcode, len(payload))
        return struct.unpack(">HI", payload[:6])

    def complete(self):
        return self.expected is not None and all(self.next[p] >= n
                                                 for p, n in self.expected.items())

    def run(self):
        try:
            deadline = time.monotonic() + 120
            while not self.complete() and time.monotonic() < deadline:
                try:
                    opcode, payload = self.ws.recv_message(timeout=0.5)
                except socket.timeout:
                    continue
                publisher, seq = self.parse(opcode, payload)
                assert seq == self.next[publisher], \
                    "publisher %d: got %d, expected %d" % (publisher, seq, self.next[publisher])
                self.next[publisher] += 1
        except Exception as exc:
            self.error = exc
        self.done.set()


def wait_sent(publishers, count, timeout=20):
    """Waits until every publisher has sent count messages; returns how
    many each has sent."""
    deadline = time.monotonic() + timeout
    while min(p.sent for p in publishers) < count and time.monotonic() < deadline:
        for p in publishers:
            assert p.error is None and p.is_alive(), p.error
        time.sleep(0.02)
    sent = [p.sent for p in publishers]
    assert min(sent) >= count, "publishers stalled at %r" % sent
    return sent


def wait_reloads(b, count, timeout=10):
    """Waits for the count-th "configuration reloaded" (logged at info: the
    reloaded configs say log_level = "info")."""
    deadline = time.monotonic() + timeout
    while b.log().count("configuration reloaded") < count:
        assert time.monotonic() < deadline, "reload %d not logged:\n%s" % (count, b.log()[-2000:])
        time.sleep(0.02)


def test_sighup_under_load_keeps_every_connection_and_message(broker):
    b = broker(routes=RELOAD_ROUTES, limits={"max_connections": 5000}, log_level="warn")
    crowd = MassClients(b.port, [(1000, False), (1000, False)], "/chat/idle")
    threads = []
    try:
        crowd.wait_ready(timeout=60)
        subscribers = [Subscriber(b.port, pubsub) for pubsub in (False, True) * 4]
        publishers = [Publisher(b.port, n, pubsub)
                      for n, pubsub in enumerate((False, True, False, True))]
        threads = subscribers + publishers
        for thread in threads:
            thread.start()
        marks = [wait_sent(publishers, 100)]

        # First reload: a smaller max_message_size and a new route.
        b.reload(routes=RELOAD_ROUTES + [{"path": "/echo2", "mode": "echo"}],
                 limits={"max_connections": 5000}, log_level="info",
                 websocket={"max_message_size": NEW_MAX})
        wait_reloads(b, 1)
        fresh = ws_connect(b.port, "/echo2")
        fresh.send_text("new route")
        assert fresh.recv_message() == (OP_TEXT, b"new route")
        fresh.close()
        fresh = ws_connect(b.port, "/echo")
        fresh.send_binary(b"n" * BIG)
        assert fresh.expect_close()[0] == 1009      # the new limit, for new connections
        fresh.close()
        marks.append(wait_sent(publishers, min(marks[-1]) + 50))

        # Second reload while the messages keep flowing: another route.
        b.reload(routes=RELOAD_ROUTES + [{"path": "/echo2", "mode": "echo"},
                                         {"path": "/echo3", "mode": "echo"}],
                 limits={"max_connections": 5000, "outbound_queue_max": 8388608},
                 log_level="info", websocket={"max_message_size": NEW_MAX})
        wait_reloads(b, 2)
        assert upgrade(b.port, "/echo3").status == 101
        marks.append(wait_sent(publishers, min(marks[-1]) + 50))

        for publisher in publishers:
            publisher.stop.set()
        for publisher in publishers:
            publisher.join(10)
            assert publisher.error is None, publisher.error
        expected = {p.number: p.sent for p in publishers if not p.pubsub}
        expected_json = {p.number: p.sent for p in publishers if p.pubsub}
        for subscriber in subscribers:
            subscriber.expected = expected_json if subscriber.pubsub else expected
        for subscriber in subscribers:
            assert subscriber.done.wait(30), "subscriber still waiting: %r of %r" % (
                dict(subscriber.next), subscriber.expected)
            assert subscriber.error is None, subscriber.error
            assert dict(subscriber.next) == subscriber.expected
        for publisher in publishers:
            if publisher.pubsub:
                publisher.reader.join(10)
                assert publisher.error is None, publisher.error
                assert publisher.replies == {"ok": publisher.sent}, publisher.replies
        # Every publisher kept sending across both reloads.
        for earlier, later in zip(marks, marks[1:]):
            assert all(a < b for a, b in zip(earlier, later)), marks

        # Not one idle connection was lost: each answers a ping, and the
        # only close any of them ever sees is the shutdown's 1001.
        assert crowd.command("ping", timeout=30) == [{"open": 1000, "pongs": 1000}] * 2
        assert b.stop() == 0
        results = crowd.command("finish 20", timeout=30)
    finally:
        crowd.close()
        for thread in threads:
            thread.ws.close()
    for result in results:
        assert result["close_codes"] == {"1001": 1000}, result
        assert result["eof_without_close"] == 0 and result["data_frames"] == 0, result
