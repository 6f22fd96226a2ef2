"""JWT authentication (HS256, RS256, ES256), token sources, the channels
claim, publish = "token", and user names without auth (Step 2)."""

import os
import re
import urllib.parse

import pytest

from step2util import (ANON_RE, STEP2_ROUTES, Clients, b64url, check_config, compact, jwt_hs256,
                       jwt_openssl, jwt_unsigned, make_key_pair, now, pubsub)
from wsclient import OP_TEXT, upgrade

SECRET = "hs256-test-secret-5b1f0c"

CHANNELS = [
    {"match": "open:*", "publish": "anyone"},
    {"match": "tok:*", "publish": "token"},
]


def auth_config(**extra):
    group = {"algorithm": "HS256", "secret": SECRET, "cookie": "wstoken", "required": True}
    group.update(extra)
    return group


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()


@pytest.fixture
def hs(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS, auth=auth_config())


def token(sub="alice", secret=SECRET, **claims):
    body = {"sub": sub, "exp": now() + 3600}
    body.update(claims)
    return jwt_hs256({k: v for k, v in body.items() if v is not None}, secret)


def who(ws, channel="open:who"):
    """The user a pubsub connection publishes as (the message's from)."""
    ws.subscribe(channel, id="who-sub")
    ws.publish(channel, "who", id="who")
    reply = ws.recv()
    assert reply["op"] == "ok" and reply["id"] == "who", reply
    event = ws.recv()
    assert event["op"] == "message" and event["data"] == "who", event
    assert ws.request({"op": "unsubscribe", "channel": channel, "id": "who-unsub"}) == \
        {"op": "ok", "id": "who-unsub"}
    return event["from"]


def q(value):
    return urllib.parse.quote(value, safe="")


# ---------------------------------------------------------------- token sources

def test_token_in_query(hs, clients):
    ws = clients.pubsub(hs.port, token=token("alice"))
    assert who(ws) == "alice"


def test_token_in_authorization_header(hs, clients):
    ws = clients.pubsub(hs.port, headers={"Authorization": "Bearer " + token("bearer-bob")})
    assert who(ws) == "bearer-bob"


def test_token_in_cookie(hs, clients):
    cookie = "theme=dark; wstoken=%s; other=1" % token("cookie-carol")
    ws = clients.pubsub(hs.port, headers={"Cookie": cookie})
    assert who(ws) == "cookie-carol"


def test_other_cookie_names_are_not_used(hs):
    response = upgrade(hs.port, "/ws", headers={"Cookie": "token=%s" % token("x")})
    assert response.status == 401, response


def test_query_token_wins_over_header_and_cookie(hs, clients):
    ws = clients.pubsub(hs.port, token=token("from-query"),
                        headers={"Authorization": "Bearer " + token("from-header"),
                                 "Cookie": "wstoken=" + token("from-cookie")})
    assert who(ws) == "from-query"


def test_header_wins_over_cookie(hs, clients):
    ws = clients.pubsub(hs.port, headers={"Authorization": "Bearer " + token("from-header"),
                                          "Cookie": "wstoken=" + token("from-cookie")})
    assert who(ws) == "from-header"


def test_invalid_query_token_is_not_rescued_by_a_header(hs):
    path = "/ws?token=" + q(token("x", secret="wrong"))
    response = upgrade(hs.port, path, headers={"Authorization": "Bearer " + token("y")})
    assert response.status == 401, response


def test_user_parameter_is_ignored_with_auth(hs, clients):
    ws = clients.pubsub(hs.port, token=token("alice"), user="mallory")
    assert who(ws) == "alice"


def test_token_on_broadcast_and_echo_routes(hs, clients):
    listener = clients.pubsub(hs.port, token=token("listener"))
    listener.subscribe("room:tk")
    member = clients.raw(hs.port, "/chat/tk", token=token("dora"))
    member.send_text("hi")
    assert member.recv_message() == (OP_TEXT, b"hi")
    assert listener.recv()["from"] == "dora"
    assert upgrade(hs.port, "/chat/tk").status == 401
    assert upgrade(hs.port, "/echo").status == 401
    echo = clients.raw(hs.port, "/echo", token=token("e"))
    echo.send_text("e")
    assert echo.recv_message() == (OP_TEXT, b"e")


# ---------------------------------------------------------------- rejections

