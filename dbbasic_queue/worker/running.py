"""The job whose handler is running, for code that needs more than the payload it is given.

A handler is called with the payload alone (the published contract); ``current_job()`` tells
it, or anything it calls, which job and which attempt it is running, for logs, or to know
whether a failure is the job's last. The worker sets it around each handler call.
"""

import contextlib
import contextvars
from typing import NamedTuple, Optional


class RunningJob(NamedTuple):
    """The job whose handler is running: what ``current_job()`` returns inside a handler."""

    id: str
    type: str
    created_at: int
    attempt: int  # this attempt's number, from 1: the job's attempts once it is recorded
    max_attempts: int  # the job's own, or the worker's
    queue: str = "default"  # see model/queues.py
    priority: int = 0


_running_job: contextvars.ContextVar = contextvars.ContextVar("dbbasic_queue_job", default=None)


def current_job() -> Optional[RunningJob]:
    """The job whose handler is running in this thread, or None outside a handler."""
    return _running_job.get()


@contextlib.contextmanager
def running(job: RunningJob):
    """``current_job()`` is ``job`` inside the block."""
    token = _running_job.set(job)
    try:
        yield
    finally:
        _running_job.reset(token)
