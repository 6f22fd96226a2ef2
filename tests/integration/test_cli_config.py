"""Command line and configuration checking (`wsbroker -t`)."""

import os
import re
import socket

import pytest

from conftest import free_port, line_of, run_wsbroker, source_dir

# A valid config spread over many lines, so errors have distinct line numbers.
BASE_CONFIG = """\
listen = (
  { address = "127.0.0.1";
    port = @PORT@; }
);
websocket = {
  allowed_origins = [ ];
  subprotocols = [ ];
  max_message_size = 65536;
  ping_interval = 0;
  ping_timeout = 60;
  handshake_timeout = 10;
  close_timeout = 2;
};
limits = {
  max_connections = 1000;
  outbound_queue_max = 4194304;
  request_head_max = 8192;
};
routes = (
  { path = "/echo"; mode = "echo"; },
  { path = "/chat/:room"; mode = "broadcast"; channel = "room:{room}"; }
);
http = { static_root = "@STATIC_ROOT@"; };
log_level = "debug";
shutdown_timeout = 5;
"""


def configured_version():
    with open(os.path.join(source_dir(), "configure.ac")) as f:
        text = f.read()
    match = re.search(r"AC_INIT\(\[wsbroker\],\s*\[([^\]]+)\]", text)
    assert match, "AC_INIT with a version not found in configure.ac"
    return match.group(1)


def check(path):
    return run_wsbroker("-t", "-c", path)


def test_check_accepts_valid_config(config_file):
    path = config_file(text=BASE_CONFIG)
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "configuration file %s test is successful" % path in result.stderr


def test_check_accepts_fixture_default_config(config_file):
    path = config_file()
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "configuration file %s test is successful" % path in result.stderr


def test_check_does_not_bind_the_listen_port(config_file):
    port = free_port()
    text = BASE_CONFIG.replace("@PORT@", str(port))
    path = config_file(text=text)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        result = check(path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# (id, old text, new text, marker on the line the error must name)
INVALID_CASES = [
    ("unknown-key-in-group", "  close_timeout = 2;\n",
     "  close_timeout = 2;\n  bogus_option = 1;\n", "bogus_option"),
    ("unknown-top-level-key", "log_level = \"debug\";\n",
     "log_level = \"debug\";\nfrobnicate = true;\n", "frobnicate"),
    ("wrong-type-string-for-integer", "  max_message_size = 65536;",
     "  max_message_size = \"big\";", "max_message_size"),
    ("wrong-type-integer-for-string", "log_level = \"debug\";", "log_level = 3;", "log_level"),
    ("port-out-of-range", "    port = @PORT@; }", "    port = 70000; }", "70000"),
    ("outbound-queue-below-minimum", "  outbound_queue_max = 4194304;",
     "  outbound_queue_max = 100;", "outbound_queue_max"),
    ("unknown-log-level", "log_level = \"debug\";", "log_level = \"loud\";", "log_level"),
    ("unknown-route-mode", "{ path = \"/echo\"; mode = \"echo\"; }",
     "{ path = \"/echo\"; mode = \"teleport\"; }", "teleport"),
    ("syntax-error", "  handshake_timeout = 10;", "  handshake_timeout = = 10;",
     "handshake_timeout"),
]


@pytest.mark.parametrize("old,new,marker", [c[1:] for c in INVALID_CASES],
                         ids=[c[0] for c in INVALID_CASES])
def test_check_rejects_invalid_config_with_file_and_line(config_file, old, new, marker):
    assert old in BASE_CONFIG
    text = BASE_CONFIG.replace(old, new)
    path = config_file(text=text)
    line = line_of(text, marker)
    result = check(path)
    assert result.returncode == 1, result.stderr
    assert "test is successful" not in result.stderr
    assert re.search(r"^%s:%d: \S" % (re.escape(path), line), result.stderr, re.M), (
        "expected a message starting with %s:%d:, got:\n%s" % (path, line, result.stderr))


@pytest.mark.parametrize("interval,timeout", [(5, 5), (5, 3)])
def test_check_rejects_ping_timeout_not_above_ping_interval(config_file, interval, timeout):
    text = BASE_CONFIG.replace("  ping_interval = 0;", "  ping_interval = %d;" % interval)
    text = text.replace("  ping_timeout = 60;", "  ping_timeout = %d;" % timeout)
    path = config_file(text=text)
    lines = (line_of(text, "ping_interval"), line_of(text, "ping_timeout"))
    result = check(path)
    assert result.returncode == 1, result.stderr
    assert re.search(r"^%s:(%d|%d): \S" % ((re.escape(path),) + lines), result.stderr, re.M), (
        result.stderr)


def test_check_reports_missing_file(tmp_path):
    path = str(tmp_path / "does-not-exist.conf")
    result = check(path)
    assert result.returncode == 1
    assert path in result.stderr


def test_version_option_prints_version():
    result = run_wsbroker("-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wsbroker %s\n" % configured_version()


def test_help_option_prints_usage_to_stdout():
    result = run_wsbroker("-h")
    assert result.returncode == 0, result.stderr
    assert re.search(r"usage", result.stdout, re.I)
    for option in ("-c", "-t", "-f", "-v", "-h"):
        assert option in result.stdout


def test_unknown_option_prints_usage_to_stderr_and_exits_2():
    result = run_wsbroker("-Z")
    assert result.returncode == 2
    assert re.search(r"usage", result.stderr, re.I)
    assert result.stdout == ""


def test_listen_failure_exits_1_naming_address_and_port(config_file):
    port = free_port()
    path = config_file(text=BASE_CONFIG.replace("@PORT@", str(port)))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        result = run_wsbroker("-f", "-c", path, timeout=10)
    assert result.returncode == 1, result.stderr
    assert "127.0.0.1" in result.stderr
    assert str(port) in result.stderr
