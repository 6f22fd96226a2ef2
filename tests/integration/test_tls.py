"""TLS listeners (Step 3): wss:// and https:// on one port, protocol
versions, ALPN, cipher options, client certificates, certificate reload on
SIGHUP, startup errors, and plain HTTP / TLS sent to the wrong kind of port.

A test CA, two server certificates (CN and SAN 127.0.0.1 and localhost,
each file holding the leaf and then the CA: a chain), client certificates
and a second CA are made with the openssl tool once per module.
"""

import asyncio
import os
import re
import shutil
import signal
import select
import socket
import ssl
import subprocess
import time
import warnings

import pytest
import websockets
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from conftest import STATIC_FILES, line_of, run_wsbroker
from step2util import openssl
from wsclient import (OP_TEXT, http_exchange, http_request, read_until_close, upgrade,
                      ws_connect)

PLAIN_HTTP_BODY = b"plain HTTP request to a TLS port"
QUICK = 3.0          # "answered quickly": well below the 10 s handshake_timeout


# ---------------------------------------------------------------- certificates

CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""

CLIENT_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
"""


class Certs:
    """Paths of the generated PEM files."""

    def __init__(self, directory):
        self.dir = str(directory)
        self.cnf = self.path("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CONFIG)
        self.ca, self.ca_key = self.make_ca("ca", "wsbroker test CA")
        self.other_ca, self.other_ca_key = self.make_ca("other-ca", "some other CA")
        # server certificates: leaf followed by the CA certificate
        self.server, self.server_key = self.make_leaf("server", "127.0.0.1", SERVER_EXT,
                                                      self.ca, self.ca_key)
        self.server2, self.server2_key = self.make_leaf("server2", "127.0.0.1", SERVER_EXT,
                                                        self.ca, self.ca_key)
        self.client, self.client_key = self.make_leaf("client", "test client", CLIENT_EXT,
                                                      self.ca, self.ca_key)
        self.stranger, self.stranger_key = self.make_leaf("stranger", "stranger", CLIENT_EXT,
                                                          self.other_ca, self.other_ca_key)
        self.garbage = self.path("garbage.pem")
        with open(self.garbage, "w") as f:
            f.write("this is not a certificate\n" * 10)

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name, cn):
        key, pem = self.path(name + ".key"), self.path(name + ".pem")
        openssl("req", "-x509", "-config", self.cnf, "-extensions", "v3_ca", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", pem,
                "-days", "3", "-subj", "/CN=" + cn)
        return pem, key

    def make_leaf(self, name, cn, extensions, ca, ca_key):
        key, csr = self.path(name + ".key"), self.path(name + ".csr")
        leaf, chain = self.path(name + ".leaf.pem"), self.path(name + ".pem")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write(extensions)
        openssl("req", "-new", "-config", self.cnf, "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial",
                str(int.from_bytes(os.urandom(8), "big")), "-days", "3", "-extfile", ext,
                "-out", leaf)
        with open(chain, "w") as out:
            for part in (leaf, ca):
                with open(part) as f:
                    out.write(f.read())
        return chain, key

    @staticmethod
    def leaf_der(chain):
        """DER of the first certificate of a PEM chain file."""
        with open(chain) as f:
            text = f.read()
        end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        return ssl.PEM_cert_to_DER_cert(text[:end] + "\n")

    def copy_identity(self, directory, cert, key):
        """Copies a certificate and key to directory/cert.pem and key.pem (the
        files a broker's config names) and returns that tls group."""
        target = {"cert": os.path.join(str(directory), "cert.pem"),
                  "key": os.path.join(str(directory), "key.pem")}
        shutil.copyfile(cert, target["cert"])
        shutil.copyfile(key, target["key"])
        return target


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


def client_context(certs, minimum=None, maximum=None, alpn=None, cert=None, key=None):
    """A client context that trusts the test CA and checks the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # TLS 1.0/1.1 on purpose
        if minimum is not None or maximum is not None:
            # let the client itself offer old versions, so that a refusal
            # can only come from the server
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_connect(port, ctx, host="127.0.0.1", timeout=5.0):
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def peer_der(port, certs):
    with tls_connect(port, client_context(certs)) as s:
        return s.getpeercert(binary_form=True)


def client_hello():
    """The bytes of a real TLS ClientHello, as a client would send first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:16]
    return hello


