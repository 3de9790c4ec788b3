"""The command line's commands that only look: ``stats``, ``list``, ``show`` and ``schedules``.

Text output escapes what a terminal would act on (``display.safe``) and says every time is
UTC; ``--json`` is exact. Where the queue file does not exist yet, stderr says so plainly: a
fresh app has none, and a wrong directory or ``--file`` must not pass for an empty queue.
"""

import contextlib
import heapq
import io
import sys
import time
from pathlib import Path
from typing import Any, Dict

from ..backend import FILE
from .args import NotApplicable, UsageError
from .handlers import load_handlers
from .display import safe, safe_json, shorten, size, utc, when
from ..model.words import age
from ..model.words import plural
from ..model.job import STATUSES

TYPE_WIDTH, ERROR_WIDTH = 20, 60  # list's TYPE and ERROR columns, in characters


def no_file_yet(queue) -> bool:
    """Say on stderr that the queue's file does not exist, if so (not an error)."""
    if FILE not in queue.capabilities or Path(queue.describe()).exists():
        return False
    print(f"dbbasic-queue: {no_file_message(queue)}", file=sys.stderr)
    return True


def no_file_message(queue) -> str:
    return (f"no queue file at {safe(queue.describe())} yet: nothing was ever enqueued "
            f"here, or --file/DBBASIC_QUEUE_FILE points elsewhere")


def existing(queue, job_id: str) -> Dict[str, Any]:
    """The job, or NotApplicable naming the queue."""
    job = queue.get_job(job_id)
    if job is None:
        raise missing(queue, job_id)
    return job


def missing(queue, job_id: str) -> NotApplicable:
    return NotApplicable(f"no job {job_id!r} in {queue.describe()} (ids are 16 hex "
                         f"characters; see dbbasic-queue list)")


WATCH_LEAST, WATCH_MOST = 0.1, 3600.0  # stats --watch's period, in seconds


def stats_command(queue, args) -> int:
    if args.watch is None:
        return print_stats(queue, args)
    if args.json:
        raise UsageError("--watch redraws the text; for JSON, run stats --json repeatedly")
    if not WATCH_LEAST <= args.watch <= WATCH_MOST:
        raise UsageError(f"--watch takes a period from {WATCH_LEAST:g} s to {WATCH_MOST:g} s, "
                         f"not {args.watch:g} s")
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else "\n"  # in place on a terminal
    try:
        while True:
            frame = io.StringIO()
            with contextlib.redirect_stdout(frame):
                print_stats(queue, args)
            sys.stdout.write(f"{clear}dbbasic-queue stats at {utc(time.time())} UTC, every "
                             f"{age(args.watch)} (Ctrl-C to quit)\n\n{frame.getvalue()}")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way out of a live view: not an error
        return 0


