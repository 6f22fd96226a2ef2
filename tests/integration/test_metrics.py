"""GET /metrics: Prometheus text format, every listed metric, counters that
move, and metrics_allow (Step 2)."""

import math
import re
import socket
import struct
import time

import pytest

from step2util import (API_TOKEN, STEP2_ROUTES, Clients, api_publish, check_config, jwt_hs256,
                       now, raw, wait_until)
from wsclient import OP_BINARY, OP_TEXT, build_frame, http_request, upgrade

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

METRICS = {
    "wsbroker_connections_open": "gauge",
    "wsbroker_connections_total": "counter",
    "wsbroker_http_requests_total": "counter",
    "wsbroker_handshakes_rejected_total": "counter",
    "wsbroker_messages_received_total": "counter",
    "wsbroker_bytes_received_total": "counter",
    "wsbroker_messages_published_total": "counter",
    "wsbroker_deliveries_total": "counter",
    "wsbroker_bytes_sent_total": "counter",
    "wsbroker_slow_reader_drops_total": "counter",
    "wsbroker_channels": "gauge",
    "wsbroker_subscriptions": "gauge",
    "wsbroker_rate_limited_total": "counter",
    "wsbroker_memory_refusals_total": "counter",
    "wsbroker_history_messages": "gauge",
    "wsbroker_client_connections": "gauge",
    "wsbroker_client_addresses": "gauge",
    "wsbroker_outbound_queued_bytes": "gauge",
    "wsbroker_memory_bytes": "gauge",
    "wsbroker_memory_heap_bytes": "gauge",
    "wsbroker_memory_resident_bytes": "gauge",
    "wsbroker_memory_limit_bytes": "gauge",
    "wsbroker_worker_connections": "gauge",
    "wsbroker_worker_deliveries_total": "counter",
}
UNLABELLED = ["wsbroker_http_requests_total", "wsbroker_messages_received_total",
              "wsbroker_bytes_received_total", "wsbroker_messages_published_total",
              "wsbroker_deliveries_total", "wsbroker_bytes_sent_total",
              "wsbroker_slow_reader_drops_total", "wsbroker_channels",
              "wsbroker_subscriptions", "wsbroker_rate_limited_total",
              "wsbroker_memory_refusals_total", "wsbroker_history_messages",
              "wsbroker_client_connections", "wsbroker_client_addresses",
              "wsbroker_outbound_queued_bytes", "wsbroker_memory_heap_bytes",
              "wsbroker_memory_resident_bytes", "wsbroker_memory_limit_bytes"]
MEMORY_AREAS = ["connections", "subscriptions", "channels"]
REJECT_REASONS = ["bad_request", "method", "version", "origin", "not_found", "bad_channel",
                  "auth", "forbidden", "limit", "timeout", "too_large", "address_limit",
                  "memory"]


# ---------------------------------------------------------------- the parser