def expect_refused(port, ctx):
    """The TLS handshake, or the first request after it (TLS 1.3 reports a
    refused client certificate only then), fails: no HTTP answer comes."""
    try:
        response = http_request(port, "/healthz", tls=ctx, timeout=QUICK)
    except (ssl.SSLError, ConnectionError, AssertionError) as exc:
        return exc
    raise AssertionError("connection was not refused: %r" % (response,))


# ---------------------------------------------------------------- brokers

@pytest.fixture(scope="module")
def tb(module_broker, certs):
    """A broker whose one listener speaks TLS with the default options."""
    return module_broker(tls={"cert": certs.server, "key": certs.server_key})


@pytest.fixture(scope="module")
def plain(module_broker):
    return module_broker()


# ---------------------------------------------------------------- https

def test_https_serves_the_page_and_healthz(tb, certs):
    ctx = client_context(certs)
    response = http_request(tb.port, "/", tls=ctx)
    assert response.status == 200, response
    assert response.body == STATIC_FILES["index.html"].encode(), response
    assert response.header("Content-Length") == str(len(STATIC_FILES["index.html"]))
    response = http_request(tb.port, "/app.js", tls=ctx)
    assert response.status == 200 and response.body == STATIC_FILES["app.js"].encode()
    response = http_request(tb.port, "/healthz", tls=ctx)
    assert response.status == 200 and response.body == b"ok\n", response
    assert http_request(tb.port, "/no-such-file", tls=ctx).status == 404


def test_server_presents_its_chain_valid_for_ip_and_localhost(tb, certs):
    with tls_connect(tb.port, client_context(certs)) as s:
        assert s.getpeercert(binary_form=True) == Certs.leaf_der(certs.server)
        assert ("IP Address", "127.0.0.1") in s.getpeercert()["subjectAltName"]
    # the host name localhost verifies as well
    with tls_connect(tb.port, client_context(certs), host="localhost") as s:
        assert s.getpeercert(binary_form=True) == Certs.leaf_der(certs.server)


def test_chain_includes_the_ca_certificate(tb, certs):
    """The cert file holds leaf + CA; the server sends both."""
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tb.port,
                          "-showcerts", "-CAfile", certs.ca, "-servername", "localhost"],
                         input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10).stdout.decode("utf-8", "replace")
    assert out.count("-----BEGIN CERTIFICATE-----") == 2, out
    assert "Verify return code: 0 (ok)" in out, out


def test_alpn_is_http11(tb, certs):
    for offer in (["h2", "http/1.1"], ["http/1.1"], ["http/1.1", "h2"]):
        with tls_connect(tb.port, client_context(certs, alpn=offer)) as s:
            assert s.selected_alpn_protocol() == "http/1.1", offer


def test_alpn_without_http11_is_answered_without_alpn(tb, certs):
    ctx = client_context(certs, alpn=["h2"])
    with tls_connect(tb.port, ctx) as s:
        assert s.selected_alpn_protocol() is None
    response = http_request(tb.port, "/healthz", tls=ctx)
    assert response.status == 200, response
    with tls_connect(tb.port, client_context(certs)) as s:     # no ALPN offered at all
        assert s.selected_alpn_protocol() is None


def test_default_versions_tls13_preferred_tls12_accepted(tb, certs):
    with tls_connect(tb.port, client_context(certs)) as s:
        assert s.version() == "TLSv1.3"
    ctx = client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)
    with tls_connect(tb.port, ctx) as s:
        assert s.version() == "TLSv1.2"
    assert http_request(tb.port, "/healthz", tls=ctx).status == 200


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["TLSv1.0", "TLSv1.1"])
def test_tls_below_12_is_refused_by_the_server(tb, certs, maximum):
    ctx = client_context(certs, minimum=ssl.TLSVersion.TLSv1, maximum=maximum)
    with pytest.raises(ssl.SSLError) as info:
        tls_connect(tb.port, ctx)
    # an alert from the server, not the client refusing to offer the version
    assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", info.value
    assert http_request(tb.port, "/healthz", tls=client_context(certs)).status == 200


