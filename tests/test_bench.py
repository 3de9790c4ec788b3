"""The benchmark runs end to end (--quick) and prints its table. Timings are its business,
not the tests': nothing here asserts a figure."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_the_quick_benchmark_completes_and_prints_the_table_with_every_peer():
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0].split("|")[1:6] == [" figure ", " ours ", " 1.0.0 ", " huey fsync=False ",
                                        " huey default "]
    figures = [row.split("|")[1].strip() for row in table[2:]]
    for expected in ("enqueue p50 µs, 0 jobs in file", "enqueue p50 µs with fsync, 0 jobs in file",
                     "processing µs/job, 1,000 jobs", "worker peak RSS MB, 1,000 jobs",
                     "enqueue p99 µs while a worker runs 1,000 jobs",
                     "pickup ms, enqueue to handler start", "idle loop worker, % of a core"):
        assert any(figure.startswith(expected) for figure in figures), expected
    for row in table[2:]:
        ours = row.split("|")[2].strip()
        assert ours and ours != "—", row  # every row has our figure
    assert "extrapolated" in done.stdout  # 1.0.0's capped sizes are said to be
