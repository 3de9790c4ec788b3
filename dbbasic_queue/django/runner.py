"""Running one task's job in the worker: the handler of the ``django_task`` job type.

It finds the task the payload names (only a real Task object; see ``TaskBackend.task_of``),
calls it with the payload's args and kwargs (and a TaskContext if it takes one), and sends
the framework's signals. The queue's worker does the rest: a task that raises is retried on
the queue's schedule until its attempts are used up, so the error goes on up; its traceback
is kept first (tracebacks.py). ``raise dbbasic_queue.Retry(delay=...)`` in a task asks to run
again later without using an attempt, as in any handler.
"""

import asyncio
import json
import logging
import os
import socket
import time
import traceback
from inspect import iscoroutinefunction

from django.db import close_old_connections

from ..options import Retry
from ..running import current_job
from . import results, tracebacks
from .compat import TaskContext, normalize_json, task_finished, task_started

logger = logging.getLogger("dbbasic_queue")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # how worker_ids name this process


def handler_for(backend):
    """The handlers for ``process_jobs``/``work`` that run ``backend``'s tasks."""
    return {results.JOB_TYPE: lambda payload: run_task(backend, payload)}


def run_task(backend, payload: dict) -> dict:
    """Run the task of the job in hand; return what its job's ``result`` keeps."""
    running = current_job()
    if running is None:
        raise RuntimeError("run_task runs inside the queue's worker (manage.py "
                           "dbbasic_queue_worker), which tells it the job in hand")
    task = backend.task_of(payload, running.id)
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    kept = tracebacks.errors_of(backend.queue.path, running.id) if running.attempt > 1 else []
    started = round(time.time(), 3)
    now = {"attempt": running.attempt, "worker_id": WORKER_ID, "started_at": started}
    job = {"id": running.id, "status": "processing", "created_at": running.created_at,
           "attempts": running.attempt, "payload": payload, "error": None, "result": None}
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
    except Retry:
        raise  # not a failure: the job runs again at the time asked, this attempt uncounted
    except BaseException as error:  # the worker counts any of them as a failed attempt
        error_record = dict(now, finished_at=round(time.time(), 3),
                            exception_class_path=f"{type(error).__module__}."
                                                 f"{type(error).__qualname__}",
                            traceback="".join(traceback.format_exception(
                                type(error), error, error.__traceback__)))
        tracebacks.add_error(backend.queue.path, running.id, error_record)
        last = running.attempt >= running.max_attempts
        job.update(status="failed" if last else "pending", error=str(error))
        task_finished.send_robust(sender, task_result=results.build(
            task, backend.alias, job, kept + [error_record]))
        raise
    finally:
        close_old_connections()
    finished = time.time()
    outcome = results.success(value, started, finished, WORKER_ID)
    job.update(status="completed", result=outcome)
    task_finished.send_robust(sender, task_result=results.build(task, backend.alias, job, kept))
    return outcome