def test_min_version_tls13_refuses_a_tls12_client(module_broker, certs):
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key, "min_version": "TLSv1.3"})
    ctx = client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError) as info:
        tls_connect(b.port, ctx)
    assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", info.value
    with tls_connect(b.port, client_context(certs)) as s:
        assert s.version() == "TLSv1.3"
    assert http_request(b.port, "/healthz", tls=client_context(certs)).status == 200


def test_cipher_options_choose_the_suites(module_broker, certs):
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key,
                     "ciphers": "ECDHE+CHACHA20", "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    with tls_connect(b.port, client_context(certs)) as s:
        assert s.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256", s.cipher()
    with tls_connect(b.port, client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)) as s:
        assert s.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305", s.cipher()
    # a TLS 1.2 client that offers no cipher of the list is refused
    ctx = client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE+AESGCM")
    with pytest.raises(ssl.SSLError):
        tls_connect(b.port, ctx)


def test_client_renegotiation_is_refused(tb, certs, tmp_path):
    """Python cannot renegotiate, the openssl tool can ("R" on its input)."""
    log = tmp_path / "s_client.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tb.port,
                                 "-tls1_2", "-CAfile", certs.ca, "-servername", "localhost"],
                                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            if b"no renegotiation" in log.read_bytes():
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
    text = log.read_bytes().decode("utf-8", "replace")
    assert "Verify return code: 0 (ok)" in text and "TLSv1.2" in text, text
    assert "RENEGOTIATING" in text, text
    assert "no renegotiation" in text, text
    assert http_request(tb.port, "/healthz", tls=client_context(certs)).status == 200


# ---------------------------------------------------------------- wss

def test_wss_raw_echo_large_and_small(tb, certs):
    ws = ws_connect(tb.port, "/echo", tls=client_context(certs))
    try:
        for size in (0, 5, 125, 126, 16385, 65536):
            data = bytes((i * 7) & 0x7F for i in range(size))
            ws.send_text(data)
            assert ws.recv_message() == (OP_TEXT, data), size
    finally:
        ws.close()


def test_wss_chat_between_websockets_and_tornado(tb, certs):
    ctx = client_context(certs)

    async def main():
        tornado_conn = await websocket_connect(
            HTTPRequest(tb.url("/chat/tlsroom"), ssl_options=ctx))
        try:
            async with websockets.connect(tb.url("/chat/tlsroom"), ssl=ctx) as ws:
                assert tb.url("/x").startswith("wss://")
                await ws.send("hello from websockets")
                assert await ws.recv() == "hello from websockets"
                assert await tornado_conn.read_message() == "hello from websockets"
                await tornado_conn.write_message("hello from tornado")
                assert await tornado_conn.read_message() == "hello from tornado"
                assert await ws.recv() == "hello from tornado"
                big = "x" * 40000 + "end"
                await ws.send(big)
                assert await ws.recv() == big
                assert await tornado_conn.read_message() == big
                await tornado_conn.write_message(b"\x00\xffbin", binary=True)
                assert await tornado_conn.read_message() == b"\x00\xffbin"
                assert await ws.recv() == b"\x00\xffbin"
        finally:
            tornado_conn.close()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_websockets_negotiates_deflate_over_wss(tb, certs):
    async def main():
        async with websockets.connect(tb.url("/echo"), ssl=client_context(certs)) as ws:
            assert ws.response_headers["Sec-WebSocket-Extensions"] == \
                "permessage-deflate; server_no_context_takeover"
            message = "compressed inside TLS " * 500
            await ws.send(message)
            assert await ws.recv() == message

    asyncio.run(asyncio.wait_for(main(), 10))


def test_wss_upgrade_refusals_are_http_answers_over_tls(tb, certs):
    ctx = client_context(certs)
    assert upgrade(tb.port, "/nowhere", tls=ctx).status == 404
    response = upgrade(tb.port, "/echo", headers={"Sec-WebSocket-Version": "8"}, tls=ctx)
    assert response.status == 426, response


# ---------------------------------------------------------------- wrong kind of port

