"""The command line: ``dbbasic-queue [--file PATH] COMMAND ...`` (also ``python -m dbbasic_queue``).

Exit codes: 0 done; 1 no such job, or the job is not in a state the command applies to;
2 a mistake in the command (arguments, JSON, status, duration, a handlers path that does not
import); 3 the queue file cannot be used (not a queue file, or a corrupt line asked for).
"""

import argparse
import heapq
import importlib
import json
import logging
import os
import re
import sys
import time
from typing import Any, Dict, List, Mapping, Optional

from . import __version__
from .backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                      DEFAULT_RETENTION_SECONDS)
from .errors import CorruptLineError, QueueError
from .job import FINISHED, STATUSES
from .queue import Queue

EXIT_OK, EXIT_NOT_APPLICABLE, EXIT_USAGE, EXIT_FILE = 0, 1, 2, 3
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """A mistake in the command; the message says how to fix it."""


class NotApplicable(Exception):
    """No such job, or the job is not in a state the command applies to."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h``, ``7d`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use 30s, 10m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


_ON_REDIS = ("enqueue", "show", "cancel", "work")  # what an RQQueue can do; the rest: rq info


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return args.command(_queue(args), args)
    except UsageError as error:
        return _fail(EXIT_USAGE, error)
    except NotApplicable as error:
        return _fail(EXIT_NOT_APPLICABLE, error)
    except (CorruptLineError, QueueError) as error:
        return _fail(EXIT_FILE, error)
    except (TypeError, ValueError) as error:  # the queue refused an argument
        return _fail(EXIT_USAGE, error)


def _queue(args):
    """The TSV queue of --file, or with $DBBASIC_QUEUE_URL the RQ queue it names."""
    url, name = os.environ.get("DBBASIC_QUEUE_URL"), args.command.__name__.split("_")[0]
    if not url or name == "migrate":
        return Queue(args.file)
    if name not in _ON_REDIS:
        raise UsageError(f"{name} reads the TSV file; DBBASIC_QUEUE_URL points at Redis: use "
                         f"`rq info --url {url}` there, or unset DBBASIC_QUEUE_URL")
    from .rq_backend import RQQueue
    return RQQueue(url)


def _fail(code: int, error: Exception) -> int:
    print(f"dbbasic-queue: {error}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dbbasic-queue", description="Inspect and run a dbbasic-queue file.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--file", default=os.environ.get("DBBASIC_QUEUE_FILE") or DEFAULT_PATH,
                        help="the queue file (default: $DBBASIC_QUEUE_FILE, else data/queue.tsv)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    stats = commands.add_parser("stats", help="counts by status and type, latency, next run")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(command=stats_command)

    listing = commands.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status", choices=STATUSES, metavar="STATUS",
                         help=f"one of {', '.join(STATUSES)}")
    listing.add_argument("--type")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(command=list_command)

    show = commands.add_parser("show", help="one job in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(command=show_command)

    enqueue = commands.add_parser("enqueue", help="queue a job; prints its id")
    enqueue.add_argument("type")
    enqueue.add_argument("payload", metavar="JSON", help="the payload, a JSON object")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", type=float, metavar="TIMESTAMP", help="run at this Unix time")
    when.add_argument("--in", dest="delay", type=duration, metavar="DURATION",
                      help="run after this long: 30s, 10m, 2h, 7d")
    enqueue.add_argument("--unique-key", help="add nothing if a pending or processing job has it")
    enqueue.add_argument("--max-attempts", type=int, help="this job's own, over the worker's")
    enqueue.add_argument("--timeout", type=duration, metavar="DURATION",
                         help="this job's own handler time limit")
    enqueue.set_defaults(command=enqueue_command)

    cancel = commands.add_parser("cancel", help="cancel a pending job")
    cancel.add_argument("id")
    cancel.set_defaults(command=cancel_command)

    retry = commands.add_parser("retry", help="put failed or cancelled jobs back, due now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?")
    which.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--type", help="with --failed: only jobs of this type")
    retry.set_defaults(command=retry_command)

    purge = commands.add_parser("purge", help="remove old finished jobs; prints how many")
    purge.add_argument("--older-than", type=duration, required=True, metavar="DURATION")
    purge.add_argument("--status", default="completed,cancelled",
                       help="comma-separated, among completed, failed, cancelled "
                            "(default: completed,cancelled)")
    purge.set_defaults(command=purge_command)

    migrate = commands.add_parser("migrate", help="move pending jobs into Redis (RQ)")
    migrate.add_argument("--to", required=True, metavar="URL", help="redis://host:port/db")
    migrate.add_argument("--dry-run", action="store_true", help="only print what would move")
    migrate.set_defaults(command=migrate_command)

    work = commands.add_parser("work", help="run jobs: once (for cron) or --loop")
    work.add_argument("--handlers", required=True, metavar="MODULE:NAME",
                      help="a dict of job type -> function, e.g. app.jobs:handlers")
    work.add_argument("--loop", action="store_true", help="keep running, picking up new jobs")
    work.add_argument("--max-jobs", type=int)
    work.add_argument("--max-seconds", type=duration, metavar="DURATION")
    work.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS)
    work.add_argument("--lease", type=duration, default=DEFAULT_LEASE_SECONDS, metavar="DURATION")
    work.add_argument("--timeout", type=duration, metavar="DURATION",
                      help="stop a handler running longer (default: no limit)")
    work.add_argument("--concurrency", type=int, default=1, metavar="N",
                      help="run up to N handlers at once, in threads (default 1)")
    work.add_argument("--retention", default=f"{DEFAULT_RETENTION_SECONDS // 86400}d",
                      metavar="DURATION", help="drop completed and cancelled jobs older than "
                                               "this (default 7d; 'none' keeps them)")
    work.add_argument("--log-level", default="INFO")
    work.set_defaults(command=work_command)

    dashboard = commands.add_parser("dashboard", help="a web page of the queue: counts, jobs, "
                                                      "failures, actions")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="default 127.0.0.1; any other address needs credentials")
    dashboard.add_argument("--port", type=int, default=8321, help="default 8321")
    dashboard.add_argument("--read-only", action="store_true", help="hide and refuse actions")
    dashboard.add_argument("--credentials-file", metavar="FILE",
                           help="its first line user:password, for HTTP basic auth (default: "
                                "$DBBASIC_QUEUE_DASHBOARD_CREDENTIALS)")
    dashboard.set_defaults(command=dashboard_command)
    return parser


# --- the commands ---------------------------------------------------------------------------

def stats_command(queue: Queue, args) -> int:
    stats = queue.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK
    print(f"file      {stats['file']} ({_size(stats['size_bytes'])}, {stats['jobs']} jobs)")
    print("status    " + ", ".join(f"{s} {n}" for s, n in stats["by_status"].items()))
    oldest = stats["oldest_due_seconds"]
    print(f"latency   {'no job waiting' if oldest is None else _age(oldest) + ' (oldest due job)'}")
    next_run = stats["next_run_at"]
    print(f"next run  {'none scheduled' if next_run is None else _when(next_run)}")
    print(f"failures  {stats['failed_last_hour']} failed in the last hour, "
          f"{stats['retrying']} pending a retry")
    if stats["corrupt_lines"]:
        print(f"corrupt   {stats['corrupt_lines']} lines (left as they are; see the worker's log)")
    if stats["by_type"]:
        print("\nTYPE                      " + " ".join(f"{s:>10}" for s in STATUSES))
        for job_type, counts in stats["by_type"].items():
            print(f"{job_type[:25]:<26}" + " ".join(f"{counts[s]:>10}" for s in STATUSES))
    return EXIT_OK


def list_command(queue: Queue, args) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {args.limit}")
    chosen = (job for job in queue.jobs()
              if args.status in (None, job["status"]) and args.type in (None, job["type"]))
    numbered = ((job["created_at"], number, job) for number, job in enumerate(chosen))
    jobs = [job for _, _, job in heapq.nlargest(args.limit, numbered, key=lambda t: t[:2])]
    if args.json:
        print(json.dumps(jobs, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{'ID':<16}  {'TYPE':<20} {'STATUS':<10} {'TRIES':>5}  {'CREATED':<19}  {'RUN AT':<19}  ERROR")
    for job in jobs:
        print(f"{job['id']:<16}  {job['type'][:20]:<20} {job['status']:<10} {job['attempts']:>5}  "
              f"{_utc(job['created_at'])}  {_utc(job['run_at'])}  {(job['error'] or '')[:60]}")
    return EXIT_OK


def show_command(queue: Queue, args) -> int:
    job = _existing(queue, args.id)
    if args.json:
        print(json.dumps(job, indent=2, ensure_ascii=False))
        return EXIT_OK
    for key in ("id", "type", "status", "attempts"):
        print(f"{key:<11} {job[key]}")
    for key in ("created_at", "run_at"):
        print(f"{key:<11} {job[key]} ({_utc(job[key])} UTC)")
    print(f"{'error':<11} {job['error'] if job['error'] is not None else '-'}")
    for key in ("payload", "result"):
        pretty = json.dumps(job[key], indent=2, ensure_ascii=False).replace("\n", "\n" + " " * 12)
        print(f"{key:<11} {pretty}")
    return EXIT_OK


def enqueue_command(queue: Queue, args) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as error:
        raise UsageError(f"the payload is not valid JSON ({error}); quote it for the shell, "
                         f"e.g. '{{\"to\": \"ann@example.com\"}}'") from None
    if not isinstance(payload, dict):
        raise UsageError(f"the payload must be a JSON object ({{...}}), not {type(payload).__name__}")
    run_at = args.at if args.delay is None else time.time() + args.delay
    print(queue.enqueue(args.type, payload, run_at, unique_key=args.unique_key,
                        max_attempts=args.max_attempts, timeout=args.timeout))
    return EXIT_OK


def cancel_command(queue: Queue, args) -> int:
    job = _existing(queue, args.id)
    if not queue.cancel_job(args.id):
        raise NotApplicable(f"job {args.id} is {job['status']}; only pending jobs can be cancelled")
    print(f"cancelled {args.id}")
    return EXIT_OK


def retry_command(queue: Queue, args) -> int:
    if args.failed:
        print(f"retrying {queue.retry_failed(args.type)} failed jobs")
        return EXIT_OK
    if args.type:
        raise UsageError("--type goes with --failed; to retry one job, give its id alone")
    job = _existing(queue, args.id)
    if not queue.retry_job(args.id):
        raise NotApplicable(f"job {args.id} is {job['status']}; only failed or cancelled jobs "
                            f"can be retried")
    print(f"retrying {args.id}")
    return EXIT_OK


def purge_command(queue: Queue, args) -> int:
    statuses = [s.strip() for s in args.status.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in FINISHED]
    if unknown or not statuses:
        raise UsageError(f"--status takes finished statuses ({', '.join(FINISHED)}), "
                         f"not {', '.join(unknown) or 'nothing'}")
    print(f"purged {queue.purge(args.older_than, statuses)} jobs")
    return EXIT_OK


def migrate_command(queue: Queue, args) -> int:
    if not args.to.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"--to {args.to!r} must be a Redis URL, such as redis://localhost:6379/0")
    try:
        from .rq_backend import RQQueue, migrate
    except ImportError as error:
        raise UsageError(f"migrate needs the rq extra: pip install 'dbbasic-queue[rq]' ({error})") from None
    jobs = migrate(queue, RQQueue(args.to), dry_run=args.dry_run)
    for job in jobs:
        print(f"{job.id}  {job.type:<20} run_at {_utc(job.run_at)}  attempts {job.attempts}")
    print(f"{'would move' if args.dry_run else 'moved'} {len(jobs)} pending jobs to {args.to}")
    return EXIT_OK


def work_command(queue: Queue, args) -> int:
    handlers = load_handlers(args.handlers)
    retention = None if args.retention.lower() == "none" else _duration_option("--retention", args.retention)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = dict(lease_seconds=args.lease, max_jobs=args.max_jobs, max_seconds=args.max_seconds,
                   retention_seconds=retention, timeout=args.timeout)
    if args.concurrency != 1:
        options["concurrency"] = args.concurrency
    if args.loop:
        ran = queue.work(handlers, args.max_attempts, **options)
    else:
        ran = queue.process_jobs(handlers, args.max_attempts, **options)
    print(f"ran {ran} jobs")
    return EXIT_OK


def dashboard_command(queue: Queue, args) -> int:
    from .dashboard.server import run  # wsgiref and the pages only for this command
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(queue, args.host, args.port, read_only=args.read_only,
               credentials_file=args.credentials_file, out=sys.stdout)


def load_handlers(spec: str) -> Mapping[str, Any]:
    """Import ``package.module:name``: a dict of handlers, or an object with ``.handlers``."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--handlers {spec!r} must look like package.module:name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app's own modules
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise UsageError(f"--handlers: cannot import {module_name!r} ({type(error).__name__}: "
                         f"{error}); run from the app's directory or fix PYTHONPATH") from None
    found = getattr(module, name, None)
    handlers = getattr(found, "handlers", found)
    if not isinstance(handlers, Mapping):
        raise UsageError(f"--handlers: {spec} is {type(found).__name__}, not a dict of job "
                         f"type -> function")
    return handlers


# --- helpers --------------------------------------------------------------------------------

def _existing(queue: Queue, job_id: str) -> Dict[str, Any]:
    job = queue.get_job(job_id)
    if job is None:
        raise NotApplicable(f"no job {job_id!r} in {queue.path} (ids are 16 hex characters; "
                            f"see dbbasic-queue list)")
    return job


def _duration_option(option: str, text: str) -> float:
    try:
        return duration(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{option}: {error}") from None


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def _when(timestamp: float) -> str:
    return f"{_utc(timestamp)} UTC, in {_age(max(0.0, timestamp - time.time()))}"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