class Metrics:
    def __init__(self, helps, types, samples):
        self.helps = helps            # family -> help text
        self.types = types            # family -> type
        self.samples = samples        # list of (name, labels dict, value)

    def get(self, name, **labels):
        """The value of the sample with exactly these labels; 0 when the
        family is declared but the sample is absent (a labelled counter that
        has not counted yet)."""
        found = [v for n, l, v in self.samples if n == name and l == labels]
        assert len(found) <= 1, "duplicate samples for %s %r" % (name, labels)
        if found:
            return found[0]
        assert name in self.types, "metric %s not declared" % name
        return 0.0


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def unescape_help(text):
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "\\n":
            out.append("\n" if text[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_labels(line, pos):
    """Parses {name="value",...} starting at line[pos] == "{"; returns
    (labels, position after "}")."""
    labels = {}
    pos += 1
    while True:
        if line[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME.match(line, pos)
        assert m, "bad label name at %d in %r" % (pos, line)
        name = m.group(0)
        pos = m.end()
        assert line[pos:pos + 2] == '="', "expected =\" at %d in %r" % (pos, line)
        pos += 2
        value = []
        while True:
            c = line[pos]
            if c == "\\":
                nxt = line[pos + 1]
                assert nxt in '\\"n', "bad escape \\%s in %r" % (nxt, line)
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                value.append(c)
                pos += 1
        assert name not in labels, "label %s twice in %r" % (name, line)
        labels[name] = "".join(value)
        if line[pos] == ",":
            pos += 1
        else:
            assert line[pos] == "}", "expected , or } at %d in %r" % (pos, line)


def parse_value(text):
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    return float(text)


def parse_metrics(text):
    """Parses the Prometheus text exposition format 0.0.4 and checks its
    structure: one HELP and one TYPE per family, TYPE before the family's
    samples, samples of a family together, no duplicate series."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    helps, types, samples = {}, {}, []
    seen_series = set()
    finished_families = set()
    current = None
    for line in text[:-1].split("\n"):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert METRIC_NAME.fullmatch(name), "bad metric name in %r" % line
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    assert name not in helps, "second HELP for %s" % name
                    helps[name] = unescape_help(rest)
                else:
                    assert name not in types, "second TYPE for %s" % name
                    assert rest in TYPES, "bad type in %r" % line
                    assert not any(n == name for n, _, _ in samples), \
                        "TYPE for %s after its samples" % name
                    types[name] = rest
            continue
        m = METRIC_NAME.match(line)
        assert m, "bad sample line %r" % line
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = parse_labels(line, pos)
        assert line[pos] == " ", "expected a space after the series in %r" % line
        fields = line[pos:].split()
        assert 1 <= len(fields) <= 2, "bad value/timestamp in %r" % line
        value = parse_value(fields[0])
        if len(fields) == 2:
            int(fields[1])
        if name != current:
            assert name not in finished_families, "samples of %s are not together" % name
            if current is not None:
                finished_families.add(current)
            current = name
        series = (name, tuple(sorted(labels.items())))
        assert series not in seen_series, "duplicate series %r" % (series,)
        seen_series.add(series)
        samples.append((name, labels, value))
    return Metrics(helps, types, samples)


def test_parser_handles_escapes_and_labels():
    text = ('# HELP x_total A \\\\ backslash\\nand newline.\n'
            '# TYPE x_total counter\n'
            'x_total{a="q\\"uote",b="back\\\\slash",c="new\\nline",d=""} 3\n'
            'x_total{a="2",} 4 1700000000000\n'
            '# TYPE g gauge\n'
            'g -1.5e3\n'
            'g{k="v"} +Inf\n')
    m = parse_metrics(text)
    assert m.helps["x_total"] == "A \\ backslash\nand newline."
    assert m.types == {"x_total": "counter", "g": "gauge"}
    assert m.get("x_total", a='q"uote', b="back\\slash", c="new\nline", d="") == 3
    assert m.get("x_total", a="2") == 4
    assert m.get("g") == -1500
    assert m.get("g", k="v") == math.inf
    for bad in ('x{a="1"} 1\nx{a="1"} 2\n', 'x 1\ny 2\nx 3\n', 'x{a=1} 1\n',
                'x 1\n# TYPE x counter\n', "x 1"):
        with pytest.raises(AssertionError):
            parse_metrics(bad)


# ---------------------------------------------------------------- fetching

def scrape(port):
    response = http_request(port, "/metrics")
    assert response.status == 200, response
    assert response.header("Content-Type") == CONTENT_TYPE, response
    return parse_metrics(response.body.decode("utf-8"))


CHANNELS = [{"match": "h:*", "history": 10, "publish": "anyone"}]


@pytest.fixture
def b(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS, http={"api_token": API_TOKEN})


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


def test_every_metric_has_help_type_and_samples(b):
    m = scrape(b.port)
    for name, kind in METRICS.items():
        assert m.types.get(name) == kind, "TYPE of %s: %r" % (name, m.types.get(name))
        assert m.helps.get(name), "no HELP for %s" % name
    for name in UNLABELLED:
        found = [(l, v) for n, l, v in m.samples if n == name]
        assert len(found) == 1 and found[0][0] == {}, "%s: %r" % (name, found)
        assert found[0][1] >= 0
    for name, labels, _ in m.samples:
        if name.startswith("wsbroker_"):
            assert name in METRICS, "unexpected family %s" % name
        if name in ("wsbroker_connections_open", "wsbroker_connections_total"):
            assert set(labels) == {"route"}, labels
        if name == "wsbroker_handshakes_rejected_total":
            assert set(labels) == {"reason"} and labels["reason"] in REJECT_REASONS, labels
        if name == "wsbroker_memory_bytes":
            assert set(labels) == {"area"} and labels["area"] in MEMORY_AREAS, labels
    assert sorted(l["area"] for n, l, _ in m.samples if n == "wsbroker_memory_bytes") == \
        sorted(MEMORY_AREAS)
    assert m.get("wsbroker_memory_heap_bytes") > 0
    assert m.get("wsbroker_memory_resident_bytes") > 0
    assert m.get("wsbroker_memory_limit_bytes") == 0
    # A fresh broker has nothing open.
    assert m.get("wsbroker_channels") == 0
    assert m.get("wsbroker_subscriptions") == 0
    assert m.get("wsbroker_slow_reader_drops_total") == 0


def test_connections_by_route(b, clients):
    before = scrape(b.port)
    chat = [clients.raw(b.port, "/chat/a"), clients.raw(b.port, "/chat/b")]
    ps = clients.pubsub(b.port, user="alice")
    echo = clients.raw(b.port, "/echo")
    after = scrape(b.port)
    for route, opened in (("/chat/:room", 2), ("/ws", 1), ("/echo", 1), ("/quiet/:room", 0)):
        assert after.get("wsbroker_connections_total", route=route) - \
            before.get("wsbroker_connections_total", route=route) == opened, route
        assert after.get("wsbroker_connections_open", route=route) == opened, route
    for ws in chat + [echo]:
        ws.close()
    ps.close()
    wait_until(lambda: all(scrape(b.port).get("wsbroker_connections_open", route=r) == 0
                           for r in ("/chat/:room", "/ws", "/echo")),
               what="connections_open back to 0")
    final = scrape(b.port)
    assert final.get("wsbroker_connections_total", route="/chat/:room") == \
        after.get("wsbroker_connections_total", route="/chat/:room")


def test_http_requests_total_counts_plain_requests(b):
    first = scrape(b.port)
    assert http_request(b.port, "/healthz").status == 200
    assert http_request(b.port, "/").status == 200
    second = scrape(b.port)
    # The two requests plus one scrape.
    assert second.get("wsbroker_http_requests_total") - \
        first.get("wsbroker_http_requests_total") == 3


def rejected(m):
    return {r: m.get("wsbroker_handshakes_rejected_total", reason=r) for r in REJECT_REASONS}


def assert_rejection_counted(port, reason, do):
    before = rejected(scrape(port))
    do()
    after = rejected(scrape(port))
    delta = {r: after[r] - before[r] for r in REJECT_REASONS}
    expected = {r: (1 if r == reason else 0) for r in REJECT_REASONS}
    assert delta == expected, "after a %s rejection: %r" % (reason, delta)


def test_handshake_rejections_by_reason(b):
    def status(expected, path="/chat/a", **kwargs):
        def do():
            response = upgrade(b.port, path, **kwargs)
            assert response.status == expected, response
        return do

    assert_rejection_counted(b.port, "origin",
                             status(403, headers={"Origin": "http://evil.example"}))
    assert_rejection_counted(b.port, "not_found", status(404, path="/no/such/route"))
    assert_rejection_counted(b.port, "bad_channel", status(400, path="/chat/a%20b"))
    assert_rejection_counted(b.port, "version",
                             status(426, headers={"Sec-WebSocket-Version": "8"}))
    assert_rejection_counted(b.port, "method", status(400, method="POST"))
    assert_rejection_counted(b.port, "bad_request",
                             status(400, headers={"Sec-WebSocket-Key": None}))


def test_auth_and_forbidden_rejections(broker):
    b = broker(routes=STEP2_ROUTES, auth={"algorithm": "HS256", "secret": "metrics-secret"})
    token = jwt_hs256({"sub": "u", "exp": now() + 600, "channels": ["room:ok"]},
                      "metrics-secret")

    def status(expected, path):
        def do():
            response = upgrade(b.port, path)
            assert response.status == expected, response
        return do

    assert_rejection_counted(b.port, "auth", status(401, "/chat/ok"))
    assert_rejection_counted(b.port, "auth", status(401, "/chat/ok?token=bad"))
    assert_rejection_counted(b.port, "forbidden", status(403, "/chat/no?token=" + token))


def test_limit_and_timeout_rejections(broker):
    b = broker(routes=STEP2_ROUTES, limits={"max_connections": 2},
               websocket={"handshake_timeout": 1})
    before = rejected(scrape(b.port))
    held = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"GET /chat/a HTTP/1.1\r\n")      # head never finished
        time.sleep(0.2)
        response = upgrade(b.port, "/chat/a")
        assert response.status == 503, response
        for s in held:
            s.settimeout(5)
            data = s.recv(4096)
            assert b" 408 " in data.split(b"\r\n")[0], data
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 3
    while True:
        after = rejected(scrape(b.port))
        if after["timeout"] - before["timeout"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    delta = {r: after[r] - before[r] for r in REJECT_REASONS}
    expected = {r: 0 for r in REJECT_REASONS}
    expected.update(limit=1, timeout=2)
    assert delta == expected, "after one 503 and two 408: %r" % delta


def test_message_counters_for_broadcast(b, clients):
    members = [clients.raw(b.port, "/chat/m") for _ in range(3)]
    before = scrape(b.port)
    members[0].send_text("0123456789")
    for ws in members:
        assert ws.recv_message() == (OP_TEXT, b"0123456789")
    after = scrape(b.port)

    def delta(name):
        return after.get(name) - before.get(name)

    assert delta("wsbroker_messages_received_total") == 1
    assert delta("wsbroker_bytes_received_total") == 10
    assert delta("wsbroker_messages_published_total") == 1
    assert delta("wsbroker_deliveries_total") == 3
    assert delta("wsbroker_bytes_sent_total") == 3 * (2 + 10)


def test_message_counters_for_api_and_pubsub(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    bob = clients.pubsub(b.port, user="bob")
    bob.subscribe("news")
    before = scrape(b.port)
    assert api_publish(b.port, "news", "x").status == 202
    alice.recv()
    bob.recv()
    after = scrape(b.port)
    assert after.get("wsbroker_messages_published_total") - \
        before.get("wsbroker_messages_published_total") == 1
    assert after.get("wsbroker_messages_received_total") == \
        before.get("wsbroker_messages_received_total")
    assert after.get("wsbroker_deliveries_total") - \
        before.get("wsbroker_deliveries_total") == 2
    event = '{"op":"message","channel":"news","seq":1,"data":"x"}'
    assert after.get("wsbroker_bytes_sent_total") - \
        before.get("wsbroker_bytes_sent_total") == 2 * (2 + len(event))

    request = '{"op":"publish","channel":"news","data":"y"}'
    alice.send_text(request)
    assert alice.recv()["op"] == "ok"
    alice.recv()
    bob.recv()
    final = scrape(b.port)
    assert final.get("wsbroker_messages_received_total") - \
        after.get("wsbroker_messages_received_total") == 1
    assert final.get("wsbroker_bytes_received_total") - \
        after.get("wsbroker_bytes_received_total") == len(request)
    assert final.get("wsbroker_messages_published_total") - \
        after.get("wsbroker_messages_published_total") == 1
    assert final.get("wsbroker_deliveries_total") - \
        after.get("wsbroker_deliveries_total") == 2


def test_replay_counts_as_deliveries(b, clients):
    sender = clients.raw(b.port, "/raw/h:r")
    for text in ("one", "two"):
        sender.send_text(text)
        sender.recv_message()
    before = scrape(b.port)
    late = clients.raw(b.port, "/raw/h:r", since="0")
    assert late.recv_message() == (OP_TEXT, b"one")
    assert late.recv_message() == (OP_TEXT, b"two")
    after = scrape(b.port)
    assert after.get("wsbroker_deliveries_total") - before.get("wsbroker_deliveries_total") == 2
    assert after.get("wsbroker_bytes_sent_total") - \
        before.get("wsbroker_bytes_sent_total") == 2 * 5


def test_channels_and_subscriptions_gauges(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("x")
    alice.subscribe("y")
    bob.subscribe("x")
    m = scrape(b.port)
    assert m.get("wsbroker_channels") == 2
    assert m.get("wsbroker_subscriptions") == 3
    bob.request({"op": "unsubscribe", "channel": "x"})
    m = scrape(b.port)
    assert m.get("wsbroker_channels") == 2
    assert m.get("wsbroker_subscriptions") == 2
    alice.close()
    wait_until(lambda: (lambda m: m.get("wsbroker_channels") == 0 and
                        m.get("wsbroker_subscriptions") == 0)(scrape(b.port)),
               what="gauges back to 0")
    # A channel that only holds history still counts as a channel.
    api_publish(b.port, "h:kept", "held")
    assert scrape(b.port).get("wsbroker_channels") == 1


def test_slow_reader_drop_is_counted(broker):
    b = broker(routes=STEP2_ROUTES, limits={"outbound_queue_max": 65536})
    assert scrape(b.port).get("wsbroker_slow_reader_drops_total") == 0
    slow = raw(b.port, "/chat/slow", rcvbuf=4096)
    publisher = raw(b.port, "/quiet/slow")
    try:
        body = b"p" * 1020
        sent = 0
        deadline = time.monotonic() + 20
        while "slow reader" not in b.log() and time.monotonic() < deadline:
            publisher.send_raw(b"".join(build_frame(OP_BINARY, struct.pack(">I", sent + i) + body)
                                        for i in range(100)))
            sent += 100
        assert "slow reader" in b.log(), "no slow reader drop after %d messages" % sent
        wait_until(lambda: scrape(b.port).get("wsbroker_slow_reader_drops_total") == 1,
                   what="slow_reader_drops_total == 1")
        publisher.send_binary(b"fine")
        time.sleep(0.2)
        assert scrape(b.port).get("wsbroker_slow_reader_drops_total") == 1
    finally:
        slow.close()
        publisher.close()


# ---------------------------------------------------------------- metrics_allow

@pytest.mark.parametrize("allow,status", [
    (["10.0.0.0/8"], 403),
    (["::1"], 403),
    (["127.0.0.2"], 403),
    (["127.0.0.1"], 200),
    (["10.0.0.0/8", "127.0.0.0/30"], 200),
    (["0.0.0.0/0"], 200),
])
def test_metrics_allow(broker, allow, status):
    b = broker(routes=STEP2_ROUTES, http={"metrics_allow": allow})
    response = http_request(b.port, "/metrics")
    assert response.status == status, response
    if status == 403:
        assert b"wsbroker_" not in response.body
    assert http_request(b.port, "/healthz").status == 200


def test_metrics_allow_default_is_loopback(b):
    assert http_request(b.port, "/metrics").status == 200


@pytest.mark.parametrize("allow", [["nonsense"], ["10.0.0.0/33"], ["::1/129"], ["10.0.0.0/"],
                                   ["300.1.1.1"], "127.0.0.1"])
def test_invalid_metrics_allow_is_a_config_error(config_file, allow):
    check_config(config_file, marker="metrics_allow", http={"metrics_allow": allow})


def test_metrics_allow_accepts_addresses_and_cidrs(config_file):
    check_config(config_file, http={"metrics_allow": ["::1", "fe80::/10", "192.168.0.0/16",
                                                      "10.1.2.3", "0.0.0.0/0", "::/0"]})