def bad_tokens():
    t = now()
    good_header = {"alg": "HS256", "typ": "JWT"}
    return [
        ("no token", None),
        ("garbage", "not-a-jwt"),
        ("two parts", b64url('{"alg":"HS256"}') + "." + b64url('{"sub":"a"}')),
        ("expired", jwt_hs256({"sub": "a", "exp": t - 3600}, SECRET)),
        ("not yet valid", jwt_hs256({"sub": "a", "exp": t + 7200, "nbf": t + 3600}, SECRET)),
        ("wrong secret", jwt_hs256({"sub": "a", "exp": t + 3600}, "another-secret")),
        ("tampered payload", tamper(jwt_hs256({"sub": "a", "exp": t + 3600}, SECRET))),
        ("alg none", jwt_unsigned({"sub": "a", "exp": t + 3600})),
        ("alg none signed", jwt_hs256({"sub": "a", "exp": t + 3600}, SECRET,
                                      header={"alg": "none", "typ": "JWT"})),
        ("alg HS512 header", jwt_hs256({"sub": "a", "exp": t + 3600}, SECRET,
                                       header={"alg": "HS512", "typ": "JWT"})),
        ("missing sub", jwt_hs256({"exp": t + 3600}, SECRET)),
        ("empty sub", jwt_hs256({"sub": "", "exp": t + 3600}, SECRET)),
        ("numeric sub", jwt_hs256({"sub": 123, "exp": t + 3600}, SECRET)),
        ("sub with control character", jwt_hs256({"sub": "a\x01b", "exp": t + 3600}, SECRET)),
        ("sub too long", jwt_hs256({"sub": "a" * 65, "exp": t + 3600}, SECRET)),
        ("channels not an array", jwt_hs256({"sub": "a", "exp": t + 3600, "channels": "x"},
                                            SECRET)),
        ("header not json", b64url("nope") + "." + b64url('{"sub":"a"}') + "." + b64url("x")),
        ("empty payload", b64url(compact(good_header)) + ".." + b64url(b"\x00" * 32)),
    ]


def tamper(jwt):
    head, payload, sig = jwt.split(".")
    return head + "." + b64url('{"sub":"admin","exp":%d}' % (now() + 3600)) + "." + sig


BAD = bad_tokens()


@pytest.mark.parametrize("name,bad", BAD, ids=[c[0] for c in BAD])
def test_bad_token_is_401_before_upgrade(hs, name, bad):
    path = "/ws" if bad is None else "/ws?token=" + q(bad)
    response = upgrade(hs.port, path)
    assert response.status == 401, response
    assert response.closed


def test_bad_token_in_header_and_cookie_is_401(hs):
    bad = jwt_hs256({"sub": "a", "exp": now() - 10}, SECRET)
    assert upgrade(hs.port, "/ws", headers={"Authorization": "Bearer " + bad}).status == 401
    assert upgrade(hs.port, "/ws", headers={"Cookie": "wstoken=" + bad}).status == 401
    assert upgrade(hs.port, "/chat/x", headers={"Cookie": "wstoken=" + bad}).status == 401


def test_rejection_is_logged(hs):
    assert upgrade(hs.port, "/ws?token=garbage").status == 401
    hs.wait_log(re.compile(r"reject.*\b401\b"))


def test_oversized_tokens_are_401(broker):
    # Tokens are bounded at 8 KiB wherever they come from; a longer one is
    # refused before any verification, never truncated into a valid one. The
    # request head limit is raised so the token bound, not the head's, is hit.
    b = broker(routes=STEP2_ROUTES, channels=CHANNELS, auth=auth_config(),
               limits={"request_head_max": 32768})
    long_token = token("alice") + "." + "a" * 9000
    assert upgrade(b.port, "/ws?token=" + q(long_token)).status == 401
    headers = {"Authorization": "Bearer " + long_token}
    assert upgrade(b.port, "/ws", headers=headers).status == 401


def test_tokens_never_reach_the_log(hs, clients):
    # A refused token (expired) and an accepted one, both in the query.
    expired = jwt_hs256({"sub": "a", "exp": now() - 10}, SECRET)
    assert upgrade(hs.port, "/ws?token=" + q(expired)).status == 401
    hs.wait_log(re.compile(r"reject.*/ws\?\.\.\..*\b401\b"))
    good = token("carol")
    ws = clients.pubsub(hs.port, token=good)
    hs.wait_log("user=carol")
    ws.close()
    log = hs.log()
    for secret_part in (expired, good, expired.split(".")[2], good.split(".")[2]):
        assert secret_part not in log


def test_valid_nbf_and_no_exp_are_accepted(hs, clients):
    ws = clients.pubsub(hs.port, token=jwt_hs256({"sub": "nbf-ok", "nbf": now() - 60}, SECRET))
    assert who(ws) == "nbf-ok"


# ---------------------------------------------------------------- RS256 / ES256

