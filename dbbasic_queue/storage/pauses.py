"""The pause file: ``<queue>.paused.tsv`` beside the queue file, the queues and job types no
worker starts a job of until they are resumed.

One line per pause, under a header, readable with cat:

    kind   name     paused_at
    queue  emails   2026-12-02T17:00:00Z
    type   charge_card  2026-12-02T17:05:00Z

Every claim of every worker (cron run or loop, any process) reads it, so a pause holds from
the next claim on and survives restarts; jobs already running finish. It is only ever
replaced whole (temporary file, fsync, rename) under the queue's lock. A line that does not
read is reported, as a corrupt line of the queue file is, left in place, and pauses nothing.
"""

import logging
import os
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple

from ..model.checks import checked_job_type
from ..model.job import corrupt_message
from ..model.queues import check_queue_name
from .files import (check_regular, fsync_directory, keep_mode_and_owner, open_own,
                    temporary_file)
from .table import Table

logger = logging.getLogger("dbbasic_queue")

COLUMNS = ("kind", "name", "paused_at")
HEADER = ("\t".join(COLUMNS) + "\n").encode()
KINDS = ("queue", "type")


def pause_path(queue_path: Path) -> Path:
    return queue_path.with_name(f"{queue_path.stem}.paused.tsv")


class Pauses:
    """The pause file of one queue file."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.path = pause_path(table.path)
        self._seen: Optional[Tuple[tuple, FrozenSet[str], FrozenSet[str]]] = None
        self._reported: set = set()

    def signature(self) -> Optional[tuple]:
        """(inode, size, mtime) of the file, or None: changes with every pause and resume."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    def current(self) -> Tuple[FrozenSet[str], FrozenSet[str]]:
        """(paused queues, paused job types) as the file says now: a stat per call, and a
        read only when the file changed."""
        signature = self.signature()
        if signature is None:
            return frozenset(), frozenset()
        if self._seen is None or self._seen[0] != signature:
            entries = self.entries()
            self._seen = (signature,
                          frozenset(name for kind, name, _ in entries if kind == "queue"),
                          frozenset(name for kind, name, _ in entries if kind == "type"))
        return self._seen[1], self._seen[2]

    def entries(self) -> List[Tuple[str, str, int]]:
        """(kind, name, paused_at) of each pause, in file order; corrupt lines are logged."""
        return [entry for entry in self._read() if isinstance(entry, tuple)]

    def _read(self) -> list:
        """Each line as (kind, name, paused_at), or as its raw bytes if it does not read."""
        try:
            fd = open_own(str(self.path), os.O_RDONLY)
        except FileNotFoundError:
            return []
        check_regular(fd, str(self.path))
        with open(fd, "rb") as file:
            if file.readline().rstrip(b"\r\n") != HEADER.rstrip(b"\n"):
                self._report(str(self.path), 1, ValueError(f"its header should be "
                                                           f"{' '.join(COLUMNS)!r}"), b"")
                return []
            found: list = []
            for number, line in enumerate(file, start=2):
                try:
                    found.append(_parse(line))
                except ValueError as error:
                    self._report(str(self.path), number, error, line)
                    found.append(line if line.endswith(b"\n") else line + b"\n")
            return found

    def _report(self, path: str, number: int, error: Exception, line: bytes) -> None:
        if line not in self._reported and len(self._reported) < 100:
            self._reported.add(line)
            logger.warning(corrupt_message(path, number, error))

    def mark(self, kind: str, name: str, paused: bool, now: float) -> bool:
        """Pause (``paused``) or resume the queue or job type ``name``; True if it changed."""
        if kind not in KINDS:
            raise ValueError(f"pause takes a queue or a job type, not {kind!r}")
        name = check_queue_name(name) if kind == "queue" else checked_job_type(name)
        with self.table.lock():
            lines = self._read()
            there = any(entry[:2] == (kind, name) for entry in lines if isinstance(entry, tuple))
            if there == paused:
                return False
            if paused:
                lines.append((kind, name, int(now)))
            else:
                lines = [entry for entry in lines
                         if not (isinstance(entry, tuple) and entry[:2] == (kind, name))]
            self._write(lines)
            return True

    def _write(self, lines: list) -> None:
        """Replace the file atomically, with the queue file's owner, mode and ACLs."""
        try:
            model: Optional[os.stat_result] = os.stat(self.table.path)
        except FileNotFoundError:
            model = None
        body = b"".join(entry if isinstance(entry, bytes) else _line(entry) for entry in lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = temporary_file(self.path.parent)
        try:
            with open(fd, "wb") as out:
                out.write(HEADER + body)
                out.flush()
                if model is not None:
                    keep_mode_and_owner(out.fileno(), model, self.path, str(self.table.path))
                os.fsync(out.fileno())
            os.replace(temp, self.path)
            temp = None
            fsync_directory(str(self.path.parent))
        finally:
            if temp is not None:
                os.unlink(temp)

    def listing(self) -> List[Dict[str, object]]:
        """The pauses as dicts of kind, name and paused_at (a timestamp)."""
        return [{"kind": kind, "name": name, "paused_at": at} for kind, name, at in self.entries()]


def _line(entry: Tuple[str, str, int]) -> bytes:
    import datetime  # here, not above: a run with no pause file never needs it
    kind, name, at = entry
    moment = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return f"{kind}\t{name}\t{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}\n".encode()


def _parse(line: bytes) -> Tuple[str, str, int]:
    if not line.endswith(b"\n"):
        raise ValueError("it is cut short (no newline)")
    try:
        kind, name, at = line.rstrip(b"\r\n").decode("utf-8").split("\t")
    except (UnicodeDecodeError, ValueError):
        raise ValueError("it is not three tab-separated fields: kind, name, paused_at") from None
    if kind not in KINDS:
        raise ValueError(f"its kind {kind!r} is neither 'queue' nor 'type'")
    import datetime
    try:
        name = check_queue_name(name) if kind == "queue" else checked_job_type(name)
        moment = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError) as error:
        raise ValueError(str(error)) from None
    return kind, name, int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