def test_plain_http_to_tls_port_is_answered_400_quickly(tb, certs):
    started = time.monotonic()
    response = http_exchange(tb.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                             timeout=QUICK)
    assert time.monotonic() - started < QUICK
    assert response.status == 400, response
    assert response.closed, response
    assert PLAIN_HTTP_BODY in response.body, response
    # an upgrade request gets the same answer
    started = time.monotonic()
    response = http_exchange(tb.port, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             b"Sec-WebSocket-Version: 13\r\n\r\n", timeout=QUICK)
    assert time.monotonic() - started < QUICK
    assert response.status == 400 and PLAIN_HTTP_BODY in response.body, response
    # and the listener still speaks TLS
    assert http_request(tb.port, "/healthz", tls=client_context(certs)).status == 200


def test_start_of_a_plain_request_on_tls_port_is_answered_without_waiting(tb, certs):
    """Only "GET " arrives: the daemon need not wait for the rest of the head."""
    sock = socket.create_connection(("127.0.0.1", tb.port), timeout=QUICK)
    try:
        started = time.monotonic()
        sock.sendall(b"GET ")
        data, closed = read_until_close(sock, QUICK)
    finally:
        sock.close()
    assert time.monotonic() - started < QUICK
    assert closed and data.startswith(b"HTTP/1.1 400"), data


def test_garbage_to_tls_port_is_closed_quickly(tb, certs):
    sock = socket.create_connection(("127.0.0.1", tb.port), timeout=QUICK)
    try:
        started = time.monotonic()
        sock.sendall(b"\x00\x01\x02\x03 not tls at all \xff\xfe" * 4)
        data, closed = read_until_close(sock, QUICK)
    finally:
        sock.close()
    assert closed, "connection left open"
    assert time.monotonic() - started < QUICK
    assert not data.startswith(b"HTTP/"), data       # at most a TLS alert


