"""bench/cluster --quick: one standalone node, one node on Redis and three
nodes on Redis, every figure measured and nothing lost (bench/README.md)."""

import os
import subprocess
import sys

from conftest import binary_path, source_dir
from test_bench_run import NUMBER, table_rows
from test_cluster import redis_binary

SETUPS = ["standalone", "cluster-1", "cluster-3"]
FIGURES = ["deliveries/s", "deliveries / CPU-s", "p50 ms", "p99 ms", "deliveries / CPU-s"]


def test_quick_run_measures_standalone_and_clusters(tmp_path):
    output = tmp_path / "cluster.md"
    env = dict(os.environ, WSBROKER_BIN=binary_path(), BENCH_REDIS=redis_binary(),
               PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, os.path.join(source_dir(), "bench", "cluster"),
                          "--quick", "--output", str(output)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                         timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    text = output.read_text()
    assert text in run.stdout
    head, rule, *rows = table_rows(text)
    assert head == ["scenario", "figure"] + SETUPS + ["cluster-1 / standalone",
                                                      "cluster-3 / standalone"]
    assert [row[1].split(" (")[0] for row in rows] == FIGURES
    for row in rows:
        for cell in row[2:5]:
            assert NUMBER.match(cell), row      # measured, and "(lost N)" never appended
        for cell in row[5:]:
            assert NUMBER.match(cell), row
