"""The command line: ``dbbasic-queue [--file PATH] COMMAND ...`` (also ``python -m dbbasic_queue``).

Exit codes: 0 done; 1 no such job, or the job is not in a state the command applies to;
2 a mistake in the command (arguments, JSON, status, duration, time, a handlers module that
does not import, a value too large or too deeply nested), or a command or option the backend
does not support; 3 the queue cannot be used (not a queue file; a corrupt line, a foreign job
in Redis or a job too deep to read, asked for); 4 the queue's storage cannot be read or
written (permissions, a full disk, a file size limit, Redis out of reach; the directory of a
--file that does not exist, but for enqueue, work, dashboard and schedules --handlers).
Every error is one line on stderr (after the traceback of a handlers module that raised on
import). A closed output (``| head``) ends quietly with 141, as SIGPIPE would; Ctrl-C with
130. Job fields are shown with their control characters escaped; ``--json`` is exact. The
looking commands (stats, list, show) are in ``show.py``, the grammar in ``args.py``.
"""

import collections
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

from ..backend import (DEFAULT_LEASE_SECONDS, DEFAULT_PATH, DEFAULT_RETENTION_SECONDS, FILE,
                       LEASES, require)
from ..family.commands import queue_commands
from .args import NO_RETENTION, NotApplicable, UsageError, duration, duration_with_unit
from .args import parser as _parser
from .handlers import load_handlers
from .show import (existing, list_command, metrics_command, no_file_message, schedules_command,
                   show_command, stats_command, workers_command)
from .display import SafeFormatter, safe, shorten, utc
from ..model.words import age
from ..model.words import duration_text, plural
from ..errors import QueueError, UnsupportedError
from ..model.checks import check_path
from ..model.job import FINISHED
from ..model.job import MAX_DEPTH, nests_within
from ..queue import Queue
from ..model.transitions import is_purged
from ..worker.loop import stop_on_signals

# duration: the dashboard's and Django's too; duration_with_unit for options that delete
__all__ = ["main", "duration", "duration_with_unit", "load_handlers", "COMMANDS"]

EXIT_OK, EXIT_NOT_APPLICABLE, EXIT_USAGE, EXIT_FILE, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_CLOSED_OUTPUT = 141  # as for a process killed by SIGPIPE: `dbbasic-queue list | head`

logger = logging.getLogger("dbbasic_queue")


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
        queue = _queue(args)
        missing = _missing_directory(queue, args)
        if missing:
            return _fail(EXIT_STORAGE, missing)
        if args.needs is not None:
            require(queue, args.needs, f"dbbasic-queue {args.name}",
                    "unset DBBASIC_QUEUE_URL to use the TSV file, or see 'What works where' in "
                    "the README")
        return SUBCOMMANDS[args.name](queue, args)
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
    except OverflowError as error:  # the file's numbers are checked as its lines are read
        return _fail(EXIT_USAGE, f"a number out of range ({error}); check the command's values")
    except (RecursionError, MemoryError) as error:
        return _fail(EXIT_FILE, f"{type(error).__name__}: {error} (a job too deep or too large "
                                f"to handle)")
    except KeyboardInterrupt:
        return 130


def _queue(args):
    """The TSV queue of --file, or with $DBBASIC_QUEUE_URL the RQ queue it names (``migrate
    --to redis://...`` moves the file's jobs: its queue is the file's, whatever the URL)."""
    url = os.environ.get("DBBASIC_QUEUE_URL")
    if not url or (args.name == "migrate" and is_redis_url(args.to)):
        return Queue(args.file)
    try:
        from ..rq.backend import RQQueue
    except ImportError as error:
        raise UsageError(f"DBBASIC_QUEUE_URL is set: that needs the rq extra, pip install "
                         f"'dbbasic-queue[rq]' ({error}); or unset DBBASIC_QUEUE_URL to use "
                         f"the TSV file") from None
    return RQQueue(url)


WAIT_FOR_THE_FILE = {"enqueue", "work", "dashboard"}  # creates it; may start before it exists


