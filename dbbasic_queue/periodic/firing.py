"""Firing periodic jobs exactly once per slot, whichever workers run and however they overlap.

A firing holds the queue's lock (the one every writer of the queue file takes) from reading
the state file (state.py) to appending the jobs: it plans from the state read
without the lock, then, under the lock, checks the state is still what it planned from,
writes the new state with the jobs it is about to add listed in ``firing``, appends them,
and clears ``firing``. Two workers seeing the same due slot therefore fire it once: the
second finds the state changed under the lock, plans again, and finds nothing due. A worker
killed between writing the state and clearing ``firing`` leaves the jobs listed there; the
next firing looks for them in the queue and archive files and adds those missing, so no
slot is lost or doubled.

A firing cut short by a failed write (a full disk) is completed the same way by the next
run: a job counts as in the queue only if its whole line is there, so a line cut short is
never taken for it; the missing jobs are added under new ids (a cut line keeps the old one,
a corrupt line left as it is) and the state records those.

Deleting the state file is safe: each schedule is then new again, its slots counting from
the next worker run on (slots missed before that are not caught up; none fires twice). A
line that does not read is logged once per process in the words of a corrupt queue line,
kept as it is, and holds its schedule (named by its first field): that one fires no more
until the line is fixed (it then catches up as after an outage) or removed (it starts
afresh); every other schedule fires. A schedule settled more than CLOCK_ERROR_SECONDS ahead
of the clock (a clock set ahead and back) resumes from now, with one warning. One
schedule's slots that cannot be worked out (no input is known to cause it) are logged and
leave that schedule as it is, never the others.
"""

import datetime
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import hooks
from ..model.checks import payload_json
from ..model.words import age
from ..model.words import plural
from ..errors import QueueError
from ..model.job import PENDING, job_line, parse_line, reads
from ..model.queues import DEFAULT_QUEUE
from .state import (CorruptLine, Entry, State, read_state, state_path, time_text,
                             write_state)
from .schedules import (CATCH_UP, CLOCK_ERROR_SECONDS, MAX_CATCH_UP_SLOTS, Schedule,
                        describe_slot, due, first_due, next_slot, payload, settled_until,
                        when_from_text)

logger = logging.getLogger("dbbasic_queue")

RACED = "raced"  # the state changed between the plan and the lock: plan again
DONE = "done"  # written under the lock; no job to append
TRIES = 5  # plans in one firing; each failed one means another worker made progress
ID_PREFIX = 17  # a job line starts with its id (16 hex characters) and a tab
_CAUGHT_UP = {"latest": "the latest fired once", "none": "none fired",
              "all": f"only the latest {MAX_CATCH_UP_SLOTS} fire"}


@dataclass
class Plan:
    """What one firing writes: the state, the jobs to append (and their lines), the log."""

    entries: Dict[str, Entry]
    lines: List[bytes] = field(default_factory=list)
    # schedules found mid-firing: each one's entry as read, and the ids of it the queue lacked
    recover: Dict[str, Tuple[Entry, frozenset]] = field(default_factory=dict)
    messages: List[Tuple[int, str]] = field(default_factory=list)
    changed: bool = False


