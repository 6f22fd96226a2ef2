#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/.

A handful of valid and edge-case inputs per target, each well under 4 KiB.
Deterministic: running it again rewrites the same files. The HS256 secret
must match the one in fuzz_auth.c.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SECRET = b"fuzzing secret, not a real one"


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 4096, (target, name, len(data))
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# ---- fuzz_wsframe ----------------------------------------------------------

def frame(opcode, payload, fin=True, rsv=0, mask=b"\x37\xfa\x21\x3d"):
    """A client frame; mask=None sends it unmasked."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length <= 0xFFFF:
        head = bytes([first, mask_bit | 126]) + struct.pack(">H", length)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack(">Q", length)
    if mask is None:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def wsframe_input(stream, splits=(), require_mask=True, no_context=False, small_max=64):
    """flags, small max byte, split lengths, stream (see fuzz_wsframe.c)."""
    flags = len(splits) | (0x10 if require_mask else 0) | (0x20 if no_context else 0)
    return bytes([flags, small_max]) + bytes(splits) + stream


def compress(data, final=False):
    """permessage-deflate payload: raw deflate, sync flush, tail removed."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = c.compress(data)
    if final:
        return out + c.flush(zlib.Z_FINISH)
    out += c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def wsframe_corpus():
    t = "fuzz_wsframe"
    write(t, "text-masked", wsframe_input(frame(1, b"Hello")))
    write(t, "fragments-with-ping", wsframe_input(
        frame(1, b"Hel", fin=False) + frame(9, b"ping") + frame(0, b"lo\xc3\xa9"),
        splits=(1, 3, 7, 2)))
    write(t, "close-1000-reason", wsframe_input(frame(8, struct.pack(">H", 1000) + b"bye")))
    write(t, "binary-16bit-length", wsframe_input(frame(2, bytes(range(256)) * 2),
                                                  splits=(5, 200)))
    write(t, "text-64bit-length", wsframe_input(
        bytes([0x81, 0xFF]) + struct.pack(">Q", 300) + b"\x00\x00\x00\x00" + b"a" * 300))
    write(t, "deflate-hello-unmasked", wsframe_input(
        frame(1, bytes.fromhex("f248cdc9c90700"), rsv=4, mask=None) +
        frame(1, bytes.fromhex("f200110000"), rsv=4, mask=None),
        require_mask=False))
    big = b"".join(b"message %d, " % i for i in range(300))
    write(t, "deflate-fragmented", wsframe_input(
        frame(1, compress(big)[:40], fin=False, rsv=4) + frame(0, compress(big)[40:]),
        splits=(3, 30), no_context=True, small_max=255))
    write(t, "deflate-final-block", wsframe_input(
        frame(2, compress(b"abcabcabc" * 20, final=True) + b"\x00", rsv=4)))
    write(t, "deflate-bomb-over-64k", wsframe_input(frame(2, compress(bytes(100000)), rsv=4)))
    write(t, "deflate-grows-to-40k", wsframe_input(
        frame(1, compress(b"abcdefghij" * 4000), rsv=4, mask=None), require_mask=False))
    write(t, "long-text-close-reason", wsframe_input(
        frame(1, "\u00e9\u20ac".encode() * 30 + b"tail")))
    write(t, "bad-utf8-mid-frame", wsframe_input(frame(1, b"ok\xed\xa0\x80no"), splits=(4,)))
    write(t, "pong-then-reserved-opcode", wsframe_input(
        frame(10, b"") + frame(3, b"x")))
    write(t, "unmasked-when-required", wsframe_input(frame(1, b"x", mask=None)))
    write(t, "close-bad-code", wsframe_input(frame(8, struct.pack(">H", 1005))))


# ---- fuzz_utf8 -------------------------------------------------------------

def utf8_corpus():
    t = "fuzz_utf8"
    write(t, "ascii", b"plain ASCII text, longer than eight bytes\n")
    write(t, "mixed", "h\u00e9llo \u20ac \U0001F600 \u4e16\u754c \uffff \U0010FFFF".encode())
    write(t, "surrogate", b"abc\xed\xa0\x80def")
    write(t, "overlong", b"\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf")
    write(t, "above-max", b"\xf4\x90\x80\x80")
    write(t, "truncated", b"abcdefgh\xe2\x82")
    write(t, "boundaries", b"\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
                           b"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf")


