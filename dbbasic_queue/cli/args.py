"""The command line's grammar: its commands, options and argument types, and its help.

Every mistake in a command raises UsageError with one line saying how to fix it; each
command declares the backend capability it needs (``needs``), which ``cli.main`` checks.
``--file`` is read before or after the command (``stats --file x.tsv``).
"""

import argparse
import os
import textwrap
from datetime import datetime

from .. import __version__
from ..backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                      DEFAULT_RETENTION_SECONDS, LISTING, PERIODIC, PURGE, QUEUES, RETRY,
                      WORKERS)
from ..model.job import STATUSES
from ..model.words import LARGEST, UNITS, seconds_in

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NO_RETENTION = "none"  # --retention none: keep finished jobs
ID_HELP = "a job's id (16 hex characters, as enqueue and list print)"

EXIT_CODES = """exit codes:
  0  done (also: no queue file yet, said on stderr)
  1  no such job, or the job is not in a state the command applies to
  2  a mistake in the command (arguments, JSON, a duration, a time, a handlers module that
     does not import), or a command or option the backend does not support
  3  the queue cannot be used: not a queue file, or a corrupt line or foreign job asked for
  4  the queue's storage cannot be read or written (permissions, a full disk, Redis out of
     reach, a --file whose directory does not exist, except for enqueue, which creates
     it, and work, dashboard and schedules --handlers, which may run before it exists)

Durations are 30s, 10m, 2h, 7d; a bare number is seconds, except where jobs are deleted
(purge --older-than, work --retention), which need a unit."""
EXIT_CODES_IN_SHORT = ("exit codes: 0 done, 1 no such job or not in a state for it, 2 a mistake in "
                       "the command, 3 the queue cannot be used, 4 its storage cannot be read or "
                       "written (see dbbasic-queue --help)")


class UsageError(Exception):
    """A mistake in the command; the message says how to fix it. ``details`` (a traceback,
    say) is printed before it."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class NotApplicable(Exception):
    """No such job, or the job is not in a state the command applies to."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h``, ``7d`` or a plain number of seconds."""
    try:
        return seconds_in(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def duration_with_unit(text: str) -> float:
    """``duration(text)``, refusing a bare number other than 0: for an option that deletes
    jobs, where ``7`` read as seconds instead of days deletes a week's history at once."""
    seconds = duration(text)
    if not text.strip().endswith(tuple(UNITS)) and seconds != 0:
        number = text.strip()
        raise argparse.ArgumentTypeError(
            f"{number!r} has no unit, and this option deletes jobs: write {number}d for "
            f"{number} days (or {number}h, {number}m, {number}s)")
    return seconds


def retention(text: str):
    """Seconds with a unit, or NO_RETENTION for ``none``."""
    return NO_RETENTION if text.strip().lower() == NO_RETENTION else duration_with_unit(text)


def moment(text: str) -> float:
    """A Unix timestamp, or an ISO 8601 time with a zone (``2026-12-01T09:00:00+01:00``,
    ``...Z`` for UTC), as a Unix timestamp. A time without a zone is refused: it could be
    any of 24 moments."""
    try:
        return float(text)
    except ValueError:
        pass
    iso = text.strip()
    if iso.endswith(("Z", "z")):  # fromisoformat reads Z only from Python 3.11 on
        iso = iso[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a time: use ISO 8601 with a zone, as in "
            f"2026-12-01T09:00:00+01:00 or 2026-12-01T08:00:00Z, or a Unix timestamp") from None
    if when.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} has no time zone: add one, as in {iso}+01:00, or {iso}Z for UTC")
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} cannot be a job's time ({error})") from None


