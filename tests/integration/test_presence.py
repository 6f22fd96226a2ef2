"""Presence: join/leave events, the presence op, users (not connections) as
members, and presence events on broadcast routes (Step 2)."""

import json

import pytest

from step2util import ANON_RE, STEP2_ROUTES, Clients, compact, join, leave, subscribe_joining
from wsclient import OP_TEXT

CHANNELS = [
    {"match": "pres:*", "presence": True, "publish": "anyone"},
    {"match": "room:*", "presence": True},
]


@pytest.fixture
def b(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS)


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


def presence(ws, channel, id=99):
    reply = ws.request({"op": "presence", "channel": channel, "id": id})
    assert reply.get("op") == "ok" and reply.get("id") == id, reply
    assert list(reply) == ["op", "id", "users"], reply
    return reply["users"]


def test_join_goes_to_every_member_including_the_joiner(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    subscribe_joining(alice, "pres:a", "alice")
    subscribe_joining(bob, "pres:a", "bob")
    assert alice.recv_text() == compact(join("pres:a", "bob"))
    alice.silent(0.2)
    bob.silent(0.2)


def test_presence_op_lists_sorted_users(b, clients):
    zed = clients.pubsub(b.port, user="zed")
    amy = clients.pubsub(b.port, user="amy")
    anon = clients.pubsub(b.port)
    subscribe_joining(zed, "pres:p", "zed")
    subscribe_joining(amy, "pres:p", "amy")
    zed.recv()
    anon.send({"op": "subscribe", "channel": "pres:p", "id": 1})
    got = anon.recv_n(2)
    anon_name = [m["user"] for m in got if m["op"] == "join"][0]
    assert ANON_RE.match(anon_name), anon_name
    amy.send({"op": "presence", "channel": "pres:p", "id": 5})
    assert amy.recv() == join("pres:p", anon_name)
    text = amy.recv_text()
    assert text == compact({"op": "ok", "id": 5, "users": sorted(["amy", "zed", anon_name])})


def test_two_connections_of_one_user_count_once(b, clients):
    bob = clients.pubsub(b.port, user="bob")
    subscribe_joining(bob, "pres:two", "bob")
    alice1 = clients.pubsub(b.port, user="alice")
    alice2 = clients.pubsub(b.port, user="alice")
    subscribe_joining(alice1, "pres:two", "alice")
    assert bob.recv() == join("pres:two", "alice")
    # The second connection of alice is no new member.
    reply = alice2.request({"op": "subscribe", "channel": "pres:two", "id": 2})
    assert reply["op"] == "ok", reply
    for ws in (alice1, alice2, bob):
        ws.silent(0.2)
    assert presence(bob, "pres:two") == ["alice", "bob"]
    # Alice's first connection leaving is no leave either.
    assert alice1.request({"op": "unsubscribe", "channel": "pres:two", "id": 3}) == \
        {"op": "ok", "id": 3}
    for ws in (alice1, alice2, bob):
        ws.silent(0.2)
    assert presence(bob, "pres:two") == ["alice", "bob"]
    # Her last one disconnecting is.
    alice2.close()
    assert bob.recv() == leave("pres:two", "alice")
    assert presence(bob, "pres:two") == ["bob"]
    alice1.silent(0.2)


def test_leave_on_unsubscribe_reaches_the_leaver_before_its_ok(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    subscribe_joining(alice, "pres:u", "alice")
    subscribe_joining(bob, "pres:u", "bob")
    alice.recv()
    bob.send({"op": "unsubscribe", "channel": "pres:u", "id": 7})
    assert bob.recv_text() == compact(leave("pres:u", "bob"))
    assert bob.recv() == {"op": "ok", "id": 7}
    assert alice.recv_text() == compact(leave("pres:u", "bob"))
    assert presence(alice, "pres:u") == ["alice"]
    bob.silent(0.2)


@pytest.mark.parametrize("how", ["close handshake", "tcp drop"])
def test_leave_on_disconnect(b, clients, how):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    subscribe_joining(alice, "pres:d", "alice")
    subscribe_joining(bob, "pres:d", "bob")
    assert alice.recv() == join("pres:d", "bob")
    subscribe_joining(bob, "pres:d2", "bob", id=2)
    subscribe_joining(alice, "pres:d2", "alice", id=2)
    assert bob.recv() == join("pres:d2", "alice")
    if how == "close handshake":
        bob.send_close(1000)
        bob.assert_closed_with(1000)
    bob.close()
    got = alice.recv_n(2)
    assert sorted(got, key=lambda m: m["channel"]) == [leave("pres:d", "bob"),
                                                       leave("pres:d2", "bob")]
    assert presence(alice, "pres:d") == ["alice"]
    assert presence(alice, "pres:d2") == ["alice"]


def test_presence_off_is_forbidden_and_sends_no_events(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    bob = clients.pubsub(b.port, user="bob")
    alice.subscribe("plain")
    alice.silent(0.2)                             # no join
    bob.subscribe("plain")
    alice.silent(0.2)
    bob.send({"op": "presence", "channel": "plain", "id": 4})
    bob.expect_error("forbidden", id=4)
    bob.request({"op": "unsubscribe", "channel": "plain"})
    bob.close()
    alice.silent(0.3)                             # no leave


def test_broadcast_presence_events(b, clients):
    watch = clients.pubsub(b.port, user="watch")
    subscribe_joining(watch, "room:r", "watch")
    carol = clients.raw(b.port, "/pchat/r", user="carol")        # presence_events = true
    assert carol.recv_message() == (OP_TEXT, compact(join("room:r", "carol")).encode())
    assert watch.recv() == join("room:r", "carol")
    dave = clients.raw(b.port, "/chat/r", user="dave")           # presence_events = false
    assert carol.recv_message() == (OP_TEXT, compact(join("room:r", "dave")).encode())
    assert watch.recv() == join("room:r", "dave")
    assert presence(watch, "room:r") == ["carol", "dave", "watch"]
    # dave's route gets no presence events: its first frame is a message.
    dave.send_text("hi")
    assert dave.recv_message() == (OP_TEXT, b"hi")
    assert carol.recv_message() == (OP_TEXT, b"hi")
    assert watch.recv()["data"] == "hi"
    dave.close()
    assert carol.recv_message() == (OP_TEXT, compact(leave("room:r", "dave")).encode())
    assert watch.recv() == leave("room:r", "dave")
    assert presence(watch, "room:r") == ["carol", "watch"]
    # A pubsub member leaving reaches the presence_events route too.
    watch.send({"op": "unsubscribe", "channel": "room:r", "id": 8})
    assert watch.recv() == leave("room:r", "watch")
    assert watch.recv() == {"op": "ok", "id": 8}
    assert carol.recv_message() == (OP_TEXT, compact(leave("room:r", "watch")).encode())


def test_broadcast_without_presence_events_sees_only_messages(b, clients):
    dave = clients.raw(b.port, "/chat/q", user="dave")
    erin = clients.raw(b.port, "/chat/q", user="erin")
    erin.close()
    dave.assert_silent(0.3)
    frank = clients.raw(b.port, "/chat/q", user="frank")
    frank.send_text("plain")
    assert dave.recv_message() == (OP_TEXT, b"plain")


def test_broadcast_presence_counts_users_once(b, clients):
    watch = clients.pubsub(b.port, user="watch")
    subscribe_joining(watch, "room:once", "watch")
    first = clients.raw(b.port, "/chat/once", user="gina")
    assert watch.recv() == join("room:once", "gina")
    second = clients.raw(b.port, "/pchat/once", user="gina")
    # gina is already a member: no join, not even to her new connection.
    second.assert_silent(0.3)
    watch.silent(0.2)
    assert presence(watch, "room:once") == ["gina", "watch"]
    first.close()
    watch.silent(0.3)
    second.close()
    assert watch.recv() == leave("room:once", "gina")
    assert json.dumps(presence(watch, "room:once")) == '["watch"]'
