"""Django's task framework (``django.tasks`` in Django 6, the ``django-tasks`` backport before
it) on a dbbasic-queue file: ``TaskBackend`` for the ``TASKS`` setting, and, with
``"dbbasic_queue.django"`` in ``INSTALLED_APPS``, ``manage.py dbbasic_queue_worker``.

Named after the framework it plugs into, as ``dbbasic_queue.rq.backend`` is; inside the
package, ``import django`` still means Django (imports are absolute).
"""

from .backend import TaskBackend

__all__ = ["TaskBackend"]
