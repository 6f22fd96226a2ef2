"""Helpers shared by the Step 2 suites: a JSON client for pubsub routes over
wsclient.WSClient, routes and channel rules, the HTTP API, and JSON Web
Tokens (HS256 in Python, RS256/ES256 signed with the openssl tool)."""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time
import urllib.parse

from wsclient import OP_TEXT, UnexpectedFrame, http_request, ws_connect

ANON_RE = re.compile(r"^anon-[0-9a-f]{8}$")

# Routes for Step 2 brokers: the Step 1 ones plus pubsub and presence-event routes.
STEP2_ROUTES = [
    {"path": "/echo", "mode": "echo"},
    {"path": "/chat/:room", "mode": "broadcast", "channel": "room:{room}"},
    {"path": "/quiet/:room", "mode": "broadcast", "channel": "room:{room}", "echo_self": False},
    {"path": "/pchat/:room", "mode": "broadcast", "channel": "room:{room}",
     "presence_events": True},
    {"path": "/raw/:name", "mode": "broadcast", "channel": "{name}"},
    {"path": "/ws", "mode": "pubsub"},
    {"path": "/wsq", "mode": "pubsub", "echo_self": False},
]

API_TOKEN = "api-token-0123456789"


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_ordered(text):
    """Parses JSON text; objects become lists of (key, value) pairs so that
    key order can be checked."""
    return json.loads(text, object_pairs_hook=lambda pairs: pairs)


def keys_of(text):
    return [k for k, _ in parse_ordered(text)]


def with_query(path, **params):
    params = {k: v for k, v in params.items() if v is not None}
    if not params:
        return path
    return path + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


# ---------------------------------------------------------------- JSON client

