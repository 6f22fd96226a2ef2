"""Channel history: replay with `since`/`epoch`, `recovered`, history_ttl,
epochs across restarts, `?since=` on broadcast routes, and replay/live
continuity under concurrent publishing (Step 2)."""

import base64
import json
import threading
import time

import pytest

from step2util import (API_TOKEN, STEP2_ROUTES, Clients, api, check_config, compact, keys_of,
                       pubsub, wait_until)
from wsclient import OP_BINARY, OP_TEXT, build_frame

CHANNELS = [
    {"match": "first:*", "history": 2, "publish": "anyone"},
    {"match": "first:deep*", "history": 50, "publish": "anyone"},
    {"match": "x*y", "history": 3, "publish": "anyone"},
    {"match": "h:*", "history": 5, "publish": "anyone"},
    {"match": "big:*", "history": 5000, "publish": "anyone"},
    {"match": "ttl:*", "history": 10, "history_ttl": 1, "publish": "anyone"},
    {"match": "open:*", "publish": "anyone"},
]


@pytest.fixture
def b(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS, http={"api_token": API_TOKEN})


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


def fill(port, channel, count, first=1, user="pub"):
    """Publishes data "m<seq>" count times (seq from first) from an
    unsubscribed connection and checks the seqs in the ok replies."""
    publisher = pubsub(port, user=user)
    try:
        publisher.send_raw(b"".join(
            build_frame(OP_TEXT, compact({"op": "publish", "channel": channel, "id": s,
                                          "data": "m%d" % s}))
            for s in range(first, first + count)))
        for s in range(first, first + count):
            assert publisher.recv() == {"op": "ok", "id": s, "seq": s}
    finally:
        publisher.close()


def expect_replay(ws, channel, seqs, user="pub"):
    for s in seqs:
        assert ws.recv() == {"op": "message", "channel": channel, "seq": s, "data": "m%d" % s,
                             "from": user}


# ---------------------------------------------------------------- pubsub since

def test_since_replays_the_rest_then_live(b, clients):
    fill(b.port, "h:a", 3)
    alice = clients.pubsub(b.port, user="alice")
    alice.send({"op": "subscribe", "channel": "h:a", "id": 1, "since": 1})
    text = alice.recv_text()
    assert keys_of(text) == ["op", "id", "channel", "seq", "epoch", "recovered"], text
    reply = json.loads(text)
    assert text == compact({"op": "ok", "id": 1, "channel": "h:a", "seq": 3,
                            "epoch": reply["epoch"], "recovered": True})
    expect_replay(alice, "h:a", [2, 3])
    fill(b.port, "h:a", 1, first=4)
    expect_replay(alice, "h:a", [4])
    alice.silent(0.2)


def test_since_zero_replays_everything_held(b, clients):
    fill(b.port, "h:z", 4)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:z", id=1, since=0)
    assert reply["seq"] == 4 and reply["recovered"] is True
    expect_replay(alice, "h:z", [1, 2, 3, 4])
    alice.silent(0.2)


@pytest.mark.parametrize("since", [3, 4, 1000])
def test_since_at_or_after_last_seq_replays_nothing(b, clients, since):
    fill(b.port, "h:n", 3)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:n", id=1, since=since)
    assert reply["seq"] == 3 and reply["recovered"] is True
    alice.silent(0.3)


