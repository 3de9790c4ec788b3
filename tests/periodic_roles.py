"""Workers with schedules that the periodic tests start: ``python periodic_roles.py ROLE QUEUE
RUNS_LOG --clock SPEC [--until T] [--start-line DIR]``.

cron                  process_jobs again and again, as overlapping cron runs do, until the
                      queue's clock passes T
loop                  Queue.work (what ``dbbasic-queue work --loop`` runs) until the clock passes T
die-after-recording   one run, SIGKILLed once its firing has written the state file and
                      before the jobs are appended
die-before-clearing   one run, SIGKILLed once the jobs are appended and before the state file's
                      ``firing`` is cleared
die-mid-append        one run, SIGKILLed halfway through writing its periodic jobs' lines (a
                      line cut short, as a power cut can leave it)
size-limit            one run with RLIMIT_FSIZE (SIGXFSZ ignored) letting the queue file grow
                      by --grow bytes only: a write past them fails, as on a full disk

The queue's clock: ``--clock T`` stands still at T; ``--clock T,R,S`` reads T + (time.time() - R)
* S, the same in every process, so a simulated day passes in seconds. Every handler call appends
``schedule:slot`` to RUNS_LOG. With ``--start-line DIR``, ``--clock T,go,S`` counts from the
moment the test opened the start line. The schedules are those of ``declare`` below.
"""

import argparse
import os
import resource
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbbasic_queue import Queue  # noqa: E402
from dbbasic_queue.periodic import firing  # noqa: E402
from support import append_line, wait_at_start_line  # noqa: E402

LEASE_SECONDS = 30 * 86400  # simulated seconds: longer than the simulated day


def declare(queue: Queue, runs_log: str) -> None:
    """The schedules of these workers: one of each kind the simulated day checks."""
    def record(payload):
        append_line(runs_log, f"{payload['schedule']}:{payload['slot']}")

    queue.periodic(every=timedelta(minutes=10), catch_up="all", job_type="tick")(record)
    queue.periodic("*/15 * * * *", timezone="Europe/Berlin", catch_up="all",
                   job_type="quarter")(record)
    queue.periodic("30 2 * * *", timezone="Europe/Berlin", job_type="nightly")(record)


def clock_from(spec: str, start_line):
    parts = spec.split(",")
    if len(parts) == 1:
        return lambda: float(parts[0])
    start, origin, speed = parts
    if origin == "go":
        origin = os.stat(os.path.join(start_line, "go")).st_mtime
    start, origin, speed = float(start), float(origin), float(speed)
    return lambda: start + (time.time() - origin) * speed


def kill_myself(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def cut_periodic_writes_in_half() -> None:
    """os.write, for the lines of periodic jobs (their payload names a slot): write half of
    them, then die without a word."""
    write = os.write

    def half_then_die(fd, data):
        if b'"slot"' in bytes(data):
            write(fd, bytes(data)[:len(data) // 2])
            kill_myself()
        return write(fd, data)
    os.write = half_then_die


def limit_file_size(queue_path: str, grow: int) -> None:
    """No file of this process may grow past the queue file's size plus ``grow`` bytes."""
    limit = os.stat(queue_path).st_size + grow
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["cron", "loop", "die-after-recording",
                                         "die-before-clearing", "die-mid-append", "size-limit"])
    parser.add_argument("queue")
    parser.add_argument("runs_log")
    parser.add_argument("--clock", required=True)
    parser.add_argument("--until", type=float, default=0.0)
    parser.add_argument("--start-line")
    parser.add_argument("--grow", type=int, default=0)
    args = parser.parse_args()
    if args.start_line:
        wait_at_start_line(args.start_line)
    queue = Queue(args.queue, clock=clock_from(args.clock, args.start_line))
    declare(queue, args.runs_log)
    if args.role == "die-after-recording":
        write_state = firing.write_state

        def write_then_die(path, entries, *model, **kept):
            write_state(path, entries, *model, **kept)
            if any(entry.firing for entry in entries.values()):
                kill_myself()
        firing.write_state = write_then_die
    elif args.role == "die-before-clearing":
        firing.Firing._settle = kill_myself
    elif args.role == "die-mid-append":
        cut_periodic_writes_in_half()
    elif args.role == "size-limit":
        limit_file_size(args.queue, args.grow)
    if args.role == "loop":
        stop = threading.Event()

        def watch():
            while queue.clock() < args.until:
                time.sleep(0.01)  # polling the simulated clock, not waiting for anything
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
        queue.work(queue.handlers, lease_seconds=LEASE_SECONDS, stop=stop)
        return
    while True:
        queue.process_jobs(queue.handlers, lease_seconds=LEASE_SECONDS)
        if queue.clock() >= args.until:
            break
        time.sleep(0.01)  # the next cron run


if __name__ == "__main__":
    main()
