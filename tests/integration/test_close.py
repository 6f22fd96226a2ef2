"""The closing handshake, started by the client."""

import time

import pytest

from wsclient import OP_CLOSE, OP_TEXT, build_frame, close_payload, ws_connect

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.fixture
def ws(shared_broker):
    client = ws_connect(shared_broker.port, "/echo")
    yield client
    client.close()


def test_close_1000_is_echoed_then_tcp_closed(ws):
    ws.send_close(1000, "bye")
    started = time.monotonic()
    ws.assert_closed_with(1000, tcp_timeout=2.0)
    assert time.monotonic() - started < 2.5


def test_empty_close_gets_empty_close(ws):
    ws.send_close()
    ws.assert_closed_with(None)
    assert ws.close_raw == b""


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_code_is_echoed(ws, code):
    ws.send_close(code, "reason")
    ws.assert_closed_with(code)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_is_1002(ws, code):
    ws.send_close(code)
    ws.assert_closed_with(1002)


def test_one_byte_close_payload_is_1002(ws):
    ws.send_frame(OP_CLOSE, b"\x03")
    ws.assert_closed_with(1002)


def test_close_reason_with_invalid_utf8_is_1007(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000, b"bad \xff reason"))
    ws.assert_closed_with(1007)


def test_close_reason_with_valid_utf8_is_accepted(ws):
    ws.send_close(1000, "\u00e0 bient\u00f4t")
    ws.assert_closed_with(1000)


def test_close_reason_of_123_bytes_is_accepted(ws):
    ws.send_close(1000, "r" * 123)
    ws.assert_closed_with(1000)


def test_close_after_echoed_messages(ws):
    ws.send_text("one")
    assert ws.recv_message() == (OP_TEXT, b"one")
    ws.send_close(1000)
    ws.assert_closed_with(1000)


def test_data_after_close_is_not_echoed(ws):
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, "late"))
    ws.assert_closed_with(1000)


def test_close_in_middle_of_fragmented_message_is_echoed(ws):
    ws.send_text("partial", fin=False)
    ws.send_close(1001, "going")
    ws.assert_closed_with(1001)


def test_close_is_logged_with_code(broker):
    b = broker()
    ws = ws_connect(b.port, "/echo")
    ws.send_close(4321, "custom")
    ws.assert_closed_with(4321)
    ws.close()
    b.wait_log(lambda line: "close" in line and "code=4321" in line)


def test_protocol_error_close_is_logged_with_code(broker):
    b = broker()
    ws = ws_connect(b.port, "/echo")
    ws.send_frame(0x3, b"x")
    ws.assert_closed_with(1002)
    ws.close()
    b.wait_log(lambda line: "close" in line and "code=1002" in line)


def test_other_connections_survive_a_protocol_error(shared_broker):
    healthy = ws_connect(shared_broker.port, "/echo")
    bad = ws_connect(shared_broker.port, "/echo")
    bad.send_text("x", mask=False)
    bad.assert_closed_with(1002)
    bad.close()
    healthy.send_text("still here")
    assert healthy.recv_message() == (OP_TEXT, b"still here")
    healthy.close()
