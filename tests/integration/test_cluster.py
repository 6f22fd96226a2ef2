"""Cluster mode: several wsbroker nodes sharing channels through Redis.

Each test starts its own redis-server on a free loopback port (no
persistence, a temp dir) and two or three nodes pointing at it."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import line_of, run_wsbroker
from step2util import API_TOKEN, api, api_publish, pubsub
from wsclient import OP_TEXT, http_request, ws_connect

PREFIX = "wsbt:"
CHANNELS = [
    {"match": "hist:*", "history": 50, "publish": "anyone"},
    {"match": "room:*", "presence": True, "publish": "anyone"},
    {"match": "*", "publish": "anyone"},
]
ROUTES = [
    {"path": "/ws", "mode": "pubsub"},
    {"path": "/wsq", "mode": "pubsub", "echo_self": False},
    {"path": "/bc/:room", "mode": "broadcast", "channel": "bc:{room}", "echo_self": False},
]
PRESENCE_TTL = 6.0          # CLUSTER_PRESENCE_TTL_MS


def redis_binary():
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        pytest.fail("redis-server not found: the cluster tests need it "
                    "(Debian package redis-server)", pytrace=False)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp_command(port, *args, timeout=5.0):
    """One Redis command over a raw socket; returns the decoded reply."""
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        reader = s.makefile("rb")
        return resp_read(reader)


def resp_read(reader):
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        return [resp_read(reader) for _ in range(int(rest))]
    raise AssertionError("unexpected Redis reply %r" % line)


class Redis:
    def __init__(self, workdir):
        self.dir = str(workdir)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            try:
                if resp_command(self.port, "PING", timeout=0.5) == "PONG":
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def channels(self):
        return sorted(resp_command(self.port, "PUBSUB", "CHANNELS", PREFIX + "*"))

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


@pytest.fixture
def redis(tmp_path):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Redis(workdir).start()
    yield server
    server.stop()


@pytest.fixture
def nodes(broker, redis):
    """Factory: nodes(n, **overrides) -> n brokers in one cluster."""
    def make(count, **overrides):
        settings = dict(routes=ROUTES, channels=CHANNELS, http={"api_token": API_TOKEN},
                        cluster={"engine": "redis", "url": redis.url(), "prefix": PREFIX})
        settings.update(overrides)
        started = [broker(**settings) for _ in range(count)]
        for node in started:
            wait_healthy(node.port, True)
        return started
    return make


def healthz(port):
    return http_request(port, "/healthz")


def wait_healthy(port, up, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        response = healthz(port)
        if (response.status == 200) == up:
            return response
        assert time.monotonic() < deadline, "healthz still %d after %.0f s" % (response.status,
                                                                               timeout)
        time.sleep(0.05)


def metric(port, name):
    body = http_request(port, "/metrics").body.decode()
    match = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    assert match, "metric %s not found" % name
    return int(match.group(1))


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def collect_messages(ws, count, timeout):
    """Reads until count message events arrived; other frames are skipped."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "only %d of %d messages arrived" % (len(got), count)
        frame = ws.recv(timeout=remaining)
        if frame.get("op") == "message":
            got.append(frame)
    return got


# ---------------------------------------------------------------- delivery

def test_cross_node_delivery_keeps_each_publishers_order(nodes):
    a, b, c = nodes(3)
    subscribers = [pubsub(n.port) for n in (a, b, c)]
    for ws in subscribers:
        ws.subscribe("order")
    per_publisher = 1500
    publishers = [pubsub(a.port, path="/wsq"), pubsub(b.port, path="/wsq")]
    for k, pub in enumerate(publishers):
        for i in range(per_publisher):
            pub.publish("order", {"k": k, "i": i}, id=i)
    for pub in publishers:
        oks = [pub.recv(timeout=20) for _ in range(per_publisher)]
        assert [r["op"] for r in oks] == ["ok"] * per_publisher
        assert [r["id"] for r in oks] == list(range(per_publisher))
    total = 2 * per_publisher
    for ws in subscribers:
        got = collect_messages(ws, total, timeout=30)
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(set(seqs)), "seq not strictly ascending"
        for k in range(2):
            mine = [m["data"]["i"] for m in got if m["data"]["k"] == k]
            assert mine == list(range(per_publisher)), "publisher %d: loss or reorder" % k
        ws.silent(0.3)
    for ws in subscribers + publishers:
        ws.close()