class Firing:
    """Fires the due slots of ``schedules`` into ``queue``; one per worker run. ``next_due``
    is when a slot may next fall due (None: look at the next chance)."""

    def __init__(self, queue, schedules: Mapping[str, Schedule]) -> None:
        self.queue = queue
        self.schedules = dict(schedules)
        self.path = state_path(queue.path)
        self.next_due: Optional[float] = None
        self.lock = threading.Lock()  # the run's thread and its keeper thread

    def due(self, now: float) -> bool:
        return self.next_due is None or now >= self.next_due

    def fire(self) -> None:
        """Fire every due slot, exactly once whatever other workers do. A failure to use the
        state file or to write the jobs is logged, and the worker goes on running jobs; the
        next try completes a firing it cut short."""
        with self.lock:
            try:
                self._fire()
            except QueueError as error:  # a file that is not the queue's: its message says why
                self.next_due = self.queue.clock() + 60
                logger.error("could not fire the periodic jobs: %s; trying again in a minute",
                             error)
            except OSError as error:  # a full disk, a file size limit, a permission
                self.next_due = self.queue.clock() + 60
                logger.error("could not fire the periodic jobs: %s (the queue file or %s); "
                             "trying again in a minute or at the next run, which adds the jobs "
                             "of a firing cut short: no slot is lost", error, self.path)
            except Exception:
                self.next_due = self.queue.clock() + 60
                logger.exception("could not fire the periodic jobs (state in %s); trying again "
                                 "in a minute", self.path)

    def _fire(self) -> None:
        for _ in range(TRIES):
            state = read_state(self.path)
            plan = self._plan(state, self.queue.clock())
            if not plan.changed:
                self._report(state, plan)
                return
            outcome = self.queue.table.append(b"".join(plan.lines), durable=self.queue.durable,
                                              unless=lambda fd: self._apply(fd, state, plan))
            if outcome == RACED:
                continue
            if outcome is None:
                self._settle(plan)
                if hooks.registered:
                    _announce(plan.lines)
            self._report(state, plan)
            if not plan.recover:
                return  # after a recovery, plan again: slots may have fallen due meanwhile
        self.next_due = None
        logger.info("periodic jobs: the state changed %d times while this worker decided; "
                    "it looks again at its next chance", TRIES)

    def _plan(self, state: State, now: float) -> Plan:
        plan = Plan(dict(state.entries))
        held = state.held()
        for entry in state.entries.values():
            if entry.firing:
                self._plan_recovery(plan, entry)
        for name, schedule in self.schedules.items():
            if name in held:
                continue  # its line does not read: reported, and left as it is
            try:
                entry, lines, messages = self._plan_schedule(schedule, plan.entries.get(name), now)
            except (ArithmeticError, ValueError, OSError) as error:
                self._cannot_work_out(name, error)
                continue
            if entry != plan.entries.get(name):
                plan.entries[name], plan.changed = entry, True
            plan.lines.extend(lines)
            plan.messages.extend(messages)
        for name, entry in list(plan.entries.items()):
            if name not in self.schedules and entry.status == "active":
                plan.entries[name], plan.changed = replace(entry, status="removed"), True
                plan.messages.append((logging.WARNING, f"schedule {name} ({entry.when}) is not "
                                      f"declared in this worker's code: it fires no more (its last "
                                      f"slot: {time_text(entry.last_slot) or 'none'})"))
        return plan

    def _plan_schedule(self, schedule: Schedule, entry: Optional[Entry], now: float):
        """One declared schedule's new entry, the lines of the jobs it fires, and the log."""
        name, zone = schedule.name, schedule.when.zone
        messages: List[Tuple[int, str]] = []
        if entry is None:
            entry = Entry(name, schedule.text, schedule.catch_up, "active", int(now))
            first = next(schedule.when.slots_after(now), None)
            messages.append((logging.INFO, f"schedule {name} ({schedule.text}, catch_up="
                             f"{schedule.catch_up}) is new: its first slot is "
                             f"{describe_slot(first, zone)}"))
        elif entry.when != schedule.text:
            messages.append((logging.INFO, f"schedule {name} changed from {entry.when} to "
                             f"{schedule.text}: its slots count from now"))
            entry = replace(entry, when=schedule.text, done_until=int(now))
        else:
            if entry.status != "active":
                messages.append((logging.INFO, f"schedule {name} is declared again"))
            settled = settled_until(entry.done_until, now)
            if settled != entry.done_until:
                upcoming = next(schedule.when.slots_after(now), None)
                messages.append((logging.WARNING, f"schedule {name}: its slots are settled up to "
                                 f"{time_text(entry.done_until)}, {age(entry.done_until - now)} "
                                 f"ahead of this worker's clock ({time_text(int(now))}), more "
                                 f"than a clock stepped back ({age(CLOCK_ERROR_SECONDS)} at "
                                 f"most) explains: taken for a clock that was set ahead and "
                                 f"back, it resumes from now, its next slot "
                                 f"{describe_slot(upcoming, zone)} (a slot it fired ahead of "
                                 f"time fires again when its time comes)"))
                entry = replace(entry, done_until=settled)
        entry = replace(entry, status="active", catch_up=schedule.catch_up)
        lines: List[bytes] = []
        if not entry.firing:
            entry = self._plan_slots(schedule, entry, now, lines, messages)
        return entry, lines, messages

    def _plan_slots(self, schedule: Schedule, entry: Entry, now: float, lines: List[bytes],
                    messages: List[Tuple[int, str]]) -> Entry:
        """The entry once its due slots are fired (their lines added to ``lines``)."""
        decided = due(schedule, entry.done_until, now)
        if decided.done_until == entry.done_until:
            return entry
        jobs, previous = [], entry.last_slot
        zone = schedule.when.zone
        for slot in decided.slots:
            job_id = new_job_id()
            jobs.append((job_id, slot, previous))
            lines.append(_line(schedule.name, job_id, slot, previous, int(now), zone))
            previous = slot
        fired = {"last_slot": previous, "fired_at": int(now), "last_job": jobs[-1][0]} if jobs else {}
        if jobs:
            messages.append((logging.INFO, f"schedule {schedule.name}: fired "
                             f"{plural(len(jobs), 'slot')}, the last "
                             f"{describe_slot(previous, zone)} (job {jobs[-1][0]})"))
        if decided.passed_over:
            level = logging.INFO if schedule.catch_up == "latest" else logging.WARNING
            messages.append((level, f"schedule {schedule.name}: passed over "
                             f"{plural(decided.passed_over, 'slot')} up to "
                             f"{describe_slot(decided.done_until, zone)}, missed while no "
                             f"worker ran (catch_up={schedule.catch_up}: "
                             f"{_CAUGHT_UP[schedule.catch_up]})"))
        return replace(entry, done_until=decided.done_until, firing=tuple(jobs), **fired)

    def _plan_recovery(self, plan: Plan, entry: Entry) -> None:
        """A firing not cleared yet: its worker is about to, or died, or failed to write. Add
        the listed jobs the queue lacks (under the lock, jobs can only be missing if their
        worker died or gave up), under new ids: a line cut short may hold an old one."""
        missing = self._missing(entry, None)
        when, _ = when_from_text(entry.when)
        zone = datetime.timezone.utc if when is None else when.zone
        renamed, firing = {}, []
        for job_id, slot, previous in entry.firing:
            if job_id in missing:
                renamed[job_id] = new_id = new_job_id()
                firing.append((new_id, slot, previous))
                plan.lines.append(_line(entry.schedule, new_id, slot, previous,
                                        entry.fired_at or slot, zone))
        plan.recover[entry.schedule] = (entry, frozenset(missing))
        plan.entries[entry.schedule] = replace(entry, firing=tuple(firing),
                                               last_job=renamed.get(entry.last_job, entry.last_job))
        plan.changed = True
        if missing:
            plan.messages.append((logging.WARNING, f"schedule {entry.schedule}: a firing of "
                                  f"{plural(len(entry.firing), 'job')} was cut short (its worker "
                                  f"stopped, or could not write); the {len(missing)} not in the "
                                  f"queue whole {'is' if len(missing) == 1 else 'are'} added now"))

    def _missing(self, entry: Entry, fd: Optional[int]) -> set:
        """The ids in ``entry.firing`` whose whole line is neither in the queue file (read
        through ``fd`` under the lock, else from its path) nor in its archive files. A line
        cut short by a failed write or a kill does not count, whether or not a later append
        ended it."""
        wanted = {job_id.encode() + b"\t": job_id for job_id, _, _ in entry.firing}
        if fd is not None:
            with open(os.dup(fd), "rb") as file:
                file.seek(0)
                lines = [line for line in file if line[:ID_PREFIX] in wanted]
        else:
            lines = [line for _, line in self.queue.table.lines() if line[:ID_PREFIX] in wanted]
        found = {line[:ID_PREFIX] for line in lines if line.endswith(b"\n") and reads(line)}
        return {job_id for prefix, job_id in wanted.items()
                if prefix not in found and self.queue.archive.find(prefix) is None}

    def _apply(self, fd: int, seen: State, plan: Plan):
        """Under the queue's lock, the queue file open at ``fd``: write the new state unless
        another worker changed it since ``seen``; None lets the append add the jobs."""
        if read_state(self.path).raw != seen.raw:
            return RACED
        for entry, missing in plan.recover.values():
            if self._missing(entry, fd) != missing:
                return RACED  # another worker added them meanwhile
        write_state(self.path, plan.entries, os.fstat(fd), fd, kept=seen.corrupt)
        return None if plan.lines else DONE

    def _settle(self, plan: Plan) -> None:
        """The jobs are in the queue: clear ``firing`` where it still lists them."""
        with self.queue.table.lock():
            state = read_state(self.path)
            entries = dict(state.entries)
            for name, written in plan.entries.items():
                if written.firing and entries.get(name) == written:
                    entries[name] = replace(written, firing=())
            if entries != state.entries:
                write_state(self.path, entries, *_model(self.queue.path), kept=state.corrupt)

    def _cannot_work_out(self, name: str, error: Exception) -> None:
        if first_time((self.path, name, repr(error))):
            logger.error("schedule %s: its slots could not be worked out (%s: %s); it is left "
                         "as it is and does not fire, the other schedules do", name,
                         type(error).__name__, error, exc_info=error)

    def _report(self, state: State, plan: Plan) -> None:
        for line in state.corrupt:
            if first_time((self.path, line.raw)):
                logger.warning(corrupt_report(self.path, line))
        for level, message in plan.messages:
            logger.log(level, message)
        held, upcoming = state.held(), []
        for name, schedule in self.schedules.items():
            if name in plan.entries and name not in held:
                try:
                    upcoming.append(first_due(schedule, plan.entries[name].done_until))
                except (ArithmeticError, ValueError, OSError):
                    continue  # logged by the plan
        upcoming = [slot for slot in upcoming if slot is not None]
        self.next_due = min(upcoming) if upcoming else None


