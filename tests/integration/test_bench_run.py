"""bench/run --quick: wsbroker next to the Tornado peer, and a peer that is
not installed reported as such instead of measured (bench/README.md)."""

import os
import re
import subprocess
import sys

from conftest import binary_path, source_dir

NUMBER = re.compile(r"^\d+(\.\d+)?( [kM])?$")
ROWS = ("fan-out 1 -> ", "fan-out 200 msg/s", "rooms ", "echo, ", "idle 300 ", "idle 400 ")


def table_rows(text):
    """The Markdown table's rows below its header, as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_quick_run_measures_wsbroker_and_tornado_and_reports_missing_node(tmp_path):
    output = tmp_path / "latest.md"
    env = dict(os.environ, WSBROKER_BIN=binary_path(), BENCH_NODE=str(tmp_path / "no-node"),
               PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, os.path.join(source_dir(), "bench", "run"), "--quick",
                          "--servers", "tornado,node-ws", "--output", str(output)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    text = output.read_text()
    assert text in run.stdout

    assert re.search(r"^- node-ws: not installed \(no node \(.*no-node\).*npm ci\)$", text,
                     re.M), text
    assert "bench/run: node-ws not installed" in run.stderr
    assert re.search(r"^- tornado: Tornado \d", text, re.M), text
    assert "nchan" not in text                # not asked for, so not even mentioned

    head, rule, *rows = table_rows(text)
    assert head[:4] == ["scenario", "figure", "wsbroker", "tornado"]
    assert "wsbroker / tornado" in head and "node-ws" not in head
    assert "vs uWS reference" in head
    assert set(rule) == {"---"}
    assert len(rows) == len(ROWS)
    col = {name: head.index(name) for name in ("wsbroker", "tornado", "wsbroker / tornado",
                                               "vs uWS reference")}
    for prefix, row in zip(ROWS, rows):
        assert row[0].startswith(prefix), row
        assert len(row) == len(head), row
        assert NUMBER.match(row[col["wsbroker"]]), row
        assert NUMBER.match(row[col["vs uWS reference"]]), row
        if prefix == "idle 400 ":             # wsbroker only
            assert row[col["tornado"]] == "-" and row[col["wsbroker / tornado"]] == "-", row
        else:
            assert NUMBER.match(row[col["tornado"]]), row
            assert NUMBER.match(row[col["wsbroker / tornado"]]), row
            assert float(row[col["wsbroker / tornado"]]) > 0, row