def test_stalled_clients_do_not_block_the_tls_listener(tb, certs):
    idle = [socket.create_connection(("127.0.0.1", tb.port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", tb.port))
    half.sendall(client_hello()[:20])
    try:
        started = time.monotonic()
        for _ in range(5):
            assert http_request(tb.port, "/healthz", tls=client_context(certs)).status == 200
        ws = ws_connect(tb.port, "/echo", tls=client_context(certs))
        ws.send_text("still here")
        assert ws.recv_message() == (OP_TEXT, b"still here")
        ws.close()
        assert time.monotonic() - started < QUICK
    finally:
        for s in idle + [half]:
            s.close()


def test_tls_client_hello_to_plain_port_gets_400_quickly(plain, certs):
    sock = socket.create_connection(("127.0.0.1", plain.port), timeout=QUICK)
    try:
        started = time.monotonic()
        sock.sendall(client_hello())
        data, closed = read_until_close(sock, QUICK)
    finally:
        sock.close()
    assert time.monotonic() - started < QUICK
    assert closed, data
    assert data.startswith(b"HTTP/1.1 400"), data
    # a TLS client fails at once instead of hanging
    started = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(plain.port, client_context(certs), timeout=QUICK)
    assert time.monotonic() - started < QUICK
    assert http_request(plain.port, "/healthz").status == 200


@pytest.fixture(scope="module")
def tb_short(module_broker, certs):
    """A TLS broker with a handshake_timeout of 1 s (close_timeout stays 2)."""
    return module_broker(tls={"cert": certs.server, "key": certs.server_key},
                   websocket={"handshake_timeout": 1})


def test_handshake_timeout_closes_silent_and_idle_tls_connections(tb_short, certs):
    silent = socket.create_connection(("127.0.0.1", tb_short.port), timeout=4)
    quiet_tls = tls_connect(tb_short.port, client_context(certs), timeout=4)
    try:
        started = time.monotonic()
        data, closed = read_until_close(silent, 4)       # not a byte sent
        assert closed and data == b"", data
        data, closed = read_until_close(quiet_tls, 4)    # TLS done, no request
        assert closed and data.startswith(b"HTTP/1.1 408"), data
        assert time.monotonic() - started < 2.0
    finally:
        silent.close()
        quiet_tls.close()


def test_handshake_timeout_drops_an_unfinished_tls_handshake(tb_short, certs):
    """Part of a ClientHello, then nothing: at handshake_timeout there is
    nobody to answer 408 to, so the connection is closed then."""
    half = socket.create_connection(("127.0.0.1", tb_short.port), timeout=6)
    try:
        half.sendall(client_hello()[:30])
        started = time.monotonic()
        data, closed = read_until_close(half, 6)
        elapsed = time.monotonic() - started
    finally:
        half.close()
    assert closed and not data.startswith(b"HTTP/"), data
    assert elapsed < 2.0, "closed %.1f s after the ClientHello began, handshake_timeout is 1 s" \
        % elapsed


def test_handshake_timeout_counts_from_accept_not_from_the_first_byte(tb_short, certs):
    """A client that waits before its first byte gets no extra time: the
    TLS listener's look at the first bytes is part of handshake_timeout."""
    late = socket.create_connection(("127.0.0.1", tb_short.port), timeout=6)
    try:
        started = time.monotonic()
        time.sleep(0.7)
        late.sendall(client_hello()[:30])
        data, closed = read_until_close(late, 6)
        elapsed = time.monotonic() - started
    finally:
        late.close()
    assert closed and not data.startswith(b"HTTP/"), data
    assert elapsed < 1.6, "closed %.1f s after accept, handshake_timeout is 1 s" % elapsed


def closed_sockets(socks, timeout):
    """The sockets of socks closed without a byte within timeout (after the
    first one closes, the others get only a short grace)."""
    closed = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [s for s in socks if s not in closed]
        readable, _, _ = select.select(waiting, [], [], max(0, deadline - time.monotonic()))
        for sock in readable:
            data, eof = read_until_close(sock, 1)
            assert eof and data == b"", data
            closed.append(sock)
        if closed:
            deadline = min(deadline, time.monotonic() + 0.3)
    return closed


def test_per_ip_limit_closes_extra_silent_tls_connections(module_broker, certs):
    """Connections still being looked at hold their address's places, and
    one over the limit is closed at once (no 503 is possible before TLS)."""
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key},
                limits={"max_connections_per_ip": 3})
    silent = []
    try:
        for _ in range(3):
            sock = socket.socket()
            sock.bind(("127.0.0.9", 0))
            sock.connect(("127.0.0.1", b.port))
            silent.append(sock)
        extra = socket.socket()
        extra.bind(("127.0.0.9", 0))
        extra.connect(("127.0.0.1", b.port))
        silent.append(extra)
        # Workers accept in parallel, in no set order: whichever of the four
        # is looked at last is the one over the limit.
        closed = closed_sockets(silent, QUICK)
        assert len(closed) == 1, closed
        assert closed_sockets([s for s in silent if s not in closed], 0.3) == []
        # Another address is served meanwhile, over TLS.
        ws = ws_connect(b.port, "/echo", tls=client_context(certs))
        ws.send_text("hello")
        assert ws.recv_message()[1] == b"hello"
        ws.close()
    finally:
        for sock in silent:
            sock.close()


def test_sigterm_closes_wss_connections_1001_and_exits_0(module_broker, certs):
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key})
    clients = [ws_connect(b.port, path, tls=client_context(certs))
               for path in ("/echo", "/chat/bye", "/chat/bye")]
    b.signal(signal.SIGTERM)
    for ws in clients:
        code, _ = ws.expect_close(timeout=5)
        assert code == 1001
        ws.send_close(1001)
    assert b.wait_exit(timeout=5) == 0
    for ws in clients:
        ws.close()


def test_sigterm_closes_a_tls_connection_that_has_sent_nothing_yet(module_broker, certs):
    """The broker waits for the first bytes of a TLS connection before it
    becomes a connection; shutdown closes such a socket at once instead of
    leaving it (and what it holds) to the process exit."""
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key},
                shutdown_timeout=3, websocket={"close_timeout": 10})
    busy = ws_connect(b.port, "/echo", tls=client_context(certs))   # never answers the close
    silent = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        time.sleep(0.2)                       # accepted, waiting for its first bytes
        b.signal(signal.SIGTERM)
        data, closed = read_until_close(silent, 2)
        assert closed and data == b"", data
        assert b.proc.poll() is None, "closed only because the broker exited"
        assert b.wait_exit(timeout=6) == 0
    finally:
        silent.close()
        busy.close()


