"""The opening handshake on a WebSocket route: checks, origin policy,
subprotocol choice and the accept key."""

import re

import pytest

from wsclient import OP_TEXT, accept_key, upgrade, ws_connect

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def header_tokens(value):
    return [t.strip().lower() for t in (value or "").split(",")]


def test_accept_key_helper_matches_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_valid_upgrade_gets_101_with_correct_accept(shared_broker):
    response = upgrade(shared_broker.port, "/echo", headers={"Sec-WebSocket-Key": RFC_KEY})
    assert response.status == 101, response
    assert response.header("Sec-WebSocket-Accept") == RFC_ACCEPT
    assert response.header("Upgrade").lower() == "websocket"
    assert "upgrade" in header_tokens(response.header("Connection"))
    assert response.header("Sec-WebSocket-Protocol") is None


def test_accept_key_is_computed_per_request(shared_broker):
    for _ in range(3):
        ws = ws_connect(shared_broker.port, "/echo")   # checks the accept key
        ws.send_text("ok")
        assert ws.recv_message() == (OP_TEXT, b"ok")
        ws.close()


@pytest.mark.parametrize("headers", [
    {"Connection": "keep-alive, Upgrade"},
    {"Connection": "upgrade"},
    {"Connection": "Upgrade, keep-alive"},
    {"Upgrade": "WebSocket"},
    {"Origin": None},
], ids=["keep-alive-then-upgrade", "lowercase-upgrade", "upgrade-then-keep-alive",
        "mixed-case-websocket", "no-origin"])
def test_acceptable_header_variants_upgrade(shared_broker, headers):
    ws = ws_connect(shared_broker.port, "/echo", headers=headers)
    ws.send_text("still echoing")
    assert ws.recv_message() == (OP_TEXT, b"still echoing")
    ws.close()


@pytest.mark.parametrize("method,version,headers,path", [
    ("POST", "HTTP/1.1", {"Content-Length": "0"}, "/echo"),
    ("PUT", "HTTP/1.1", {"Content-Length": "0"}, "/echo"),
    ("GET", "HTTP/1.0", {}, "/echo"),
    ("GET", "HTTP/1.1", {"Host": None}, "/echo"),
    ("GET", "HTTP/1.1", {"Upgrade": None}, "/echo"),
    ("GET", "HTTP/1.1", {"Upgrade": "h2c"}, "/echo"),
    ("GET", "HTTP/1.1", {"Connection": None}, "/echo"),
    ("GET", "HTTP/1.1", {"Connection": "keep-alive"}, "/echo"),
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": None}, "/echo"),
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": "not base64 at all!"}, "/echo"),
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": "AAECAwQFBgcICQoLDA0O"}, "/echo"),      # 15 bytes
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": "AAECAwQFBgcICQoLDA0ODxA="}, "/echo"),  # 17 bytes
    ("GET", "HTTP/1.1", {"Sec-WebSocket-Key": ""}, "/echo"),
    ("GET", "HTTP/1.1", {"Upgrade": None, "Connection": None, "Sec-WebSocket-Key": None,
                         "Sec-WebSocket-Version": None}, "/echo"),
    ("GET", "HTTP/1.1", {"Upgrade": None, "Connection": None, "Sec-WebSocket-Key": None,
                         "Sec-WebSocket-Version": None}, "/chat/a"),
], ids=["post", "put", "http10", "no-host", "no-upgrade", "upgrade-not-websocket",
        "no-connection", "connection-without-upgrade", "no-key", "key-not-base64",
        "key-15-bytes", "key-17-bytes", "key-empty", "plain-get-echo", "plain-get-chat"])
def test_bad_upgrade_request_is_400(shared_broker, method, version, headers, path):
    response = upgrade(shared_broker.port, path, headers=headers, method=method,
                       version=version)
    assert response.status == 400, response
    assert response.closed, response


@pytest.mark.parametrize("version", [None, "8", "12", "14"])
def test_wrong_websocket_version_is_426_naming_13(shared_broker, version):
    response = upgrade(shared_broker.port, "/echo",
                       headers={"Sec-WebSocket-Version": version})
    assert response.status == 426, response
    assert response.header("Sec-WebSocket-Version") == "13"
    assert response.closed, response


def test_unknown_path_with_valid_upgrade_is_404(shared_broker):
    response = upgrade(shared_broker.port, "/no-such-route")
    assert response.status == 404, response
    assert response.closed


