"""RFC 6455 framing on the /echo route, with raw frames."""

import time

import pytest

from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame,
                      frame_header_size, ws_connect)

MAX_MESSAGE = 65536     # the fixture's max_message_size


@pytest.fixture
def ws(shared_broker):
    client = ws_connect(shared_broker.port, "/echo")
    yield client
    client.close()


# ---------------------------------------------------------------- protocol errors: 1002

def test_unmasked_client_frame_is_1002(ws):
    ws.send_text("hello", mask=False)
    ws.assert_closed_with(1002)


@pytest.mark.parametrize("rsv", [4, 2, 1, 7], ids=["rsv1", "rsv2", "rsv3", "all"])
def test_rsv_bits_without_extension_are_1002(ws, rsv):
    ws.send_text("hello", rsv=rsv)
    ws.assert_closed_with(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_1002(ws, opcode):
    ws.send_frame(opcode, b"x")
    ws.assert_closed_with(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_with_126_byte_payload_is_1002(ws, opcode):
    payload = b"\x03\xe8" + b"a" * 124 if opcode == OP_CLOSE else b"a" * 126
    ws.send_frame(opcode, payload)
    ws.assert_closed_with(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_CLOSE])
def test_fragmented_control_frame_is_1002(ws, opcode):
    ws.send_frame(opcode, b"\x03\xe8" if opcode == OP_CLOSE else b"p", fin=False)
    ws.assert_closed_with(1002)


def test_continuation_without_start_is_1002(ws):
    ws.send_frame(OP_CONT, b"orphan")
    ws.assert_closed_with(1002)


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_fragmented_message_is_1002(ws, second):
    ws.send_text("first part", fin=False)
    ws.send_frame(second, b"intruder")
    ws.assert_closed_with(1002)


def test_64bit_length_with_top_bit_set_is_1002(ws):
    frame = build_frame(OP_BINARY, b"", length=(1 << 63) + 5, length_form="64")
    ws.send_raw(frame)        # header and mask key only
    ws.assert_closed_with(1002)


# ---------------------------------------------------------------- UTF-8: 1007

@pytest.mark.parametrize("payload", [
    b"\xff",
    b"abc\xfe",
    b"\xc0\xaf",                 # overlong '/'
    b"\xe0\x80\xaf",             # overlong, 3 bytes
    b"\xed\xa0\x80",             # UTF-16 surrogate
    b"\xf4\x90\x80\x80",         # above U+10FFFF
    b"\x80",                     # lone continuation byte
    b"a\xe2\x82",                # message ends inside a sequence
], ids=["ff", "fe", "overlong2", "overlong3", "surrogate", "too-big", "lone-cont", "truncated"])
def test_invalid_utf8_text_is_1007(ws, payload):
    ws.send_text(payload)
    ws.assert_closed_with(1007)


def test_invalid_utf8_fails_fast_inside_incomplete_frame(ws):
    frame = build_frame(OP_TEXT, b"ab\xff" + b"a" * 97)    # announces 100 bytes
    ws.send_raw(frame[:frame_header_size(frame) + 3])      # ... but only "ab\xff" arrives
    code, _ = ws.expect_close(timeout=5)
    assert code == 1007


def test_invalid_utf8_split_across_fragments_is_1007(ws):
    ws.send_text(b"a\xe2\x82", fin=False)                  # valid so far
    ws.send_frame(OP_CONT, b"(")                           # cannot continue U+20AC
    ws.assert_closed_with(1007)


def test_fragmented_text_ending_inside_sequence_is_1007(ws):
    ws.send_text(b"ok\xf0\x9f", fin=False)
    ws.send_frame(OP_CONT, b"\x98")                        # still one byte short, final
    ws.assert_closed_with(1007)


def test_valid_utf8_split_across_fragments_echoes(ws):
    ws.send_text(b"price \xe2", fin=False)
    ws.send_frame(OP_CONT, b"\x82", fin=False)
    ws.send_frame(OP_CONT, b"\xac 5")
    assert ws.recv_message() == (OP_TEXT, "price \u20ac 5".encode())


# ---------------------------------------------------------------- size limit: 1009

def test_message_at_max_size_echoes(ws):
    payload = bytes(range(256)) * (MAX_MESSAGE // 256)
    ws.send_binary(payload)
    assert ws.recv_message(timeout=10) == (OP_BINARY, payload)


def test_single_frame_over_max_size_is_1009_before_payload(ws):
    frame = build_frame(OP_TEXT, b"", length=MAX_MESSAGE + 1)
    ws.send_raw(frame)        # header only: the server must answer on it
    ws.assert_closed_with(1009)


def test_fragments_over_max_size_are_1009_before_payload(ws):
    ws.send_text(b"a" * 40000, fin=False)
    frame = build_frame(OP_CONT, b"", length=30000)
    ws.send_raw(frame)        # running total would pass the limit
    ws.assert_closed_with(1009)


def test_64bit_length_over_max_size_is_1009(ws):
    frame = build_frame(OP_BINARY, b"", length=1 << 40, length_form="64")
    ws.send_raw(frame)
    ws.assert_closed_with(1009)


def test_configured_max_message_size_applies(broker):
    b = broker(websocket={"max_message_size": 1000})
    ws = ws_connect(b.port, "/echo")
    ws.send_binary(b"x" * 1000)
    assert ws.recv_message() == (OP_BINARY, b"x" * 1000)
    ws.send_raw(build_frame(OP_BINARY, b"", length=1001))
    ws.assert_closed_with(1009)
    ws.close()


# ---------------------------------------------------------------- valid traffic

def test_ping_between_fragments_is_answered_before_the_message(ws):
    ws.send_text("Hel", fin=False)
    ws.send_ping(b"in-between")
    ws.send_frame(OP_CONT, "lo, ", fin=False)
    ws.send_frame(OP_CONT, "world")
    first = ws.recv_frame()
    assert (first.opcode, first.payload) == (OP_PONG, b"in-between")
    assert ws.recv_message() == (OP_TEXT, b"Hello, world")


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125)), b"\x00\xff\xfe binary"],
                         ids=["empty", "one", "125", "binary"])
