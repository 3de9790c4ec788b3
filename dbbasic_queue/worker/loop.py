"""The long-running worker (``work``): runs of WorkerRun, an idle watch between them, and
graceful stops on SIGTERM and SIGINT; and the same stop on SIGTERM for a single run
(``process_jobs``), which is what ``timeout``, ``systemctl stop`` and ``docker stop`` send."""

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator, Tuple

from ..storage.workers import HEARTBEAT_SECONDS, WorkerRecord
from .run import WorkerRun
from .settings import Bounds, WorkerOptions

logger = logging.getLogger("dbbasic_queue")

IDLE_CHECK_SECONDS = 0.05  # how often an idle loop worker looks at the file's size and mtime
IDLE_RESCAN_SECONDS = 60.0  # and reads it anyway, at least this often


class StopOnSignal:
    """A signal handler that sets ``stop``: the worker finishes the job in hand, puts the
    jobs it claimed but never started back, and returns. A second signal ends the process
    at once, leaving the job in hand to its lease."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = False

    def __call__(self, signum, frame) -> None:
        if self.stop.is_set():
            logger.warning("second %s: exiting now; the job in hand is left to its lease",
                           signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s: finishing the job in hand, then exiting", signal.Signals(signum).name)
        self.received = True
        self.stop.set()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event,
                    signums: Tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
    """``signums`` (SIGTERM and SIGINT) set ``stop``; a second one ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    handler = StopOnSignal(stop)
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, replaced in previous.items():
            signal.signal(signum, replaced)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """The stop event for one run (``process_jobs``). In the main thread, while SIGTERM has
    its default action, the run stops on it as the loop does, and the signal is delivered
    again, with the default action, once the jobs are put back: the process still ends by
    SIGTERM, as it would have, only later. Inside ``stop_on_signals`` (the command line's
    cron run) it is that stop, and the signal is not delivered again. With any other
    handler, the app's own, SIGTERM is left to it."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, StopOnSignal):
        yield current.stop
        return
    if current is not signal.SIG_DFL:
        yield stop
        return
    handler = StopOnSignal(stop)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if handler.received:
        signal.raise_signal(signal.SIGTERM)


def work_loop(queue, options: WorkerOptions, bounds: Bounds, stop: threading.Event) -> int:
    """Runs of WorkerRun until stopped; between them, watch the file (a stat every 50 ms)
    and wake for the next scheduled job or periodic slot. Returns how many jobs ran."""
    ran = 0
    record = WorkerRecord("loop", options.serves, options.concurrency, queue.clock())
    while not stop.is_set() and not bounds.reached(ran):
        # Taken before the run reads the file: a job added after the run's last look (or by
        # the run itself) changes it, so the watch below wakes for it.
        seen = (queue.table.signature(), queue.pauses.signature())  # a resume wakes it too
        run = WorkerRun(queue, options, bounds.less(ran), stop, record)
        ran += run.run()
        if run.ran or stop.is_set():
            continue
        rescan_at = queue.monotonic() + IDLE_RESCAN_SECONDS
        while not stop.wait(IDLE_CHECK_SECONDS) and not bounds.reached(ran):
            if queue.monotonic() - run.last_report >= HEARTBEAT_SECONDS:
                run.report()  # an idle loop worker's heartbeat
            now = queue.clock()
            if ((queue.table.signature(), queue.pauses.signature()) != seen or
                    queue.monotonic() >= rescan_at or
                    (run.next_due is not None and now >= run.next_due) or
                    (run.next_slot is not None and now >= run.next_slot)):
                break
    return ran
