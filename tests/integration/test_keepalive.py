"""Server pings (ping_interval) and dropping silent peers (ping_timeout)."""

import socket
import time

from conftest import run_wsbroker
from wsclient import OP_PING, OP_TEXT, ConnectionClosed, ws_connect

KEEPALIVE = {"ping_interval": 1, "ping_timeout": 2}


def collect_frames(ws, seconds, answer_pings=True):
    """Reads frames for `seconds`; returns [(arrival time, frame)]. Answers
    pings with pongs when answer_pings. Fails if the connection closes."""
    frames = []
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return frames
        try:
            frame = ws.recv_frame(timeout=remaining)
        except socket.timeout:
            return frames
        except ConnectionClosed as exc:
            raise AssertionError("connection dropped after %d frames: %s" % (len(frames), exc))
        frames.append((time.monotonic(), frame))
        if frame.opcode == OP_PING and answer_pings:
            ws.send_pong(frame.payload)


def test_server_sends_pings_every_interval(broker):
    b = broker(websocket=KEEPALIVE)
    ws = ws_connect(b.port, "/echo")
    frames = collect_frames(ws, 3.6)
    pings = [t for t, f in frames if f.opcode == OP_PING]
    assert 2 <= len(pings) <= 5, frames
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
    assert all(0.5 <= gap <= 2.0 for gap in gaps), gaps
    assert all(not f.masked and f.fin and len(f.payload) <= 125 for _, f in frames)
    ws.close()


def test_client_answering_pings_stays_connected(broker):
    b = broker(websocket=KEEPALIVE)
    ws = ws_connect(b.port, "/echo")
    frames = collect_frames(ws, 4.5)
    assert any(f.opcode == OP_PING for _, f in frames)
    ws.send_text("still alive")
    assert ws.recv_message() == (OP_TEXT, b"still alive")
    ws.close()


def test_client_sending_data_but_no_pongs_stays_connected(broker):
    b = broker(websocket=KEEPALIVE)
    ws = ws_connect(b.port, "/echo")
    deadline = time.monotonic() + 4.5
    count = 0
    while time.monotonic() < deadline:
        ws.send_text("tick %d" % count)
        frames = collect_frames(ws, 0.5, answer_pings=False)
        assert ("tick %d" % count).encode() in [f.payload for _, f in frames
                                                if f.opcode == OP_TEXT]
        count += 1
    ws.send_text("still alive")
    assert ws.recv_message(auto_pong=False) == (OP_TEXT, b"still alive")
    ws.close()


def test_silent_client_is_dropped_with_1001_ping_timeout(broker):
    b = broker(websocket=KEEPALIVE)
    ws = ws_connect(b.port, "/echo")
    started = time.monotonic()
    code, reason = ws.expect_close(timeout=6)      # pings arrive and are ignored
    assert (code, reason) == (1001, "ping timeout")
    assert ws.wait_tcp_close(2.0)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed <= 4.5, elapsed
    b.wait_log("ping timeout")
    ws.close()


def test_silent_client_does_not_disturb_others(broker):
    b = broker(websocket=KEEPALIVE)
    silent = ws_connect(b.port, "/chat/k")
    active = ws_connect(b.port, "/chat/k")
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        collect_frames(active, 0.5)
    active.send_text("after the drop")
    got = [f for _, f in collect_frames(active, 1.0) if f.opcode == OP_TEXT]
    assert [f.payload for f in got] == [b"after the drop"]
    code, reason = silent.expect_close(timeout=1)
    assert code == 1001
    silent.close()
    active.close()


def test_no_pings_and_no_timeout_when_interval_is_zero(broker):
    b = broker(websocket={"ping_interval": 0, "ping_timeout": 1})
    ws = ws_connect(b.port, "/echo")
    frames = collect_frames(ws, 2.5, answer_pings=False)
    assert frames == []
    ws.send_text("quiet but alive")
    assert ws.recv_message() == (OP_TEXT, b"quiet but alive")
    ws.close()


def test_ping_timeout_equal_to_interval_is_rejected(config_file):
    path = config_file(websocket={"ping_interval": 5, "ping_timeout": 5})
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(path + ":") or ("\n" + path + ":") in result.stderr
