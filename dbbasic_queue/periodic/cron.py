"""When a schedule's slots fall: 5-field cron expressions in a time zone, and fixed intervals.

A slot is a whole Unix second. ``Cron`` follows Vixie cron (cronie, Debian's cron) wherever
cron defines something, including its day rule (when both day fields are restricted, a day
matching either runs) and its daylight saving time rule, which depends on whether the
minute or the hour field starts with ``*``:

- A wall-clock time the clocks skip (spring forward, 02:30 in Berlin on the last Sunday of
  March): a fixed-time expression (``30 2 * * *``) fires once, the moment the clocks jump
  (03:00 CEST); an expression with ``*`` in its minute or hour field (``*/15 * * * *``,
  ``30 * * * *``) has no slot there, as the wall clock never shows that time.
- A wall-clock time that happens twice (fall back, 02:30 on the last Sunday of October): a
  fixed-time expression fires once, at the first 02:30 (CEST); one with ``*`` in its minute
  or hour field fires at both, as it runs by the wall clock.

Slots end with the year 9999 UTC (``checks.LAST_TIMESTAMP``, the queue's last time): none is
counted beyond it, whatever the moment asked about, so no slot overflows a date.

The time zones are the standard library's ``zoneinfo`` (the system's tz database, or the
``tzdata`` package where the system has none); ``UTC`` needs neither.
"""

import calendar
import datetime
import re
from typing import Dict, Iterator, List, Set, Tuple

from ..model.checks import LAST_TIMESTAMP, LONGEST_SECONDS, shown

MAX_YEARS = 30  # an expression whose next slot is further away than this never fires
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_MONTHS = {name: n for n, name in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {name: n for n, name in enumerate("sun mon tue wed thu fri sat".split())}
_NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@hourly": "0 * * * *"}
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ELEMENT = re.compile(r"(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?\Z")
_DAY_CACHE = 64  # days of slots kept per expression: a day's slots are asked for again and again


def zone(name: str) -> datetime.tzinfo:
    """The time zone called ``name`` (an IANA name such as ``Europe/Berlin``, or ``UTC``)."""
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a str such as 'Europe/Berlin', not {type(name).__name__}")
    if name in ("UTC", "Etc/UTC"):
        return datetime.timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' "
                         f"or 'UTC' (if the name is right, the machine lacks the tz database: "
                         f"install the OS's tzdata package, or pip install tzdata)") from None


