"""Helpers for an app's own tests: a fake clock, running a queue until it is empty, and an
immediate mode in which ``enqueue`` runs the handler at once.

With pytest, installing the package also gives the ``queue_file`` fixture (see
``pytest_plugin``): a Queue on a temporary file, with a FakeClock, which the module-level
functions use for the test's duration (``using_queue``), so app code calling
``dbbasic_queue.enqueue`` never writes to the real ``data/queue.tsv``.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from .queue import Queue

Handlers = Mapping[str, Callable[[dict], Any]]


class FakeClock:
    """A wall clock the test moves by hand: ``Queue(path, clock=FakeClock())``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_until_empty(queue: Queue, handlers: Optional[Handlers] = None, *,
                    max_attempts: int = 3, max_runs: int = 1000) -> int:
    """Run ``queue`` until no job is pending, moving its FakeClock to the next job's run_at
    whenever none is due (a delayed job, a retry's backoff, a ``Retry``). Uses the queue's
    registered handlers unless given others. Returns how many jobs ran. Raises RuntimeError
    if the queue's clock is not a FakeClock, or if jobs are still pending after ``max_runs``
    runs (a handler that asks to run again forever)."""
    clock = queue.clock
    if not isinstance(clock, FakeClock):
        raise RuntimeError("run_until_empty moves time: build the queue with clock=FakeClock()")
    handlers = queue.handlers if handlers is None else handlers
    ran = 0
    for _ in range(max_runs):
        ran += queue.process_jobs(handlers, max_attempts)
        next_run = queue.stats()["next_run_at"]
        if next_run is None:
            return ran
        clock.now = max(clock.now, float(next_run))
    raise RuntimeError(f"jobs were still pending after {max_runs} runs of {queue.path}")


class ImmediateQueue(Queue):
    """A Queue whose ``enqueue`` runs the new job's handler at once, in this process, and
    (with ``raise_errors``) raises the handler's own exception to the caller."""

    def __init__(self, path, handlers: Handlers, raise_errors: bool = True, **options) -> None:
        super().__init__(path, **options)
        self.immediate_handlers = handlers
        self.raise_errors = raise_errors

    def enqueue(self, job_type, payload, run_at=None, **options) -> str:
        job_id = super().enqueue(job_type, payload, run_at, **options)
        errors = []

        def keeping_errors(handler):
            def run(job_payload):
                try:
                    return handler(job_payload)
                except Exception as error:
                    errors.append(error)
                    raise
            return run
        self.process_jobs({job_type: keeping_errors(handler)
                           for job_type, handler in self.immediate_handlers.items()},
                          max_attempts=1)
        if errors and self.raise_errors:
            raise errors[-1]
        return job_id


@contextlib.contextmanager
def using_queue(queue: Queue) -> Iterator[Queue]:
    """Within the block, the module-level functions (``dbbasic_queue.enqueue``, ``get_job``,
    ``cancel_job``, ``process_jobs``, ...) use ``queue``, and ``DBBASIC_QUEUE_FILE`` names its
    file (for a command line the block starts); ``DBBASIC_QUEUE_URL`` is unset. After it, the
    two variables and the queue chosen with ``dbbasic_queue.use_queue`` are as they were."""
    import dbbasic_queue
    saved = {name: os.environ.get(name) for name in ("DBBASIC_QUEUE_FILE", "DBBASIC_QUEUE_URL")}
    os.environ["DBBASIC_QUEUE_FILE"] = str(queue.path)
    os.environ.pop("DBBASIC_QUEUE_URL", None)
    previous = dbbasic_queue.use_queue(queue)
    try:
        yield queue
    finally:
        dbbasic_queue.use_queue(previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def immediate(handlers: Optional[Handlers] = None, *,
              raise_errors: bool = True) -> Iterator[ImmediateQueue]:
    """Within the block, the module-level functions (``dbbasic_queue.enqueue``, ``get_job``,
    ...) use a queue on a temporary file whose ``enqueue`` runs the handler at once, with
    ``handlers`` (default: those registered with ``@dbbasic_queue.handler``). A handler's
    exception reaches the caller of ``enqueue`` unless ``raise_errors`` is False.

    The jobs belong to the block's queue: look them up inside the block. After it, the
    temporary file is gone and the functions use the real queue again, so ``get_job`` of a
    job enqueued inside returns None."""
    import dbbasic_queue
    chosen = dict(dbbasic_queue.handlers if handlers is None else handlers)
    with tempfile.TemporaryDirectory(prefix="dbbasic-queue-") as directory:
        queue = ImmediateQueue(Path(directory) / "queue.tsv", chosen, raise_errors)
        with using_queue(queue):
            yield queue


def queue_on(directory: Path, **options: Dict[str, Any]) -> Queue:
    """A Queue on ``directory/data/queue.tsv`` with a FakeClock and the retry jitter fixed at
    its midpoint, as the ``queue_file`` fixture builds it."""
    return Queue(Path(directory) / "data" / "queue.tsv", clock=FakeClock(), random=lambda: 0.5,
                 **options)
