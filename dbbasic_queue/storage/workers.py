"""The worker registry: who works the queue, and when each last did.

``data/queue.workers.tsv`` holds one line per worker: a loop worker (``work --loop``: its
host and pid), or all the cron runs (``process_jobs``) of one host that serve the same job
types and queues, on one line whose counts add up run after run. Columns: the worker's name,
host, pid (the last run's, for cron runs), kind (``loop`` or ``cron``), what it serves, its
concurrency, when it started (a cron line: its first run), when its last run started,
when it was last seen, its
``interval`` (cron: the seconds between its last two runs' starts; loop: between
heartbeats), the jobs in hand then, and its completed, failed and retried counts.

A run writes its line when it ends, and a loop worker or a long run every HEARTBEAT_SECONDS
too: the whole file, atomically (temporary file, rename) under the file's own flock, never
the queue's lock. It is not fsynced: a crash may lose a heartbeat, never a job. Lines not
seen for STALE_SECONDS go, and at most MAX_WORKERS lines are kept (the least recently seen
go first), so the file stays small whatever runs.

A reader calls a worker ``late`` when it has not been seen within twice its interval (and a
minute's grace), and a loop worker of this host ``gone`` when its process no longer exists.
"""

import contextlib
import os
import zlib
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import QueueError
from ..log import logger
from .files import check_regular, keep_mode_and_owner, lock_current, open_own, temporary_file, unlock

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 7 * 86400
MAX_WORKERS = 200
GRACE_SECONDS = 60.0
MAX_BYTES = 1 << 20  # far more than MAX_WORKERS lines: a reader reads no more
MAX_PID = 1 << 22  # Linux's pid_max limit: a larger one is no process
COLUMNS = ("worker", "host", "pid", "kind", "serves", "concurrency", "started", "last_run",
           "last_seen", "interval", "in_hand", "completed", "failed", "retried")
# In the header, the counts are completed_jobs, failed_jobs, retried_jobs: a job status never
# stands as a field of its own, so grep and cut over data/queue*.tsv count only job lines.
HEADER = ("\t".join(column + "_jobs" if column in ("completed", "failed", "retried") else column
                    for column in COLUMNS) + "\n").encode()
_NUMBERS = ("pid", "concurrency", "started", "last_run", "last_seen", "interval", "in_hand",
            "completed", "failed", "retried")


def this_host() -> str:
    name = os.uname().nodename
    return "".join(" " if char in "\t\r\n" else char for char in name) or "localhost"