class Every:
    """A slot every ``seconds`` seconds, counted from 1970-01-01 00:00 UTC (every 10 minutes:
    at :00, :10, :20 ... of each hour), whatever the time zone: a whole number from 1 to 100
    years (``LONGEST_SECONDS``, the longest duration the queue takes), else ValueError."""

    def __init__(self, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"every must be a whole number of seconds, 1 or more, not "
                             f"{shown(seconds)}")
        if seconds > LONGEST_SECONDS:
            raise ValueError(f"every must be at most 100 years ({LONGEST_SECONDS} s), the "
                             f"longest duration dbbasic-queue takes, not {shown(seconds)} s")
        self.seconds = seconds
        self.timezone = "UTC"
        self.zone = datetime.timezone.utc
        self.text = f"every {seconds}s"

    def slots_after(self, moment: float) -> Iterator[int]:
        """The slots after ``moment``, earliest first."""
        slot = (int(min(moment, LAST_TIMESTAMP) // self.seconds) + 1) * self.seconds
        while slot <= LAST_TIMESTAMP:
            yield slot
            slot += self.seconds

    def slots_until(self, moment: float) -> Iterator[int]:
        """The slots at or before ``moment``, latest first."""
        slot = int(min(moment, LAST_TIMESTAMP) // self.seconds) * self.seconds
        while slot >= 0:
            yield slot
            slot -= self.seconds


class Cron:
    """A 5-field cron expression (minute hour day-of-month month day-of-week) in a time zone.

    Fields take ``*``, numbers, ranges ``1-5``, steps ``*/15``, ``0-30/10`` and ``5/10`` (from
    5 to the field's end), lists ``1,15``, month and day names (``jan``, ``mon-fri``; any
    case), and 7 for Sunday; ``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``
    stand for their usual expressions. Raises ValueError naming the field at fault.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression is a str such as '0 3 * * *', not "
                            f"{type(expression).__name__}")
        self.expression = " ".join(expression.split())
        self.timezone = timezone
        self.zone = zone(timezone)
        self.text = f"{self.expression} {timezone}"
        fields = _NICKNAMES.get(self.expression.lower(), self.expression).split()
        if len(fields) != 5:
            raise ValueError(f"cron expression {expression!r} must have 5 fields (minute hour "
                             f"day-of-month month day-of-week), such as '0 3 * * *', not "
                             f"{len(fields)}; seconds and years are not supported")
        parsed = [_field(text, *spec) for text, spec in zip(fields, _FIELDS)]
        self.minutes, self.hours, self.days, self.months = (sorted(values) for values, _ in parsed[:4])
        self.weekdays = {day % 7 for day in parsed[4][0]}
        self.days_star, self.weekdays_star = parsed[2][1], parsed[4][1]
        # Vixie cron's rule: a job with '*' in its minute or hour field runs by the wall clock
        # in daylight saving changes; any other runs once, skipped times at the jump.
        self.by_wall_clock = parsed[0][1] or parsed[1][1]
        self._day_slots: Dict[datetime.date, Tuple[int, ...]] = {}
        if self.weekdays_star and not any(day <= _LONGEST_MONTH[month - 1]
                                           for month in self.months for day in self.days):
            raise ValueError(f"cron expression {expression!r} names no day that exists "
                             f"(such as the 31st of a month of 30 days)")

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {self.timezone!r})"

    def slots_after(self, moment: float) -> Iterator[int]:
        """The slots after ``moment``, earliest first (none beyond MAX_YEARS from it)."""
        day = _local_date(moment, self.zone) - datetime.timedelta(days=1)
        for _ in range(MAX_YEARS * 366):
            for slot in self._slots_of(day):
                if slot > LAST_TIMESTAMP:
                    return
                if slot > moment:
                    yield slot
            if day == datetime.date.max:
                return
            day += datetime.timedelta(days=1)

    def slots_until(self, moment: float) -> Iterator[int]:
        """The slots at or before ``moment``, latest first (none beyond MAX_YEARS back)."""
        moment = min(moment, LAST_TIMESTAMP)
        day = _local_date(moment, self.zone)
        day += datetime.timedelta(days=day < datetime.date.max)
        for _ in range(MAX_YEARS * 366):
            for slot in reversed(self._slots_of(day)):
                if slot <= moment:
                    yield slot
            day -= datetime.timedelta(days=1)
            if day.year < 1970:
                return

    def _matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def _slots_of(self, day: datetime.date) -> Tuple[int, ...]:
        """The slots of one local day, earliest first."""
        slots = self._day_slots.get(day)
        if slots is None:
            slots = tuple(sorted(self._compute(day))) if self._matches(day) else ()
            if len(self._day_slots) >= _DAY_CACHE:
                self._day_slots.clear()
            self._day_slots[day] = slots
        return slots

    def _compute(self, day: datetime.date) -> Set[int]:
        times = [(hour, minute) for hour in self.hours for minute in self.minutes]
        days = (day,) if day == datetime.date.max else (day, day + datetime.timedelta(days=1))
        offsets = {datetime.datetime.combine(when, datetime.time(0), self.zone).replace(fold=fold)
                   .utcoffset() for when in days for fold in (0, 1)}
        if len(offsets) == 1:  # no clock change touches this day: plain arithmetic
            midnight = calendar.timegm(day.timetuple()) - int(offsets.pop().total_seconds())
            return {midnight + hour * 3600 + minute * 60 for hour, minute in times}
        slots: Set[int] = set()
        for hour, minute in times:
            slots.update(self._instants(datetime.datetime.combine(day, datetime.time(hour, minute))))
        return slots

    def _instants(self, wall: datetime.datetime) -> List[int]:
        """The slots of one wall-clock time on a day the clocks change (see the module)."""
        first = int(wall.replace(tzinfo=self.zone, fold=0).timestamp())
        second = int(wall.replace(tzinfo=self.zone, fold=1).timestamp())
        if first == second:
            return [first]
        if datetime.datetime.fromtimestamp(first, self.zone).replace(tzinfo=None) == wall:
            return [first, second] if self.by_wall_clock else [min(first, second)]
        if self.by_wall_clock:
            return []  # skipped by the clocks
        return [self._jump(min(first, second), max(first, second))]

    def _jump(self, before: int, after: int) -> int:
        """The second the clocks jump forward, between ``before`` and ``after``."""
        target = _offset(after, self.zone)
        while after - before > 1:
            middle = (before + after) // 2
            if _offset(middle, self.zone) == target:
                after = middle
            else:
                before = middle
        return after


def _offset(moment: int, tz: datetime.tzinfo) -> datetime.timedelta:
    return datetime.datetime.fromtimestamp(moment, tz).utcoffset()


def _local_date(moment: float, tz: datetime.tzinfo) -> datetime.date:
    """The local date at ``moment``, from 1970 to the end of 9999 UTC; the last date a
    ``datetime`` holds where the local date there is already in the year 10000."""
    try:
        return datetime.datetime.fromtimestamp(min(max(0, moment), LAST_TIMESTAMP), tz).date()
    except (OverflowError, ValueError):  # east of UTC, the year 9999 ends before it does in UTC
        return datetime.date.max


def _field(text: str, name: str, low: int, high: int) -> Tuple[Set[int], bool]:
    """The values of one field, and whether it starts with ``*`` (Vixie cron's test)."""
    names = _MONTHS if name == "month" else _DAYS if name == "day of week" else {}
    values: Set[int] = set()
    for element in text.lower().split(","):
        match = _ELEMENT.match(element)
        if not match:
            raise ValueError(f"cron {name} field {text!r}: {element!r} is not a value, a range "
                             f"like 1-5, or a step like */15")
        star, start, end, step = match.groups()
        first = low if star else _value(start, name, low, high, names)
        last = high if star or (end is None and step) else _value(end or start, name, low, high, names)
        if first > last:
            raise ValueError(f"cron {name} field {text!r}: the range {element!r} runs backwards")
        if step is not None and int(step) == 0:
            raise ValueError(f"cron {name} field {text!r}: a step must be 1 or more")
        values.update(range(first, last + 1, int(step or 1)))
    return values, text.startswith("*")


def _value(token: str, name: str, low: int, high: int, names: Dict[str, int]) -> int:
    value = names.get(token)  # three letters, as in crontab(5)
    if value is None and token.isdigit():
        value = int(token)
    if value is None or not low <= value <= high:
        allowed = f"{low}-{high}" + (f" or names like {next(iter(names))}" if names else "")
        raise ValueError(f"cron {name} field: {token!r} is not among {allowed}")
    return value
