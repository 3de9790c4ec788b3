"""How long the dashboard's pages take with a big queue file (default 100,000 jobs).

    python benchmarks/dashboard_timing.py [--jobs 100000] [--repeat 5]

Writes jobs of five types (70% completed, 10% failed, 15% pending, most of them scheduled,
5% cancelled, created over the last three days) in a temporary directory, laid out as the
queue keeps them: completed and cancelled jobs finished over an hour ago in archive files of
their day, the rest in queue.tsv (``--single-file``: all in queue.tsv, as before a worker
has moved anything); then
writes 30 days of throughput counts (two loop workers, each a line every minute); then
calls the WSGI application in this process for each page, each time with a fresh app (no
cached overview) unless marked "cached" (nothing changed since the last call) or "after a
job ran" (the app kept from the last call, one job enqueued and run in between, as a
dashboard left open sees the queue between two refreshes), and prints the median and worst of the runs and
the median CPU time (on a shared machine, wall time follows the other processes' load). The
issue's bar: the overview and a filtered jobs page answer in under a second on 2 cores.
"""

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbbasic_queue import Queue  # noqa: E402
from dbbasic_queue.storage.history import day_of  # noqa: E402
from dbbasic_queue.dashboard import DashboardApp  # noqa: E402
from dbbasic_queue.model.job import HEADER, job_line  # noqa: E402

TYPES = ("send_email", "resize_image", "sync_crm", "charge_card", "render_report")


def fill(queue: Queue, count: int, now: int, single_file: bool) -> str:
    """Write ``count`` jobs; return the id of a failed one."""
    rnd = random.Random(15)
    failed_id = ""
    files = {}

    def file_for(status: str, finished_at: int):
        if single_file or status not in ("completed", "cancelled") or finished_at > now - 3600:
            path = queue.path
        else:
            path = queue.archive.path(day_of(finished_at))
        if path not in files:
            files[path] = open(path, "wb")
            files[path].write(HEADER)
        return files[path]
    for n in range(count):
        draw = rnd.random()
        status = ("completed" if draw < .70 else "failed" if draw < .80 else
                  "pending" if draw < .95 else "cancelled")
        created = now - rnd.randrange(3 * 86400)
        run_at = (now + rnd.randrange(-600, 86400) if status == "pending"
                  else created + rnd.randrange(600))
        job_id = f"{n:016x}"
        failed_id = job_id if status == "failed" else failed_id
        file_for(status, run_at).write(job_line(
            job_id, rnd.choice(TYPES),
            json.dumps({"to": f"user{n}@example.com", "subject": "Welcome",
                        "body": "Thanks for signing up!"}),
            status, created, run_at, 0 if status == "pending" else 1,
            f"RuntimeError: smtp {rnd.randrange(5)} refused" if status == "failed" else "",
            json.dumps({"sent_at": run_at}) if status == "completed" else ""))
    for file in files.values():
        file.close()
    return failed_id


def fill_counts(queue: Queue, now: int, days: int = 30) -> None:
    """``days`` of counts files: two workers, each a line for every minute."""
    from dbbasic_queue.storage.throughput import HEADER as COUNTS_HEADER
    rnd = random.Random(16)
    first = (now - days * 86400) // 60 * 60
    files = {}
    for minute in range(first, now, 60):
        day = day_of(minute)
        if day not in files:
            files[day] = open(queue.path.parent / f"{queue.path.stem}.counts.{day}.tsv", "wb")
            files[day].write(COUNTS_HEADER)
        for worker in ("web1:loop:1a2b3c4d", "web2:loop:5e6f7a8b"):
            files[day].write(f"{minute}\t{worker}\t{rnd.randrange(60)}\t{rnd.randrange(3)}"
                             f"\t{rnd.randrange(5)}\n".encode())
    for file in files.values():
        file.close()


def call(app, path: str, query: str = "") -> int:
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
               "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    answer = []
    b"".join(app(environ, lambda status, headers: answer.append(status)))
    return int(answer[0].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--single-file", action="store_true",
                        help="every job in queue.tsv, none in archive files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        queue = Queue(Path(directory) / "queue.tsv")
        failed_id = fill(queue, args.jobs, int(time.time()), args.single_file)
        fill_counts(queue, int(time.time()))
        live = sum(1 for _ in queue.table.lines())
        size = sum(path.stat().st_size for path in Path(directory).glob("*.tsv")) / 1e6
        print(f"{args.jobs:,} jobs, {size:.1f} MB: {live:,} in queue.tsv, the rest in "
              f"{len(queue.archive.files())} archive files; median and worst of "
              f"{args.repeat} runs, ms\n")
        pages = [("overview", "/", ""), ("overview JSON", "/api/overview", ""),
                 ("overview JSON, cached", "/api/overview", "cached"),
                 ("overview JSON, after a job ran", "/api/overview", "ran"),
                 ("jobs, no filter", "/jobs", ""), ("jobs, status=failed", "/jobs", "status=failed"),
                 ("jobs, completed of one type", "/jobs", "status=completed&type=send_email"),
                 ("jobs, one type", "/jobs", "type=sync_crm"),
                 ("jobs, search user12345", "/jobs", "q=user12345"),
                 ("jobs, failed, page 20", "/jobs", "status=failed&page=20"),
                 ("one job", "/jobs/" + failed_id, ""), ("failures", "/failures", ""),
                 ("retry-failed count", "/actions/retry-failed", "type=resize_image"),
                 ("purge dry run", "/actions/purge", "older_than=1d&status=completed")]
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; the last "
              f"column is the median CPU time (ms), which other processes disturb less\n")
        print(f"{'page':<30} {'median':>8} {'worst':>8} {'cpu':>8}")
        for name, page, query in pages:
            shared = DashboardApp(queue)
            kept = query in ("cached", "ran")
            if kept:
                call(shared, page)
            times, cpu = [], []
            for _ in range(args.repeat):
                app = shared if kept else DashboardApp(queue)
                if query == "ran":
                    queue.enqueue("send_email", {"to": "new@example.com"})
                    queue.process_jobs({"send_email": lambda payload: None}, max_jobs=1)
                started, started_cpu = time.perf_counter(), time.process_time()
                status = call(app, page, "" if kept else query)
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
                assert status == 200, (name, status)
            print(f"{name:<30} {statistics.median(times):>8.0f} {max(times):>8.0f} "
                  f"{statistics.median(cpu):>8.0f}")


if __name__ == "__main__":
    main()
