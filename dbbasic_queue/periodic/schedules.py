"""Periodic jobs as declared in code: ``@queue.periodic(...)`` and what a due slot fires.

A schedule is a handler with a cron expression (or an interval) and a catch-up policy. It is
registered in a ``Handlers`` dict, which carries the schedules along (``handlers.schedules``)
wherever the handlers go: ``process_jobs(queue.handlers)``, ``dbbasic-queue work --handlers
app.jobs:queue``. A worker given handlers with schedules fires their due slots (firing.py);
this module decides which slots are due, as pure functions of the recorded state and the time.

Catch-up, for the slots that fell due while no worker ran:

- ``latest`` (the default): one job, for the latest due slot; its payload's ``previous_slot``
  says which slot fired before it, so the handler can cover the time in between.
- ``all``: one job per due slot, oldest first; at most MAX_CATCH_UP_SLOTS (the latest ones),
  the older are passed over with a warning.
- ``none``: only a slot at most ON_TIME_SECONDS old fires; older ones are passed over.

A schedule settled further ahead of the clock than CLOCK_ERROR_SECONDS was fired by a clock
set ahead and then back: it resumes from now (``settled_until``). Within the bound it waits,
so a clock stepped back a little (an NTP correction) fires no slot twice.
"""

import datetime
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple, Union

from ..model.checks import checked_job_type
from .cron import Cron, Every
from ..model.job import utc_text
from ..model.options import Handlers, register

CATCH_UP = ("none", "latest", "all")
MAX_CATCH_UP_SLOTS = 1000  # catch_up="all": at most this many jobs for one outage
ON_TIME_SECONDS = 300  # catch_up="none": a slot older than this when a worker sees it is missed
COUNT_LIMIT = 100_000  # missed slots are counted (for the log) up to this many
# A schedule settled further ahead of the clock than this was settled by a wrong clock. NTP
# steps a clock by seconds or minutes (ntpd refuses to step more than 1000 s unless told);
# an hour is far above them, and the longest a schedule waits for a clock set back.
CLOCK_ERROR_SECONDS = 3600
WITHOUT_PERIODIC = ("keep the schedule on a TSV queue (dbbasic_queue.Queue) whose handler "
                    "enqueues the real job here, or run one `rq cron` process (RQ's own scheduler: "
                    "one process only, UTC, no catch-up after downtime); see 'Periodic jobs' in "
                    "the README")


@dataclass(frozen=True)
class Schedule:
    """One periodic job: its job type (which is its name), when, and its catch-up policy."""

    name: str
    when: Union[Cron, Every]
    catch_up: str = "latest"

    @property
    def text(self) -> str:
        """The definition as recorded in the state file: ``0 3 * * * Europe/Berlin``,
        ``every 600s``."""
        return self.when.text


def when_of(cron: Optional[str] = None, every=None, timezone: str = "UTC") -> Union[Cron, Every]:
    """A Cron for ``cron`` in ``timezone``, or an Every for ``every`` (a timedelta, or
    seconds); exactly one of the two. Raises TypeError or ValueError saying what to write."""
    if (cron is None) == (every is None):
        raise TypeError("periodic() takes a cron expression, such as periodic('0 3 * * *'), or "
                        "every=timedelta(minutes=10): one of the two")
    if cron is not None:
        return Cron(cron, timezone)
    if timezone != "UTC":
        raise ValueError("timezone applies to cron expressions; every= counts seconds from "
                         "1970-01-01 00:00 UTC (for wall-clock times use a cron expression)")
    seconds = every.total_seconds() if isinstance(every, datetime.timedelta) else every
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"every must be a timedelta or a number of seconds, not "
                        f"{type(every).__name__}")
    if (isinstance(seconds, float) and not math.isfinite(seconds)) or seconds < 1 \
            or seconds != int(seconds):
        raise ValueError(f"every must be a whole number of seconds, 1 or more, not {every!r}")
    return Every(int(seconds))  # which refuses more than 100 years