def corrupt_report(path, line: CorruptLine) -> str:
    """What the workers and the listings say about a line of the state file that does not
    read: the words of a corrupt queue line, and what it means for its schedule."""
    held = (f"; schedule {line.name} does not fire until then (fixed, it catches up as after "
            f"an outage; removed, it starts afresh)") if line.name else ""
    return line.message(path) + held


_reported: set = set()  # what this process has logged once already (see first_time)


def first_time(key) -> bool:
    """Whether ``key`` (a corrupt line, a schedule's failure) is news to this process's log;
    a few hundred are remembered, then the log may repeat them."""
    if key in _reported:
        return False
    if len(_reported) >= 1000:
        _reported.clear()
    _reported.add(key)
    return True


def listing(queue, declared: Optional[Mapping[str, Schedule]] = None) -> List[Dict[str, Any]]:
    """Each schedule of the state file (and of ``declared``, when given): its definition,
    status, last fired slot and next slot, for ``stats()`` and ``dbbasic-queue schedules``.
    Status: active, removed, corrupt (its line does not read: logged once, next slot None);
    with ``declared``: new (no worker has seen it yet), changed (workers will restart it from
    their next run), not declared. The next slot is the one the workers will fire: for a
    schedule settled far ahead of the clock, counted from now (see settled_until)."""
    path = state_path(queue.path)
    state = read_state(path)
    now = queue.clock()
    corrupt = {line.name or f"line {line.number}": line for line in state.corrupt}
    for line in state.corrupt:
        if first_time((path, line.raw)):
            logger.warning(corrupt_report(path, line))
    rows = []
    for name in sorted(set(state.entries) | set(declared or ()) | set(corrupt)):
        entry, schedule = state.entries.get(name), (declared or {}).get(name)
        if name in corrupt:
            rows.append(_corrupt_row(name, corrupt[name], schedule))
            continue
        if schedule is None:
            when, _ = when_from_text(entry.when)
            status = entry.status if declared is None else "not declared"
            schedule = None if when is None else Schedule(name, when, entry.catch_up)
        elif entry is None or entry.when != schedule.text:
            status = "new" if entry is None else "changed"
        else:
            status = "active"
        done_until = (settled_until(entry.done_until, now) if status in ("active", "removed")
                      else int(now))
        upcoming = None
        if schedule is not None and status not in ("removed", "not declared"):
            try:
                upcoming = next_slot(schedule, done_until, now)
            except (ArithmeticError, ValueError, OSError):
                upcoming = None  # the workers log it
        rows.append({"schedule": name, "when": schedule.text if schedule else entry.when,
                     "catch_up": schedule.catch_up if schedule else entry.catch_up,
                     "status": status, "last_slot": entry.last_slot if entry else None,
                     "fired_at": entry.fired_at if entry else None,
                     "last_job": (entry.last_job or None) if entry else None,
                     "next_slot": upcoming,
                     "timezone": schedule.when.timezone if schedule else "UTC"})
    return rows