def _missing_directory(queue, args) -> str:
    """What to say if the directory of --file (or $DBBASIC_QUEUE_FILE) does not exist: a
    wrong path, not an empty queue. The default data/ of a fresh app may be missing; enqueue
    creates the directory, as the first enqueue() does; a worker or the dashboard may be
    started before it (they say where they look), and ``schedules --handlers`` shows the
    schedules of the code before any worker ran."""
    if (FILE not in queue.capabilities or args.name in WAIT_FOR_THE_FILE
            or args.file == DEFAULT_PATH or getattr(args, "handlers", None) is not None):
        return ""
    directory = os.path.dirname(os.path.abspath(queue.describe()))
    if os.path.exists(directory):
        return ""
    return (f"the directory {directory} does not exist, so there is no queue file "
            f"{queue.describe()}; check --file or DBBASIC_QUEUE_FILE (enqueue creates it)")


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
    details = getattr(error, "details", "")
    if details:
        print(safe(details.rstrip("\n"), keep="\n"), file=sys.stderr)
    print(f"dbbasic-queue: {safe(error)}", file=sys.stderr)
    return code


# --- the commands that change the queue ------------------------------------------------------

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
    options = dict(unique_key=args.unique_key, max_attempts=args.max_attempts,
                   timeout=args.timeout)
    given = dict(queue=args.queue, priority=args.priority, concurrency_key=args.concurrency_key,
                 concurrency_limit=args.concurrency_limit, rate_limit=args.rate_limit,
                 rate_key=args.rate_key)
    options.update((name, value) for name, value in given.items() if value is not None)
    added = True
    try:
        if args.unique_key is None:
            job_id = queue.enqueue(args.type, payload, run_at, **options)
        else:  # enqueue_after's write returns the id kept, so a twin can be told apart
            kept: List[str] = []
            planned = queue.enqueue_after(lambda write: kept.append(write()), args.type,
                                          payload, run_at, **options)
            job_id = kept[0]
            added = job_id == planned
            if not added:
                twin = queue.get_job(job_id)
                status = twin["status"] if twin else "pending or processing"
                print(f"dbbasic-queue: a {status} job has this key: {job_id}; nothing was "
                      f"added", file=sys.stderr)
    except (RecursionError, OverflowError) as error:
        raise UsageError(f"a value of the job is too large or nested too deeply "
                         f"({type(error).__name__}: {error})") from None
    if added and args.at is not None and args.at < time.time():  # a typo'd year, say
        print(f"dbbasic-queue: note: --at {utc(args.at)} UTC is in the past; the job is due "
              f"now", file=sys.stderr)
    print(job_id)
    return EXIT_OK


def one_job(queue, job_id: str, change, done: str, refusal: str) -> int:
    """``change(job_id)`` on a job that exists: prints ``done ID``, or NotApplicable says
    the job's status and ``refusal``."""
    job = existing(queue, job_id)
    if not change(job_id):
        raise NotApplicable(f"job {job_id} is {job['status']}; {refusal}")
    print(f"{done} {safe(job_id)}")
    return EXIT_OK


def cancel_command(queue, args) -> int:
    return one_job(queue, args.id, queue.cancel_job, "cancelled",
                   "only pending jobs can be cancelled")


def stop_command(queue, args) -> int:
    return one_job(queue, args.id, lambda job_id: queue.stop(job_id, by=args.by),
                   "asked to stop", "only a processing job can be stopped (cancel a pending "
                                    "one)")


def delete_command(queue, args) -> int:
    return one_job(queue, args.id, queue.delete, "deleted", "a processing job is its worker's: "
                   "wait for its result, or run-now --force it first")


def retry_command(queue, args) -> int:
    if args.failed:
        print(f"retrying {plural(queue.retry_failed(args.type), 'failed job')}")
        return EXIT_OK
    if args.type:
        raise UsageError("--type goes with --failed; to retry one job, give its id alone")
    return one_job(queue, args.id, queue.retry_job, "retrying",
                   "only failed or cancelled jobs can be retried")


