"""Checks of the caller's arguments, run before anything touches the file.

Caller mistakes raise the built-in TypeError or ValueError with a message that names the fix.
"""

import math
from typing import Mapping

from .job import one_line, to_json

_known_job_types: set = set()  # job types already checked: an app uses a handful


def check_number(name: str, value, integer: bool = False, zero_allowed: bool = False) -> None:
    """``value`` is a finite number (an int if ``integer``) above 0 (or 0 if allowed)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, "
                        f"not {type(value).__name__}")
    if not (value >= 0 if zero_allowed else value > 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'0 or more' if zero_allowed else 'greater than 0'}, "
                         f"not {value!r}")


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
    """``run_at`` as the whole second to store (rounded up: never earlier than asked)."""
    if run_at is None:
        return int(now)
    if isinstance(run_at, bool) or not isinstance(run_at, (int, float)):
        raise TypeError(f"run_at must be a Unix timestamp (int or float, e.g. time.time() + 60), "
                        f"not {type(run_at).__name__}")
    if not math.isfinite(run_at) or run_at < 0:
        raise ValueError(f"run_at must be a finite Unix timestamp >= 0, not {run_at!r}")
    return math.ceil(run_at)


def payload_json(payload) -> str:
    """The payload's JSON text, if the payload is a dict JSON can hold."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    try:
        return to_json(payload)
    except (TypeError, ValueError) as error:
        raise TypeError(f"payload is not JSON-serialisable ({error}); use only dict, list, str, "
                        f"int, float, bool and None") from None


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