@pytest.mark.parametrize("alg,kind", [("RS256", "rsa"), ("ES256", "ec")])
def test_public_key_algorithms(broker, tmp_path, clients, alg, kind):
    private, public = make_key_pair(tmp_path, kind)
    other_private, _ = make_key_pair(tmp_path, kind, name="other")
    b = broker(routes=STEP2_ROUTES, channels=CHANNELS,
               auth={"algorithm": alg, "public_key_file": public, "required": True})
    claims = {"sub": "pk-user", "exp": now() + 600}
    good = jwt_openssl(claims, private, alg)
    ws = clients.pubsub(b.port, token=good)
    assert who(ws) == "pk-user"
    ws = clients.pubsub(b.port, headers={"Authorization": "Bearer " + good})
    assert who(ws) == "pk-user"
    rejected = {
        "other key": jwt_openssl(claims, other_private, alg),
        "expired": jwt_openssl({"sub": "pk-user", "exp": now() - 600}, private, alg),
        "missing sub": jwt_openssl({"exp": now() + 600}, private, alg),
        "hs256 with the public key as secret": jwt_hs256(claims, open(public).read()),
        "hs256": jwt_hs256(claims, SECRET),
        "alg none": jwt_unsigned(claims),
        "tampered": tamper(good),
        "truncated signature": good[:-8],
    }
    for name, bad in rejected.items():
        response = upgrade(b.port, "/ws?token=" + q(bad))
        assert response.status == 401, "%s: %r" % (name, response)


def test_public_key_file_is_relative_to_the_config(broker, clients):
    b = broker(start=False)
    # The config lives in a subdirectory: not the daemon's working directory.
    confdir = os.path.join(b.workdir, "conf")
    os.makedirs(confdir)
    b.config_path = os.path.join(confdir, "wsbroker.conf")
    private, public = make_key_pair(confdir, "ec")
    b.write_config({"routes": STEP2_ROUTES, "channels": CHANNELS,
                    "auth": {"algorithm": "ES256", "public_key_file": "ec-public.pem"}})
    b.start()
    ws = clients.pubsub(b.port, token=jwt_openssl({"sub": "rel"}, private, "ES256"))
    assert who(ws) == "rel"


def test_secret_file(broker, tmp_path, clients):
    secret_path = tmp_path / "jwt.secret"
    secret_path.write_text("file-secret-value")
    b = broker(routes=STEP2_ROUTES, channels=CHANNELS,
               auth={"algorithm": "HS256", "secret_file": str(secret_path)})
    ws = clients.pubsub(b.port, token=jwt_hs256({"sub": "fs"}, "file-secret-value"))
    assert who(ws) == "fs"
    assert upgrade(b.port, "/ws?token=" + q(token("fs"))).status == 401


# ---------------------------------------------------------------- required = false

def test_optional_auth_allows_anonymous(broker, clients):
    b = broker(routes=STEP2_ROUTES, channels=CHANNELS, auth=auth_config(required=False))
    anon = clients.pubsub(b.port)
    assert ANON_RE.match(who(anon))
    named = clients.pubsub(b.port, user="guest")
    assert who(named) == "guest"
    signed = clients.pubsub(b.port, token=token("member"), user="guest")
    assert who(signed) == "member"
    # A token that is present must still be valid.
    assert upgrade(b.port, "/ws?token=" + q(token("x", secret="bad"))).status == 401
    assert upgrade(b.port, "/ws?token=" + q(token("x", exp=now() - 100))).status == 401
    # Anonymous connections have no token: publish = "token" refuses them.
    anon.publish("tok:a", "x", id=1)
    anon.expect_error("forbidden", id=1)


# ---------------------------------------------------------------- channels claim

def test_channels_claim_limits_pubsub(hs, clients):
    ws = clients.pubsub(hs.port, token=token("lim", channels=["open:ok*", "room:a", "tok:*"]))
    ws.subscribe("open:ok1")
    ws.subscribe("room:a")
    for op, extra in (("subscribe", {}), ("publish", {"data": 1})):
        for channel in ("open:no", "room:b", "secret", "room:ab"):
            request = {"op": op, "channel": channel, "id": 3}
            request.update(extra)
            ws.send(request)
            ws.expect_error("forbidden", id=3)
    # publish to an allowed "anyone" channel works
    ws.publish("open:okay", "yes", id=4)
    assert ws.recv() == {"op": "ok", "id": 4, "seq": 1}


def test_channels_claim_on_broadcast_route_is_403(hs, clients):
    t = token("lim", channels=["room:allowed", "room:pre*"])
    response = upgrade(hs.port, "/chat/denied?token=" + q(t))
    assert response.status == 403, response
    assert response.closed
    clients.raw(hs.port, "/chat/allowed", token=t)
    clients.raw(hs.port, "/chat/prefix", token=t)


