"""The sd_notify messages the daemon sends to $NOTIFY_SOCKET, received on a
Unix datagram socket the test binds (a path, or an abstract "@name"), the
way systemd's Type=notify service supervision sees them: READY=1 once the
listeners accept, RELOADING=1 with MONOTONIC_USEC and then READY=1 around
a SIGHUP reload (a failed one included), STOPPING=1 at SIGTERM.

Each datagram's sender is checked with SCM_CREDENTIALS: systemd's default
NotifyAccess=main only takes messages from the main process. The log line
format on the journal (JOURNAL_STREAM) is checked here too."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import binary_path, port_accepts
from wsclient import OP_TEXT, ws_connect

RECEIVE_TIMEOUT = 10.0


class NotifySocket:
    """A bound AF_UNIX datagram socket; value is what NOTIFY_SOCKET gets."""

    def __init__(self, kind, directory):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if kind == "path":
            path = os.path.join(directory, "notify.sock")
            self.sock.bind(path)
            self.value = path
        else:
            name = "wsbroker-test-notify-%d-%s" % (os.getpid(), os.urandom(4).hex())
            self.sock.bind("\0" + name)
            self.value = "@" + name

    def receive(self, timeout=RECEIVE_TIMEOUT):
        """The next datagram as (fields, text, sender pid)."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            raise AssertionError("no notify message within %.0f s" % timeout)
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        text = data.decode("utf-8")
        fields = {}
        for line in text.split("\n"):
            if line:
                assert "=" in line, "not VAR=value: %r in %r" % (line, text)
                name, value = line.split("=", 1)
                fields[name] = value
        return fields, text, pid

    def assert_nothing(self, seconds=0.3):
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        raise AssertionError("unexpected notify message %r" % data)

    def close(self):
        self.sock.close()


