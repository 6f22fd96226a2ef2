"""Broadcast and pubsub routes share channels: raw frames become message
events and message data becomes raw frames (Step 2)."""

import asyncio
import base64
import json

import pytest
import websockets
from tornado.websocket import websocket_connect

from step2util import API_TOKEN, STEP2_ROUTES, Clients, api_publish, compact
from wsclient import OP_BINARY, OP_TEXT


@pytest.fixture
def b(broker):
    return broker(routes=STEP2_ROUTES, http={"api_token": API_TOKEN})


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


def pair(b, clients, room):
    """A raw member (user rawbob) and a subscribed pubsub member (alice)."""
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("room:" + room)
    rawbob = clients.raw(b.port, "/chat/" + room, user="rawbob")
    return rawbob, alice


def test_raw_text_reaches_pubsub_as_data_string(b, clients):
    rawbob, alice = pair(b, clients, "t")
    rawbob.send_text("hello from raw")
    assert rawbob.recv_message() == (OP_TEXT, b"hello from raw")
    assert alice.recv_text() == compact({"op": "message", "channel": "room:t", "seq": 1,
                                         "data": "hello from raw", "from": "rawbob"})


@pytest.mark.parametrize("text", ['{"a":1}', "[1,2]", "42", "null", '"quoted"', "",
                                  "unicode é ✓ \u0000 nul", "tab\there\nnewline"])
def test_raw_text_is_never_parsed_as_json(b, clients, text):
    rawbob, alice = pair(b, clients, "j")
    rawbob.send_text(text)
    event = alice.recv()
    assert event["data"] == text and isinstance(event["data"], str), event
    assert "data_base64" not in event


@pytest.mark.parametrize("payload", [b"\x00\x01\x02\xff", bytes(range(256)), b"",
                                     b"plain ascii bytes", b"\xc3\xa9"])
def test_raw_binary_reaches_pubsub_as_data_base64(b, clients, payload):
    rawbob, alice = pair(b, clients, "b")
    rawbob.send_binary(payload)
    assert rawbob.recv_message() == (OP_BINARY, payload)
    text = alice.recv_text()
    event = json.loads(text)
    assert list(event) == ["op", "channel", "seq", "data_base64", "from"], text
    assert event["data_base64"] == base64.b64encode(payload).decode("ascii")
    assert event["from"] == "rawbob" and event["seq"] == 1


@pytest.mark.parametrize("data,frame", [
    ("plain string", b"plain string"),
    ("", b""),
    ("caf\u00e9 \u2713", "caf\u00e9 \u2713".encode()),
    ('{"looks":"like json"}', b'{"looks":"like json"}'),
    ("line\nbreak \"quote\"", b'line\nbreak "quote"'),
])
def test_pubsub_string_reaches_raw_members_as_its_text(b, clients, data, frame):
    rawbob, alice = pair(b, clients, "s")
    alice.publish("room:s", data, id=1)
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert rawbob.recv_message() == (OP_TEXT, frame)


@pytest.mark.parametrize("data,frame", [
    ({"a": 1, "b": [1, 2, {"c": None}]}, b'{"a":1,"b":[1,2,{"c":null}]}'),
    ({}, b"{}"),
    ([1, "two", True, False, None], b'[1,"two",true,false,null]'),
    ([], b"[]"),
    (42, b"42"),
    (-7, b"-7"),
    (True, b"true"),
    (False, b"false"),
    (None, b"null"),
    ({"nested": {"deeper": {"list": [[], [[]]]}}}, b'{"nested":{"deeper":{"list":[[],[[]]]}}}'),
    ({"text": "caf\u00e9"}, '{"text":"caf\u00e9"}'.encode()),
])
def test_pubsub_json_value_reaches_raw_members_compact(b, clients, data, frame):
    rawbob, alice = pair(b, clients, "o")
    alice.send_text(json.dumps({"op": "publish", "channel": "room:o", "id": 1,
                                "data": data}, indent=2))      # whitespace in the request
    assert alice.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert rawbob.recv_message() == (OP_TEXT, frame)


def test_pubsub_float_reaches_raw_members_as_a_number(b, clients):
    rawbob, alice = pair(b, clients, "f")
    alice.publish("room:f", {"x": 1.5}, id=1)
    alice.recv()
    opcode, payload = rawbob.recv_message()
    assert opcode == OP_TEXT
    assert b" " not in payload
    assert json.loads(payload) == {"x": 1.5}


def test_seq_is_shared_between_routes(b, clients):
    rawbob, alice = pair(b, clients, "seq")
    rawbob.send_text("one")
    rawbob.recv_message()
    assert alice.recv()["seq"] == 1
    alice.publish("room:seq", "two", id=2)
    assert alice.recv() == {"op": "ok", "id": 2, "seq": 2}
    assert alice.recv()["seq"] == 2
    assert rawbob.recv_message() == (OP_TEXT, b"two")
    rawbob.send_binary(b"three")
    rawbob.recv_message()
    assert alice.recv()["seq"] == 3


def test_api_publish_reaches_raw_members(b, clients):
    rawbob, alice = pair(b, clients, "api")
    assert api_publish(b.port, "room:api", {"from": "api"}).status == 202
    assert rawbob.recv_message() == (OP_TEXT, b'{"from":"api"}')
    assert alice.recv() == {"op": "message", "channel": "room:api", "seq": 1,
                            "data": {"from": "api"}}
    assert api_publish(b.port, "room:api", text="plain text").status == 202
    assert rawbob.recv_message() == (OP_TEXT, b"plain text")
    assert alice.recv()["data"] == "plain text"


def test_raw_sender_without_user_is_anonymous_in_from(b, clients):
    alice = clients.pubsub(b.port, user="alice")
    alice.subscribe("room:anon")
    anon = clients.raw(b.port, "/chat/anon")
    anon.send_text("who am i")
    event = alice.recv()
    assert event["from"].startswith("anon-") and len(event["from"]) == 13, event


def test_websockets_pubsub_and_tornado_broadcast_clients(b):
    async def main():
        tornado_conn = await websocket_connect(b.url("/chat/lib?user=tornado"))
        async with websockets.connect(b.url("/ws?user=lib")) as ws:
            await ws.send(compact({"op": "subscribe", "channel": "room:lib", "id": 1}))
            reply = json.loads(await ws.recv())
            assert reply["op"] == "ok" and reply["seq"] == 0
            await tornado_conn.write_message("from tornado")
            assert await tornado_conn.read_message() == "from tornado"
            event = json.loads(await ws.recv())
            assert event == {"op": "message", "channel": "room:lib", "seq": 1,
                             "data": "from tornado", "from": "tornado"}
            await tornado_conn.write_message(b"\x01\x02", binary=True)
            assert await tornado_conn.read_message() == b"\x01\x02"
            event = json.loads(await ws.recv())
            assert event["data_base64"] == "AQI="
            await ws.send(compact({"op": "publish", "channel": "room:lib", "id": 2,
                                   "data": {"k": "v"}}))
            assert json.loads(await ws.recv()) == {"op": "ok", "id": 2, "seq": 3}
            assert json.loads(await ws.recv())["data"] == {"k": "v"}
            assert await tornado_conn.read_message() == '{"k":"v"}'
        tornado_conn.close()

    asyncio.run(asyncio.wait_for(main(), 20))
