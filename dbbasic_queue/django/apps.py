"""The Django app that brings the worker command; its label avoids the bare name "django"."""

from django.apps import AppConfig


class DbbasicQueueConfig(AppConfig):
    name = "dbbasic_queue.django"
    label = "dbbasic_queue"
    verbose_name = "dbbasic-queue"
