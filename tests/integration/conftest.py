"""Fixtures that run the real wsbroker binary as a black box.

`broker(**overrides)` writes a config file, starts `wsbroker -f -c FILE` on a
free loopback port and waits until it accepts connections. Overrides are
top-level config keys: a dict merges into the default group of that name
(a None value removes a key), any other Python value replaces the setting,
Raw("...") is inserted as libconfig text, and None removes the setting.
`broker(text=...)` writes a whole config instead; "@PORT@" and
"@STATIC_ROOT@" in it are substituted. `broker(tls={...})` gives every
listener of the default config that tls group (its url() is then wss://).
`broker(nofile=N)` starts the process with RLIMIT_NOFILE N (soft and hard).

On teardown every broker gets SIGTERM and must exit 0 within 10 s with no
sanitizer report on stderr.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class Raw(str):
    """Libconfig text inserted verbatim."""


def binary_path():
    path = os.environ.get("WSBROKER_BIN")
    if not path:
        srcdir = os.environ.get("WSBROKER_SRCDIR") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..")
        path = os.path.join(srcdir, "src", "wsbroker")
    if not os.access(path, os.X_OK):
        pytest.fail("wsbroker binary not found or not executable: %s (set WSBROKER_BIN)" % path)
    return path


def source_dir():
    return os.environ.get("WSBROKER_SRCDIR") or os.path.abspath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


# ---------------------------------------------------------------- config text

def lc_value(value):
    """Renders a Python value as libconfig text."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%dL" % value if not -2**31 <= value < 2**31 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, dict):
        inner = " ".join("%s = %s;" % (k, lc_value(v)) for k, v in value.items() if v is not None)
        return "{ %s }" % inner
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return "(\n    " + ",\n    ".join(lc_value(v) for v in value) + "\n  )"
        return "[ " + ", ".join(lc_value(v) for v in value) + " ]"
    raise TypeError("cannot render %r as libconfig" % (value,))


DEFAULT_ROUTES = [
    {"path": "/echo", "mode": "echo"},
    {"path": "/chat/:room", "mode": "broadcast", "channel": "room:{room}"},
    {"path": "/quiet/:room", "mode": "broadcast", "channel": "room:{room}", "echo_self": False},
]


def default_settings(port, static_root, addresses=("127.0.0.1",), tls=None):
    listen = [{"address": a, "port": port} for a in addresses]
    if tls is not None:
        for entry in listen:
            entry["tls"] = dict(tls)
    return {
        "listen": listen,
        "websocket": {
            "allowed_origins": [],
            "subprotocols": [],
            "max_message_size": 65536,
            "ping_interval": 0,
            "ping_timeout": 60,
            "handshake_timeout": 10,
            "close_timeout": 2,
        },
        "limits": {
            "max_connections": 1000,
            "outbound_queue_max": 4194304,
            "request_head_max": 8192,
        },
        "routes": list(DEFAULT_ROUTES),
        "http": {"static_root": static_root},
        "log_level": "debug",
        "shutdown_timeout": 5,
    }


def merge_settings(settings, overrides):
    result = dict(settings)
    for key, value in overrides.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            group = dict(result[key])
            for sub, subvalue in value.items():
                if subvalue is None:
                    group.pop(sub, None)
                else:
                    group[sub] = subvalue
            result[key] = group
        else:
            result[key] = value
    return result


def render_config(settings):
    return "".join("%s = %s;\n" % (k, lc_value(v)) for k, v in settings.items())