class WorkerRecord:
    """What one worker (a loop worker, or one cron run) reports of itself: its identity and
    the counts of the jobs it finished since it last wrote its line."""

    def __init__(self, kind: str, serves: str, concurrency: int, started: float) -> None:
        self.kind, self.serves, self.concurrency = kind, serves.replace("\t", " "), concurrency
        self.host, self.pid = this_host(), os.getpid()
        self.started = started
        if kind == "loop":
            self.name = f"{self.host}:{self.pid}:{int(started)}"
        else:  # every cron run of this host serving the same: one line
            digest = zlib.crc32(self.serves.encode("utf-8", "surrogatepass"))
            self.name = f"{self.host}:cron:{digest:08x}"
        self.unwritten = {"completed": 0, "failed": 0, "retried": 0}
        self.minutes: Dict[int, Dict[str, int]] = {}  # the same, by minute (throughput.py)

    def count(self, outcome: str, now: float) -> None:
        """A job finished at ``now``: ``completed``, ``failed`` or ``retried`` (to run
        again)."""
        self.unwritten[outcome] += 1
        minute = self.minutes.setdefault(int(now) // 60 * 60, dict.fromkeys(self.unwritten, 0))
        minute[outcome] += 1

    def take_minutes(self) -> Dict[int, Dict[str, int]]:
        """The counts by minute not written yet, forgotten here."""
        minutes, self.minutes = self.minutes, {}
        return minutes


class Workers:
    """The registry file of one queue file."""

    def __init__(self, queue_path: Path) -> None:
        self.path = queue_path.parent / f"{queue_path.stem}.workers.tsv"

    def record(self, worker: WorkerRecord, now: float, in_hand: int = 0) -> None:
        """Write ``worker``'s line as of ``now`` (its unwritten counts added to the line's)."""
        try:
            fd, _ = lock_current(str(self.path), os.O_RDWR, create=True)
        except FileNotFoundError:  # no directory: no queue either
            return
        try:
            lines = _parse(os.pread(fd, min(os.fstat(fd).st_size, MAX_BYTES), 0))
            old = lines.get(worker.name)
            row = dict(old) if old else {
                "worker": worker.name, "started": int(worker.started), "completed": 0,
                "failed": 0, "retried": 0, "interval": 0}
            if worker.kind == "cron" and old is not None and worker.started > old["last_run"]:
                row["interval"] = int(worker.started - old["last_run"])
            elif worker.kind == "loop" and old is not None:
                row["interval"] = int(now - old["last_seen"])
            row.update(host=worker.host, pid=worker.pid, kind=worker.kind, serves=worker.serves,
                       concurrency=worker.concurrency, last_seen=int(now), in_hand=in_hand,
                       last_run=int(worker.started))
            for outcome, count in worker.unwritten.items():
                row[outcome] = row.get(outcome, 0) + count
            worker.unwritten = dict.fromkeys(worker.unwritten, 0)
            lines[worker.name] = row
            kept = sorted((line for line in lines.values()
                           if line["last_seen"] >= now - STALE_SECONDS),
                          key=lambda line: line["last_seen"], reverse=True)[:MAX_WORKERS]
            self._replace(fd, kept)
        finally:
            unlock(fd)

    def listing(self, now: float) -> List[Dict[str, object]]:
        """Every worker's line as a dict, most recently seen first, with its ``state``:
        ``alive``, ``late`` or ``gone`` (see the module docstring)."""
        try:
            fd = open_own(str(self.path), os.O_RDONLY)  # never a link, never a FIFO's wait
            check_regular(fd, str(self.path))  # closes it if not
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (OSError, QueueError) as error:  # planted, or another user's: no registry
            logger().warning("%s: not read as the worker registry (%s)", self.path,
                             getattr(error, "strerror", None) or error)
            return []
        with open(fd, "rb") as file:
            lines = _parse(file.read(MAX_BYTES))
        host = this_host()
        listed = []
        for row in sorted(lines.values(), key=lambda line: line["last_seen"], reverse=True):
            row = {column: row[column] for column in COLUMNS}
            expected = (row["interval"] or 60 if row["kind"] == "cron" else HEARTBEAT_SECONDS)
            if row["kind"] == "loop" and row["host"] == host and not _running(row["pid"]):
                row["state"] = "gone"
            elif now - row["last_seen"] > 2 * max(expected, 1) + GRACE_SECONDS:
                row["state"] = "late"
            else:
                row["state"] = "alive"
            listed.append(row)
        return listed

    def _replace(self, locked: int, rows) -> None:
        """The file, replaced by ``rows`` (with its flock, ``locked``, held)."""
        fd, temp = temporary_file(self.path.parent)
        try:
            with open(fd, "wb") as out:
                out.write(HEADER)
                for row in rows:
                    fields = [str(row[column]) for column in COLUMNS]
                    out.write(("\t".join(fields) + "\n").encode("utf-8", "backslashreplace"))
                out.flush()
                keep_mode_and_owner(out.fileno(), os.fstat(locked), self.path)
            os.replace(temp, self.path)
            temp = None
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)


def _parse(data: bytes) -> Dict[str, Dict[str, object]]:
    """The lines of a registry file, by worker name; a line that does not read (cut by
    hand) is left out: the next write drops it, a heartbeat being no record to keep."""
    rows = {}
    for line in data.split(b"\n")[1:]:
        fields = line.decode("utf-8", "replace").split("\t")
        if len(fields) != len(COLUMNS):
            continue
        row: Dict[str, object] = dict(zip(COLUMNS, fields))
        try:
            for column in _NUMBERS:
                row[column] = int(row[column])
        except ValueError:
            continue
        if not 0 < row["pid"] < MAX_PID or any(row[column] < 0 for column in _NUMBERS):
            continue
        rows[str(row["worker"])] = row
    return rows


def _running(pid: int) -> Optional[bool]:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True
