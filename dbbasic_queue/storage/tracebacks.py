"""Tracebacks of failed attempts, kept beside the queue so queue.tsv stays one short line a job.

Each failed attempt appends one line to the file of its UTC day, ``data/queue.tracebacks.
2026-11-28.tsv`` (a table: id, attempt, failed_at, error, the exception's class path, and the
traceback as a JSON string), so
``grep ID data/queue*.tsv`` shows a job's line and its tracebacks together. A traceback is cut
to its first and last frames beyond ``MAX_TRACEBACK_CHARS``; a job has at most one line per
attempt. The files are kept as every dated file is (``history.py``): appends of whole lines
under the file's own flock, a line cut short by a kill never left as a line, retention by
whole files.
"""

import contextlib
import json
import logging
import os
import traceback
from typing import Any, Dict, List

from ..errors import QueueError
from ..model.job import (error_text, is_cut, job_with_id_prefix, one_line, quote_field, to_json,
                         unquote_field)
from .history import DatedFiles, day_of, whole_lines
from .table import Table

logger = logging.getLogger("dbbasic_queue")

MAX_TRACEBACK_CHARS = 8000
COLUMNS = ("id", "attempt", "failed_at", "error", "exception", "traceback")
HEADER = ("\t".join(COLUMNS) + "\n").encode()


def class_path(error: BaseException) -> str:
    """``module.QualifiedName`` of the exception's class (``ValueError`` for builtins)."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def raising_frame(traceback_text: str) -> str:
    """Where a traceback's exception was raised: its last ``File "...", line N, in NAME``
    line, the path cut to its last two parts (``app/payments.py:41 in charge_card``); empty
    if it has none (a cut traceback keeps its end, so it has)."""
    for line in reversed(traceback_text.splitlines()):
        line = line.strip()
        if line.startswith('File "'):
            path, _, rest = line[len('File "'):].partition('", line ')
            number, _, name = rest.partition(", in ")
            short = "/".join(path.replace("\\", "/").split("/")[-2:])
            return f"{short}:{number} in {name}" if name else f"{short}:{number}"
    return ""


def format_traceback(error: BaseException) -> str:
    """The traceback of ``error`` as text, at most MAX_TRACEBACK_CHARS (its start and end)."""
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as failure:  # a broken exception: its attempt is recorded all the same
        text = f"(no traceback: formatting it raised {type(failure).__name__})"
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    half = MAX_TRACEBACK_CHARS // 2
    return f"{text[:half]}\n... {len(text) - 2 * half} characters left out ...\n{text[-half:]}"


class Tracebacks:
    """The traceback files of one queue file."""

    def __init__(self, table: Table) -> None:
        self.queue_path = table.path
        self.dated = DatedFiles(table.path, HEADER, kind="tracebacks")

    def path(self, day: str):
        return self.dated.path(day)

    def files(self):
        return [path for _, path in self.dated.files()]

    def add(self, job_id: str, attempt: int, failed_at: float, error: str,
            exception: BaseException) -> None:
        """Keep the traceback of one failed attempt (``error`` is its one-line text; cut for
        the queue's line, it is kept here up to MAX_TRACEBACK_CHARS). Not fsynced: a
        traceback is help, and the attempt's record is the queue's line."""
        if is_cut(error):
            error = error_text(exception, limit=MAX_TRACEBACK_CHARS)
        fields = (error, class_path(exception), to_json(format_traceback(exception)))
        line = "\t".join((job_id, str(attempt), str(int(failed_at)),
                          *(quote_field(one_line(field)) for field in fields))) + "\n"
        model = None
        with contextlib.suppress(FileNotFoundError):
            model = os.stat(self.queue_path)
        try:
            self.dated.append(day_of(failed_at), [line.encode("utf-8", "backslashreplace")],
                              model, durable=False)
        except QueueError as error:  # a planted link or FIFO: help lost, not the record
            logger.warning("%s; the traceback of job %s is not kept", error, job_id)

    def of(self, job_id: str) -> List[Dict[str, Any]]:
        """The kept tracebacks of a job, oldest first: attempt, failed_at, error, exception
        (its class path) and traceback."""
        prefix = job_with_id_prefix(job_id)
        if prefix is None:
            return []
        found = []
        for path in self.files():
            for line in whole_lines(path):
                if not line.startswith(prefix):
                    continue
                fields = line.rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
                if len(fields) != len(COLUMNS):
                    continue
                texts = [unquote_field(field) for field in fields[3:]]
                try:
                    if None in texts:
                        raise ValueError("broken quoting")
                    found.append({"attempt": int(fields[1]), "failed_at": int(fields[2]),
                                  "error": texts[0], "exception": texts[1],
                                  "traceback": json.loads(texts[2])})
                except ValueError:
                    continue  # a hand-edited line: tracebacks are help, not the record
        return found

    def last_attempts(self) -> Dict[str, Dict[str, Any]]:
        """Each job's last kept failed attempt, by job id, in one pass over the files:
        attempt, exception (its class path) and frame (where it was raised, see
        ``raising_frame``), for grouping failures."""
        found: Dict[str, Dict[str, Any]] = {}
        for path in self.files():
            for line in whole_lines(path):
                fields = line.rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
                if len(fields) != len(COLUMNS) or not fields[1].isdigit():
                    continue
                attempt = int(fields[1])
                known = found.get(fields[0])
                if known is not None and known["attempt"] > attempt:
                    continue
                exception, text = unquote_field(fields[4]), unquote_field(fields[5])
                try:
                    frame = raising_frame(json.loads(text)) if text is not None else ""
                except ValueError:
                    frame = ""
                found[fields[0]] = {"attempt": attempt, "exception": exception or "",
                                    "frame": frame}
        return found

    def remove_expired(self, drop_before: float) -> None:
        """Delete the files of days that ended before ``drop_before``."""
        for path in self.dated.expired(drop_before):
            self.dated.unlink(path)