@pytest.fixture
def short_dir():
    """A directory with a short path, for Unix socket names."""
    path = tempfile.mkdtemp(prefix="wsb-notify-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_notified(b, notify_value, **extra_env):
    """Starts broker b (configured, not started) with NOTIFY_SOCKET set (or
    unset, for None) and returns at once, without waiting for its port."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if notify_value is not None:
        env["NOTIFY_SOCKET"] = notify_value
    env.update(extra_env)
    b._stderr = open(b.log_path, "ab")
    b._stdout = open(b.stdout_path, "ab")
    b.proc = subprocess.Popen([binary_path(), "-f", "-c", b.config_path],
                              stdin=subprocess.DEVNULL, stdout=b._stdout, stderr=b._stderr,
                              cwd=b.workdir, env=env)
    return b


def unix_accepts(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_reloading_and_stopping(broker, short_dir, kind):
    notify = NotifySocket(kind, short_dir)
    try:
        b = broker(start=False)
        listener_path = os.path.join(short_dir, "wsbroker.sock")
        settings = {"listen": [{"address": "127.0.0.1", "port": b.port},
                               {"path": listener_path, "mode": "0660"}]}
        b.write_config(settings)
        start_notified(b, notify.value)

        # READY=1 comes first, from the main process, once every listener
        # accepts: systemd starts what depends on the service right then.
        fields, text, pid = notify.receive()
        assert fields.get("READY") == "1", text
        assert pid == b.proc.pid, "sender pid %s, daemon pid %s" % (pid, b.proc.pid)
        assert port_accepts("127.0.0.1", b.port), "READY=1 before the TCP listener accepts"
        assert unix_accepts(listener_path), "READY=1 before the Unix socket listener accepts"
        assert fields.get("STATUS"), "a STATUS= line for systemctl status: %r" % text
        notify.assert_nothing()

        # A reload: RELOADING=1 with the monotonic time in the same datagram
        # (systemd >= 253 needs it), then READY=1 when it is done.
        b.write_config(dict(settings, log_level="info"))
        before = monotonic_usec()
        b.signal(signal.SIGHUP)
        fields, text, pid = notify.receive()
        after = monotonic_usec()
        assert fields.get("RELOADING") == "1", text
        assert pid == b.proc.pid
        assert re.fullmatch(r"[0-9]+", fields.get("MONOTONIC_USEC", "")), text
        assert before <= int(fields["MONOTONIC_USEC"]) <= after, (before, text, after)
        fields, text, pid = notify.receive()
        assert fields.get("READY") == "1" and "RELOADING" not in fields, text
        assert pid == b.proc.pid
        b.wait_log("configuration reloaded")

        # A broken file: the old configuration stays, and systemd must still
        # be told the reload is over, or `systemctl reload` would hang.
        with open(b.config_path, "w") as f:
            f.write("listen = ( { address = \"127.0.0.1\"; port = %d; } \n" % b.port)
        before = monotonic_usec()
        b.signal(signal.SIGHUP)
        fields, text, _ = notify.receive()
        assert fields.get("RELOADING") == "1", text
        assert int(fields["MONOTONIC_USEC"]) >= before, text
        fields, text, _ = notify.receive()
        assert fields.get("READY") == "1", text
        assert "fail" in fields.get("STATUS", ""), text
        b.wait_log("reload failed")
        ws = ws_connect(b.port, "/echo")
        try:
            ws.send_text("still serving")
            assert ws.recv_message() == (OP_TEXT, b"still serving")
        finally:
            ws.close()
        b.write_config(settings)

        # SIGTERM: STOPPING=1 at once, then a clean exit.
        b.signal(signal.SIGTERM)
        fields, text, pid = notify.receive()
        assert fields.get("STOPPING") == "1", text
        assert pid == b.proc.pid
        assert b.wait_exit() == 0, b.log()
        notify.assert_nothing()
    finally:
        notify.close()


def test_stopping_is_sent_before_open_connections_finish(broker, short_dir):
    """STOPPING=1 comes when shutdown begins, not after the close handshakes
    (here one the client never answers) are over."""
    notify = NotifySocket("path", short_dir)
    try:
        b = broker(start=False, websocket={"close_timeout": 3})
        start_notified(b, notify.value)
        fields, text, _ = notify.receive()
        assert fields.get("READY") == "1", text
        ws = ws_connect(b.port, "/echo")
        try:
            b.wait_log("open ")
            sent = time.monotonic()
            b.signal(signal.SIGTERM)
            fields, text, _ = notify.receive()
            assert fields.get("STOPPING") == "1", text
            assert time.monotonic() - sent < 2.0, "STOPPING=1 only after the connections"
            assert b.proc.poll() is None, "exited before its connection was closed"
        finally:
            ws.close()
        assert b.wait_exit() == 0, b.log()
    finally:
        notify.close()


def wait_accepting(b):
    deadline = time.monotonic() + 10
    while not port_accepts("127.0.0.1", b.port):
        assert b.proc.poll() is None, "exited with %s:\n%s" % (b.proc.returncode, b.log())
        assert time.monotonic() < deadline, "not accepting:\n" + b.log()
        time.sleep(0.02)


@pytest.mark.parametrize("journal", [True, False])
def test_log_lines_on_the_journal_carry_a_priority_and_no_timestamp(broker, journal):
    """systemd sets JOURNAL_STREAM to the device and inode of the stream it
    connects to stderr; only when they match is stderr the journal."""
    b = broker(start=False)
    open(b.log_path, "ab").close()
    st = os.stat(b.log_path)
    stream = "%d:%d" % (st.st_dev, st.st_ino) if journal else "%d:%d" % (st.st_dev,
                                                                         st.st_ino + 1)
    start_notified(b, None, JOURNAL_STREAM=stream)
    wait_accepting(b)
    ws = ws_connect(b.port, "/echo?user=journal")
    ws.close()
    b.wait_log("user=journal")
    b.stop()
    lines = b.log_lines()
    assert lines
    if journal:
        # <6> info, <4> warning (the open files limit may be low here).
        assert all(re.match(r"<[0-7]>\S", line) for line in lines), lines
        assert any(re.match(r"<6>open 127\.0\.0\.1:\d+ /echo user=journal$", line)
                   for line in lines), lines
    else:
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
        assert all(re.match(stamp + r" (error|warn|info|debug) ", line) for line in lines), \
            lines


@pytest.mark.parametrize("value", ["/nonexistent/wsbroker-notify.sock", "relative/notify.sock",
                                   "@"])
def test_an_unusable_notify_socket_does_not_stop_the_daemon(broker, value):
    b = broker(start=False)
    start_notified(b, value)
    wait_accepting(b)
    ws = ws_connect(b.port, "/echo")
    try:
        ws.send_text("notify is optional")
        assert ws.recv_message() == (OP_TEXT, b"notify is optional")
    finally:
        ws.close()
    b.signal(signal.SIGHUP)
    b.wait_log("configuration reloaded")
    # teardown: SIGTERM, exit status 0
