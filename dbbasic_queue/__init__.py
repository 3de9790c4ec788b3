"""dbbasic-queue: background jobs for a Python app on one server, kept in one TSV file.

Every job runs at least once, however workers overlap or die; a job runs twice only if its
worker died in the second between the handler returning and the result being written.
The four published functions use a default Queue at ``data/queue.tsv`` (relative to the
current directory at each call; ``DBBASIC_QUEUE_FILE`` overrides it).

Where things are (a folder a layer; each layer imports only the ones below it, and nothing
below the faces imports a face; ``docs/architecture.md`` draws it):
- ``model/``: the job and its life, pure: the line format and the statuses (``job.py``),
  the transitions, retention and the retry schedule (``transitions.py``), per-job options
  and ``Retry``, argument checks;
- ``storage/``: the TSV engine: a worker run's verbs (``engine.py``), the table's lock,
  appends and atomic rewrites (``table.py``), the claim logic (``claim.py``), the admin
  verbs' rewrites (``edits.py``), the dated archive and traceback files (``history.py``),
  the unique-key index, the counts;
- ``worker/``: a worker run (``run.py``), the loop worker, liveness, time limits,
  ``current_job()``;
- ``periodic/``: cron expressions, schedules, the record of fired slots, firing;
- the API, here: ``queue.py`` the TSV queue, ``backend.py`` the interface every backend
  implements, ``rq/`` the Redis backend, ``testing.py`` and ``pytest_plugin.py`` for an app's
  tests, ``errors.py``, ``hooks.py`` the app's hooks at each step of a job (``add_hooks``),
  ``metrics.py`` the figures in Prometheus's text format, ``log.py`` the logger that loads
  ``logging`` at the first message;
- faces: ``cli/`` the command line, ``dashboard/`` the web page, ``django/`` Django's tasks,
  ``family/`` and ``admin.py`` the names the other dbbasic packages call (``_read_tsv`` too).
"""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from .backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                      DEFAULT_RETENTION_SECONDS, PERIODIC, Backend, require)
from .errors import CorruptLineError, QueueError, UnsupportedError
from .hooks import JobEvent, add_hooks, remove_hooks
from .model.checks import checked_job_type, payload_json
from .model.options import Handlers, Retry, register
from .queue import Queue
from .model.transitions import retry_delay
# The subpackage periodic/ (only its docstring: light) is loaded now, so that the function
# periodic() defined below keeps its name: a first import of periodic.schedules, later,
# would otherwise bind the name to the subpackage.
from . import periodic as _periodic_package
del _periodic_package

__version__ = "2.0.0.dev0"  # 2: workers take only what they can run; RQ jobs are JSON
__all__ = ["enqueue", "process_jobs", "get_job", "cancel_job", "enqueue_after",
           "enqueue_on_commit", "handler", "handlers", "periodic", "default_queue", "use_queue",
           "Queue", "Backend", "Retry", "QueueError", "CorruptLineError", "UnsupportedError",
           "retry_delay", "add_hooks", "remove_hooks", "JobEvent", "enqueue_many", "chain",
           "batch", "__version__"]

_queues: Dict[Any, Any] = {}  # the queues the module-level functions built, by their settings

handlers: Dict[str, Callable[[dict], Any]] = Handlers()
"""The handlers registered with ``@dbbasic_queue.handler(...)`` and ``@dbbasic_queue.periodic
(...)`` (their schedules in ``handlers.schedules``): ``process_jobs(handlers)``."""


def use_queue(queue: Optional[Backend]) -> Optional[Backend]:
    """Make the module-level functions use ``queue`` (any backend) until called again with
    None, which goes back to choosing from the environment; returns the queue chosen before
    (None if none was), to put back. For an app that builds its own queue, and for tests
    (``dbbasic_queue.testing.using_queue``)."""
    previous = _queues.get("chosen")
    if queue is None:
        _queues.pop("chosen", None)
    else:
        _queues["chosen"] = queue
    return previous


