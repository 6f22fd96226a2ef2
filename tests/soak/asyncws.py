"""A small asyncio RFC 6455 client for the soak driver.

It speaks just enough of the protocol to drive wsbroker hard: the opening
handshake (optionally offering permessage-deflate), masked frames out,
frames in (answering pings, inflating compressed messages), and the ways a
connection can end: a close handshake, a FIN without one, an RST.
Everything that waits is bounded by the caller (asyncio.wait_for).
"""

import asyncio
import base64
import hashlib
import os
import socket
import struct
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"

# Linux: let connect() pick the port after bind() chose only the address,
# so a source address does not cap the client at one port range per bind.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class SoakError(Exception):
    """Something the broker did that it should not have: counted by kind."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


class Closed(Exception):
    """The broker sent a close frame (code) while something else was expected."""

    def __init__(self, code):
        super().__init__("close %s" % code)
        self.code = code


def mask(data, key):
    if not data:
        return b""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def build_frame(opcode, payload, rsv=0):
    head = bytes([0x80 | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    key = os.urandom(4)
    return head + key + mask(payload, key)


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason if code is not None else b""


def deflate(data):
    """A whole message as its own raw deflate stream, sync-flushed, tail cut."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(DEFLATE_TAIL) else out


def inflate(payload):
    # The broker always answers server_no_context_takeover: every message
    # is a stream of its own.
    return zlib.decompressobj(-15).decompress(payload + DEFLATE_TAIL)


def upgrade_request(host, port, path, key, offer_deflate):
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s:%d" % (host, port),
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
    ]
    if offer_deflate:
        lines.append("Sec-WebSocket-Extensions: %s" % DEFLATE_OFFER)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


class Endpoint:
    """Where to connect and from which local address."""

    def __init__(self, host, port, source=None):
        self.host = host
        self.port = port
        self.source = source

    async def open_socket(self, rcvbuf=None):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if rcvbuf is not None:       # before connect: it sets the window offered
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if self.source is not None:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def open(self, rcvbuf=None):
        """A plain TCP connection as (reader, writer)."""
        sock = await self.open_socket(rcvbuf)
        try:
            return await asyncio.open_connection(sock=sock, limit=1 << 20)
        except BaseException:
            sock.close()
            raise


def reset(writer):
    """Ends the connection with an RST: SO_LINGER 0, then close."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def read_to_eof(reader, limit=1 << 20):
    """Reads until EOF; returns the bytes (at most limit are kept). An RST
    counts as EOF."""
    kept = bytearray()
    while True:
        try:
            data = await reader.read(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(kept)
        if not data:
            return bytes(kept)
        if len(kept) < limit:
            kept += data[:limit - len(kept)]


class WS:
    """One WebSocket connection after a successful upgrade."""

    def __init__(self, reader, writer, deflate_on):
        self.reader = reader
        self.writer = writer
        self.deflate = deflate_on

    @classmethod
    async def connect(cls, endpoint, path, offer_deflate=False, rcvbuf=None):
        reader, writer = await endpoint.open(rcvbuf)
        try:
            key = new_key()
            writer.write(upgrade_request(endpoint.host, endpoint.port, path, key, offer_deflate))
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                raise SoakError("handshake: connection closed before the response")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ")
            if len(status) < 2 or status[1] != "101":
                raise SoakError("handshake: status %s" % (status[1] if len(status) > 1 else "?"))
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("sec-websocket-accept") != accept_of(key):
                raise SoakError("handshake: bad Sec-WebSocket-Accept")
            extensions = headers.get("sec-websocket-extensions", "")
            if extensions and not offer_deflate:
                raise SoakError("handshake: extension not offered was accepted")
            return cls(reader, writer, extensions.startswith("permessage-deflate"))
        except BaseException:
            reset(writer)
            raise

    # -- output

    def send(self, opcode, payload, compress=False):
        if compress and self.deflate:
            self.writer.write(build_frame(opcode, deflate(payload), rsv=4))
        else:
            self.writer.write(build_frame(opcode, payload))

    def send_text(self, text, compress=False):
        self.send(OP_TEXT, text.encode("utf-8"), compress)

    def send_close(self, code=1000, reason=b""):
        self.writer.write(build_frame(OP_CLOSE, close_payload(code, reason)))

    async def drain(self):
        await self.writer.drain()

    # -- input

    async def recv_frame(self):
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n) if n else b""
        except asyncio.IncompleteReadError:
            raise SoakError("unexpected EOF")
        except ConnectionResetError:
            raise SoakError("unexpected RST")
        if b1 & 0x80:
            raise SoakError("protocol: masked frame from the server")
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    async def recv_message(self):
        """The next data message as (opcode, payload): pings are answered,
        a close frame raises Closed."""
        parts = []
        first_opcode = None
        compressed = False
        while True:
            fin, rsv, opcode, payload = await self.recv_frame()
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise Closed(code)
            if opcode in (OP_TEXT, OP_BINARY):
                if first_opcode is not None:
                    raise SoakError("protocol: new message inside a fragmented one")
                first_opcode = opcode
                compressed = bool(rsv & 4)
            elif opcode != OP_CONT or first_opcode is None:
                raise SoakError("protocol: unexpected opcode %#x" % opcode)
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if compressed:
                    if not self.deflate:
                        raise SoakError("protocol: RSV1 without permessage-deflate")
                    data = inflate(data)
                return first_opcode, data

    async def wait_for_close(self):
        """Skips data messages until the broker's close frame; returns its code."""
        while True:
            try:
                await self.recv_message()
            except Closed as closed:
                return closed.code

    # -- endings

    async def close_handshake(self, code=1000):
        """Clean close: our close frame, the broker's echo, then its FIN."""
        self.send_close(code)
        echoed = await self.wait_for_close()
        if echoed != code:
            raise SoakError("clean close: echoed code %d, not %d" % (echoed, code))
        await read_to_eof(self.reader)
        self.writer.close()

    async def close_fin(self):
        """No close frame: our FIN, then the broker must close its side."""
        self.writer.write_eof()
        await read_to_eof(self.reader)
        self.writer.close()

    def close_rst(self):
        reset(self.writer)
