"""A small raw-socket RFC 6455 client for black-box tests of wsbroker.

Unlike a real client library it does whatever a test asks: any request
head, any frame (masked or not, any opcode, RSV bits, FIN, declared length
and length encoding), sent whole or in pieces. Everything it reads is
checked against a deadline, so a misbehaving daemon makes a test fail
instead of hang.

Every connecting function takes an optional `tls` (an ssl.SSLContext) that
wraps the socket for a TLS listener, and the permessage-deflate helpers
compress and inflate payloads as RFC 7692 frames carry them.
"""

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 5.0


class ConnectionClosed(Exception):
    """The peer closed TCP (EOF or reset) while a frame was expected."""


class UnexpectedFrame(AssertionError):
    """A frame arrived that the test did not expect at this point."""


# ---------------------------------------------------------------- helpers

def new_key():
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key):
    """The Sec-WebSocket-Accept value RFC 6455 requires for key."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def to_bytes(data):
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def mask_bytes(data, key):
    """XORs data with the 4-byte masking key (RFC 6455 §5.3)."""
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return value.to_bytes(n, "big")


def build_frame(opcode, payload=b"", *, fin=True, rsv=0, mask=True, mask_key=None,
                length=None, length_form=None):
    """Encodes one frame.

    rsv: the three RSV bits as a number 0-7 (4 = RSV1, 2 = RSV2, 1 = RSV3).
    length: the declared payload length (defaults to the real one), so a
    header may announce more bytes than are sent.
    length_form: "7", "16" or "64" to force the length encoding.
    """
    payload = to_bytes(payload)
    declared = len(payload) if length is None else length
    if length_form is None:
        length_form = "7" if declared < 126 else "16" if declared < 65536 else "64"
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if mask else 0
    if length_form == "7":
        head = bytes([first, mask_bit | declared])
    elif length_form == "16":
        head = bytes([first, mask_bit | 126]) + struct.pack(">H", declared)
    elif length_form == "64":
        head = bytes([first, mask_bit | 127]) + struct.pack(">Q", declared)
    else:
        raise ValueError("length_form must be 7, 16 or 64")
    if not mask:
        return head + payload
    if mask_key is None:
        mask_key = os.urandom(4)
    return head + mask_key + mask_bytes(payload, mask_key)


def frame_header_size(frame):
    """Size of the header (including the masking key) of an encoded frame."""
    size = 2
    short = frame[1] & 0x7F
    if short == 126:
        size += 2
    elif short == 127:
        size += 8
    if frame[1] & 0x80:
        size += 4
    return size


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack(">H", code) + to_bytes(reason)


def parse_close_payload(payload):
    """(code, reason) of a close frame's payload; (None, "") when empty."""
    if len(payload) == 0:
        return None, ""
    if len(payload) == 1:
        raise UnexpectedFrame("close frame with a 1-byte payload: %r" % payload)
    code = struct.unpack(">H", payload[:2])[0]
    return code, payload[2:].decode("utf-8", "replace")


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    def __repr__(self):
        shown = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return "Frame(fin=%s rsv=%d opcode=%#x masked=%s len=%d %r)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload), shown)


# ---------------------------------------------------------------- HTTP

class HttpResponse:
    """A parsed response head plus whatever body bytes were read."""

    def __init__(self, version, status, reason, headers, body=b"", closed=False):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value) in order
        self.body = body
        self.closed = closed            # server closed TCP after the response

    def header(self, name):
        """The last value of header name (case-insensitive), or None."""
        value = None
        for key, val in self.headers:
            if key.lower() == name.lower():
                value = val
        return value

    def header_all(self, name):
        return [val for key, val in self.headers if key.lower() == name.lower()]

    def __repr__(self):
        return "HttpResponse(%s %s %r headers=%r body=%r closed=%s)" % (
            self.version, self.status, self.reason, self.headers, self.body[:200],
            self.closed)


def parse_response_head(head):
    """Parses the bytes of a response head (without the final CRLFCRLF)."""
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AssertionError("not an HTTP status line: %r" % lines[0])
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if ":" not in line:
            raise AssertionError("malformed response header line: %r" % line)
        name, value = line.split(":", 1)
        headers.append((name.strip(), value.strip()))
    return HttpResponse(version, status, reason, headers)


