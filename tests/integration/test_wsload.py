"""Smoke test of the bench/wsload load generator against a real broker:
both scenarios run briefly, deliver everything in order and report sane
figures in their key=value line."""

import os
import subprocess

import pytest

from conftest import binary_path

RUN_TIMEOUT = 30


def wsload_path():
    # WSBROKER_BIN is BUILD/src/wsbroker; wsload is built as BUILD/bench/wsload/wsload.
    build = os.path.dirname(os.path.dirname(os.path.abspath(binary_path())))
    path = os.path.join(build, "bench", "wsload", "wsload")
    if not os.access(path, os.X_OK):
        pytest.fail("wsload not built: %s" % path)
    return path


def run_wsload(b, *args):
    proc = subprocess.run([wsload_path(), *args, "--port", str(b.port), "--timeout", "20",
                           "--server-pid", str(b.proc.pid)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("scenario=")]
    assert len(lines) == 1, proc.stdout
    assert proc.stdout.startswith("| scenario |")
    return dict(kv.split("=", 1) for kv in lines[0].split())


def check_sane(r):
    assert int(r["lost"]) == 0
    assert int(r["order_violations"]) == 0
    assert int(r["failed"]) == 0
    assert float(r["rate"]) > 0
    p50, p99, p999, mx = (float(r[k]) for k in ("p50_us", "p99_us", "p999_us", "max_us"))
    assert 0 < p50 <= p99 <= p999 <= mx < 20e6
    assert float(r["server_cpu_s"]) >= 0


def test_wsload_fanout_delivers_everything_in_order(broker):
    b = broker(limits={"outbound_queue_max": 64 * 1024 * 1024})
    r = run_wsload(b, "fanout", "--conns", "20", "--messages", "200", "--size", "64")
    assert r["scenario"] == "fanout"
    assert int(r["sent"]) == 200
    assert int(r["delivered"]) == 20 * 200
    check_sane(r)


def test_wsload_echo_round_trips(broker):
    b = broker()
    r = run_wsload(b, "echo", "--conns", "5", "--messages", "100", "--size", "100")
    assert r["scenario"] == "echo"
    assert int(r["delivered"]) == 5 * 100
    check_sane(r)


def test_wsload_fanout_at_a_rate_sends_about_that_rate(broker):
    b = broker()
    r = run_wsload(b, "fanout", "--conns", "5", "--duration", "1", "--rate", "200")
    assert 150 <= int(r["sent"]) <= 210          # 200/s for 1 s, bounded by the schedule
    assert int(r["delivered"]) == 5 * int(r["sent"])
    check_sane(r)


def test_wsload_fails_when_the_upgrade_is_refused(broker):
    b = broker()
    proc = subprocess.run([wsload_path(), "echo", "--port", str(b.port), "--path", "/nowhere",
                           "--conns", "2", "--timeout", "5"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode != 0
    assert "upgrade refused" in proc.stderr
    assert "scenario=" not in proc.stdout


def test_wsload_rooms_deliver_every_member_everything_in_order(broker):
    b = broker()
    r = run_wsload(b, "rooms", "--rooms", "4", "--members", "5", "--messages", "20",
                   "--rate", "100")
    assert r["scenario"] == "rooms"
    assert int(r["conns"]) == 4 * 5
    assert int(r["sent"]) == 4 * 5 * 20
    assert int(r["delivered"]) == 4 * 5 * 20 * 5     # each message to its room's 5 members
    check_sane(r)


def test_wsload_idle_holds_connections_that_still_answer(broker):
    b = broker()
    r = run_wsload(b, "idle", "--conns", "200", "--duration", "0.5", "--source", "127.0.0.2")
    assert r["scenario"] == "idle"
    assert int(r["sent"]) == int(r["delivered"]) == 200
    assert float(r["seconds"]) >= 0.5
    assert int(r["rss_open_kb"]) > 0 and int(r["rss_before_kb"]) > 0
    check_sane(r)
