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


def received_on(b):
    from test_workers import metrics
    return metrics(b.port)["wsbroker_messages_received_total"]


def test_wsload_spreads_connections_over_several_ports(broker):
    a, b = broker(), broker()
    proc = subprocess.run([wsload_path(), "echo", "--port", "%d,%d" % (a.port, b.port),
                           "--conns", "4", "--messages", "25", "--timeout", "20"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    # Connections 0 and 2 echo on the first broker, 1 and 3 on the second.
    assert received_on(a) == 2 * 25
    assert received_on(b) == 2 * 25


def test_wsload_fanout_publisher_on_another_port(broker):
    subscribers, publisher = broker(), broker()
    # Two standalone brokers share nothing: the subscribers on one never
    # get what the publisher sends to the other, which shows where each went.
    proc = subprocess.run([wsload_path(), "fanout", "--port", str(subscribers.port),
                           "--publisher-port", str(publisher.port), "--conns", "3",
                           "--messages", "5", "--timeout", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=RUN_TIMEOUT)
    assert "lost=15 " in proc.stdout, proc.stdout + proc.stderr
    assert received_on(publisher) == 5
    assert received_on(subscribers) == 0


@pytest.mark.parametrize("ports", ["0", "1,", "1,,2", "70000", ",1", "1,2,3,4,5,6,7,8,9"])
def test_wsload_refuses_bad_port_lists(ports):
    proc = subprocess.run([wsload_path(), "echo", "--port", ports], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: wsload")
