"""Firing periodic jobs exactly once per slot, whichever workers run and however they overlap.

A firing holds the queue's lock (the one every writer of the queue file takes) from reading
the state file (schedule_state.py) to appending the jobs: it plans from the state read
without the lock, then, under the lock, checks the state is still what it planned from,
writes the new state with the jobs it is about to add listed in ``firing``, appends them,
and clears ``firing``. Two workers seeing the same due slot therefore fire it once: the
second finds the state changed under the lock, plans again, and finds nothing due. A worker
killed between writing the state and clearing ``firing`` leaves the jobs listed there; the
next firing looks for them in the queue and archive files and adds those missing, so no
slot is lost or doubled.

Deleting the state file is safe: each schedule is then new again, its slots counting from
the next worker run on (slots missed before that are not caught up; none fires twice). A
line that does not read is logged, and dropped at the next write, with the same effect for
its schedule.
"""

import datetime
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .checks import payload_json
from .display import plural
from .errors import QueueError
from .job import job_line
from .schedule_state import Entry, State, read_state, state_path, time_text, write_state
from .schedules import (MAX_CATCH_UP_SLOTS, Schedule, describe_slot, due, first_due, next_slot,
                        payload, when_from_text)

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
    recover: Dict[str, Entry] = field(default_factory=dict)  # entries found mid-firing
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
        self.reported: set = set()  # corrupt lines already logged by this process
        self.lock = threading.Lock()  # the run's thread and its keeper thread

    def due(self, now: float) -> bool:
        return self.next_due is None or now >= self.next_due

    def fire(self) -> None:
        """Fire every due slot, exactly once whatever other workers do. A failure to use the
        state file is logged, and the worker goes on running jobs."""
        with self.lock:
            try:
                self._fire()
            except QueueError as error:  # a file that is not the queue's: its message says why
                self.next_due = self.queue.clock() + 60
                logger.error("could not fire the periodic jobs: %s; trying again in a minute",
                             error)
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
            self._report(state, plan)
            if not plan.recover:
                return  # after a recovery, plan again: slots may have fallen due meanwhile
        self.next_due = None
        logger.info("periodic jobs: the state changed %d times while this worker decided; "
                    "it looks again at its next chance", TRIES)

    def _plan(self, state: State, now: float) -> Plan:
        plan = Plan(dict(state.entries), changed=bool(state.corrupt))
        for entry in state.entries.values():
            if entry.firing:
                self._plan_recovery(plan, entry)
        for name, schedule in self.schedules.items():
            entry = plan.entries.get(name)
            if entry is None:
                entry = Entry(name, schedule.text, schedule.catch_up, "active", int(now))
                first = next(schedule.when.slots_after(now), None)
                plan.messages.append((logging.INFO, f"schedule {name} ({schedule.text}, catch_up="
                                      f"{schedule.catch_up}) is new: its first slot is "
                                      f"{describe_slot(first, schedule.when.zone)}"))
            elif entry.when != schedule.text:
                plan.messages.append((logging.INFO, f"schedule {name} changed from {entry.when} "
                                      f"to {schedule.text}: its slots count from now"))
                entry = replace(entry, when=schedule.text, done_until=int(now))
            elif entry.status != "active":
                plan.messages.append((logging.INFO, f"schedule {name} is declared again"))
            entry = replace(entry, status="active", catch_up=schedule.catch_up)
            if entry != plan.entries.get(name):
                plan.entries[name], plan.changed = entry, True
            if not entry.firing:
                self._plan_slots(plan, schedule, entry, now)
        for name, entry in list(plan.entries.items()):
            if name not in self.schedules and entry.status == "active":
                plan.entries[name], plan.changed = replace(entry, status="removed"), True
                plan.messages.append((logging.WARNING, f"schedule {name} ({entry.when}) is not "
                                      f"declared in this worker's code: it fires no more (its last "
                                      f"slot: {time_text(entry.last_slot) or 'none'})"))
        return plan

    def _plan_slots(self, plan: Plan, schedule: Schedule, entry: Entry, now: float) -> None:
        decided = due(schedule, entry.done_until, now)
        if decided.done_until == entry.done_until:
            return
        jobs, previous = [], entry.last_slot
        for slot in decided.slots:
            job_id = new_job_id()
            jobs.append((job_id, slot, previous))
            plan.lines.append(_line(schedule.name, job_id, slot, previous, int(now),
                                    schedule.when.zone))
            previous = slot
        fired = {"last_slot": previous, "fired_at": int(now), "last_job": jobs[-1][0]} if jobs else {}
        plan.entries[schedule.name] = replace(entry, done_until=decided.done_until,
                                              firing=tuple(jobs), **fired)
        plan.changed = True
        zone = schedule.when.zone
        if jobs:
            plan.messages.append((logging.INFO, f"schedule {schedule.name}: fired "
                                  f"{plural(len(jobs), 'slot')}, the last "
                                  f"{describe_slot(previous, zone)} (job {jobs[-1][0]})"))
        if decided.passed_over:
            level = logging.INFO if schedule.catch_up == "latest" else logging.WARNING
            plan.messages.append((level, f"schedule {schedule.name}: passed over "
                                  f"{plural(decided.passed_over, 'slot')} up to "
                                  f"{describe_slot(decided.done_until, zone)}, missed while no "
                                  f"worker ran (catch_up={schedule.catch_up}: "
                                  f"{_CAUGHT_UP[schedule.catch_up]})"))

    def _plan_recovery(self, plan: Plan, entry: Entry) -> None:
        """A firing not cleared yet: its worker is about to, or died. Add the listed jobs the
        queue lacks (under the lock, jobs can only be missing if their worker died)."""
        missing = self._missing(entry, None)
        when, _ = when_from_text(entry.when)
        zone = datetime.timezone.utc if when is None else when.zone
        for job_id, slot, previous in entry.firing:
            if job_id in missing:
                plan.lines.append(_line(entry.schedule, job_id, slot, previous,
                                        entry.fired_at or slot, zone))
        plan.recover[entry.schedule] = entry
        plan.entries[entry.schedule] = replace(entry, firing=tuple(
            job for job in entry.firing if job[0] in missing))
        plan.changed = True
        if missing:
            plan.messages.append((logging.WARNING, f"schedule {entry.schedule}: a worker stopped "
                                  f"while firing {plural(len(entry.firing), 'job')}; the "
                                  f"{len(missing)} it had not added are added now"))

    def _missing(self, entry: Entry, fd: Optional[int]) -> set:
        """The ids in ``entry.firing`` found neither in the queue file (read through ``fd``
        under the lock, else from its path) nor in its archive files."""
        wanted = {job_id.encode() + b"\t": job_id for job_id, _, _ in entry.firing}
        if fd is not None:
            with open(os.dup(fd), "rb") as file:
                file.seek(0)
                found = {line[:ID_PREFIX] for line in file if line[:ID_PREFIX] in wanted}
        else:
            found = {line[:ID_PREFIX] for _, line in self.queue.table.lines()
                     if line[:ID_PREFIX] in wanted}
        return {job_id for prefix, job_id in wanted.items()
                if prefix not in found and self.queue.archive.find(prefix) is None}

    def _apply(self, fd: int, seen: State, plan: Plan):
        """Under the queue's lock, the queue file open at ``fd``: write the new state unless
        another worker changed it since ``seen``; None lets the append add the jobs."""
        if read_state(self.path).raw != seen.raw:
            return RACED
        for name, entry in plan.recover.items():
            if {job[0] for job in plan.entries[name].firing} != self._missing(entry, fd):
                return RACED  # another worker added them meanwhile
        write_state(self.path, plan.entries, os.fstat(fd), fd)
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
                write_state(self.path, entries, *_model(self.queue.path))

    def _report(self, state: State, plan: Plan) -> None:
        for number, text, reason in state.corrupt:
            if text not in self.reported:
                self.reported.add(text)
                logger.warning("%s line %d does not read as a schedule's state (%s); it is "
                               "dropped, and its schedule starts afresh: %s", self.path, number,
                               reason, text)
        for level, message in plan.messages:
            logger.log(level, message)
        upcoming = [first_due(schedule, plan.entries[name].done_until)
                    for name, schedule in self.schedules.items() if name in plan.entries]
        upcoming = [slot for slot in upcoming if slot is not None]
        self.next_due = min(upcoming) if upcoming else None


