"""A job of the queue file as the framework's TaskResult: what maps to what.

status: pending -> READY (new, or waiting for its next attempt), processing -> RUNNING,
completed -> SUCCESSFUL, failed and cancelled -> FAILED. ``attempts`` (the length of
``worker_ids``) is the file's count of attempts started; a failed attempt's worker is not
recorded, so it reads "unknown", as one whose worker died does. Times: ``enqueued_at`` is the
job's ``created_at``; the start and end of a successful attempt come from its ``result``; a
failed attempt's end is its kept traceback's ``failed_at``, and its start is the job's
``run_at`` once it failed for good (when its last attempt began) or, while it waits for its
retry, the failure's time, the latest the file knows the task ran; a RUNNING task's start is
not in the file (its line holds the lease's end), so it is None. Errors: one per failed
attempt whose traceback the queue keeps (``Queue.tracebacks``: its exception's class path and
full traceback); an error in the file with no kept traceback (a cancellation, a worker that
died on the last attempt, tracebacks deleted by retention) is reported as a
``dbbasic_queue.errors.QueueError`` whose traceback is the file's one-line error.
"""

from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from django.conf import settings

from .compat import TaskError, TaskResult, TaskResultStatus

JOB_TYPE = "django_task"  # the type of tasks enqueued before a task's type was its dotted path
UNKNOWN_WORKER = "unknown"  # an attempt whose worker left no record (it died, or is running)

STATUS = {"pending": TaskResultStatus.READY, "processing": TaskResultStatus.RUNNING,
          "completed": TaskResultStatus.SUCCESSFUL, "failed": TaskResultStatus.FAILED,
          "cancelled": TaskResultStatus.FAILED}


def moment(timestamp: Optional[float]) -> Optional[datetime]:
    """A Unix timestamp as Django's datetimes are: aware (UTC) with USE_TZ, else naive local."""
    if timestamp is None:
        return None
    if settings.USE_TZ:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return datetime.fromtimestamp(timestamp)


def success(return_value: Any, started_at: float, finished_at: float, worker_id: str) -> dict:
    """The ``result`` a task's job stores when its function returned."""
    return {"return_value": return_value, "started_at": round(started_at, 3),
            "finished_at": round(finished_at, 3), "worker_id": worker_id}


def exception_class_path(path: str) -> str:
    """The framework's class path for the queue's: builtins are ``builtins.ValueError``, so
    ``TaskError.exception_class`` can import them."""
    return path if "." in path or not path else f"builtins.{path}"


def build(task, backend_alias: str, job: Dict[str, Any], kept: List[Dict[str, Any]],
          running: Optional[Dict[str, Any]] = None) -> TaskResult:
    """The TaskResult of ``job`` (a get_job dict of a task's job), given its ``kept``
    tracebacks (``Queue.tracebacks``) and, in the worker, the ``running`` attempt (attempt,
    worker_id, started_at), which the file does not hold."""
    status = STATUS[job["status"]]
    attempts = job["attempts"]
    workers: Dict[int, str] = {}
    errors = [TaskError(exception_class_path=exception_class_path(str(kept_one["exception"])),
                        traceback=str(kept_one["traceback"])) for kept_one in kept]
    last_kept = kept[-1] if kept and kept[-1]["attempt"] == attempts else None
    started = finished = None
    return_value = None
    result = job.get("result")
    if status == TaskResultStatus.SUCCESSFUL and isinstance(result, dict):
        return_value = result.get("return_value")
        started, finished = result.get("started_at"), result.get("finished_at")
        workers[attempts] = str(result.get("worker_id", UNKNOWN_WORKER))
    elif status == TaskResultStatus.RUNNING and running is not None:
        started = running["started_at"]
        workers[running["attempt"]] = running["worker_id"]
    elif last_kept is not None and status != TaskResultStatus.RUNNING:
        failed_at = last_kept["failed_at"]
        started = min(job["run_at"], failed_at) if job["status"] == "failed" else failed_at
        if status == TaskResultStatus.FAILED:
            finished = failed_at
    if job.get("error") and status != TaskResultStatus.SUCCESSFUL and last_kept is None:
        errors.append(TaskError(exception_class_path="dbbasic_queue.errors.QueueError",
                                traceback=job["error"]))
    payload = job["payload"]
    task_result = TaskResult(
        task=task, id=job["id"], status=status, enqueued_at=moment(job["created_at"]),
        started_at=moment(started), last_attempted_at=moment(started),
        finished_at=moment(finished), args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}), backend=backend_alias, errors=errors,
        worker_ids=[workers.get(n, UNKNOWN_WORKER) for n in range(1, attempts + 1)])
    object.__setattr__(task_result, "_return_value", return_value)  # the framework's way
    return task_result
