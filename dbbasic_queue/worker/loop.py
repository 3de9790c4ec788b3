"""The long-running worker (``work``): runs of WorkerRun, an idle watch between them, and
graceful stops on SIGTERM and SIGINT."""

import contextlib
import logging
import os
import signal
import threading

from .run import WorkerRun
from .settings import Bounds, WorkerOptions

logger = logging.getLogger("dbbasic_queue")

IDLE_CHECK_SECONDS = 0.05  # how often an idle loop worker looks at the file's size and mtime
IDLE_RESCAN_SECONDS = 60.0  # and reads it anyway, at least this often


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGTERM and SIGINT set ``stop``; a second one ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_signal(signum, frame):
        if stop.is_set():
            logger.warning("second %s: exiting now; the job in hand is left to its lease",
                           signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s: finishing the job in hand, then exiting", signal.Signals(signum).name)
        stop.set()
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def work_loop(queue, options: WorkerOptions, bounds: Bounds, stop: threading.Event) -> int:
    """Runs of WorkerRun until stopped; between them, watch the file (a stat every 50 ms)
    and wake for the next scheduled job or periodic slot. Returns how many jobs ran."""
    ran = 0
    while not stop.is_set() and not bounds.reached(ran):
        # Taken before the run reads the file: a job added after the run's last look (or by
        # the run itself) changes it, so the watch below wakes for it.
        seen = queue.table.signature()
        run = WorkerRun(queue, options, bounds.less(ran), stop)
        ran += run.run()
        if run.ran or stop.is_set():
            continue
        rescan_at = queue.monotonic() + IDLE_RESCAN_SECONDS
        while not stop.wait(IDLE_CHECK_SECONDS) and not bounds.reached(ran):
            now = queue.clock()
            if (queue.table.signature() != seen or queue.monotonic() >= rescan_at or
                    (run.next_due is not None and now >= run.next_due) or
                    (run.next_slot is not None and now >= run.next_slot)):
                break
    return ran