def print_stats(queue, args) -> int:
    missing = no_file_yet(queue)
    stats = queue.stats()
    if args.json:
        print(safe_json(stats, indent=2))
        return 0
    on_file = FILE in queue.capabilities
    where = "no such file yet" if missing else (
        (f"{size(stats['size_bytes'])}, " if "size_bytes" in stats else "") +
        plural(stats["jobs"], "job"))
    print(f"{'file' if on_file else 'queue':<9} {safe(queue.describe())} ({where})")
    print("status    " + ", ".join(f"{s} {n}" for s, n in stats["by_status"].items()))
    oldest = stats["oldest_due_seconds"]
    print(f"latency   {'no job waiting' if oldest is None else age(oldest) + ' (oldest due job)'}")
    next_run = stats["next_run_at"]
    print(f"next run  {'none scheduled' if next_run is None else when(next_run)}")
    print(f"failures  {stats['failed_last_hour']} failed in the last hour, "
          f"{stats['retrying']} pending a retry")
    throughput = stats.get("throughput")
    if throughput is not None:
        for number, (span, counts) in enumerate(throughput.items()):
            print(f"{'finished' if number == 0 else '':<10}{span.replace('_', ' '):<12}"
                  f"{counts['completed']} completed, {counts['failed']} failed, "
                  f"{counts['retried']} to run again")
    seen = stats.get("workers")
    if seen is not None:
        print("workers   " + ("none seen yet" if not seen["seen"] else
                               f"{seen['alive']} alive, {seen['late']} late, {seen['gone']} gone; "
                               f"the last seen at {utc(seen['last_seen'])} UTC"))
        if seen["warning"]:
            print(f"warning   {safe(seen['warning'])}")
    queues = stats.get("queues") or {}
    if set(queues) - {"default"}:
        print("queues    " + ", ".join(f"{safe(name)} {counts['pending']} pending, "
                                       f"{counts['processing']} processing"
                                       for name, counts in queues.items()))
    for entry in stats.get("paused") or []:
        print(f"paused    {entry['kind']} {safe(entry['name'])} since {when(entry['paused_at'])}")
    waiting = stats.get("waiting_for_handler") or {}
    if waiting:
        print("waiting for a handler: " + ", ".join(
            f"{counts['jobs']} {safe(job_type)}, oldest {age(counts['oldest_seconds'])}"
            for job_type, counts in waiting.items()))
    if stats["corrupt_lines"]:
        what = ("corrupt line", "corrupt lines") if on_file else (
            "job that is not a dbbasic-queue job", "jobs that are not dbbasic-queue jobs")
        print(f"corrupt   {plural(stats['corrupt_lines'], *what)} (left as they are; see the "
              f"worker's log)")
    if stats["by_type"]:
        print("\nTYPE                      " + " ".join(f"{s:>10}" for s in STATUSES))
        for job_type, counts in stats["by_type"].items():
            print(f"{safe(shorten(job_type, 25)):<26}" + " ".join(f"{counts[s]:>10}" for s in STATUSES))
    return 0


def workers_command(queue, args) -> int:
    workers = queue.workers()
    if args.json:
        print(safe_json(workers, indent=2))
        return 0
    if not workers:
        print("no worker seen yet: a worker run (cron's process_jobs, or work --loop) "
              "writes its line when it ends")
        return 0
    now = time.time()
    print(f"{'WORKER':<34} {'KIND':<5} {'STATE':<6} {'LAST SEEN':>10} {'EVERY':>7} "
          f"{'IN HAND':>7} {'DONE':>8} {'FAILED':>7} {'RETRIED':>8}  SERVES")
    for worker in workers:
        print(f"{safe(shorten(worker['worker'], 34)):<34} {safe(worker['kind']):<5} "
              f"{worker['state']:<6} {age(max(now - worker['last_seen'], 0)) + ' ago':>10} "
              f"{age(worker['interval']) if worker['interval'] else '-':>7} "
              f"{worker['in_hand']:>7} {worker['completed']:>8} {worker['failed']:>7} "
              f"{worker['retried']:>8}  {safe(shorten(worker['serves'], 60))}")
    return 0


def metrics_command(queue, args) -> int:
    from ..metrics import prometheus_text
    sys.stdout.write(prometheus_text(queue))
    return 0


def list_command(queue, args) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {args.limit}")
    no_file_yet(queue)
    total = 0

    def chosen():
        nonlocal total
        for job in queue.jobs():
            if args.status in (None, job["status"]) and args.type in (None, job["type"]):
                total += 1
                yield job
    numbered = ((job["created_at"], number, job) for number, job in enumerate(chosen()))
    jobs = [job for _, _, job in heapq.nlargest(args.limit, numbered, key=lambda t: t[:2])]
    cut = (f"{len(jobs)} of {total} jobs, newest first; --limit {total} shows them all"
           if total > len(jobs) else "")
    if args.json:
        print(safe_json(jobs, indent=2))
        if cut:
            print(f"dbbasic-queue: {cut}", file=sys.stderr)
        return 0
    print(f"{'ID':<16}  {'TYPE':<{TYPE_WIDTH}} {'STATUS':<10} {'TRIES':>5}  "
          f"{'CREATED (UTC)':<19}  {'RUN AT (UTC)':<19}  ERROR")
    for job in jobs:
        print(f"{safe(job['id']):<16}  {safe(shorten(job['type'], TYPE_WIDTH)):<{TYPE_WIDTH}} "
              f"{job['status']:<10} {job['attempts']:>5}  {utc(job['created_at'])}  "
              f"{utc(job['run_at'])}  {safe(shorten(job['error'] or '', ERROR_WIDTH))}")
    if cut:
        print(cut)
    elif not jobs:
        print("no jobs" + (" match" if args.status or args.type else ""))
    return 0


