"""permessage-deflate (RFC 7692, Step 3): negotiation from raw handshakes,
what goes on the wire (RSV1, min_size, level, window), inflating client
messages within max_message_size, and one compressed payload per window for
a fan-out.

Expected payloads are computed with Python's zlib, which is the same library
the daemon compresses with: a fresh raw deflate stream per message (no
context takeover), the configured level and memory level, a sync flush, and
the trailing 00 00 ff ff removed.
"""

import asyncio
import json
import random
import time
import zlib

import pytest
import websockets

from step2util import API_TOKEN, api_publish
from wsclient import (OP_BINARY, OP_CONT, OP_PING, OP_TEXT, deflate_payload,
                      inflate_payload, upgrade, ws_connect)

EXT = "Sec-WebSocket-Extensions"
PMD = "permessage-deflate"
BASE = "permessage-deflate; server_no_context_takeover"
CNCT = "; client_no_context_takeover"


def smwb(bits):
    return "; server_max_window_bits=%d" % bits


def text_with_far_repeats(size, block=8192, seed=7):
    """Printable text made of one random block repeated: a 15-bit window
    finds the repeats (distance `block`), a 10-bit window cannot."""
    rng = random.Random(seed)
    unit = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 .,") for _ in range(block))
    return (unit * (size // block + 1))[:size]


def json_text(size, seed=3):
    rng = random.Random(seed)
    items = []
    while sum(len(i) for i in items) < size:
        items.append(json.dumps({"user": "user%d" % rng.randrange(50), "seq": len(items),
                                 "text": "message number %d" % rng.randrange(10 ** 6)}))
    return ("[" + ",".join(items) + "]").encode()[:size]


@pytest.fixture(scope="module")
def db(module_broker):
    """Compression with every default: level 1, min_size 256, window 15."""
    return module_broker(http={"api_token": API_TOKEN})


@pytest.fixture(scope="module")
def db12(module_broker):
    return module_broker(websocket={"compression": {"max_window_bits": 12}})


@pytest.fixture(scope="module")
def dboff(module_broker):
    return module_broker(websocket={"compression": {"enabled": False}})


def negotiate(port, offer, name=EXT):
    """Upgrades /echo with the offer (a list: one header per element) and
    returns the response after checking it is a 101."""
    headers = {} if offer is None else {name: offer}
    response = upgrade(port, "/echo", headers=headers)
    assert response.status == 101, response
    return response


def agreed(response):
    values = response.header_all(EXT)
    assert len(values) <= 1, response
    return values[0] if values else None


def deflate_ws(port, path="/echo", offer=PMD, expect=None):
    """A raw connection that negotiated permessage-deflate."""
    ws = ws_connect(port, path, headers={EXT: offer})
    got = ws.response.header(EXT)
    assert got is not None and got.startswith(BASE), ws.response
    if expect is not None:
        assert got == expect, ws.response
    return ws


def recv_inflated(ws, wbits=15):
    """(opcode, data, compressed?) of the next message; a compressed one
    must carry RSV1 on its first frame only."""
    frames = ws.recv_message_frames()
    assert all(f.rsv in (0, 4) for f in frames), frames
    assert all(f.rsv == 0 for f in frames[1:]), frames
    payload = b"".join(f.payload for f in frames)
    if frames[0].rsv == 4:
        return frames[0].opcode, inflate_payload(payload, wbits), True
    return frames[0].opcode, payload, False


def recv_compressed_payload(ws):
    frames = ws.recv_message_frames()
    assert frames[0].rsv == 4, frames
    return frames[0].opcode, b"".join(f.payload for f in frames)


# ---------------------------------------------------------------- negotiation

NEGOTIATION = [
    ("plain", PMD, BASE),
    ("client_no_context_takeover", PMD + "; client_no_context_takeover", BASE + CNCT),
    ("server_no_context_takeover", PMD + "; server_no_context_takeover", BASE),
    ("both no_context_takeover", PMD + "; server_no_context_takeover; client_no_context_takeover",
     BASE + CNCT),
    ("server_max_window_bits=10", PMD + "; server_max_window_bits=10", BASE + smwb(10)),
    ("server_max_window_bits=15", PMD + "; server_max_window_bits=15", BASE + smwb(15)),
    ("server_max_window_bits=9", PMD + "; server_max_window_bits=9", BASE + smwb(9)),
    ("server_max_window_bits quoted", PMD + '; server_max_window_bits="11"', BASE + smwb(11)),
    ("client_max_window_bits without value", PMD + "; client_max_window_bits", BASE),
    ("client_max_window_bits=10", PMD + "; client_max_window_bits=10", BASE),
    ("client_max_window_bits=8", PMD + "; client_max_window_bits=8", BASE),
    ("every parameter", PMD + "; client_no_context_takeover; server_no_context_takeover; "
     "server_max_window_bits=11; client_max_window_bits=12", BASE + CNCT + smwb(11)),
    ("no spaces", PMD + ";client_no_context_takeover;server_max_window_bits=13",
     BASE + CNCT + smwb(13)),
    ("tabs and spaces", PMD + " ;\tclient_no_context_takeover ; server_max_window_bits = 12",
     BASE + CNCT + smwb(12)),
    ("server_max_window_bits=8 alone is declined", PMD + "; server_max_window_bits=8", None),
    ("server_max_window_bits=8 falls back to the next offer",
     PMD + "; server_max_window_bits=8, " + PMD, BASE),
    ("server_max_window_bits=8 falls back to a second offer with parameters",
     PMD + "; server_max_window_bits=8; client_max_window_bits, " + PMD +
     "; client_no_context_takeover; server_max_window_bits=10", BASE + CNCT + smwb(10)),
    ("server_max_window_bits=7", PMD + "; server_max_window_bits=7", None),
    ("server_max_window_bits=16", PMD + "; server_max_window_bits=16", None),
    ("server_max_window_bits=abc", PMD + "; server_max_window_bits=abc", None),
    ("server_max_window_bits=09", PMD + "; server_max_window_bits=09", None),
    ("server_max_window_bits=010", PMD + "; server_max_window_bits=010", None),
    ("server_max_window_bits=+9", PMD + "; server_max_window_bits=+9", None),
    ("server_max_window_bits=1.5", PMD + "; server_max_window_bits=1.5", None),
    ("server_max_window_bits without value", PMD + "; server_max_window_bits", None),
    ("server_max_window_bits empty value", PMD + "; server_max_window_bits=", None),
    ("server_max_window_bits empty quoted", PMD + '; server_max_window_bits=""', None),
    ("client_max_window_bits=7", PMD + "; client_max_window_bits=7", None),
    ("client_max_window_bits=16", PMD + "; client_max_window_bits=16", None),
    ("client_max_window_bits=abc", PMD + "; client_max_window_bits=abc", None),
    ("client_max_window_bits=09", PMD + "; client_max_window_bits=09", None),
    ("invalid offer then a valid one", PMD + "; server_max_window_bits=16, " + PMD + CNCT,
     BASE + CNCT),
    ("unknown parameter", PMD + "; foo", None),
    ("unknown parameter with value", PMD + "; foo=bar", None),
    ("unknown parameter then a valid offer", PMD + "; mystery, " + PMD + CNCT, BASE + CNCT),
    ("repeated client_no_context_takeover", PMD + CNCT + CNCT, None),
    ("repeated server_no_context_takeover",
     PMD + "; server_no_context_takeover; server_no_context_takeover", None),
    ("repeated server_max_window_bits",
     PMD + "; server_max_window_bits=10; server_max_window_bits=10", None),
    ("repeated client_max_window_bits",
     PMD + "; client_max_window_bits; client_max_window_bits=10", None),
    ("flag with a value", PMD + "; server_no_context_takeover=true", None),
    ("client flag with a value", PMD + "; client_no_context_takeover=1", None),
    ("other extensions only", "x-webkit-deflate-frame, deflate-frame", None),
    ("other extension first", "x-foo; bar=1, " + PMD, BASE),
    ("empty list elements", ", ," + PMD + ",", BASE),
    ("empty parameter", PMD + ";;", None),
    ("unterminated quote", PMD + '; server_max_window_bits="10', None),
    ("parameter without extension", "; " + PMD, None),
    ("no offer at all", None, None),
    ("empty header", "", None),
    ("two headers, deflate in the second", ["x-foo", PMD + CNCT], BASE + CNCT),
    ("two headers, first declined", [PMD + "; server_max_window_bits=8",
                                     PMD + "; server_max_window_bits=12"], BASE + smwb(12)),
    ("two headers, first invalid", [PMD + "; bogus", PMD], BASE),
    ("two headers, first malformed", [PMD + ";;", PMD + CNCT], BASE + CNCT),
    ("two headers, first accepted", [PMD + smwb(10), PMD + CNCT], BASE + smwb(10)),
]


@pytest.mark.parametrize("offer,expected", [c[1:] for c in NEGOTIATION],
                         ids=[c[0] for c in NEGOTIATION])
def test_negotiation(db, offer, expected):
    response = negotiate(db.port, offer)
    assert agreed(response) == expected, (offer, response)


def test_header_name_is_case_insensitive(db):
    response = negotiate(db.port, PMD, name="sec-websocket-extensions")
    assert agreed(response) == BASE, response


def test_response_never_states_client_max_window_bits(db):
    for offer in (PMD + "; client_max_window_bits", PMD + "; client_max_window_bits=9",
                  PMD + "; client_max_window_bits=15; server_max_window_bits=15"):
        value = agreed(negotiate(db.port, offer))
        assert value is not None and "client_max_window_bits" not in value, value


@pytest.mark.parametrize("offer,expected", [
    (PMD, BASE + smwb(12)),
    (PMD + CNCT, BASE + CNCT + smwb(12)),
    (PMD + smwb(15), BASE + smwb(12)),
    (PMD + smwb(14), BASE + smwb(12)),
    (PMD + smwb(12), BASE + smwb(12)),
    (PMD + smwb(10), BASE + smwb(10)),
    (PMD + smwb(8), None),
])
def test_config_max_window_bits_12_is_stated(db12, offer, expected):
    assert agreed(negotiate(db12.port, offer)) == expected


@pytest.mark.parametrize("offer", [PMD, PMD + CNCT, PMD + smwb(10), [PMD, PMD]])
def test_compression_disabled_declines_every_offer(dboff, offer):
    assert agreed(negotiate(dboff.port, offer)) is None


def test_compression_disabled_rsv1_is_a_protocol_error(dboff):
    ws = ws_connect(dboff.port, "/echo", headers={EXT: PMD})
    ws.send_text(deflate_payload(b"x" * 500), rsv=4)
    ws.assert_closed_with(1002)
    ws.close()


def test_refused_upgrade_carries_no_extension(db):
    response = upgrade(db.port, "/no-such-route", headers={EXT: PMD})
    assert response.status == 404 and response.header(EXT) is None, response


# ---------------------------------------------------------------- the wire

@pytest.fixture(scope="module")
def db0(module_broker):
    return module_broker(websocket={"compression": {"min_size": 0}})


@pytest.fixture(scope="module")
def db4k(module_broker):
    return module_broker(websocket={"compression": {"min_size": 4096}})


@pytest.mark.parametrize("which,min_size", [("db", 256), ("db0", 0), ("db4k", 4096)])
def test_rsv1_set_exactly_from_min_size(request, which, min_size):
    b = request.getfixturevalue(which)
    ws = deflate_ws(b.port)
    sizes = sorted({1, 100, 255, 256, 257, 1000, 4095, 4096, 5000, max(min_size - 1, 1),
                    min_size})
    for size in sizes:
        data = json_text(size)
        ws.send_text(deflate_payload(data), rsv=4)     # the client's message is compressed
        opcode, got, compressed = recv_inflated(ws)
        assert opcode == OP_TEXT and got == data, size
        assert compressed == (size >= min_size), (size, min_size)
    ws.close()


def test_uncompressed_client_message_is_fine_and_answered_compressed(db):
    ws = deflate_ws(db.port)
    data = json_text(3000)
    ws.send_text(data)                               # RSV1 clear: sent as is
    opcode, got, compressed = recv_inflated(ws)
    assert (opcode, got, compressed) == (OP_TEXT, data, True)
    ws.send_binary(bytes(range(256)) * 4)
    opcode, got, compressed = recv_inflated(ws)
    assert (opcode, got, compressed) == (OP_BINARY, bytes(range(256)) * 4, True)
    ws.close()


def test_empty_message_with_min_size_0(db0):
    ws = deflate_ws(db0.port)
    ws.send_text(b"\x00", rsv=4)                     # §7.2.3.6: an empty compressed message
    opcode, got, compressed = recv_inflated(ws)
    assert (opcode, got, compressed) == (OP_TEXT, b"", True)
    ws.send_text(b"", rsv=0)
    assert recv_inflated(ws) == (OP_TEXT, b"", True)
    ws.close()


def test_compressed_payload_is_zlib_at_configured_level_and_window(db, db12):
    data = text_with_far_repeats(40000)
    for b, bits in ((db, 15), (db12, 12)):
        ws = deflate_ws(b.port)
        ws.send_text(data)
        opcode, payload = recv_compressed_payload(ws)
        assert payload == deflate_payload(data, level=1, wbits=bits), bits
        assert inflate_payload(payload, wbits=bits) == data
        ws.close()


def test_window_12_payload_needs_no_bigger_window(db12):
    data = text_with_far_repeats(40000, block=6000)
    ws = deflate_ws(db12.port)
    ws.send_binary(data)
    _, payload = recv_compressed_payload(ws)
    assert inflate_payload(payload, wbits=12) == data
    with pytest.raises(zlib.error):      # the same text with a 15-bit window does not fit 12
        inflate_payload(deflate_payload(data, level=1, wbits=15), wbits=12)
    ws.close()


def test_fragmented_compressed_message_rsv1_on_first_frame_only(db):
    ws = deflate_ws(db.port)
    data = json_text(20000)
    payload = deflate_payload(data)
    cut = [0, 10, len(payload) // 2, len(payload)]
    for i in range(3):
        ws.send_frame(OP_TEXT if i == 0 else OP_CONT, payload[cut[i]:cut[i + 1]], fin=i == 2,
                      rsv=4 if i == 0 else 0)
        if i == 1:
            ws.send_ping(b"between fragments")
    assert recv_inflated(ws) == (OP_TEXT, data, True)
    ws.close()


@pytest.mark.parametrize("case", ["rsv1 on continuation", "rsv1 on ping", "rsv2", "rsv3"])
def test_bad_rsv_use_with_deflate_is_1002(db, case):
    ws = deflate_ws(db.port)
    payload = deflate_payload(json_text(1000))
    if case == "rsv1 on continuation":
        ws.send_frame(OP_TEXT, payload[:20], fin=False, rsv=4)
        ws.send_frame(OP_CONT, payload[20:], fin=True, rsv=4)
    elif case == "rsv1 on ping":
        ws.send_frame(OP_PING, b"", rsv=4)
    elif case == "rsv2":
        ws.send_text(payload, rsv=4 | 2)
    else:
        ws.send_text(b"plain", rsv=1)
    ws.assert_closed_with(1002)
    ws.close()


@pytest.mark.parametrize("cnct", [False, True], ids=["context-takeover", "no-context-takeover"])
def test_client_context_takeover(db, cnct):
    """Without client_no_context_takeover a client may refer back to its
    earlier messages; the daemon's inflater must keep that context."""
    offer = PMD + (CNCT if cnct else "")
    ws = deflate_ws(db.port, offer=offer, expect=BASE + (CNCT if cnct else ""))
    data = json_text(2000)
    compressor = None if cnct else zlib.compressobj(6, zlib.DEFLATED, -15)
    sizes = []
    for i in range(4):
        message = data if i % 2 == 0 else data[::-1]
        payload = deflate_payload(message, compressor=compressor)
        sizes.append(len(payload))
        ws.send_text(payload, rsv=4)
        assert recv_inflated(ws) == (OP_TEXT, message, True), i
    if not cnct:
        assert sizes[2] < sizes[0] // 4, sizes    # the repeats really referred back
    ws.close()


@pytest.mark.parametrize("case", ["garbage", "bad block type", "truncated stored block",
                                  "distance too far back"])
def test_corrupt_compressed_data_is_1007(db, case):
    ws = deflate_ws(db.port)
    if case == "garbage":
        payload = b"\xff\xff\xff\xff\xff\xff"
    elif case == "bad block type":
        payload = b"\x07\x00"                     # BTYPE 11 is reserved
    elif case == "truncated stored block":
        payload = deflate_payload(json_text(1000), level=0)[:500]
    else:
        # compressed against a preset dictionary the daemon does not have:
        # its matches point before the start of the stream
        data = json_text(1000)
        payload = deflate_payload(data, compressor=zlib.compressobj(
            6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=data))
        with pytest.raises(zlib.error):
            inflate_payload(payload)
    ws.send_text(payload, rsv=4)
    ws.assert_closed_with(1007)
    ws.close()
    ok = deflate_ws(db.port)
    ok.send_text(b"still serving")
    assert recv_inflated(ok) == (OP_TEXT, b"still serving", False)
    ok.close()


@pytest.mark.parametrize("bad", [b"\xff" * 300, b"caf\xc3", "é".encode() * 200 + b"\xed\xa0\x80"],
                         ids=["ff bytes", "truncated sequence", "surrogate"])
def test_invalid_utf8_inside_compressed_text_is_1007(db, bad):
    ws = deflate_ws(db.port)
    ws.send_text(deflate_payload(bad), rsv=4)
    ws.assert_closed_with(1007)
    ws.close()
    ws = deflate_ws(db.port)                      # the same bytes are fine as binary
    ws.send_binary(deflate_payload(bad), rsv=4)
    assert recv_inflated(ws)[:2] == (OP_BINARY, bad)
    ws.close()


def test_broadcast_between_deflate_and_plain_members(db):
    zipped = deflate_ws(db.port, "/chat/mixed")
    plain = ws_connect(db.port, "/chat/mixed")
    big, small = json_text(5000), b"hi there"
    zipped.send_text(deflate_payload(big), rsv=4)
    assert recv_inflated(zipped) == (OP_TEXT, big, True)
    assert recv_inflated(plain) == (OP_TEXT, big, False)
    plain.send_text(big)
    plain.send_text(small)
    for ws, compressed in ((plain, False), (zipped, True)):
        assert recv_inflated(ws) == (OP_TEXT, big, compressed)
        assert recv_inflated(ws) == (OP_TEXT, small, False)
    zipped.close()
    plain.close()


def test_api_publish_reaches_deflate_subscribers_compressed(db):
    zipped = deflate_ws(db.port, "/chat/apiz")
    data = json_text(3000)
    response = api_publish(db.port, "room:apiz", text=data.decode())
    assert response.status == 202, response
    _, payload = recv_compressed_payload(zipped)
    assert payload == deflate_payload(data, level=1)
    zipped.close()


# ---------------------------------------------------------------- every level

SHORT = "short message, level %d"
BIG = text_with_far_repeats(65536, block=3000, seed=11)      # exactly max_message_size


@pytest.mark.parametrize("level", range(10))
def test_round_trips_at_every_level(module_broker, level):
    b = module_broker(websocket={"compression": {"level": level}})
    raw = deflate_ws(b.port, "/chat/lvl")
    big_text = BIG.decode()
    short = SHORT % level

    async def main():
        async with websockets.connect(b.url("/echo"), max_size=2 ** 20) as echo, \
                websockets.connect(b.url("/chat/lvl"), max_size=2 ** 20) as member:
            for ws in (echo, member):
                assert ws.response_headers[EXT] == BASE, ws.response_headers
                assert [type(e).__name__ for e in ws.extensions] == ["PerMessageDeflate"]
            for message in (short, big_text, big_text, BIG, short):
                await echo.send(message)
                assert await echo.recv() == message
            for message in (short, big_text, BIG):
                await member.send(message)
                assert await member.recv() == message

    asyncio.run(asyncio.wait_for(main(), 20))
    # what the raw member saw of the broadcasts: the short one plain, the
    # big ones compressed at this level
    assert recv_inflated(raw) == (OP_TEXT, short.encode(), False)
    expected = deflate_payload(BIG, level=level, wbits=15)
    for opcode in (OP_TEXT, OP_BINARY):
        got_opcode, payload = recv_compressed_payload(raw)
        assert got_opcode == opcode
        assert inflate_payload(payload) == BIG
        if level == 0:
            # stored blocks (BTYPE 00), whose sizes zlib picks by buffer room
            assert payload[0] & 0x06 == 0 and len(payload) > len(BIG), payload[:8]
        else:
            assert payload == expected, "payload is not zlib level %d" % level
    raw.close()


def test_level_change_on_reload_applies_to_new_connections(module_broker):
    """websocket.compression applies to connections accepted after a
    reload: an old and a new member of one channel each get the message
    compressed at their own connection's level."""
    b = module_broker(websocket={"compression": {"level": 1}})
    old = deflate_ws(b.port, "/chat/reload")
    b.reload(websocket={"compression": {"level": 9}})
    b.wait_log("configuration reloaded")
    new = deflate_ws(b.port, "/chat/reload")
    data = json_text(20000)
    assert deflate_payload(data, level=1) != deflate_payload(data, level=9)
    sender = ws_connect(b.port, "/quiet/reload")
    sender.send_text(data)
    _, old_payload = recv_compressed_payload(old)
    _, new_payload = recv_compressed_payload(new)
    assert inflate_payload(old_payload) == data and inflate_payload(new_payload) == data
    levels = {deflate_payload(data, level=level): level for level in range(1, 10)}
    old_level, new_level = levels.get(old_payload), levels.get(new_payload)
    assert old_level == 1, "the old connection got level %s, not 1" % old_level
    assert new_level == 9, "the new connection got level %s, not 9" % new_level
    for ws in (old, new, sender):
        ws.close()


# ---------------------------------------------------------------- zip bomb

def proc_status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("%s not in /proc/%d/status" % (field, pid))


BOMB_SIZE = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def bomb():
    payload = deflate_payload(b"\x00" * BOMB_SIZE, level=9)
    assert len(payload) < 65536 // 2, len(payload)
    return payload


@pytest.mark.parametrize("fragments", [1, 3])
def test_zip_bomb_is_closed_1009_without_memory_growth(module_broker, bomb, fragments):
    b = module_broker(websocket={"max_message_size": 65536})
    pid = b.proc.pid
    warm = deflate_ws(b.port)
    warm.send_binary(deflate_payload(b"\x00" * 60000), rsv=4)     # just under the bound
    assert recv_inflated(warm) == (OP_BINARY, b"\x00" * 60000, True)
    rss_before = proc_status_kb(pid, "VmRSS")
    hwm_before = proc_status_kb(pid, "VmHWM")

    ws = deflate_ws(b.port)
    started = time.monotonic()
    step = -(-len(bomb) // fragments)
    pieces = [bomb[i:i + step] for i in range(0, len(bomb), step)]
    for i, piece in enumerate(pieces):
        ws.send_frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1,
                      rsv=4 if i == 0 else 0)
    ws.assert_closed_with(1009)
    assert time.monotonic() - started < 2.0
    ws.close()

    rss_after = proc_status_kb(pid, "VmRSS")
    hwm_after = proc_status_kb(pid, "VmHWM")
    # inflating the whole 10 MiB even for a moment would raise the peak
    assert hwm_after - hwm_before < 4096, (hwm_before, hwm_after)
    assert rss_after - rss_before < 4096, (rss_before, rss_after)
    warm.send_text(b"unharmed")
    assert recv_inflated(warm) == (OP_TEXT, b"unharmed", False)
    warm.close()


def test_inflated_size_exactly_max_is_accepted(module_broker):
    b = module_broker(websocket={"max_message_size": 4096})
    ws = deflate_ws(b.port)
    ws.send_binary(deflate_payload(b"a" * 4096), rsv=4)
    assert recv_inflated(ws) == (OP_BINARY, b"a" * 4096, True)
    ws.send_binary(deflate_payload(b"a" * 4097), rsv=4)
    ws.assert_closed_with(1009)
    ws.close()


# ---------------------------------------------------------------- fan-out

FAN_N = 100


def test_fan_out_to_100_subscribers_one_payload_per_window(module_broker):
    b = module_broker(websocket={"max_message_size": 1048576})
    subscribers = []       # (ws, window or None)
    for i in range(FAN_N):
        if i % 2 == 1:
            subscribers.append((ws_connect(b.port, "/chat/fan"), None))
        elif i % 8 == 0:
            subscribers.append((deflate_ws(b.port, "/chat/fan", PMD + smwb(10),
                                           BASE + smwb(10)), 10))
        elif i % 8 == 2:
            subscribers.append((deflate_ws(b.port, "/chat/fan", PMD + CNCT, BASE + CNCT), 15))
        elif i % 8 == 4:
            subscribers.append((deflate_ws(b.port, "/chat/fan", PMD + smwb(15),
                                           BASE + smwb(15)), 15))
        else:
            subscribers.append((deflate_ws(b.port, "/chat/fan", PMD, BASE), 15))
    windows = [w for _, w in subscribers]
    assert windows.count(None) == 50 and windows.count(10) == 13 and windows.count(15) == 37

    sender = ws_connect(b.port, "/quiet/fan")
    text = text_with_far_repeats(65536)
    binary = random.Random(5).randbytes(4096) * 16
    sender.send_text(text)
    sender.send_binary(binary)

    for opcode, data in ((OP_TEXT, text), (OP_BINARY, binary)):
        payloads = {10: set(), 15: set()}
        for ws, window in subscribers:
            frames = ws.recv_message_frames(timeout=10)
            assert frames[0].opcode == opcode
            payload = b"".join(f.payload for f in frames)
            if window is None:
                assert frames[0].rsv == 0 and payload == data
            else:
                assert frames[0].rsv == 4
                assert inflate_payload(payload, wbits=window) == data
                payloads[window].add(payload)
        # one compressed form per window, identical for every receiver
        assert len(payloads[10]) == 1 and len(payloads[15]) == 1, \
            {k: len(v) for k, v in payloads.items()}
        p10, p15 = payloads[10].pop(), payloads[15].pop()
        assert p10 == deflate_payload(data, level=1, wbits=10)
        assert p15 == deflate_payload(data, level=1, wbits=15)
        with pytest.raises(zlib.error):          # the 15-bit form really needs 15 bits
            inflate_payload(p15, wbits=10)
        assert len(p15) < len(p10) // 2

    for ws, _ in subscribers:
        ws.close()
    sender.close()
