"""The task framework's names, from Django 6's ``django.tasks`` or, on older Django, from the
``django-tasks`` backport (the same interface under other module and exception names)."""

from importlib.util import find_spec

if find_spec("django.tasks") is not None:
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskError,
                                   TaskResult, TaskResultStatus)
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
else:
    try:
        from django_tasks import task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import (DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskError,
                                       TaskResult, TaskResultStatus)
        from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as error:
        raise ImportError(
            f"dbbasic_queue.django needs Django's task framework: Django 6 or later, or on "
            f"older Django the backport (pip install 'dbbasic-queue[django]', which brings "
            f"django-tasks): {error}") from error

    FRAMEWORK = "django_tasks"

__all__ = ["BaseTaskBackend", "DEFAULT_TASK_QUEUE_NAME", "FRAMEWORK", "InvalidTask",
           "InvalidTaskBackend", "Task", "TaskContext", "TaskError", "TaskResult",
           "TaskResultDoesNotExist", "TaskResultStatus", "normalize_json", "task_backends",
           "task_enqueued", "task_finished", "task_started"]