def test_pong_echoes_ping_payload(ws, payload):
    ws.send_ping(payload)
    frame = ws.recv_frame()
    assert frame.opcode == OP_PONG
    assert frame.payload == payload
    assert frame.fin and not frame.masked and frame.rsv == 0


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535])
def test_binary_echo_is_verbatim(ws, size):
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    ws.send_binary(payload)
    assert ws.recv_message(timeout=10) == (OP_BINARY, payload)


def test_empty_text_message_echoes(ws):
    ws.send_text(b"")
    assert ws.recv_message() == (OP_TEXT, b"")


def test_text_echo_preserves_multibyte_utf8(ws):
    text = "h\u00e9llo \u4e16\u754c \U0001f600"
    ws.send_text(text)
    assert ws.recv_message() == (OP_TEXT, text.encode())


def test_server_frames_are_unmasked_and_final(ws):
    ws.send_text("check")
    frame = ws.recv_frame()
    assert frame.opcode == OP_TEXT
    assert frame.fin and not frame.masked and frame.rsv == 0
    assert frame.payload == b"check"


def test_fragmented_binary_message_is_reassembled(ws):
    ws.send_binary(b"\x00\x01", fin=False)
    ws.send_frame(OP_CONT, b"", fin=False)
    ws.send_frame(OP_CONT, b"\x02\x03", fin=False)
    ws.send_frame(OP_CONT, b"\xff")
    assert ws.recv_message() == (OP_BINARY, b"\x00\x01\x02\x03\xff")


def test_frame_sent_byte_by_byte_echoes(ws):
    frame = build_frame(OP_TEXT, "split into single bytes")
    ws.send_raw(frame, pieces=len(frame), delay=0.01)
    assert ws.recv_message() == (OP_TEXT, b"split into single bytes")


def test_header_split_across_reads_with_extended_length(ws):
    payload = b"z" * 300
    frame = build_frame(OP_BINARY, payload)
    ws.send_raw(frame[:1])
    time.sleep(0.05)
    ws.send_raw(frame[1:3])
    time.sleep(0.05)
    ws.send_raw(frame[3:6])
    time.sleep(0.05)
    ws.send_raw(frame[6:])
    assert ws.recv_message() == (OP_BINARY, payload)


def test_pipelined_frames_echo_in_order(ws):
    frames = b"".join(build_frame(OP_TEXT, "msg %d" % i) for i in range(50))
    ws.send_raw(frames)
    for i in range(50):
        assert ws.recv_message() == (OP_TEXT, ("msg %d" % i).encode())


def test_unsolicited_pong_is_ignored(ws):
    ws.send_pong(b"unasked")
    ws.send_text("after pong")
    assert ws.recv_frame().payload == b"after pong"
