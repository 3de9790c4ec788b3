"""The state file of periodic jobs: ``<queue>.schedules.tsv`` beside the queue file.

One line per schedule, under a header, readable with cat:

    schedule  when  catch_up  status  done_until  last_slot  fired_at  last_job  firing

Times are UTC (``2026-11-28T02:00:00Z``). ``when`` is the definition (``0 3 * * *
Europe/Berlin``, ``every 600s``); ``done_until`` the moment up to which the schedule's slots
are settled (fired, or passed over by its catch-up policy); ``status`` is ``active`` or
``removed`` (no longer declared in the workers' code); ``last_job`` the id of the job of the
last slot fired; ``firing`` is empty but while a firing is being written (see firing.py).
The file is only ever replaced whole (temporary file, fsync, rename), under the queue's lock.
"""

import datetime
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .files import check_regular, fsync_directory, keep_mode_and_owner, open_own
from .storage import TEMP_PREFIX

COLUMNS = ("schedule", "when", "catch_up", "status", "done_until", "last_slot", "fired_at",
           "last_job", "firing")
HEADER = ("\t".join(COLUMNS) + "\n").encode()
_JOB_ID = re.compile(r"[0-9a-f]{16}\Z")


def state_path(queue_path: Path) -> Path:
    return queue_path.with_name(f"{queue_path.stem}.schedules.tsv")


@dataclass(frozen=True)
class Entry:
    """One schedule's line of the state file."""

    schedule: str
    when: str
    catch_up: str
    status: str
    done_until: int
    last_slot: Optional[int] = None
    fired_at: Optional[int] = None
    last_job: str = ""
    firing: Tuple[Tuple[str, int, Optional[int]], ...] = ()  # (job id, slot, previous slot)

    def line(self) -> bytes:
        fields = (self.schedule, self.when, self.catch_up, self.status, time_text(self.done_until),
                  time_text(self.last_slot), time_text(self.fired_at), self.last_job,
                  json.dumps([list(job) for job in self.firing]) if self.firing else "")
        return ("\t".join(fields) + "\n").encode()


@dataclass
class State:
    """The state file as read: its entries, its bytes (to see whether it changed), and the
    lines that did not read."""

    entries: Dict[str, Entry] = field(default_factory=dict)
    raw: bytes = b""
    corrupt: List[Tuple[int, str, str]] = field(default_factory=list)


def read_state(path: Path) -> State:
    """The state file (an empty State if there is none). It is only ever replaced whole, so
    a read without the lock sees one version; a link or FIFO planted there is refused with a
    QueueError, as every file beside the queue is (files.py)."""
    try:
        fd = open_own(str(path), os.O_RDONLY)
    except FileNotFoundError:
        return State()
    check_regular(fd, str(path))
    with open(fd, "rb") as file:
        raw = file.read()
    state = State(raw=raw)
    header, _, body = raw.partition(b"\n")
    lines = body.splitlines() if header + b"\n" == HEADER else raw.splitlines()
    first = 2 if header + b"\n" == HEADER else 1
    for number, line in enumerate(lines, start=first):
        try:
            entry = _parse(line)
        except (ValueError, TypeError) as error:
            state.corrupt.append((number, line[:120].decode("utf-8", "replace"), str(error)))
            continue
        state.entries[entry.schedule] = entry
    return state


def _parse(line: bytes) -> Entry:
    fields = line.decode("utf-8").split("\t")
    if len(fields) != len(COLUMNS):
        raise ValueError(f"{len(fields)} fields instead of {len(COLUMNS)}")
    name, when, catch_up, status, done_until, last_slot, fired_at, last_job, firing = fields
    if not name or status not in ("active", "removed") or catch_up not in ("none", "latest", "all"):
        raise ValueError("not a schedule's line")
    jobs = tuple((str(i), int(s), None if p is None else int(p))
                 for i, s, p in json.loads(firing)) if firing else ()
    if any(not _JOB_ID.match(job_id) for job_id, _, _ in jobs) or (last_job and not _JOB_ID.match(last_job)):
        raise ValueError("a job id is not one")
    return Entry(name, when, catch_up, status, seconds_of(done_until), seconds_of(last_slot or None),
                 seconds_of(fired_at or None), last_job, jobs)


def write_state(path: Path, entries: Mapping[str, Entry], model: Optional[os.stat_result],
                attributes_of=None) -> None:
    """Replace the state file atomically (temporary file, fsync, rename, directory fsync),
    with the owner and mode of ``model`` and the extended attributes (ACLs) of
    ``attributes_of``: the queue file's (its stat, and a descriptor or path). Called under
    the queue's lock."""
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as out:
            out.write(HEADER + b"".join(entry.line() for entry in entries.values()))
            out.flush()
            if model is not None:
                keep_mode_and_owner(out.fileno(), model, path, attributes_of)
            os.fsync(out.fileno())
        os.replace(temp, path)
        temp = None
        fsync_directory(str(path.parent))
    finally:
        if temp is not None:
            os.unlink(temp)


def time_text(seconds: Optional[int]) -> str:
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_of(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