def default_queue() -> Queue:
    """The Queue the module-level functions use, chosen afresh at every call.

    Its file is ``$DBBASIC_QUEUE_FILE`` or ``data/queue.tsv``, relative to the current
    directory; ``DBBASIC_QUEUE_DURABLE=1`` makes every enqueue fsync. With
    ``DBBASIC_QUEUE_URL=redis://...`` it is an RQQueue on that Redis instead (see
    ``rq/``; needs the ``rq`` extra, else QueueError names it). ``use_queue``
    overrides the choice.
    """
    if "chosen" in _queues:
        return _queues["chosen"]
    url = os.environ.get("DBBASIC_QUEUE_URL")
    if url:
        if ("rq", url) not in _queues:
            try:
                from .rq.backend import RQQueue
            except ImportError as error:
                raise QueueError(f"DBBASIC_QUEUE_URL is set, and the Redis backend needs the rq "
                                 f"extra: pip install 'dbbasic-queue[rq]' ({error}); or unset "
                                 f"DBBASIC_QUEUE_URL to use the TSV file") from error
            _queues[("rq", url)] = RQQueue(url)
        return _queues[("rq", url)]
    environ = os.environ
    file = environ.get("DBBASIC_QUEUE_FILE") or DEFAULT_PATH
    durable = environ.get("DBBASIC_QUEUE_DURABLE", "")
    # A relative path means the current directory at this call: part of the key, and cheaper
    # than making the path absolute every time.
    key = (file, durable, "" if file.startswith("/") else os.getcwd())
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = Queue(os.path.abspath(file),
                                     durable=durable.lower() in ("1", "true", "yes"))
    return queue


def enqueue(job_type: str, payload: dict, run_at: Optional[float] = None, *,
            unique_key: Optional[str] = None, max_attempts: Optional[int] = None,
            timeout: Optional[float] = None, queue: Optional[str] = None,
            priority: Optional[int] = None, concurrency_key: Optional[str] = None,
            concurrency_limit: Optional[int] = None, rate_limit: Optional[str] = None,
            rate_key: Optional[str] = None, depends_on=None, allow_failure: bool = False) -> str:
    """Queue a job; return its id. See Queue.enqueue (the queue a handler registered with
    ``@dbbasic_queue.handler(..., queue=...)`` declares is the default for its type)."""
    if queue is None and handlers.queues:
        queue = handlers.queues.get(job_type)
    extra = {}
    if depends_on is not None or allow_failure:
        extra = dict(depends_on=depends_on, allow_failure=allow_failure)
    elif (queue is None and priority is None and concurrency_key is None and rate_limit is None
            and concurrency_limit is None and rate_key is None):  # the usual call, kept short
        return default_queue().enqueue(job_type, payload, run_at, unique_key=unique_key,
                                       max_attempts=max_attempts, timeout=timeout)
    given = dict(queue=queue, priority=priority, concurrency_key=concurrency_key,
                 concurrency_limit=concurrency_limit, rate_limit=rate_limit, rate_key=rate_key)
    options = {name: value for name, value in given.items() if value is not None}
    return default_queue().enqueue(job_type, payload, run_at, unique_key=unique_key,
                                   max_attempts=max_attempts, timeout=timeout, **options,
                                   **extra)


def chain(*steps, **options) -> List[str]:
    """Queue jobs that run one after another; see Queue.chain."""
    return default_queue().chain(*steps, **options)


def batch(on_complete=None, **options):
    """Jobs written together, with a job run once all have ended; see Queue.batch."""
    return default_queue().batch(on_complete, **options)


def process_jobs(handlers: Mapping[str, Callable[[dict], Any]],
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 max_jobs: Optional[int] = None, max_seconds: Optional[float] = None,
                 retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS,
                 timeout: Optional[float] = None, concurrency: int = 1, queues=None) -> int:
    """Run the due jobs; return how many ran. See Queue.process_jobs (``queues``: the
    queues served, None for every one)."""
    extra = {} if queues is None else {"queues": queues}
    return default_queue().process_jobs(
        handlers, max_attempts, lease_seconds=lease_seconds, max_jobs=max_jobs,
        max_seconds=max_seconds, retention_seconds=retention_seconds, timeout=timeout,
        concurrency=concurrency, **extra)


def get_job(job_id: str) -> Optional[Dict[str, Any]]:
    """The job as a dict, or None. See Queue.get_job."""
    return default_queue().get_job(job_id)


def cancel_job(job_id: str) -> bool:
    """Cancel a pending job; True if it was cancelled. See Queue.cancel_job."""
    return default_queue().cancel_job(job_id)


