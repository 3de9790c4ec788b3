"""The state file of periodic jobs: ``<queue>.schedules.tsv`` beside the queue file.

One line per schedule, under a header, readable with cat:

    schedule  when  catch_up  status  done_until  last_slot  fired_at  last_job  firing

Times are UTC (``2026-11-28T02:00:00Z``). ``when`` is the definition (``0 3 * * *
Europe/Berlin``, ``every 600s``); ``done_until`` the moment up to which the schedule's slots
are settled (fired, or passed over by its catch-up policy); ``status`` is ``active`` or
``removed`` (no longer declared in the workers' code); ``last_job`` the id of the job of the
last slot fired; ``firing`` is empty but while a firing is being written (see firing.py).
The file is only ever replaced whole (temporary file, fsync, rename), under the queue's lock.

Every time in it is a whole second from 1970 to the end of the year 9999 UTC, the bound the
queue keeps everywhere (checks.py). A line that does not read, a value out of that range
included, is corrupt: reported as ``corrupt_message`` words it for the queue file, and kept
as it is, in its place, by every rewrite; its schedule fires no more until it is fixed or
removed by hand (see firing.py).
"""

import datetime
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..model.checks import check_timestamp
from ..storage.files import (check_regular, fsync_directory, keep_mode_and_owner, open_own,
                             temporary_file)
from ..model.job import corrupt_message

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


@dataclass(frozen=True)
class CorruptLine:
    """A line of the state file that does not read: where it is, its bytes, why, and the
    schedule it names (its first field, if that can be a name), which it holds."""

    number: int
    position: int  # among the lines after the header: where a rewrite puts it back
    raw: bytes
    reason: str
    name: Optional[str]

    def message(self, path) -> str:
        """What every reader says about it: the words of a corrupt queue line."""
        return corrupt_message(path, self.number, self.reason)


@dataclass
class State:
    """The state file as read: its entries, its bytes (to see whether it changed), and the
    lines that did not read."""

    entries: Dict[str, Entry] = field(default_factory=dict)
    raw: bytes = b""
    corrupt: List[CorruptLine] = field(default_factory=list)

    def held(self) -> Dict[str, CorruptLine]:
        """The schedules a corrupt line names: they fire no more until it is fixed."""
        return {line.name: line for line in self.corrupt if line.name}


def read_state(path: Path) -> State:
    """The state file (an empty State if there is none). It is only ever replaced whole, so
    a read without the lock sees one version; a link or FIFO planted there is refused with a
    QueueError, as every file beside the queue is (files.py). A line that does not read goes
    into ``corrupt``; blank lines are skipped."""
    try:
        fd = open_own(str(path), os.O_RDONLY)
    except FileNotFoundError:
        return State()
    check_regular(fd, str(path))
    with open(fd, "rb") as file:
        raw = file.read()
    state = State(raw=raw)
    header, _, body = raw.partition(b"\n")
    has_header = header + b"\n" == HEADER
    lines = body.splitlines() if has_header else raw.splitlines()
    first = 2 if has_header else 1
    for position, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = _parse(line)
        except ValueError as error:
            state.corrupt.append(CorruptLine(first + position, position, line, str(error),
                                             _name_in(line)))
            continue
        state.entries[entry.schedule] = entry
    return state


def _parse(line: bytes) -> Entry:
    """One schedule's line; raises ValueError saying what is wrong with it."""
    fields = line.decode("utf-8").rstrip("\r").split("\t")
    if len(fields) != len(COLUMNS):
        raise ValueError(f"{len(fields)} fields instead of {len(COLUMNS)}")
    name, when, catch_up, status, done_until, last_slot, fired_at, last_job, firing = fields
    if not name or status not in ("active", "removed") or catch_up not in ("none", "latest", "all"):
        raise ValueError("not a schedule's line")
    if last_job and not _JOB_ID.match(last_job):
        raise ValueError(f"its last_job {last_job[:40]!r} is not a job id")
    return Entry(name, when, catch_up, status, _time("done_until", done_until),
                 _time("last_slot", last_slot or None), _time("fired_at", fired_at or None),
                 last_job, _firing(firing) if firing else ())


def _time(column: str, text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    try:
        seconds = seconds_of(text)
    except ValueError:
        raise ValueError(f"its {column} {text[:40]!r} is not a time such as "
                         f"2026-11-28T02:00:00Z") from None
    check_timestamp(f"its {column}", seconds)
    return seconds


def _firing(text: str) -> Tuple[Tuple[str, int, Optional[int]], ...]:
    """The ``firing`` column: a JSON list of [job id, slot, previous slot or null]."""
    try:
        jobs = json.loads(text)
    except RecursionError:
        raise ValueError("its firing column nests too deep") from None
    except ValueError as error:
        raise ValueError(f"its firing column is not JSON ({error})") from None
    if not isinstance(jobs, list) or not jobs:
        raise ValueError("its firing column is not a list of [job id, slot, previous slot]")
    read = []
    for job in jobs:
        if not (isinstance(job, list) and len(job) == 3 and isinstance(job[0], str)
                and _JOB_ID.match(job[0])):
            raise ValueError("its firing column is not a list of [job id, slot, previous slot]")
        job_id, slot, previous = job
        read.append((job_id, _slot(slot), None if previous is None else _slot(previous)))
    return tuple(read)


def _slot(value) -> int:
    if type(value) is not int:  # 1e999 reads as a float: infinity
        raise ValueError(f"its firing column holds {str(value)[:40]}, not a slot in whole seconds")
    check_timestamp("a slot in its firing column", value)
    return value


def _name_in(line: bytes) -> Optional[str]:
    """The first field of a line, if it can be a schedule's name."""
    try:
        name = line.split(b"\t", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if name and name == name.strip() and name.isprintable() else None


def write_state(path: Path, entries: Mapping[str, Entry], model: Optional[os.stat_result],
                attributes_of=None, kept: Sequence[CorruptLine] = ()) -> None:
    """Replace the state file atomically (temporary file, fsync, rename, directory fsync),
    with the owner and mode of ``model`` and the extended attributes (ACLs) of
    ``attributes_of``: the queue file's (its stat, and a descriptor or path). The corrupt
    lines ``kept`` go back where they were. Called under the queue's lock."""
    lines = [entry.line() for entry in entries.values()]
    for line in kept:
        lines.insert(line.position, line.raw + b"\n")
    fd, temp = temporary_file(path.parent)
    try:
        with open(fd, "wb") as out:
            out.write(HEADER + b"".join(lines))
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