def listing(queue, declared: Optional[Mapping[str, Schedule]] = None) -> List[Dict[str, Any]]:
    """Each schedule of the state file (and of ``declared``, when given): its definition,
    status, last fired slot and next slot, for ``stats()`` and ``dbbasic-queue schedules``.
    Status: active, removed; with ``declared``: new (no worker has seen it yet), changed
    (workers will restart it from their next run), not declared."""
    state = read_state(state_path(queue.path))
    now = queue.clock()
    rows = []
    for name in sorted(set(state.entries) | set(declared or ())):
        entry, schedule = state.entries.get(name), (declared or {}).get(name)
        if schedule is None:
            when, _ = when_from_text(entry.when)
            status = entry.status if declared is None else "not declared"
            schedule = None if when is None else Schedule(name, when, entry.catch_up)
        elif entry is None or entry.when != schedule.text:
            status = "new" if entry is None else "changed"
        else:
            status = "active"
        done_until = entry.done_until if status in ("active", "removed") else int(now)
        upcoming = None
        if schedule is not None and status not in ("removed", "not declared"):
            upcoming = next_slot(schedule, done_until, now)
        rows.append({"schedule": name, "when": schedule.text if schedule else entry.when,
                     "catch_up": schedule.catch_up if schedule else entry.catch_up,
                     "status": status, "last_slot": entry.last_slot if entry else None,
                     "fired_at": entry.fired_at if entry else None,
                     "last_job": (entry.last_job or None) if entry else None,
                     "next_slot": upcoming,
                     "timezone": schedule.when.timezone if schedule else "UTC"})
    return rows


def new_job_id() -> str:
    return secrets.token_hex(8)


def _line(name: str, job_id: str, slot: int, previous: Optional[int], created: int, zone) -> bytes:
    return job_line(job_id, name, payload_json(payload(name, slot, previous, zone)), "pending",
                    created, created, 0, "", "", "")


def _model(queue_path: Path) -> tuple:
    """The stat and path of the queue file, whose owner, mode and ACLs the state file takes
    (none if it is not a regular file)."""
    try:
        status = os.lstat(queue_path)
    except FileNotFoundError:
        return None, None
    return (status, str(queue_path)) if stat.S_ISREG(status.st_mode) else (None, None)