def enqueue_many(jobs, run_at: Optional[float] = None, **options) -> List[str]:
    """Queue many ``(job_type, payload)`` jobs in one write; see Queue.enqueue_many. Without
    ``queue=``, each job goes to the queue its handler declares (one write per queue)."""
    target = default_queue()
    if "queue" in options or not handlers.queues:
        return target.enqueue_many(jobs, run_at, **options)
    jobs = list(jobs)
    places: Dict[Optional[str], List[int]] = {}
    for place, job in enumerate(jobs):
        declared = handlers.queues.get(job[0]) if isinstance(job, tuple) and job else None
        places.setdefault(declared, []).append(place)
    if len(places) > 1:  # several writes: every job checked before the first
        for place, job in enumerate(jobs):
            try:
                job_type, payload = job
                checked_job_type(job_type), payload_json(payload)
            except (TypeError, ValueError) as error:
                raise type(error)(f"job {place} of enqueue_many: {error}") from None
    ids: List[str] = [""] * len(jobs)
    for declared, chosen in places.items():
        given = dict(options, queue=declared) if declared is not None else options
        for place, job_id in zip(chosen, target.enqueue_many([jobs[p] for p in chosen],
                                                              run_at, **given)):
            ids[place] = job_id
    return ids


def enqueue_after(register_callback: Callable[[Callable[[], Any]], Any], job_type: str,
                  payload: dict, run_at: Optional[float] = None, **options) -> str:
    """Enqueue once a transaction commits; see Queue.enqueue_after."""
    return default_queue().enqueue_after(register_callback, job_type, payload, run_at, **options)


def enqueue_on_commit(job_type: str, payload: dict, run_at: Optional[float] = None, *,
                      using: Optional[str] = None, **options) -> str:
    """Enqueue when the current Django transaction commits (at once outside one), so the
    job never runs before the rows it needs exist; returns the job's id. ``using`` names
    the database, as in Django's ``transaction.on_commit``. Without Django installed,
    QueueError says so."""
    try:
        from django.db import transaction  # only for Django projects: no dependency otherwise
    except ImportError as error:
        raise QueueError(f"enqueue_on_commit needs Django ({error}): pip install django, or "
                         f"use enqueue_after(your_framework_on_commit, ...) outside "
                         f"Django") from error
    return enqueue_after(lambda write: transaction.on_commit(write, using=using),
                         job_type, payload, run_at, **options)


def handler(job_type: str, *, queue: Optional[str] = None, limit: Optional[int] = None,
            rate_limit: Optional[str] = None) -> Callable:
    """A decorator: ``@dbbasic_queue.handler("send_email")`` adds the function to
    ``dbbasic_queue.handlers``; registering two for one type raises ValueError. With
    ``queue="emails"``, ``enqueue`` puts jobs of the type in that queue unless told otherwise."""
    return register(handlers, job_type, queue, limit, rate_limit)


def periodic(cron: Optional[str] = None, *, every=None, timezone: str = "UTC",
             catch_up: str = "latest", job_type: Optional[str] = None) -> Callable:
    """A decorator: ``@dbbasic_queue.periodic("0 3 * * *", timezone="Europe/Berlin")`` adds the
    function to ``dbbasic_queue.handlers`` with its schedule, as ``Queue.periodic`` does for
    a queue; the workers given ``dbbasic_queue.handlers`` fire it. Where the default queue
    cannot fire schedules (Redis: DBBASIC_QUEUE_URL), raises UnsupportedError."""
    from .periodic.schedules import WITHOUT_PERIODIC, declare  # only an app with schedules
    require(default_queue(), PERIODIC, "@periodic (periodic jobs)", WITHOUT_PERIODIC)
    return declare(handlers, cron, every=every, timezone=timezone, catch_up=catch_up,
                   job_type=job_type)


def _read_tsv(*args, **kwargs):
    """A compatibility name: dbbasic-email 1.0.0's ``email:queue`` calls ``_read_tsv()`` (see
    ``compat.job_rows``: every job as a list of strings in the published columns, archive
    files included). Not part of the API otherwise; new code uses ``Queue.jobs()``."""
    from .family.compat import job_rows  # here: a worker never needs it
    return job_rows(*args, **kwargs)
