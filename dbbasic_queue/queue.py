"""A background job queue in one TSV file, for one server: every job runs at least once.

``enqueue`` appends one line under the table lock, so its cost does not grow with the queue.
``process_jobs`` claims due jobs in batches (one atomic rewrite marks them ``processing`` with a
lease), runs them, and records their results in batches at most about a second old; while it
runs it renews its leases, so no other worker takes its jobs, and a job whose worker died is
taken again once its lease has run out.
"""

import json
import logging
import math
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from .errors import CorruptLineError
from .table import STATUSES, Editor, Job, Table, job_line, line_id, one_line, parse_line

logger = logging.getLogger("dbbasic_queue")

DEFAULT_PATH = "data/queue.tsv"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 300
RESULT_WINDOW_SECONDS = 1.0  # a finished job's result reaches the file within about this long
_KEEPER_TICK_SECONDS = 0.2
_BATCH_SECONDS = 0.5  # aim for batches of about this much work
_FIRST_BATCH, _MAX_BATCH = 8, 8000  # a held job costs about 2 KB of peak memory


def retry_delay(attempts: int, *, base: float = 60, factor: float = 2, cap: float = 3600,
                jitter: float = 0.25, random: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next try of a job that has failed ``attempts`` times.

    1.0.0's schedule, ``base * factor ** attempts`` (2 min, 4 min, 8 min, ...), capped at
    ``cap`` seconds, then shortened by a random fraction of at most ``jitter``, so jobs that
    failed together do not all come back in the same second.
    """
    return min(cap, base * factor ** attempts) * (1 - jitter * random())


class Queue:
    """A job queue kept in one dbbasic-tsv file (``data/queue.tsv`` unless told otherwise).

    ``durable=True`` fsyncs every enqueue, so a queued job survives a power loss, not only a
    crash of the process. ``clock`` and ``random`` are there for tests.
    """

    def __init__(self, path=DEFAULT_PATH, *, durable: bool = False,
                 clock: Callable[[], float] = time.time,
                 random: Callable[[], float] = random.random) -> None:
        self.table = Table(path)
        self.path = self.table.path
        self.durable = durable
        self.clock = clock
        self.random = random

    def __repr__(self) -> str:
        return f"Queue({str(self.path)!r})"

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None) -> str:
        """Queue a job for the handler of ``job_type``; return its id.

        ``run_at`` is a Unix timestamp; the job runs at the first worker run after it
        (default: now). Raises TypeError or ValueError, writing nothing, on bad arguments.
        """
        now = self.clock()
        job_id = secrets.token_hex(8)
        line = job_line(job_id, _checked_job_type(job_type), _payload_json(payload), "pending",
                        int(now), _checked_run_at(run_at, now), 0)
        self.table.append(line, durable=self.durable)
        return job_id

    def get_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The job as a dict (see the README), or None if there is no such job."""
        found = self._find(job_id)
        if found is None:
            return None
        job, number = found
        try:
            return _as_dict(job)
        except ValueError as error:
            raise CorruptLineError(_corrupt_message(self.path, number, error)) from None

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a pending job. True if it was pending and is now cancelled."""
        found = self._find(job_id)
        if found is None or found[0].status != "pending":
            return False
        edit = self.table.rewrite(lambda: _Cancel(found[0].id))
        return edit is not None and edit.cancelled

    def _find(self, job_id):
        if not _is_plausible_id(job_id):
            return None
        prefix = job_id.encode() + b"\t"
        for number, line in self.table.lines():
            if line.startswith(prefix):
                try:
                    return parse_line(line), number
                except CorruptLineError as error:
                    raise CorruptLineError(_corrupt_message(self.path, number, error)) from None
        return None

    def process_jobs(self, handlers: Mapping[str, Callable[[dict], Any]],
                     max_attempts: int = DEFAULT_MAX_ATTEMPTS, *,
                     lease_seconds: float = DEFAULT_LEASE_SECONDS,
                     max_jobs: Optional[int] = None, max_seconds: Optional[float] = None) -> int:
        """Run the due jobs with ``handlers`` (job type -> callable taking the payload dict).

        A failed job is retried on the ``retry_delay`` schedule until it has had
        ``max_attempts`` attempts, then marked ``failed``. The run stops when no job is due,
        after ``max_jobs`` jobs, or once ``max_seconds`` have passed (the job in hand is
        finished). Returns how many jobs it ran.
        """
        _check_handlers(handlers)
        _check_positive("max_attempts", max_attempts, integer=True)
        _check_positive("lease_seconds", lease_seconds)
        if max_jobs is not None:
            _check_positive("max_jobs", max_jobs, integer=True)
        if max_seconds is not None:
            _check_positive("max_seconds", max_seconds)
        return _WorkerRun(self, handlers, max_attempts, lease_seconds, max_jobs, max_seconds).run()


# --- the worker ---------------------------------------------------------------------------

@dataclass
class _Held:
    """A job this worker run has claimed and whose final state is not on disk yet."""

    __slots__ = ("original", "claimed_at", "lease_until")
    original: Job  # as it was before the claim, to put back if it never starts
    claimed_at: float
    lease_until: float

    @property
    def attempt(self) -> int:
        return self.original.attempts + 1

    def line(self) -> bytes:
        """The line this worker last wrote for the job: if the file holds another, another
        worker has taken the job since (this worker's lease ran out)."""
        job = self.original
        return job_line(job.id, job.type, job.payload, "processing", job.created_at,
                        math.ceil(self.lease_until), job.attempts + 1, job.error, job.result)


class _WorkerRun:
    """One call of process_jobs: claim a batch, run it, record it, until done.

    A keeper thread writes finished results that have waited RESULT_WINDOW_SECONDS, and
    renews the leases of held jobs before half their time is gone, while a handler runs.
    """

    def __init__(self, queue, handlers, max_attempts, lease_seconds, max_jobs, max_seconds):
        self.queue = queue
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.max_jobs = max_jobs
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.held: Dict[bytes, _Held] = {}
        self.to_run: deque = deque()  # ids of held jobs not started yet, in claim order
        self.finished: Dict[bytes, bytes] = {}  # final lines waiting to be written
        self.oldest_unwritten: Optional[float] = None  # monotonic time of the oldest of them
        self.reported: set = set()  # corrupt lines already logged in this run
        self.state_lock = threading.Lock()  # guards held, to_run, finished
        self.sync_lock = threading.Lock()  # one rewrite at a time
        self.stopping = threading.Event()
        self.bookmark = None  # where the next rewrite may resume (see table.Bookmark)
        self.last_sync_resumed = False

    def run(self) -> int:
        self.queue.table.remove_stale_temporary_files(older_than=3600, now=time.time())
        keeper = threading.Thread(target=self._keep, name="dbbasic-queue-keeper", daemon=True)
        keeper.start()
        ran, batch = 0, _FIRST_BATCH
        try:
            while not self._out_of_time() and (self.max_jobs is None or ran < self.max_jobs):
                limit = batch if self.max_jobs is None else min(batch, self.max_jobs - ran)
                if not self._sync(claim=limit) and not (
                        self.last_sync_resumed and self._sync(claim=limit, full=True)):
                    break  # no due job left, in a look at the whole file
                started, count = time.perf_counter(), 0
                while self.to_run and not self._out_of_time():
                    with self.state_lock:
                        held = self.held.get(self.to_run.popleft())
                    if held is not None:  # None: its lease was lost before it started
                        self._run_one(held)
                        count += 1
                ran += count
                per_job = (time.perf_counter() - started) / max(count, 1)
                batch = max(1, min(_MAX_BATCH, batch * 8, int(_BATCH_SECONDS / max(per_job, 1e-6))))
        finally:
            self.stopping.set()
            keeper.join()
            self._sync(release=True)
            if self.bookmark is not None:
                self.bookmark.close()
        return ran

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _run_one(self, held: _Held) -> None:
        job = held.original
        handler = self.handlers.get(job.type)
        logger.info("job %s %s started (attempt %d of %d)", job.id, job.type, held.attempt,
                    self.max_attempts)
        started = time.perf_counter()
        try:
            if handler is None:
                raise LookupError(f"no handler for job type {job.type!r}; add one to the handlers "
                                  f"given to process_jobs")
            result = handler(json.loads(job.payload))
        except Exception as error:
            self._record(held, self._failure(held, error))
        except BaseException as error:  # KeyboardInterrupt, SystemExit: try again at once
            self._record(held, held.original.evolve(
                status="pending", attempts=held.attempt, run_at=int(self.queue.clock()),
                error=_error_text(error)))
            logger.warning("job %s %s interrupted by %s; it will run again", job.id, job.type,
                           type(error).__name__)
            raise
        else:
            self._record(held, job.evolve(status="completed", attempts=held.attempt,
                                          run_at=int(held.claimed_at), error="",
                                          result=_result_json(result, job)))
            logger.info("job %s %s completed in %.1f ms", job.id, job.type,
                        (time.perf_counter() - started) * 1000)

    def _failure(self, held: _Held, error: Exception) -> Job:
        job, text = held.original, _error_text(error)
        if held.attempt >= self.max_attempts:
            logger.error("job %s %s failed for good after %d attempts: %s", job.id, job.type,
                         held.attempt, text)
            return job.evolve(status="failed", attempts=held.attempt,
                              run_at=int(held.claimed_at), error=text)
        retry_at = math.ceil(self.queue.clock() + retry_delay(held.attempt, random=self.queue.random))
        logger.warning("job %s %s failed (attempt %d of %d): %s; next try at %s", job.id, job.type,
                       held.attempt, self.max_attempts, text, _utc(retry_at))
        return job.evolve(status="pending", attempts=held.attempt, run_at=retry_at, error=text)

    def _record(self, held: _Held, final: Job) -> None:
        with self.state_lock:
            self.finished[held.original.id.encode()] = final.to_line()
            if self.oldest_unwritten is None:
                self.oldest_unwritten = time.monotonic()

    def _keep(self) -> None:
        while not self.stopping.wait(_KEEPER_TICK_SECONDS):
            renew_before = self.queue.clock() + self.lease_seconds / 2
            with self.state_lock:
                results_waiting = (self.oldest_unwritten is not None and
                                   time.monotonic() - self.oldest_unwritten >= RESULT_WINDOW_SECONDS)
                lease_ending = any(h.lease_until < renew_before for h in self.held.values())
            if results_waiting or lease_ending:
                try:
                    self._sync()
                except Exception:
                    logger.exception("could not write results or renew leases; trying again")

    def _sync(self, claim: int = 0, release: bool = False, full: bool = False) -> List[bytes]:
        """Write finished jobs, renew held leases, claim up to ``claim`` due jobs, and (with
        ``release``) put held jobs that never started back; all in one rewrite. Returns the
        ids claimed. Unless ``full``, it starts at the bookmark: jobs before it that have
        become due since the last look wait for a full look (every run ends with one)."""
        with self.sync_lock:
            with self.state_lock:
                held, finished = dict(self.held), dict(self.finished)
                unstarted = set(self.to_run) if release else set()
            if not claim and not held:
                return []
            now = self.queue.clock()
            resume = None if full else self.bookmark
            sync = self.queue.table.rewrite(lambda: _Sync(
                held, finished, unstarted, now, now + self.lease_seconds, claim,
                self.max_attempts), resume)
            self.last_sync_resumed = resume is not None
            if sync is None:
                return []
            if sync.bookmark is not None or sync.changed:
                if self.bookmark is not None:
                    self.bookmark.close()
                self.bookmark = sync.bookmark
            with self.state_lock:
                for job_id in sync.settled:
                    self.held.pop(job_id, None)
                    self.finished.pop(job_id, None)
                for job_id in sync.renewed:
                    self.held[job_id].lease_until = sync.lease_until
                self.held.update(sync.claimed)
                self.to_run.extend(sync.claimed)
                if release:
                    self.to_run.clear()
                if not self.finished:
                    self.oldest_unwritten = None
            self._report(sync)
            return list(sync.claimed)

    def _report(self, sync: "_Sync") -> None:
        for job_id in sync.lost:
            logger.warning("job %s: another worker took it after its lease ran out (was this "
                           "process stopped?); its result here is not recorded", job_id.decode())
        for job in sync.abandoned:
            logger.error("job %s %s failed for good: %s", job.id, job.type, job.error)
        for job in sync.retaken:
            logger.warning("job %s %s: the worker of attempt %d stopped without a result; "
                           "trying again", job.id, job.type, job.attempts)
        for line, reason in sync.corrupt:
            if line not in self.reported:
                self.reported.add(line)
                logger.warning("%s: a corrupt line, left as it is (%s): %s", self.queue.path,
                               reason, line[:120].decode("utf-8", "replace").rstrip())


class _Sync(Editor):
    """The rewrite behind _WorkerRun._sync: decides the new line for every line of the file.

    This is the claim logic. A line is claimed when it is ``pending`` and due, or
    ``processing`` with its lease (``run_at``) run out, which means its worker died; such a
    job already used ``max_attempts`` attempts is marked ``failed`` instead.
    """

    def __init__(self, held, finished, unstarted, now, lease_until, claim, max_attempts):
        self.held, self.finished, self.unstarted = held, finished, unstarted
        self.now, self.lease_until = now, lease_until
        self.claim, self.max_attempts = claim, max_attempts
        self.settled: set = set()  # final state written, put back unstarted, or lease lost
        self.renewed: set = set()
        self.claimed: Dict[bytes, _Held] = {}
        self.lost: List[bytes] = []
        self.abandoned: List[Job] = []
        self.retaken: List[Job] = []
        self.corrupt: list = []
        self.held_seen = 0

    @property
    def done(self) -> bool:
        return self.held_seen == len(self.held) and len(self.claimed) >= self.claim

    def __call__(self, line: bytes) -> bytes:
        job_id = line[:line.find(b"\t")]
        mine = self.held.get(job_id)
        if mine is None:
            if len(self.claimed) < self.claim and _may_be_due(line, self.now):
                return self._claim(job_id, line)
            return line
        self.held_seen += 1
        if line != mine.line():
            self.lost.append(job_id)
            self.settled.add(job_id)
            return line
        self.changed = True
        if job_id in self.finished:
            self.settled.add(job_id)
            return self.finished[job_id]
        if job_id in self.unstarted:
            self.settled.add(job_id)
            return mine.original.to_line()
        self.renewed.add(job_id)
        if self.resume_offset is None:  # the first line still held after this rewrite
            self.resume_offset = self.position
        return _Held(mine.original, mine.claimed_at, self.lease_until).line()

    def _claim(self, job_id: bytes, line: bytes) -> bytes:
        try:
            job = parse_line(line)
            if not isinstance(json.loads(job.payload), dict):
                raise CorruptLineError("its payload is not a JSON object")
        except (CorruptLineError, ValueError) as error:
            self.corrupt.append((line, str(error)))
            return line
        if job.run_at > self.now or job.status not in ("pending", "processing"):
            return line
        self.changed = True
        if job.status == "processing":
            if job.attempts >= self.max_attempts:
                job = job.evolve(status="failed", error=(
                    f"the worker of attempt {job.attempts} stopped without a result (killed, "
                    f"or it lost its lease), and that was the last attempt"))
                self.abandoned.append(job)
                return job.to_line()
            self.retaken.append(job)
        held = self.claimed[job_id] = _Held(job, claimed_at=self.now, lease_until=self.lease_until)
        if self.resume_offset is None:
            self.resume_offset = self.position
        return held.line()


_STATUS_CLAIMABLE = (b"pending", b"processing")


def _may_be_due(line: bytes, now: float) -> bool:
    """A cheap look at the status and run_at fields: could this line be claimed now?

    True also for lines the cheap look cannot read, so _claim parses and reports them.
    """
    fields = line.split(b"\t", 7)
    if len(fields) != 8 or fields[3] not in STATUS_WORDS:
        return True
    if fields[3] not in _STATUS_CLAIMABLE:
        return False
    return not fields[5].isdigit() or int(fields[5]) <= now


STATUS_WORDS = frozenset(status.encode() for status in STATUSES)


class _Cancel(Editor):
    """The rewrite behind cancel_job: a pending job with this id becomes ``cancelled``."""

    def __init__(self, job_id: str) -> None:
        self.prefix = job_id.encode() + b"\t"
        self.cancelled = False
        self.changed = False

    def __call__(self, line: bytes) -> bytes:
        if not line.startswith(self.prefix):
            return line
        try:
            job = parse_line(line)
        except CorruptLineError:
            return line
        if job.status != "pending":
            return line
        self.cancelled = self.changed = self.done = True
        return job.evolve(status="cancelled", error="Cancelled by user", result="").to_line()


# --- checking arguments and converting values -----------------------------------------------

_known_job_types: set = set()  # job types already checked: an app uses a handful


def _checked_job_type(job_type) -> str:
    if type(job_type) is str and job_type in _known_job_types:
        return job_type
    if not isinstance(job_type, str):
        raise TypeError(f"job_type must be a str such as 'send_email', not {type(job_type).__name__}")
    if not job_type or job_type != one_line(job_type) or job_type != job_type.strip():
        raise ValueError(f"job_type {job_type!r} must be a non-empty name without tabs, line "
                         f"breaks or surrounding spaces, such as 'send_email'")
    _check_encodable("job_type", job_type)
    if len(_known_job_types) < 1000:
        _known_job_types.add(job_type)
    return job_type


def _checked_run_at(run_at, now: float) -> int:
    if run_at is None:
        return int(now)
    if isinstance(run_at, bool) or not isinstance(run_at, (int, float)):
        raise TypeError(f"run_at must be a Unix timestamp (int or float, e.g. time.time() + 60), "
                        f"not {type(run_at).__name__}")
    if not math.isfinite(run_at) or run_at < 0:
        raise ValueError(f"run_at must be a finite Unix timestamp >= 0, not {run_at!r}")
    return math.ceil(run_at)  # never earlier than asked


def _payload_json(payload) -> str:
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    try:
        return _to_json(payload)
    except (TypeError, ValueError) as error:
        raise TypeError(f"payload is not JSON-serialisable ({error}); use only dict, list, str, "
                        f"int, float, bool and None") from None


_json_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # unicode stays readable


def _to_json(value) -> str:
    text = _json_encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escaped JSON reads back the same
            text = json.dumps(value, allow_nan=False)
    return text


def _result_json(result, job: Job) -> str:
    if result is None:
        return ""
    try:
        return _to_json(result)
    except (TypeError, ValueError) as error:
        logger.warning("job %s %s: its result is not JSON-serialisable (%s); stored as a string",
                       job.id, job.type, error)
        return _to_json(str(result))


def _error_text(error: BaseException) -> str:
    text = one_line(f"{type(error).__name__}: {error}")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} holds text that is not valid Unicode") from None


def _check_handlers(handlers) -> None:
    if not isinstance(handlers, Mapping):
        raise TypeError(f"handlers must be a dict mapping job types to functions, "
                        f"not {type(handlers).__name__}")
    for job_type, handler in handlers.items():
        if not callable(handler):
            raise TypeError(f"the handler for {job_type!r} is not callable "
                            f"({type(handler).__name__}); pass the function itself")


def _check_positive(name: str, value, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, "
                        f"not {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be greater than 0, not {value!r}")


def _is_plausible_id(job_id) -> bool:
    return isinstance(job_id, str) and bool(job_id) and not any(c in job_id for c in '\t\r\n"')


def _as_dict(job: Job) -> Dict[str, Any]:
    """The published get_job shape. Raises ValueError if the JSON in the line is broken."""
    return {"id": job.id, "type": job.type,
            "payload": json.loads(job.payload) if job.payload else {},
            "status": job.status, "created_at": job.created_at, "run_at": job.run_at,
            "attempts": job.attempts, "error": job.error or None,
            "result": json.loads(job.result) if job.result else None}


def _corrupt_message(path, number: int, error: Exception) -> str:
    return f"{path}, line {number}: a corrupt line ({error}); fix or remove it by hand"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
