"""wsbroker behind a real nginx (Debian's /usr/sbin/nginx), configured from
the shipped conf/nginx-wsbroker.conf.

The shipped site file is used as it is, with only its addresses replaced:
its listen lines become free loopback ports, its certificate paths a
self-signed certificate made here, and its upstream either wsbroker's TCP
listener or its Unix socket listener. Each of the two runs in its own nginx
(its own prefix, config and temporary files in a temp dir, started in the
foreground as a child process). Through them the tests check the chat page,
a broadcast chat between two python3-websockets clients, the JSON pub/sub
protocol and the HTTP API, the origin policy (with the Host header nginx
passes), the client address wsbroker believes and logs, /metrics, and wss://
through nginx's TLS server.

nginx appends its own peer address to X-Forwarded-For. The test clients
connect from 127.0.0.1, which is trusted (proxy.trusted's default) just like
nginx itself, so a client-sent "X-Forwarded-For: 203.0.113.5" arrives as
"203.0.113.5, 127.0.0.1" and 203.0.113.5 is the right-most untrusted hop:
wsbroker believes it. A real client, not on a trusted address, would be
the right-most untrusted hop itself.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time

import pytest
import websockets

from conftest import BrokerFactory, free_port, port_accepts, source_dir
from step2util import API_TOKEN, STEP2_ROUTES, api, compact, wait_until
from wsclient import OP_TEXT, WSClient, http_request, read_until_close, ws_connect

NGINX = "/usr/sbin/nginx"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
NGINX_FAILURE_MARKERS = ("[emerg]", "[alert]", "[crit]")

CHANNEL_RULES = [
    {"match": "room:*", "history": 20, "presence": True, "publish": "members"},
    {"match": "news", "history": 1, "publish": "api_only"},
]


def shipped_site_path():
    return os.path.join(source_dir(), "conf", "nginx-wsbroker.conf")


def read_shipped_site():
    path = shipped_site_path()
    if not os.path.isfile(path):
        pytest.fail("shipped nginx site not found: %s" % path)
    with open(path) as f:
        return f.read()


def require_nginx():
    if not os.access(NGINX, os.X_OK):
        pytest.fail("%s not found: these tests need Debian's nginx package "
                    "(scripts/install-deps --tests installs it)" % NGINX)


# ---------------------------------------------------------------- the site file

def substitute(text, pattern, replacement, what):
    """Replaces the one line of the shipped site matching pattern; fails
    when the shipped file no longer has exactly one."""
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        pytest.fail("conf/nginx-wsbroker.conf: expected exactly one %s (/%s/), found %d" %
                    (what, pattern, count))
    return new


def site_for_test(text, http_port, https_port, cert, key, upstream):
    """The shipped site with its addresses replaced. upstream is what
    follows "server" in the upstream block ("127.0.0.1:PORT" or
    "unix:/path")."""
    # The Unix socket alternative is documented, commented out.
    substitute(text, r"^\s*#\s*server unix:/run/wsbroker/wsbroker\.sock;\s*$",
               "", "commented-out Unix socket upstream")
    text = substitute(text, r"^(\s*)server 127\.0\.0\.1:8080;", r"\g<1>server %s;" % upstream,
                      "upstream server line")
    text = substitute(text, r"^(\s*)listen 80;", r"\g<1>listen 127.0.0.1:%d;" % http_port,
                      "plain HTTP listen line")
    text = substitute(text, r"^\s*listen \[::\]:80;\n", "", "IPv6 plain HTTP listen line")
    text = substitute(text, r"^(\s*)listen 443 ssl;",
                      r"\g<1>listen 127.0.0.1:%d ssl;" % https_port, "TLS listen line")
    text = substitute(text, r"^\s*listen \[::\]:443 ssl;\n", "", "IPv6 TLS listen line")
    text = substitute(text, r"^(\s*)ssl_certificate [^;]*;", r"\g<1>ssl_certificate %s;" % cert,
                      "ssl_certificate line")
    text = substitute(text, r"^(\s*)ssl_certificate_key [^;]*;",
                      r"\g<1>ssl_certificate_key %s;" % key, "ssl_certificate_key line")
    return text


def strip_comments(text):
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def blocks(text, opener):
    """The bodies of every `opener { ... }` block (comments removed)."""
    text = strip_comments(text)
    found = []
    for match in re.finditer(re.escape(opener) + r"\s*\{", text):
        depth, i = 1, match.end()
        while depth:
            if i >= len(text):
                raise AssertionError("unbalanced braces after %r" % opener)
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.append(text[match.end():i - 1])
    return found


def directives(body):
    return [" ".join(d.split()) for d in body.split(";") if d.strip()]


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 and localhost."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert result.returncode == 0, "openssl req failed: %s" % result.stderr.decode()
    return cert, key


# ---------------------------------------------------------------- nginx

class Nginx:
    """One nginx in the foreground, single process, everything under its
    own prefix."""

    def __init__(self, prefix, site_text, http_port, https_port):
        self.prefix = prefix
        self.http_port = http_port
        self.https_port = https_port
        self.proc = None
        self.log_path = os.path.join(prefix, "nginx.stderr")
        os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
        self.site_path = os.path.join(prefix, "site.conf")
        with open(self.site_path, "w") as f:
            f.write(site_text)
        self.conf_path = os.path.join(prefix, "nginx.conf")
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = os.path.join(prefix, "tmp")
        with open(self.conf_path, "w") as f:
            f.write(
                "%(user)s"
                "pid %(prefix)s/nginx.pid;\n"
                "lock_file %(prefix)s/nginx.lock;\n"
                "events { worker_connections 256; }\n"
                "http {\n"
                "    access_log %(prefix)s/access.log;\n"
                "    client_body_temp_path %(temp)s/client_body;\n"
                "    proxy_temp_path %(temp)s/proxy;\n"
                "    fastcgi_temp_path %(temp)s/fastcgi;\n"
                "    uwsgi_temp_path %(temp)s/uwsgi;\n"
                "    scgi_temp_path %(temp)s/scgi;\n"
                "    include %(site)s;\n"
                "}\n" % {"user": user, "prefix": prefix, "temp": temp,
                         "site": self.site_path})

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self):
        self._stderr = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.prefix + "/", "-c", self.conf_path,
             "-g", "daemon off; master_process off; error_log stderr;"],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            cwd=self.prefix)
        deadline = time.monotonic() + START_TIMEOUT
        for port in (self.http_port, self.https_port):
            while not port_accepts("127.0.0.1", port):
                if self.proc.poll() is not None:
                    raise AssertionError("nginx exited with status %s at start:\n%s" %
                                         (self.proc.returncode, self.log()))
                if time.monotonic() > deadline:
                    raise AssertionError("nginx did not accept on port %d within %.0f s:\n%s"
                                         % (port, START_TIMEOUT, self.log()))
                time.sleep(0.02)
        return self

    def stop(self):
        """Stops this nginx (by its PID) and checks it went cleanly."""
        try:
            if self.proc is None:
                return
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("nginx did not exit within %.0f s" % STOP_TIMEOUT)
            log = self.log()
            assert status == 0, "nginx exited with status %s:\n%s" % (status, log)
            bad = [line for line in log.splitlines()
                   if any(marker in line for marker in NGINX_FAILURE_MARKERS)]
            assert not bad, "nginx reported errors:\n%s" % "\n".join(bad)
        finally:
            if getattr(self, "_stderr", None) is not None:
                self._stderr.close()


class Setup:
    """wsbroker (TCP and Unix socket listeners) behind two nginx instances:
    one proxying to the TCP listener, one to the Unix socket."""

    def __init__(self, broker, nginx, socket_path):
        self.broker = broker
        self.nginx = nginx          # {"tcp": Nginx, "unix": Nginx}
        self.socket_path = socket_path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_nginx()
    shipped = read_shipped_site()
    base = str(tmp_path_factory.mktemp("nginx"))
    # Unix socket paths are short (108 bytes): keep this one in a short
    # directory of its own.
    sockdir = tempfile.mkdtemp(prefix="wsb-nginx-")
    socket_path = os.path.join(sockdir, "wsbroker.sock")
    factory = BrokerFactory(os.path.join(base, "brokers"))
    instances = []
    try:
        broker = factory(start=False)
        broker.write_config({
            "listen": [{"address": "127.0.0.1", "port": broker.port},
                       {"path": socket_path, "mode": "0660"}],
            "routes": STEP2_ROUTES,
            "channels": CHANNEL_RULES,
            "http": {"static_root": os.path.join(source_dir(), "www"),
                     "api_token": API_TOKEN},
        })
        broker.start()
        wait_until(lambda: os.path.exists(socket_path), what="Unix socket " + socket_path)
        cert, key = make_certificate(base)
        nginx = {}
        for via, upstream in (("tcp", "127.0.0.1:%d" % broker.port),
                              ("unix", "unix:" + socket_path)):
            http_port, https_port = free_port(), free_port()
            while https_port == http_port:
                https_port = free_port()
            prefix = os.path.join(base, "nginx-" + via)
            os.makedirs(prefix)
            site = site_for_test(shipped, http_port, https_port, cert, key, upstream)
            nginx[via] = Nginx(prefix, site, http_port, https_port)
            instances.append(nginx[via])
            nginx[via].start()
        yield Setup(broker, nginx, socket_path)
    finally:
        errors = []
        for instance in instances:
            try:
                instance.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        try:
            factory.finish()
        except BaseException as exc:  # pytest.fail raises outside Exception
            errors.append(str(exc))
        shutil.rmtree(sockdir, ignore_errors=True)
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


VIA = ["tcp", "unix"]


def peer_pattern(via):
    """How wsbroker names nginx, the peer, in log lines."""
    return r"127\.0\.0\.1:\d+" if via == "tcp" else "unix"


_counter = [0]


def unique(prefix):
    _counter[0] += 1
    return "%s%d%d" % (prefix, os.getpid() % 1000, _counter[0])


def run(coroutine, timeout=20.0):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def get(port, path, headers=None):
    """A request through nginx, which keeps client connections alive unless
    asked not to."""
    all_headers = {"Connection": "close"}
    all_headers.update(headers or {})
    return http_request(port, path, headers=all_headers)


def upgrade(port, path, headers=None):
    """An upgrade request; returns the response head and closes at once
    (nginx keeps a refused client's connection open)."""
    with WSClient.open(port) as client:
        return client.handshake(port, path, headers=headers)


def client_tls_context(cert):
    context = ssl.create_default_context(cafile=cert)
    return context


# ---------------------------------------------------------------- the shipped file

def test_shipped_site_proxies_websockets_with_the_documented_settings():
    text = read_shipped_site()
    maps = blocks(text, "map $http_upgrade $connection_upgrade")
    assert len(maps) == 1, "one map for $connection_upgrade expected"
    assert directives(maps[0].replace("\n", ";")) == ["default upgrade", "'' close"], maps
    locations = blocks(text, "location /")
    assert len(locations) == 2, "expected the plain HTTP and the TLS location /"
    plain, tls = (directives(body) for body in locations)
    # The TLS server proxies exactly like the plain one.
    assert plain == tls
    for required in ("proxy_pass http://wsbroker",
                     "proxy_http_version 1.1",
                     "proxy_set_header Upgrade $http_upgrade",
                     "proxy_set_header Connection $connection_upgrade",
                     "proxy_set_header Host $http_host",
                     "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
                     "proxy_set_header X-Real-IP $remote_addr",
                     "proxy_set_header X-Forwarded-Proto $scheme",
                     "proxy_buffering off"):
        assert required in plain, "%r missing from location /" % required
    timeout = [d for d in plain if d.startswith("proxy_read_timeout ")]
    assert len(timeout) == 1, plain
    seconds = int(re.fullmatch(r"proxy_read_timeout (\d+)s", timeout[0]).group(1))
    # Above wsbroker's default ping_interval (25 s) with room for delays.
    assert seconds >= 2 * 25, timeout
    servers = blocks(text, "server")
    assert any("listen 443 ssl" in s and "ssl_certificate " in s for s in servers)


def test_shipped_site_passes_nginx_t(tmp_path):
    require_nginx()
    prefix = str(tmp_path)
    cert, key = make_certificate(prefix)
    site = site_for_test(read_shipped_site(), free_port(), free_port(), cert, key,
                         "127.0.0.1:9")
    nginx = Nginx(prefix, site, 0, 0)
    result = subprocess.run([NGINX, "-t", "-p", prefix + "/", "-c", nginx.conf_path,
                             "-g", "error_log stderr;"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=30, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


# ---------------------------------------------------------------- through nginx

@pytest.mark.parametrize("via", VIA)
def test_chat_page_api_and_healthz_through_nginx(setup, via):
    port = setup.nginx[via].http_port
    page = get(port, "/")
    assert page.status == 200, page
    assert page.header("Content-Type").startswith("text/html"), page
    with open(os.path.join(source_dir(), "www", "index.html"), "rb") as f:
        assert page.body == f.read()
    script = get(port, "/chat.js")
    assert script.status == 200 and b"WebSocket" in script.body, script
    health = get(port, "/healthz")
    assert health.status == 200 and health.body.strip() == b"ok", health
    channels = get(port, "/api/channels",
                            headers={"Authorization": "Bearer " + API_TOKEN})
    assert channels.status == 200, channels
    assert "channels" in json.loads(channels.body.decode())
    refused = get(port, "/api/channels")
    assert refused.status == 401, refused


@pytest.mark.parametrize("via", VIA)
def test_two_websockets_clients_chat_in_a_room_through_nginx(setup, via):
    port = setup.nginx[via].http_port
    room = unique("room")
    url = "ws://127.0.0.1:%d/chat/%s" % (port, room)
    origin = "http://127.0.0.1:%d" % port

    async def chat():
        async with websockets.connect(url + "?user=alice", origin=origin) as alice, \
                websockets.connect(url + "?user=bob", origin=origin) as bob:
            hello = json.dumps({"user": "alice", "message": "hello bob"})
            await alice.send(hello)
            assert await asyncio.wait_for(bob.recv(), 5) == hello
            assert await asyncio.wait_for(alice.recv(), 5) == hello   # echo_self
            answer = json.dumps({"user": "bob", "message": "hi alice \u00e9"})
            await bob.send(answer)
            assert await asyncio.wait_for(alice.recv(), 5) == answer
            assert await asyncio.wait_for(bob.recv(), 5) == answer
            # Binary frames pass through nginx unchanged as well.
            await bob.send(b"\x00\x01\xfe\xff")
            assert await asyncio.wait_for(alice.recv(), 5) == b"\x00\x01\xfe\xff"

    run(chat())


@pytest.mark.parametrize("via", VIA)
def test_pubsub_presence_history_and_api_through_nginx(setup, via):
    port = setup.nginx[via].http_port
    channel = "room:" + unique("ps")
    base = "ws://127.0.0.1:%d/ws" % port

    async def scenario():
        async with websockets.connect(base + "?user=carol") as carol:
            await carol.send(json.dumps({"op": "subscribe", "channel": channel, "id": 1,
                                         "since": 0}))
            got = [await recv_json(carol), await recv_json(carol)]
            assert {m["op"] for m in got} == {"ok", "join"}, got
            await carol.send(json.dumps({"op": "publish", "channel": channel, "id": 2,
                                         "data": {"message": "first"}}))
            got = [await recv_json(carol), await recv_json(carol)]
            message = [m for m in got if m["op"] == "message"]
            assert message and message[0]["data"] == {"message": "first"}, got
            assert message[0]["from"] == "carol"
            async with websockets.connect(base + "?user=dave") as dave:
                await dave.send(json.dumps({"op": "subscribe", "channel": channel, "id": 1,
                                            "since": 0}))
                seen = [await recv_json(dave) for _ in range(3)]
                ops = sorted(m["op"] for m in seen)
                assert ops == ["join", "message", "ok"], seen
                replay = [m for m in seen if m["op"] == "message"][0]
                assert replay["data"] == {"message": "first"} and replay["from"] == "carol"
                assert await recv_json(carol) == {"op": "join", "channel": channel,
                                                  "user": "dave"}
                await dave.send(json.dumps({"op": "presence", "channel": channel, "id": 3}))
                presence = await recv_json(dave)
                assert sorted(presence.get("users", [])) == ["carol", "dave"], presence
                # A backend publishes through nginx with the HTTP API.
                response = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: api(port, "POST", "/api/publish/" + channel,
                                      body=compact({"price": 7}).encode(),
                                      content_type="application/json",
                                      headers={"Connection": "close"}))
                assert response.status == 202, response
                for ws in (carol, dave):
                    event = await recv_json(ws)
                    assert event["op"] == "message" and event["data"] == {"price": 7}, event

    run(scenario())


@pytest.mark.parametrize("via", VIA)
def test_origin_policy_sees_the_host_nginx_passes(setup, via):
    port = setup.nginx[via].http_port
    path = "/chat/" + unique("origin")
    # The page's own host and port, as the browser sends Host: accepted.
    same = upgrade(port, path, headers={"Origin": "http://127.0.0.1:%d" % port})
    assert same.status == 101, same
    other_name = upgrade(port, path, headers={"Host": "localhost:%d" % port,
                                              "Origin": "http://localhost:%d" % port})
    assert other_name.status == 101, other_name
    # Another host, or another port (wsbroker's own, behind nginx): 403.
    for origin in ("http://evil.example", "http://127.0.0.1:%d" % setup.broker.port,
                   "http://127.0.0.1"):
        refused = upgrade(port, path, headers={"Origin": origin})
        assert refused.status == 403, (origin, refused)

    async def websockets_client():
        url = "ws://127.0.0.1:%d%s" % (port, path)
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(url, origin="https://chat.evil.example"):
                pass
        assert info.value.status_code == 403
        async with websockets.connect(url, origin="http://127.0.0.1:%d" % port) as ws:
            await ws.send("origin ok")
            assert await asyncio.wait_for(ws.recv(), 5) == "origin ok"

    run(websockets_client())


@pytest.mark.parametrize("via", VIA)
def test_client_address_is_the_forwarded_one(setup, via):
    port = setup.nginx[via].http_port
    peer = peer_pattern(via)

    # No forged header: nginx forwards the client, 127.0.0.1.
    user = unique("plain")
    ws = ws_connect(port, "/chat/%s?user=%s" % (unique("addr"), user))
    try:
        line = setup.broker.wait_log("user=" + user)
    finally:
        ws.close()
    assert re.search(r"\bopen 127\.0\.0\.1 via %s /chat/\S+ user=%s$" % (peer, user), line), \
        line

    # A client-sent X-Forwarded-For: nginx appends 127.0.0.1, which is
    # trusted, so the right-most untrusted hop is the forged address.
    user = unique("forged")
    ws = ws_connect(port, "/chat/%s?user=%s" % (unique("addr"), user),
                    headers={"X-Forwarded-For": "203.0.113.5"})
    try:
        line = setup.broker.wait_log("user=" + user)
    finally:
        ws.close()
    assert re.search(r"\bopen 203\.0\.113\.5 via %s /chat/\S+ user=%s$" % (peer, user),
                     line), line

    # Behind a proxy that is not trusted (an outside address in the chain
    # after it), the right-most untrusted hop wins, not the left-most.
    user = unique("chain")
    ws = ws_connect(port, "/chat/%s?user=%s" % (unique("addr"), user),
                    headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.7"})
    try:
        line = setup.broker.wait_log("user=" + user)
    finally:
        ws.close()
    assert re.search(r"\bopen 198\.51\.100\.7 via %s /chat/" % peer, line), line

    # Refused requests are logged with the believed address too.
    room = unique("rej")
    response = upgrade(port, "/chat/" + room, headers={"Origin": "http://evil.example",
                                                      "X-Forwarded-For": "203.0.113.9"})
    assert response.status == 403, response
    line = setup.broker.wait_log("/chat/%s" % room)
    assert re.search(r"\breject 203\.0\.113\.9 via %s \"GET /chat/%s\" 403" % (peer, room),
                     line), line


@pytest.mark.parametrize("via", VIA)
def test_metrics_allow_checks_the_believed_address(setup, via):
    port = setup.nginx[via].http_port
    allowed = get(port, "/metrics")
    assert allowed.status == 200, allowed
    assert b"wsbroker_connections_total" in allowed.body
    # From 127.0.0.1, but naming a public address: that is who is believed.
    refused = get(port, "/metrics", headers={"X-Forwarded-For": "198.51.100.20"})
    assert refused.status == 403, refused
    # Naming a loopback address is believed as well, and allowed.
    loop = get(port, "/metrics", headers={"X-Forwarded-For": "127.0.0.5"})
    assert loop.status == 200, loop


# ---------------------------------------------------------------- wss:// through nginx

@pytest.mark.parametrize("via", VIA)
def test_wss_chat_page_and_origin_through_nginx_tls(setup, via, tmp_path):
    nginx = setup.nginx[via]
    port = nginx.https_port
    cert = os.path.join(os.path.dirname(nginx.prefix), "cert.pem")
    context = client_tls_context(cert)
    origin = "https://127.0.0.1:%d" % port

    # The page over https.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw_sock:
        with context.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                         % port).encode())
            data, _ = read_until_close(tls, timeout=5)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"<title>wsbroker chat</title>" in data

    room = unique("wss")
    channel = "room:" + room
    user = unique("tls")

    async def scenario():
        url = "wss://127.0.0.1:%d/ws" % port
        async with websockets.connect(url + "?user=" + user, ssl=context,
                                      origin=origin) as erin, \
                websockets.connect("wss://127.0.0.1:%d/chat/%s?user=frank" % (port, room),
                                   ssl=context, origin=origin) as frank:
            await erin.send(json.dumps({"op": "subscribe", "channel": channel, "id": 1}))
            got = [await recv_json(erin) for _ in range(2)]
            assert {m["op"] for m in got} == {"ok", "join"}, got
            # A broadcast (Tornado-style) client and the pubsub one share the room.
            await frank.send(json.dumps({"user": "frank", "message": "over wss"}))
            event = await recv_json(erin)
            assert event["op"] == "message" and event["from"] == "frank", event
            # A broadcast text frame reaches pubsub subscribers as a JSON string.
            assert json.loads(event["data"]) == {"user": "frank", "message": "over wss"}
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(url, ssl=context, origin="https://evil.example"):
                pass
        assert info.value.status_code == 403

    run(scenario())
    line = setup.broker.wait_log("user=" + user)
    assert re.search(r"\bopen 127\.0\.0\.1 via %s /ws user=%s$" % (peer_pattern(via), user),
                     line), line


# ---------------------------------------------------------------- without nginx

def bound_socket(source, port):
    """A TCP connection to 127.0.0.1:port from source (another loopback
    address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_forged_headers_from_an_untrusted_peer_are_ignored(broker):
    b = broker(routes=STEP2_ROUTES, proxy={"trusted": []})
    user = unique("direct")
    ws = ws_connect(b.port, "/chat/%s?user=%s" % (unique("d"), user),
                    headers={"X-Forwarded-For": "203.0.113.5", "X-Real-IP": "203.0.113.6"})
    try:
        line = b.wait_log("user=" + user)
    finally:
        ws.close()
    assert re.search(r"\bopen 127\.0\.0\.1:\d+ /chat/\S+ user=%s$" % user, line), line
    assert "203.0.113" not in b.log()
    # /metrics judges the real peer (loopback, allowed), not the header.
    response = http_request(b.port, "/metrics", headers={"X-Forwarded-For": "198.51.100.20"})
    assert response.status == 200, response


def test_forged_headers_from_a_loopback_address_outside_trusted_are_ignored(setup):
    """127.0.0.2 is loopback but not in proxy.trusted (127.0.0.1, ::1)."""
    port = setup.broker.port
    user = unique("other")
    try:
        sock = bound_socket("127.0.0.2", port)
    except OSError as exc:
        pytest.fail("cannot connect from 127.0.0.2: %s" % exc)
    client = WSClient(sock)
    try:
        response = client.handshake(port, "/chat/%s?user=%s" % (unique("o"), user),
                                    headers={"X-Forwarded-For": "203.0.113.5"})
        assert response.status == 101, response
        line = setup.broker.wait_log("user=" + user)
    finally:
        client.close()
    assert re.search(r"\bopen 127\.0\.0\.2:\d+ /chat/\S+ user=%s$" % user, line), line
    # metrics_allow is 127.0.0.0/8: the real peer is allowed, a forged
    # loopback address would not have been needed, and a forged public one
    # does not lock it out either.
    sock = bound_socket("127.0.0.2", port)
    try:
        sock.sendall(("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "X-Forwarded-For: 198.51.100.20\r\n\r\n" % port).encode())
        data, _ = read_until_close(sock, timeout=5)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def test_unix_socket_peers_are_trusted_for_x_real_ip_and_x_forwarded_for(setup):
    """What nginx does on the Unix socket, done by hand: X-Real-IP alone,
    and X-Forwarded-For, are both believed from a Unix socket peer."""
    mode = os.stat(setup.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660, oct(mode)

    def open_unix():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(setup.socket_path)
        return WSClient(sock)

    for header, value, expected in (("X-Real-IP", "192.0.2.44", r"192\.0\.2\.44"),
                                    ("X-Forwarded-For", "192.0.2.45, 127.0.0.1",
                                     r"192\.0\.2\.45")):
        user = unique("unix")
        client = open_unix()
        try:
            response = client.handshake(0, "/chat/%s?user=%s" % (unique("u"), user),
                                        headers={"Host": "wsbroker", header: value})
            assert response.status == 101, response
            client.send_text("via the socket")
            opcode, payload = client.recv_message()
            assert (opcode, payload) == (OP_TEXT, b"via the socket")
            line = setup.broker.wait_log("user=" + user)
        finally:
            client.close()
        assert re.search(r"\bopen %s via unix /chat/\S+ user=%s$" % (expected, user), line), \
            line
    # Without any header, a Unix socket peer is logged as "unix".
    user = unique("bare")
    client = open_unix()
    try:
        response = client.handshake(0, "/chat/%s?user=%s" % (unique("u"), user),
                                    headers={"Host": "wsbroker"})
        assert response.status == 101, response
        line = setup.broker.wait_log("user=" + user)
    finally:
        client.close()
    assert re.search(r"\bopen unix /chat/\S+ user=%s$" % user, line), line


def test_metrics_on_the_unix_socket(setup):
    """A local process on the socket without forwarding headers may read
    /metrics; with a forwarded public address it may not."""
    def get_metrics(extra):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(setup.socket_path)
        try:
            sock.sendall(("GET /metrics HTTP/1.1\r\nHost: wsbroker\r\n%s\r\n" % extra).encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        return data

    assert get_metrics("").startswith(b"HTTP/1.1 200 "), "local scrape refused"
    forged = get_metrics("X-Forwarded-For: 203.0.113.9\r\n")
    assert forged.startswith(b"HTTP/1.1 403 "), forged[:80]


@pytest.mark.parametrize("trusted,proto,status", [
    (None, None, 403),          # plain request: a port-less Host means port 80
    (None, "https", 101),       # a trusted proxy says the client used https
    ([], "https", 403),         # the same claim from an untrusted peer counts for nothing
])
def test_forwarded_proto_counts_for_the_origin_check(broker, trusted, proto, status):
    overrides = {"routes": STEP2_ROUTES}
    if trusted is not None:
        overrides["proxy"] = {"trusted": trusted}
    b = broker(**overrides)
    headers = {"Host": "chat.example", "Origin": "https://chat.example"}
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    response = upgrade(b.port, "/chat/proto", headers=headers)
    assert response.status == status, response
