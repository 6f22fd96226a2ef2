"""The JSON protocol on pubsub routes: every op, every error code, reply
shapes, ordering and limits (Step 2)."""

import json

import pytest

from step2util import (API_TOKEN, STEP2_ROUTES, Clients, api_publish, check_config, compact,
                       keys_of, raw)
from wsclient import OP_BINARY, OP_TEXT, build_frame

MAX_MESSAGE = 4096

CHANNELS = [
    {"match": "open:*", "publish": "anyone"},
    {"match": "api:*", "publish": "api_only"},
    {"match": "tok:*", "publish": "token"},
    {"match": "hist:*", "history": 10},
]


def config(**extra):
    settings = {
        "routes": STEP2_ROUTES,
        "channels": CHANNELS,
        "limits": {"max_subscriptions": 3},
        "websocket": {"max_message_size": MAX_MESSAGE},
        "http": {"api_token": API_TOKEN},
    }
    settings.update(extra)
    return settings


@pytest.fixture
def b(broker):
    return broker(**config())


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


# ---------------------------------------------------------------- subscribe

def test_subscribe_reply_shape_for_a_new_channel(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.send({"op": "subscribe", "channel": "news", "id": 1})
    text = alice.recv_text()
    reply = json.loads(text)
    assert isinstance(reply.get("epoch"), str) and reply["epoch"], text
    assert text == compact({"op": "ok", "id": 1, "channel": "news", "seq": 0,
                            "epoch": reply["epoch"]})


def test_subscribe_reply_carries_the_last_seq(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    first = alice.subscribe("news", id=1)
    for i in range(3):
        alice.publish("news", i, id=10 + i)
        alice.recv_n(2)
    bob = clients.pubsub(b.port, user="bob")
    reply = bob.subscribe("news", id="b")
    assert reply == {"op": "ok", "id": "b", "channel": "news", "seq": 3,
                     "epoch": first["epoch"]}
    assert "recovered" not in reply
    bob.silent(0.3)       # no replay without since


@pytest.mark.parametrize("request_id", [7, "abc", True, 2.5, -1, 0, ""])
def test_id_is_echoed_verbatim(b, clients, request_id):
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.request({"op": "subscribe", "channel": "c", "id": request_id})
    assert reply["op"] == "ok"
    assert "id" in reply and reply["id"] == request_id
    assert type(reply["id"]) is type(request_id)
    reply = alice.request({"op": "unsubscribe", "channel": "c", "id": request_id})
    assert reply == {"op": "ok", "id": request_id}


def test_id_is_omitted_when_absent(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.send({"op": "subscribe", "channel": "c"})
    text = alice.recv_text()
    assert keys_of(text) == ["op", "channel", "seq", "epoch"]
    alice.send({"op": "publish", "channel": "c", "data": 1})
    text = alice.recv_text()
    assert text == '{"op":"ok","seq":1}'
    alice.recv()                      # own copy
    alice.send({"op": "unsubscribe", "channel": "c"})
    assert alice.recv_text() == '{"op":"ok"}'
    alice.send({"op": "unsubscribe", "channel": "c"})
    text = alice.recv_text()
    assert keys_of(text) == ["op", "code", "message"]
    assert json.loads(text)["code"] == "not_subscribed"


def test_subscribing_twice_is_idempotent(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    first = alice.subscribe("twice", id=1)
    second = alice.subscribe("twice", id=2)
    assert second == dict(first, id=2)
    bob.subscribe("twice", id=1)
    bob.publish("twice", "once", id=2)
    assert bob.recv() == {"op": "ok", "id": 2, "seq": 1}
    bob.recv()
    event = alice.recv()
    assert event == {"op": "message", "channel": "twice", "seq": 1, "data": "once",
                     "from": "bob"}
    alice.silent(0.3)                 # exactly one copy
    # One unsubscribe removes the (single) subscription.
    assert alice.request({"op": "unsubscribe", "channel": "twice", "id": 3}) == \
        {"op": "ok", "id": 3}
    alice.send({"op": "unsubscribe", "channel": "twice", "id": 4})
    alice.expect_error("not_subscribed", id=4)


def test_subscribing_twice_to_a_history_channel_replays_nothing(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("hist:idem", id=1)
    alice.publish("hist:idem", "m1", id=2)
    alice.recv_n(2)
    again = alice.subscribe("hist:idem", id=3)
    assert again["seq"] == 1 and "recovered" not in again
    alice.silent(0.3)


def test_subscribe_counts_once_against_max_subscriptions(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    for name in ("s1", "s2", "s3"):
        alice.subscribe(name)
    alice.subscribe("s2", id="again")             # already held: still ok
    alice.send({"op": "subscribe", "channel": "s4", "id": 4})
    alice.expect_error("too_many_subscriptions", id=4)
    # The refused channel was not subscribed.
    alice.send({"op": "unsubscribe", "channel": "s4", "id": 5})
    alice.expect_error("not_subscribed", id=5)
    # Freeing one slot lets a new subscription in.
    assert alice.request({"op": "unsubscribe", "channel": "s1", "id": 6}) == \
        {"op": "ok", "id": 6}
    alice.subscribe("s4", id=7)
    alice.send({"op": "subscribe", "channel": "s5", "id": 8})
    alice.expect_error("too_many_subscriptions", id=8)


def test_max_subscriptions_is_per_connection(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    other = clients.pubsub(b.port, user="alice")
    for name in ("a", "b", "c"):
        alice.subscribe(name)
    for name in ("d", "e", "f"):
        other.subscribe(name)


# ---------------------------------------------------------------- publish

def test_publish_reply_and_message_event_shapes(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("news", id=1)
    bob.subscribe("news", id=1)
    alice.send({"op": "publish", "channel": "news", "id": 9, "data": {"n": 1, "s": "x"}})
    assert alice.recv_text() == '{"op":"ok","id":9,"seq":1}'
    expected = '{"op":"message","channel":"news","seq":1,"data":{"n":1,"s":"x"},"from":"alice"}'
    assert alice.recv_text() == expected
    assert bob.recv_text() == expected


@pytest.mark.parametrize("data", [None, True, False, 0, -12, 3.5, "", "text é ✓",
                                  [], [1, "two", None], {}, {"deep": {"er": [1, {"x": []}]}}])
def test_any_json_value_is_carried_as_data(b, clients, data):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    bob.subscribe("any")
    alice.subscribe("any")
    alice.publish("any", data, id=1)
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    for ws in (alice, bob):
        event = ws.recv()
        assert event["data"] == data and type(event["data"]) is type(data), event
        assert "data" in event and "data_base64" not in event


def test_ok_is_written_before_the_publishers_own_copy(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("order")
    count = 200
    alice.send_raw(b"".join(
        build_frame(OP_TEXT, compact({"op": "publish", "channel": "order", "id": i, "data": i}))
        for i in range(count)))
    received = alice.recv_n(2 * count, timeout=15)
    ok_at = {}
    message_at = {}
    for position, item in enumerate(received):
        if item["op"] == "ok":
            assert item["seq"] == item["id"] + 1, item
            ok_at[item["id"]] = position
        else:
            assert item["op"] == "message", item
            assert item["seq"] == item["data"] + 1, item
            message_at[item["data"]] = position
    assert sorted(ok_at) == list(range(count))
    assert sorted(message_at) == list(range(count))
    for i in range(count):
        assert ok_at[i] < message_at[i], "own copy of publish %d before its ok" % i
    # Both streams are in publish order.
    assert [m["seq"] for m in received if m["op"] == "message"] == list(range(1, count + 1))
    assert [m["id"] for m in received if m["op"] == "ok"] == list(range(count))


def test_publisher_not_subscribed_gets_only_ok(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    bob.subscribe("open:x")
    alice.publish("open:x", "hi", id=1)
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert bob.recv() == {"op": "message", "channel": "open:x", "seq": 1, "data": "hi",
                          "from": "alice"}
    alice.silent(0.3)


def test_echo_self_false_route_gets_ok_but_no_copy(b, clients):
    quiet = clients.pubsub(b.port, path="/wsq", user="quiet")
    loud = clients.pubsub(b.port, user="loud")
    quiet.subscribe("echo")
    loud.subscribe("echo")
    quiet.publish("echo", "from quiet", id=1)
    assert quiet.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert loud.recv()["data"] == "from quiet"
    loud.publish("echo", "from loud", id=2)
    assert loud.recv() == {"op": "ok", "id": 2, "seq": 2}
    assert loud.recv()["data"] == "from loud"
    # The quiet connection's next message is loud's, not its own.
    assert quiet.recv() == {"op": "message", "channel": "echo", "seq": 2,
                            "data": "from loud", "from": "loud"}


def test_messages_stay_in_their_channel(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("one")
    alice.subscribe("two")
    bob.subscribe("two")
    alice.publish("one", "for one", id=1)
    alice.recv_n(2)
    alice.publish("two", "for two", id=2)
    assert alice.recv() == {"op": "ok", "id": 2, "seq": 1}     # seq is per channel
    alice.recv()
    assert bob.recv() == {"op": "message", "channel": "two", "seq": 1, "data": "for two",
                          "from": "alice"}


def test_unsubscribe_stops_delivery(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("u")
    bob.subscribe("u")
    assert bob.request({"op": "unsubscribe", "channel": "u", "id": "x"}) == \
        {"op": "ok", "id": "x"}
    alice.publish("u", "after", id=1)
    alice.recv_n(2)
    bob.silent(0.3)
    # Bob may no longer publish there (publish = members).
    bob.publish("u", "not a member", id=2)
    bob.expect_error("forbidden", id=2)


def test_publish_to_members_channel_without_subscription_is_forbidden(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    bob.subscribe("members")
    alice.publish("members", "intruder", id=5)
    alice.expect_error("forbidden", id=5)
    bob.silent(0.3)
    # The connection stays usable.
    alice.subscribe("members")
    alice.publish("members", "member now", id=6)
    assert alice.recv() == {"op": "ok", "id": 6, "seq": 1}
    assert bob.recv()["data"] == "member now"


def test_api_only_channel_refuses_websocket_publishers(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("api:feed")
    alice.publish("api:feed", "nope", id=1)
    alice.expect_error("forbidden", id=1)
    response = api_publish(b.port, "api:feed", {"ok": True})
    assert response.status == 202, response
    assert alice.recv() == {"op": "message", "channel": "api:feed", "seq": 1,
                            "data": {"ok": True}}


def test_token_channel_refuses_everyone_without_auth(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("tok:x")
    alice.publish("tok:x", "nope", id=1)
    alice.expect_error("forbidden", id=1)
    alice.publish("open:x", "fine", id=2)
    assert alice.recv() == {"op": "ok", "id": 2, "seq": 1}


def test_too_large_publish_is_refused_and_not_delivered(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("big")
    bob.subscribe("big")
    # A request that fits max_message_size whose event would not.
    overhead = len(compact({"op": "publish", "channel": "big", "id": 1, "data": ""}))
    data = "x" * (MAX_MESSAGE - overhead - 10)
    request = compact({"op": "publish", "channel": "big", "id": 1, "data": data})
    assert len(request) < MAX_MESSAGE
    event = compact({"op": "message", "channel": "big", "seq": 1, "data": data,
                     "from": "alice"})
    assert len(event) > MAX_MESSAGE
    alice.send_text(request)
    alice.expect_error("too_large", id=1)
    bob.silent(0.3)
    # Still open, and the refused publish took no seq.
    alice.publish("big", "small", id=2)
    assert alice.recv() == {"op": "ok", "id": 2, "seq": 1}
    assert bob.recv()["seq"] == 1


def test_publish_whose_event_just_fits_is_delivered(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("fit")
    shell = compact({"op": "message", "channel": "fit", "seq": 1, "data": "",
                     "from": "alice"})
    data = "y" * (MAX_MESSAGE - len(shell))
    alice.publish("fit", data, id=1)
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    event_text = alice.recv_text()
    assert len(event_text) == MAX_MESSAGE
    assert json.loads(event_text)["data"] == data


# ---------------------------------------------------------------- errors

LONG_OK = "c" * 128
ERROR_CASES = [
    ("not json", "hello", "bad_request", None),
    ("truncated json", '{"op":"subscribe"', "bad_request", None),
    ("array", "[1,2]", "bad_request", None),
    ("string", '"subscribe"', "bad_request", None),
    ("number", "42", "bad_request", None),
    ("missing op", '{"channel":"a","id":1}', "bad_request", 1),
    ("op not a string", '{"op":5,"channel":"a","id":2}', "bad_request", 2),
    ("unknown op", '{"op":"dance","channel":"a","id":3}', "unknown_op", 3),
    ("publish without data", '{"op":"publish","channel":"open:a","id":4}', "bad_request", 4),
    ("unknown field", '{"op":"subscribe","channel":"a","id":5,"extra":1}', "bad_request", 5),
    ("unknown field on publish",
     '{"op":"publish","channel":"open:a","id":6,"data":1,"x":null}', "bad_request", 6),
    ("since not a number", '{"op":"subscribe","channel":"a","id":7,"since":"5"}',
     "bad_request", 7),
    ("epoch not a string", '{"op":"subscribe","channel":"a","id":8,"since":1,"epoch":5}',
     "bad_request", 8),
    ("missing channel", '{"op":"subscribe","id":9}', "bad_channel", 9),
    ("empty channel", '{"op":"subscribe","channel":"","id":10}', "bad_channel", 10),
    ("space in channel", '{"op":"subscribe","channel":"a b","id":11}', "bad_channel", 11),
    ("channel too long", '{"op":"subscribe","channel":"%s","id":12}' % ("c" * 129),
     "bad_channel", 12),
    ("non-ascii channel", '{"op":"subscribe","channel":"caf\u00e9","id":13}',
     "bad_channel", 13),
    ("bad channel on publish", '{"op":"publish","channel":"a*b","id":14,"data":1}',
     "bad_channel", 14),
    ("bad channel on unsubscribe", '{"op":"unsubscribe","channel":"a#b","id":15}',
     "bad_channel", 15),
    ("bad channel on presence", '{"op":"presence","channel":"a?b","id":16}',
     "bad_channel", 16),
    ("missing channel on publish", '{"op":"publish","id":17,"data":1}', "bad_channel", 17),
    ("unsubscribe not subscribed", '{"op":"unsubscribe","channel":"never","id":18}',
     "not_subscribed", 18),
    ("publish to members channel", '{"op":"publish","channel":"m","id":19,"data":1}',
     "forbidden", 19),
    ("publish to api_only", '{"op":"publish","channel":"api:x","id":20,"data":1}',
     "forbidden", 20),
    ("publish to token", '{"op":"publish","channel":"tok:x","id":21,"data":1}',
     "forbidden", 21),
    ("presence off", '{"op":"presence","channel":"m","id":22}', "forbidden", 22),
    ("id not a scalar", '{"op":"subscribe","channel":"a","id":{"x":1}}', "bad_request", None),
]


@pytest.mark.parametrize("text,code,request_id", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_error_replies_keep_the_connection_open(b, clients, text, code, request_id):
    alice = clients.pubsub(b.port, user="alice")
    alice.send_text(text)
    reply_text = alice.recv_text()
    reply = json.loads(reply_text)
    assert reply["op"] == "error" and reply["code"] == code, reply_text
    assert isinstance(reply["message"], str) and reply["message"], reply_text
    if request_id is not None:
        assert keys_of(reply_text) == ["op", "id", "code", "message"], reply_text
        assert reply["id"] == request_id
    elif code == "bad_request" and not text.startswith("{"):
        assert keys_of(reply_text) == ["op", "code", "message"], reply_text
    # Still open and working.
    alice.subscribe("after-error", id="next")


def test_longest_channel_name_and_every_allowed_character(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe(LONG_OK)
    name = "AZaz09_.:@/-"
    alice.subscribe(name)
    alice.publish(name, "ok", id=1)
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert alice.recv()["channel"] == name


def test_binary_frame_is_bad_request_and_connection_stays(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.send_binary(b'{"op":"subscribe","channel":"a","id":1}')
    reply = alice.expect_error("bad_request")
    assert reply["message"] == "binary frames are not part of the protocol"
    assert "id" not in reply
    alice.subscribe("a", id=2)


def test_error_flood_does_not_close_the_connection(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.send_raw(b"".join(build_frame(OP_TEXT, "junk %d" % i) for i in range(100)))
    for _ in range(100):
        alice.expect_error("bad_request")
    alice.subscribe("still-here")


# ---------------------------------------------------------------- broadcast routes

def test_forbidden_publish_on_broadcast_route_closes_1008(b, clients):
    listener = clients.pubsub(b.port, user="listener")
    listener.subscribe("api:feed")
    sender = raw(b.port, "/raw/api:feed", user="sender")
    try:
        sender.send_text("not allowed")
        reason = sender.assert_closed_with(1008)
        assert reason == "publish not allowed"
    finally:
        sender.close()
    listener.silent(0.3)
    b.wait_log("publish forbidden")


def test_broadcast_sender_counts_as_member(b, clients):
    listener = clients.pubsub(b.port, user="listener")
    listener.subscribe("room:m")
    sender = clients.raw(b.port, "/chat/m", user="sender")
    sender.send_text("member by route")
    assert sender.recv_message() == (OP_TEXT, b"member by route")
    assert listener.recv() == {"op": "message", "channel": "room:m", "seq": 1,
                               "data": "member by route", "from": "sender"}


def test_unsubscribe_of_a_broadcast_channel_is_not_possible_from_pubsub(b, clients):
    # A pubsub connection's subscriptions are its own: a raw member of the
    # same channel does not make the pubsub connection subscribed.
    clients.raw(b.port, "/chat/own")
    alice = clients.pubsub(b.port, user="alice")
    alice.send({"op": "unsubscribe", "channel": "room:own", "id": 1})
    alice.expect_error("not_subscribed", id=1)


def test_binary_on_broadcast_route_is_still_relayed(b, clients):
    a = clients.raw(b.port, "/chat/bin")
    c = clients.raw(b.port, "/chat/bin")
    a.send_binary(b"\x00\x01")
    assert c.recv_message() == (OP_BINARY, b"\x00\x01")


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("value", [0, 100001, -1, "8"])
def test_invalid_max_subscriptions_is_a_config_error(config_file, value):
    check_config(config_file, marker="max_subscriptions", limits={"max_subscriptions": value})


@pytest.mark.parametrize("value", [1, 100000])
def test_max_subscriptions_limits_are_accepted(config_file, value):
    check_config(config_file, limits={"max_subscriptions": value},
                 routes=STEP2_ROUTES)


def test_pubsub_route_with_a_channel_is_a_config_error(config_file):
    check_config(config_file, marker='"/bad"',
                 routes=[{"path": "/ws", "mode": "pubsub"},
                         {"path": "/bad", "mode": "pubsub", "channel": "x"}])
