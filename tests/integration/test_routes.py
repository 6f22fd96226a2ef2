"""Route matching and the echo and broadcast handlers."""

import pytest

from wsclient import OP_BINARY, OP_TEXT, build_frame, upgrade, ws_connect


@pytest.fixture
def clients():
    """Collects clients opened by a test and closes them afterwards."""
    opened = []

    def connect(port, path):
        ws = ws_connect(port, path)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        ws.close()


def test_echo_route_returns_messages_to_sender_only(shared_broker, clients):
    a = clients(shared_broker.port, "/echo")
    b = clients(shared_broker.port, "/echo")
    a.send_text("for a")
    assert a.recv_message() == (OP_TEXT, b"for a")
    b.send_text("for b")
    assert b.recv_message() == (OP_TEXT, b"for b")     # not "for a"


def test_broadcast_reaches_all_members_including_sender(broker, clients):
    b = broker()
    room_a = [clients(b.port, "/chat/a") for _ in range(3)]
    room_b = clients(b.port, "/chat/b")
    room_a[0].send_text("hello room a")
    for ws in room_a:
        assert ws.recv_message() == (OP_TEXT, b"hello room a")
    # Room b saw nothing: the first thing it receives is its own message.
    room_b.send_text("hello room b")
    assert room_b.recv_message() == (OP_TEXT, b"hello room b")
    # And room a did not get room b's message.
    room_a[1].send_text("second")
    for ws in room_a:
        assert ws.recv_message() == (OP_TEXT, b"second")


def test_broadcast_keeps_binary_verbatim(broker, clients):
    b = broker()
    members = [clients(b.port, "/chat/bin") for _ in range(3)]
    payload = bytes(range(256)) * 4
    members[2].send_binary(payload)
    for ws in members:
        assert ws.recv_message() == (OP_BINARY, payload)


def test_broadcast_of_large_fragmented_message(broker, clients):
    b = broker()
    members = [clients(b.port, "/chat/big") for _ in range(2)]
    text = ("0123456789abcdef" * 3840).encode()       # 60 KiB
    members[0].send_text(text[:20000], fin=False)
    members[0].send_frame(0, text[20000:])
    for ws in members:
        assert ws.recv_message(timeout=10) == (OP_TEXT, text)


def test_echo_self_false_skips_sender_only(broker, clients):
    b = broker()
    quiet = clients(b.port, "/quiet/a")
    chat = [clients(b.port, "/chat/a") for _ in range(2)]
    quiet.send_text("from quiet")
    for ws in chat:
        assert ws.recv_message() == (OP_TEXT, b"from quiet")
    chat[0].send_text("from chat")
    for ws in chat:
        assert ws.recv_message() == (OP_TEXT, b"from chat")
    # The quiet sender's first message is the chat one, not its own.
    assert quiet.recv_message() == (OP_TEXT, b"from chat")


def test_broadcast_preserves_order_for_every_receiver(broker, clients):
    b = broker()
    sender = clients(b.port, "/chat/order")
    receivers = [clients(b.port, "/chat/order") for _ in range(2)]
    expected = [("message %04d" % i).encode() for i in range(1000)]
    sender.send_raw(b"".join(build_frame(OP_TEXT, m) for m in expected))
    for ws in receivers + [sender]:
        got = [ws.recv_message(timeout=10)[1] for _ in range(1000)]
        assert got == expected


def test_query_string_does_not_take_part_in_matching(broker, clients):
    b = broker()
    plain = clients(b.port, "/chat/q")
    with_query = clients(b.port, "/chat/q?x=1&y=2")
    with_query.send_text("via query")
    assert plain.recv_message() == (OP_TEXT, b"via query")
    assert with_query.recv_message() == (OP_TEXT, b"via query")
    echo = clients(b.port, "/echo?debug=1")
    echo.send_text("echoed")
    assert echo.recv_message() == (OP_TEXT, b"echoed")


def test_percent_encoded_parameter_is_decoded(broker, clients):
    b = broker()
    encoded = clients(b.port, "/chat/x%2Dy")
    plain = clients(b.port, "/chat/x-y")
    encoded.send_text("decoded")
    assert plain.recv_message() == (OP_TEXT, b"decoded")


@pytest.mark.parametrize("path", ["/chat/", "/chat", "/chat/a/b", "/echo/extra", "/Echo"])
def test_unmatched_path_is_404(shared_broker, path):
    assert upgrade(shared_broker.port, path).status == 404


@pytest.mark.parametrize("path", ["/chat/a%20b", "/chat/a%00b", "/chat/%3Cx%3E",
                                  "/chat/" + "r" * 124])
def test_invalid_channel_name_is_400(shared_broker, path):
    assert upgrade(shared_broker.port, path).status == 400


def test_longest_valid_channel_name_is_accepted(shared_broker, clients):
    ws = clients(shared_broker.port, "/chat/" + "r" * 123)      # "room:" + 123 = 128
    ws.send_text("fits")
    assert ws.recv_message() == (OP_TEXT, b"fits")


def test_member_dropping_tcp_does_not_disturb_room(broker, clients):
    b = broker()
    leaver = ws_connect(b.port, "/chat/drop")
    stayer = clients(b.port, "/chat/drop")
    sender = clients(b.port, "/chat/drop")
    leaver.close()                                     # no close handshake
    for i in range(20):
        sender.send_text("after leave %d" % i)
    for i in range(20):
        assert stayer.recv_message() == (OP_TEXT, ("after leave %d" % i).encode())
        assert sender.recv_message() == (OP_TEXT, ("after leave %d" % i).encode())