# ---------------------------------------------------------------- client certificates

def test_verify_client_requires_a_certificate_from_the_ca(module_broker, certs):
    b = module_broker(tls={"cert": certs.server, "key": certs.server_key, "verify_client": True,
                     "ca_file": certs.ca})
    good = client_context(certs, cert=certs.client, key=certs.client_key)
    response = http_request(b.port, "/healthz", tls=good)
    assert response.status == 200 and response.body == b"ok\n", response
    ws = ws_connect(b.port, "/echo", tls=good)
    ws.send_text("with a client certificate")
    assert ws.recv_message() == (OP_TEXT, b"with a client certificate")
    ws.close()
    for maximum in (None, ssl.TLSVersion.TLSv1_2):
        expect_refused(b.port, client_context(certs, maximum=maximum))
        expect_refused(b.port, client_context(certs, maximum=maximum, cert=certs.stranger,
                                              key=certs.stranger_key))
    assert http_request(b.port, "/healthz", tls=good).status == 200


def test_without_verify_client_no_certificate_is_needed(tb, certs):
    response = http_request(tb.port, "/healthz", tls=client_context(certs))
    assert response.status == 200, response


# ---------------------------------------------------------------- reload

def wait_reloaded(b, count):
    """Waits for the count-th "configuration reloaded" line."""
    deadline = time.monotonic() + 5
    while sum("configuration reloaded" in line for line in b.log_lines()) < count:
        assert time.monotonic() < deadline, b.log()[-3000:]
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_and_keeps_connections(module_broker, certs, tmp_path):
    tls = certs.copy_identity(tmp_path, certs.server, certs.server_key)
    b = module_broker(tls=tls)
    ctx = client_context(certs)
    first, second = Certs.leaf_der(certs.server), Certs.leaf_der(certs.server2)
    assert first != second
    echo = ws_connect(b.port, "/echo", tls=ctx)
    member = ws_connect(b.port, "/chat/reload", tls=ctx)
    assert echo.sock.getpeercert(binary_form=True) == first
    assert peer_der(b.port, certs) == first

    certs.copy_identity(tmp_path, certs.server2, certs.server2_key)
    b.signal(signal.SIGHUP)
    wait_reloaded(b, 1)

    assert peer_der(b.port, certs) == second
    # the old connections are still up and still on the old certificate
    assert echo.sock.getpeercert(binary_form=True) == first
    echo.send_text("after reload")
    assert echo.recv_message() == (OP_TEXT, b"after reload")
    newcomer = ws_connect(b.port, "/chat/reload", tls=ctx)
    assert newcomer.sock.getpeercert(binary_form=True) == second
    newcomer.send_text("new cert says hi")
    assert member.recv_message() == (OP_TEXT, b"new cert says hi")
    member.send_text("old cert answers")
    assert newcomer.recv_message() == (OP_TEXT, b"new cert says hi")
    assert newcomer.recv_message() == (OP_TEXT, b"old cert answers")
    for ws in (echo, member, newcomer):
        ws.close()


@pytest.mark.parametrize("breakage", ["garbage cert", "mismatched key", "missing cert"])
def test_bad_certificate_on_reload_keeps_the_old_one(module_broker, certs, tmp_path, breakage):
    tls = certs.copy_identity(tmp_path, certs.server, certs.server_key)
    b = module_broker(tls=tls)
    first = Certs.leaf_der(certs.server)
    ctx = client_context(certs)
    live = ws_connect(b.port, "/echo", tls=ctx)

    if breakage == "garbage cert":
        shutil.copyfile(certs.garbage, tls["cert"])
    elif breakage == "mismatched key":
        shutil.copyfile(certs.server2, tls["cert"])      # key.pem stays the first key
    else:
        os.unlink(tls["cert"])
    b.signal(signal.SIGHUP)
    line = b.wait_log(lambda l: " error " in l and "reload" in l)
    # wsbroker.conf(5): a bad certificate fails the reload like any other
    # error ("keeping the old configuration"); a certificate that breaks only
    # after the check is logged with "keeping the old certificate".
    assert re.search(r"keeping the old (configuration|certificate)", line), line
    assert "listen[0]" in line, line
    if breakage != "mismatched key":
        assert tls["cert"] in line, line
    else:
        assert "do not match" in line, line

    assert peer_der(b.port, certs) == first
    live.send_text("still fine")
    assert live.recv_message() == (OP_TEXT, b"still fine")
    fresh = ws_connect(b.port, "/echo", tls=ctx)
    fresh.send_text("new connection")
    assert fresh.recv_message() == (OP_TEXT, b"new connection")

    # once the files are right again the next reload picks them up
    certs.copy_identity(tmp_path, certs.server2, certs.server2_key)
    b.signal(signal.SIGHUP)
    wait_reloaded(b, 1)
    assert peer_der(b.port, certs) == Certs.leaf_der(certs.server2)
    for ws in (live, fresh):
        ws.close()


