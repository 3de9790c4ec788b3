"""Where a failed attempt's full traceback is kept: the queue file's ``error`` field holds one
line, and a task's result needs the whole traceback and the exception's class.

Each job with failed attempts has one small JSON file beside the queue, in a folder named
after it (``data/tasks.tsv`` -> ``data/tasks.errors/<job id>.json``), holding the errors of
its latest attempts, oldest first; it is replaced atomically (temporary file, fsync, rename).
So queue.tsv keeps one short line per job, and the store costs nothing until a task fails.
A file whose job has left the queue (retention, purge) is removed by ``prune``.
"""

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

logger = logging.getLogger("dbbasic_queue")

KEEP_ERRORS = 20  # errors kept per job: the latest ones
MAX_TRACEBACK = 20_000  # characters of one traceback kept: its head and its tail
_SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # ids the queue writes; others get no file


def folder(queue_path: Path) -> Path:
    return queue_path.with_name(queue_path.stem + ".errors")


def add_error(queue_path: Path, job_id: str, error: Dict[str, Any]) -> None:
    """Add one failed attempt's ``error`` (a JSON-able dict) to job ``job_id``'s errors.
    Never raises: a task's failure must reach the queue even when this cannot be written."""
    if not _SAFE_ID.fullmatch(job_id):
        logger.warning("job %r: no traceback kept for an id of this shape", job_id)
        return
    error = dict(error)
    text = error.get("traceback", "")
    if len(text) > MAX_TRACEBACK:
        head = MAX_TRACEBACK // 10
        error["traceback"] = (f"{text[:head]}\n... ({len(text) - MAX_TRACEBACK} characters "
                              f"left out) ...\n{text[head - MAX_TRACEBACK:]}")
    try:
        directory = folder(queue_path)
        directory.mkdir(exist_ok=True)
        errors = (errors_of(queue_path, job_id) + [error])[-KEEP_ERRORS:]
        fd, temporary = tempfile.mkstemp(prefix=f".{job_id}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(errors, file, ensure_ascii=False)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, directory / f"{job_id}.json")
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as failure:
        logger.warning("job %s: could not keep its traceback in %s: %s", job_id,
                       folder(queue_path), failure)


def errors_of(queue_path: Path, job_id: str) -> List[Dict[str, Any]]:
    """Job ``job_id``'s kept errors, oldest first; [] if none (or if the file is unreadable,
    which is logged)."""
    if not _SAFE_ID.fullmatch(job_id):
        return []
    path = folder(queue_path) / f"{job_id}.json"
    try:
        with open(path, encoding="utf-8") as file:
            errors = json.load(file)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as failure:
        logger.warning("%s: cannot be read (%s); the task's tracebacks are lost", path, failure)
        return []
    if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
        logger.warning("%s: not a list of errors; the task's tracebacks are lost", path)
        return []
    return errors


def prune(queue_path: Path, job_ids, grace_seconds: float = 3600) -> int:
    """Remove the files of jobs not in ``job_ids`` (an iterable of the ids in the queue file,
    read after this call began) and older than ``grace_seconds``; returns how many went."""
    directory = folder(queue_path)
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        return 0
    if not names:
        return 0
    present = set(job_ids)  # read after the listing: a file listed has its job in the queue
    removed = 0
    before = time.time() - grace_seconds
    for name in names:
        path = directory / name
        try:  # a temporary file left by a killed writer goes too
            if (name.endswith(".tmp") or name[:-5] not in present) and \
                    path.stat().st_mtime < before:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
