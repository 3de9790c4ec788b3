"""The command line: ``dbbasic-queue [--file PATH] COMMAND ...`` (also ``python -m dbbasic_queue``).

Exit codes: 0 done; 1 no such job, or the job is not in a state the command applies to;
2 a mistake in the command (arguments, JSON, status, duration, a handlers path that does not
import, a value too large or too deeply nested), or a command or option the backend does not
support; 3 the queue cannot be used (not a queue file; a corrupt line, a foreign job in Redis
or a job too deep to read, asked for); 4 the queue's storage cannot be read or written
(permissions, a full disk, a file size limit, Redis out of reach). Every error is one line on
stderr. A closed output (``| head``) ends quietly with 141, as SIGPIPE would; Ctrl-C with 130.
Job fields are shown with their control characters escaped; ``--json`` is exact.
"""

import heapq
import importlib
import json
import logging
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional

from .backend import FILE, require
from .cli_args import UsageError, duration, duration_option
from .cli_args import parser as _parser
from .display import SafeFormatter, age, safe, safe_json, size, utc, when
from .errors import QueueError, UnsupportedError
from .job import FINISHED, MAX_DEPTH, STATUSES, nests_within
from .queue import Queue

__all__ = ["main", "duration", "load_handlers"]  # duration: the dashboard's and Django's too

EXIT_OK, EXIT_NOT_APPLICABLE, EXIT_USAGE, EXIT_FILE, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_CLOSED_OUTPUT = 141  # as for a process killed by SIGPIPE: `dbbasic-queue list | head`


class NotApplicable(Exception):
    """No such job, or the job is not in a state the command applies to."""


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
        queue = _queue(args)
        if args.needs is not None:
            require(queue, args.needs, f"dbbasic-queue {args.name}",
                    "unset DBBASIC_QUEUE_URL to use the TSV file, or see the README's table "
                    "of what each backend does")
        return COMMANDS[args.name](queue, args)
    except (UsageError, UnsupportedError) as error:
        return _fail(EXIT_USAGE, error)
    except NotApplicable as error:
        return _fail(EXIT_NOT_APPLICABLE, error)
    except QueueError as error:
        return _fail(EXIT_FILE, error)
    except (TypeError, ValueError) as error:  # the queue refused an argument
        return _fail(EXIT_USAGE, error)
    except BrokenPipeError:
        return _closed_output()
    except OSError as error:
        return _fail(EXIT_STORAGE, _storage_message(error))
    except (RecursionError, OverflowError, MemoryError) as error:
        return _fail(EXIT_FILE, f"{type(error).__name__}: {error} (a job too deep or too large "
                                f"to handle; a hand-edited or corrupt line? fix or remove it)")
    except KeyboardInterrupt:
        return 130


def _queue(args):
    """The TSV queue of --file, or with $DBBASIC_QUEUE_URL the RQ queue it names."""
    url = os.environ.get("DBBASIC_QUEUE_URL")
    if not url or args.name == "migrate":
        return Queue(args.file)
    try:
        from .rq_backend import RQQueue
    except ImportError as error:
        raise UsageError(f"DBBASIC_QUEUE_URL is set: that needs the rq extra, pip install "
                         f"'dbbasic-queue[rq]' ({error})") from None
    return RQQueue(url)


def _storage_message(error: OSError) -> str:
    if type(error) is ConnectionError and error.errno is None:  # the backend's own words
        return str(error)
    return (f"cannot read or write the queue ({error}); check the owner and mode of its "
            f"directory and files, the free disk space and the file size limit (ulimit -f)")


def _closed_output() -> int:
    """Whoever read our output stopped (``| head``): end quietly, as cat does."""
    try:  # the interpreter flushes stdout at exit: let that go nowhere, not to a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_CLOSED_OUTPUT


def _fail(code: int, error: Any) -> int:
    print(f"dbbasic-queue: {safe(error)}", file=sys.stderr)
    return code


# --- the commands ---------------------------------------------------------------------------

def stats_command(queue, args) -> int:
    stats = queue.stats()
    if args.json:
        print(safe_json(stats, indent=2))
        return EXIT_OK
    on_file = FILE in queue.capabilities
    where = f"{_size_of(stats)}{stats['jobs']} jobs"
    print(f"{'file' if on_file else 'queue':<9} {safe(queue.describe())} ({where})")
    print("status    " + ", ".join(f"{s} {n}" for s, n in stats["by_status"].items()))
    oldest = stats["oldest_due_seconds"]
    print(f"latency   {'no job waiting' if oldest is None else age(oldest) + ' (oldest due job)'}")
    next_run = stats["next_run_at"]
    print(f"next run  {'none scheduled' if next_run is None else when(next_run)}")
    print(f"failures  {stats['failed_last_hour']} failed in the last hour, "
          f"{stats['retrying']} pending a retry")
    if stats["corrupt_lines"]:
        what = "lines" if on_file else "jobs that are not dbbasic-queue jobs"
        print(f"corrupt   {stats['corrupt_lines']} {what} (left as they are; see the worker's log)")
    if stats["by_type"]:
        print("\nTYPE                      " + " ".join(f"{s:>10}" for s in STATUSES))
        for job_type, counts in stats["by_type"].items():
            print(f"{safe(job_type[:25]):<26}" + " ".join(f"{counts[s]:>10}" for s in STATUSES))
    return EXIT_OK


