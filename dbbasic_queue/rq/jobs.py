"""RQ jobs read as this package's jobs: data in JSON, never code.

Anyone who can write to the Redis can put a job in the queue. With RQ's default serializer
(pickle) merely reading a job's arguments, meta or result runs code, and an RQ worker imports
whatever function or callback a job names. Here every job is written and read with JSON, and
a job is ours only if it names ``DISPATCHER`` with (job type, payload JSON) and nothing else.
Any other job is foreign: ``read_job`` and the worker refuse it, and leave it where it is,
before anything of it is imported or run. Jobs pickled by dbbasic-queue 1.1.0 are refused too.
"""

import json
from typing import Any, Callable, Dict, Mapping, Optional

from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import decode_redis_hash

from ..backend import DEFAULT_MAX_ATTEMPTS
from ..errors import CorruptLineError

DISPATCHER = "dbbasic_queue.rq.backend.dispatch"  # the one function our jobs name
# Where a worker that is not ours took one of our jobs (RQ's own ``rq worker``): what to use.
OUR_WORKER = ("run it with dbbasic-queue's worker (`dbbasic-queue work --handlers "
              "app.jobs:handlers`, or process_jobs), not a plain `rq worker`")
# The same function under the name jobs enqueued before the package had subpackages carry:
# they stay ours (read, run and listed), though RQ's own worker could no longer import it.
EARLIER_DISPATCHERS = frozenset({"dbbasic_queue.rq_backend.dispatch"})
SERIALIZER = JSONSerializer
RQ_STATUSES = {"queued": "pending", "scheduled": "pending", "deferred": "pending",
               "created": "pending", "started": "processing", "finished": "completed",
               "failed": "failed", "stopped": "failed", "canceled": "cancelled"}
_CALLBACKS = ("success_callback_name", "failure_callback_name", "stopped_callback_name")
_META_INTS = ("created_at", "run_at", "attempts", "started_at", "priority")


class ForeignJobError(CorruptLineError):
    """A job in Redis that is not a dbbasic-queue job, or cannot be read as one. It is left
    as it is and never run; the message says why."""


class SafeJob(RQJob):
    """An RQ job that imports nothing it names. Its ``func`` is the function the worker hands
    it in ``run_by``, and only once the job is known to be ours; its callbacks are never
    loaded (ours have none)."""

    run_by: Optional[Callable] = None  # set by the worker on the job it is about to perform,
    handlers: Optional[Mapping[str, Callable]] = None  # with the handlers dispatch looks in
    callback_names: tuple = ()
    unreadable: Optional[str] = None

    def restore(self, raw_data) -> None:
        self.callback_names = tuple(name for name in _CALLBACKS
                                    if decode_redis_hash(raw_data).get(name))
        try:
            super().restore(raw_data)
        except NoSuchJobError:
            raise
        except Exception as error:  # a field RQ cannot parse: refuse the job, do not crash
            self.unreadable = f"its fields cannot be read ({type(error).__name__}: {error})"
            self.data = b""  # so that reading its function fails as undecodable data does
            return
        meta = self.meta
        if isinstance(meta, dict) and set(meta) == {"unserialized"}:
            recovered = meta_wrapped_by_rq(meta["unserialized"])
            if recovered is not None:
                self.meta = recovered

    @property
    def func(self) -> Callable:
        reason = refusal(self)
        if reason is not None:
            raise ForeignJobError(foreign_message(self.id, reason))
        if self.run_by is None:
            raise ForeignJobError(f"job {self.id!r} can only be run by dbbasic-queue's worker "
                                  f"(process_jobs, or dbbasic-queue work)")
        return self.run_by

    success_callback = failure_callback = stopped_callback = property(lambda self: None)


def refusal(job: RQJob) -> Optional[str]:
    """Why ``job`` is not a dbbasic-queue job, or None if it is one. It decodes the job's data
    with the job's serializer (JSON for every job read here) and imports nothing."""
    if getattr(job, "unreadable", None):
        return job.unreadable
    try:
        name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return ("its data is not JSON (a pickle, perhaps: RQ's default, used by other programs "
                "and by dbbasic-queue 1.1.0), and is never loaded here")
    if name != DISPATCHER and name not in EARLIER_DISPATCHERS:
        return f"it names the function {name!r}, not {DISPATCHER}"
    if (instance is not None or kwargs or not isinstance(args, (list, tuple)) or len(args) != 2
            or not all(isinstance(arg, str) for arg in args)):
        return "its arguments are not (job type, payload JSON)"
    if getattr(job, "callback_names", ()):
        return f"it names callbacks ({', '.join(job.callback_names)})"
    meta = job.meta
    if not isinstance(meta, dict) or "unserialized" in meta:
        return "its meta is not JSON"
    if not all(type(meta.get(key, 0)) is int for key in _META_INTS):
        return f"its meta is not dbbasic-queue's ({', '.join(_META_INTS)} must be integers)"
    if not isinstance(meta.get("queue", ""), str):
        return "its meta is not dbbasic-queue's (its queue must be a string)"
    return None


# What a pickle of RQ's {"unserialized": b"..."} holds, and nothing else (see
# meta_wrapped_by_rq); pickletools only names these, it never builds or imports anything.
_WRAPPER_OPCODES = frozenset({"PROTO", "FRAME", "EMPTY_DICT", "MEMOIZE", "PUT", "BINPUT",
                              "LONG_BINPUT", "SHORT_BINUNICODE", "BINUNICODE", "SHORT_BINBYTES",
                              "BINBYTES", "BINBYTES8", "SETITEM", "STOP"})


