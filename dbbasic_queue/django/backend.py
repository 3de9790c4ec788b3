"""TaskBackend: Django's task framework on a dbbasic-queue file.

    TASKS = {"default": {"BACKEND": "dbbasic_queue.django.TaskBackend",
                         "OPTIONS": {"PATH": BASE_DIR / "data" / "tasks.tsv"}}}

``enqueue`` writes one line to the file (a job whose type is the task's dotted path and whose
payload names the task and holds its args and kwargs as JSON); ``manage.py dbbasic_queue_worker`` runs
them with the queue's retries, leases and timeouts; ``get_result`` reads the job back.
"""

import json
import re
import sys
from importlib import import_module
from typing import Any, Dict, Optional

from django.apps import apps
from django.core import checks

from .. import Queue
from ..model.queues import check_queue_name, queue_and_priority
from . import results
from .compat import (BaseTaskBackend, InvalidTask, InvalidTaskBackend, Task,
                     TaskResultDoesNotExist, normalize_json, task_enqueued)
from .config import Settings, read_options

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


class TaskBackend(BaseTaskBackend):
    """Tasks kept in one dbbasic-queue file: deferred (``run_after``), results readable from
    any process, failed attempts retried, Django's ``priority`` and ``queue_name`` kept as the
    job's (see docs/queues.md). One backend alias is one file; its ``QUEUES`` are the queue
    names tasks may use (Django's rule: empty allows any)."""

    supports_defer = True  # run_after: the job's run_at
    supports_async_task = True  # the worker runs a coroutine in its main thread (asyncio.run)
    supports_get_result = True  # from any process that can read the file
    supports_priority = True  # the job's priority: higher first among the due jobs

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self._settings: Optional[Settings] = None
        self._queue: Optional[Queue] = None

    @property
    def settings(self) -> Settings:
        """The checked OPTIONS; InvalidTaskBackend (ImproperlyConfigured) says what is wrong."""
        if self._settings is None:
            found, errors, _ = read_options(self.options)
            if errors:
                raise InvalidTaskBackend(f"TASKS[{self.alias!r}]: {'; '.join(errors)}")
            self._settings = found
        return self._settings

    @property
    def queue(self) -> Queue:
        """The queue file of this backend (created at the first enqueue)."""
        if self._queue is None:
            self._queue = Queue(self.settings.path, durable=self.settings.durable)
        return self._queue

    def check(self, **kwargs) -> list:
        _, errors, warnings = read_options(self.options)
        for name in sorted(self.queues):
            try:
                check_queue_name(name)
            except ValueError as error:
                errors.append(f"QUEUES: {error}")
        if not apps.is_installed("dbbasic_queue.django"):
            warnings.append("'dbbasic_queue.django' is not in INSTALLED_APPS, so there is no "
                            "manage.py dbbasic_queue_worker to run the tasks; add it")
        where = f"TASKS[{self.alias!r}]"
        return ([checks.Error(f"{where}: {text}", id="dbbasic_queue.E001") for text in errors] +
                [checks.Warning(f"{where}: {text}", id="dbbasic_queue.W001") for text in warnings])

    def validate_task(self, task) -> None:
        super().validate_task(task)
        try:
            check_queue_name(task.queue_name, "queue_name")
        except ValueError as error:
            raise InvalidTask(f"{task.module_path}: {error}") from None

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        payload = task_payload(task, args, kwargs)
        run_at = None if task.run_after is None else task.run_after.timestamp()
        now = self.queue.clock()
        job_id = self.queue.enqueue(task.module_path, payload, run_at, queue=task.queue_name,
                                    priority=task.priority)
        result = results.build(task, self.alias, {
            "id": job_id, "status": "pending", "created_at": int(now), "attempts": 0,
            "payload": payload, "error": None, "result": None}, [])
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id):
        job = self.queue.get_job(result_id) if isinstance(result_id, str) else None
        payload = None if job is None else job["payload"]
        if not isinstance(payload, dict) or job["type"] not in (results.JOB_TYPE,
                                                                payload.get("task")):
            raise TaskResultDoesNotExist(result_id)
        task = self.task_of(job["payload"], job["id"], self.queue.job_options(job["id"]) or {})
        return results.build(task, self.alias, job, self.queue.tracebacks(job["id"]))

    def task_of(self, payload: Dict[str, Any], job_id: str, options: Dict[str, Any]):
        """The Task a job's payload names, as this backend ran it (its queue and priority
        from the job's ``options``). Only a Task object found in a module already imported
        or inside an installed app is taken: a path written in the file never imports or
        runs anything else."""
        path = payload.get("task")
        task = find_task(path)
        if task is None:
            raise InvalidTask(f"job {job_id} names {path!r}, which is not a task: a function "
                              f"decorated with @task in a module of an installed app")
        queue, priority = queue_and_priority(options)
        return task.using(backend=self.alias, queue_name=queue, priority=priority,
                          run_after=results.moment(payload.get("run_after")))


def find_task(path: Any):
    """The framework Task at dotted ``path``, or None: a malformed path, a module that is
    neither imported yet nor part of an installed app, or anything but a Task."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        return None
    module_name, _, name = path.rpartition(".")
    if module_name not in sys.modules and apps.get_containing_app_config(module_name) is None:
        return None
    try:
        found = getattr(import_module(module_name), name, None)
    except ImportError:
        return None
    if not isinstance(found, Task) or found.module_path != path:
        return None
    return found


def task_payload(task, args, kwargs) -> Dict[str, Any]:
    """The job's payload: the task's path, its args and kwargs, and run_after if set. Raises
    TypeError or ValueError, naming the task, for a value JSON cannot hold as it is."""
    try:
        values = normalize_json({"args": list(args), "kwargs": dict(kwargs)})
        same = json.loads(json.dumps(values, allow_nan=False)) == values
    except (TypeError, ValueError) as error:
        raise type(error)(f"{task.module_path}: args and kwargs must be JSON values (str, int, "
                          f"float, bool, None, and lists and dicts of them): {error}") from None
    if not same:
        raise ValueError(f"{task.module_path}: args and kwargs must read back from JSON as they "
                         f"are; a dict key that is not a str would come back as one")
    payload = {"task": task.module_path, "args": values["args"], "kwargs": values["kwargs"]}
    if task.run_after is not None:
        payload["run_after"] = task.run_after.timestamp()
    return payload


__all__ = ["TaskBackend", "find_task", "task_payload"]