def test_publisher_gets_its_own_copy_only_with_echo_self(nodes):
    a, b = nodes(2)
    echo = pubsub(a.port, path="/ws")
    quiet = pubsub(a.port, path="/wsq")
    other = pubsub(b.port)
    for ws in (echo, quiet, other):
        ws.subscribe("echo")
    quiet.publish("echo", "from quiet", id=1)
    assert quiet.recv()["op"] == "ok"
    quiet.silent(0.5)
    echo.publish("echo", "from echo", id=2)
    frames = echo.recv_n(3)
    assert sorted(f["op"] for f in frames) == ["message", "message", "ok"]
    texts = [m["data"] for m in collect_messages(other, 2, 5)]
    assert texts == ["from quiet", "from echo"]
    for ws in (echo, quiet, other):
        ws.close()


def test_http_publish_on_one_node_reaches_another(nodes):
    a, b = nodes(2)
    ws = pubsub(b.port)
    first = ws.subscribe("api")
    response = api_publish(a.port, "api", data={"hello": "cluster"})
    assert response.status == 202, response
    body = response.json()
    assert body["seq"] == first["seq"] + 1 and body["epoch"] == first["epoch"]
    event = collect_messages(ws, 1, 5)[0]
    assert event["data"] == {"hello": "cluster"} and event["seq"] == body["seq"]
    ws.close()


def test_broadcast_route_messages_cross_nodes(nodes, redis):
    a, b = nodes(2)
    sender = ws_connect(a.port, "/bc/x")
    local = ws_connect(a.port, "/bc/x")
    remote = ws_connect(b.port, "/bc/x")
    watcher = pubsub(b.port)
    watcher.subscribe("bc:x")
    wait_for(lambda: resp_command(redis.port, "PUBSUB", "NUMSUB", PREFIX + "ch:bc:x")[1] == 2,
             5, "both nodes to subscribe in Redis")
    for i in range(20):
        sender.send_text("m%d" % i)
    for ws in (local, remote):
        texts = [ws.recv_message(timeout=5) for _ in range(20)]
        assert texts == [(OP_TEXT, b"m%d" % i) for i in range(20)]
    assert [m["data"] for m in collect_messages(watcher, 20, 5)] == ["m%d" % i for i in range(20)]
    sender.assert_silent(0.3)        # echo_self false: not its own
    for ws in (sender, local, remote, watcher):
        ws.close()


# ---------------------------------------------------------------- history

def test_history_resume_with_since_on_another_node(nodes):
    a, b = nodes(2)
    first = pubsub(a.port)
    start = first.subscribe("hist:r")
    pub = pubsub(a.port, path="/wsq")
    for i in range(10):
        pub.publish("hist:r", {"i": i}, id=i)
        assert pub.recv()["op"] == "ok"
    got = collect_messages(first, 10, 5)
    seen = got[3]["seq"]
    first.close()
    second = pubsub(b.port)
    reply = second.subscribe("hist:r", since=seen, epoch=start["epoch"])
    assert reply["recovered"] is True and reply["epoch"] == start["epoch"]
    assert reply["seq"] == got[-1]["seq"]
    replay = collect_messages(second, 6, 5)
    assert [m["data"]["i"] for m in replay] == list(range(4, 10))
    assert [m["seq"] for m in replay] == [m["seq"] for m in got[4:]]
    pub.publish("hist:r", {"i": 10})
    live = collect_messages(second, 1, 5)[0]
    assert live["data"] == {"i": 10} and live["seq"] == got[-1]["seq"] + 1
    second.silent(0.3)
    other_epoch = pubsub(b.port).subscribe("hist:r", since=2, epoch="not-this-one")
    assert other_epoch["recovered"] is False
    pub.close()
    second.close()


# ---------------------------------------------------------------- presence

def presence_users(ws, channel, events=None):
    """The presence reply's users; join/leave events read meanwhile go to
    events."""
    ws.send({"op": "presence", "channel": channel, "id": "p"})
    while True:
        reply = ws.recv()
        if reply["op"] in ("join", "leave") and events is not None:
            events.append(reply)
            continue
        assert reply["op"] == "ok" and reply.get("id") == "p", reply
        return reply["users"]