def meta_wrapped_by_rq(raw) -> Optional[Dict[str, Any]]:
    """Our JSON meta back from what RQ's own tools (``rq requeue``, RQ's dashboard) save when
    they read it with their default serializer: pickle fails to load JSON, RQ keeps the raw
    bytes as ``{"unserialized": raw}``, and saves that dict pickled. Read here opcode by opcode
    (``pickletools.genops``), never loaded: only that exact shape, a dict of one key holding
    bytes, gives the bytes back, as our meta if they are its JSON; anything else gives None
    (and the job is refused)."""
    import pickletools
    if not isinstance(raw, bytes) or not raw.startswith(b"\x80"):
        return None
    strings, blobs = [], []
    try:
        for opcode, argument, _ in pickletools.genops(raw):
            if opcode.name not in _WRAPPER_OPCODES:
                return None
            if isinstance(argument, str) and "UNICODE" in opcode.name:
                strings.append(argument)
            elif isinstance(argument, bytes):
                blobs.append(argument)
    except Exception:  # not a pickle at all, or cut short
        return None
    if strings != ["unserialized"] or len(blobs) != 1:
        return None
    try:
        meta = json.loads(blobs[0])
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "unserialized" not in meta else None


def foreign_message(job_id: str, reason: str) -> str:
    return (f"job {job_id!r} in Redis is not a dbbasic-queue job: {reason}. It is left as it "
            f"is and nothing of it is loaded or run; delete it if it is not yours")


def read_job(job: RQJob, schedule=None, refresh: bool = True) -> Dict[str, Any]:
    """The published get_job dict of one of our jobs; raises ForeignJobError for any other.
    ``schedule`` (the queue's ScheduledJobRegistry) gives a scheduled job's run_at;
    ``refresh`` reads the status afresh from Redis."""
    reason = refusal(job)
    if reason is not None:
        raise ForeignJobError(foreign_message(job.id, reason))
    rq_status = job.get_status(refresh=refresh)
    rq_status = getattr(rq_status, "value", rq_status)
    status = RQ_STATUSES.get(rq_status, "pending")
    meta = job.meta
    run_at = meta.get("run_at", 0)
    if rq_status == "scheduled" and schedule is not None:
        run_at = _scheduled_time(schedule, job) or run_at
    elif status in ("processing", "completed", "failed"):
        run_at = meta.get("started_at", run_at)
    try:
        payload = json.loads(job.args[1])
        result = job.return_value() if status == "completed" else None
    except Exception as error:  # JSON of any depth or shape, as anyone may have written it
        raise ForeignJobError(foreign_message(
            job.id, f"its payload or result is not JSON ({type(error).__name__})")) from None
    if not isinstance(payload, dict):
        raise ForeignJobError(foreign_message(job.id, "its payload is not a JSON object"))
    error = meta.get("error")
    if status == "failed" and not error:
        error = _failed_elsewhere(job)
    return {"id": job.id, "type": job.args[0], "payload": payload, "status": status,
            "created_at": meta.get("created_at", 0), "run_at": run_at,
            "attempts": meta.get("attempts", 0),
            "error": error if isinstance(error, str) and error else None, "result": result}


def _failed_elsewhere(job: RQJob) -> Optional[str]:
    """The error of one of our jobs failed by something other than our dispatcher (which
    keeps its error in the meta): a plain ``rq worker``, or RQ's cleanup of a dead worker's
    job. Read from RQ's own record of the failure, which is text (never unpickled)."""
    try:
        latest = job.latest_result()
        text = (latest.exc_string or "") if latest is not None else ""
    except Exception:  # no record RQ can read: say what we know
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if "DeserializationError" in text or "only be run by dbbasic-queue" in text:
        return f"failed in a worker that cannot run it: {OUR_WORKER}; then retry it"
    if "AbandonedJobError" in text:  # RQ's cleanup of a job whose worker stopped beating
        return died_message(job.id)
    return lines[-1].strip()[:500] if lines else None


def died_message(job_id: str, attempt: Optional[int] = None) -> str:
    """The error of a job whose worker died while it ran (RQ's cleanup failed it, saying
    only "AbandonedJobError"): what happened, and the command that runs it again."""
    which = f" (attempt {attempt})" if attempt else ""
    return (f"its worker died while running it{which}; `dbbasic-queue retry {job_id}` "
            f"runs it again")


def drop_executions(connection, job_id: str) -> None:
    """Forget RQ's records of a job's past runs (``rq:executions:<id>`` and the execution
    hashes it names), for a job no worker runs. A dead worker's record outlives its hash (RQ
    keeps the list 60 s longer), and RQ's ``job.delete()`` then raises "Execution ... not
    found in Redis" halfway, leaving the job out of every registry: so retry, delete and
    purge drop them first. They are history only: nothing of ours reads them."""
    key = f"rq:executions:{job_id}"
    found = connection.zrange(key, 0, -1)
    with connection.pipeline(transaction=False) as pipe:
        for execution_id in found:
            pipe.delete(f"rq:execution:{job_id}:{execution_id.decode()}")
        pipe.delete(key)
        pipe.execute()


def read_options(job: RQJob) -> Dict[str, Any]:
    """The options one of our jobs was enqueued with (max_attempts where given, timeout,
    unique_key, and its queue and priority where not the default); raises ForeignJobError
    for any other job. A job's max_attempts is kept in Redis even when left at the default
    (RQ fixes the attempts at enqueue), and shown only where it is not the default."""
    read_job(job)
    meta = job.meta
    options = {key: meta[key] for key in ("unique_key", "max_attempts", "timeout", "queue",
                                          "priority") if meta.get(key) is not None}
    if options.get("max_attempts") == DEFAULT_MAX_ATTEMPTS:
        del options["max_attempts"]
    return options


def _scheduled_time(schedule, job: RQJob) -> Optional[int]:
    try:
        return int(schedule.get_scheduled_time(job).timestamp())
    except Exception:  # no longer in the schedule
        return None
