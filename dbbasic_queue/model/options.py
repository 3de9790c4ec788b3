"""Per-job options (unique key, attempts, timeout, queue, priority), kept as JSON in the
file's ``options`` column; ``Retry``, which a handler raises to run again later; and handler
registration (``Handlers``, ``register``)."""

import json
import math
from typing import Any, Callable, Dict, Optional

from .checks import (LAST_TIMESTAMP, LONGEST_SECONDS, check_attempts, check_duration,
                     check_encodable, checked_job_type, shown)
from ..errors import CorruptLineError
from .job import checked_options, one_line
from .queues import (DEFAULT_QUEUE, check_concurrency_key, check_concurrency_limit,
                     check_priority, check_queue_name, parse_rate)


class Retry(Exception):
    """Raise in a handler to run the job again later: ``Retry(delay=300)`` (seconds from now)
    or ``Retry(at=timestamp)``. It does not use up an attempt, so a job may ask as often as
    it needs (a rate-limited API, a resource not ready yet); it is logged, not stored as an
    error."""

    def __init__(self, delay: Optional[float] = None, *, at: Optional[float] = None,
                 reason: str = "") -> None:
        if (delay is None) == (at is None):
            raise TypeError("Retry takes delay=SECONDS or at=TIMESTAMP (one of them)")
        for name, value, most, what in (("delay", delay, *_DELAY), ("at", at, *_AT)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or (isinstance(value, float) and not math.isfinite(value))
                                      or not 0 <= value <= most):
                raise ValueError(f"Retry {name} must be {what}, not {shown(value)}")
        super().__init__(reason or (f"retry in {delay} s" if at is None else f"retry at {at}"))
        self.delay, self.at = delay, at

    def run_at(self, now: float) -> int:
        """When to run again, asked at ``now``; never after the end of the year 9999."""
        return min(LAST_TIMESTAMP, math.ceil(self.at if self.at is not None else now + self.delay))


_DELAY = (LONGEST_SECONDS, f"seconds from 0 to {LONGEST_SECONDS} (100 years)")
_AT = (LAST_TIMESTAMP, f"a Unix timestamp from 0 to {LAST_TIMESTAMP} (the end of the year 9999 UTC)")


def encode_options(unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                   timeout: Optional[float] = None, queue: Optional[str] = None,
                   priority: Optional[int] = None, concurrency_key: Optional[str] = None,
                   concurrency_limit: Optional[int] = None, rate_limit: Optional[str] = None,
                   rate_key: Optional[str] = None) -> str:
    """The ``options`` field for a job: JSON of the options given, or "" for none (the
    default queue and priority 0 are not written). Raises TypeError or ValueError for a bad
    value."""
    options: Dict[str, Any] = {}
    if unique_key is not None:
        if not isinstance(unique_key, str):
            raise TypeError(f"unique_key must be a str, such as 'welcome:42', not "
                            f"{type(unique_key).__name__}")
        if not unique_key or unique_key != one_line(unique_key) or len(unique_key) > 500:
            raise ValueError(f"unique_key {unique_key[:500]!r} must be 1 to 500 characters on one "
                             f"line, without tabs")
        check_encodable("unique_key", unique_key)
        options["unique_key"] = unique_key
    if max_attempts is not None:
        check_attempts("max_attempts", max_attempts)
        options["max_attempts"] = max_attempts
    if timeout is not None:
        check_duration("timeout", timeout)
        options["timeout"] = timeout
    if queue is not None and check_queue_name(queue) != DEFAULT_QUEUE:
        options["queue"] = queue
    if priority is not None and check_priority(priority) != 0:
        options["priority"] = priority
    if concurrency_key is not None:
        options["concurrency_key"] = check_concurrency_key(concurrency_key)
    if concurrency_limit is not None:
        if concurrency_key is None:
            raise TypeError("concurrency_limit goes with a concurrency_key, such as "
                            "concurrency_key='customer:7', concurrency_limit=2")
        options["concurrency_limit"] = check_concurrency_limit(concurrency_limit)
    if rate_limit is not None:
        parse_rate(rate_limit)
        options["rate_limit"] = rate_limit
    if rate_key is not None:
        if rate_limit is None:
            raise TypeError("rate_key goes with a rate_limit, such as rate_key='api:crm', "
                            "rate_limit='100/m'")
        options["rate_key"] = check_concurrency_key(rate_key, "rate_key")
    return json.dumps(options, ensure_ascii=False) if options else ""