# ---- fuzz_http -------------------------------------------------------------

def http_request(target="/ws", method="GET", version="1.1", headers=()):
    lines = ["%s %s HTTP/%s" % (method, target, version)] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


UPGRADE = [
    ("Host", "broker.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "keep-alive, Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


def http_corpus():
    t = "fuzz_http"
    write(t, "upgrade-minimal", http_request(headers=UPGRADE))
    write(t, "upgrade-full", http_request(
        target="/chat/lobby?token=abc%20def&x=1", headers=UPGRADE + [
            ("Origin", "https://app.example.com"),
            ("Sec-WebSocket-Protocol", "chat, chat.v2"),
            ("Sec-WebSocket-Extensions",
             "permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
             "permessage-deflate"),
            ("User-Agent", "seed/1.0"),
        ]))
    write(t, "upgrade-wildcard-origin", http_request(headers=UPGRADE + [
        ("Origin", "https://eu.chat.example.org"),
        ("Sec-WebSocket-Extensions",
         'x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover; '
         'server_max_window_bits="9"'),
    ]))
    write(t, "origin-same-host-ipv6", http_request(headers=[
        ("Host", "[::1]:8080"), ("Upgrade", "WebSocket"), ("Connection", "upgrade"),
        ("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA=="), ("Sec-WebSocket-Version", "13"),
        ("Origin", "http://[::1]:8080")]))
    write(t, "http10-get", http_request(target="/", version="1.0", headers=[("Host", "a")]))
    write(t, "post-with-body", http_request(method="POST", target="/api/publish", headers=[
        ("Host", "a"), ("Content-Length", "2")]) + b"{}")
    write(t, "version-12", http_request(headers=UPGRADE[:3] + [
        ("Sec-WebSocket-Version", "12"), ("Sec-WebSocket-Key", "short")]))
    write(t, "partial-head", b"GET /ws HTTP/1.1\r\nHost: a\r\nUpg")
    write(t, "bare-lf", b"GET / HTTP/1.1\nHost: a\n\n")


# ---- fuzz_envelope ---------------------------------------------------------

def envelope_corpus():
    t = "fuzz_envelope"
    write(t, "subscribe", '{"op":"subscribe","channel":"room:1","id":1,"since":5,"epoch":"e1"}')
    write(t, "publish", '{"op":"publish","channel":"news/today","id":"p-1",'
                        '"data":{"text":"hi","n":[1,2.5,null,true]}}')
    write(t, "unsubscribe", '{"op":"unsubscribe","channel":"a.b@c-d_e","id":null}')
    write(t, "presence", '{"op":"presence","channel":"room:lobby","id":1.5}')
    write(t, "unknown-op", '{"op":"dance","channel":"x","id":[1]}')
    write(t, "bad-channel", '{"op":"subscribe","channel":"has space","id":"q"}')
    write(t, "nul-in-strings", '{"op":"publish","channel":"c","id":"a\\u0000b","data":"\\u0000"}')
    write(t, "not-json", '{"op":"subscribe",')
    write(t, "array", '[{"op":"subscribe","channel":"x"}]')
    write(t, "duplicate-key", '{"op":"subscribe","op":"publish","channel":"x"}')


# ---- fuzz_auth -------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hs256(header, claims):
    signing = b64url(header.encode()) + b"." + b64url(claims.encode())
    mac = hmac.new(SECRET, signing, hashlib.sha256).digest()
    return signing + b"." + b64url(mac)


def auth_corpus():
    t = "fuzz_auth"
    header = '{"alg":"HS256","typ":"JWT"}'
    write(t, "token-valid", hs256(header, '{"sub":"alice","exp":2000000000,'
                                          '"channels":["room:*","news"]}'))
    write(t, "token-expired", hs256(header, '{"sub":"bob","exp":1600000000}'))
    write(t, "token-alg-none", b64url(b'{"alg":"none"}') + b"." +
          b64url(b'{"sub":"eve"}') + b".")
    write(t, "claims-plain", '{"sub":"carol","nbf":1600000000.5,"exp":1.8e9}')
    write(t, "claims-bad-types", '{"sub":"dave","channels":"room:*","exp":"tomorrow"}')
    write(t, "header-crit-and-claims", '{"alg":"HS256","crit":["x"]}\n{"sub":"frank"}')
    write(t, "header-rs256-and-claims", '{"alg":"RS256","typ":"JWT"}\n{"sub":"grace"}')
    write(t, "header-hs384-and-claims", '{"alg":"HS384","typ":"JWT"}\n{"sub":"mallory"}')
    write(t, "claims-array", '[{"sub":"alice"}]')
    write(t, "channels-not-strings", '{"sub":"heidi","channels":["room:*",7]}')
    write(t, "name-c1-control", "user\u0085name".encode())
    write(t, "name-spaces", " padded name ")


# ---- fuzz_config -----------------------------------------------------------

def config_corpus():
    t = "fuzz_config"
    write(t, "sample", """\
listen = (
    { address = "0.0.0.0"; port = 8080; },
    { address = "::"; port = 8080; }
);
routes = (
    { path = "/chat/:room"; mode = "broadcast"; channel = "room:{room}"; },
    { path = "/ws"; mode = "pubsub"; },
    { path = "/echo"; mode = "echo"; }
);
channels = (
    { match = "room:*"; history = 50; history_ttl = 3600; presence = true; publish = "members"; }
);
http = {
    static_root = "../www";
    metrics_allow = [ "127.0.0.0/8", "::1" ];
};
""")
    write(t, "full", """\
# every group once
listen = ( { path = "/run/wsbroker.sock"; mode = "0660"; },
           { address = "127.0.0.1"; port = 9000; } );
websocket = {
    allowed_origins = [ "https://app.example.com", "https://*.example.org" ];
    subprotocols = [ "chat.v2", "chat" ];
    max_message_size = 65536;
    ping_interval = 20; ping_timeout = 45;
    handshake_timeout = 5; close_timeout = 3;
    compression = { enabled = true; level = 6; min_size = 128; memory_level = 9;
                    max_window_bits = 12; };
};
limits = { max_connections = 1000; outbound_queue_max = 1048576L;
           request_head_max = 4096; max_subscriptions = 16; };
routes = ( { path = "/ws/:tenant"; mode = "pubsub"; echo_self = false; } );
auth = { algorithm = "HS256"; secret = "s3cret"; cookie = "token"; required = false; };
proxy = { trusted = [ "10.0.0.0/8", "fd00::/8" ]; };
log_level = "debug";
shutdown_timeout = 10;
""")
    write(t, "tls-missing-files", """\
listen = ( { address = "::1"; port = 8443;
             tls = { cert = "cert.pem"; key = "/nonexistent/key.pem";
                     min_version = "TLSv1.3"; ciphersuites = "TLS_AES_128_GCM_SHA256"; }; } );
""")
    write(t, "big-integers", """\
listen = ( { address = "127.0.0.1"; port = 2147483648; } );
limits = { outbound_queue_max = 1099511627776; max_connections = 0x7fffffff; };
""")
    write(t, "octal-mode", 'listen = ( { path = "/tmp/s"; mode = 0660; } );\n')
    write(t, "string-where-value-cannot-stand", 'log_level "info";\nlisten = ();\n')
    write(t, "include-directive", '@include "other.conf"\n')
    write(t, "tls-existing-files", """\
listen = ( { address = "127.0.0.1"; port = 8443;
             tls = { cert = "/etc/passwd"; key = "/etc/hostname"; ciphers = "HIGH:!aNULL";
                     ciphersuites = ""; verify_client = true; ca_file = "/etc/passwd"; }; },
           { path = "sock"; }, { path = "sock"; } );
http = { api_token = "abc def"; static_root = ""; };
auth = { algorithm = "HS256"; secret_file = "missing-secret"; };
""")
    write(t, "user-and-rs256", """\
listen = ( { address = "127.0.0.1"; port = 1; } );
user = "nobody";
auth = { algorithm = "RS256"; public_key_file = "missing.pem"; };
""")


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    wsframe_corpus()
    utf8_corpus()
    http_corpus()
    envelope_corpus()
    auth_corpus()
    config_corpus()


if __name__ == "__main__":
    main()
