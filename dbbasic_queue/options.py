"""Per-job options (unique key, attempts, timeout), kept as JSON in the file's ``options``
column, and what a handler may use: ``Retry``, and the time limit that ends a hung handler."""

import contextlib
import json
import math
import os
import signal
import threading
from typing import Any, Callable, Dict, Optional

from .table import one_line, same_file


class Retry(Exception):
    """Raise in a handler to run the job again later: ``Retry(delay=300)`` (seconds from now)
    or ``Retry(at=timestamp)``. It does not use up an attempt, so a job may ask as often as
    it needs (a rate-limited API, a resource not ready yet); it is logged, not stored as an
    error."""

    def __init__(self, delay: Optional[float] = None, *, at: Optional[float] = None,
                 reason: str = "") -> None:
        if (delay is None) == (at is None):
            raise TypeError("Retry takes delay=SECONDS or at=TIMESTAMP (one of them)")
        for name, value in (("delay", delay), ("at", at)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ValueError(f"Retry {name} must be a number of seconds >= 0, not {value!r}")
        super().__init__(reason or (f"retry in {delay} s" if at is None else f"retry at {at}"))
        self.delay, self.at = delay, at

    def run_at(self, now: float) -> int:
        return math.ceil(self.at if self.at is not None else now + self.delay)


def encode_options(unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                   timeout: Optional[float] = None) -> str:
    """The ``options`` field for a job: JSON of the options given, or "" for none.
    Raises TypeError or ValueError for a bad value."""
    options: Dict[str, Any] = {}
    if unique_key is not None:
        if not isinstance(unique_key, str):
            raise TypeError(f"unique_key must be a str, such as 'welcome:42', not "
                            f"{type(unique_key).__name__}")
        if not unique_key or unique_key != one_line(unique_key) or len(unique_key) > 500:
            raise ValueError(f"unique_key {unique_key!r} must be 1 to 500 characters on one line, "
                             f"without tabs")
        options["unique_key"] = unique_key
    if max_attempts is not None:
        check_number("max_attempts", max_attempts, integer=True)
        options["max_attempts"] = max_attempts
    if timeout is not None:
        check_number("timeout", timeout)
        options["timeout"] = timeout
    return json.dumps(options, ensure_ascii=False) if options else ""


def decode_options(text: str) -> Dict[str, Any]:
    """The options of a job line; raises ValueError if the field is not a JSON object."""
    if not text:
        return {}
    options = json.loads(text)
    if not isinstance(options, dict):
        raise ValueError("its options are not a JSON object")
    return options


def check_number(name: str, value, integer: bool = False, zero_allowed: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, "
                        f"not {type(value).__name__}")
    if not (value >= 0 if zero_allowed else value > 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'0 or more' if zero_allowed else 'greater than 0'}, "
                         f"not {value!r}")


class UniqueKeys:
    """Which unique keys belong to a pending or processing job, and to which.

    Read from the whole file once, then kept up to date by reading only the lines appended
    since: statuses change only in rewrites, which give the file a new inode, and then the
    file is read whole again. So an enqueue with a unique key reads the whole file only
    after a worker has rewritten it. Used with the table lock held.
    """

    def __init__(self) -> None:
        self.indexed_fd: Optional[int] = None  # the file read, held open: see same_file
        self.read_to = 0
        self.active: Dict[str, str] = {}

    def job_with(self, fd: int, key: str) -> Optional[str]:
        """The id of the pending or processing job with ``key`` in the file open at ``fd``."""
        stat = os.fstat(fd)
        if not self._same_file(stat):
            if self.indexed_fd is not None:
                os.close(self.indexed_fd)
            self.indexed_fd, self.read_to, self.active = os.dup(fd), 0, {}
        rest, position = b"", self.read_to
        while position < stat.st_size:
            block = os.pread(fd, min(1 << 20, stat.st_size - position), position)
            if not block:
                break
            position += len(block)
            rest += block
            whole = rest.rfind(b"\n") + 1  # a half-written last line waits for its end
            self._note(rest[:whole])
            self.read_to += whole
            rest = rest[whole:]
        return self.active.get(key)

    def _same_file(self, current: os.stat_result) -> bool:
        return (self.indexed_fd is not None and same_file(self.indexed_fd, current)
                and self.read_to <= current.st_size)

    def _note(self, lines: bytes) -> None:
        for line in lines.splitlines():
            if b"unique_key" not in line:
                continue
            # Ten plain fields, as this queue writes them; a line that is not (the header,
            # a corrupt line) cannot hold an active key.
            fields = line.rstrip(b"\r").split(b"\t")
            if len(fields) != 10 or fields[3] not in (b"pending", b"processing"):
                continue
            options = fields[9]
            if options.startswith(b'"') and options.endswith(b'"'):
                options = options[1:-1].replace(b'""', b'"')
            try:
                key = decode_options(options.decode("utf-8")).get("unique_key")
            except ValueError:
                continue
            if isinstance(key, str):
                self.active[key] = fields[0].decode("utf-8", "replace")


class JobTimeout(BaseException):
    """Raised inside a handler that ran past its timeout. A BaseException, so that a
    handler's own ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def time_limit(seconds: Optional[float]):
    """Interrupt the code inside after ``seconds`` by raising JobTimeout, with SIGALRM.

    Works for Python code in the main thread; C code that does not return to the
    interpreter (a blocking call in an extension that ignores signals) is interrupted only
    when it returns. Elsewhere (another thread, or no limit) it does nothing.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise JobTimeout(f"timed out after {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def register(handlers: Dict[str, Callable], job_type: str) -> Callable:
    """A decorator that adds a handler for ``job_type`` to ``handlers``; two for one type
    is an error, raised when the second is defined (at import time)."""
    if not isinstance(job_type, str) or not job_type:
        raise TypeError(f"handler() takes the job type, such as 'send_email', not {job_type!r}")

    def decorate(function: Callable) -> Callable:
        if job_type in handlers:
            raise ValueError(f"a handler for {job_type!r} is registered already "
                             f"({getattr(handlers[job_type], '__qualname__', handlers[job_type])})")
        handlers[job_type] = function
        return function
    return decorate