def show_command(queue, args) -> int:
    job = queue.job_info(args.id)  # one look at the files: the job and what else is known
    if job is None:
        raise missing(queue, args.id)
    options = job.pop("options")
    tracebacks = queue.tracebacks(args.id)
    if args.json:
        print(safe_json(dict(job, options=options, tracebacks=tracebacks), indent=2))
        return 0
    for key in ("id", "type", "status"):
        print(f"{key:<11} {safe(job[key])}")
    if job["waiting"] is not None:  # the jobs it depends on, or its batch's progress
        print(f"{'waiting':<11} {safe(job['waiting'])}")
    progress = job["progress"]
    if progress is not None:
        note = f", {progress['note']}" if progress["note"] else ""
        print(f"{'progress':<11} {progress['done']:.0%}{safe(note)} "
              f"({age(max(0.0, time.time() - progress['at']))} ago)")
    if job["stop_requested"] is not None:
        print(f"{'stop':<11} asked by {safe(job['stop_requested'])}")
    most = options.get("max_attempts")
    print(f"{'attempts':<11} {job['attempts']}" + (f" of {most}" if most else ""))
    for key in ("created_at", "run_at"):
        print(f"{key:<11} {job[key]} ({utc(job[key])} UTC)")
    print(f"{'options':<11} " + (", ".join(f"{key} {safe(value)}" for key, value in options.items())
                                 or "-"))
    print(f"{'error':<11} {safe(job['error']) if job['error'] is not None else '-'}")
    for key in ("payload", "result"):
        pretty = safe_json(job[key], indent=2).replace("\n", "\n" + " " * 12)
        print(f"{key:<11} {pretty}")
    print(f"{'tracebacks':<11} {'-' if not tracebacks else ''}".rstrip())
    for kept in tracebacks:
        print(f"  attempt {kept.get('attempt')}, failed {utc(kept.get('failed_at', 0))} UTC: "
              f"{safe(kept.get('error', ''))}")
        text = safe(str(kept.get("traceback", "")).rstrip("\n"), keep="\n")
        print("    " + text.replace("\n", "\n    "))
    return 0


def schedules_command(queue, args) -> int:
    from ..periodic.cron import zone  # imported here: only this command needs them
    from ..periodic.firing import listing
    from ..model.options import schedules_of
    from ..periodic.schedules import describe_slot
    declared = None if args.handlers is None else schedules_of(load_handlers(args.handlers))
    if declared == {}:
        raise UsageError(f"--handlers: {args.handlers} declares no schedule (@queue.periodic)")
    rows = listing(queue, declared)
    if args.json:
        print(safe_json(rows, indent=2))
        return 0
    if not rows:
        print(f"no schedules in {safe(queue.describe())} yet (a worker records them when it "
              f"first runs with them; --handlers shows those declared in code)")
    for row in rows:
        tz = zone(row["timezone"])  # one this machine has: listing() parsed the schedule
        print(f"{safe(row['schedule'])}\n  when       {safe(row['when'])} (catch_up "
              f"{row['catch_up']}), {row['status']}\n  last slot  "
              f"{describe_slot(row['last_slot'], tz)}"
              f"{'' if row['last_job'] is None else ' (job ' + row['last_job'] + ')'}\n"
              f"  next slot  {describe_slot(row['next_slot'], tz)}")
    return 0
