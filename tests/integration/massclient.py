#!/usr/bin/python3
"""Many WebSocket connections in one process, for the load tests.

    massclient.py PORT COUNT SOURCE PATH [--silent]

Opens COUNT connections to 127.0.0.1:PORT PATH from the local address
SOURCE (127.0.0.2, ... so that several processes do not share one port
range), a few hundred handshakes at a time, and prints "ready COUNT"
(or "failed REASON" and exits 1). From then on it reads every connection
and records what arrives: data frames, the broker's close frame (answered
with the same code, unless --silent) and the end of TCP. Commands on
stdin, each answered by one JSON line on stdout:

    ping        a ping on every connection still open; the answer comes
                once every pong is in (or after 10 s): {"open": N, "pongs": N}
    finish T    waits up to T seconds for every connection to end, then
                answers with the tally and exits:
                {"count", "close_codes": {code: n}, "eof": n, "eof_without_close": n,
                 "data_frames": n, "last_close_at": monotonic time or null}

Everything here is bounded in time, so a broker that misbehaves makes the
test fail instead of hang.
"""

import base64
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
BATCH = 256
CONNECT_TIMEOUT = 60.0
PING_TIMEOUT = 10.0


def masked_frame(opcode, payload):
    key = os.urandom(4)
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + data


class Conn:
    __slots__ = ("sock", "inbuf", "state", "close_code", "eof", "data_frames", "pong")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.state = "connecting"
        self.close_code = None
        self.eof = False
        self.data_frames = 0
        self.pong = False


class Mass:
    def __init__(self, port, count, source, path, silent):
        self.port = port
        self.count = count
        self.source = source
        self.path = path
        self.silent = silent
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.last_close_at = None
        self.request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n" %
                        (path, port, base64.b64encode(b"0123456789abcdef").decode())).encode()

    # ---------------------------------------------------------------- connecting

    def start_one(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((self.source, 0))
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, os.strerror(code))
        conn = Conn(sock)
        self.conns.append(conn)
        self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def connect_all(self):
        deadline = time.monotonic() + CONNECT_TIMEOUT
        started = upgraded = 0
        while upgraded < self.count:
            while started < self.count and started - upgraded < BATCH:
                self.start_one()
                started += 1
            if time.monotonic() > deadline:
                raise OSError("only %d of %d upgraded in %.0f s" %
                              (upgraded, self.count, CONNECT_TIMEOUT))
            for key, events in self.sel.select(timeout=0.5):
                conn = key.data
                if conn.state == "connecting":
                    error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        raise OSError(error, "connect: " + os.strerror(error))
                    conn.sock.sendall(self.request)
                    conn.state = "handshaking"
                    self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
                elif conn.state == "handshaking":
                    data = conn.sock.recv(4096)
                    if not data:
                        raise OSError("closed during the handshake")
                    conn.inbuf += data
                    end = conn.inbuf.find(b"\r\n\r\n")
                    if end >= 0:
                        if not conn.inbuf.startswith(b"HTTP/1.1 101 "):
                            raise OSError("handshake answered %r" % bytes(conn.inbuf[:40]))
                        del conn.inbuf[:end + 4]
                        conn.state = "open"
                        upgraded += 1

    # ---------------------------------------------------------------- reading

    def on_readable(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            conn.eof = True
            conn.state = "gone"
            self.sel.unregister(conn.sock)
            conn.sock.close()
            return
        conn.inbuf += data
        self.parse(conn)

    def parse(self, conn):
        buf = conn.inbuf
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            offset = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack(">H", buf[2:4])[0]
                offset = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack(">Q", buf[2:10])[0]
                offset = 10
            if len(buf) < offset + n:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[offset:offset + n])
            del buf[:offset + n]
            self.on_frame(conn, opcode, payload)

    def on_frame(self, conn, opcode, payload):
        if opcode == 0x8:
            conn.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.last_close_at = time.monotonic()
            if not self.silent and conn.state == "open":
                try:
                    conn.sock.send(masked_frame(0x8, payload[:2]))
                except OSError:
                    pass
            conn.state = "closing"
        elif opcode == 0x9:
            if conn.state == "open":
                conn.sock.send(masked_frame(0xA, payload))
        elif opcode == 0xA:
            conn.pong = True
        else:
            conn.data_frames += 1

    def pump(self, seconds):
        for key, _ in self.sel.select(timeout=seconds):
            if key.data is None:
                return True             # stdin
            self.on_readable(key.data)
        return False

    # ---------------------------------------------------------------- commands

    def ping(self):
        open_conns = [c for c in self.conns if c.state == "open"]
        for conn in open_conns:
            conn.pong = False
            conn.sock.send(masked_frame(0x9, b"check"))
        deadline = time.monotonic() + PING_TIMEOUT
        while time.monotonic() < deadline and not all(c.pong for c in open_conns):
            self.pump(0.1)
        return {"open": sum(1 for c in self.conns if c.state == "open"),
                "pongs": sum(1 for c in open_conns if c.pong)}

    def finish(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(c.state != "gone" for c in self.conns):
            self.pump(0.1)
        codes = {}
        for conn in self.conns:
            if conn.close_code is not None:
                codes[str(conn.close_code)] = codes.get(str(conn.close_code), 0) + 1
        return {"count": len(self.conns), "close_codes": codes,
                "eof": sum(1 for c in self.conns if c.eof),
                "eof_without_close": sum(1 for c in self.conns if c.eof and c.close_code is None),
                "data_frames": sum(c.data_frames for c in self.conns),
                "last_close_at": self.last_close_at}

    def serve(self):
        self.sel.register(sys.stdin, selectors.EVENT_READ, None)
        while True:
            if not self.pump(1.0):
                continue
            line = sys.stdin.readline()
            if not line:
                return
            words = line.split()
            if words[0] == "ping":
                print(json.dumps(self.ping()), flush=True)
            elif words[0] == "finish":
                print(json.dumps(self.finish(float(words[1]))), flush=True)
                return


def main(argv):
    port, count, source, path = int(argv[0]), int(argv[1]), argv[2], argv[3]
    mass = Mass(port, count, source, path, "--silent" in argv[4:])
    try:
        mass.connect_all()
    except OSError as error:
        print("failed %s" % error, flush=True)
        return 1
    print("ready %d" % count, flush=True)
    mass.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