def test_since_on_a_new_channel(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:new", id=1, since=0)
    assert reply["seq"] == 0 and reply["recovered"] is True
    alice.silent(0.2)


def test_without_since_there_is_no_replay_and_no_recovered(b, clients):
    fill(b.port, "h:w", 3)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:w", id=1)
    assert reply["seq"] == 3 and "recovered" not in reply
    alice.silent(0.3)
    fill(b.port, "h:w", 1, first=4)
    expect_replay(alice, "h:w", [4])


@pytest.mark.parametrize("since,recovered,replayed", [
    (0, False, [4, 5, 6, 7, 8]),
    (1, False, [4, 5, 6, 7, 8]),
    (2, False, [4, 5, 6, 7, 8]),
    (3, True, [4, 5, 6, 7, 8]),
    (6, True, [7, 8]),
])
def test_gap_in_history_is_reported(b, clients, since, recovered, replayed):
    fill(b.port, "h:gap", 8)                     # history = 5 holds 4..8
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:gap", id=1, since=since)
    assert reply["seq"] == 8
    assert reply["recovered"] is recovered
    expect_replay(alice, "h:gap", replayed)
    alice.silent(0.2)


def test_matching_epoch_behaves_like_no_epoch(b, clients):
    fill(b.port, "h:e", 3)
    probe = clients.pubsub(b.port, user="probe")
    epoch = probe.subscribe("h:e")["epoch"]
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:e", id=1, since=2, epoch=epoch)
    assert reply["epoch"] == epoch and reply["recovered"] is True
    expect_replay(alice, "h:e", [3])
    alice.silent(0.2)


@pytest.mark.parametrize("since", [0, 2, 5, 8])
def test_other_epoch_replays_everything_held_unrecovered(b, clients, since):
    fill(b.port, "h:oe", 8)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:oe", id=1, since=since, epoch="not-the-epoch")
    assert reply["epoch"] != "not-the-epoch"
    assert reply["seq"] == 8 and reply["recovered"] is False
    expect_replay(alice, "h:oe", [4, 5, 6, 7, 8])
    alice.silent(0.2)


def test_history_zero_channel_replays_nothing(b, clients):
    keeper = clients.pubsub(b.port, user="keeper")
    keeper.subscribe("open:nohist")
    fill(b.port, "open:nohist", 3)
    keeper.recv_n(3)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("open:nohist", id=1, since=0)
    assert reply["seq"] == 3 and reply["recovered"] is False
    alice.silent(0.3)


def test_history_ttl_expires_old_messages(b, clients):
    keeper = clients.pubsub(b.port, user="keeper")
    keeper.subscribe("ttl:a")
    fill(b.port, "ttl:a", 2)
    keeper.recv_n(2)
    time.sleep(2.2)                               # history_ttl = 1
    fill(b.port, "ttl:a", 1, first=3)
    keeper.recv_n(1)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("ttl:a", id=1, since=0)
    assert reply["seq"] == 3 and reply["recovered"] is False
    expect_replay(alice, "ttl:a", [3])
    alice.silent(0.2)
    # A resume point after the expired ones is still complete.
    bob = clients.pubsub(b.port, user="bob")
    reply = bob.subscribe("ttl:a", id=1, since=2)
    assert reply["recovered"] is True
    expect_replay(bob, "ttl:a", [3])


def wait_for_fraction(low, high):
    """Sleeps until the fractional part of the monotonic clock (the one the
    daemon uses as well) lies in [low, high)."""
    deadline = time.monotonic() + 2
    while not low <= time.monotonic() % 1 < high:
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_history_ttl_is_not_rounded_to_whole_seconds(b, clients):
    keeper = clients.pubsub(b.port, user="keeper")
    keeper.subscribe("ttl:edge")
    publisher = clients.pubsub(b.port, user="pub")
    # Publish just before a second boundary and look just after it: the
    # message is a fraction of a second old, well inside history_ttl = 1.
    wait_for_fraction(0.80, 0.85)
    published = time.monotonic()
    publisher.publish("ttl:edge", "m1", id=1)
    assert publisher.recv() == {"op": "ok", "id": 1, "seq": 1}
    keeper.recv()
    wait_for_fraction(0.05, 0.10)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("ttl:edge", id=1, since=0)
    age = time.monotonic() - published
    assert age < 0.6, "test too slow: age %.2f s" % age
    assert reply["recovered"] is True, "a %.2f s old message was dropped" % age
    expect_replay(alice, "ttl:edge", [1])
    # Older than history_ttl (by a good margin): gone.
    while time.monotonic() - published < 1.5:
        time.sleep(0.01)
    bob = clients.pubsub(b.port, user="bob")
    reply = bob.subscribe("ttl:edge", id=1, since=0)
    assert reply["recovered"] is False and reply["seq"] == 1
    bob.silent(0.2)


def test_channel_is_freed_when_its_history_expires(b, clients):
    fill(b.port, "ttl:idle", 2)                   # nobody subscribed: held only
    first = api(b.port, "GET", "/api/channels/ttl:idle")
    assert first.status == 200, first
    assert first.json()["seq"] == 2 and first.json()["subscribers"] == 0
    wait_until(lambda: api(b.port, "GET", "/api/channels/ttl:idle").status == 404,
               timeout=4, what="expired channel freed")
    assert "ttl:idle" not in [c["name"] for c in api(b.port, "GET", "/api/channels")
                              .json()["channels"]]
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("ttl:idle", id=1, since=2, epoch=first.json()["epoch"])
    assert reply["seq"] == 0 and reply["epoch"] != first.json()["epoch"]
    assert reply["recovered"] is False


def test_subscribing_again_with_since_replays_again(b, clients):
    fill(b.port, "h:again", 3)
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("h:again", id=1, since=0)
    expect_replay(alice, "h:again", [1, 2, 3])
    reply = alice.subscribe("h:again", id=2, since=1)
    assert reply["recovered"] is True and reply["seq"] == 3
    expect_replay(alice, "h:again", [2, 3])
    fill(b.port, "h:again", 1, first=4)
    expect_replay(alice, "h:again", [4])          # live messages still once
    alice.silent(0.3)


def test_messages_younger_than_ttl_are_replayed(b, clients):
    fill(b.port, "ttl:young", 3)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("ttl:young", id=1, since=0)
    assert reply["recovered"] is True
    expect_replay(alice, "ttl:young", [1, 2, 3])


def test_freed_channel_starts_over_with_a_new_epoch(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    first = alice.subscribe("open:freed")
    alice.publish("open:freed", "x", id=1)
    alice.recv_n(2)
    assert alice.request({"op": "unsubscribe", "channel": "open:freed", "id": 2}) == \
        {"op": "ok", "id": 2}
    # No subscribers and history = 0: the channel is gone.
    second = alice.subscribe("open:freed")
    assert second["seq"] == 0
    assert second["epoch"] != first["epoch"]


def test_epoch_changes_when_the_broker_restarts(b):
    fill(b.port, "h:r", 2)
    ws = pubsub(b.port, user="alice")
    first = ws.subscribe("h:r", since=0)
    expect_replay(ws, "h:r", [1, 2])
    ws.close()
    assert b.stop() == 0

    b.start()
    ws = pubsub(b.port, user="alice")
    reply = ws.subscribe("h:r", id=1, since=2, epoch=first["epoch"])
    assert reply["epoch"] != first["epoch"]
    assert reply["seq"] == 0 and reply["recovered"] is False
    ws.silent(0.2)
    ws.publish("h:r", "fresh", id=2)
    assert ws.recv() == {"op": "ok", "id": 2, "seq": 1}
    ws.close()
    second = reply["epoch"]
    assert b.stop() == 0

    b.start()
    ws = pubsub(b.port, user="alice")
    third = ws.subscribe("h:r")["epoch"]
    ws.close()
    assert len({first["epoch"], second, third}) == 3


# ---------------------------------------------------------------- broadcast ?since

def publish_mixed(b, clients):
    """Four messages on h:bc: text, binary, a JSON object from pubsub, text."""
    sender = clients.raw(b.port, "/raw/h:bc", user="sender")
    sender.send_text("t1")
    assert sender.recv_message() == (OP_TEXT, b"t1")
    sender.send_binary(b"\x00\xff\x01")
    assert sender.recv_message() == (OP_BINARY, b"\x00\xff\x01")
    fill(b.port, "h:bc", 1, first=3)              # data "m3"
    assert sender.recv_message() == (OP_TEXT, b"m3")
    p = pubsub(b.port, user="pub")
    try:
        p.publish("h:bc", {"k": [1, 2]}, id=4)
        assert p.recv() == {"op": "ok", "id": 4, "seq": 4}
    finally:
        p.close()
    assert sender.recv_message() == (OP_TEXT, b'{"k":[1,2]}')
    return sender


def test_broadcast_since_replays_raw_frames(b, clients):
    sender = publish_mixed(b, clients)
    late = clients.raw(b.port, "/raw/h:bc", user="late", since="1")
    assert late.recv_message() == (OP_BINARY, b"\x00\xff\x01")
    assert late.recv_message() == (OP_TEXT, b"m3")
    assert late.recv_message() == (OP_TEXT, b'{"k":[1,2]}')
    late.assert_silent(0.2)
    sender.send_text("live")
    assert late.recv_message() == (OP_TEXT, b"live")


def test_broadcast_since_zero_and_other_epoch(b, clients):
    publish_mixed(b, clients)
    for query in ({"since": "0"}, {"since": "3", "epoch": "other-epoch"}):
        late = clients.raw(b.port, "/raw/h:bc", **query)
        assert late.recv_message() == (OP_TEXT, b"t1")
        assert late.recv_message() == (OP_BINARY, b"\x00\xff\x01")
        assert late.recv_message() == (OP_TEXT, b"m3")
        assert late.recv_message() == (OP_TEXT, b'{"k":[1,2]}')
        late.assert_silent(0.2)


def test_broadcast_without_since_has_no_replay(b, clients):
    sender = publish_mixed(b, clients)
    late = clients.raw(b.port, "/raw/h:bc")
    late.assert_silent(0.3)
    sender.send_text("live only")
    assert late.recv_message() == (OP_TEXT, b"live only")


def test_pubsub_replay_of_raw_messages(b, clients):
    publish_mixed(b, clients)
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("h:bc", id=1, since=0)
    assert reply["seq"] == 4 and reply["recovered"] is True
    assert alice.recv() == {"op": "message", "channel": "h:bc", "seq": 1, "data": "t1",
                            "from": "sender"}
    assert alice.recv() == {"op": "message", "channel": "h:bc", "seq": 2,
                            "data_base64": base64.b64encode(b"\x00\xff\x01").decode(),
                            "from": "sender"}
    assert alice.recv()["data"] == "m3"
    assert alice.recv()["data"] == {"k": [1, 2]}


# ---------------------------------------------------------------- continuity

class Publisher(threading.Thread):
    """Publishes data = seq (1..total) in pipelined batches; `acked` is the
    last seq confirmed by an ok reply."""

    def __init__(self, port, channel, total, batch=25):
        super().__init__(daemon=True)
        self.ws = pubsub(port, user="pub")
        self.channel = channel
        self.total = total
        self.batch = batch
        self.acked = 0
        self.error = None

    def run(self):
        try:
            n = 1
            while n <= self.total:
                count = min(self.batch, self.total - n + 1)
                self.ws.send_raw(b"".join(
                    build_frame(OP_TEXT, compact({"op": "publish", "channel": self.channel,
                                                  "id": s, "data": s}))
                    for s in range(n, n + count)))
                for s in range(n, n + count):
                    reply = self.ws.recv(timeout=10)
                    assert reply == {"op": "ok", "id": s, "seq": s}, reply
                    self.acked = s
                n += count
                time.sleep(0.005)
        except Exception as exc:          # reported by the test
            self.error = exc
        finally:
            self.ws.close()


def test_no_gap_or_duplicate_between_replay_and_live(b, clients):
    total = 1500
    publisher = Publisher(b.port, "big:c", total)
    subscribers = []          # (connection, since, seq in the ok reply)
    raw_subscribers = []
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        for i, mark in enumerate([50, 250, 450, 650, 850, 1050]):
            while publisher.acked < mark and publisher.is_alive():
                assert time.monotonic() < deadline, "publisher stalled at %d" % publisher.acked
                time.sleep(0.001)
            # since never exceeds the channel's last seq, so everything after
            # it is either replayed or delivered live.
            since = 0 if i % 2 == 0 else max(0, publisher.acked - 20)
            ws = clients.pubsub(b.port, user="sub%d" % i)
            reply = ws.subscribe("big:c", id=i, since=since)
            assert reply["recovered"] is True, reply
            subscribers.append((ws, since, reply["seq"]))
            raw_subscribers.append(clients.raw(b.port, "/raw/big:c", since=str(since)))
    finally:
        publisher.join(30)
    assert not publisher.is_alive(), "publisher did not finish"
    assert publisher.error is None, publisher.error
    joined_during = [s for _, _, s in subscribers if 0 < s < total]
    assert joined_during, "every subscriber joined outside the publishing window"

    for ws, since, _ in subscribers:
        got = [ws.recv(timeout=10) for _ in range(total - since)]
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(since + 1, total + 1)), \
            "gap or duplicate for since=%d: %s" % (since, describe(seqs, since))
        assert all(m["data"] == m["seq"] for m in got)
        ws.silent(0.1)
    for ws, (_, since, _) in zip(raw_subscribers, subscribers):
        got = [int(ws.recv_message(timeout=10)[1]) for _ in range(total - since)]
        assert got == list(range(since + 1, total + 1)), \
            "broadcast ?since=%d: %s" % (since, describe(got, since))
        ws.assert_silent(0.1)


def describe(seqs, since):
    expected = since + 1
    for position, s in enumerate(seqs):
        if s != expected:
            return "at position %d expected %d, got %d (neighbours %r)" % (
                position, expected, s, seqs[max(0, position - 3):position + 3])
        expected += 1
    return "length %d" % len(seqs)


# ---------------------------------------------------------------- rules

def test_first_matching_rule_wins(b, clients):
    fill(b.port, "first:deep1", 5)               # "first:*" (history 2) comes first
    alice = clients.pubsub(b.port, user="alice")
    reply = alice.subscribe("first:deep1", id=1, since=0)
    assert reply["recovered"] is False
    expect_replay(alice, "first:deep1", [4, 5])


@pytest.mark.parametrize("channel,held", [
    ("xy", 3), ("x/a:b@c-y", 3), ("xyy", 3), ("x1y2", 0), ("ax1y", 0), ("X1y", 0),
])
def test_star_matches_any_run_of_characters(b, clients, channel, held):
    for i in range(4):
        assert api(b.port, "POST", "/api/publish/" + channel, body=str(i).encode(),
                   content_type="application/json").status == 202
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe(channel, id=1, since=0)
    for i in range(4 - held, 4):
        assert alice.recv() == {"op": "message", "channel": channel, "seq": i + 1, "data": i}
    alice.silent(0.2)


@pytest.mark.parametrize("rule,marker", [
    ({"match": "a*", "history": 100001}, "history = 100001"),
    ({"match": "a*", "history": -1}, "history = -1"),
    ({"match": "a*", "history": "5"}, 'history = "5"'),
    ({"match": "a*", "history_ttl": 31536001}, "history_ttl = 31536001"),
    ({"match": "a*", "history_ttl": -5}, "history_ttl = -5"),
    ({"match": "a*", "publish": "nobody"}, '"nobody"'),
    ({"match": "a*", "histroy": 5}, "histroy"),
])
def test_invalid_channel_rules_are_config_errors(config_file, rule, marker):
    check_config(config_file, marker=marker,
                 channels=[{"match": "ok*", "history": 1}, rule])


def test_channel_rule_limits_are_accepted(config_file):
    check_config(config_file, channels=[
        {"match": "a*", "history": 100000, "history_ttl": 31536000, "presence": True,
         "publish": "anyone"},
        {"match": "b*", "history": 0, "history_ttl": 0, "presence": False, "publish": "token"},
        {"match": "c*", "publish": "api_only"},
        {"match": "d*", "publish": "members"},
    ])
