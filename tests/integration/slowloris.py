"""A slow-header client for the tests, run as its own process:

    python3 slowloris.py PORT SOURCE COUNT INTERVAL DEADLINE RESULT_FILE

Opens COUNT connections from address SOURCE to 127.0.0.1:PORT, sends an
unfinished request head on each, then one more header byte per connection
every INTERVAL seconds, never ending the head. Prints "ready" once every
connection is open, reads whatever the server answers, and stops when the
server has closed them all or DEADLINE seconds have passed. RESULT_FILE
then gets one JSON object per connection: connected (monotonic time),
closed (or null), sent (bytes after the first piece) and answer (the first
bytes the server sent, latin-1)."""

import json
import resource
import selectors
import socket
import sys
import time

PREFIX = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
ANSWER_KEEP = 64


class Slow:
    def __init__(self, sock, now, interval, index, count):
        self.sock = sock
        self.connected = now
        self.closed = None
        self.sent = 0
        self.answer = b""
        # Spread the trickle evenly rather than in bursts.
        self.next_send = now + interval * (index + 1) / count

    def result(self):
        return {"connected": self.connected, "closed": self.closed, "sent": self.sent,
                "answer": self.answer.decode("latin-1")}


def open_all(port, source, count, interval):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    conns = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(PREFIX)
        sock.setblocking(False)
        conns.append(Slow(sock, time.monotonic(), interval, index, count))
    return conns


def finish(conn, selector, now):
    conn.closed = now
    selector.unregister(conn.sock)
    conn.sock.close()


def run(conns, interval, deadline):
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    open_count = len(conns)
    while open_count > 0 and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            conn = key.data
            try:
                data = conn.sock.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                conn.answer = (conn.answer + data)[:ANSWER_KEEP]
            else:
                finish(conn, selector, time.monotonic())
                open_count -= 1
        now = time.monotonic()
        for conn in conns:
            if conn.closed is None and conn.next_send <= now:
                try:
                    conn.sock.send(b"a")
                    conn.sent += 1
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    pass                   # the read side sees the close
                conn.next_send += interval
    for conn in conns:
        if conn.closed is None:
            conn.sock.close()


def main(argv):
    port, source, count = int(argv[1]), argv[2], int(argv[3])
    interval, limit, result_file = float(argv[4]), float(argv[5]), argv[6]
    started = time.monotonic()
    conns = open_all(port, source, count, interval)
    print("ready", flush=True)
    run(conns, interval, started + limit)
    with open(result_file, "w") as f:
        json.dump([conn.result() for conn in conns], f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
