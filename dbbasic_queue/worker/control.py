"""What a worker run's running jobs report and are told: their progress, and requests to stop.

A handler calls ``current_job().progress(0.4, note="12 of 30")`` as often as it likes: the
latest value is kept here, and the keeper thread writes the run's progress file
(storage/notes.py) at most every PROGRESS_SECONDS, so it is visible within about a second
without a rewrite of the queue file. ``Queue.stop(id)`` appends a request to the run's stops
file; the keeper reads it within a tick and the handler sees ``current_job().stop_requested``
(a cooperative handler stops there). One still running ``stop_grace`` seconds later is
interrupted with JobStopped at its next Python instruction, as a time limit interrupts one
in a thread (a handler blocked in one C call is interrupted when that call returns). Either
way the job ends ``cancelled``, its error naming who asked (``transitions.stopped``).

The interruption lands only inside the handler's call: it is raised, once, under ``lock``
(a plain Lock: see timelimit.Watchdog), only while ``running`` holds the job, and the call
leaves ``running`` under the same lock, clearing one raised too late to land before it.
``stoppable`` wraps the handler alone, inside the time limit's machinery, so neither
interruption can land in the other's, and a time limit's verdict stays exact.
"""

import logging
import math
import threading
from typing import Callable, Dict, Optional, Set, Tuple

from ..storage.notes import Progress, checked_progress
from .timelimit import JobTimeout, interrupt

logger = logging.getLogger("dbbasic_queue")

PROGRESS_SECONDS = 0.5  # a handler's progress reaches its file within about this long


class JobStopped(BaseException):
    """Raised inside a handler that was asked to stop and did not within the grace period.
    A BaseException, so that a handler's own ``except Exception`` does not swallow it."""


class JobControl:
    """The run's side of progress and stop requests. ``storage`` is the run's RunStorage,
    ``monotonic`` its clock for the grace period."""

    def __init__(self, storage, monotonic: Callable[[], float], clock: Callable[[], float],
                 grace: float) -> None:
        self.storage, self.monotonic, self.clock, self.grace = storage, monotonic, clock, grace
        self.lock = threading.Lock()  # guards running and interrupted: see the docstring
        self.running: Dict[str, Tuple[int, int]] = {}  # job id -> (thread ident, attempt)
        self.interrupted: Set[str] = set()
        self.requests: Dict[str, Tuple[int, str]] = {}  # job id -> (attempt, by), read
        self.asked: Dict[str, Tuple[str, float]] = {}  # running job id -> (by, seen at)
        self.progress: Dict[str, Progress] = {}
        self.unwritten = False
        self.written_at = -math.inf
        self.offset = 0  # read so far of the run's stops file
        self.unreadable = False  # that file could not be read (logged once)

    def stoppable(self, job_id: str, attempt: int, handler: Callable[[dict], object]):
        """``handler`` as attempt ``attempt`` of job ``job_id`` runs it: a stop request may
        interrupt it, and only it (see the module docstring). A job asked to stop before it
        started never calls the handler."""
        def call(payload):
            with self.lock:
                self.running[job_id] = (threading.get_ident(), attempt)
                request = self.requests.pop(job_id, None)
                if request is not None and request[0] == attempt:  # asked before it started
                    self.asked[job_id] = (request[1], self.monotonic())
            if job_id in self.asked:
                self._leave(job_id)
                raise JobStopped(f"stopped by {self.asked[job_id][0]} before it started")
            returned: list = []
            try:
                try:
                    returned.extend(map(handler, (payload,)))  # stored by C: see timelimit.py
                finally:
                    self._leave(job_id)
            except JobStopped:
                self._leave(job_id)  # landed inside the first leave: nothing is pending now
                raise
            except JobTimeout:
                if not returned:
                    raise  # the handler's own: it was interrupted
                # else it landed here, after the handler returned: the handler's verdict holds
            return returned[0]
        return call

    def _leave(self, job_id: str) -> None:
        with self.lock:
            entry = self.running.pop(job_id, None)
            if entry is not None and job_id in self.interrupted:
                interrupt(entry[0], None)  # one raised too late to land in the handler

    def stopped_by(self, job_id: str) -> Optional[str]:
        """Who asked the job to stop, if anyone has (while it runs, or as it ends)."""
        asked = self.asked.get(job_id)
        return None if asked is None else asked[0]

    def report(self, job_id: str, done, note: str = "") -> None:
        """A handler's progress: ``done`` from 0 to 1, and a note (a report after the
        handler returned is checked, and dropped)."""
        progress = checked_progress(done, note, self.clock())
        if job_id in self.running:
            self.progress[job_id] = progress
            self.unwritten = True

    def forget(self, job_id: str) -> None:
        """The job has ended here: its progress and stop request go."""
        with self.lock:
            self.asked.pop(job_id, None)
            self.interrupted.discard(job_id)
        if self.progress.pop(job_id, None) is not None:
            self.unwritten = True

    def tick(self) -> None:
        """From the keeper thread: read new stop requests, interrupt handlers past their
        grace, write the progress reported since the last write."""
        now = self.monotonic()
        requests = []
        try:
            if self.storage.stops_waiting(self.offset):
                requests, self.offset = self.storage.stop_requests(self.offset)
        except Exception as error:  # planted, unreadable: no stop requests, the rest goes on
            if not self.unreadable:
                self.unreadable = True
                logger.warning("cannot read the requests to stop this run's jobs (%s)", error)
        if requests:
            with self.lock:
                for request in requests:
                    entry = self.running.get(request.job_id)
                    if entry is None:  # not started yet (or over): kept for its start
                        self.requests[request.job_id] = (request.attempt, request.by)
                    elif entry[1] == request.attempt and request.job_id not in self.asked:
                        self.asked[request.job_id] = (request.by, now)
                        logger.info("job %s: asked to stop by %s", request.job_id, request.by)
        if self.asked:
            with self.lock:
                for job_id, (by, seen) in list(self.asked.items()):
                    entry = self.running.get(job_id)
                    if entry is not None and job_id not in self.interrupted and now - seen >= self.grace:
                        self.interrupted.add(job_id)
                        logger.warning("job %s: still running %g s after %s asked it to stop; "
                                       "interrupting it", job_id, self.grace, by)
                        interrupt(entry[0], JobStopped(f"stopped by {by}"))
        if self.unwritten and now - self.written_at >= PROGRESS_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the progress file now (the keeper's tick, and the run's end)."""
        self.unwritten, self.written_at = False, self.monotonic()
        try:
            self.storage.write_progress(dict(self.progress))
        except Exception:  # a full disk: the jobs run all the same
            logger.warning("could not write the progress of this run's jobs", exc_info=True)