# ---------------------------------------------------------------- startup errors

def tls_error_cases(certs, tmp_path):
    directory = tmp_path / "a-directory.pem"
    directory.mkdir(exist_ok=True)
    missing = str(tmp_path / "missing.pem")
    return {
        "mismatched key": ({"cert": certs.server, "key": certs.server2_key},
                           "'listen[0].tls': certificate and key do not match", None),
        "missing cert": ({"cert": missing, "key": certs.server_key},
                         "'listen[0].tls.cert'", missing),
        "missing key": ({"cert": certs.server, "key": missing},
                        "'listen[0].tls.key'", missing),
        "cert is a directory": ({"cert": str(directory), "key": certs.server_key},
                                "'listen[0].tls.cert'", str(directory)),
        "garbage cert": ({"cert": certs.garbage, "key": certs.server_key},
                         "'listen[0].tls", certs.garbage),
        "garbage key": ({"cert": certs.server, "key": certs.garbage},
                        "'listen[0].tls", certs.garbage),
    }


@pytest.mark.parametrize("case", ["mismatched key", "missing cert", "missing key",
                                  "cert is a directory", "garbage cert", "garbage key"])
def test_bad_tls_files_fail_check_and_startup(config_file, certs, tmp_path, case):
    tls, message, named = tls_error_cases(certs, tmp_path)[case]
    path = config_file(tls=tls)
    with open(path) as f:
        text = f.read()
    prefix = "%s:%d:" % (path, line_of(text, "tls = "))
    for args in (("-t", "-c", path), ("-f", "-c", path)):
        try:
            result = run_wsbroker(*args, timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError("wsbroker %s started despite %s" % (" ".join(args), case))
        assert result.returncode == 1, (args, result.stderr)
        assert prefix in result.stderr, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        if named is not None:
            assert named in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("tls_extra,marker", [
    ({"min_version": "TLSv1.1"}, "min_version"),
    ({"min_version": "tls1.2"}, "min_version"),
    ({"ciphers": "NO-SUCH-CIPHER"}, "ciphers"),
    ({"ciphersuites": "TLS_NO_SUCH_SUITE"}, "ciphersuites"),
    ({"ciphersuites": "", "min_version": "TLSv1.3"}, "ciphersuites"),
    ({"verify_client": True}, "verify_client"),
    ({"ca_file": "CA"}, "ca_file"),
], ids=["tls11", "bad-name", "ciphers", "ciphersuites", "tls13-without-suites",
        "verify-without-ca", "ca-without-verify"])
def test_bad_tls_options_are_config_errors(config_file, certs, tls_extra, marker):
    tls = {"cert": certs.server, "key": certs.server_key}
    tls.update({k: (certs.ca if v == "CA" else v) for k, v in tls_extra.items()})
    path = config_file(tls=tls)
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode == 1, result.stderr
    with open(path) as f:
        text = f.read()
    assert "%s:%d:" % (path, line_of(text, "tls = ")) in result.stderr, result.stderr
    assert marker in result.stderr, result.stderr


def test_valid_tls_config_checks_ok(config_file, certs):
    path = config_file(tls={"cert": certs.server, "key": certs.server_key,
                            "min_version": "TLSv1.3", "verify_client": True,
                            "ca_file": certs.ca})
    result = run_wsbroker("-t", "-c", path)
    assert result.returncode == 0, result.stderr
