"""How long the dashboard's pages take with a big queue file (default 100,000 jobs).

    python benchmarks/dashboard_timing.py [--jobs 100000] [--repeat 5]

Writes a file of jobs of five types (70% completed, 10% failed, 15% pending, half of them
scheduled, 5% cancelled, created over the last three days) in a temporary directory, then
calls the WSGI application in this process for each page, each time with a fresh app (no
cached overview) unless marked "cached", and prints the median and worst of the runs. The
issue's bar: the overview and a filtered jobs page answer in under a second on 2 cores.
"""

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbbasic_queue import Queue  # noqa: E402
from dbbasic_queue.dashboard import DashboardApp  # noqa: E402
from dbbasic_queue.job import HEADER, job_line  # noqa: E402

TYPES = ("send_email", "resize_image", "sync_crm", "charge_card", "render_report")


def fill(path: Path, count: int, now: int) -> str:
    """Write ``count`` jobs; return the id of a failed one."""
    rnd = random.Random(15)
    failed_id = ""
    with open(path, "wb") as file:
        file.write(HEADER)
        for n in range(count):
            draw = rnd.random()
            status = ("completed" if draw < .70 else "failed" if draw < .80 else
                      "pending" if draw < .95 else "cancelled")
            created = now - rnd.randrange(3 * 86400)
            run_at = (now + rnd.randrange(-600, 86400) if status == "pending"
                      else created + rnd.randrange(600))
            job_id = f"{n:016x}"
            failed_id = job_id if status == "failed" else failed_id
            file.write(job_line(
                job_id, rnd.choice(TYPES),
                json.dumps({"to": f"user{n}@example.com", "subject": "Welcome",
                            "body": "Thanks for signing up!"}),
                status, created, run_at, 0 if status == "pending" else 1,
                f"RuntimeError: smtp {rnd.randrange(5)} refused" if status == "failed" else "",
                json.dumps({"sent_at": run_at}) if status == "completed" else ""))
    return failed_id


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "queue.tsv"
        failed_id = fill(path, args.jobs, int(time.time()))
        queue = Queue(path)
        size = path.stat().st_size / 1e6
        print(f"{args.jobs:,} jobs, {size:.1f} MB; median and worst of {args.repeat} runs, ms\n")
        pages = [("overview", "/", ""), ("overview JSON", "/api/overview", ""),
                 ("overview JSON, cached", "/api/overview", "cached"),
                 ("jobs, no filter", "/jobs", ""), ("jobs, status=failed", "/jobs", "status=failed"),
                 ("jobs, completed of one type", "/jobs", "status=completed&type=send_email"),
                 ("jobs, one type", "/jobs", "type=sync_crm"),
                 ("jobs, search user12345", "/jobs", "q=user12345"),
                 ("jobs, failed, page 20", "/jobs", "status=failed&page=20"),
                 ("one job", "/jobs/" + failed_id, ""), ("failures", "/failures", ""),
                 ("retry-failed count", "/actions/retry-failed", "type=resize_image"),
                 ("purge dry run", "/actions/purge", "older_than=1d&status=completed")]
        print(f"{'page':<30} {'median':>8} {'worst':>8}")
        for name, page, query in pages:
            shared = DashboardApp(queue)
            if query == "cached":
                call(shared, page)
            times = []
            for _ in range(args.repeat):
                app = shared if query == "cached" else DashboardApp(queue)
                started = time.perf_counter()
                status = call(app, page, "" if query == "cached" else query)
                times.append((time.perf_counter() - started) * 1000)
                assert status == 200, (name, status)
            print(f"{name:<30} {statistics.median(times):>8.0f} {max(times):>8.0f}")


if __name__ == "__main__":
    main()