def _corrupt_row(name: str, line: CorruptLine, schedule: Optional[Schedule]) -> Dict[str, Any]:
    """A listing's row for a corrupt line: its definition as far as it reads, no slots."""
    fields = line.raw.decode("utf-8", "replace").split("\t")
    when = schedule.text if schedule else (fields[1] if len(fields) > 1 else "")
    catch_up = schedule.catch_up if schedule else (
        fields[2] if len(fields) > 2 and fields[2] in CATCH_UP else "-")
    return {"schedule": name, "when": when, "catch_up": catch_up, "status": "corrupt",
            "last_slot": None, "fired_at": None, "last_job": None, "next_slot": None,
            "timezone": schedule.when.timezone if schedule else "UTC"}


def new_job_id() -> str:
    return os.urandom(8).hex()  # as secrets.token_hex(8)


def _line(name: str, job_id: str, slot: int, previous: Optional[int], created: int, zone) -> bytes:
    return job_line(job_id, name, payload_json(payload(name, slot, previous, zone)), PENDING,
                    created, created, 0, "", "", "")


def _model(queue_path: Path) -> tuple:
    """The stat and path of the queue file, whose owner, mode and ACLs the state file takes
    (none if it is not a regular file)."""
    try:
        status = os.lstat(queue_path)
    except FileNotFoundError:
        return None, None
    return (status, str(queue_path)) if stat.S_ISREG(status.st_mode) else (None, None)


def _announce(lines) -> None:
    """Tell the hooks of the jobs a firing just appended."""
    for line in lines:
        job = parse_line(line)
        hooks.call(hooks.JobEvent("on_enqueue", job.id, job.type, DEFAULT_QUEUE, 0, 0, 0,
                                  json.loads(job.payload), run_at=job.run_at))
