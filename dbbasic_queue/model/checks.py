"""Checks of the caller's arguments, run before anything touches the file.

Caller mistakes raise the built-in TypeError or ValueError with a message that names the fix.
The bounds are documented: times end with the year 9999 UTC (``LAST_TIMESTAMP``), durations
are at most 100 years (``LONGEST_SECONDS``), a job has at most ``MAX_ATTEMPTS`` attempts, and
a payload nests at most ``job.MAX_DEPTH`` levels. Beyond them a value is a mistake (a
timestamp in milliseconds, a unit multiplied twice) and would only fail later, elsewhere.
"""

import math
import os
import sys
from typing import Mapping, Optional

from .job import one_line
from .job import FINISHED, MAX_DEPTH, nests_within, to_json

LAST_TIMESTAMP = 253402300799  # 9999-12-31 23:59:59 UTC
LONGEST_SECONDS = 3_155_760_000  # 100 years of 365.25 days
MAX_ATTEMPTS = 1_000_000

_known_job_types: set = set()  # job types already checked: an app uses a handful


def check_number(name: str, value, integer: bool = False, zero_allowed: bool = False,
                 maximum: Optional[float] = None) -> None:
    """``value`` is a finite number (an int if ``integer``) above 0 (or 0 if allowed), and at
    most ``maximum``. Compared as Python numbers: an int too large for a float is refused,
    not an OverflowError."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, "
                        f"not {type(value).__name__}")
    if (not (value >= 0 if zero_allowed else value > 0)
            or (isinstance(value, float) and not math.isfinite(value))
            or (maximum is not None and value > maximum)):
        at_most = "" if maximum is None else f" and at most {_bound(maximum)}"
        raise ValueError(f"{name} must be {'0 or more' if zero_allowed else 'greater than 0'}"
                         f"{at_most}, not {shown(value)}")


def check_duration(name: str, value, zero_allowed: bool = False) -> None:
    """``value`` is a number of seconds above 0 (or 0 if allowed), at most 100 years."""
    check_number(name, value, zero_allowed=zero_allowed, maximum=LONGEST_SECONDS)


def check_attempts(name: str, value) -> None:
    """``value`` is a whole number of attempts, 1 to MAX_ATTEMPTS."""
    check_number(name, value, integer=True, maximum=MAX_ATTEMPTS)


def _bound(maximum: float) -> str:
    if maximum == LONGEST_SECONDS:
        return f"100 years ({LONGEST_SECONDS} s)"
    return f"{maximum:g}" if isinstance(maximum, float) else str(maximum)


def shown(value) -> str:
    """``repr(value)`` for a message, short even for an int of thousands of digits."""
    if isinstance(value, int) and value.bit_length() > 100:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def checked_job_type(job_type) -> str:
    """The job type, if it is a non-empty one-line name."""
    if type(job_type) is str and job_type in _known_job_types:
        return job_type
    if not isinstance(job_type, str):
        raise TypeError(f"job_type must be a str such as 'send_email', not {type(job_type).__name__}")
    if not job_type or job_type != one_line(job_type) or job_type != job_type.strip():
        raise ValueError(f"job_type {job_type!r} must be a non-empty name without tabs, line "
                         f"breaks or surrounding spaces, such as 'send_email'")
    check_encodable("job_type", job_type)
    if len(_known_job_types) < 1000:
        _known_job_types.add(job_type)
    return job_type


def checked_run_at(run_at, now: float) -> int:
    """``run_at`` (a Unix timestamp, or a timezone-aware datetime) as the whole second to
    store, rounded up: never earlier than asked."""
    if run_at is None:
        return int(now)
    datetime = sys.modules.get("datetime")  # not imported here: a datetime given has loaded it
    if datetime is not None and isinstance(run_at, datetime.datetime):
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ValueError(f"run_at {run_at.isoformat()} has no time zone, so it could mean any "
                             f"moment; give one, e.g. datetime.now(timezone.utc) + timedelta(hours=1)")
        run_at = run_at.timestamp()
    elif isinstance(run_at, bool) or not isinstance(run_at, (int, float)):
        raise TypeError(f"run_at must be a Unix timestamp (int or float, e.g. time.time() + 60) "
                        f"or a timezone-aware datetime, not {type(run_at).__name__}")
    check_timestamp("run_at", run_at)
    return math.ceil(run_at)


def check_timestamp(name: str, value) -> None:
    """``value`` (a number) is a Unix timestamp from 1970 to the end of the year 9999 UTC."""
    if (isinstance(value, float) and not math.isfinite(value)) or not 0 <= value <= LAST_TIMESTAMP:
        raise ValueError(f"{name} must be a Unix timestamp in seconds, from 0 to {LAST_TIMESTAMP} "
                         f"(the end of the year 9999 UTC), not {shown(value)}")


def payload_json(payload) -> str:
    """The payload's JSON text, if the payload is a dict JSON can hold."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    try:
        text = to_json(payload)
    except RecursionError:
        text = None  # far deeper than the limit: the encoder ran out of stack
    except (TypeError, ValueError) as error:
        raise TypeError(f"payload is not JSON-serialisable ({error}); use only dict, list, str, "
                        f"int, float, bool and None") from None
    if text is None or not nests_within(text):
        raise ValueError(f"payload is nested more than {MAX_DEPTH} levels deep (dicts and "
                         f"lists); flatten it, or store the data elsewhere and pass its key")
    return text


def check_path(path) -> None:
    """``path`` can name a file: no NUL character, nothing the file system cannot encode."""
    try:
        text = os.fspath(path)
        os.fsencode(text)
    except UnicodeEncodeError:
        raise ValueError(f"queue file {path!r} holds text that is not valid Unicode, so it "
                         f"cannot name a file") from None
    if ("\0" if isinstance(text, str) else b"\0") in text:
        raise ValueError(f"queue file {path!r} holds a NUL character, so it cannot name a file")


def check_encodable(name: str, value: str) -> None:
    """``value`` can be written as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} holds text that is not valid Unicode") from None


def check_handlers(handlers) -> None:
    """``handlers`` maps job types to callables."""
    if not isinstance(handlers, Mapping):
        raise TypeError(f"handlers must be a dict mapping job types to functions, "
                        f"not {type(handlers).__name__}")
    for job_type, handler in handlers.items():
        if not callable(handler):
            raise TypeError(f"the handler for {job_type!r} is not callable "
                            f"({type(handler).__name__}); pass the function itself")


def checked_purge(older_than, statuses) -> tuple:
    """A purge's arguments, checked: ``older_than`` a duration (0 allowed), ``statuses`` a
    non-empty list of finished statuses; returns the statuses as a tuple."""
    check_duration("older_than", older_than, zero_allowed=True)
    if isinstance(statuses, (str, bytes)) or not hasattr(statuses, "__iter__"):
        raise TypeError(f"statuses must be a list of finished statuses such as "
                        f"['completed', 'cancelled'], not {type(statuses).__name__}")
    statuses = tuple(statuses)
    unknown = [s for s in statuses if s not in FINISHED]
    if not statuses or unknown:
        raise ValueError(f"purge removes finished jobs only: statuses must be among "
                         f"{', '.join(FINISHED)}, not {', '.join(unknown) or 'nothing'}")
    return statuses
