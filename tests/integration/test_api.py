"""The HTTP API: bearer auth, publish, channel listing and detail,
disconnecting a user, methods, and /healthz (Step 2)."""

import json

import pytest

from step2util import (API_TOKEN, STEP2_ROUTES, ApiResponse, Clients, api, api_publish,
                       assert_json_error, subscribe_joining, wait_until)
from wsclient import (OP_TEXT, WSClient, http_exchange, http_request, parse_response_head,
                      read_until_close)

MAX_MESSAGE = 4096

CHANNELS = [
    {"match": "room:*", "presence": True},
    {"match": "hist:*", "history": 10},
    {"match": "api:*", "publish": "api_only"},
]


@pytest.fixture
def b(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS, http={"api_token": API_TOKEN},
                  websocket={"max_message_size": MAX_MESSAGE})


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


# ---------------------------------------------------------------- auth

API_REQUESTS = [
    ("GET", "/api/channels", b"", None),
    ("GET", "/api/channels/news", b"", None),
    ("POST", "/api/publish/news", b'{"x":1}', "application/json"),
    ("DELETE", "/api/connections?user=alice", b"", None),
]


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token", "Bearer " + API_TOKEN[:-1], "Bearer " + API_TOKEN + "x",
    "Bearer " + API_TOKEN.upper(), "Basic " + API_TOKEN, API_TOKEN, "Bearer", "Bearer ",
], ids=["missing", "wrong", "prefix", "longer", "case", "basic", "no scheme", "bare", "empty"])
def test_api_without_the_token_is_401(b, clients, authorization):
    listener = clients.pubsub(b.port, user="alice")
    listener.subscribe("news")
    for method, path, body, ctype in API_REQUESTS:
        response = api(b.port, method, path, token=None, body=body, content_type=ctype,
                       headers={"Authorization": authorization})
        assert response.status == 401, "%s %s: %r" % (method, path, response)
        assert_json_error(response, 401)
        challenge = response.header("WWW-Authenticate")
        assert challenge is not None and challenge.startswith("Bearer"), response
    listener.silent(0.2)                  # nothing published, nobody disconnected


def test_api_with_the_token_is_not_401(b):
    for method, path, body, ctype in API_REQUESTS:
        response = api(b.port, method, path, body=body, content_type=ctype)
        assert response.status in (200, 202, 404), "%s %s: %r" % (method, path, response)


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/channels"), ("GET", "/api/channels/news"), ("POST", "/api/publish/news"),
    ("DELETE", "/api/connections?user=a"), ("GET", "/api/"), ("GET", "/api/other"),
])
def test_api_is_404_without_api_token(broker, method, path):
    b = broker(routes=STEP2_ROUTES)
    for authorization in (None, "Bearer ", "Bearer anything"):
        response = api(b.port, method, path, token=None, body=b"x" if method == "POST" else b"",
                       headers={"Authorization": authorization})
        assert response.status == 404, response


def test_empty_api_token_is_unset(broker):
    b = broker(routes=STEP2_ROUTES, http={"api_token": ""})
    response = api(b.port, "GET", "/api/channels", token="")
    assert response.status == 404, response


# ---------------------------------------------------------------- publish

def test_publish_json_is_202_with_seq_and_epoch_and_delivered(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    ok = alice.subscribe("news")
    raw_member = clients.raw(b.port, "/raw/news")
    response = api_publish(b.port, "news", {"k": [1, 2], "s": "x"})
    assert response.status == 202, response
    assert response.header("Content-Type").startswith("application/json"), response
    assert response.json() == {"seq": 1, "epoch": ok["epoch"]}
    assert list(response.json()) == ["seq", "epoch"]
    text = alice.recv_text()
    assert text == '{"op":"message","channel":"news","seq":1,"data":{"k":[1,2],"s":"x"}}'
    assert raw_member.recv_message() == (OP_TEXT, b'{"k":[1,2],"s":"x"}')
    response = api_publish(b.port, "news", "a json string")
    assert response.json()["seq"] == 2
    assert alice.recv()["data"] == "a json string"
    assert raw_member.recv_message() == (OP_TEXT, b"a json string")


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain; charset=utf-8",
                                   "application/octet-stream",
                                   "application/x-www-form-urlencoded"])
def test_publish_other_types_become_a_string(b, clients, ctype):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    body = '{"not":"parsed"} caf\u00e9'.encode()
    response = api(b.port, "POST", "/api/publish/news", body=body, content_type=ctype)
    assert response.status == 202, response
    assert alice.recv() == {"op": "message", "channel": "news", "seq": 1,
                            "data": body.decode()}


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"a":1} trailing', b"", b"[1,]",
                                  b'{"a":"\xff"}'])
def test_publish_invalid_json_is_400(b, clients, body):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    response = api(b.port, "POST", "/api/publish/news", body=body,
                   content_type="application/json")
    assert_json_error(response, 400)
    alice.silent(0.2)


