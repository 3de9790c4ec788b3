"""The benchmark runs end to end (--quick) and prints its tables. Timings are its business,
not the tests': nothing here asserts a figure, only that each row has one."""

import inspect
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dbbasic_queue import Queue

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
NUMBER = re.compile(r"^[\d,]+(\.\d+)?x?$")


def run_bench(*arguments, python=sys.executable):
    return subprocess.run([python, str(BENCH), *arguments], capture_output=True,
                          text=True, timeout=300)


def tables(stdout):
    """Each markdown table of the output, as its rows of stripped cells (header first)."""
    found, current = [], []
    for line in stdout.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            found.append([row for row in current if not set("".join(row)) <= set("-")])
            current = []
    return found


def row_starting(table, *cells):
    rows = [row for row in table[1:] if all(row[i].startswith(cell) for i, cell in enumerate(cells))]
    assert rows, f"no row starting {cells} in {table}"
    return rows[0]


def test_the_quick_benchmark_completes_and_prints_every_table_with_every_peer():
    done = run_bench("--quick")

    assert done.returncode == 0, done.stderr[-2000:]
    main, history, lookup, concurrency, busy, per_job, startup = tables(done.stdout)
    assert main[0][:6] == ["figure", "ours", "1.0.0", "huey fsync=False", "huey default",
                           "litequeue"]
    assert all(len(row) == len(main[0]) for row in main), main
    for row in main[1:]:  # litequeue's enqueue and processing figures
        if row[0].startswith(("enqueue p50 µs, ", "enqueue p99 µs, ", "processing µs/job, ")) \
                and "queues" not in row[0]:
            assert NUMBER.match(row[5]), row
    figures = [row[0] for row in main[1:]]
    for expected in ("enqueue p50 µs, 0 jobs in file", "enqueue p50 µs with fsync, 0 jobs in file",
                     "processing µs/job, 1,000 jobs", "worker peak RSS MB, 1,000 jobs",
                     "enqueue p99 µs while a worker runs 1,000 jobs",
                     "pickup ms, enqueue to handler start", "idle loop worker, % of a core",
                     "a batch of 1,000 jobs with an on_complete job, enqueue ms",
                     "a batch of 1,000 and its callback run, µs/job", "100 chains of 3 run, µs/job"):
        assert any(figure.startswith(expected) for figure in figures), expected
    for row in main[1:]:
        assert row[1] and row[1] != "—", row  # every row has our figure
    assert "extrapolated" in done.stdout  # 1.0.0's capped sizes are said to be

    # The history rows: each size of kept history, with the first run on the upgraded file.
    assert history[0][:4] == ["finished jobs kept", "due jobs", "queue.tsv before the run, MB",
                              "run time, s"]
    for kept, due in (("0", "10"), ("0", "200"), ("2,000 (finished 3-4 days ago)", "10"),
                      ("2,000 (finished 3-4 days ago)", "200"),
                      ("2,000 (finished 3-4 days ago)", "none: the first run on an upgraded file"),
                      ("2,000 (finished over the last 7 days", "none: the first run")):
        row = row_starting(history, kept, due)
        written = row[5].split(" / ")
        assert len(written) == 3 and all(NUMBER.match(cell) for cell in written), row
        assert all(NUMBER.match(cell) for cell in (row[2], row[3], row[6], row[7])), row
        assert NUMBER.match(row[4]) or due.startswith("none"), row

    assert lookup[0][0] == "get_job among 2,000 finished jobs kept, finished over the last 7 days"
    for which in ("a job finished in the last hour", "the oldest kept job", "an id no job has"):
        row = row_starting(lookup, which)
        assert all(NUMBER.match(cell) for cell in row[1:4]), row

    # Huey runs at every concurrency; ours wherever this version has the keyword.
    has_concurrency = "concurrency" in inspect.signature(Queue.process_jobs).parameters
    assert concurrency[0][2:4] == ["ours, s", "huey fsync=False, thread workers, s"]
    for level in ("1", "4", "16"):
        row = next(row for row in concurrency[1:] if row[1] == level)
        assert NUMBER.match(row[3]) and NUMBER.match(row[4]), row
        assert NUMBER.match(row[2]) if (has_concurrency or level == "1") else row[2] == "—", row
    assert "(not 160: at this concurrency that takes 3+ s)" in row_starting(concurrency, "10")[0]

    check_busy_tables(busy, per_job)

    # What a fresh process pays: a row per subject, a figure in each cell.
    assert startup[0][0].startswith("a fresh `python -S -c`")
    assert [row[0] for row in startup[1:]] == ["ours", "dbbasic-queue 1.0.0", "huey SqliteHuey"]
    for row in startup[1:]:
        assert len(row) == 5 and all(NUMBER.match(cell.lstrip("-")) for cell in row[1:]), row
    assert "a whole process enqueueing one job" in done.stdout