def whole_number(text: str) -> int:
    """An integer of sensible size (the queue checks its sign)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if abs(number) > LARGEST:
        raise argparse.ArgumentTypeError(f"{text[:20]}... is too large: at most {LARGEST}")
    return number


def priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from -100 to 100") from None
    if not -100 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not from -100 to 100")
    return value


def queue_entries(text: str) -> list:
    """``emails,default`` or ``emails:3,default:1``: (name, weight or None) pairs."""
    entries = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if weight:
            try:
                entries.append((name, int(weight)))
            except ValueError:
                raise argparse.ArgumentTypeError(f"the weight in {part!r} is not a whole "
                                                 f"number") from None
        else:
            entries.append((name, None))
    return entries


def port(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:20]} is not a port: use 0 to 65535 (0: any "
                                         f"free one)")
    return number


def allowed_host(text: str) -> str:
    """A host name the dashboard answers to, in the one spelling it compares."""
    from ..dashboard.security import host_pattern  # the dashboard's modules only for its command
    try:
        return host_pattern(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a log level: use "
                                         f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}")
    return level


def parser() -> argparse.ArgumentParser:
    """The grammar: ``args.name`` is the command, ``args.needs`` the capability it needs of
    the backend (None: every backend has it)."""
    grammar = _Parser(prog="dbbasic-queue", epilog=EXIT_CODES,
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      description="Look at, change and run a dbbasic-queue: the file "
                                  "data/queue.tsv,\nor Redis when DBBASIC_QUEUE_URL is set. "
                                  "COMMAND --help says more of each.")
    grammar.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    grammar.add_argument("--file", default=os.environ.get("DBBASIC_QUEUE_FILE") or DEFAULT_PATH,
                         help="the queue file (default: $DBBASIC_QUEUE_FILE, else "
                              "data/queue.tsv); also after the command")
    grammar.set_defaults(needs=None)  # the capability a command needs of the backend
    anywhere = argparse.ArgumentParser(add_help=False)  # options also read after the command
    anywhere.add_argument("--file", default=argparse.SUPPRESS, metavar="PATH",
                          help="the queue file (default: $DBBASIC_QUEUE_FILE, else data/queue.tsv)")
    commands = grammar.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                      dest="name", parser_class=_Parser)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=textwrap.fill(description, 78),
                                   parents=[anywhere], epilog=textwrap.fill(EXIT_CODES_IN_SHORT, 78),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true",
                         help="print JSON instead of text (exact: nothing escaped but what "
                              "JSON escapes)")

    stats = command("stats", "counts by status and type, latency, next run",
                    "Count the jobs by status and by type, and say how long the oldest due "
                    "job has waited, when the next scheduled one runs and how many failed.")
    json_option(stats)
    stats.add_argument("--watch", nargs="?", const=2.0, type=duration, metavar="SECONDS",
                       help="redraw every SECONDS (default 2) until Ctrl-C, in place on a "
                            "terminal")
    stats.set_defaults(needs=LISTING)

    workers = command("workers", "the workers seen: last seen, jobs in hand, counts",
                      "List the workers seen working the queue (cron runs of one host serving "
                      "the same types are one line), most recently seen first: when each was "
                      "last seen, how often it runs, the jobs in hand, its counts, and whether "
                      "it is alive, late (not seen within twice its interval) or gone (a loop "
                      "worker of this host whose process ended).")
    json_option(workers)
    workers.set_defaults(needs=WORKERS)

    metrics = command("metrics", "the queue's figures in Prometheus's text format",
                      "Print the queue's figures in Prometheus's text format: jobs by status, "
                      "type and queue, the oldest due job's wait, failures, workers by state "
                      "and each worker's counts. For node_exporter's textfile collector, from "
                      "cron: dbbasic-queue metrics > DIR/queue.prom.tmp && mv DIR/queue.prom.tmp "
                      "DIR/queue.prom")
    metrics.set_defaults(needs=LISTING)

    listing = command("list", "jobs, newest first",
                      "List jobs, newest first, at most --limit of them (it says how many "
                      "there are when it cuts). Times are UTC.")
    listing.add_argument("--status", choices=STATUSES, metavar="STATUS",
                         help=f"only jobs in this status: one of {', '.join(STATUSES)}")
    listing.add_argument("--type", metavar="TYPE", help="only jobs of this job type")
    listing.add_argument("--limit", type=whole_number, default=20, help="how many (default 20)")
    json_option(listing)
    listing.set_defaults(needs=LISTING)

    show = command("show", "one job in full",
                   "Show one job: its fields, payload, result, error, its own options and "
                   "the tracebacks of its failed attempts.")
    show.add_argument("id", help=ID_HELP)
    json_option(show)

    enqueue = command("enqueue", "queue a job; prints its id",
                      "Queue a job and print its id. With --unique-key, if a pending or "
                      "processing job has the key, nothing is added: its id is printed, and "
                      "stderr says so.")
    enqueue.add_argument("type", help="the job type: the key of its handler, e.g. send_email")
    enqueue.add_argument("payload", metavar="JSON", help="the payload, a JSON object")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", type=moment, metavar="WHEN",
                      help="run at this time: ISO 8601 with a zone (2026-12-01T09:00:00+01:00, "
                           "...Z for UTC) or a Unix timestamp; a time in the past makes the "
                           "job due now, with a note on stderr")
    when.add_argument("--in", dest="delay", type=duration, metavar="DURATION",
                      help="run after this long: 30s, 10m, 2h, 7d (a bare number is seconds)")
    enqueue.add_argument("--unique-key", help="add nothing if a pending or processing job has it")
    enqueue.add_argument("--max-attempts", type=whole_number,
                         help="this job's own, over the worker's")
    enqueue.add_argument("--timeout", type=duration, metavar="DURATION",
                         help="this job's own handler time limit (a bare number is seconds)")
    enqueue.add_argument("--queue", metavar="NAME", help="its queue (default: default)")
    enqueue.add_argument("--priority", type=priority, metavar="N",
                         help="from -100 to 100, higher first (default 0)")
    enqueue.add_argument("--concurrency-key", metavar="KEY",
                         help="run while fewer than its limit of jobs with this key run")
    enqueue.add_argument("--concurrency-limit", type=whole_number, metavar="N",
                         help="with --concurrency-key: at most N at once (default: the "
                              "handler's limit, else 1)")
    enqueue.add_argument("--rate-limit", metavar="RATE",
                         help="at most this many starts a period for its --rate-key (default: "
                              "its type), e.g. 100/m, 10/s, 5/10m")
    enqueue.add_argument("--rate-key", metavar="KEY", help="with --rate-limit: the key counted")

    cancel = command("cancel", "cancel a pending job",
                     "Cancel a pending job; it stays in the file as cancelled.")
    cancel.add_argument("id", help=ID_HELP)

    stop = command("stop", "ask the worker running a job to stop it",
                   "Ask the worker running a job to stop it: its handler sees "
                   "current_job().stop_requested within a second, and one still running the "
                   "worker's --stop-grace later is interrupted; the job ends cancelled, its "
                   "error 'Stopped by NAME'. A pending job is cancel's.")
    stop.add_argument("id", help=ID_HELP)
    stop.add_argument("--by", metavar="NAME", help="who asks, for the job's error (default: "
                                                   "your user name)")

    delete = command("delete", "remove a job for good",
                     "Remove a job for good, from the queue file or its archive file, whatever "
                     "its status but processing (its worker holds it).")
    delete.add_argument("id", help=ID_HELP)

    retry = command("retry", "put failed or cancelled jobs back, due now",
                    "Put a failed or cancelled job (or, with --failed, every failed job) back "
                    "to pending, due now, with fresh attempts.")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help=ID_HELP)
    which.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--type", metavar="TYPE", help="with --failed: only jobs of this type")
    retry.set_defaults(needs=RETRY)

    run_now = command("run-now", "make waiting jobs due now, keeping their attempts",
                      "Make a pending job that waits for its time or for a retry due now, "
                      "keeping its attempts (after deploying a fix, say). A processing job "
                      "whose lease still runs is put back only with --force.")
    which = run_now.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help=ID_HELP)
    which.add_argument("--type", metavar="TYPE", help="every waiting job of this type")
    which.add_argument("--all", action="store_true", help="every waiting job")
    run_now.add_argument("--force", action="store_true",
                         help="with an id: also put back a processing job whose lease still "
                              "runs; if its worker lives, the job runs twice at once")

    purge = command("purge", "remove old finished jobs; prints how many",
                    "Remove finished jobs whose last activity is older than --older-than, "
                    "from the queue file and its archive files.")
    purge.add_argument("--older-than", type=duration_with_unit, required=True,
                       metavar="DURATION", help="with a unit: 30m, 12h, 7d")
    purge.add_argument("--status", default="completed,cancelled",
                       help="comma-separated, among completed, failed, cancelled "
                            "(default: completed,cancelled)")
    purge.add_argument("--dry-run", action="store_true",
                       help="only count what would go, by status; delete nothing")
    purge.set_defaults(needs=PURGE)

    migrate = command("migrate", "move pending jobs into Redis (RQ), or back to a file",
                      "Move the pending jobs of the file into Redis for the RQ backend (--to "
                      "redis://...), or those of Redis (DBBASIC_QUEUE_URL) back into a file "
                      "(--to data/queue.tsv). A job is marked cancelled where it was once the "
                      "other side has it; a second run moves nothing.")
    migrate.add_argument("--to", required=True, metavar="URL_OR_PATH",
                         help="redis://host:port/db (the file's jobs go there), or a file's "
                              "path, data/queue.tsv (Redis's jobs come back, with "
                              "DBBASIC_QUEUE_URL naming that Redis)")
    migrate.add_argument("--dry-run", action="store_true", help="only print what would move")

    work = command("work", "run jobs: once (for cron) or --loop",
                   "Run the due jobs with the handlers of --handlers, then exit (for cron), "
                   "or keep running with --loop. Logs on stderr: one start-up line, one line "
                   "per run that ran jobs and per failure (DEBUG: per job, and per empty run).")
    work.add_argument("--handlers", required=True, metavar="MODULE:NAME",
                      help="a dict of job type -> function at a module's top level, e.g. "
                           "app.jobs:handlers, or an object with a .handlers dict")
    work.add_argument("--loop", action="store_true", help="keep running, picking up new jobs")
    work.add_argument("--queue", dest="queues", action="append", type=queue_entries, default=[],
                      metavar="NAME[:WEIGHT]",
                      help="serve only these queues, repeated or comma-separated, in strict "
                           "order (emails,default), or each with a weight (emails:3,default:1); "
                           "default: every queue")
    work.add_argument("--max-jobs", type=whole_number, metavar="N",
                      help="stop after N jobs (default: no limit)")
    work.add_argument("--max-seconds", type=duration, metavar="DURATION",
                      help="start no job after this long, e.g. 55 for cron (a bare number is "
                           "seconds)")
    work.add_argument("--max-attempts", type=whole_number, default=DEFAULT_MAX_ATTEMPTS,
                      metavar="N", help=f"attempts of a job without its own "
                                        f"(default {DEFAULT_MAX_ATTEMPTS})")
    work.add_argument("--lease", type=duration, metavar="DURATION",
                      help=f"how long a claimed job is held before another worker may take it "
                           f"if this one dies (default {DEFAULT_LEASE_SECONDS // 60}m; renewed "
                           f"while the worker lives)")
    work.add_argument("--timeout", type=duration, metavar="DURATION",
                      help="stop a handler running longer (default: no limit)")
    work.add_argument("--stop-grace", type=duration, metavar="DURATION",
                      help="how long a handler asked to stop (dbbasic-queue stop) has before "
                           "it is interrupted (default 10s)")
    work.add_argument("--concurrency", type=whole_number, default=1, metavar="N",
                      help="run up to N handlers at once, in threads (default 1)")
    work.add_argument("--retention", type=retention, metavar="DURATION",
                      help=f"drop completed and cancelled jobs older than this, with a unit "
                           f"(default {DEFAULT_RETENTION_SECONDS // 86400}d; 'none' keeps them)")
    work.add_argument("--log-level", type=log_level, default="INFO", metavar="LEVEL",
                      help=f"{', '.join(LOG_LEVELS)} (default INFO: a line per run that ran "
                           f"jobs and per failure; DEBUG adds a line per job and per empty run)")

    for verb, doing in (("pause", "stop workers starting"), ("resume", "let workers start again")):
        sub = command(verb, f"{doing} jobs of a queue or a job type",
                      f"{doing.capitalize()} jobs of the queue NAME (or, with --type, of the job "
                      f"type NAME), from every worker's next claim on; jobs already running "
                      f"finish. Kept in data/queue.paused.tsv, so it holds across restarts.")
        sub.add_argument("target", metavar="NAME", help="the queue (or, with --type, the job type)")
        sub.add_argument("--type", action="store_true", help="NAME is a job type, not a queue")
        sub.set_defaults(needs=QUEUES)

    schedules = command("schedules", "periodic jobs: last fired slot and next slot",
                        "List the periodic jobs (@queue.periodic) as the workers recorded them "
                        "in data/queue.schedules.tsv: definition, catch-up, status, last fired "
                        "slot and next slot, in each schedule's time zone. With --handlers, "
                        "also those declared in code that no worker has seen yet.")
    schedules.add_argument("--handlers", metavar="MODULE:NAME",
                           help="the module's schedules too, as work --handlers takes it, "
                                "e.g. app.jobs:queue")
    json_option(schedules)
    schedules.set_defaults(needs=PERIODIC)

    dashboard = command("dashboard", "a web page of the queue: counts, jobs, failures, actions",
                        "Serve the dashboard: counts, a 24-hour chart, jobs, failures, and "
                        "actions (retry, cancel, run now, purge) unless --read-only.")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="default 127.0.0.1; any other address needs credentials")
    dashboard.add_argument("--port", type=port, default=8321, help="default 8321; 0: any free one")
    dashboard.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=[],
                           type=allowed_host, metavar="NAME",
                           help="a Host name it answers to besides localhost, 127.0.0.1, [::1] "
                                "and --host (repeatable; .example.com: the domain and its "
                                "subdomains)")
    dashboard.add_argument("--read-only", action="store_true", help="hide and refuse actions")
    dashboard.add_argument("--credentials-file", metavar="FILE",
                           help="its first line user:password, for HTTP basic auth (default: "
                                "$DBBASIC_QUEUE_DASHBOARD_CREDENTIALS)")
    return grammar
