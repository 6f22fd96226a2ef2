"""The broker under test: started by the driver with its own config, or an
already running one it attaches to; and what can be read about it from
outside (memory, descriptors, /metrics)."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "MemorySanitizer")
START_TIMEOUT = 15.0

# The config the driver runs the broker with: short timeouts so that
# half-open connections are cleared within seconds, compression with a
# low threshold so deflate streams come and go, a small outbound queue so
# that slow readers are cut off soon, and channels whose held messages
# expire so an idle broker holds no channel at all.
CONFIG = """\
listen = ( {{ address = "{host}"; port = {port}; }} );
websocket = {{
    max_message_size = {max_message_size};
    ping_interval = {ping_interval};
    ping_timeout = {ping_timeout};
    handshake_timeout = {handshake_timeout};
    close_timeout = {close_timeout};
    compression = {{ enabled = true; min_size = 64; }};
}};
limits = {{
    max_connections = {max_connections};
    max_subscriptions = 16;
    outbound_queue_max = {outbound_queue_max};
}};
routes = (
    {{ path = "/chat/:room"; mode = "broadcast"; channel = "room:{{room}}"; presence_events = true; }},
    {{ path = "/ws"; mode = "pubsub"; }},
    {{ path = "/echo"; mode = "echo"; }}
);
channels = (
    {{ match = "room:*"; history = 20; history_ttl = {history_ttl}; presence = true; }},
    {{ match = "soak:*"; history = 10; history_ttl = {history_ttl}; }}
);
http = {{ metrics_allow = [ "127.0.0.0/8", "::1" ]; }};
log_level = "warn";
shutdown_timeout = {shutdown_timeout};
"""

# What a slow reader may have queued before it is cut off.
OUTBOUND_QUEUE_MAX = 262144

TIMEOUTS = {
    "ping_interval": 1,
    "ping_timeout": 3,
    "handshake_timeout": 2,
    "close_timeout": 2,
    "history_ttl": 2,
    "shutdown_timeout": 5,
}
# conn.c lets a closed connection linger this long for the peer's FIN.
LINGER_SECONDS = 2


def free_port(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def links_sanitizer(path):
    """True when the binary was built with AddressSanitizer: its RSS then
    says little (quarantine, shadow memory), but LeakSanitizer runs at exit."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class Broker:
    """host, port, pid; owned brokers also have proc, workdir and a log."""

    def __init__(self, host, port, pid=None):
        self.host = host
        self.port = port
        self.pid = pid
        self.proc = None
        self.workdir = None
        self.log_path = None
        self.binary = None
        self.owned = False
        self.max_connections = None
        self.reloads = 0

    def write_config(self):
        """Writes the config; each reload changes max_message_size by one
        byte, a change that reaches new connections and harms nobody."""
        path = os.path.join(self.workdir, "wsbroker.conf")
        with open(path + ".new", "w") as f:
            f.write(CONFIG.format(host=self.host, port=self.port,
                                  max_connections=self.max_connections,
                                  max_message_size=65536 - self.reloads % 2,
                                  outbound_queue_max=OUTBOUND_QUEUE_MAX, **TIMEOUTS))
        os.replace(path + ".new", path)      # never a half-written file at SIGHUP
        return path

    def reload(self):
        """SIGHUP an owned broker with a rewritten config."""
        self.reloads += 1
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, binary, host="127.0.0.1", max_connections=19000, keep_dir=None):
        broker = cls(host, free_port(host))
        broker.owned = True
        broker.binary = binary
        broker.workdir = keep_dir or tempfile.mkdtemp(prefix="wsbroker-soak.")
        os.makedirs(broker.workdir, exist_ok=True)
        broker.max_connections = max_connections
        config_path = broker.write_config()
        broker.log_path = os.path.join(broker.workdir, "wsbroker.stderr")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        with open(broker.log_path, "wb") as log:
            broker.proc = subprocess.Popen([binary, "-f", "-c", config_path],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           cwd=broker.workdir, env=env)
        broker.pid = broker.proc.pid
        broker.wait_ready()
        return broker

    @classmethod
    def attach(cls, host, port, pid=None):
        broker = cls(host, port, pid)
        if pid is not None:
            try:
                broker.binary = os.readlink("/proc/%d/exe" % pid)
            except OSError:
                pass
        broker.wait_ready()
        return broker

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self.alive():
                raise RuntimeError("the broker exited at start:\n" + self.log_tail())
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the broker does not accept on %s port %d" %
                                       (self.host, self.port))
                time.sleep(0.05)

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def stop(self, timeout):
        """SIGTERM an owned broker; returns its exit status (None: killed
        after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    # ------------------------------------------------------------ reading

    def log(self):
        if self.log_path is None:
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, size=4000):
        return self.log()[-size:]

    def sanitizer_report(self):
        log = self.log()
        return any(marker in log for marker in SANITIZER_MARKERS)

    def status_kib(self, field):
        """VmRSS, VmHWM... of /proc/PID/status in KiB, or None."""
        if self.pid is None:
            return None
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def rss_kib(self):
        return self.status_kib("VmRSS")

    def fd_count(self):
        """Open descriptors of the broker, or None when not readable."""
        if self.pid is None:
            return None
        try:
            return len(os.listdir("/proc/%d/fd" % self.pid))
        except OSError:
            return None

    def metrics(self):
        """GET /metrics as {name or name{labels}: value}; None on failure."""
        url = "http://%s:%d/metrics" % ("[%s]" % self.host if ":" in self.host else self.host,
                                         self.port)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode("utf-8", "replace")
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            match = re.match(r"^(wsbroker_[a-z_]+(?:\{[^}]*\})?) (\d+)$", line)
            if match:
                values[match.group(1)] = int(match.group(2))
        return values


def open_connections(metrics):
    """WebSocket connections open on all routes, from /metrics."""
    return sum(v for k, v in metrics.items() if k.startswith("wsbroker_connections_open"))


def quiesce(broker, idle_fds, timeout, need_empty_hub):
    """Waits until no client connection is left: the route gauges are 0,
    the broker holds no more descriptors than when idle at start and, for
    a broker of our own, no channel or subscription is left. Returns
    (reached, last metrics, last fd count)."""
    deadline = time.monotonic() + timeout
    settled = 0
    metrics, fds = None, None
    while True:
        fds = broker.fd_count()       # before /metrics, whose own connection would count
        metrics = broker.metrics()
        quiet = (metrics is not None and open_connections(metrics) == 0 and
                 (idle_fds is None or fds is None or fds <= idle_fds) and
                 (not need_empty_hub or (metrics.get("wsbroker_channels") == 0 and
                                         metrics.get("wsbroker_subscriptions") == 0)))
        settled = settled + 1 if quiet else 0
        if settled >= 2:
            return True, metrics, fds
        if time.monotonic() > deadline or not broker.alive():
            return False, metrics, fds
        time.sleep(0.25)