def declare(handlers: Handlers, cron: Optional[str] = None, *, every=None,
            timezone: str = "UTC", catch_up: str = "latest",
            job_type: Optional[str] = None) -> Callable:
    """A decorator registering the function as the handler of ``job_type`` (default: the
    function's ``__qualname__``) and its schedule in ``handlers.schedules``. Everything is
    checked when the decorator is built or applied, at import time."""
    when = when_of(cron, every, timezone)
    if catch_up not in CATCH_UP:
        raise ValueError(f"catch_up must be one of {', '.join(map(repr, CATCH_UP))}, not {catch_up!r}")
    if job_type is not None:
        checked_job_type(job_type)

    def decorate(function: Callable) -> Callable:
        name = checked_job_type(job_type or getattr(function, "__qualname__", ""))
        if name in handlers.schedules:
            raise ValueError(f"a schedule for {name!r} is declared already ({handlers.schedules[name].text}); "
                             f"give the second one its own job_type=")
        if handlers.get(name) is not function:
            register(handlers, name)(function)
        handlers.schedules[name] = Schedule(name, when, catch_up)
        return function
    return decorate


@dataclass(frozen=True)
class Due:
    """What a schedule does now: the slots to fire (earliest first), up to where its slots
    are then done, and how many due slots it passes over."""

    slots: List[int]
    done_until: int
    passed_over: int


def due(schedule: Schedule, done_until: int, now: float) -> Due:
    """The slots of ``schedule`` after ``done_until`` and at or before ``now``, as its
    catch-up policy fires them."""
    latest: List[int] = []  # latest first
    count = 0
    for slot in schedule.when.slots_until(now):
        if slot <= done_until or count >= COUNT_LIMIT:
            break
        count += 1
        if len(latest) < MAX_CATCH_UP_SLOTS:
            latest.append(slot)
    if not latest:
        return Due([], done_until, 0)
    if schedule.catch_up == "all":
        fire = latest[::-1]
    elif schedule.catch_up == "latest" or now - latest[0] <= ON_TIME_SECONDS:
        fire = latest[:1]
    else:
        fire = []
    return Due(fire, latest[0], count - len(fire))


def settled_until(done_until: int, now: float) -> int:
    """Up to when a schedule's slots count as settled, given the recorded ``done_until``:
    that, unless it is more than CLOCK_ERROR_SECONDS ahead of ``now`` (a clock that was set
    ahead and back): then now, so the schedule resumes instead of waiting for the clock."""
    return int(now) if done_until > now + CLOCK_ERROR_SECONDS else done_until


def next_slot(schedule: Schedule, done_until: int, now: float) -> Optional[int]:
    """The slot the schedule fires next: a due one (at or before ``now``) if any, else the
    first after ``now``."""
    slots = due(schedule, done_until, now).slots
    if slots:
        return slots[0]
    return next(schedule.when.slots_after(max(done_until, now)), None)


def first_due(schedule: Schedule, done_until: int) -> Optional[int]:
    """When the schedule has a slot to look at next: its first slot after ``done_until``."""
    return next(schedule.when.slots_after(done_until), None)


def payload(schedule_name: str, slot: int, previous_slot: Optional[int], tz) -> dict:
    """The payload of a periodic job: its schedule, its slot (Unix seconds, and as local ISO
    8601 time), and the slot fired before it (None for the first)."""
    local = datetime.datetime.fromtimestamp(slot, tz).isoformat()
    return {"schedule": schedule_name, "slot": slot, "slot_time": local,
            "previous_slot": previous_slot}


def describe_slot(slot: Optional[int], tz) -> str:
    """A slot as local time with its zone's abbreviation, for logs and listings; in UTC where
    the local time is beyond the year 9999 (a time written by hand)."""
    if slot is None:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(slot, tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, ValueError, OSError):
        return f"{utc_text(slot)} UTC"


def when_from_text(text: str) -> Tuple[Optional[Union[Cron, Every]], str]:
    """A definition as recorded in the state file, parsed back (None if it no longer
    parses, for example a time zone this machine lacks), and why not."""
    try:
        if text.startswith("every ") and text.endswith("s"):
            return Every(int(text[len("every "):-1])), ""
        expression, _, timezone = text.rpartition(" ")
        return Cron(expression, timezone), ""
    except (TypeError, ValueError) as error:
        return None, str(error)
