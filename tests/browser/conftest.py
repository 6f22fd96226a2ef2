"""Fixtures for the browser tests: a broker serving www/ with the pubsub
route /ws the chat page uses (plus the broadcast route /chat/:room and the
HTTP publish API, so tests can talk into a room from outside the page), and
headless Chromium sessions driven through chromedriver.

Environment:
  WSBROKER_BIN      the daemon to test (required)
  WSBROKER_SRCDIR   the source tree; its www/ is the static root (required)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
API_TOKEN = "browser-test-token"


def _env_path(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (see tests/browser/conftest.py)")
    return value


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary, config, log_path):
        self.binary = binary
        self.config = config
        self.log_path = log_path
        self.port = None
        self.proc = None
        self.api_token = API_TOKEN
        self._log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def api_publish(self, channel, body, content_type="application/json"):
        """POST /api/publish/CHANNEL; returns the decoded 202 answer."""
        if not isinstance(body, bytes):
            body = body.encode("utf-8")
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/publish/" + urllib.parse.quote(channel, safe=""),
            data=body, method="POST",
            headers={"Authorization": "Bearer " + self.api_token,
                     "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 202, answer.status
            return json.loads(answer.read())

    def start(self, port):
        """Starts the daemon on port; may be called again after stop()
        (a restart on the same port), the log is appended to."""
        self.port = port
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wsbroker exited with {self.proc.returncode} at startup:\n"
                                   + self.log())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("wsbroker did not listen within %.0f s:\n%s"
                           % (START_TIMEOUT, self.log()))

    def stop(self):
        """SIGTERM, wait, and return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("wsbroker ignored SIGTERM for %.0f s:\n%s"
                                     % (STOP_TIMEOUT, self.log()))
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode


@pytest.fixture
def broker(tmp_path):
    binary = _env_path("WSBROKER_BIN")
    srcdir = _env_path("WSBROKER_SRCDIR")
    www = os.path.join(os.path.abspath(srcdir), "www")
    config = tmp_path / "wsbroker.conf"
    port = _free_port()
    config.write_text(
        f'listen = ( {{ address = "127.0.0.1"; port = {port}; }} );\n'
        'routes = (\n'
        '  { path = "/chat/:room"; mode = "broadcast"; channel = "room:{room}"; },\n'
        '  { path = "/ws"; mode = "pubsub"; }\n'
        ');\n'
        'channels = (\n'
        '  { match = "room:announcements"; history = 50; presence = true;'
        ' publish = "api_only"; },\n'
        '  { match = "room:*"; history = 50; history_ttl = 3600; presence = true;'
        ' publish = "members"; }\n'
        ');\n'
        f'http = {{ static_root = "{www}"; api_token = "{API_TOKEN}"; }};\n'
        'log_level = "debug";\n')
    b = Broker(binary, str(config), str(tmp_path / "wsbroker.log"))
    b.start(port)
    yield b
    status = b.stop()
    assert status == 0, f"wsbroker exited with {status}:\n{b.log()}"


@pytest.fixture
def browser():
    """A factory: browser(width, height) starts one more headless Chromium
    with its own profile. Every session is closed at teardown."""
    # A missing browser is a failure, not a skip: `make check` installs it
    # (scripts/install-deps --tests), so its absence means a broken setup.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    assert os.access(CHROMEDRIVER, os.X_OK), \
        f"{CHROMEDRIVER} not found (Debian packages chromium, chromium-driver)"

    drivers = []
    profiles = []

    def start(width=1000, height=700):
        profile = tempfile.mkdtemp(prefix="wsbroker-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={profile}",
                    f"--window-size={width},{height}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                  options=options)
        driver.set_page_load_timeout(10)
        drivers.append(driver)
        if width < 500:
            # Chromium's windows are never narrower than 500 pixels; a phone
            # viewport needs device emulation.
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
        return driver

    yield start
    for driver in drivers:
        try:
            driver.quit()
        except Exception:
            pass
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