def run_now_command(queue, args) -> int:
    if args.id is None:
        if args.force:
            raise UsageError("--force goes with one job's id: putting back every running job "
                             "at once would run each twice while its worker lives")
        count = queue.run_now_all(args.type)
        of_type = f" of type {safe(args.type)}" if args.type else ""
        print(f"{plural(count, 'waiting job')}{of_type} due now, attempts kept")
        return EXIT_OK
    job = existing(queue, args.id)
    if job["status"] == "processing" and not args.force:
        lease = job["run_at"] - time.time()
        held = (f"its lease runs until {utc(job['run_at'])} UTC (in {age(lease)}), so its "
                f"worker may be running it now" if lease > 0 else
                f"its lease ended at {utc(job['run_at'])} UTC: a worker takes it again once "
                f"its own worker is gone")
        raise NotApplicable(f"job {args.id} is processing (attempt {job['attempts']}); {held}. "
                            f"--force puts it back to pending, due now: if its worker lives, "
                            f"the job runs twice at once")
    if not queue.run_now(args.id, force=args.force):
        raise NotApplicable(f"job {args.id} is {job['status']}; run-now applies to pending jobs "
                            f"(and processing ones with --force); dbbasic-queue retry puts a "
                            f"failed or cancelled job back")
    if job["status"] == "processing":
        print(f"dbbasic-queue: job {args.id} was processing: if its worker is still alive, the "
              f"job now runs twice at once, and that worker's result is not recorded",
              file=sys.stderr)
        print(f"{safe(args.id)} is pending, due now (attempt {job['attempts']} not counted)")
    else:
        print(f"{safe(args.id)} is due now ({plural(job['attempts'], 'attempt')} so far, kept)")
    return EXIT_OK


def purge_command(queue, args) -> int:
    statuses = [s.strip() for s in args.status.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in FINISHED]
    if unknown or not statuses:
        raise UsageError(f"--status takes finished statuses ({', '.join(FINISHED)}), "
                         f"not {', '.join(unknown) or 'nothing'}")
    if not args.dry_run:
        print(f"purged {plural(queue.purge(args.older_than, statuses), 'job')}")
        return EXIT_OK
    before = getattr(queue, "clock", time.time)() - args.older_than
    counts = collections.Counter(job["status"] for job in queue.jobs()
                                 if is_purged(job, statuses, before))
    print(f"would purge {plural(sum(counts.values()), 'job')} ("
          + ", ".join(f"{status} {counts[status]}" for status in statuses)
          + f") older than {duration_text(args.older_than)}; nothing was deleted")
    return EXIT_OK


def is_redis_url(text: str) -> bool:
    return text.startswith(("redis://", "rediss://", "unix://"))


def migrate_command(queue, args) -> int:
    to_redis = is_redis_url(args.to)
    try:
        from ..rq.backend import RQQueue, migrate, migrate_back
    except ImportError as error:
        raise UsageError(f"migrate needs the rq extra: pip install 'dbbasic-queue[rq]' ({error})") from None
    if not to_redis and not isinstance(queue, RQQueue):
        raise UsageError(f"--to {args.to!r}: a Redis URL (redis://localhost:6379/0) moves the "
                         f"file's jobs there; a file's path moves Redis's jobs back, with "
                         f"DBBASIC_QUEUE_URL naming that Redis")
    if to_redis:
        target = RQQueue(args.to)
        jobs = [(job.id, job.type, job.run_at, job.attempts)
                for job in migrate(queue, target, dry_run=args.dry_run)]
    else:
        check_path(args.to)
        target = Queue(args.to)
        jobs = [(job["id"], job["type"], job["run_at"], job["attempts"])
                for job in migrate_back(queue, target, dry_run=args.dry_run)]
    for job_id, job_type, run_at, attempts in jobs:
        print(f"{job_id}  {safe(job_type):<20} run_at {utc(run_at)} UTC  attempts {attempts}")
    print(f"{'would move' if args.dry_run else 'moved'} {plural(len(jobs), 'pending job')} to "
          f"{safe(target.describe())}")
    return EXIT_OK