def open_socket(port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, rcvbuf=None, tls=None):
    """A connected TCP socket; with tls (an ssl.SSLContext) an SSLSocket
    whose handshake is done, for server name host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def read_until_close(sock, timeout=DEFAULT_TIMEOUT, limit=16 * 1024 * 1024):
    """Reads until EOF, a reset, or timeout. Returns (data, closed)."""
    deadline = time.monotonic() + timeout
    chunks = []
    total = 0
    while total < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), False
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
        total += len(data)
    return b"".join(chunks), False


def send_quietly(sock, data):
    """sendall that tolerates the server having closed already."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def http_exchange(port, request, timeout=DEFAULT_TIMEOUT, host="127.0.0.1", tls=None):
    """Sends raw request bytes, reads until the server closes (or timeout)
    and returns the parsed HttpResponse (body = everything after the head)."""
    sock = open_socket(port, host=host, timeout=timeout, tls=tls)
    try:
        send_quietly(sock, to_bytes(request))
        data, closed = read_until_close(sock, timeout)
    finally:
        sock.close()
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise AssertionError("no complete response head (closed=%s): %r" % (closed, data[:500]))
    response = parse_response_head(data[:end])
    response.body = data[end + 4:]
    response.closed = closed
    return response


def http_request(port, path="/", method="GET", headers=None, body=b"", version="HTTP/1.1",
                 timeout=DEFAULT_TIMEOUT, tls=None):
    """A well-formed request: Host is added unless headers give one (None removes)."""
    all_headers = {"Host": "127.0.0.1:%d" % port}
    if body:
        all_headers["Content-Length"] = str(len(body))
    all_headers.update(headers or {})
    lines = ["%s %s %s" % (method, path, version)]
    lines += ["%s: %s" % (k, v) for k, v in all_headers.items() if v is not None]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + to_bytes(body)
    return http_exchange(port, request, timeout=timeout, tls=tls)


def upgrade_headers(port, key=None, host="127.0.0.1"):
    """The headers of a valid upgrade request, as an ordered dict."""
    host_header = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return {
        "Host": host_header,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key or new_key(),
        "Sec-WebSocket-Version": "13",
    }


def build_request(method, path, headers, version="HTTP/1.1"):
    """A request head; a header whose value is a list is sent once per
    element, in order."""
    lines = ["%s %s %s" % (method, path, version)]
    for name, value in headers.items():
        if isinstance(value, (list, tuple)):
            lines.extend("%s: %s" % (name, v) for v in value)
        elif value is not None:
            lines.append("%s: %s" % (name, value))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


# ---------------------------------------------------------------- WebSocket