def queue_options(queue: Optional[str], priority: Optional[int]) -> str:
    """encode_options for a job with only a queue and a priority, byte for byte as json.dumps
    writes it, at a third of its cost (enqueue's hot path): a checked queue name (letters,
    digits, "_.:-") and an int need no escaping."""
    if queue is not None and check_queue_name(queue) == DEFAULT_QUEUE:
        queue = None
    if priority is not None and check_priority(priority) == 0:
        priority = None
    if queue is None:
        return "" if priority is None else f'{{"priority": {priority:d}}}'
    if priority is None:
        return f'{{"queue": "{queue}"}}'
    return f'{{"queue": "{queue}", "priority": {priority:d}}}'


def decode_options(text: str) -> Dict[str, Any]:
    """The options of a job line; raises ValueError if the field is not a JSON object."""
    if not text:
        return {}
    try:
        return dict(checked_options(text))
    except CorruptLineError:
        pass  # json.loads and this function's own check say what is wrong
    options = json.loads(text)
    if not isinstance(options, dict):
        raise ValueError("its options are not a JSON object")
    return options


WORKER_KEY = "worker"  # set while a job is processing: the token of the run holding it


def with_worker(text: str, token: str, options: Optional[Dict[str, Any]] = None) -> str:
    """The options field of a job claimed by the worker run ``token``; ``options``, if
    given, is ``text`` decoded, which lets the token be added to the text as it is."""
    if not text:
        return f'{{"{WORKER_KEY}": "{token}"}}'
    if options is not None and options and WORKER_KEY not in options and text.endswith("}"):
        return f'{text[:-1]}, "{WORKER_KEY}": "{token}"}}'
    options = decode_options(text)
    options[WORKER_KEY] = token
    return json.dumps(options, ensure_ascii=False)


def without_worker(text: str) -> str:
    """The options field without a worker's token (a job no worker holds)."""
    if WORKER_KEY not in text:
        return text
    options = decode_options(text)
    options.pop(WORKER_KEY, None)
    return json.dumps(options, ensure_ascii=False) if options else ""


class Handlers(dict):
    """Job type -> handler (a plain dict to process_jobs), carrying the schedules declared
    with ``@periodic`` in ``schedules`` (name -> Schedule) and the queues declared with
    ``@handler(..., queue=...)`` in ``queues`` (job type -> queue name)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.schedules: Dict[str, Any] = {}  # name -> periodic.schedules.Schedule
        self.queues: Dict[str, str] = {}
        self.limits: Dict[str, int] = {}  # job type -> its jobs' default concurrency limit
        self.rates: Dict[str, str] = {}  # job type -> its rate limit ("100/m")


def schedules_of(handlers) -> Dict[str, Any]:
    """The schedules the handlers carry (none for a plain dict)."""
    found = getattr(handlers, "schedules", None)
    return found if isinstance(found, dict) else {}


def register(handlers: Dict[str, Callable], job_type: str, queue: Optional[str] = None,
             limit: Optional[int] = None, rate_limit: Optional[str] = None) -> Callable:
    """A decorator that adds a handler for ``job_type`` to ``handlers``; two for one type
    is an error, raised when the second is defined (at import time). With ``queue``, jobs of
    the type enqueued through a queue holding these handlers go to that queue unless the
    enqueue names another (``handlers.queues``). With ``limit``, at most that many of its
    jobs with one ``concurrency_key`` run at once, unless a job names its own limit
    (``handlers.limits``). With ``rate_limit='100/m'``, at most that many of its jobs start
    in any such period, across workers (``handlers.rates``)."""
    if callable(job_type):
        raise TypeError(f"handler() takes the job type, as in @handler('send_email'), not "
                        f"{job_type!r}")
    checked_job_type(job_type)  # a type enqueue would refuse could never reach the handler
    if queue is not None:
        check_queue_name(queue)
    if limit is not None:
        check_concurrency_limit(limit)
    if rate_limit is not None:
        parse_rate(rate_limit)

    def decorate(function: Callable) -> Callable:
        if job_type in handlers:
            raise ValueError(f"a handler for {job_type!r} is registered already "
                             f"({getattr(handlers[job_type], '__qualname__', handlers[job_type])})")
        handlers[job_type] = function
        if queue is not None and isinstance(getattr(handlers, "queues", None), dict):
            handlers.queues[job_type] = queue
        if limit is not None and isinstance(getattr(handlers, "limits", None), dict):
            handlers.limits[job_type] = limit
        if rate_limit is not None and isinstance(getattr(handlers, "rates", None), dict):
            handlers.rates[job_type] = rate_limit
        return function
    return decorate