def line_of(text, marker):
    """1-based number of the first line of text containing marker."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError("marker %r not in config text" % marker)


# ---------------------------------------------------------------- static files

STATIC_FILES = {
    "index.html": "<!doctype html>\n<title>wsbroker test</title>\n<p>the index page</p>\n",
    "app.js": "console.log('wsbroker test script');\n",
    "style.css": "body { color: #123456; }\n",
    "subdir/index.html": "<!doctype html>\n<p>the subdir index</p>\n",
    "subdir/page.html": "<p>a page in subdir</p>\n",
}
SECRET_CONTENT = "TOP-SECRET-7f3a9c: this file lies outside static_root\n"


def make_static_root(base):
    root = os.path.join(str(base), "www")
    for name, content in STATIC_FILES.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    secret = os.path.join(str(base), "secret")
    with open(secret, "w") as f:
        f.write(SECRET_CONTENT)
    # A symlink inside the root that leads out of it.
    os.symlink(secret, os.path.join(root, "escape.txt"))
    return root


# ---------------------------------------------------------------- ports

def free_port(addresses=("127.0.0.1",)):
    """A port that is currently free on every address (bind 0, then close)."""
    for _ in range(50):
        held = []
        try:
            first = addresses[0]
            s = socket.socket(socket.AF_INET6 if ":" in first else socket.AF_INET)
            held.append(s)
            s.bind((first, 0))
            port = s.getsockname()[1]
            for address in addresses[1:]:
                t = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
                held.append(t)
                t.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port found")


def port_accepts(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(0.5)
        try:
            s.connect((address, port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- the broker

class Broker:
    def __init__(self, workdir, addresses=("127.0.0.1",), tls=None, nofile=None):
        self.workdir = str(workdir)
        self.nofile = nofile
        self.addresses = tuple(addresses)
        self.tls = tls
        self.static_root = make_static_root(self.workdir)
        self.config_path = os.path.join(self.workdir, "wsbroker.conf")
        self.log_path = os.path.join(self.workdir, "wsbroker.stderr")
        self.stdout_path = os.path.join(self.workdir, "wsbroker.stdout")
        self.port = free_port(self.addresses)
        self.proc = None
        self.returncode = None
        self.config_text = None

    # -- config

    def settings(self, overrides=None):
        return merge_settings(default_settings(self.port, self.static_root, self.addresses,
                                               self.tls),
                              overrides or {})

    def write_config(self, overrides=None, text=None):
        if text is None:
            text = render_config(self.settings(overrides))
        else:
            text = text.replace("@PORT@", str(self.port)).replace("@STATIC_ROOT@",
                                                                  self.static_root)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.config_text = text
        return self.config_path

    # -- process

    def start(self):
        self._stderr = open(self.log_path, "ab")
        self._stdout = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen([binary_path(), "-f", "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=self._stderr, cwd=self.workdir,
                                     preexec_fn=self._limit_files if self.nofile else None)
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.addresses)
        while pending:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise AssertionError("wsbroker exited with status %s at start:\n%s" %
                                     (self.proc.returncode, self.log()))
            if port_accepts(pending[0], self.port):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError("wsbroker did not accept on %s port %d within %.0f s:\n%s" %
                                     (pending[0], self.port, START_TIMEOUT, self.log()))
            time.sleep(0.02)
        return self

    def _limit_files(self):
        """In the child before exec: the hard limit too, or the daemon would
        raise its soft limit up to it."""
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def url(self, path="/echo", host="127.0.0.1"):
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d%s" % ("wss" if self.tls else "ws", host, self.port, path)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def wait_log(self, pattern, timeout=5.0):
        """Waits until a log line contains pattern (a substring, a compiled
        regex, or a function line -> bool); returns that line."""
        if isinstance(pattern, str):
            matches = lambda line: pattern in line
        elif hasattr(pattern, "search"):
            matches = lambda line: pattern.search(line) is not None
        else:
            matches = pattern
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if matches(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError("no log line matching %r within %.1f s; log:\n%s" %
                                     (pattern, timeout, self.log()[-4000:]))
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, text=None, **overrides):
        """Rewrites the config file (the defaults with these overrides, or
        text) and sends SIGHUP."""
        self.write_config(overrides, text)
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
            raise AssertionError("wsbroker did not exit within %.1f s; log:\n%s" %
                                 (timeout, self.log()[-4000:]))
        return self.returncode

    def stop(self, sig=None, timeout=STOP_TIMEOUT):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if sig is None else sig)
        return self.wait_exit(timeout)

    def finish(self):
        """Teardown: stop, then check exit status and sanitizer reports."""
        try:
            if self.proc is None:
                return
            status = self.stop()
            log = self.log()
            for marker in SANITIZER_MARKERS:
                assert marker not in log, "sanitizer report in wsbroker stderr:\n" + log[-8000:]
            assert status == 0, "wsbroker exited with status %s; log:\n%s" % (status,
                                                                                 log[-4000:])
        finally:
            for f in (getattr(self, "_stderr", None), getattr(self, "_stdout", None)):
                if f is not None:
                    f.close()


class BrokerFactory:
    def __init__(self, base):
        self.base = str(base)
        self.brokers = []

    def __call__(self, text=None, addresses=("127.0.0.1",), start=True, tls=None, nofile=None,
                 **overrides):
        workdir = os.path.join(self.base, "broker%d" % len(self.brokers))
        os.makedirs(workdir, exist_ok=True)
        b = Broker(workdir, addresses=addresses, tls=tls, nofile=nofile)
        self.brokers.append(b)
        b.write_config(overrides, text)
        if start:
            b.start()
        return b

    def finish(self):
        errors = []
        for b in self.brokers:
            try:
                b.finish()
            except AssertionError as exc:
                errors.append(str(exc))
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def broker(tmp_path):
    """Factory: broker(**overrides) -> a running Broker (see module doc)."""
    factory = BrokerFactory(tmp_path)
    yield factory
    factory.finish()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory, request):
    """Factory like `broker`, for brokers a module's tests share."""
    factory = BrokerFactory(tmp_path_factory.mktemp(request.module.__name__))
    yield factory
    factory.finish()


@pytest.fixture(scope="module")
def shared_broker(module_broker):
    """One broker with the default config shared by a module's tests that
    only need fresh connections to it (and never look at its log)."""
    return module_broker()


@pytest.fixture
def config_file(tmp_path):
    """Factory: config_file(text=None, **overrides) -> path of a written
    config (port from a fresh free port), for tests that run the binary
    themselves."""
    counter = [0]

    def make(text=None, tls=None, **overrides):
        counter[0] += 1
        workdir = tmp_path / ("config%d" % counter[0])
        workdir.mkdir()
        b = Broker(workdir, tls=tls)
        return b.write_config(overrides, text)

    return make


def binary_is_sanitized():
    """Whether the daemon is built with AddressSanitizer, whose allocator
    pads every block and parks freed ones in a quarantine."""
    with open(binary_path(), "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def memory_scale(monkeypatch):
    """The factor for memory bounds: 2 under AddressSanitizer (with its
    quarantine off for the brokers this test starts), else 1."""
    if not binary_is_sanitized():
        return 1
    options = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (options + ":" if options else "") +
                       "quarantine_size_mb=0")
    return 2


def run_wsbroker(*args, timeout=10.0, cwd=None):
    """Runs the binary to completion; returns CompletedProcess (text)."""
    return subprocess.run([binary_path()] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          cwd=cwd, text=True, errors="replace")


__all__ = ["Raw", "Broker", "BrokerFactory", "line_of", "run_wsbroker", "source_dir",
           "SECRET_CONTENT", "STATIC_FILES", "free_port", "render_config", "default_settings"]