class JsonWS:
    """A pubsub connection: JSON requests out, JSON replies and events in."""

    def __init__(self, ws):
        self.ws = ws
        self.last_text = None

    def __getattr__(self, name):
        return getattr(self.ws, name)

    def send(self, obj):
        self.ws.send_text(compact(obj))

    def send_text(self, text):
        self.ws.send_text(text)

    def recv_text(self, timeout=5.0):
        opcode, payload = self.ws.recv_message(timeout)
        if opcode != OP_TEXT:
            raise UnexpectedFrame("expected a text frame, got opcode %#x: %r" % (opcode, payload))
        self.last_text = payload.decode("utf-8")
        return self.last_text

    def recv(self, timeout=5.0):
        text = self.recv_text(timeout)
        value = json.loads(text)
        assert isinstance(value, dict), "not a JSON object: %r" % text
        return value

    def recv_n(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        return [self.recv(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def request(self, obj, timeout=5.0):
        """Sends obj and returns the next JSON object received."""
        self.send(obj)
        return self.recv(timeout)

    def subscribe(self, channel, id=None, **extra):
        """Subscribes and checks the ok reply; returns it."""
        req = {"op": "subscribe", "channel": channel}
        if id is not None:
            req["id"] = id
        req.update(extra)
        reply = self.request(req)
        assert reply.get("op") == "ok", "subscribe %s refused: %r" % (channel, reply)
        assert reply.get("channel") == channel, reply
        return reply

    def publish(self, channel, data, id=None):
        req = {"op": "publish", "channel": channel, "data": data}
        if id is not None:
            req["id"] = id
        self.send(req)

    def expect_error(self, code, id=None, timeout=5.0):
        reply = self.recv(timeout)
        assert reply.get("op") == "error", reply
        assert reply.get("code") == code, reply
        assert isinstance(reply.get("message"), str) and reply["message"], reply
        if id is not None:
            assert reply.get("id") == id, reply
        return reply

    def silent(self, seconds=0.3):
        """Asserts that nothing arrives for `seconds`."""
        self.ws.assert_silent(seconds)

    def close(self):
        self.ws.close()


def pubsub(port, path="/ws", user=None, token=None, headers=None, query=None):
    params = dict(query or {})
    if user is not None:
        params["user"] = user
    if token is not None:
        params["token"] = token
    return JsonWS(ws_connect(port, with_query(path, **params), headers=headers))


def raw(port, path, user=None, token=None, headers=None, rcvbuf=None, **query):
    params = dict(query)
    if user is not None:
        params["user"] = user
    if token is not None:
        params["token"] = token
    return ws_connect(port, with_query(path, **params), headers=headers, rcvbuf=rcvbuf)


class Clients:
    """Closes every connection a test opened."""

    def __init__(self):
        self.opened = []

    def add(self, ws):
        self.opened.append(ws)
        return ws

    def pubsub(self, port, **kwargs):
        return self.add(pubsub(port, **kwargs))

    def raw(self, port, path, **kwargs):
        return self.add(raw(port, path, **kwargs))

    def close_all(self):
        for ws in self.opened:
            ws.close()


def message_event(text_or_obj):
    return text_or_obj if isinstance(text_or_obj, dict) else json.loads(text_or_obj)


def wait_until(predicate, timeout=5.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %.1f s" % (what, timeout))
        time.sleep(interval)


def join(channel, user):
    return {"op": "join", "channel": channel, "user": user}


def leave(channel, user):
    return {"op": "leave", "channel": channel, "user": user}


def subscribe_joining(ws, channel, user, id=1):
    """Subscribes a connection whose user is not yet a member: the reply is
    the ok and the user's own join, in either order."""
    ws.send({"op": "subscribe", "channel": channel, "id": id})
    got = ws.recv_n(2)
    ok = [m for m in got if m.get("op") == "ok"]
    assert len(ok) == 1 and ok[0]["channel"] == channel, got
    assert [m for m in got if m.get("op") != "ok"] == [join(channel, user)], got
    return ok[0]


# ---------------------------------------------------------------- HTTP API

class ApiResponse:
    def __init__(self, response):
        self.response = response
        self.status = response.status
        self.body = response.body
        self.header = response.header

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            raise AssertionError("response body is not JSON: %r" % (self.response,))

    def __repr__(self):
        return repr(self.response)


def api(port, method, path, token=API_TOKEN, body=b"", content_type=None, headers=None):
    all_headers = {}
    if token is not None:
        all_headers["Authorization"] = "Bearer " + token
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    if body or method in ("POST", "PUT"):
        all_headers["Content-Length"] = str(len(body))
    all_headers.update(headers or {})
    return ApiResponse(http_request(port, path, method=method, headers=all_headers,
                                    body=body))


def api_publish(port, channel_path, data=None, text=None, token=API_TOKEN):
    """POSTs JSON data (application/json) or text (text/plain)."""
    if text is not None:
        body = text.encode("utf-8") if isinstance(text, str) else text
        ctype = "text/plain"
    else:
        body = compact(data).encode("utf-8")
        ctype = "application/json"
    return api(port, "POST", "/api/publish/" + channel_path, token=token, body=body,
               content_type=ctype)


def assert_json_error(response, status):
    assert response.status == status, response
    ctype = response.header("Content-Type") or ""
    assert ctype.startswith("application/json"), response
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], \
        response


# ---------------------------------------------------------------- JWT

def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_signing_input(claims, header):
    return (b64url(compact(header)) + "." + b64url(compact(claims))).encode("ascii")


def jwt_hs256(claims, secret, header=None):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = jwt_signing_input(claims, header)
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    return signing_input.decode("ascii") + "." + b64url(sig)


def jwt_unsigned(claims):
    return jwt_signing_input(claims, {"alg": "none", "typ": "JWT"}).decode("ascii") + "."


def openssl(*args, data=None):
    result = subprocess.run(["openssl"] + list(args), input=data, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=30)
    assert result.returncode == 0, "openssl %s failed: %s" % (" ".join(args),
                                                              result.stderr.decode())
    return result.stdout


def make_key_pair(directory, kind, name=None):
    """Generates a private key ("rsa" or "ec" P-256) and its public key;
    returns (private_pem_path, public_pem_path)."""
    name = name or kind
    private = os.path.join(str(directory), name + "-private.pem")
    public = os.path.join(str(directory), name + "-public.pem")
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", private)
    elif kind == "ec":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", private)
    else:
        raise ValueError(kind)
    openssl("pkey", "-in", private, "-pubout", "-out", public)
    return private, public


def der_ecdsa_to_raw(der, size=32):
    """Converts a DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) to r||s."""
    def read_length(buf, pos):
        first = buf[pos]
        pos += 1
        if first < 0x80:
            return first, pos
        count = first & 0x7F
        return int.from_bytes(buf[pos:pos + count], "big"), pos + count

    assert der[0] == 0x30, "not a DER sequence"
    _, pos = read_length(der, 1)
    values = []
    for _ in range(2):
        assert der[pos] == 0x02, "not a DER integer"
        length, pos = read_length(der, pos + 1)
        values.append(int.from_bytes(der[pos:pos + length], "big"))
        pos += length
    return b"".join(v.to_bytes(size, "big") for v in values)


def jwt_openssl(claims, private_pem, alg, header=None):
    header = header or {"alg": alg, "typ": "JWT"}
    signing_input = jwt_signing_input(claims, header)
    sig = openssl("dgst", "-sha256", "-sign", private_pem, data=signing_input)
    if alg == "ES256":
        sig = der_ecdsa_to_raw(sig)
    return signing_input.decode("ascii") + "." + b64url(sig)


def now():
    return int(time.time())



# ---------------------------------------------------------------- config checks

def check_config(config_file, marker=None, **overrides):
    """Writes the fixture's default config with overrides, runs `wsbroker -t`
    on it and returns (result, path). With marker, expects a failure that
    names the file and the line holding marker."""
    from conftest import line_of, run_wsbroker
    path = config_file(**overrides)
    result = run_wsbroker("-t", "-c", path)
    if marker is not None:
        with open(path) as f:
            text = f.read()
        assert result.returncode != 0, "accepted: %s\n%s" % (overrides, text)
        prefix = "%s:%d:" % (path, line_of(text, marker))
        assert prefix in result.stderr, "expected %r in %r" % (prefix, result.stderr)
    else:
        assert result.returncode == 0, result.stderr
    return result, path
