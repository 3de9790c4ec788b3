"""Roles that the real-process tests start with ``python helpers.py ROLE QUEUE ARG ...``.

work QUEUE RUNS_LOG [--lease S] [--sleep S] [--max-attempts N] [--until T] [--start-at T]
    run process_jobs (again and again until time.time() passes T, if given); every handler
    call appends payload["key"] to RUNS_LOG, then sleeps payload["sleep"] or --sleep seconds
enqueue QUEUE COUNT [--start-at T]
    enqueue COUNT jobs with unique keys and print their ids, one a line
QUEUE is a TSV file's path, or redis://host:port/db#queue-name for the RQ backend.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbbasic_queue import Queue  # noqa: E402

PAYLOAD = {"to": "user@example.com", "subject": "Welcome", "body": "Thanks for signing up!"}


def append_line(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())  # one small O_APPEND write: never interleaved
    finally:
        os.close(fd)


def record_key(runs_log: str, sleep: float):
    """A handler that logs the payload's unique 'key' to RUNS_LOG each time it runs."""
    def handler(payload):
        append_line(runs_log, str(payload["key"]))
        time.sleep(payload.get("sleep", sleep))
        return {"ok": True}
    return handler


def make_queue(spec: str):
    """A TSV queue for a path; an RQ queue for ``redis://host:port/db#queue-name``."""
    if spec.startswith("redis://"):
        from dbbasic_queue.rq_backend import RQQueue
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
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    queue = make_queue(args.queue)
    time.sleep(max(0.0, args.start_at - time.time()))
    if args.role == "enqueue":
        ids = [queue.enqueue("send_email", dict(PAYLOAD, key=f"{os.getpid()}-{n}"))
               for n in range(int(args.arg))]
        print("\n".join(ids))
        return
    handlers = {"send_email": record_key(args.arg, args.sleep)}
    while True:
        queue.process_jobs(handlers, args.max_attempts, lease_seconds=args.lease)
        if time.time() >= args.until:
            break
        time.sleep(0.02)


if __name__ == "__main__":
    main()
