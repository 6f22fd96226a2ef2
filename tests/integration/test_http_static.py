"""Static files over plain HTTP and the strict request-head parser."""

import select
import time

import pytest

from conftest import SECRET_CONTENT, STATIC_FILES
from wsclient import WSClient, http_exchange, http_request, read_until_close


def assert_closing_response(response, status, head=False):
    """status, Content-Length matching the body (unless HEAD), Connection:
    close, and the server closing TCP after the response."""
    assert response.status == status, response
    assert response.header("Content-Length") is not None, response
    if not head:
        assert int(response.header("Content-Length")) == len(response.body), response
    assert response.header("Connection") is not None, response
    assert response.header("Connection").lower() == "close", response
    assert response.closed, "server did not close after the response: %r" % response


@pytest.mark.parametrize("path,name,content_type", [
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/index.html", "index.html", "text/html; charset=utf-8"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
    ("/subdir/", "subdir/index.html", "text/html; charset=utf-8"),
    ("/subdir/page.html", "subdir/page.html", "text/html; charset=utf-8"),
])
def test_get_serves_file_with_type_length_and_close(shared_broker, path, name, content_type):
    response = http_request(shared_broker.port, path)
    assert_closing_response(response, 200)
    assert response.header("Content-Type") == content_type
    expected = STATIC_FILES[name].encode()
    assert response.body == expected
    assert int(response.header("Content-Length")) == len(expected)


def test_query_string_is_ignored_for_files(shared_broker):
    response = http_request(shared_broker.port, "/app.js?v=3")
    assert_closing_response(response, 200)
    assert response.body == STATIC_FILES["app.js"].encode()


def test_head_sends_headers_without_body(shared_broker):
    response = http_request(shared_broker.port, "/style.css", method="HEAD")
    assert_closing_response(response, 200, head=True)
    assert response.header("Content-Type") == "text/css; charset=utf-8"
    assert int(response.header("Content-Length")) == len(STATIC_FILES["style.css"])
    assert response.body == b""


def test_unknown_file_is_404(shared_broker):
    response = http_request(shared_broker.port, "/no-such-file.html")
    assert_closing_response(response, 404)
    assert response.header("Content-Length") is not None
    assert int(response.header("Content-Length")) == len(response.body)


def test_post_to_file_is_405_with_allow(shared_broker):
    response = http_request(shared_broker.port, "/index.html", method="POST",
                            headers={"Content-Length": "0"})
    assert_closing_response(response, 405)
    allow = response.header("Allow")
    assert allow is not None, response
    assert "GET" in [m.strip() for m in allow.split(",")]


@pytest.mark.parametrize("target", [
    "/../secret",
    "/%2e%2e/secret",
    "/%2E%2E/secret",
    "/subdir/../../secret",
    "/subdir/%2e%2e/%2e%2e/secret",
    "/..%2fsecret",
    "/subdir/..%2f..%2fsecret",
    "/./../secret",
    "../secret",
])
def test_path_traversal_never_leaves_static_root(shared_broker, target):
    request = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % target
    response = http_exchange(shared_broker.port, request)
    assert response.status in (400, 404), response
    assert SECRET_CONTENT.encode() not in response.body
    assert response.closed


def test_symlink_leading_out_of_root_is_not_followed(shared_broker):
    response = http_request(shared_broker.port, "/escape.txt")
    assert response.status in (403, 404), response
    assert SECRET_CONTENT.encode() not in response.body


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x00b\r\n\r\n",
], ids=["no-version", "http09", "extra-token", "no-colon", "space-in-name",
        "empty-name", "nul-in-value"])
def test_malformed_request_head_is_400_and_closed(shared_broker, request_bytes):
    response = http_exchange(shared_broker.port, request_bytes)
    assert_closing_response(response, 400)


def test_request_head_over_limit_is_431(shared_broker):
    request = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: %s\r\n\r\n" % ("a" * 9000))
    response = http_exchange(shared_broker.port, request)
    assert_closing_response(response, 431)


def test_request_head_just_under_limit_is_served(shared_broker):
    head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: %s\r\n\r\n"
    filler = 8000 - len(head % "")
    response = http_exchange(shared_broker.port, head % ("a" * filler))
    assert_closing_response(response, 200)


def test_configured_request_head_max_applies(broker):
    b = broker(limits={"request_head_max": 1024})
    request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: %s\r\n\r\n" % ("a" * 2000)
    assert_closing_response(http_exchange(b.port, request), 431)


@pytest.mark.parametrize("extra", [64, 70])      # with Host: 65 and 71 headers
def test_more_than_64_headers_is_431(shared_broker, extra):
    headers = "".join("X-H%d: v\r\n" % i for i in range(extra))
    request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % headers
    response = http_exchange(shared_broker.port, request)
    assert_closing_response(response, 431)


def test_64_headers_are_accepted(shared_broker):
    headers = "".join("X-H%d: v\r\n" % i for i in range(63))
    request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % headers
    response = http_exchange(shared_broker.port, request)
    assert_closing_response(response, 200)


def trickle_head(port, pieces):
    """Sends the pieces one by one, 5 ms apart; no answer may come before
    the last. Then returns what the server answers."""
    with WSClient.open(port) as client:
        for piece in pieces[:-1]:
            client.send_raw(piece)
            time.sleep(0.005)
            readable, _, _ = select.select([client.sock], [], [], 0)
            assert not readable, "answered before the limit: %r" % client.sock.recv(4096)
        client.send_raw(pieces[-1])
        data, closed = read_until_close(client.sock, timeout=5)
    assert closed
    return data


def test_head_in_small_pieces_is_431_at_request_head_max(broker):
    """The bound holds across reads: the answer comes as soon as the
    unfinished head reaches request_head_max, in whatever pieces it came."""
    limit = 1024
    b = broker(limits={"request_head_max": limit})
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        b"X-Fill-%03d: %s\r\n" % (i, b"a" * 40) for i in range(40))
    head = head[:limit]                        # no end of head in it
    pieces = [head[i:i + 16] for i in range(0, len(head), 16)]
    assert trickle_head(b.port, pieces).startswith(b"HTTP/1.1 431 ")


def test_65th_header_in_small_pieces_is_431(shared_broker):
    lines = [b"GET / HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n"]
    lines += [b"X-H%d: v\r\n" % i for i in range(63)]
    # Each line in two pieces; the 65th header is refused as it begins.
    pieces = [part for line in lines for part in (line[:3], line[3:])] + [b"X-H"]
    assert trickle_head(shared_broker.port, pieces).startswith(b"HTTP/1.1 431 ")


def test_incomplete_head_gets_408_after_handshake_timeout(broker):
    b = broker(websocket={"handshake_timeout": 1})
    with WSClient.open(b.port) as client:
        started = time.monotonic()
        client.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data, closed = read_until_close(client.sock, timeout=5)
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data
    assert closed
    assert 0.7 <= elapsed <= 4.0, elapsed


def test_head_sent_slowly_within_timeout_is_served(broker):
    b = broker(websocket={"handshake_timeout": 2})
    request = b"GET /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with WSClient.open(b.port) as client:
        client.send_raw(request, pieces=4, delay=0.2)
        data, closed = read_until_close(client.sock, timeout=5)
    assert data.startswith(b"HTTP/1.1 200"), data
    assert data.endswith(STATIC_FILES["app.js"].encode())
    assert closed