def test_publish_text_that_is_not_utf8_is_400(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    response = api(b.port, "POST", "/api/publish/news", body=b"bad \xc3\x28 utf8",
                   content_type="text/plain")
    assert_json_error(response, 400)
    alice.silent(0.2)


def test_publish_body_over_max_message_size_is_413(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    response = api(b.port, "POST", "/api/publish/news", body=b"x" * (MAX_MESSAGE + 1),
                   content_type="text/plain")
    assert_json_error(response, 413)
    alice.silent(0.2)
    # A body that fits is accepted.
    response = api(b.port, "POST", "/api/publish/news", body=b"y" * 100,
                   content_type="text/plain")
    assert response.status == 202, response
    assert alice.recv()["data"] == "y" * 100


def test_publish_without_content_length_is_411(b):
    request = ("POST /api/publish/news HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n\r\n"
               % (b.port, API_TOKEN)).encode()
    response = ApiResponse(http_exchange(b.port, request))
    assert_json_error(response, 411)


def test_publish_with_transfer_encoding_is_501(b):
    request = ("POST /api/publish/news HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
               % (b.port, API_TOKEN)).encode()
    response = ApiResponse(http_exchange(b.port, request))
    assert_json_error(response, 501)


def test_publish_body_arriving_in_pieces(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    body = b'{"slow":"body"}'
    head = ("POST /api/publish/news HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (b.port, API_TOKEN, len(body))).encode()
    with WSClient.open(b.port) as conn:
        conn.send_raw(head + body, pieces=4, delay=0.05)
        data, _ = read_until_close(conn.sock, 5)
    status = parse_response_head(data[:data.find(b"\r\n\r\n")]).status
    assert status == 202, data
    assert alice.recv()["data"] == {"slow": "body"}


@pytest.mark.parametrize("path", ["/api/publish/", "/api/publish/a%20b", "/api/publish/a*b",
                                  "/api/publish/" + "c" * 129, "/api/publish/%00",
                                  "/api/publish/caf%C3%A9"])
def test_publish_to_an_invalid_channel_is_400(b, path):
    response = api(b.port, "POST", path, body=b"1", content_type="application/json")
    assert_json_error(response, 400)


@pytest.mark.parametrize("path,channel", [
    ("/api/publish/feed%3Aa", "feed:a"),
    ("/api/publish/feed:a", "feed:a"),
    ("/api/publish/a/b/c", "a/b/c"),
    ("/api/publish/a%2Fb", "a/b"),
    ("/api/publish/" + "c" * 128, "c" * 128),
])
def test_publish_channel_is_the_percent_decoded_rest_of_the_path(b, clients, path, channel):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe(channel)
    response = api(b.port, "POST", path, body=b"1", content_type="application/json")
    assert response.status == 202, response
    assert alice.recv() == {"op": "message", "channel": channel, "seq": 1, "data": 1}


def test_publish_rules_do_not_apply_to_the_api(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("api:only")
    assert api_publish(b.port, "api:only", "from api").status == 202
    assert alice.recv()["data"] == "from api"
    # A members channel without any member: accepted too.
    response = api_publish(b.port, "nobody-here", {"x": 1})
    assert response.status == 202, response
    assert response.json()["seq"] == 1


def test_publish_counts_seq_and_keeps_history(b, clients):
    for i in range(3):
        response = api_publish(b.port, "hist:api", i)
        assert response.status == 202, response
        assert response.json()["seq"] == i + 1
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("hist:api", since=0)
    assert reply["seq"] == 3 and reply["recovered"] is True
    assert [alice.recv()["data"] for _ in range(3)] == [0, 1, 2]


def test_publish_with_query_string(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("news")
    response = api(b.port, "POST", "/api/publish/news?x=1", body=b"2",
                   content_type="application/json")
    assert response.status == 202, response
    assert alice.recv()["channel"] == "news"


# ---------------------------------------------------------------- channels

def test_channels_list(b, clients):
    response = api(b.port, "GET", "/api/channels")
    assert response.status == 200, response
    assert response.header("Content-Type").startswith("application/json")
    assert response.json() == {"channels": []}

    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    for ws in (alice, bob):
        ws.subscribe("zeta")
    alice.subscribe("alpha")
    clients.raw(b.port, "/chat/mid")                    # channel room:mid
    api_publish(b.port, "alpha", 1)
    api_publish(b.port, "alpha", 2)
    api_publish(b.port, "hist:kept", "held")           # no subscriber, held history
    api_publish(b.port, "gone", "not held")            # no subscriber, no history
    alice.recv_n(2)
    response = api(b.port, "GET", "/api/channels")
    assert response.status == 200, response
    assert response.json() == {"channels": [
        {"name": "alpha", "subscribers": 1, "seq": 2},
        {"name": "hist:kept", "subscribers": 0, "seq": 1},
        {"name": "room:mid", "subscribers": 1, "seq": 0},
        {"name": "zeta", "subscribers": 2, "seq": 0},
    ]}
    # Channels without subscribers and history disappear.
    bob.close()
    alice.close()
    wait_until(lambda: api(b.port, "GET", "/api/channels").json() == {"channels": [
        {"name": "hist:kept", "subscribers": 0, "seq": 1},
        {"name": "room:mid", "subscribers": 1, "seq": 0},
    ]}, what="channel list after disconnects")


def test_channel_detail_with_and_without_presence(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    ok = subscribe_joining(alice, "room:x", "alice")
    clients.raw(b.port, "/chat/x", user="bob")
    clients.raw(b.port, "/chat/x", user="bob")
    assert alice.recv() == {"op": "join", "channel": "room:x", "user": "bob"}
    api_publish(b.port, "room:x", "m")
    alice.recv()
    response = api(b.port, "GET", "/api/channels/room:x")
    assert response.status == 200, response
    assert response.header("Content-Type").startswith("application/json")
    detail = response.json()
    assert detail == {"name": "room:x", "subscribers": 3, "seq": 1, "epoch": ok["epoch"],
                      "presence": ["alice", "bob"]}
    assert list(detail) == ["name", "subscribers", "seq", "epoch", "presence"]
    # Percent-encoded name, and a channel without presence.
    assert api(b.port, "GET", "/api/channels/room%3Ax").json() == detail
    plain = alice.subscribe("plain")
    response = api(b.port, "GET", "/api/channels/plain")
    assert response.json() == {"name": "plain", "subscribers": 1, "seq": 0,
                               "epoch": plain["epoch"]}


@pytest.mark.parametrize("name", ["unknown", "room:nobody"])
def test_unknown_channel_is_404(b, name):
    response = api(b.port, "GET", "/api/channels/" + name)
    assert_json_error(response, 404)


# ---------------------------------------------------------------- connections

def test_delete_connections_of_a_user(b, clients):
    alice1 = clients.pubsub(b.port, user="alice")
    alice2 = clients.raw(b.port, "/chat/d", user="alice")
    alice3 = clients.raw(b.port, "/echo", user="alice")
    bob = clients.pubsub(b.port, user="bob")
    subscribe_joining(bob, "room:d", "bob")
    response = api(b.port, "DELETE", "/api/connections?user=alice")
    assert response.status == 200, response
    assert response.header("Content-Type").startswith("application/json")
    assert response.json() == {"disconnected": 3}
    for ws in (alice1.ws, alice2, alice3):
        assert ws.assert_closed_with(1008) == "disconnected by API"
    assert bob.recv() == {"op": "leave", "channel": "room:d", "user": "alice"}
    bob.subscribe("still-open")
    response = api(b.port, "DELETE", "/api/connections?user=alice")
    assert response.json() == {"disconnected": 0}


def test_delete_connections_decodes_the_user(b, clients):
    ws = clients.pubsub(b.port, path="/ws?user=caf%C3%A9%20x")
    response = api(b.port, "DELETE", "/api/connections?user=caf%C3%A9%20x")
    assert response.json() == {"disconnected": 1}
    assert ws.ws.assert_closed_with(1008) == "disconnected by API"


def test_delete_connections_of_unknown_user(b):
    response = api(b.port, "DELETE", "/api/connections?user=nobody")
    assert response.status == 200, response
    assert response.json() == {"disconnected": 0}


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/api/publish/news", "POST"),
    ("PUT", "/api/publish/news", "POST"),
    ("DELETE", "/api/publish/news", "POST"),
    ("POST", "/api/channels", "GET"),
    ("DELETE", "/api/channels", "GET"),
    ("POST", "/api/channels/news", "GET"),
    ("GET", "/api/connections?user=a", "DELETE"),
    ("POST", "/api/connections?user=a", "DELETE"),
])
def test_wrong_method_is_405_with_allow(b, method, path, allowed):
    response = api(b.port, method, path, body=b"1" if method in ("POST", "PUT") else b"",
                   content_type="application/json" if method in ("POST", "PUT") else None)
    assert_json_error(response, 405)
    allow = response.header("Allow")
    assert allow is not None, response
    assert allowed in [m.strip() for m in allow.split(",")], response
    assert method not in [m.strip() for m in allow.split(",")], response


# ---------------------------------------------------------------- healthz

def test_healthz(b):
    response = http_request(b.port, "/healthz")
    assert response.status == 200, response
    assert response.body == b"ok\n"
    assert response.header("Content-Type").startswith("text/plain"), response


def test_healthz_is_open_with_auth_and_metrics_restricted(broker):
    b = broker(routes=STEP2_ROUTES, http={"api_token": API_TOKEN,
                                          "metrics_allow": ["10.0.0.0/8"]},
               auth={"algorithm": "HS256", "secret": "s", "required": True})
    response = http_request(b.port, "/healthz")
    assert response.status == 200 and response.body == b"ok\n", response
    response = http_request(b.port, "/healthz", headers={"Authorization": "Bearer wrong"})
    assert response.status == 200, response
    # The API is trusted through api_token, not through JWTs.
    assert api_publish(b.port, "anything", 1).status == 202


def test_api_error_bodies_are_json(b):
    response = api(b.port, "GET", "/api/channels/none")
    assert_json_error(response, 404)
    response = api(b.port, "POST", "/api/publish/news", body=b"{",
                   content_type="application/json")
    assert_json_error(response, 400)
    body = response.json()
    assert list(body) == ["error"]
    assert json.dumps(body)
