"""Roles that the real-process tests start with ``python helpers.py ROLE QUEUE ARG ...``.

work QUEUE RUNS_LOG [--lease S] [--sleep S] [--max-attempts N] [--stop-file F | --until T]
    [--skip TYPE ...]
    run process_jobs (again and again until file F exists, or time.time() passes T, if
    given); every handler call appends payload["key"] to RUNS_LOG, then sleeps
    payload["sleep"] or --sleep seconds. Handlers: send_email and callback, and fail (which
    then raises); --skip leaves a type out.
    --lease and --max-attempts reach the worker where the backend declares them.
enqueue QUEUE COUNT [--unique-key K]
    enqueue COUNT jobs (all with unique key K, if given) and print their ids, one a line
Both take --start-line DIR (start when the test says so: see support.StartLine) or, for
older tests, --start-at T (start at time.time() T).
QUEUE is a TSV file's path, or redis://host:port/db#queue-name for the RQ backend.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbbasic_queue import Queue  # noqa: E402
from dbbasic_queue.backend import LEASES, WORKER_MAX_ATTEMPTS  # noqa: E402
from support import EMAIL, append_line, wait_at_start_line  # noqa: E402


def record_key(runs_log: str, sleep: float, then_raise: bool = False):
    """A handler that logs the payload's 'key' to RUNS_LOG each time it runs (and then
    raises ValueError, with ``then_raise``)."""
    def handler(payload):
        append_line(runs_log, str(payload["key"]))
        time.sleep(payload.get("sleep", sleep))  # the handler's work
        if then_raise:
            raise ValueError(f"job {payload['key']} fails")
        return {"ok": True}
    return handler


def make_queue(spec: str):
    """A TSV queue for a path; an RQ queue for ``redis://host:port/db#queue-name``."""
    if spec.startswith("redis://"):
        from dbbasic_queue.rq.backend import RQQueue
        url, _, name = spec.partition("#")
        return RQQueue(url, name=name)
    return Queue(spec)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["work", "enqueue"])
    parser.add_argument("queue")
    parser.add_argument("arg")
    parser.add_argument("--lease", type=float, default=300)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--until", type=float, default=0.0)
    parser.add_argument("--stop-file")
    parser.add_argument("--unique-key")
    parser.add_argument("--skip", action="append", default=[], help="a job type not handled")
    parser.add_argument("--start-line")
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    queue = make_queue(args.queue)
    if args.start_line:
        wait_at_start_line(args.start_line)
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    if args.role == "enqueue":
        ids = [queue.enqueue("send_email", dict(EMAIL, key=f"{os.getpid()}-{n}"),
                             unique_key=args.unique_key)
               for n in range(int(args.arg))]
        print("\n".join(ids))
        return
    handlers = {"send_email": record_key(args.arg, args.sleep),
                "fail": record_key(args.arg, args.sleep, then_raise=True),
                "callback": record_key(args.arg, args.sleep)}
    for job_type in args.skip:
        handlers.pop(job_type)
    options = {}
    if LEASES in queue.capabilities:
        options["lease_seconds"] = args.lease
    if WORKER_MAX_ATTEMPTS in queue.capabilities:
        options["max_attempts"] = args.max_attempts
    while True:
        queue.process_jobs(handlers, **options)
        if (os.path.exists(args.stop_file) if args.stop_file else time.time() >= args.until):
            break
        time.sleep(0.02)  # a cron worker's next run, not a wait for anything


if __name__ == "__main__":
    main()
