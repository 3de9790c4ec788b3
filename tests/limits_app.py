"""Handlers for the concurrency-limit tests (``--handlers limits_app:queue``): each job marks
itself running in $MARKS (a file per running job, named by key and pid), counts the marks of
its key whose process lives, logs that count with its key to $RUNS_LOG, works, and unmarks."""

import os
import time
from pathlib import Path

from dbbasic_queue import Queue

queue = Queue(os.environ.get("DBBASIC_QUEUE_FILE", "data/queue.tsv"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@queue.handler("sync_customer", limit=2)
def sync_customer(payload):
    marks = Path(os.environ["MARKS"])
    key = payload["customer"]
    mark = marks / f"{key}.{os.getpid()}.{time.monotonic_ns()}"
    mark.touch()
    try:
        running = [name for name in os.listdir(marks) if name.startswith(f"{key}.")
                   and _alive(int(name.split(".")[1]))]
        with open(os.environ["RUNS_LOG"], "a") as log:
            log.write(f"{payload['n']} {key} {len(running)}\n")
        time.sleep(payload.get("sleep", 0.02))
    finally:
        mark.unlink()