def test_presence_spans_nodes_and_a_killed_nodes_members_vanish(broker, nodes):
    a, b = nodes(2)
    alice = pubsub(a.port, user="alice")
    alice.subscribe("room:1")
    bob = pubsub(b.port, user="bob")
    bob.subscribe("room:1")
    assert alice.recv() == {"op": "join", "channel": "room:1", "user": "alice"}
    assert alice.recv() == {"op": "join", "channel": "room:1", "user": "bob"}
    assert bob.recv() == {"op": "join", "channel": "room:1", "user": "bob"}
    assert presence_users(bob, "room:1") == ["alice", "bob"]
    assert presence_users(alice, "room:1") == ["alice", "bob"]
    # A node dies without a word: its members go within the ttl.
    killed_at = time.monotonic()
    a.signal(signal.SIGKILL)
    a.wait_exit()
    broker.brokers.remove(a)
    leave = None
    while leave is None:
        frame = bob.recv(timeout=PRESENCE_TTL + 6)
        if frame.get("op") == "leave":
            leave = frame
    elapsed = time.monotonic() - killed_at
    print("\npresence: killed node's member left after %.1f s (ttl %.0f s)" % (elapsed,
                                                                              PRESENCE_TTL))
    assert leave == {"op": "leave", "channel": "room:1", "user": "alice"}
    assert elapsed <= PRESENCE_TTL + 4
    assert presence_users(bob, "room:1") == ["bob"]
    alice.close()
    bob.close()


def test_leave_goes_to_other_nodes_when_the_last_connection_closes(nodes):
    a, b = nodes(2)
    watcher = pubsub(b.port, user="watcher")
    watcher.subscribe("room:2")
    carol = [pubsub(a.port, user="carol"), pubsub(b.port, user="carol")]
    for ws in carol:
        ws.subscribe("room:2")
    joins = [watcher.recv(), watcher.recv()]
    assert [f["user"] for f in joins if f["op"] == "join"] == ["watcher", "carol"]
    carol[0].close()
    watcher.silent(0.5)      # carol still has a connection on b
    carol[1].close()
    leave = watcher.recv(timeout=5)
    assert leave == {"op": "leave", "channel": "room:2", "user": "carol"}
    watcher.close()


# ---------------------------------------------------------------- interest

def test_node_subscribes_in_redis_only_while_it_has_subscribers(nodes, redis):
    a, = nodes(1)
    name = PREFIX + "ch:interest"
    ws = pubsub(a.port)
    ws.subscribe("interest")
    assert redis.channels() == [name]
    ws.request({"op": "unsubscribe", "channel": "interest"})
    wait_for(lambda: redis.channels() == [], 5, "the node to unsubscribe in Redis")
    # subscribe, unsubscribe, subscribe at once: ends subscribed
    ws.send({"op": "subscribe", "channel": "interest"})
    ws.send({"op": "unsubscribe", "channel": "interest"})
    ws.send({"op": "subscribe", "channel": "interest"})
    assert [r["op"] for r in ws.recv_n(3)] == ["ok", "ok", "ok"]
    time.sleep(0.3)
    assert redis.channels() == [name]
    for i in range(3):     # and the subscription that stays gets messages
        assert api_publish(a.port, "interest", data=i).status == 202
    assert [m["data"] for m in collect_messages(ws, 3, 5)] == [0, 1, 2]
    other = pubsub(a.port)
    other.subscribe("interest")
    other.close()
    time.sleep(0.3)
    assert redis.channels() == [name]   # one subscriber left
    ws.close()
    wait_for(lambda: redis.channels() == [], 5, "the node to unsubscribe in Redis")


# ---------------------------------------------------------------- Redis down

class Publisher(threading.Thread):
    """Publishes a numbered message every interval and records the answers."""

    def __init__(self, port, channel, interval=0.005, limit=4000):
        super().__init__(daemon=True)
        self.ws = pubsub(port, path="/wsq")
        self.channel = channel
        self.interval = interval
        self.limit = limit
        self.stop_flag = threading.Event()
        self.acked = {}         # i -> monotonic time of the ok
        self.refused = []       # i answered unavailable
        self.other = []

    def run(self):
        for i in range(self.limit):
            if self.stop_flag.is_set():
                break
            self.ws.publish(self.channel, {"i": i}, id=i)
            reply = self.ws.recv(timeout=10)
            if reply["op"] == "ok":
                self.acked[i] = time.monotonic()
            elif reply.get("code") == "unavailable":
                self.refused.append(i)
            else:
                self.other.append(reply)
            time.sleep(self.interval)