def check_busy_tables(busy, written):
    """The busy section's two tables: a row with figures for every (kept, due, subject) and
    every (pending, subject), our ratios to huey's on our rows."""
    assert busy[0][:4] == ["finished in the last hour", "due", "subject", "run time, ms"]
    for due in ("0", "10"):
        for subject in ("ours, first run on the file", "ours, second run", "huey fsync=False",
                        "huey default"):
            row = row_starting(busy, "2,000", due, subject)
            cells = [row[3], *row[4].split(" / "), row[5], row[6]]
            assert len(cells) == 6 and all(NUMBER.match(cell) for cell in cells), row
            ratios = [part for cell in row[7:9] for part in cell.split("; ")]
            if subject.startswith("ours"):
                assert len(ratios) == 4 and all(NUMBER.match(r) or r == "—" for r in ratios), row
                assert NUMBER.match(ratios[0]) and NUMBER.match(ratios[1]), row  # run times
            else:
                assert ratios == ["—", "—"], row

    assert written[0][:4] == ["pending jobs, one worker run over all", "subject",
                              "written per job, bytes: wchar / write_bytes / cancelled_write_bytes",
                              "µs/job"]
    for subject in ("ours", "huey fsync=False", "huey default"):
        row = next(row for row in written[1:] if row[:2] == ["1,000", subject])
        cells = [*row[2].split(" / "), row[3], row[4]]
        assert len(cells) == 5 and all(NUMBER.match(cell) for cell in cells), row
        ratios = row[5].split("; ")
        if subject == "ours":
            assert len(ratios) == 2 and all(NUMBER.match(r) for r in ratios), row
        else:
            assert ratios == ["—"], row


def test_only_runs_the_sections_it_names():
    done = run_bench("--quick", "--only", "history")

    assert done.returncode == 0, done.stderr[-2000:]
    printed = tables(done.stdout)
    assert [table[0][0] for table in printed] == [
        "finished jobs kept", "get_job among 2,000 finished jobs kept, finished over the last 7 days"]
    assert "installing the peers" in done.stderr and "huey" not in done.stderr


def test_only_busy_runs_the_busy_tables_alone_with_huey_installed():
    done = run_bench("--quick", "--only", "busy")

    assert done.returncode == 0, done.stderr[-2000:]
    printed = tables(done.stdout)
    assert [table[0][0] for table in printed] == [
        "finished in the last hour", "pending jobs, one worker run over all"]
    check_busy_tables(*printed)


def test_only_with_an_unknown_section_is_a_usage_error_that_names_the_sections():
    done = run_bench("--only", "history,speed")

    assert done.returncode == 2
    assert "main, history, concurrency, busy" in done.stderr and "'history,speed'" in done.stderr


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server installed")
def test_without_the_rq_extra_the_main_section_skips_the_redis_rows_with_a_note(tmp_path):
    # Given redis-server, and a Python whose packages are this one's but where redis and rq
    # cannot be imported (a venv whose .pth adds our site-packages and blocks those two)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "without_rq.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n"
                                            "import sys; sys.modules.update(redis=None, rq=None)\n")

    # When the main section runs there
    done = run_bench("--quick", "--only", "main", python=python)

    # Then it completes, without the Redis rows, and says why
    assert done.returncode == 0, done.stderr[-2000:]
    main = tables(done.stdout)[0]
    assert not [row for row in main if "Redis" in row[0]], main
    assert "The RQ backend rows are skipped: the rq extra is not installed" in done.stdout
