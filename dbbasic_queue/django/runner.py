"""Running one task's job in the worker: the handlers of the tasks' job types.

A task's job type is its dotted path (``shop.tasks.charge_card``), so ``stats``, ``list`` and
the dashboard name the task; ``TaskHandlers`` answers for every path that is a Task of an
installed app, and for ``django_task``, the one type of the tasks enqueued before. The
handler finds the task the payload names (only a real Task object; see ``TaskBackend.task_of``),
calls it with the payload's args and kwargs (and a TaskContext if it takes one), and sends
the framework's signals. The queue's worker does the rest: a task that raises is retried on
the queue's schedule until its attempts are used up, so the task's own exception goes on up,
unchanged, and the worker keeps its traceback with the queue's (``Queue.tracebacks``).
``raise dbbasic_queue.Retry(delay=...)`` in a task asks to run again later without using an
attempt, as in any handler.
"""

import asyncio
import json
import logging
import os
import socket
import time
from inspect import iscoroutinefunction
from typing import Callable, Dict, Iterator, Mapping, Set

from django.db import close_old_connections

from ..model.job import error_text
from ..model.options import Retry
from ..worker.running import current_job
from ..storage.tracebacks import class_path, format_traceback
from . import results
from .backend import find_task
from .compat import InvalidTask, TaskContext, normalize_json, task_finished, task_started

logger = logging.getLogger("dbbasic_queue")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # how worker_ids name this process


class TaskHandlers(Mapping):
    """Job type -> handler for ``backend``'s tasks, found when the worker asks: a type is a
    task's dotted path, and has a handler if that path is a Task object of an installed app
    (``find_task``: nothing else is imported), or it is ``django_task``. A worker given these
    claims only the tasks it can run; a job whose type names no task stays pending, waiting
    for a worker that has it. Iterating gives the types found so far."""

    _MAX_REMEMBERED = 10_000  # types found not to be tasks, remembered so a look is cheap

    def __init__(self, backend) -> None:
        self.backend = backend
        self._found: Dict[str, Callable[[dict], dict]] = {results.JOB_TYPE: self._run}
        self._not_tasks: Set[str] = set()

    def _run(self, payload: dict) -> dict:
        return run_task(self.backend, payload)

    def __getitem__(self, job_type: str) -> Callable[[dict], dict]:
        found = self._found.get(job_type)
        if found is not None:
            return found
        if job_type in self._not_tasks or find_task(job_type) is None:
            if len(self._not_tasks) < self._MAX_REMEMBERED:
                self._not_tasks.add(job_type)
            raise KeyError(job_type)
        self._found[job_type] = self._run
        return self._run

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._found))

    def __len__(self) -> int:
        return len(self._found)


def handler_for(backend) -> TaskHandlers:
    """The handlers for ``process_jobs``/``work`` that run ``backend``'s tasks."""
    return TaskHandlers(backend)


def run_task(backend, payload: dict) -> dict:
    """Run the task of the job in hand; return what its job's ``result`` keeps."""
    running = current_job()
    if running is None:
        raise RuntimeError("run_task runs inside the queue's worker (manage.py "
                           "dbbasic_queue_worker), which tells it the job in hand")
    if running.type not in (results.JOB_TYPE, payload.get("task")):
        raise InvalidTask(f"job {running.id} is of type {running.type!r} but names the task "
                          f"{payload.get('task')!r}: a task's job type is its path")
    task = backend.task_of(payload, running.id,
                           {"queue": running.queue, "priority": running.priority})
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    kept = backend.queue.tracebacks(running.id) if running.attempt > 1 else []
    started = round(time.time(), 3)
    now = {"attempt": running.attempt, "worker_id": WORKER_ID, "started_at": started}
    job = {"id": running.id, "status": "processing", "created_at": running.created_at,
           "run_at": int(started), "attempts": running.attempt, "payload": payload,
           "error": None, "result": None}
    sender = type(backend)
    task_result = results.build(task, backend.alias, job, kept, now)
    task_started.send_robust(sender, task_result=task_result)
    close_old_connections()  # as Django does around a request: drop broken or old ones
    try:
        if task.takes_context:
            args = [TaskContext(task_result=task_result)] + list(args)
        if iscoroutinefunction(task.func):
            # In the worker's own thread, where its time limit (SIGALRM, or the watchdog of
            # a worker with threads) interrupts the coroutine; the framework's call() would
            # run it in another thread, which the time limit cannot reach.
            value = asyncio.run(task.func(*args, **kwargs))
        else:
            value = task.func(*args, **kwargs)
        value = normalize_json(value)
        json.dumps(value, allow_nan=False)
    except BaseException as error:  # the worker counts any of them as a failed attempt
        if not isinstance(error, Retry):  # Retry: runs again later, this attempt uncounted
            report_failure(backend, task, job, kept, running, error)
        close_connections_keeping(error)
        raise  # the task's own exception, so the worker keeps its class and its frames
    close_old_connections()
    finished = time.time()
    outcome = results.success(value, started, finished, WORKER_ID)
    job.update(status="completed", result=outcome)
    task_finished.send_robust(sender, task_result=results.build(task, backend.alias, job, kept))
    return outcome


def report_failure(backend, task, job: dict, kept: list, running, error: BaseException) -> None:
    """Send task_finished for a failed attempt, its error last, as the worker will keep it.
    Never raises: nothing here may take the place of the task's exception."""
    try:
        last = running.attempt >= running.max_attempts
        failure = {"attempt": running.attempt, "failed_at": time.time(),
                   "error": error_text(error), "exception": class_path(error),
                   "traceback": format_traceback(error)}
        failed = dict(job, status="failed" if last else "pending", error=failure["error"])
        task_finished.send_robust(type(backend), task_result=results.build(
            task, backend.alias, failed, kept + [failure]))
    except Exception:
        logger.exception("job %s: could not send task_finished for attempt %d", running.id,
                         running.attempt)


def close_connections_keeping(error: BaseException) -> None:
    """close_old_connections after a task raised ``error``: a database error here is logged,
    so the error that reaches the worker is still the task's."""
    try:
        close_old_connections()
    except Exception:
        logger.exception("could not close the database connections after %s",
                         type(error).__name__)
