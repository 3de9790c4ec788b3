"""A worker's settings, checked once before the file is touched: what it runs and how
(WorkerOptions), and how much one run may do (Bounds, on an injectable monotonic clock)."""

import time
from typing import Any, Callable, Mapping, Optional

from ..backend import DEFAULT_STOP_GRACE
from ..model.checks import check_attempts, check_duration, check_handlers, check_number
from ..model.queues import QueueChoice, Scope

MAX_CONCURRENCY = 256


class WorkerOptions:
    """The settings of a worker, checked once, before the file is touched. ``queues`` None
    serves every queue; a list, those in strict order; a dict, those by weight."""

    def __init__(self, handlers: Mapping[str, Callable[[dict], Any]], max_attempts: int,
                 lease_seconds: float, retention_seconds: Optional[float],
                 timeout: Optional[float], concurrency: int = 1,
                 queues: QueueChoice = None, stop_grace: float = DEFAULT_STOP_GRACE) -> None:
        self.handlers, self.max_attempts = handlers, max_attempts
        self.stop_grace = stop_grace
        check_duration("stop_grace", stop_grace, zero_allowed=True)
        self.lease_seconds, self.retention_seconds = lease_seconds, retention_seconds
        self.timeout, self.concurrency, self.queues = timeout, concurrency, queues
        check_handlers(self.handlers)
        # What the worker takes: only types it has a handler for, in the queues it serves.
        self.scope = Scope.of(self.handlers, self.queues)
        # The concurrency limits its handlers declare (@handler(..., limit=N)).
        self.limits = dict(getattr(self.handlers, "limits", None) or {})
        self.rate_limits = dict(getattr(self.handlers, "rates", None) or {})
        check_attempts("max_attempts", self.max_attempts)
        check_duration("lease_seconds", self.lease_seconds)
        if self.retention_seconds is not None:
            check_duration("retention_seconds", self.retention_seconds)
        if self.timeout is not None:
            check_duration("timeout", self.timeout)
        check_number("concurrency", self.concurrency, integer=True)
        if self.concurrency > MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be at most {MAX_CONCURRENCY} threads, not "
                             f"{self.concurrency}; run more worker processes instead")


    @property
    def serves(self) -> str:
        """What the worker takes, for the worker registry: its handlers' types, and the
        queues it serves if not every one (``send_email,sync_crm in emails,default``)."""
        types = ",".join(sorted(map(str, self.handlers))) or "-"
        if self.queues is None:
            return types
        if isinstance(self.queues, dict):
            return f"{types} in " + ",".join(f"{name}:{weight}"
                                              for name, weight in self.queues.items())
        return f"{types} in " + ",".join(self.queues)


class Bounds:
    """How much one worker may do: at most ``max_jobs`` jobs, until ``max_seconds`` from now
    on the ``monotonic`` clock."""

    def __init__(self, max_jobs: Optional[int], max_seconds: Optional[float],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if max_jobs is not None:
            check_number("max_jobs", max_jobs, integer=True)
        if max_seconds is not None:
            check_duration("max_seconds", max_seconds)
        self.max_jobs = max_jobs
        self.monotonic = monotonic
        self.deadline = None if max_seconds is None else monotonic() + max_seconds

    def reached(self, ran: int) -> bool:
        return ((self.max_jobs is not None and ran >= self.max_jobs) or
                (self.deadline is not None and self.monotonic() >= self.deadline))

    def less(self, ran: int) -> "Bounds":
        """The bounds left after ``ran`` jobs, with the same deadline."""
        left = Bounds(None if self.max_jobs is None else self.max_jobs - ran, None, self.monotonic)
        left.deadline = self.deadline
        return left

    def room(self, ran: int, batch: int) -> int:
        return batch if self.max_jobs is None else min(batch, self.max_jobs - ran)
