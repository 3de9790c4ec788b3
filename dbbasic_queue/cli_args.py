"""The command line's grammar: its commands, options and argument types.

Every mistake in a command raises UsageError with one line saying how to fix it; each
command declares the backend capability it needs (``needs``), which ``cli.main`` checks.
"""

import argparse
import math
import os
import re

from . import __version__
from .backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                      DEFAULT_RETENTION_SECONDS, LISTING, PURGE, RETRY)
from .job import STATUSES

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LARGEST = 10 ** 12  # a count or a number of seconds beyond any use (about 31,700 years)


class UsageError(Exception):
    """A mistake in the command; the message says how to fix it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h``, ``7d`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use 30s, 10m, 2h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds > _LARGEST:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}... is too long: at most {_LARGEST} s")
    return seconds


def whole_number(text: str) -> int:
    """An integer of sensible size (the queue checks its sign)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if abs(number) > _LARGEST:
        raise argparse.ArgumentTypeError(f"{text[:20]}... is too large: at most {_LARGEST}")
    return number


def parser() -> argparse.ArgumentParser:
    """The grammar: ``args.name`` is the command, ``args.needs`` the capability it needs of
    the backend (None: every backend has it)."""
    grammar = _Parser(prog="dbbasic-queue", description="Inspect and run a dbbasic-queue file.")
    grammar.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    grammar.add_argument("--file", default=os.environ.get("DBBASIC_QUEUE_FILE") or DEFAULT_PATH,
                        help="the queue file (default: $DBBASIC_QUEUE_FILE, else data/queue.tsv)")
    grammar.set_defaults(needs=None)  # the capability a command needs of the backend
    commands = grammar.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                     dest="name", parser_class=_Parser)

    stats = commands.add_parser("stats", help="counts by status and type, latency, next run")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(needs=LISTING)

    listing = commands.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status", choices=STATUSES, metavar="STATUS",
                         help=f"one of {', '.join(STATUSES)}")
    listing.add_argument("--type")
    listing.add_argument("--limit", type=whole_number, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(needs=LISTING)

    show = commands.add_parser("show", help="one job in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")

    enqueue = commands.add_parser("enqueue", help="queue a job; prints its id")
    enqueue.add_argument("type")
    enqueue.add_argument("payload", metavar="JSON", help="the payload, a JSON object")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", type=float, metavar="TIMESTAMP", help="run at this Unix time")
    when.add_argument("--in", dest="delay", type=duration, metavar="DURATION",
                      help="run after this long: 30s, 10m, 2h, 7d")
    enqueue.add_argument("--unique-key", help="add nothing if a pending or processing job has it")
    enqueue.add_argument("--max-attempts", type=whole_number,
                         help="this job's own, over the worker's")
    enqueue.add_argument("--timeout", type=duration, metavar="DURATION",
                         help="this job's own handler time limit")

    cancel = commands.add_parser("cancel", help="cancel a pending job")
    cancel.add_argument("id")

    retry = commands.add_parser("retry", help="put failed or cancelled jobs back, due now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?")
    which.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--type", help="with --failed: only jobs of this type")
    retry.set_defaults(needs=RETRY)

    purge = commands.add_parser("purge", help="remove old finished jobs; prints how many")
    purge.add_argument("--older-than", type=duration, required=True, metavar="DURATION")
    purge.add_argument("--status", default="completed,cancelled",
                       help="comma-separated, among completed, failed, cancelled "
                            "(default: completed,cancelled)")
    purge.set_defaults(needs=PURGE)

    migrate = commands.add_parser("migrate", help="move pending jobs into Redis (RQ)")
    migrate.add_argument("--to", required=True, metavar="URL", help="redis://host:port/db")
    migrate.add_argument("--dry-run", action="store_true", help="only print what would move")

    work = commands.add_parser("work", help="run jobs: once (for cron) or --loop")
    work.add_argument("--handlers", required=True, metavar="MODULE:NAME",
                      help="a dict of job type -> function, e.g. app.jobs:handlers")
    work.add_argument("--loop", action="store_true", help="keep running, picking up new jobs")
    work.add_argument("--max-jobs", type=whole_number)
    work.add_argument("--max-seconds", type=duration, metavar="DURATION")
    work.add_argument("--max-attempts", type=whole_number, default=DEFAULT_MAX_ATTEMPTS)
    work.add_argument("--lease", type=duration, metavar="DURATION",
                      help=f"how long a job is held before another worker may take it "
                           f"(default {DEFAULT_LEASE_SECONDS // 60}m)")
    work.add_argument("--timeout", type=duration, metavar="DURATION",
                      help="stop a handler running longer (default: no limit)")
    work.add_argument("--concurrency", type=whole_number, default=1, metavar="N",
                      help="run up to N handlers at once, in threads (default 1)")
    work.add_argument("--retention", metavar="DURATION",
                      help=f"drop completed and cancelled jobs older than this (default "
                           f"{DEFAULT_RETENTION_SECONDS // 86400}d; 'none' keeps them)")
    work.add_argument("--log-level", default="INFO")

    dashboard = commands.add_parser("dashboard", help="a web page of the queue: counts, jobs, "
                                                      "failures, actions")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="default 127.0.0.1; any other address needs credentials")
    dashboard.add_argument("--port", type=whole_number, default=8321, help="default 8321")
    dashboard.add_argument("--read-only", action="store_true", help="hide and refuse actions")
    dashboard.add_argument("--credentials-file", metavar="FILE",
                           help="its first line user:password, for HTTP basic auth (default: "
                                "$DBBASIC_QUEUE_DASHBOARD_CREDENTIALS)")
    return grammar


def duration_option(option: str, text: str) -> float:
    """``duration(text)`` for an option read by hand; UsageError names the option."""
    try:
        return duration(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{option}: {error}") from None
