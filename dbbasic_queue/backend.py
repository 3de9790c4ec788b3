"""The interface every backend implements: the verbs, their defaults, and declared capabilities.

The module-level functions, the command line and anything built on the queue use only this
interface. Where backends differ, a backend declares it in ``capabilities`` rather than
callers testing its class; a verb or option a backend cannot honour raises UnsupportedError
naming the backend and what to do instead, never an AttributeError and never a silent no-op.
"""

from typing import (Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional,
                    Protocol, Sequence, runtime_checkable)

from .errors import UnsupportedError

DEFAULT_PATH = "data/queue.tsv"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 300
DEFAULT_RETENTION_SECONDS = 7 * 86400  # completed and cancelled jobs older than this go

# Capabilities a backend may declare (``Backend.capabilities``).
UNIQUE_KEYS = "unique_keys"  # enqueue(..., unique_key=...)
LEASES = "leases"  # a dead worker's job is taken again (at once, or after its lease)
RETRY_KEEPS_ATTEMPTS = "retry_keeps_attempts"  # raise Retry(...) uses no attempt
WORKER_MAX_ATTEMPTS = "worker_max_attempts"  # process_jobs(max_attempts=) applies at run time
LISTING = "listing"  # jobs(), stats()
PURGE = "purge"  # purge(...)
RETRY = "retry"  # retry_job, retry_failed
FILE = "file"  # the jobs live in a file readable with cat and grep
PERIODIC = "periodic"  # @queue.periodic(...): schedules fired exactly once per slot by its workers
QUEUES = "queues"  # named queues, priorities and pauses (enqueue(queue=, priority=), pause())
WORKERS = "workers"  # workers(): who works the queue, when each was last seen, its counts
WORKFLOWS = "workflows"  # enqueue(depends_on=...), chain(...), batch(on_complete=...)
JOB_CONTROL = "job_control"  # current_job().progress(...), stop(id), job_info()'s progress
DEFAULT_STOP_GRACE = 10.0  # seconds a handler asked to stop has before it is interrupted

Handlers = Mapping[str, Callable[[dict], Any]]


@runtime_checkable
class Backend(Protocol):
    """What a queue backend offers. ``Queue`` (a TSV file) and ``RQQueue`` (Redis) are two."""

    capabilities: FrozenSet[str]

    def describe(self) -> str:
        """Where the jobs live, for messages: ``data/queue.tsv``, ``redis://host:6379/0``."""

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None, *,
                unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
                timeout: Optional[float] = None, queue: Optional[str] = None,
                priority: Optional[int] = None, concurrency_key: Optional[str] = None,
                concurrency_limit: Optional[int] = None, rate_limit: Optional[str] = None,
                rate_key: Optional[str] = None, depends_on=None,
                allow_failure: bool = False) -> str: ...

    def enqueue_many(self, jobs, run_at: Optional[float] = None, **options) -> List[str]:
        """Queue ``(job_type, payload)`` pairs, all checked first; returns their ids."""

    def chain(self, *steps, run_at: Optional[float] = None, allow_failure: bool = False,
              **options) -> List[str]:
        """Queue jobs that run one after another (WORKFLOWS); returns their ids."""

    def batch(self, on_complete=None, **options):
        """Jobs written together, with a job run once all have ended (WORKFLOWS)."""

    def enqueue_after(self, register_callback: Callable[[Callable[[], Any]], Any],
                      job_type: str, payload: dict, run_at: Optional[float] = None,
                      **options) -> str: ...

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]: ...

    def job_options(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The options the job was enqueued with (unique_key, max_attempts, timeout), or
        None if there is no such job."""

    def cancel_job(self, job_id: str) -> bool: ...

    def job_info(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The get_job keys, and options, waiting, progress and stop_requested (see
        Queue.job_info), or None if there is no such job."""

    def stop(self, job_id: str, by: Optional[str] = None) -> bool:
        """Ask the worker running a job to stop it (JOB_CONTROL); True if asked."""

    def delete(self, job_id: str) -> bool:
        """Remove a job for good, whatever its status but processing; True if it is gone."""

    def tracebacks(self, job_id: str) -> List[Dict[str, Any]]:
        """The tracebacks of a job's failed attempts, oldest first (attempt, failed_at,
        error, traceback); empty where the backend keeps none."""

    def retry_job(self, job_id: str) -> bool: ...

    def retry_failed(self, job_type: Optional[str] = None) -> int: ...

    def run_now(self, job_id: str, force: bool = False) -> bool: ...

    def run_now_all(self, job_type: Optional[str] = None) -> int:
        """run_now for every pending job not due yet (of ``job_type``); returns how many."""

    def purge(self, older_than: float, statuses: Sequence[str] = ("completed", "cancelled")) -> int: ...

    def jobs(self) -> Iterator[Dict[str, Any]]: ...

    def stats(self) -> Dict[str, Any]: ...

    def workers(self) -> List[Dict[str, Any]]:
        """The workers seen working the queue, most recently seen first: name, host, pid,
        kind, serves, concurrency, started, last_run, last_seen, interval, in_hand, completed,
        failed, retried, and state (alive, late or gone; see storage/workers.py)."""

    def throughput(self, step: int = 60, steps: int = 60) -> Dict[str, Any]:
        """The jobs the workers completed, failed and retried in each of the last ``steps``
        spans of ``step`` seconds, the current one last: starts, step, completed, failed,
        retried (WORKERS)."""

    def handler(self, job_type: str, *, queue: Optional[str] = None,
                limit: Optional[int] = None, rate_limit: Optional[str] = None) -> Callable: ...

    def check_worker(self, handlers: Handlers, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                     **options) -> None:
        """Raise as process_jobs and work would for these settings, touching nothing."""

    def periodic(self, cron: Optional[str] = None, *, every=None, timezone: str = "UTC",
                 catch_up: str = "latest", job_type: Optional[str] = None) -> Callable:
        """A decorator declaring a handler and its schedule (see periodic/schedules.py); a backend
        without PERIODIC raises UnsupportedError."""

    def process_jobs(self, handlers: Handlers, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                     **options) -> int: ...

    def work(self, handlers: Handlers, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
             **options) -> int: ...


def require(backend: Backend, capability: str, what: str, instead: str) -> None:
    """Raise UnsupportedError unless ``backend`` declares ``capability``."""
    if capability not in backend.capabilities:
        raise UnsupportedError(f"{what} is not supported on {backend.describe()}; {instead}")