def test_publish_token_rule(hs, clients):
    allowed = clients.pubsub(hs.port, token=token("writer", channels=["tok:*"]))
    reader = clients.pubsub(hs.port, token=token("reader", channels=["tok:news"]))
    other = clients.pubsub(hs.port, token=token("other", channels=["open:*"]))
    reader.subscribe("tok:news")
    # Not subscribed, but the token allows the channel.
    allowed.publish("tok:news", "signed news", id=1)
    assert allowed.recv() == {"op": "ok", "id": 1, "seq": 1}
    assert reader.recv() == {"op": "message", "channel": "tok:news", "seq": 1,
                             "data": "signed news", "from": "writer"}
    other.publish("tok:news", "nope", id=2)
    other.expect_error("forbidden", id=2)
    reader.silent(0.2)


def test_publish_token_rule_on_a_broadcast_route(broker, clients):
    b = broker(routes=STEP2_ROUTES, channels=CHANNELS, auth=auth_config(required=False))
    listener = clients.pubsub(b.port, user="listener")
    listener.subscribe("tok:b")
    signed = clients.raw(b.port, "/raw/tok:b", token=token("signer", channels=["tok:*"]))
    signed.send_text("signed")
    assert signed.recv_message() == (OP_TEXT, b"signed")
    assert listener.recv() == {"op": "message", "channel": "tok:b", "seq": 1,
                               "data": "signed", "from": "signer"}
    anonymous = clients.raw(b.port, "/raw/tok:b", user="anon")
    anonymous.send_text("unsigned")
    assert anonymous.assert_closed_with(1008) == "publish not allowed"
    listener.silent(0.2)
    signed.send_text("still fine")
    assert listener.recv()["data"] == "still fine"


# ---------------------------------------------------------------- without auth

@pytest.fixture
def noauth(broker):
    return broker(routes=STEP2_ROUTES, channels=CHANNELS)


@pytest.mark.parametrize("user", [
    "", "a" * 65, "tab%09here", "ctl%01", "del%7F", " lead", "trail ", "%FF%FE", "%C3",
    "nl%0Aname", "%00",
], ids=["empty", "65 bytes", "tab", "control", "DEL", "leading space", "trailing space",
        "invalid utf8", "truncated utf8", "newline", "nul"])
def test_invalid_user_parameter_is_400(noauth, user):
    encoded = user.replace(" ", "%20")
    for path in ("/ws", "/chat/u", "/echo"):
        response = upgrade(noauth.port, path + "?user=" + encoded)
        assert response.status == 400, "%s: %r" % (path, response)


@pytest.mark.parametrize("user,expected", [
    ("a" * 64, "a" * 64),
    ("inner%20space", "inner space"),
    ("caf%C3%A9", "caf\u00e9"),
    ("x", "x"),
    ("dots.and-dash_@:/", "dots.and-dash_@:/"),
])
def test_valid_user_parameter_names_the_connection(noauth, clients, user, expected):
    ws = clients.add(pubsub(noauth.port, path="/ws?user=" + user))
    assert who(ws) == expected


def test_without_user_a_generated_anon_name(noauth, clients):
    first = clients.pubsub(noauth.port)
    assert ANON_RE.match(who(first))
    listener = clients.pubsub(noauth.port, user="listener")
    listener.subscribe("room:an")
    member = clients.raw(noauth.port, "/chat/an")
    member.send_text("x")
    assert ANON_RE.match(listener.recv()["from"])


def test_publish_token_refuses_everyone_without_auth(noauth, clients):
    ws = clients.pubsub(noauth.port, user="u")
    ws.subscribe("tok:x")
    ws.publish("tok:x", 1, id=1)
    ws.expect_error("forbidden", id=1)


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("group", [
    {"algorithm": "HS512", "secret": "s"},
    {"algorithm": "none", "secret": "s"},
    {"algorithm": "HS256"},
    {"algorithm": "HS256", "secret": ""},
    {"algorithm": "RS256"},
    {"algorithm": "ES256", "public_key_file": "/nonexistent/key.pem"},
    {"algorithm": "HS256", "secret": "s", "required": "yes"},
    {"algorithm": "HS256", "secret": "s", "cookei": "x"},
], ids=["HS512", "none", "no secret", "empty secret", "RS256 without key", "missing key file",
        "required not bool", "unknown key"])
def test_invalid_auth_group_is_a_config_error(config_file, group):
    result, path = check_config(config_file, marker="auth = ", auth=group)
    assert result.stderr.startswith(path + ":")


def test_public_key_of_the_wrong_type_is_a_config_error(config_file, tmp_path):
    _, rsa_public = make_key_pair(tmp_path, "rsa")
    check_config(config_file, marker="auth = ",
                 auth={"algorithm": "ES256", "public_key_file": rsa_public})
