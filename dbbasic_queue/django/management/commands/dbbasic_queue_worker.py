"""``manage.py dbbasic_queue_worker``: run the tasks of a TaskBackend's file.

Without ``--loop``, one run of the due tasks, for cron (``process_jobs``); with it, a
long-running worker (``work``) that stops gracefully at SIGTERM or Ctrl-C. Defaults come from
the backend's OPTIONS; the options here override them for this worker.
"""

import argparse
import logging
import sys
from typing import Optional

from django.core.management.base import BaseCommand, CommandError

from dbbasic_queue.cli import duration
from dbbasic_queue.django.backend import TaskBackend
from dbbasic_queue.django.compat import FRAMEWORK, InvalidTaskBackend, task_backends
from dbbasic_queue.django.runner import handler_for

logger = logging.getLogger("dbbasic_queue")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def retention(text: str):
    return None if text == "none" else duration(text)


class Command(BaseCommand):
    help = "Run the tasks queued in a dbbasic-queue file (TaskBackend)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--backend", default="default",
                            help="the TASKS alias to run (default: %(default)s)")
        parser.add_argument("--queue", dest="queues", action="append", default=[],
                            metavar="NAME", help="serve only these queues (repeated or "
                                                 "comma-separated, in strict order); default: all")
        parser.add_argument("--loop", action="store_true",
                            help="keep running, picking up new tasks within about 50 ms")
        parser.add_argument("--max-jobs", type=positive_int, help="stop after this many tasks")
        parser.add_argument("--max-seconds", type=duration,
                            help="stop once this long has passed: 55, 10m, 2h")
        parser.add_argument("--max-attempts", type=positive_int,
                            help="attempts before a task fails (default: OPTIONS MAX_ATTEMPTS)")
        parser.add_argument("--lease", type=duration, help="seconds before a dead worker's "
                            "task is taken again (default: OPTIONS LEASE_SECONDS)")
        parser.add_argument("--timeout", type=duration,
                            help="stop a task running longer (default: OPTIONS TIMEOUT)")
        parser.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                            help="run up to N tasks at once, in threads (default: 1)")
        parser.add_argument("--retention", type=retention, default=False,
                            help="drop finished tasks older than this, or 'none' "
                                 "(default: OPTIONS RETENTION_SECONDS)")
        parser.add_argument("--log-level", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    def handle(self, *args, **options) -> None:
        backend = self.backend(options["backend"])
        self.log_to_stderr(options["log_level"])
        settings = backend.settings
        queue = backend.queue
        run = queue.work if options["loop"] else queue.process_jobs
        ran = run(handler_for(backend), options["max_attempts"] or settings.max_attempts,
                  lease_seconds=options["lease"] or settings.lease_seconds,
                  max_jobs=options["max_jobs"], max_seconds=options["max_seconds"],
                  retention_seconds=(settings.retention_seconds
                                     if options["retention"] is False
                                     else options["retention"]),
                  timeout=options["timeout"] or settings.timeout,
                  concurrency=options["concurrency"],
                  queues=[name.strip() for given in options["queues"]
                          for name in given.split(",") if name.strip()] or None)
        logger.info("ran %d tasks from %s", ran, queue.path)

    def backend(self, alias: str) -> TaskBackend:
        try:
            backend = task_backends[alias]
        except InvalidTaskBackend as error:
            raise CommandError(f"--backend {alias}: {error}") from None
        if not isinstance(backend, TaskBackend):
            raise CommandError(f"TASKS[{alias!r}] is {type(backend).__module__}."
                               f"{type(backend).__qualname__}, not "
                               f"dbbasic_queue.django.TaskBackend")
        try:
            backend.settings
        except InvalidTaskBackend as error:
            raise CommandError(str(error)) from None
        return backend

    def log_to_stderr(self, level: str) -> None:
        """Our log and the framework's task log on stderr, each line once: a line that a
        handler of LOGGING already writes to the terminal (Django's console under DEBUG=True,
        a root console handler) is left to it."""
        for name in ("dbbasic_queue", FRAMEWORK):
            log = logging.getLogger(name)
            log.setLevel(level)
            if not log.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
                handler.addFilter(NotOnTheTerminalYet(handler))
                log.addHandler(handler)


class NotOnTheTerminalYet(logging.Filter):
    """Passes a record only if no other handler it reaches (through propagation, as logging
    sends it) writes it to stdout or stderr."""

    def __init__(self, ours: logging.Handler) -> None:
        super().__init__()
        self.ours = ours

    def filter(self, record: logging.LogRecord) -> bool:
        log: Optional[logging.Logger] = logging.getLogger(record.name)
        while log is not None:
            for handler in log.handlers:
                if (handler is not self.ours and isinstance(handler, logging.StreamHandler)
                        and handler.stream in (sys.stdout, sys.stderr, sys.__stdout__,
                                               sys.__stderr__)
                        and record.levelno >= handler.level and handler.filter(record)):
                    return False
            log = log.parent if log.propagate else None
        return True
