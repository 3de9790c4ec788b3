"""A small shop whose tasks run on dbbasic-queue. The tests set SHOP_DATABASE and
SHOP_QUEUE_FILE, so the web side (in the test process) and the worker (a real subprocess)
share one sqlite database and one queue file. SHOP_DEBUG_LOGGING=1 runs it as a developer
would: DEBUG=True and the root console handler of Django's logging documentation."""

import os
from importlib.util import find_spec
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "only-for-the-tests"
DEBUG = os.environ.get("SHOP_DEBUG_LOGGING") == "1"
if DEBUG:
    LOGGING = {"version": 1, "disable_existing_loggers": False,
               "handlers": {"console": {"class": "logging.StreamHandler"}},
               "root": {"handlers": ["console"], "level": "WARNING"}}
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
ROOT_URLCONF = "project.urls"
MIDDLEWARE = []
INSTALLED_APPS = ["shop", "dbbasic_queue.django"]
if find_spec("django.tasks") is None:  # before Django 6: the backport, as its README says
    INSTALLED_APPS.append("django_tasks")

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("SHOP_DATABASE", BASE_DIR / "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

TASKS = {
    "default": {
        "BACKEND": "dbbasic_queue.django.TaskBackend",
        "QUEUES": ["default", "emails"],  # the queue names tasks may use
        "OPTIONS": {
            "PATH": os.environ.get("SHOP_QUEUE_FILE", str(BASE_DIR / "data" / "tasks.tsv")),
            "MAX_ATTEMPTS": 2,
        },
    },
}