def list_command(queue, args) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {args.limit}")
    chosen = (job for job in queue.jobs()
              if args.status in (None, job["status"]) and args.type in (None, job["type"]))
    numbered = ((job["created_at"], number, job) for number, job in enumerate(chosen))
    jobs = [job for _, _, job in heapq.nlargest(args.limit, numbered, key=lambda t: t[:2])]
    if args.json:
        print(safe_json(jobs, indent=2))
        return EXIT_OK
    print(f"{'ID':<16}  {'TYPE':<20} {'STATUS':<10} {'TRIES':>5}  {'CREATED':<19}  {'RUN AT':<19}  ERROR")
    for job in jobs:
        print(f"{safe(job['id']):<16}  {safe(job['type'][:20]):<20} {job['status']:<10} "
              f"{job['attempts']:>5}  {utc(job['created_at'])}  {utc(job['run_at'])}  "
              f"{safe((job['error'] or '')[:60])}")
    return EXIT_OK


def show_command(queue, args) -> int:
    job = _existing(queue, args.id)
    if args.json:
        print(safe_json(job, indent=2))
        return EXIT_OK
    for key in ("id", "type", "status", "attempts"):
        print(f"{key:<11} {safe(job[key])}")
    for key in ("created_at", "run_at"):
        print(f"{key:<11} {job[key]} ({utc(job[key])} UTC)")
    print(f"{'error':<11} {safe(job['error']) if job['error'] is not None else '-'}")
    for key in ("payload", "result"):
        pretty = safe_json(job[key], indent=2).replace("\n", "\n" + " " * 12)
        print(f"{key:<11} {pretty}")
    return EXIT_OK


def enqueue_command(queue, args) -> int:
    if not nests_within(args.payload):
        raise UsageError(f"the payload is nested more than {MAX_DEPTH} levels deep; flatten it")
    try:
        payload = json.loads(args.payload)
    except ValueError as error:
        raise UsageError(f"the payload is not valid JSON ({error}); quote it for the shell, "
                         f"e.g. '{{\"to\": \"ann@example.com\"}}'") from None
    except RecursionError:
        raise UsageError("the payload is nested too deeply to read; flatten it") from None
    if not isinstance(payload, dict):
        raise UsageError(f"the payload must be a JSON object ({{...}}), not {type(payload).__name__}")
    run_at = args.at if args.delay is None else time.time() + args.delay
    try:
        job_id = queue.enqueue(args.type, payload, run_at, unique_key=args.unique_key,
                               max_attempts=args.max_attempts, timeout=args.timeout)
    except (RecursionError, OverflowError) as error:
        raise UsageError(f"a value of the job is too large or nested too deeply "
                         f"({type(error).__name__}: {error})") from None
    print(job_id)
    return EXIT_OK


def cancel_command(queue, args) -> int:
    job = _existing(queue, args.id)
    if not queue.cancel_job(args.id):
        raise NotApplicable(f"job {args.id} is {job['status']}; only pending jobs can be cancelled")
    print(f"cancelled {safe(args.id)}")
    return EXIT_OK


def retry_command(queue, args) -> int:
    if args.failed:
        print(f"retrying {queue.retry_failed(args.type)} failed jobs")
        return EXIT_OK
    if args.type:
        raise UsageError("--type goes with --failed; to retry one job, give its id alone")
    job = _existing(queue, args.id)
    if not queue.retry_job(args.id):
        raise NotApplicable(f"job {args.id} is {job['status']}; only failed or cancelled jobs "
                            f"can be retried")
    print(f"retrying {safe(args.id)}")
    return EXIT_OK


def purge_command(queue, args) -> int:
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
    target = RQQueue(args.to)
    jobs = migrate(queue, target, dry_run=args.dry_run)
    for job in jobs:
        print(f"{job.id}  {safe(job.type):<20} run_at {utc(job.run_at)}  attempts {job.attempts}")
    print(f"{'would move' if args.dry_run else 'moved'} {len(jobs)} pending jobs to "
          f"{safe(target.describe())}")
    return EXIT_OK


def work_command(queue, args) -> int:
    handlers = load_handlers(args.handlers)
    options: Dict[str, Any] = dict(max_jobs=args.max_jobs, max_seconds=args.max_seconds,
                                   timeout=args.timeout)
    if args.lease is not None:  # given: a backend without leases refuses it
        options["lease_seconds"] = args.lease
    if args.retention is not None:
        options["retention_seconds"] = (None if args.retention.lower() == "none" else
                                        duration_option("--retention", args.retention))
    if args.concurrency != 1:  # given: a backend without threads refuses it
        options["concurrency"] = args.concurrency
    _log_to_terminal(args.log_level)
    if args.loop:
        ran = queue.work(handlers, args.max_attempts, **options)
    else:
        ran = queue.process_jobs(handlers, args.max_attempts, **options)
    print(f"ran {ran} jobs")
    return EXIT_OK


def dashboard_command(queue, args) -> int:
    from .dashboard.server import run  # wsgiref and the pages only for this command
    _log_to_terminal("INFO")  # request lines quote the URL as sent
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

def _existing(queue, job_id: str) -> Dict[str, Any]:
    job = queue.get_job(job_id)
    if job is None:
        raise NotApplicable(f"no job {job_id!r} in {queue.describe()} (ids are 16 hex "
                            f"characters; see dbbasic-queue list)")
    return job


def _log_to_terminal(level: str) -> None:
    """Log lines on stderr, with job types, error texts and URLs escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _size_of(stats: Dict[str, Any]) -> str:
    return f"{size(stats['size_bytes'])}, " if "size_bytes" in stats else ""


COMMANDS = {"stats": stats_command, "list": list_command, "show": show_command,
            "enqueue": enqueue_command, "cancel": cancel_command, "retry": retry_command,
            "purge": purge_command, "migrate": migrate_command, "work": work_command,
            "dashboard": dashboard_command}
