"""max_connections and the bounded outbound queue (slow readers)."""

import socket
import struct
import threading
import time

from wsclient import (OP_BINARY, OP_TEXT, WSClient, build_frame,
                      http_request, upgrade, upgrade_until, ws_connect)


def test_upgrade_over_max_connections_is_503_with_retry_after(broker):
    b = broker(limits={"max_connections": 2})
    first = ws_connect(b.port, "/echo")
    second = ws_connect(b.port, "/echo")
    response = upgrade(b.port, "/echo")
    assert response.status == 503, response
    assert response.header("Retry-After") == "1"
    assert response.closed
    # The two open connections are unaffected.
    for ws in (first, second):
        ws.send_text("still served")
        assert ws.recv_message() == (OP_TEXT, b"still served")
    first.send_close(1000)
    first.assert_closed_with(1000)
    first.close()
    assert upgrade_until(b.port, "/echo", 101).status == 101
    second.close()


def test_max_connections_counts_plain_http_connections(broker):
    b = broker(limits={"max_connections": 2})
    idle = [WSClient.open(b.port) for _ in range(2)]
    for client in idle:
        client.send_raw(b"GET / HTTP/1.1\r\n")       # head not finished
    time.sleep(0.2)
    response = http_request(b.port, "/")
    assert response.status == 503, response
    assert response.header("Retry-After") == "1"
    for client in idle:
        client.close()
    deadline = time.monotonic() + 3
    while http_request(b.port, "/").status != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http_request(b.port, "/").status == 200


class Reader(threading.Thread):
    """Collects (opcode, payload) of every message on a connection until
    `stop` or an error."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws = ws
        self.messages = []
        self.error = None
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    opcode, payload = self.ws.recv_message(timeout=0.2)
                except socket.timeout:
                    continue
                self.messages.append((opcode, payload))
        except Exception as exc:          # reported by the test
            self.error = exc

    def wait_for(self, count, deadline):
        """Waits until count messages are in or the monotonic deadline
        passes, failing at once on a read error."""
        while len(self.messages) < count and time.monotonic() < deadline:
            assert self.error is None, self.error
            time.sleep(0.05)

    def finish(self):
        """Stops reading (the caller then checks self.error)."""
        self.stop.set()
        self.join(5)


def drain_until_closed(ws, timeout, limit):
    """Reads and discards until EOF/reset; returns (closed, bytes read)."""
    total = len(ws.buf)
    ws.buf.clear()
    deadline = time.monotonic() + timeout
    while total <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, total
        ws.sock.settimeout(remaining)
        try:
            data = ws.sock.recv(65536)
        except socket.timeout:
            return False, total
        except (ConnectionResetError, BrokenPipeError):
            return True, total
        if not data:
            return True, total
        total += len(data)
    return False, total


def test_slow_reader_is_dropped_and_others_get_everything(broker):
    b = broker(limits={"outbound_queue_max": 65536})
    slow = ws_connect(b.port, "/chat/s", rcvbuf=4096)
    healthy = ws_connect(b.port, "/chat/s")
    publisher = ws_connect(b.port, "/quiet/s")         # same channel, no self echo
    reader = Reader(healthy)
    reader.start()

    # Batches of 24 KiB, each sent once the healthy reader is within one
    # batch of the end: it never lags more than 48 KiB (frame headers
    # included), so its queue stays under the limit however the threads
    # (the test's and the broker's workers) are scheduled.
    body = b"p" * 1020
    batch_size = 24
    sent = 0
    deadline = time.monotonic() + 30
    try:
        while sent < 20000 and time.monotonic() < deadline:
            if len(reader.messages) < sent - batch_size:
                assert reader.error is None, reader.error
                time.sleep(0.002)
                continue
            batch = b"".join(build_frame(OP_BINARY, struct.pack(">I", sent + i) + body)
                             for i in range(batch_size))
            publisher.send_raw(batch)
            sent += batch_size
            if sent >= 2000 and "slow reader" in b.log():
                break
        assert "slow reader" in b.log(), "no slow reader drop after %d messages" % sent

        # The healthy subscriber gets every message, in order.
        reader.wait_for(sent, deadline)
    finally:
        reader.finish()
    assert reader.error is None, reader.error
    assert len(reader.messages) == sent
    for i, (opcode, payload) in enumerate(reader.messages):
        assert opcode == OP_BINARY
        assert payload == struct.pack(">I", i) + body, "message %d out of order" % i

    # The slow one was cut off: after draining what reached it, TCP ends
    # before everything published could have arrived.
    closed, received = drain_until_closed(slow, timeout=10, limit=sent * 1100)
    assert closed, "slow reader still connected after reading %d bytes" % received
    assert received < sent * 1024

    # The publisher is still fine.
    publisher.send_binary(b"after")
    assert healthy.recv_message() == (OP_BINARY, b"after")
    for ws in (slow, healthy, publisher):
        ws.close()
