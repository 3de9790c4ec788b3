"""The job whose handler is running, for code that needs more than the payload it is given.

A handler is called with the payload alone (the published contract); ``current_job()`` tells
it, or anything it calls, which job and which attempt it is running, for logs, or to know
whether a failure is the job's last; through it the handler reports its progress
(``progress``) and learns that someone asked it to stop (``stop_requested``; see
control.py). The worker sets it around each handler call, in context variables: a thread the
handler starts sees it only through ``with_current_job`` (as with asyncio.to_thread, which
copies the context itself).
"""

import contextlib
import contextvars
import functools
from typing import Any, Callable, NamedTuple, Optional


class RunningJob(NamedTuple):
    """The job whose handler is running: what ``current_job()`` returns inside a handler."""

    id: str
    type: str
    created_at: int
    attempt: int  # this attempt's number, from 1: the job's attempts once it is recorded
    max_attempts: int  # the job's own, or the worker's
    queue: str = "default"  # see model/queues.py
    priority: int = 0

    def progress(self, done: float, note: str = "") -> None:
        """Report how far the job got: ``done`` from 0 to 1, and a note (``'12 of 30'``).
        Cheap: the latest value reaches ``Queue.job_info``, ``show`` and the dashboard
        within about a second, without a write per call."""
        control = _control.get()
        if control is None:
            raise RuntimeError("progress() is for a handler the worker is running")
        control.report(self.id, done, note)

    @property
    def stop_requested(self) -> bool:
        """Whether someone asked this job to stop (``Queue.stop``): a handler that checks
        it stops cleanly; one that does not is interrupted after a grace period. Either
        way the job ends cancelled."""
        control = _control.get()
        return control is not None and control.stopped_by(self.id) is not None


_running_job: contextvars.ContextVar = contextvars.ContextVar("dbbasic_queue_job", default=None)
_control: contextvars.ContextVar = contextvars.ContextVar("dbbasic_queue_control", default=None)


def current_job() -> Optional[RunningJob]:
    """The job whose handler is running in this thread, or None outside a handler."""
    return _running_job.get()


def with_current_job(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, to be called in another thread (one the handler starts, an executor's)
    as if in the handler: ``current_job()`` there is the handler's job, whose ``progress``
    and ``stop_requested`` work as in the handler. Each call runs in its own copy of the
    handler's context, so an executor may run several at once. A stop's interruption after
    the grace lands in the handler's own thread only: a thread that should stop checks
    ``stop_requested``."""
    context = contextvars.copy_context()

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(function, *args, **kwargs)
    return call


@contextlib.contextmanager
def running(job: RunningJob, control=None):
    """``current_job()`` is ``job`` inside the block; ``control`` (control.JobControl)
    takes its progress and tells it of stop requests."""
    token, controlled = _running_job.set(job), _control.set(control)
    try:
        yield
    finally:
        _control.reset(controlled)
        _running_job.reset(token)
