"""Fixtures for the browser tests: a broker serving www/ with the chat route,
and headless Chromium sessions driven through chromedriver.

Environment:
  WSBROKER_BIN      the daemon to test (required)
  WSBROKER_SRCDIR   the source tree; its www/ is the static root (required)
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


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

    def start(self, port):
        self.port = port
        self._log = open(self.log_path, "wb")
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
        '  { path = "/chat/:room"; mode = "broadcast"; channel = "room:{room}"; }\n'
        ');\n'
        f'http = {{ static_root = "{www}"; }};\n'
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
        return driver

    yield start
    for driver in drivers:
        try:
            driver.quit()
        except Exception:
            pass
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
