"""SIGTERM / SIGINT shutdown and SIGHUP reload."""

import re
import signal
import time

import pytest

from conftest import DEFAULT_ROUTES, line_of
from wsclient import (OP_BINARY, OP_TEXT, WSClient, build_frame, upgrade, upgrade_until,
                      ws_connect)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_signal_closes_clients_with_1001_and_exits_0(broker, sig):
    b = broker()
    clients = [ws_connect(b.port, path) for path in ("/echo", "/chat/x", "/chat/x")]
    started = time.monotonic()
    b.signal(sig)
    for ws in clients:
        code, _ = ws.expect_close(timeout=5)
        assert code == 1001
        ws.send_close(1001)
    assert b.wait_exit(timeout=5) == 0
    assert time.monotonic() - started <= 5.0
    for ws in clients:
        assert ws.wait_tcp_close(1.0)
        ws.close()


def test_shutdown_does_not_wait_for_unresponsive_clients_forever(broker):
    b = broker(shutdown_timeout=1, websocket={"close_timeout": 1})
    clients = [ws_connect(b.port, "/echo") for _ in range(3)]
    started = time.monotonic()
    b.signal(signal.SIGTERM)
    for ws in clients:                 # they read the close but never answer
        code, _ = ws.expect_close(timeout=4)
        assert code == 1001
    assert b.wait_exit(timeout=4) == 0
    assert time.monotonic() - started <= 4.0
    for ws in clients:
        ws.close()


def test_shutdown_with_pending_http_connection_exits_0(broker):
    b = broker()
    pending = WSClient.open(b.port)
    pending.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    ws = ws_connect(b.port, "/echo")
    b.signal(signal.SIGTERM)
    code, _ = ws.expect_close(timeout=5)
    assert code == 1001
    ws.send_close(1001)
    assert b.wait_exit(timeout=5) == 0
    pending.close()
    ws.close()


def test_reload_adds_route_and_keeps_existing_connection(broker):
    b = broker()
    existing = ws_connect(b.port, "/chat/r")
    assert upgrade(b.port, "/echo2").status == 404
    b.reload(routes=DEFAULT_ROUTES + [{"path": "/echo2", "mode": "echo"}])
    assert upgrade_until(b.port, "/echo2", 101).status == 101
    fresh = ws_connect(b.port, "/echo2")
    fresh.send_text("new route")
    assert fresh.recv_message() == (OP_TEXT, b"new route")
    existing.send_text("old connection")
    assert existing.recv_message() == (OP_TEXT, b"old connection")
    # Channels survive too: a new member of the room meets the old one.
    newcomer = ws_connect(b.port, "/chat/r")
    newcomer.send_text("hello old friend")
    assert existing.recv_message() == (OP_TEXT, b"hello old friend")
    for ws in (existing, fresh, newcomer):
        ws.close()


def test_reload_changes_max_message_size_for_new_connections(broker):
    b = broker()
    existing = ws_connect(b.port, "/echo")
    b.reload(websocket={"max_message_size": 1024})
    deadline = time.monotonic() + 5
    code = None
    while time.monotonic() < deadline:
        ws = ws_connect(b.port, "/echo")
        ws.send_raw(build_frame(OP_BINARY, b"", length=2000))     # header only
        try:
            code, _ = ws.expect_close(timeout=0.5)
        except AssertionError:
            code = None                                          # old limit still
        ws.close()
        if code is not None:
            break
    assert code == 1009
    existing.send_text("still working")
    assert existing.recv_message() == (OP_TEXT, b"still working")
    existing.close()


def test_reload_with_broken_config_keeps_old_one(broker):
    b = broker()
    existing = ws_connect(b.port, "/echo")
    text = b.config_text + "websocket_typo = = 3;\n"
    line = line_of(text, "websocket_typo")
    b.reload(text=text)
    b.wait_log("%s:%d:" % (b.config_path, line))
    b.wait_log(re.compile(r"keep|kept|old config|previous config|unchanged", re.I))
    assert b.proc.poll() is None
    fresh = ws_connect(b.port, "/echo")
    fresh.send_text("served")
    assert fresh.recv_message() == (OP_TEXT, b"served")
    existing.send_text("still up")
    assert existing.recv_message() == (OP_TEXT, b"still up")
    for ws in (existing, fresh):
        ws.close()


def test_reload_with_invalid_value_keeps_old_routes(broker):
    b = broker()
    b.reload(routes=DEFAULT_ROUTES + [{"path": "/echo2", "mode": "echo"}],
             limits={"outbound_queue_max": 1})
    b.wait_log(re.compile(re.escape(b.config_path) + r":\d+: "))
    assert upgrade(b.port, "/echo2").status == 404
    assert upgrade(b.port, "/echo").status == 101
