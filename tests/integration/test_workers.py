"""workers = N: every worker thread accepts (SO_REUSEPORT), a publish
reaches subscribers on every worker once and in seq order, presence,
history, the API, limits, /metrics and signals span the workers.

Which worker took a connection is read from the broker's debug log
("accept ADDRESS:PORT worker N"), matched by the client's own port."""

import os
import re
import signal
import threading
import time

from step2util import (API_TOKEN, STEP2_ROUTES, Clients, api, api_publish, join, leave,
                       wait_until)
from wsclient import OP_TEXT, http_request, upgrade, upgrade_until, ws_connect

WORKERS = 2
MAX_TRIES = 60              # connections tried to find one on a given worker
ACCEPT_RE = re.compile(r"accept 127\.0\.0\.1:(\d+) worker (\d+)")


def start(broker, **overrides):
    settings = {"routes": STEP2_ROUTES, "workers": WORKERS,
                "http": {"api_token": API_TOKEN},
                "channels": [{"match": "h:*", "history": 20},
                             {"match": "p:*", "presence": True},
                             {"match": "*", "publish": "anyone"}]}
    settings.update(overrides)
    return broker(**settings)


def worker_of(b, ws):
    """The worker that accepted ws (a WSClient or JsonWS)."""
    sock = getattr(ws, "ws", ws).sock
    port = sock.getsockname()[1]

    def find():
        for match in ACCEPT_RE.finditer(b.log()):
            if int(match.group(1)) == port:
                return match.group(2)
        return None
    return int(wait_until(find, what="accept line of port %d" % port))


def one_per_worker(b, connect):
    """Connects until there is a connection on every worker; returns them
    indexed by worker and closes the extras."""
    found = {}
    extras = []
    for _ in range(MAX_TRIES):
        ws = connect()
        worker = worker_of(b, ws)
        if worker in found:
            extras.append(ws)
        else:
            found[worker] = ws
        if len(found) == WORKERS:
            break
    for ws in extras:
        ws.close()
    assert sorted(found) == list(range(WORKERS)), "workers seen: %r" % sorted(found)
    return [found[w] for w in range(WORKERS)]