def test_redis_restart_mid_traffic(nodes, redis):
    a, b = nodes(2)
    sub = pubsub(b.port)
    sub.subscribe("live")
    received = {}               # i -> monotonic arrival
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                frame = sub.recv(timeout=0.2)
            except Exception:   # timeout: look at stop again
                continue
            if frame.get("op") == "message":
                received[frame["data"]["i"]] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pub = Publisher(a.port, "live")
    pub.start()
    wait_for(lambda: len(received) >= 100, 10, "traffic before the kill")
    redis.kill()
    killed_at = time.monotonic()
    wait_healthy(a.port, False, timeout=10)
    down = healthz(a.port)
    assert down.status == 503 and b"cluster" in down.body
    assert metric(a.port, "wsbroker_cluster_up") == 0
    wait_for(lambda: len(pub.refused) >= 20, 10, "publishes refused with unavailable")
    redis.start()
    up_at = redis.started_at
    wait_healthy(a.port, True, timeout=15)
    wait_healthy(b.port, True, timeout=15)
    wait_for(lambda: any(t > up_at for t in received.values()), 15, "delivery to resume")
    first_after = min(t for t in received.values() if t > up_at)
    resumed_count = len(received)
    wait_for(lambda: len(received) >= resumed_count + 100, 15, "steady traffic again")
    pub.stop_flag.set()
    pub.join(timeout=15)
    time.sleep(0.5)
    stop.set()
    reader.join(timeout=5)

    # A message acked while its publisher's node is back but the
    # subscriber's node has not subscribed again yet reaches nobody there
    # (Redis keeps no PUBLISH for later): that is the loss window.
    lost = sorted(set(pub.acked) - set(received))
    lost_after_resume = [i for i in lost if pub.acked[i] > first_after]
    lost_outside_window = [i for i in lost if not killed_at - 1.0 <= pub.acked[i] <= first_after]
    print("\nRedis restart: %d acked, %d refused as unavailable, %d acked but not delivered "
          "%s; down %.2f s; Redis started -> first delivery %.3f s; reconnects a=%d b=%d" % (
              len(pub.acked), len(pub.refused), len(lost), lost[:10], up_at - killed_at,
              first_after - up_at, metric(a.port, "wsbroker_cluster_reconnects_total"),
              metric(b.port, "wsbroker_cluster_reconnects_total")))
    assert not pub.other, pub.other[:3]
    assert lost_after_resume == [], "acked after delivery resumed, never delivered"
    assert lost_outside_window == [], "acked messages lost outside the restart window"
    assert metric(a.port, "wsbroker_cluster_reconnects_total") >= 1
    assert metric(a.port, "wsbroker_cluster_publish_failures_total{reason=\"unavailable\"}") >= \
        len(pub.refused)
    # the sockets stayed open all along: both still work
    pub.ws.publish("live", {"i": -1}, id="last")
    assert pub.ws.recv()["op"] == "ok"
    assert collect_messages(sub, 1, 5)[0]["data"] == {"i": -1}
    pub.ws.close()
    sub.close()


def node_id(node):
    line = node.wait_log("cluster: connected to Redis")
    return re.search(r"as node ([0-9a-f]{16})", line).group(1)


