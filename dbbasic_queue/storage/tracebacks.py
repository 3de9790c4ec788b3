"""Tracebacks of failed attempts, kept beside the queue so queue.tsv stays one short line a job.

Each failed attempt appends one line to the file of its UTC day, ``data/queue.tracebacks.
2026-11-28.tsv`` (a table: id, attempt, failed_at, error, the exception's class path, and the
traceback as a JSON string), so
``grep ID data/queue*.tsv`` shows a job's line and its tracebacks together. A traceback is cut
to its first and last frames beyond ``MAX_TRACEBACK_CHARS``; a job has at most one line per
attempt; retention deletes whole files, as it does archive files.
"""

import calendar
import contextlib
import json
import logging
import os
import re
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List

from ..errors import QueueError
from .files import check_regular, keep_mode_and_owner, open_own
from ..model.job import error_text, is_cut, job_with_id_prefix
from ..model.job import to_json
from .table import Table

logger = logging.getLogger("dbbasic_queue")

MAX_TRACEBACK_CHARS = 8000
COLUMNS = ("id", "attempt", "failed_at", "error", "exception", "traceback")
HEADER = ("\t".join(COLUMNS) + "\n").encode()


def class_path(error: BaseException) -> str:
    """``module.QualifiedName`` of the exception's class (``ValueError`` for builtins)."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


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
    """The traceback files of one queue file; appends hold the queue's lock."""

    def __init__(self, table: Table) -> None:
        self.queue_path = table.path
        self.directory = table.path.parent
        self.stem = table.path.stem
        self.lock_path = table.lock_path
        self.name = re.compile(re.escape(self.stem) + r"\.tracebacks\.(\d{4}-\d{2}-\d{2})\.tsv\Z")

    def path(self, day: str) -> Path:
        return self.directory / f"{self.stem}.tracebacks.{day}.tsv"

    def files(self) -> List[Path]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [self.directory / name for name in sorted(names) if self.name.match(name)]

    def add(self, job_id: str, attempt: int, failed_at: float, error: str,
            exception: BaseException) -> None:
        """Keep the traceback of one failed attempt (``error`` is its one-line text; cut for
        the queue's line, it is kept here up to MAX_TRACEBACK_CHARS)."""
        if is_cut(error):
            error = error_text(exception, limit=MAX_TRACEBACK_CHARS)
        day = time.strftime("%Y-%m-%d", time.gmtime(failed_at))
        line = "\t".join((job_id, str(attempt), str(int(failed_at)), _field(error),
                          _field(class_path(exception)),
                          _field(to_json(format_traceback(exception))))) + "\n"
        path = self.path(day)
        with Table(path, lock_path=self.lock_path).lock():
            try:
                fd = open_own(str(path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                size = check_regular(fd, str(path)).st_size
            except QueueError as error:  # a planted link or FIFO: help lost, not the record
                logger.warning("%s; the traceback of job %s is not kept", error, job_id)
                return
            try:
                if size == 0:
                    with contextlib.suppress(FileNotFoundError):
                        keep_mode_and_owner(fd, os.stat(self.queue_path), path,
                                            attributes_of=str(self.queue_path))
                    os.write(fd, HEADER)
                elif os.pread(fd, 1, size - 1) != b"\n":
                    os.write(fd, b"\n")  # a line cut short stays one line
                os.write(fd, line.encode("utf-8", "backslashreplace"))
            finally:
                os.close(fd)

    def of(self, job_id: str) -> List[Dict[str, Any]]:
        """The kept tracebacks of a job, oldest first: attempt, failed_at, error, exception
        (its class path) and traceback."""
        prefix = job_with_id_prefix(job_id)
        if prefix is None:
            return []
        found = []
        for path in self.files():
            for line in _lines(path):
                if not line.startswith(prefix):
                    continue
                fields = line.rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
                if len(fields) != len(COLUMNS):
                    continue
                try:
                    found.append({"attempt": int(fields[1]), "failed_at": int(fields[2]),
                                  "error": _unfield(fields[3]), "exception": _unfield(fields[4]),
                                  "traceback": json.loads(_unfield(fields[5]))})
                except ValueError:
                    continue  # a hand-edited line: tracebacks are help, not the record
        return found

    def remove_expired(self, drop_before: float) -> None:
        """Delete the files of days that ended before ``drop_before``."""
        for path in self.files():
            day = self.name.match(path.name).group(1)
            year, month, date = (int(part) for part in day.split("-"))
            if calendar.timegm((year, month, date, 0, 0, 0)) + 86400 <= drop_before:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _lines(path: Path):
    """The complete lines after the header (none if the file went away, or is a symlink or
    something else than a regular file)."""
    try:
        fd = open_own(str(path), os.O_RDONLY)
        check_regular(fd, str(path))
    except (OSError, QueueError):
        return
    with open(fd, "rb") as file:
        file.readline()
        for line in file:
            if line.endswith(b"\n"):
                yield line


def _field(text: str) -> str:
    """A field as dbbasic-tsv's csv writer quotes it (tabs and line breaks never occur:
    errors are one line and tracebacks are JSON strings)."""
    text = text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return '"' + text.replace('"', '""') + '"' if '"' in text else text


def _unfield(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text
