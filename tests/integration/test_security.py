"""Security review regressions (SECURITY.md): response splitting, log
injection, integer edges of Content-Length and frame lengths, static path
variants, connections dropped in the middle of a fan-out, and raw messages
whose pubsub event would outgrow the limits.

Classes already covered elsewhere are listed in SECURITY.md rather than
repeated here (origin matching, API token comparison, JWT checks, the basic
traversal spellings, the slow-reader drop)."""

import base64
import json
import re
import socket
import struct
import time

import pytest

from conftest import SECRET_CONTENT, STATIC_FILES
from test_limits import Reader
from step2util import API_TOKEN, STEP2_ROUTES, Clients, compact, join, leave, pubsub, raw
from wsclient import (OP_BINARY, OP_TEXT, WSClient, build_frame, http_exchange, http_request,
                      upgrade, upgrade_headers, ws_connect)


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


def request_bytes(lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def upgrade_lines(port, path="/echo", extra=()):
    lines = ["GET %s HTTP/1.1" % path]
    lines += ["%s: %s" % (k, v) for k, v in upgrade_headers(port).items()]
    return lines + list(extra)


def head_of(response_bytes):
    head, _, _ = response_bytes.partition(b"\r\n\r\n")
    return head


# ---------------------------------------------------------------- response splitting

@pytest.mark.parametrize("value", [
    "v1.chat\rX-Injected: 1",
    "v1.chat\nX-Injected: 1",
    "v1.chat\r\rX-Injected: 1",
    "v1.chat\x00X-Injected: 1",
], ids=["bare-cr", "bare-lf", "double-cr", "nul"])
def test_line_breaks_inside_a_header_value_are_400(broker, value):
    b = broker(websocket={"subprotocols": ["v1.chat"]})
    request = request_bytes(upgrade_lines(b.port, extra=["Sec-WebSocket-Protocol: " + value]))
    response = http_exchange(b.port, request)
    assert response.status == 400, response
    assert response.header("X-Injected") is None, response
    assert b"X-Injected" not in response.body


SERVER_101_HEADERS = {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
                      "sec-websocket-extensions"}


def raw_101_head(port, extra):
    with WSClient.open(port) as client:
        client.send_raw(request_bytes(upgrade_lines(port, extra=extra)))
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in client.buf and time.monotonic() < deadline:
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = client.sock.recv(4096)
            if not data:
                break
            client.buf.extend(data)
        return head_of(bytes(client.buf))


@pytest.mark.parametrize("offer,chosen", [
    ("v1.chat", "v1.chat"),
    ("x-\xff\xfe, v1.chat", "v1.chat"),            # obs-text beside a real offer
    ("V1.CHAT", None),                             # names are case-sensitive
    ("v1.chat;q=1", None),                         # not the token itself
    ("v1.chat\tX-Injected: 1", None),              # HTAB is legal in a value
    ("\"v1.chat\"", None),
], ids=["plain", "obs-text", "case", "params", "htab", "quoted"])
def test_101_names_only_the_servers_own_subprotocol(broker, offer, chosen):
    b = broker(websocket={"subprotocols": ["v1.chat"]})
    head = raw_101_head(b.port, ["Sec-WebSocket-Protocol: " + offer,
                                 "X-Echo-Me: " + offer])
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols", head
    names = {line.split(b":", 1)[0].decode().lower() for line in lines[1:]}
    assert names <= SERVER_101_HEADERS, head
    protocol = [line for line in lines if line.lower().startswith(b"sec-websocket-protocol:")]
    if chosen is None:
        assert protocol == [], head
    else:
        assert protocol == [b"Sec-WebSocket-Protocol: " + chosen.encode()], head
    assert b"X-Injected" not in head and b"\xff" not in head


EXTENSION_RE = re.compile(r"^permessage-deflate; server_no_context_takeover"
                          r"(; client_no_context_takeover)?(; server_max_window_bits=\d{1,2})?$")


@pytest.mark.parametrize("offer", [
    'permessage-deflate; client_max_window_bits="10"',
    'permessage-deflate; server_max_window_bits="9"',
    'permessage-deflate; x-evil="a\\"b", permessage-deflate',
    'x-evil; p="q", permessage-deflate; client_no_context_takeover',
    'permessage-deflate; server_max_window_bits=09, permessage-deflate',
])
def test_extension_answer_is_rebuilt_not_echoed(shared_broker, offer):
    head = raw_101_head(shared_broker.port, ["Sec-WebSocket-Extensions: " + offer])
    assert head.startswith(b"HTTP/1.1 101 "), head
    answers = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-extensions:")]
    assert len(answers) == 1, head
    assert EXTENSION_RE.match(answers[0]), answers
    assert "evil" not in answers[0] and '"' not in answers[0]


@pytest.mark.parametrize("target", [
    "/<script>alert(1)</script>",
    "/chat/%3Cscript%3E",
    "/no-such-page-%0d%0aX-Injected:%201",
    "/api/%3Cscript%3E",
])
def test_refusals_do_not_echo_the_request(broker, target):
    b = broker(routes=STEP2_ROUTES, http={"api_token": API_TOKEN})
    for upgrade_request in (False, True):
        lines = upgrade_lines(b.port, target) if upgrade_request else \
            ["GET %s HTTP/1.1" % target, "Host: 127.0.0.1"]
        response = http_exchange(b.port, request_bytes(lines + ["Authorization: Bearer " +
                                                                API_TOKEN]))
        assert response.status in (400, 404), response
        assert b"script" not in response.body.lower(), response
        assert b"Injected" not in response.body and response.header("X-Injected") is None


# ---------------------------------------------------------------- log injection

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (error|warn|info|debug) [^\x00-\x1f\x7f]*$")


def test_peer_text_cannot_forge_log_lines(broker):
    b = broker(routes=STEP2_ROUTES)
    forged = "%0D%0A2030-01-01T00:00:00Z%20error%20FORGED"
    paths = [
        "/chat/x" + forged,                 # a channel that does not validate
        "/echo?user=a" + forged,            # a user name that does not validate
        "/echo?user=%C2%9B31mFORGED",       # C1 control (CSI) in a name
        "/ws?user=%1B%5B31mFORGED",         # ESC in a name
        "/nowhere" + forged,                # 404 path, logged as sent
    ]
    for path in paths:
        assert upgrade(b.port, path).status in (400, 404), path
    # a user name that is accepted: it is logged as sent
    ws = ws_connect(b.port, "/echo?user=caf%C3%A9")
    ws.close()
    # headers cannot carry line breaks or ESC at all (400)
    for value in ("a\rFORGED", "a\x1b[2J"):
        lines = upgrade_lines(b.port, extra=["Origin: http://x" + value])
        assert http_exchange(b.port, request_bytes(lines)).status == 400
    b.wait_log("open ")
    log = b.log()
    assert "FORGED" in log                  # the attempts were logged ...
    for line in log.splitlines():           # ... inside ordinary lines
        assert LOG_LINE.match(line), repr(line)
        assert not line.startswith("2030-"), repr(line)
    assert "\x1b" not in log and "\u009b" not in log


# ---------------------------------------------------------------- Content-Length

def api_post_raw(port, content_length_lines, body=b'{"a":1}'):
    lines = ["POST /api/publish/news HTTP/1.1", "Host: 127.0.0.1",
             "Authorization: Bearer " + API_TOKEN, "Content-Type: application/json"]
    return http_exchange(port, request_bytes(lines + content_length_lines) + body)


@pytest.fixture(scope="module")
def api_broker(tmp_path_factory):
    from conftest import BrokerFactory
    factory = BrokerFactory(tmp_path_factory.mktemp("api"))
    yield factory(routes=STEP2_ROUTES, http={"api_token": API_TOKEN},
                  websocket={"max_message_size": 4096})
    factory.finish()


@pytest.mark.parametrize("lines,status", [
    (["Content-Length: 18446744073709551616"], 400),     # 2^64
    (["Content-Length: 18446744073709551623"], 400),     # 2^64 + 7: wraps to 7
    (["Content-Length: 9223372036854775808"], 400),      # 2^63
    (["Content-Length: 4294967303"], 413),               # 2^32 + 7
    (["Content-Length: 999999999999999999"], 413),       # 18 digits
    (["Content-Length: 00000000000000000007"], 400),     # 20 digits, small value
    (["Content-Length: -1"], 400),
    (["Content-Length: +7"], 400),
    (["Content-Length: 0x7"], 400),
    (["Content-Length: 7e0"], 400),
    (["Content-Length: 7, 7"], 400),
    (["Content-Length: 7", "Content-Length: 7"], 400),
    (["Content-Length:"], 400),
    (["Content-Length: 7", "Transfer-Encoding: chunked"], 501),
    (["Content-Length:  7 "], 202),                      # optional whitespace
    (["Content-Length: 7"], 202),
], ids=["2^64", "2^64+7", "2^63", "2^32+7", "18-digits", "20-digits", "negative", "plus",
        "hex", "exponent", "list", "repeated", "empty", "with-te", "ows", "exact"])
def test_content_length_edges(api_broker, lines, status):
    response = api_post_raw(api_broker.port, lines)
    assert response.status == status, response
    assert response.closed


def test_bytes_after_the_body_are_not_a_second_request(api_broker):
    # Content-Length 7 covers {"a":1}; what follows must not be read as a
    # request of its own (no smuggling: one request per connection).
    smuggled = request_bytes(["DELETE /api/connections?user=x HTTP/1.1", "Host: 127.0.0.1",
                              "Authorization: Bearer " + API_TOKEN])
    response = api_post_raw(api_broker.port, ["Content-Length: 7"], b'{"a":1}' + smuggled)
    assert response.status == 202, response
    assert response.closed
    assert response.body.count(b"HTTP/1.1") == 0, response


# ---------------------------------------------------------------- frame lengths

@pytest.mark.parametrize("length,form", [
    ((1 << 32) + 5, "64"),          # low 32 bits say 5
    ((1 << 32), "64"),              # low 32 bits say 0
    ((1 << 63) - 1, "64"),          # largest legal value
    ((1 << 31), "64"),
    (65537, "64"),                  # just over the limit
], ids=["2^32+5", "2^32", "2^63-1", "2^31", "limit+1"])
def test_declared_lengths_that_truncate_are_1009(shared_broker, length, form):
    ws = ws_connect(shared_broker.port)
    try:
        ws.send_raw(build_frame(OP_BINARY, b"", length=length, length_form=form) + b"\x00" * 5)
        ws.assert_closed_with(1009)
    finally:
        ws.close()


def test_largest_message_in_a_64bit_header_is_served(shared_broker):
    ws = ws_connect(shared_broker.port)
    try:
        payload = b"\xa5" * 65536
        ws.send_raw(build_frame(OP_BINARY, payload, length_form="64"))
        assert ws.recv_message(timeout=10) == (OP_BINARY, payload)
    finally:
        ws.close()


# ---------------------------------------------------------------- static files

@pytest.mark.parametrize("target,statuses", [
    ("/index.html%00.txt", (400,)),
    ("/%00", (400,)),
    ("/%5c..%5csecret", (404,)),
    ("/subdir%5c..%5c..%5csecret", (404,)),
    ("/%2fetc%2fpasswd", (404,)),
    ("/%2e", (404,)),
    ("/subdir/%2e%2e%2f%2e%2e%2fsecret", (404,)),
    ("/escape.txt/", (404,)),
    ("/%65scape.txt", (404,)),
    ("/subdir/../escape.txt", (404,)),
], ids=["nul-suffix", "nul", "backslash", "backslash-deep", "encoded-slash-root", "dot",
        "encoded-dots", "symlink-slash", "symlink-encoded", "symlink-dotdot"])
def test_more_traversal_spellings(shared_broker, target, statuses):
    response = http_exchange(shared_broker.port, request_bytes(["GET %s HTTP/1.1" % target,
                                                                "Host: 127.0.0.1"]))
    assert response.status in statuses, response
    assert SECRET_CONTENT.encode() not in response.body
    assert response.closed


def test_directory_is_its_index_never_a_listing(shared_broker):
    for path in ("/subdir", "/subdir/"):
        response = http_request(shared_broker.port, path)
        assert response.status == 200, response
        assert response.body == STATIC_FILES["subdir/index.html"].encode()


# ---------------------------------------------------------------- drops during a fan-out

def test_readers_dropped_mid_fan_out_and_their_leaves(broker):
    """Three members of a presence channel stop reading. Each is cut off
    while a publish is still delivering to the others, and freeing each
    sends a leave to the rest (the other stalled ones included) from the
    reap pass. The reading member gets every message in order and one leave
    per dropped user; the sanitizer build reports nothing at teardown."""
    b = broker(routes=STEP2_ROUTES, limits={"outbound_queue_max": 65536},
               channels=[{"match": "room:*", "presence": True}])
    watcher = pubsub(b.port, user="watcher")
    watcher.subscribe("room:fan")
    watcher.recv()                                          # its own join
    stalled = [raw(b.port, "/pchat/fan", user="s%d" % i, rcvbuf=4096) for i in range(3)]
    publisher = raw(b.port, "/quiet/fan", user="pub")
    for user in ("s0", "s1", "s2", "pub"):
        assert watcher.recv() == join("room:fan", user)
    collector = Reader(watcher.ws)
    collector.start()

    body = b"f" * 2044
    sent = 0
    deadline = time.monotonic() + 60
    try:
        while sent < 8000 and time.monotonic() < deadline:
            publisher.send_raw(b"".join(build_frame(OP_BINARY, struct.pack(">I", sent + i) + body)
                                        for i in range(10)))
            sent += 10
            # The watcher catches up before the next batch, so only the
            # stalled members' queues grow, however busy the machine is.
            while len(collector.messages) < sent and collector.error is None and \
                    time.monotonic() < deadline:
                time.sleep(0.002)
            if b.log().count("slow reader") >= 3:
                break
        assert b.log().count("slow reader") == 3, "drops after %d messages" % sent
        collector.wait_for(sent + 3, deadline)
    finally:
        collector.finish()
    assert collector.error is None, collector.error
    events = [json.loads(payload) for opcode, payload in collector.messages]
    assert all(opcode == OP_TEXT for opcode, _ in collector.messages)
    messages = [e for e in events if e["op"] == "message"]
    leaves = [e for e in events if e["op"] == "leave"]
    assert len(messages) == sent and len(leaves) == 3, (len(messages), leaves)
    for i, event in enumerate(messages):
        assert base64.b64decode(event["data_base64"]) == struct.pack(">I", i) + body, i
    assert sorted(e["user"] for e in leaves) == ["s0", "s1", "s2"]
    assert all(e == leave("room:fan", e["user"]) for e in leaves)

    # The channel and the rest of the broker carry on.
    publisher.send_binary(b"after")
    assert json.loads(watcher.recv_text())["data_base64"] == base64.b64encode(b"after").decode()
    for ws in stalled + [publisher, watcher]:
        ws.close()


# ---------------------------------------------------------------- event growth

def message_event_length(channel, seq, data, user):
    return len(compact({"op": "message", "channel": channel, "seq": seq, "data": data,
                        "from": user}).encode())


def test_raw_message_whose_event_outgrows_the_limit_cuts_nobody_off(broker, clients):
    """A control character becomes six bytes in a JSON string: a 64 KiB raw
    text of them is a 384 KiB event. Pubsub members do not get it (a gap in
    seq) and stay connected; before, the event alone passed
    outbound_queue_max and every pubsub member of the channel was cut off."""
    # outbound_queue_max is below the 384 KiB event but holds all four raw
    # messages: with several workers they reach the raw member as fast as
    # its worker can queue them, not at the pace the sender's bytes are read.
    b = broker(routes=STEP2_ROUTES, limits={"outbound_queue_max": 262144},
               channels=[{"match": "room:*", "history": 10}])
    member = clients.pubsub(b.port, user="m")
    member.subscribe("room:g")
    raw_member = clients.raw(b.port, "/chat/g", user="r")
    sender = clients.raw(b.port, "/quiet/g", user="s")

    bomb = "\x01" * 65536
    sender.send_text(bomb)                                       # seq 1
    sender.send_binary(b"\x00" * 65536)                          # seq 2: base64 is 87384
    fitting = "y" * (65536 - message_event_length("room:g", 3, "", "s"))
    sender.send_text(fitting)                                    # seq 3: exactly the limit
    sender.send_text("after")                                    # seq 4

    assert raw_member.recv_message(timeout=10) == (OP_TEXT, bomb.encode())
    assert raw_member.recv_message(timeout=10) == (OP_BINARY, b"\x00" * 65536)
    assert raw_member.recv_message(timeout=10) == (OP_TEXT, fitting.encode())
    assert raw_member.recv_message(timeout=10) == (OP_TEXT, b"after")
    got = member.recv(timeout=10)
    assert (got["seq"], got["data"]) == (3, fitting), got["seq"]
    assert len(member.last_text.encode()) == 65536
    got = member.recv(timeout=10)
    assert (got["seq"], got["data"]) == (4, "after"), got
    assert "slow reader" not in b.log()
    b.wait_log("not delivering message 1 of room:g to m")
    b.wait_log("not delivering message 2 of room:g to m")

    # A replay skips them the same way.
    late = clients.pubsub(b.port, user="late")
    reply = late.subscribe("room:g", since=0)
    assert reply["recovered"] is True, reply
    assert [late.recv()["seq"] for _ in range(2)] == [3, 4]
    late.silent(0.3)
    member.silent(0.1)
    assert "slow reader" not in b.log()


# ---------------------------------------------------------------- output the client asks for

def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_until_closed(ws, frame, limit_bytes, timeout=20):
    """Sends frame over and over without reading; returns bytes sent once
    the server closes (or limit_bytes is reached)."""
    sent = 0
    deadline = time.monotonic() + timeout
    ws.sock.settimeout(1.0)
    while sent < limit_bytes and time.monotonic() < deadline:
        try:
            ws.sock.sendall(frame)
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(frame)
    return sent


@pytest.mark.parametrize("kind", ["echo", "ping"])
def test_client_that_sends_without_reading_is_cut_off(broker, kind, memory_scale):
    """Echoes and pongs count against outbound_queue_max like deliveries:
    before, a client that sent and never read made the daemon's memory grow
    with everything it sent."""
    b = broker(limits={"outbound_queue_max": 65536})
    ws = ws_connect(b.port, "/echo", rcvbuf=4096)
    before = vm_rss_kb(b.proc.pid)
    if kind == "echo":
        frame = build_frame(OP_BINARY, b"e" * 16384)
    else:
        frame = b"".join(build_frame(0x9, b"p" * 125) for _ in range(128))
    # Cut off, the client is sent a close frame after its queue and is
    # dropped at close_timeout (2 s here); what it sends meanwhile is read
    # and thrown away, so memory stays flat however fast it sends.
    started = time.monotonic()
    sent = send_until_closed(ws, frame, 1 << 40, timeout=15)
    elapsed = time.monotonic() - started
    b.wait_log("slow reader", timeout=10)
    assert elapsed < 12, "still connected after %.1f s and %d bytes" % (elapsed, sent)
    assert vm_rss_kb(b.proc.pid) - before < 16 * 1024 * memory_scale
    ws.close()
    ok = ws_connect(b.port, "/echo")
    ok.send_text("fine")
    assert ok.recv_message() == (OP_TEXT, b"fine")
    ok.close()


def test_one_frame_larger_than_the_queue_bound_reaches_a_reader(broker, clients):
    """A reader keeping up gets a message whose frame alone passes
    outbound_queue_max."""
    b = broker(limits={"outbound_queue_max": 16384}, routes=STEP2_ROUTES)
    reader = clients.raw(b.port, "/chat/big")
    sender = clients.raw(b.port, "/quiet/big")
    sender.send_binary(b"B" * 60000)
    assert reader.recv_message(timeout=10) == (OP_BINARY, b"B" * 60000)
    echo = clients.add(ws_connect(b.port, "/echo"))
    echo.send_binary(b"E" * 60000)
    assert echo.recv_message(timeout=10) == (OP_BINARY, b"E" * 60000)
    assert "slow reader" not in b.log()


# ---------------------------------------------------------------- API bodies of strangers

@pytest.mark.parametrize("authorization", [None, "Bearer wrong"])
def test_api_refuses_before_the_body_arrives(broker, authorization):
    b = broker(routes=STEP2_ROUTES, http={"api_token": API_TOKEN},
               websocket={"max_message_size": 1048576})
    lines = ["POST /api/publish/news HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: application/json", "Content-Length: 1048576"]
    if authorization is not None:
        lines.append("Authorization: " + authorization)
    started = time.monotonic()
    response = http_exchange(b.port, request_bytes(lines), timeout=5)   # no body sent
    assert response.status == 401, response
    assert time.monotonic() - started < 3
    # with the token the same head waits for its body
    good = lines[:4] + ["Authorization: Bearer " + API_TOKEN]
    with WSClient.open(b.port) as client:
        client.send_raw(request_bytes(good))
        client.assert_silent(0.5)
