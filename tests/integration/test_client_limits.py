"""Limits on what one client may take (Step 4): max_connections_per_ip,
messages_per_second + burst, and max_memory."""

import re
import socket
import time

import pytest

from step2util import API_TOKEN, STEP2_ROUTES, Clients, api_publish, pubsub, wait_until
from wsclient import (OP_TEXT, WSClient, build_request, parse_response_head,
                      read_until_close, upgrade_headers, upgrade_until, ws_connect)
from test_metrics import scrape


def connect_from(port, source, timeout=5.0):
    """A TCP connection to the broker from a chosen loopback address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def ws_from(port, source, path="/echo", headers=None):
    client = WSClient(connect_from(port, source))
    extra = dict(headers or {})
    client.handshake(port, path, headers=extra)
    assert client.response.status == 101, client.response
    return client


def answer_without_request(port, source):
    """What the broker says to a connection that has sent nothing yet."""
    sock = connect_from(port, source)
    try:
        data, closed = read_until_close(sock, timeout=3.0)
    finally:
        sock.close()
    return data, closed


def upgrade_from(port, source, headers=None):
    sock = connect_from(port, source)
    try:
        request_headers = upgrade_headers(port)
        request_headers.update(headers or {})
        sock.sendall(build_request("GET", "/echo", request_headers))
        data, _ = read_until_close(sock, timeout=3.0)
    finally:
        sock.close()
    head = data.split(b"\r\n\r\n", 1)[0]
    return parse_response_head(head)


# ------------------------------------------------------ max_connections_per_ip

def test_per_ip_limit_answers_503_at_once_and_spares_other_addresses(broker):
    b = broker(limits={"max_connections_per_ip": 3})
    held = [ws_from(b.port, "127.0.0.2") for _ in range(3)]
    # The fourth from the same address is refused before it says anything:
    # a flood from one address costs no request buffers.
    data, closed = answer_without_request(b.port, "127.0.0.2")
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    response = parse_response_head(head)
    assert response.status == 503, data
    assert response.header("Retry-After") == "1"
    assert b"too many connections from this address" in body
    # Other addresses are not affected.
    other = ws_from(b.port, "127.0.0.3")
    other.send_text("hello")
    assert other.recv_message() == (OP_TEXT, b"hello")
    # Held connections keep working.
    for ws in held:
        ws.send_text("still here")
        assert ws.recv_message() == (OP_TEXT, b"still here")
    m = scrape(b.port)
    assert m.get("wsbroker_handshakes_rejected_total", reason="address_limit") == 1
    assert m.get("wsbroker_client_addresses") >= 2
    b.wait_log(re.compile(r"reject 127\.0\.0\.2:\d+ .* 503: too many connections from this address"))
    # A closed connection frees its place.
    held[0].send_close(1000)
    held[0].assert_closed_with(1000)
    held[0].close()
    wait_until(lambda: upgrade_from(b.port, "127.0.0.2").status == 101, timeout=5,
               what="a place freed for 127.0.0.2")
    for ws in held[1:] + [other]:
        ws.close()


def test_per_ip_limit_counts_plain_http_and_half_sent_heads(broker):
    b = broker(limits={"max_connections_per_ip": 2})
    idle = [connect_from(b.port, "127.0.0.4") for _ in range(2)]
    for sock in idle:
        sock.sendall(b"GET / HTTP/1.1\r\n")     # head never finished
    time.sleep(0.2)
    data, _ = answer_without_request(b.port, "127.0.0.4")
    assert data.startswith(b"HTTP/1.1 503 "), data
    for sock in idle:
        sock.close()


def test_per_ip_limit_is_off_by_default(broker):
    b = broker()
    held = [ws_from(b.port, "127.0.0.5") for _ in range(20)]
    assert scrape(b.port).get("wsbroker_handshakes_rejected_total", reason="address_limit") == 0
    for ws in held:
        ws.close()


def test_per_ip_limit_behind_a_trusted_proxy_counts_forwarded_clients(broker):
    b = broker(limits={"max_connections_per_ip": 2}, proxy={"trusted": ["127.0.0.1"]})
    alice = {"X-Forwarded-For": "203.0.113.5"}
    held = [ws_connect(b.port, "/echo", headers=alice) for _ in range(2)]
    third = upgrade_from(b.port, "127.0.0.1", headers=alice)
    assert third.status == 503 and third.header("Retry-After") == "1"
    # Another client behind the same proxy, and the proxy's own requests,
    # are not limited by alice's count.
    bob = [ws_connect(b.port, "/echo", headers={"X-Forwarded-For": "203.0.113.6"})
           for _ in range(2)]
    own = [ws_connect(b.port, "/echo") for _ in range(3)]
    # A peer that is not trusted is counted by its own address, whatever
    # it claims to forward.
    liar = [ws_from(b.port, "127.0.0.6", headers={"X-Forwarded-For": "198.51.100.%d" % i})
            for i in range(2)]
    data, _ = answer_without_request(b.port, "127.0.0.6")
    assert data.startswith(b"HTTP/1.1 503 "), data
    for ws in held + bob + own + liar:
        ws.close()


def test_per_ip_limit_applies_after_reload(broker):
    b = broker()
    held = [ws_from(b.port, "127.0.0.7") for _ in range(3)]
    b.reload(limits={"max_connections_per_ip": 3})
    # Connections open before the reload are counted too.
    wait_until(lambda: upgrade_from(b.port, "127.0.0.7").status == 503, timeout=5,
               what="the new per-address limit")
    assert upgrade_from(b.port, "127.0.0.8").status == 101
    for ws in held:
        ws.send_text("kept")
        assert ws.recv_message() == (OP_TEXT, b"kept")
        ws.close()


# ------------------------------------------------- messages_per_second, burst

def test_burst_passes_then_flood_is_closed_with_1008(broker):
    b = broker(limits={"messages_per_second": 5, "burst": 10})
    ws = ws_connect(b.port, "/echo")
    for i in range(10):
        ws.send_text("m%d" % i)
    for i in range(10):
        assert ws.recv_message() == (OP_TEXT, b"m%d" % i)
    ws.send_text("one too many")
    ws.assert_closed_with(1008)
    assert ws.close_raw[2:] == b"message rate exceeded"
    ws.close()
    assert scrape(b.port).get("wsbroker_rate_limited_total") == 1
    b.wait_log(re.compile(r"rate limit 127\.0\.0\.1:\d+ /echo: over 5 messages per second"))


def test_sending_at_the_rate_is_never_cut_off(broker):
    b = broker(limits={"messages_per_second": 20, "burst": 2})
    ws = ws_connect(b.port, "/echo")
    for i in range(30):                 # 1.5 s at 20 per second, under the rate
        ws.send_text("m%d" % i)
        assert ws.recv_message() == (OP_TEXT, b"m%d" % i)
        time.sleep(0.06)
    assert scrape(b.port).get("wsbroker_rate_limited_total") == 0
    ws.close()


def test_burst_defaults_to_one_second_of_rate(broker):
    b = broker(limits={"messages_per_second": 4})
    ws = ws_connect(b.port, "/echo")
    for i in range(4):
        ws.send_text("m%d" % i)
        assert ws.recv_message() == (OP_TEXT, b"m%d" % i)
    ws.send_text("fifth")
    ws.assert_closed_with(1008)
    ws.close()


def test_ping_flood_is_rate_limited(broker):
    b = broker(limits={"messages_per_second": 5, "burst": 5})
    ws = ws_connect(b.port, "/echo")
    for _ in range(6):
        ws.send_ping(b"p")
    ws.assert_closed_with(1008)
    ws.close()


def step2_broker(broker, **overrides):
    settings = {"routes": STEP2_ROUTES, "http": {"api_token": API_TOKEN}}
    settings.update(overrides)
    return broker(**settings), settings


def test_rate_limit_closes_a_pubsub_flood_and_spares_others(broker):
    b, _ = step2_broker(broker, limits={"messages_per_second": 3, "burst": 3},
                        channels=[{"match": "*", "publish": "anyone"}])
    clients = Clients()
    try:
        quiet = clients.pubsub(b.port, user="quiet")
        quiet.subscribe("room", id=1)
        noisy = clients.pubsub(b.port, user="noisy")
        for i in range(3):
            noisy.publish("room", i, id=i)
        for i in range(3):
            assert noisy.recv()["op"] == "ok"
            assert quiet.recv()["data"] == i
        noisy.publish("room", 9, id=9)
        noisy.ws.assert_closed_with(1008)
        # The quiet one stays connected and is served.
        quiet.send_text("ping")   # not JSON: answered with an error, not a close
        assert quiet.recv()["op"] == "error"
        quiet.ws.send_text('{"op":"publish","channel":"room","data":"after","id":5}')
        assert quiet.recv()["op"] == "ok"
        assert quiet.recv()["data"] == "after"
    finally:
        clients.close_all()


def test_rate_limit_config_errors(config_file):
    from conftest import run_wsbroker
    path = config_file("limits = { burst = 10; };\n")
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode != 0
    assert re.search(r":\d+: 'limits\.burst' needs 'limits\.messages_per_second'",
                     result.stderr), result.stderr


# ----------------------------------------------------------------- max_memory

def heap_bytes(port):
    return scrape(port).get("wsbroker_memory_heap_bytes")


def test_max_memory_refuses_new_work_and_recovers(broker):
    rules = [{"match": "big", "history": 2000, "history_ttl": 2},
             {"match": "*", "publish": "anyone"}]
    b, settings = step2_broker(broker, channels=rules)
    wait_until(lambda: heap_bytes(b.port) > 0, what="a heap figure")
    baseline = heap_bytes(b.port)
    limit = int(baseline) + 8 * 1024 * 1024
    b.reload(limits={"max_memory": limit}, **settings)
    wait_until(lambda: scrape(b.port).get("wsbroker_memory_limit_bytes") == limit,
               what="the reload")
    clients = Clients()
    try:
        sub = clients.pubsub(b.port, user="sub")
        sub.subscribe("other", id=1)
        chat = clients.raw(b.port, "/chat/room")
        # Fill history until the heap passes the limit.
        chunk = "x" * 60000
        for i in range(400):
            status = api_publish(b.port, "big", text=chunk).status
            if status == 503:
                break
            assert status == 202
        else:
            pytest.fail("the heap never reached max_memory")
        assert heap_bytes(b.port) >= limit
        # Over the limit: new connections get 503, pubsub work gets
        # "unavailable", a broadcast-route message closes with 1013.
        refused = upgrade_until(b.port, "/echo", 503, timeout=2)
        assert refused.status == 503 and refused.header("Retry-After") == "1"
        reply = sub.request({"op": "subscribe", "channel": "more", "id": 2})
        assert reply["op"] == "error" and reply["code"] == "unavailable", reply
        reply = sub.request({"op": "publish", "channel": "other", "id": 3, "data": 1})
        assert reply["op"] == "error" and reply["code"] == "unavailable", reply
        chat.send_text("hello")
        chat.assert_closed_with(1013)
        m = scrape(b.port)      # monitoring stays open
        assert m.get("wsbroker_memory_refusals_total") >= 3
        assert m.get("wsbroker_handshakes_rejected_total", reason="memory") >= 1
        b.wait_log("memory limit reached")
        # History expires (ttl 2 s), the heap falls, work is taken again.
        wait_until(lambda: heap_bytes(b.port) < limit, timeout=10, what="history to expire")
        assert upgrade_until(b.port, "/echo", 101, timeout=5).status == 101
        sub.subscribe("more", id=4)
    finally:
        clients.close_all()


def test_memory_accounting_follows_connections_and_subscriptions(broker):
    b, _ = step2_broker(broker)
    # What the first upgrade and message initialise once (the libraries'
    # tables, the loop's read buffer) is no connection's.
    warm = pubsub(b.port, user="warm-up")
    warm.subscribe("warm-up", id=1)
    warm.close()
    wait_until(lambda: scrape(b.port).get("wsbroker_client_connections") == 1,
               what="the warm-up connection to go")
    before = scrape(b.port)
    clients = Clients()
    count = 200
    try:
        subs = [clients.pubsub(b.port, user="u%d" % i) for i in range(count)]
        for i, ws in enumerate(subs):
            ws.subscribe("channel-%d" % i, id=1)
        after = scrape(b.port)
        grown = {area: after.get("wsbroker_memory_bytes", area=area) -
                 before.get("wsbroker_memory_bytes", area=area)
                 for area in ("connections", "subscriptions", "channels")}
        # Each scrape is a connection too, and the start-up probe may still
        # be closing in the first one.
        assert count - 1 <= after.get("wsbroker_client_connections") - \
            before.get("wsbroker_client_connections") <= count
        # Accounted per connection: the connection and what the libraries
        # allocate for it, under 1 KiB for an idle plain WebSocket; per
        # subscription and per channel, its structures and name.
        per_connection = grown["connections"] / count
        assert 512 < per_connection < 16 * 1024, per_connection
        assert 16 < grown["subscriptions"] / count < 1024, grown
        assert 64 < grown["channels"] / count < 4096, grown
        # What is accounted explains most of the real heap growth.
        heap_grown = after.get("wsbroker_memory_heap_bytes") - \
            before.get("wsbroker_memory_heap_bytes")
        accounted = sum(grown.values())
        print("per connection: accounted %.0f B (connection), %.0f B (subscription), "
              "%.0f B (channel); heap growth %.0f B" %
              (per_connection, grown["subscriptions"] / count, grown["channels"] / count,
               heap_grown / count))
        assert 0.7 * heap_grown < accounted < 1.5 * heap_grown, (accounted, heap_grown)
    finally:
        clients.close_all()
    wait_until(lambda: scrape(b.port).get("wsbroker_memory_bytes", area="subscriptions") ==
               before.get("wsbroker_memory_bytes", area="subscriptions"),
               what="subscriptions to be released")


def test_max_memory_config_bounds(config_file):
    from conftest import run_wsbroker
    path = config_file("limits = { max_memory = 1000; };\n")
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode != 0
    assert "'limits.max_memory' must be 0 (no limit) or at least 1048576 bytes" in result.stderr