def work_command(queue, args) -> int:
    handlers = load_handlers(args.handlers)
    options: Dict[str, Any] = dict(max_jobs=args.max_jobs, max_seconds=args.max_seconds,
                                   timeout=args.timeout)
    if args.lease is not None:  # given: a backend without leases refuses it
        options["lease_seconds"] = args.lease
    if args.stop_grace is not None:
        options["stop_grace"] = args.stop_grace
    if args.retention is not None:
        options["retention_seconds"] = None if args.retention == NO_RETENTION else args.retention
    if args.concurrency != 1:  # given: a backend without threads refuses it
        options["concurrency"] = args.concurrency
    if args.queues:
        options["queues"] = _queue_choice([entry for given in args.queues for entry in given])
    _log_to_terminal(args.log_level)
    queue.check_worker(handlers, args.max_attempts, **options)  # before saying it starts
    logger.info("%s", _start_up_line(queue, args, handlers, options))
    if FILE in queue.capabilities and not os.path.exists(queue.describe()):
        logger.info("%s", no_file_message(queue))
    if args.loop:
        ran = queue.work(handlers, args.max_attempts, **options)
    else:  # SIGTERM (timeout, systemctl stop) as in the loop: put back, then exit 0
        with stop_on_signals(threading.Event(), (signal.SIGTERM,)):
            ran = queue.process_jobs(handlers, args.max_attempts, **options)
    print(f"ran {plural(ran, 'job')}")
    return EXIT_OK


def _queue_choice(entries):
    """A list of names (strict order) or, if any has a weight, a dict of weights."""
    weighted = [weight is not None for _, weight in entries]
    if any(weighted) and not all(weighted):
        raise UsageError("give every --queue a weight (emails:3,default:1) or none "
                         "(emails,default: strict order)")
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise UsageError(f"--queue names a queue twice: {', '.join(names)}")
    return dict(entries) if all(weighted) else names


def pause_command(queue, args) -> int:
    kind = "job type" if args.type else "queue"
    target = {"job_type": args.target} if args.type else {"queue": args.target}
    pausing = args.name == "pause"
    try:
        changed = (queue.pause if pausing else queue.resume)(**target)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    if changed:
        print(f"{'paused' if pausing else 'resumed'} {kind} {safe(args.target)}")
    else:
        print(f"{kind} {safe(args.target)} was {'paused' if pausing else 'not paused'} already")
    return EXIT_OK


def _start_up_line(queue, args, handlers: Mapping[str, Any], options: Dict[str, Any]) -> str:
    """What a worker runs, on what: which file, which handlers, with which settings."""
    names = shorten(", ".join(sorted(map(str, handlers))), 300) or "none"
    settings = []
    if LEASES in queue.capabilities:
        settings.append(f"lease {duration_text(options.get('lease_seconds', DEFAULT_LEASE_SECONDS))}")
    if FILE in queue.capabilities:
        kept = options.get("retention_seconds", DEFAULT_RETENTION_SECONDS)
        settings.append(f"retention {'none' if kept is None else duration_text(kept)}")
    settings += [f"concurrency {args.concurrency}", f"max attempts {args.max_attempts}"]
    if "queues" in options:
        chosen = options["queues"]
        settings.append("queues " + (", ".join(f"{name}:{weight}" for name, weight in chosen.items())
                                     if isinstance(chosen, dict) else ", ".join(chosen)))
    return (f"dbbasic-queue worker{' (loop)' if args.loop else ''} on {queue.describe()}: "
            f"{plural(len(handlers), 'handler')} ({names}); {', '.join(settings)}")


def dashboard_command(queue, args) -> int:
    from ..dashboard.server import run  # wsgiref and the pages only for this command
    _log_to_terminal("INFO")  # request lines quote the URL as sent
    return run(queue, args.host, args.port, read_only=args.read_only,
               credentials_file=args.credentials_file, out=sys.stdout,
               allowed_hosts=args.allowed_hosts)


# --- helpers --------------------------------------------------------------------------------

def _log_to_terminal(level: str) -> None:
    """Log lines on stderr, with job types, error texts and URLs escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


# dbbasic-queue's commands; COMMANDS, the name dbbasic-cli looks for, is its own (below).
SUBCOMMANDS = {"stats": stats_command, "list": list_command, "show": show_command,
               "enqueue": enqueue_command, "cancel": cancel_command, "retry": retry_command,
               "delete": delete_command, "stop": stop_command,
               "run-now": run_now_command, "purge": purge_command, "migrate": migrate_command,
               "work": work_command, "schedules": schedules_command, "dashboard": dashboard_command,
               "pause": pause_command, "resume": pause_command, "workers": workers_command,
               "metrics": metrics_command}

COMMANDS = queue_commands(main)  # for dbbasic-cli: `dbbasic queue:stats`