def test_a_node_that_lost_redis_catches_up_from_history(nodes, redis):
    """Messages published while one node was cut off from Redis (and the
    others were not) reach its subscribers once it is back, on channels
    with history."""
    a, b = nodes(2)
    sub = pubsub(b.port)
    sub.subscribe("hist:gap")
    api_publish(a.port, "hist:gap", data={"i": 0})
    assert collect_messages(sub, 1, 5)[0]["data"] == {"i": 0}
    name = "wsbroker-" + node_id(b)
    b.signal(signal.SIGSTOP)
    try:
        clients = resp_command(redis.port, "CLIENT", "LIST").splitlines()
        ids = [re.search(r"\bid=(\d+)", c).group(1) for c in clients if "name=%s " % name in c]
        assert len(ids) == 2, clients
        for client in ids:
            assert resp_command(redis.port, "CLIENT", "KILL", "ID", client) == 1
        for i in range(1, 6):
            assert api_publish(a.port, "hist:gap", data={"i": i}).status == 202
    finally:
        b.signal(signal.SIGCONT)
    got = collect_messages(sub, 5, 10)
    assert [m["data"]["i"] for m in got] == [1, 2, 3, 4, 5]
    assert metric(b.port, "wsbroker_cluster_reconnects_total") == 1
    assert api_publish(a.port, "hist:gap", data={"i": 6}).status == 202
    assert collect_messages(sub, 1, 5)[0]["data"] == {"i": 6}
    sub.silent(0.3)
    sub.close()


def test_http_publish_answers_503_while_redis_is_down(nodes, redis):
    a, = nodes(1)
    ws = pubsub(a.port)
    ws.subscribe("down")
    redis.kill()
    wait_healthy(a.port, False, timeout=10)
    response = api_publish(a.port, "down", data=1)
    assert response.status == 503, response
    assert "cluster" in response.json()["error"]
    ws.publish("down", 2, id=7)
    error = ws.expect_error("unavailable", id=7)
    assert "cluster" in error["message"]
    # subscribe still works locally while Redis is down
    reply = ws.request({"op": "subscribe", "channel": "other", "since": 3})
    assert reply["op"] == "ok" and reply["recovered"] is False
    ws.close()


def test_a_hung_redis_bounds_the_queue_and_times_out(nodes, redis):
    """Redis stopped (SIGSTOP): publishes wait for it up to a cap, past
    which they are refused at once; then the node gives up on it, answers
    every waiting publish unavailable, and comes back once it answers."""
    a, = nodes(1)
    pub = pubsub(a.port, path="/wsq")
    count = 10300                      # CLUSTER_PENDING_MAX is 10000
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        for i in range(count):
            pub.publish("hung", i, id=i)
        replies = [pub.recv(timeout=20) for _ in range(count)]
        waited = time.monotonic() - started
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    codes = [r.get("code") for r in replies]
    assert set(codes) == {"unavailable"}, set(codes)
    full = metric(a.port, 'wsbroker_cluster_publish_failures_total{reason="queue_full"}')
    print("\nhung Redis: %d publishes, %d refused as the queue was full, all answered in %.1f s"
          % (count, full, waited))
    assert full >= count - 10000
    assert waited < 15
    wait_healthy(a.port, True, timeout=15)
    pub.publish("hung", "after", id="after")
    after = pub.recv(timeout=10)
    assert after["op"] == "ok" and after["id"] == "after", after
    pub.close()


# ---------------------------------------------------------------- config

CLUSTER_CONFIG = """\
listen = ( { address = "127.0.0.1"; port = @PORT@; } );
cluster = {
  engine = "redis";
  url = "redis://127.0.0.1:6379/0";
  prefix = "wsbroker:";
};
"""


@pytest.mark.parametrize("old,new,marker", [
    ('engine = "redis"', 'engine = "memcached"', "engine"),
    ('url = "redis://127.0.0.1:6379/0"', 'url = "http://127.0.0.1"', "url"),
    ('url = "redis://127.0.0.1:6379/0"', 'url = "redis://127.0.0.1:99999"', "url"),
    ('url = "redis://127.0.0.1:6379/0"', 'url = "redis://127.0.0.1/x"', "url"),
    ('prefix = "wsbroker:"', 'prefix = "has space"', "prefix"),
    ('prefix = "wsbroker:"', 'prefix = ""', "prefix"),
], ids=["engine", "scheme", "port", "db", "prefix-space", "prefix-empty"])
def test_cluster_config_errors_name_file_and_line(config_file, old, new, marker):
    text = CLUSTER_CONFIG.replace(old, new)
    path = config_file(text=text)
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode == 1, result.stderr
    line = line_of(text, marker)
    assert re.search(r"^%s:%d: .*cluster" % (re.escape(path), line), result.stderr, re.M), \
        result.stderr


def test_cluster_config_is_accepted(config_file):
    result = run_wsbroker("-t", "-c", config_file(text=CLUSTER_CONFIG))
    assert result.returncode == 0, result.stderr
