"""A job's life as pure functions: given a job, the time and the policy, the job's next version.

The worker's claim pass, the admin verbs (cancel, retry, run now) and the other backends call
these, so a rule changes in one place. Nothing here reads a clock or touches a file.

    pending --claim--> processing --complete--> completed
       ^                   |  \\--fail, attempts left--> pending (run_at = retry time)
       |                   |   \\--fail, no attempts left--> failed
       |                   |\\--asked to stop (Queue.stop)--> cancelled, "Stopped by ..."
       |                   \\--its worker died (or its lease ran out)--> claimed again, or failed
       |                         if it was the last attempt; if that worker never started
       |                         it, the claim's attempt is taken back first (hand_back)
       \\--cancel--> cancelled          failed/cancelled --retry--> pending
"""

import math
from typing import Callable, Optional

from .job import (ACTIVE, CANCELLED, COMPLETED, FAILED, PENDING, PROCESSING, RETAINED_WORDS,
                  Job)

CANCELLED_BY_USER = "Cancelled by user"


def uniform() -> float:
    """random.random(), the jitter's default source; the module is loaded at the first
    retry, not by every process that imports the package."""
    import random
    return random.random()


def retry_delay(attempts: int, *, base: float = 60, factor: float = 2, cap: float = 3600,
                jitter: float = 0.25, random: Callable[[], float] = uniform) -> float:
    """Seconds to wait before the next try of a job that has failed ``attempts`` times.

    1.0.0's schedule, ``base * factor ** attempts`` (2 min, 4 min, 8 min, ...), capped at
    ``cap`` seconds, then shortened by a random fraction of at most ``jitter``, so jobs that
    failed together do not all come back in the same second.
    """
    return min(cap, base * factor ** min(attempts, 64)) * (1 - jitter * random())


def is_due(job: Job, now: float) -> bool:
    """A worker may take the job now: pending and due, or processing with its lease run out
    (its worker died, or lost it)."""
    return job.status in ACTIVE and job.run_at <= now


def claim(job: Job, lease_until: float, options: str) -> Job:
    """The job as a worker holds it: processing, one more attempt, ``run_at`` its lease's end,
    and ``options`` naming the worker (see options.with_worker)."""
    return job.evolve(status=PROCESSING, attempts=job.attempts + 1,
                      run_at=math.ceil(lease_until), options=options)


def retake_or_abandon(job: Job, max_attempts: int) -> Optional[Job]:
    """For a processing job whose worker died (or lost it) in an attempt that counts: None
    if it may be claimed again, or the job marked failed if that attempt was its last."""
    if job.attempts < max_attempts:
        return None
    return job.evolve(status=FAILED, error=(
        f"the worker of attempt {job.attempts} stopped without a result (killed, or it lost "
        f"its lease), and that was the last attempt"))


def hand_back(job: Job, now: float) -> Job:
    """For a processing job whose worker died before calling its handler: the job as it was
    before that claim, pending, due at ``now``, the attempt the claim counted taken back."""
    return job.evolve(status=PENDING, attempts=max(0, job.attempts - 1),
                      run_at=min(job.run_at, int(now)))


def complete(job: Job, started_at: float, result: str) -> Job:
    """``job`` (as it was before its claim) after a handler returned ``result`` (JSON text)."""
    return job.evolve(status=COMPLETED, attempts=job.attempts + 1, run_at=int(started_at),
                      error="", result=result)


def fail(job: Job, error: str, now: float, started_at: float, max_attempts: int,
         random: Callable[[], float] = uniform) -> Job:
    """``job`` (as it was before its claim) after an attempt failed with ``error``: pending
    again at its retry time, or failed for good once it has had ``max_attempts``."""
    attempt = job.attempts + 1
    if attempt >= max_attempts:
        return job.evolve(status=FAILED, attempts=attempt, run_at=int(started_at), error=error)
    retry_at = math.ceil(now + retry_delay(attempt, random=random))
    return job.evolve(status=PENDING, attempts=attempt, run_at=retry_at, error=error)


def stopped(job: Job, started_at: float, by: str, result: str = "") -> Job:
    """``job`` (as it was before its claim) after its handler ended because ``by`` asked it
    to stop (``Queue.stop``): cancelled, the attempt counted, the result kept if it gave one."""
    return job.evolve(status=CANCELLED, attempts=job.attempts + 1, run_at=int(started_at),
                      error=f"Stopped by {by}", result=result)


def reschedule(job: Job, run_at: int) -> Job:
    """``job`` (as it was before its claim) after its handler asked to run again at
    ``run_at`` (``Retry``): pending, and the attempt is not counted."""
    return job.evolve(status=PENDING, run_at=run_at)


def cancel(job: Job) -> Optional[Job]:
    """The job cancelled, or None if it is not pending. A job waiting for others stops
    waiting (its ``after`` or ``batch`` goes), so a retry runs it."""
    if job.status != PENDING:
        return None
    return job.evolve(status=CANCELLED, error=CANCELLED_BY_USER, result="",
                      options=_without(job.options, "after", "batch"))


def retry(job: Job, now: float) -> Optional[Job]:
    """A failed or cancelled job back to pending, due now, with fresh attempts (its last
    error stays until it runs); None for a job in any other state. The jobs that waited
    for it were told of its end already: its ``then`` goes, so it is not told twice (a
    batch counts each job once)."""
    if job.status not in (FAILED, CANCELLED):
        return None
    return job.evolve(status=PENDING, run_at=int(now), attempts=0, result="",
                      options=_without(job.options, "then"))


def _without(options: str, *links: str) -> str:
    """``options`` without the links named (see dependencies.py, loaded only for a job
    that has one)."""
    if not any(f'"{link}"' in options for link in links):
        return options
    from .dependencies import unlinked
    return unlinked(options, *links)


def run_now(job: Job, now: float, force: bool = False) -> Optional[Job]:
    """A pending job made due now, keeping its attempts; with ``force``, also a processing
    job (its lease not yet run out), put back to pending due now without counting the
    attempt it was on, which risks a second run while its worker is still inside it.
    None for any other job."""
    if job.status == PENDING:
        return job.evolve(run_at=min(job.run_at, int(now)))
    if job.status == PROCESSING and force:
        return job.evolve(status=PENDING, run_at=int(now), attempts=max(0, job.attempts - 1))
    return None


def is_purged(job, statuses, before: float) -> bool:
    """Whether ``purge`` removes the job (a Job or a get_job dict): one of ``statuses``,
    whose last activity, the later of created_at and run_at, is before ``before``."""
    if isinstance(job, dict):
        status, created_at, run_at = job["status"], job["created_at"], job["run_at"]
    else:
        status, created_at, run_at = job.status, job.created_at, job.run_at
    return status in statuses and max(created_at, run_at) < before


def finished_at(status: bytes, run_at: int, created_at: bytes) -> Optional[int]:
    """When a finished job's retention and archive age count from, given its line's peeked
    status, run_at and created_at (``job.peek_status_and_run_at``): for a completed or
    cancelled job, the later of run_at (when it finished) and created_at; None for any other
    job (failed jobs stay until purged; pending and processing ones are not finished)."""
    if status in RETAINED_WORDS and created_at.isdigit():
        return max(run_at, int(created_at))
    return None