def connect_when_free(port, timeout=5.0):
    """ws_connect, repeated while the broker still counts a connection
    just closed against max_connections (it is freed a loop pass later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ws_connect(port, "/echo")
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def metrics(port):
    """Samples of /metrics as {(name, labels): value}."""
    response = http_request(port, "/metrics")
    assert response.status == 200, response
    samples = {}
    for line in response.body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def per_worker(samples, family):
    return [samples['wsbroker_%s{worker="%d"}' % (family, w)] for w in range(WORKERS)]


def subscribers_on_every_worker(b, channel, count, clients):
    subs = [clients.pubsub(b.port, user="s%d" % i) for i in range(count)]
    for ws in subs:
        assert ws.subscribe(channel)["op"] == "ok"
    workers = {worker_of(b, ws) for ws in subs}
    assert workers == set(range(WORKERS)), "all %d subscribers on worker %r" % (count, workers)
    return subs


def test_a_publish_reaches_subscribers_on_every_worker_once_and_in_order(broker):
    b = start(broker)
    clients = Clients()
    try:
        subs = subscribers_on_every_worker(b, "fan", 40, clients)
        publisher = clients.pubsub(b.port, user="pub", path="/wsq")
        for i in range(30):
            reply = publisher.request({"op": "publish", "channel": "fan", "data": i, "id": i})
            assert reply["op"] == "ok" and reply["seq"] == i + 1, reply
        for ws in subs:
            got = [ws.recv() for _ in range(30)]
            assert [m["seq"] for m in got] == list(range(1, 31))
            assert [m["data"] for m in got] == list(range(30))
        for ws in subs:
            ws.silent(0.05)                          # exactly once: nothing more
        samples = metrics(b.port)
        deliveries = per_worker(samples, "worker_deliveries_total")
        assert all(d > 0 for d in deliveries), deliveries
        assert sum(deliveries) == samples["wsbroker_deliveries_total"] == 40 * 30
    finally:
        clients.close_all()


def test_two_publishers_on_different_workers_keep_their_order_and_seq_ascends(broker):
    """Both publish at once on one channel: every subscriber, wherever it
    lives, sees seq 1..N without a gap, repeat or step back, and each
    publisher's messages in the order sent."""
    b = start(broker)
    clients = Clients()
    count = 150
    try:
        subs = subscribers_on_every_worker(b, "race", 12, clients)
        publishers = one_per_worker(b, lambda: clients.raw(b.port, "/raw/race", user="p"))
        errors = []
        threads = []
        for index, ws in enumerate(publishers):
            threads.append(threading.Thread(target=publish_raw, daemon=True,
                                            args=(ws, "w%d" % index, count, errors)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        total = count * len(publishers)
        for ws in subs:
            got = [ws.recv(timeout=10) for _ in range(total)]
            assert [m["seq"] for m in got] == list(range(1, total + 1))
            for index in range(len(publishers)):
                mine = [m["data"] for m in got if m["data"].startswith("w%d-" % index)]
                assert mine == ["w%d-%d" % (index, i) for i in range(count)]
        for ws in publishers:              # raw routes echo: in seq order too
            got = [ws.recv_message(timeout=10)[1].decode() for _ in range(total)]
            assert sorted(got) == sorted("w%d-%d" % (p, i) for p in range(len(publishers))
                                         for i in range(count))
    finally:
        clients.close_all()


def publish_raw(ws, name, count, errors):
    try:
        for i in range(count):
            ws.send_text("%s-%d" % (name, i))
    except Exception as error:       # reported by the test thread
        errors.append(error)


def test_presence_and_history_resume_across_workers(broker):
    b = start(broker)
    clients = Clients()
    try:
        first, second = one_per_worker(b, lambda: clients.pubsub(b.port, user="u%d" %
                                                                  len(clients.opened)))
        alice, bob = first, second
        alice_user = "u%d" % clients.opened.index(alice)
        bob_user = "u%d" % clients.opened.index(bob)
        alice.send({"op": "subscribe", "channel": "p:room", "id": 1})
        got = alice.recv_n(2)
        assert join("p:room", alice_user) in got
        bob.send({"op": "subscribe", "channel": "p:room", "id": 2})
        assert alice.recv() == join("p:room", bob_user)
        assert join("p:room", bob_user) in bob.recv_n(2)
        reply = alice.request({"op": "presence", "channel": "p:room", "id": 3})
        assert sorted(reply["users"]) == sorted([alice_user, bob_user])
        bob.send({"op": "unsubscribe", "channel": "p:room", "id": 4})
        assert bob.recv_n(2) == [leave("p:room", bob_user), {"op": "ok", "id": 4}]
        assert alice.recv() == leave("p:room", bob_user)

        # History: published through one worker, resumed on the other.
        for i in range(5):
            assert api_publish(b.port, "h:log", data=i).status == 202
        reply = bob.subscribe("h:log", since=2)
        assert reply["recovered"] is True and reply["seq"] == 5, reply
        assert [bob.recv()["seq"] for _ in range(3)] == [3, 4, 5]
        assert api_publish(b.port, "h:log", data="live").status == 202
        assert bob.recv()["data"] == "live"
        bob.silent(0.2)                                 # nothing twice
    finally:
        clients.close_all()


def test_metrics_totals_are_the_sum_over_workers(broker):
    b = start(broker)
    clients = Clients()
    try:
        subscribers_on_every_worker(b, "m", 20, clients)
        for i in range(3):
            assert api_publish(b.port, "m", data=i).status == 202
        wait_until(lambda: metrics(b.port)["wsbroker_deliveries_total"] == 60,
                   what="60 deliveries")
        samples = metrics(b.port)
        connections = per_worker(samples, "worker_connections")
        assert all(c > 0 for c in connections), connections
        assert sum(connections) == samples["wsbroker_client_connections"]
        assert sum(per_worker(samples, "worker_deliveries_total")) == 60
        assert samples['wsbroker_connections_open{route="/ws"}'] == 20
        assert samples["wsbroker_subscriptions"] == 20
    finally:
        clients.close_all()


def test_max_connections_counts_every_worker(broker):
    b = start(broker, limits={"max_connections": 6})
    clients = Clients()
    try:
        # The kernel picks the worker, so six connections may all land on
        # one; then one is traded for another until both workers hold some.
        held = []
        for _ in range(MAX_TRIES):
            held.append(clients.add(connect_when_free(b.port)))
            if len(held) < 6:
                continue
            if {worker_of(b, ws) for ws in held} == set(range(WORKERS)):
                break
            held.pop().close()
        assert {worker_of(b, ws) for ws in held} == set(range(WORKERS))
        for _ in range(4):                 # whichever worker takes it
            response = upgrade(b.port, "/echo")
            assert response.status == 503, response
        held[0].close()
        assert upgrade_until(b.port, "/echo", 101).status == 101
    finally:
        clients.close_all()


def test_disconnect_user_reaches_every_worker(broker):
    b = start(broker)
    clients = Clients()
    try:
        targets = one_per_worker(b, lambda: clients.raw(b.port, "/chat/x", user="target"))
        bystander = clients.raw(b.port, "/chat/x", user="other")
        response = api(b.port, "DELETE", "/api/connections?user=target")
        assert response.status == 200, response
        assert response.json() == {"disconnected": len(targets)}
        for ws in targets:
            assert ws.assert_closed_with(1008) == "disconnected by API"
        bystander.send_text("still here")
        assert bystander.recv_message() == (OP_TEXT, b"still here")
    finally:
        clients.close_all()


def test_sigterm_closes_connections_on_every_worker(broker):
    b = start(broker)
    clients = Clients()
    targets = one_per_worker(b, lambda: clients.raw(b.port, "/chat/bye"))
    b.signal(signal.SIGTERM)
    for ws in targets:
        code, _ = ws.expect_close(timeout=5)
        assert code == 1001
        ws.send_close(1001)
    assert b.wait_exit(timeout=10) == 0
    clients.close_all()


def test_sighup_reaches_every_worker_and_workers_needs_a_restart(broker):
    b = start(broker)
    clients = Clients()
    try:
        before = one_per_worker(b, lambda: clients.add(ws_connect(b.port, "/echo")))
        b.reload(routes=STEP2_ROUTES + [{"path": "/new", "mode": "echo"}], workers=WORKERS + 1)
        b.wait_log("configuration reloaded")
        assert "workers changed; it applies after a restart" in b.log()
        after = one_per_worker(b, lambda: clients.add(ws_connect(b.port, "/new")))
        for ws in before + after:                       # old and new both served
            ws.send_text("hi")
            assert ws.recv_message() == (OP_TEXT, b"hi")
        assert "ready, %d workers" % WORKERS in b.log()
    finally:
        clients.close_all()


def test_default_is_one_worker_per_cpu(broker):
    b = broker()
    expected = os.sysconf("SC_NPROCESSORS_ONLN")
    b.wait_log("ready, %d worker" % expected)
    ws = ws_connect(b.port, "/echo")
    ws.send_text("x")
    assert ws.recv_message() == (OP_TEXT, b"x")
    ws.close()


def test_one_worker_delivers_directly(broker):
    b = start(broker, workers=1)
    clients = Clients()
    try:
        subs = [clients.pubsub(b.port, user="s%d" % i) for i in range(3)]
        for ws in subs:
            ws.subscribe("one")
        publisher = clients.pubsub(b.port, user="p")
        publisher.subscribe("one")
        reply = publisher.request({"op": "publish", "channel": "one", "data": "x", "id": 1})
        assert reply["op"] == "ok" and reply["seq"] == 1, reply
        assert publisher.recv()["data"] == "x"          # echo after the ok
        for ws in subs:
            assert ws.recv()["seq"] == 1
        b.wait_log("ready, 1 worker")
        assert "worker 1" not in b.log()
    finally:
        clients.close_all()
