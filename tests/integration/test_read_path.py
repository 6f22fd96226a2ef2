"""How an upgraded plain connection reads: bytes that arrive in any
pieces, bytes sent along with the request head, and the part of a frame a
connection holds between reads."""

import os
import socket
import time

import pytest

from step2util import wait_until
from test_metrics import scrape
from wsclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame,
                      build_request, close_payload, parse_close_payload, upgrade_headers,
                      ws_connect)


@pytest.fixture
def ws(shared_broker):
    client = ws_connect(shared_broker.port, "/echo")
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    yield client
    client.close()


def test_frame_split_byte_by_byte(ws):
    text = "one byte per read, \u00fcn\u00efcode too"
    frame = build_frame(OP_TEXT, text)
    ws.send_raw(frame, pieces=len(frame), delay=0.003)
    assert ws.recv_text() == text


def test_fragmented_message_split_byte_by_byte(ws):
    frames = (build_frame(OP_TEXT, "first half, ", fin=False) +
              build_frame(OP_PING, b"in between") +
              build_frame(0, "second half", fin=True))
    ws.send_raw(frames, pieces=len(frames), delay=0.002)
    pong = ws.recv_frame()
    assert (pong.opcode, pong.payload) == (OP_PONG, b"in between")
    assert ws.recv_text() == "first half, second half"


def test_many_frames_in_one_write_are_all_answered_in_order(ws):
    messages = [("message %d " % i) * (1 + i % 7) for i in range(300)]
    ws.send_raw(b"".join(build_frame(OP_TEXT, m) for m in messages))
    for m in messages:
        assert ws.recv_text() == m


def test_message_larger_than_one_read(ws):
    # The fixture's max_message_size is 64 KiB; the daemon reads 16 KiB at once.
    data = os.urandom(60000)
    ws.send_binary(data)
    frame = ws.recv_frame()
    assert (frame.opcode, frame.payload) == (OP_BINARY, data)


def upgrade_with(port, extra):
    """Sends an upgrade request and extra bytes in one write; the client
    with the 101 read."""
    client = WSClient.open(port)
    client.sock.sendall(build_request("GET", "/echo", upgrade_headers(port)) + extra)
    response = client.read_response_head()
    assert response.status == 101, response
    return client


def test_frames_sent_with_the_request_head(shared_broker):
    extra = (build_frame(OP_TEXT, "right behind the head") + build_frame(OP_PING, b"p") +
             build_frame(OP_BINARY, b"\x00\x01\x02", fin=False))
    client = upgrade_with(shared_broker.port, extra)
    try:
        assert client.recv_text() == "right behind the head"
        pong = client.recv_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"p")
        # The rest of the message that began with the head arrives later.
        client.send_frame(0, b"\x03", fin=True)
        frame = client.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_BINARY, b"\x00\x01\x02\x03")
    finally:
        client.close()


def test_close_sent_with_the_request_head(shared_broker):
    client = upgrade_with(shared_broker.port, build_frame(OP_CLOSE, close_payload(1000, b"bye")))
    try:
        frame = client.recv_frame()
        assert frame.opcode == OP_CLOSE
        assert parse_close_payload(frame.payload)[0] == 1000
        client.wait_tcp_close()
    finally:
        client.close()


def test_part_of_a_frame_sent_with_the_request_head(shared_broker):
    frame = build_frame(OP_TEXT, "split across the upgrade")
    client = upgrade_with(shared_broker.port, frame[:5])
    try:
        client.sock.sendall(frame[5:])
        assert client.recv_text() == "split across the upgrade"
    finally:
        client.close()


def connection_bytes(port, connections):
    """The connections' accounted bytes once exactly `connections` are
    open, the scrape's own included (an earlier scrape's connection may
    still be closing)."""
    seen = []

    def settled():
        metrics = scrape(port)
        seen.append(metrics.get("wsbroker_memory_bytes", area="connections"))
        return metrics.get("wsbroker_client_connections") == connections

    wait_until(settled, what="%d connections" % connections)
    return seen[-1]


def test_partial_frame_is_held_then_let_go(broker):
    b = broker()
    ws = ws_connect(b.port, "/echo")
    try:
        idle = connection_bytes(b.port, 2)
        frame = build_frame(OP_BINARY, b"h" * 3000)
        ws.sock.sendall(frame[:1500])
        # The connection now keeps the decoder state and the payload so far.
        wait_until(lambda: connection_bytes(b.port, 2) >= idle + 1500,
                   what="the partial frame to be accounted")
        ws.sock.sendall(frame[1500:])
        assert ws.recv_frame().payload == b"h" * 3000
        wait_until(lambda: connection_bytes(b.port, 2) == idle, what="the frame to be let go")
        # And it reads on as before.
        ws.send_text("after")
        assert ws.recv_text() == "after"
    finally:
        ws.close()


def test_eof_inside_a_frame_frees_the_connection(broker):
    b = broker()
    clients = []
    try:
        for i in range(20):
            ws = ws_connect(b.port, "/echo")
            ws.sock.sendall(build_frame(OP_TEXT, "never finished %d" % i)[:4 + i % 9])
            clients.append(ws)
        time.sleep(0.2)
        for ws in clients:
            ws.close()
        # Only the scrape's own connection is left.
        wait_until(lambda: scrape(b.port).get("wsbroker_client_connections") == 1,
                   what="the connections to go")
        # Their partial frames went with them; a new one reads normally.
        ws = ws_connect(b.port, "/echo")
        clients.append(ws)
        ws.send_text("fresh")
        assert ws.recv_text() == "fresh"
    finally:
        for ws in clients:
            ws.close()