class WSClient:
    """One raw connection. Create with WSClient.open() then handshake(), or
    with ws_connect() for a checked, successful upgrade."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.response = None
        self.close_raw = None

    @classmethod
    def open(cls, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, rcvbuf=None, tls=None):
        return cls(open_socket(port, host=host, timeout=timeout, rcvbuf=rcvbuf, tls=tls))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- raw I/O

    def send_raw(self, data, pieces=1, delay=0.0):
        """Sends data, optionally split into `pieces` chunks with a delay
        between them (pieces=len(data) sends byte by byte)."""
        data = to_bytes(data)
        if pieces <= 1:
            self.sock.sendall(data)
            return
        step = max(1, -(-len(data) // pieces))
        for offset in range(0, len(data), step):
            self.sock.sendall(data[offset:offset + step])
            if delay and offset + step < len(data):
                time.sleep(delay)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
            raise ConnectionClosed("connection reset: %s" % exc)
        if not data:
            raise ConnectionClosed("server closed the connection")
        self.buf += data

    # -- handshake

    def send_request(self, method="GET", path="/echo", headers=None, version="HTTP/1.1"):
        self.sock.sendall(build_request(method, path, headers or {}, version))

    def read_response_head(self, timeout=DEFAULT_TIMEOUT):
        """Reads a response head; bytes after it stay buffered for frames."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > 65536:
                raise AssertionError("response head too long")
            self._fill(deadline)
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        self.response = parse_response_head(head)
        return self.response

    def handshake(self, port, path="/echo", headers=None, method="GET", version="HTTP/1.1",
                  host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
        """Sends an upgrade request: the valid default headers updated with
        `headers` (a None value removes a header). Returns the response."""
        all_headers = upgrade_headers(port, host=host)
        all_headers.update(headers or {})
        self.key = all_headers.get("Sec-WebSocket-Key")
        self.send_request(method, path, all_headers, version)
        return self.read_response_head(timeout)

    # -- frames

    def send_frame(self, opcode, payload=b"", **kwargs):
        self.sock.sendall(build_frame(opcode, payload, **kwargs))

    def send_text(self, text, **kwargs):
        self.send_frame(OP_TEXT, text, **kwargs)

    def send_binary(self, data, **kwargs):
        self.send_frame(OP_BINARY, data, **kwargs)

    def send_ping(self, data=b"", **kwargs):
        self.send_frame(OP_PING, data, **kwargs)

    def send_pong(self, data=b"", **kwargs):
        self.send_frame(OP_PONG, data, **kwargs)

    def send_close(self, code=None, reason=b"", **kwargs):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kwargs)

    def _parse_frame(self):
        """Removes and returns one complete frame from the buffer, or None
        when the buffer does not hold a whole frame yet."""
        buf = self.buf
        if len(buf) < 2:
            return None
        fin = bool(buf[0] & 0x80)
        rsv = (buf[0] >> 4) & 7
        opcode = buf[0] & 0xF
        masked = bool(buf[1] & 0x80)
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack(">H", buf[2:4])[0]
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack(">Q", buf[2:10])[0]
            pos = 10
            if length >= 1 << 63:
                raise UnexpectedFrame("server sent a 64-bit length with the top bit set")
        key = None
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(fin, rsv, opcode, masked, payload)

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """Reads one frame. Raises socket.timeout or ConnectionClosed; a
        timeout leaves a partly received frame buffered."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse_frame()
            if frame is not None:
                return frame
            self._fill(deadline)

    def recv_message(self, timeout=DEFAULT_TIMEOUT, auto_pong=True):
        """Reads the next data message (reassembling fragments), answering
        pings when auto_pong and skipping pongs. Returns (opcode, payload).
        A close frame raises UnexpectedFrame."""
        frames = self.recv_message_frames(timeout, auto_pong)
        return frames[0].opcode, b"".join(frame.payload for frame in frames)

    def recv_message_frames(self, timeout=DEFAULT_TIMEOUT, auto_pong=True):
        """Reads the next data message and returns its frames as received
        (RSV bits and payloads untouched), answering pings when auto_pong
        and skipping pongs. A close frame raises UnexpectedFrame."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == OP_PING:
                if auto_pong:
                    self.send_pong(frame.payload)
                continue
            if frame.opcode == OP_PONG:
                continue
            if frame.opcode == OP_CLOSE:
                self.close_raw = frame.payload
                raise UnexpectedFrame("close frame instead of a message: %r" %
                                      (parse_close_payload(frame.payload),))
            if (frame.opcode == OP_CONT) != bool(frames):
                raise UnexpectedFrame("bad fragment sequence: %r after %r" % (frame, frames))
            frames.append(frame)
            if frame.fin:
                return frames

    def recv_text(self, timeout=DEFAULT_TIMEOUT):
        opcode, payload = self.recv_message(timeout)
        if opcode != OP_TEXT:
            raise UnexpectedFrame("expected a text message, got opcode %#x" % opcode)
        return payload.decode("utf-8")

    def expect_close(self, timeout=DEFAULT_TIMEOUT, allow_data=False):
        """Reads until a close frame and returns (code, reason); code is None
        for an empty close payload. Pings and pongs are skipped; data frames
        fail the test unless allow_data."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except socket.timeout:
                raise AssertionError("no close frame within %.1f s" % timeout)
            except ConnectionClosed as exc:
                raise AssertionError("TCP closed without a close frame (%s)" % exc)
            if frame.opcode == OP_CLOSE:
                self.close_raw = frame.payload
                if frame.masked:
                    raise UnexpectedFrame("server sent a masked close frame")
                return parse_close_payload(frame.payload)
            if frame.opcode in (OP_PING, OP_PONG):
                continue
            if not allow_data:
                raise UnexpectedFrame("data frame instead of a close frame: %r" % frame)

    def assert_closed_with(self, code, timeout=DEFAULT_TIMEOUT, tcp_timeout=3.0):
        """Expects a close frame with code (None: empty payload), then the
        server closing TCP. Returns the close reason."""
        got, reason = self.expect_close(timeout)
        assert got == code, "expected close code %s, got %s (reason %r)" % (code, got, reason)
        assert self.wait_tcp_close(tcp_timeout), \
            "server did not close TCP within %.1f s of its close frame" % tcp_timeout
        return reason

    def wait_tcp_close(self, timeout=3.0):
        """True when the server closes TCP (EOF or reset) within timeout;
        anything read meanwhile is discarded."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return True
            if not data:
                return True

    def is_open(self, timeout=0.2):
        """True when nothing but pings/pongs or data arrives and TCP stays up
        for `timeout` seconds (frames read meanwhile are kept for later)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(max(0.001, timeout))
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return True
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return False
            if not data:
                return False
            self.buf += data
        return True

    def assert_silent(self, seconds):
        """Fails if any data message or close arrives within `seconds`
        (pings are answered, pongs skipped)."""
        try:
            frame = self.recv_message(timeout=seconds)
        except socket.timeout:
            return
        raise UnexpectedFrame("expected no message, got %r" % (frame,))


# ---------------------------------------------------------------- permessage-deflate

DEFLATE_TAIL = b"\x00\x00\xff\xff"


def deflate_payload(data, level=6, wbits=15, mem_level=8, compressor=None):
    """The payload of one compressed message (RFC 7692 §7.2.1): raw deflate
    ending in a sync flush, without the trailing 00 00 ff ff. A compressor
    (zlib.compressobj with negative wbits) passed in keeps its context from
    message to message; otherwise each message starts afresh."""
    if compressor is None:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level)
    out = compressor.compress(to_bytes(data)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(DEFLATE_TAIL), out[-8:]
    return out[:-len(DEFLATE_TAIL)]


def inflate_payload(payload, wbits=15, decompressor=None):
    """Inflates one compressed message payload (§7.2.2: the tail is put
    back) with a window of wbits; zlib.error on corrupt data or on a match
    distance beyond that window. A decompressor passed in keeps context.

    zlib checks a match distance against the window only when the match
    reaches back past the output of the current call, so the output is
    taken in small steps: then every distance is checked."""
    if decompressor is None:
        decompressor = zlib.decompressobj(-wbits)
    step = min(256, 1 << wbits)
    pending = to_bytes(payload) + DEFLATE_TAIL
    out = []
    while True:
        chunk = decompressor.decompress(pending, step)
        out.append(chunk)
        pending = decompressor.unconsumed_tail
        if not pending and len(chunk) < step:    # all input used, no output held back
            return b"".join(out)


def ws_connect(port, path="/echo", headers=None, host="127.0.0.1", timeout=DEFAULT_TIMEOUT,
               rcvbuf=None, tls=None):
    """Opens a WebSocket and checks the 101 and its Sec-WebSocket-Accept."""
    client = WSClient.open(port, host=host, timeout=timeout, rcvbuf=rcvbuf, tls=tls)
    try:
        response = client.handshake(port, path, headers=headers, host=host, timeout=timeout)
        if response.status != 101:
            raise AssertionError("upgrade of %s refused: %r" % (path, response))
        if response.header("Sec-WebSocket-Accept") != accept_key(client.key):
            raise AssertionError("wrong Sec-WebSocket-Accept: %r" % response)
    except BaseException:
        client.close()
        raise
    return client


def upgrade(port, path="/echo", headers=None, method="GET", version="HTTP/1.1",
            host="127.0.0.1", timeout=DEFAULT_TIMEOUT, tls=None):
    """Sends one upgrade request and returns the response; when the answer
    is not 101, reads on until the server closes (response.closed)."""
    with WSClient.open(port, host=host, timeout=timeout, tls=tls) as client:
        response = client.handshake(port, path, headers=headers, method=method,
                                    version=version, host=host, timeout=timeout)
        if response.status != 101:
            rest, closed = read_until_close(client.sock, timeout)
            response.body = bytes(client.buf) + rest
            response.closed = closed
        return response


def upgrade_until(port, path, status, timeout=5.0):
    """Repeats an upgrade until it is answered with `status` or timeout
    passes; returns the last response. For changes the daemon applies
    asynchronously (a freed connection slot, a reload)."""
    deadline = time.monotonic() + timeout
    while True:
        response = upgrade(port, path)
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)
