"""Slow-header clients (slowloris): each connection is closed at
handshake_timeout however it trickles, real clients are still served while
the slow ones stay under max_connections and get a quick 503 when they fill
it, and the daemon's memory grows by a bounded amount per slow connection."""

import json
import os
import subprocess
import sys
import threading
import time

from conftest import binary_path
from wsclient import OP_TEXT, upgrade, upgrade_until, ws_connect

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowloris.py")
SLOW_SOURCE = "127.0.0.2"
TRICKLE = 1.0               # seconds between two header bytes of one connection
SLACK = 3.0                 # how late a timeout may fire on a loaded machine
# KiB of RSS one slow connection may cost: its connection state, buffered
# input (the few bytes it sent) and timer come to about 3.3 KiB; a
# per-connection buffer of request_head_max (8 KiB) would break the bound.
KIB_PER_SLOW = 8
KIB_PER_SLOW_ASAN = 32


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def sanitized():
    """True for a daemon built with AddressSanitizer, whose redzones and
    shadow memory make every allocation several times larger."""
    with open(binary_path(), "rb") as f:
        return b"__asan_init" in f.read()


class Attack:
    """The slowloris helper in its own process (it needs its own
    descriptors, and keeps the GIL away from the real clients)."""

    def __init__(self, port, count, limit, workdir):
        self.count = count
        self.result_file = os.path.join(workdir, "slowloris-%d.json" % port)
        self.proc = subprocess.Popen(
            [sys.executable, HELPER, str(port), SLOW_SOURCE, str(count), str(TRICKLE),
             str(limit), self.result_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.started = time.monotonic()

    def wait_ready(self):
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", "slowloris helper: %r (status %s)" % (
            line, self.proc.poll())
        self.ready = time.monotonic()

    def results(self, timeout):
        assert self.proc.wait(timeout=timeout) == 0
        with open(self.result_file) as f:
            results = json.load(f)
        assert len(results) == self.count
        return results

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Prober(threading.Thread):
    """A real client from 127.0.0.1: opens a WebSocket, does one echo round
    trip and closes, over and over until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.rounds = []            # (started, seconds taken)
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                ws = ws_connect(self.port, "/echo", timeout=5)
                try:
                    ws.send_text("real client")
                    assert ws.recv_message(timeout=5) == (OP_TEXT, b"real client")
                finally:
                    ws.close()
            except Exception as exc:          # reported by the test
                self.errors.append((started, repr(exc)))
            self.rounds.append((started, time.monotonic() - started))
            self.stop.wait(0.1)


def test_slowloris_is_cut_at_handshake_timeout_and_real_clients_are_served(broker, tmp_path):
    count, timeout = 2000, 3
    b = broker(log_level="info", websocket={"handshake_timeout": timeout},
               limits={"max_connections": 2500})
    for _ in range(3):                        # warm up before the baseline
        ws = ws_connect(b.port, "/echo")
        ws.close()
    baseline = vm_rss_kib(b.proc.pid)

    prober = Prober(b.port)
    prober.start()
    attack = Attack(b.port, count, limit=timeout + 3 * SLACK + 5, workdir=str(tmp_path))
    samples = []                              # (time, RSS) during the attack
    try:
        attack.wait_ready()
        while attack.proc.poll() is None:
            samples.append((time.monotonic(), vm_rss_kib(b.proc.pid)))
            time.sleep(0.05)
        results = attack.results(timeout=5)
    finally:
        prober.stop.set()
        prober.join(15)
        attack.kill()

    # Every slow connection got 408 and was closed handshake_timeout after
    # it was accepted, though it sent a byte every TRICKLE seconds: the
    # deadline is absolute, trickling does not push it back.
    for conn in results:
        assert conn["answer"].startswith("HTTP/1.1 408 "), conn
        assert conn["closed"] is not None, conn
        lived = conn["closed"] - conn["connected"]
        assert timeout - 0.25 <= lived <= timeout + SLACK, conn
        assert conn["sent"] >= timeout / TRICKLE - 1, conn
    assert sum("handshake timeout %s:" % SLOW_SOURCE in line
               for line in b.log_lines()) == count

    # The real client was served all along: while the slow connections were
    # opened, while all of them were open, and while they were cut.
    assert not prober.errors, prober.errors[:5]
    first_close = min(conn["closed"] for conn in results)
    last_close = max(conn["closed"] for conn in results)
    during = [r for r in prober.rounds if attack.started <= r[0] <= last_close]
    assert any(attack.ready <= r[0] < first_close for r in during), prober.rounds
    assert len(during) >= 10, during
    # Never as long as a slow connection is held: nobody waits for them to go.
    slowest = max(seconds for _, seconds in during)
    assert slowest < timeout - 0.5, "a real client took %.2f s during the attack" % slowest

    # Memory: bounded per slow connection, however long it trickles. The
    # peak is taken while all of them are held, before the 408s go out.
    held = [rss for at, rss in samples if at < first_close]
    assert len(held) >= 10, samples[:20]
    peak = max(held)
    per_conn = (peak - baseline) / count
    print("RSS %d KiB before, %d KiB with %d slow connections: %.2f KiB each; "
          "slowest real round trip %.3f s over %d rounds" % (
              baseline, peak, count, per_conn, slowest, len(during)))
    bound = KIB_PER_SLOW_ASAN if sanitized() else KIB_PER_SLOW
    assert per_conn < bound, "%.1f KiB per slow connection" % per_conn
    ws = ws_connect(b.port, "/echo")            # and the daemon is fine afterwards
    ws.close()


def test_slowloris_filling_max_connections_gets_real_clients_a_quick_503(broker, tmp_path):
    count, timeout = 100, 4
    b = broker(log_level="info", websocket={"handshake_timeout": timeout},
               limits={"max_connections": count})
    attack = Attack(b.port, count, limit=timeout + 3 * SLACK, workdir=str(tmp_path))
    try:
        attack.wait_ready()
        time.sleep(0.3)                       # the daemon accepts the last of them
        started = time.monotonic()
        response = upgrade(b.port, "/echo")
        elapsed = time.monotonic() - started
        assert response.status == 503, response
        assert response.header("Retry-After") == "1", response
        assert response.closed
        assert elapsed < 1.0, "503 after %.2f s" % elapsed
        # Once handshake_timeout has cut the slow ones, clients get in again.
        assert upgrade_until(b.port, "/echo", 101, timeout=timeout + SLACK).status == 101
        results = attack.results(timeout=2 * SLACK)
    finally:
        attack.kill()
    assert all(conn["answer"].startswith("HTTP/1.1 408 ") for conn in results), results[:3]


def test_per_ip_limit_keeps_a_slowloris_address_from_filling_max_connections(broker, tmp_path):
    """500 slow connections from one address against max_connections = 100:
    without max_connections_per_ip they would fill it; with a limit of 50,
    the rest are refused at once and real clients keep getting in."""
    count, per_ip, timeout = 500, 50, 3
    b = broker(log_level="info", websocket={"handshake_timeout": timeout},
               limits={"max_connections": 100, "max_connections_per_ip": per_ip})
    prober = Prober(b.port)
    prober.start()
    attack = Attack(b.port, count, limit=timeout + 3 * SLACK, workdir=str(tmp_path))
    try:
        attack.wait_ready()
        results = attack.results(timeout=timeout + 4 * SLACK)
    finally:
        prober.stop.set()
        prober.join(15)
        attack.kill()
    refused = [c for c in results if c["answer"].startswith("HTTP/1.1 503 ")]
    timed_out = [c for c in results if c["answer"].startswith("HTTP/1.1 408 ")]
    assert len(refused) == count - per_ip and len(timed_out) == per_ip, \
        (len(refused), len(timed_out), [c for c in results if c not in refused + timed_out][:3])
    # Refused ones are answered at once, not held to the timeout.
    assert all(c["closed"] - c["connected"] < 1.0 for c in refused), refused[:3]
    assert not prober.errors, prober.errors[:5]
    assert len(prober.rounds) >= 5, prober.rounds