def test_rejections_are_logged_with_status(broker):
    b = broker()
    cases = [
        ({"Origin": "http://evil.example"}, "/echo", 403),
        ({"Sec-WebSocket-Version": "8"}, "/echo", 426),
        ({}, "/nowhere", 404),
        ({"Sec-WebSocket-Key": None}, "/echo", 400),
    ]
    for headers, path, status in cases:
        assert upgrade(b.port, path, headers=headers).status == status
        b.wait_log(re.compile(r"reject.*\b%d\b|\b%d\b.*reject" % (status, status)))


def test_open_is_logged_with_peer_and_path(broker):
    b = broker()
    ws = ws_connect(b.port, "/echo")
    b.wait_log(lambda line: "open" in line and "127.0.0.1" in line and "/echo" in line)
    ws.close()


# ---------------------------------------------------------------- Origin

def origin_statuses(port, cases):
    """{(origin, host): status} for each case; host None means the default."""
    result = {}
    for origin, host in cases:
        headers = {"Origin": origin}
        if host is not None:
            headers["Host"] = host
        result[(origin, host)] = upgrade(port, "/echo", headers=headers).status
    return result


def check_origins(port, allowed, refused):
    expected = {case: 101 for case in allowed}
    expected.update({case: 403 for case in refused})
    assert origin_statuses(port, list(expected)) == expected


def test_default_origin_policy_is_same_host_only(broker):
    b = broker()
    p = b.port
    check_origins(p, allowed=[
        ("http://127.0.0.1:%d" % p, None),
        ("http://h", "h:80"),
        ("http://h:80", "h"),
        ("http://h", "h"),
        ("http://h:8080", "h:8080"),
    ], refused=[
        ("http://evil.example:%d" % p, None),
        ("http://127.0.0.1:%d" % (p + 1 if p < 65535 else p - 1), None),
        ("http://127.0.0.1", None),
        ("null", None),
        ("http://h", "other"),
        ("http://h.evil.net", "h"),
    ])


def test_null_origin_allowed_when_listed(broker):
    b = broker(websocket={"allowed_origins": ["null"]})
    check_origins(b.port, allowed=[("null", None)],
                  refused=[("http://evil.example", None)])


def test_wildcard_origin_matches_leading_labels_only(broker):
    b = broker(websocket={"allowed_origins": ["https://*.example.com"]})
    check_origins(b.port, allowed=[
        ("https://a.example.com", None),
        ("https://a.b.example.com", None),
    ], refused=[
        ("https://example.com", None),
        ("https://evil-example.com", None),
        ("https://a.example.com.evil.net", None),
        ("http://a.example.com", None),
        ("https://a.example.co", None),
        ("null", None),
    ])


def test_star_allows_any_origin(broker):
    b = broker(websocket={"allowed_origins": ["*"]})
    check_origins(b.port, allowed=[
        ("https://anything.test", None),
        ("http://evil.example:1234", None),
        ("http://127.0.0.1:%d" % b.port, None),
    ], refused=[])


def test_exact_origin_entry_matches_only_itself(broker):
    b = broker(websocket={"allowed_origins": ["https://app.example.com"]})
    check_origins(b.port, allowed=[
        ("https://app.example.com", None),
        ("https://app.example.com:443", None),
    ], refused=[
        ("http://app.example.com", None),
        ("https://app.example.com:8443", None),
        ("https://app.example.com.evil.net", None),
        ("https://xapp.example.com", None),
        ("https://sub.app.example.com", None),
        ("https://app.example.co", None),
    ])


def test_same_host_still_allowed_with_allow_list(broker):
    b = broker(websocket={"allowed_origins": ["https://app.example.com"]})
    check_origins(b.port, allowed=[("http://127.0.0.1:%d" % b.port, None)], refused=[])


# ---------------------------------------------------------------- subprotocols

@pytest.mark.parametrize("offer,chosen", [
    ("v1.chat, v2.chat", "v2.chat"),
    ("v2.chat, v1.chat", "v2.chat"),
    ("v1.chat", "v1.chat"),
    ("other, v1.chat", "v1.chat"),
    ("other", None),
    (None, None),
])
def test_server_picks_its_preferred_subprotocol(broker, offer, chosen):
    b = broker(websocket={"subprotocols": ["v2.chat", "v1.chat"]})
    response = upgrade(b.port, "/echo", headers={"Sec-WebSocket-Protocol": offer})
    assert response.status == 101, response
    assert response.header("Sec-WebSocket-Protocol") == chosen


def test_no_subprotocol_when_server_has_none(shared_broker):
    response = upgrade(shared_broker.port, "/echo",
                       headers={"Sec-WebSocket-Protocol": "v1.chat"})
    assert response.status == 101, response
    assert response.header("Sec-WebSocket-Protocol") is None
