"""Stopping a running job on Redis, as on the file: asked first, interrupted after a grace.

``RQQueue.stop(id)`` sets one Redis string per job asked, ``<queue name>/stop/<id>``: JSON of
the attempt it is for and who asked, kept a day. The worker's keeper thread reads it for
the job it runs, every TICK_SECONDS, through the file worker's own ``JobControl``
(worker/control.py), to which ``RedisStops`` is the storage: so the handler sees
``current_job().stop_requested``, one still running ``stop_grace`` seconds later is
interrupted with JobStopped inside its own call only, and the job ends ``cancelled``, its error
``Stopped by <who>``. RQ's own stop command (``send_stop_job_command``) is taken as the same
request: RQ's in-process worker would otherwise kill its own process group for it. While a
job runs, the keeper also renews ``<queue name>/alive/<id>`` (the attempt it runs): a request
is recorded only for a job a live worker runs, and names that attempt; the job's end and
``retry`` clear it, so a request that came too late stops no later run.
"""

import json
import logging
import threading
import time
from typing import Callable, Iterable, List, Mapping, Optional, Tuple

from ..storage.notes import StopRequest

logger = logging.getLogger("dbbasic_queue")

KEPT_SECONDS = 86400  # a request for a job that never reads it goes after a day
TICK_SECONDS = 0.2  # how often the keeper looks for requests, as the file worker's does
# A running job's "alive" string (``<queue name>/alive/<id>``) is renewed by its worker's
# keeper every BEAT_SECONDS and lasts ALIVE_SECONDS: once it is gone, the worker has died.
BEAT_SECONDS = 1.0
ALIVE_SECONDS = 10


class RedisStops:
    """The stop requests of one RQQueue, in its Redis; the storage of a JobControl (its
    progress stays in the job's meta: see worker.MetaProgress)."""

    def __init__(self, redis, base: str) -> None:
        self.redis, self.prefix, self.alive_prefix = redis, f"{base}/stop/", f"{base}/alive/"
        self.running: Callable[[], Iterable[str]] = tuple  # the ids the worker runs now

    def key(self, job_id: str) -> str:
        """The Redis string of the request to stop ``job_id``."""
        return self.prefix + job_id

    def beat(self, attempts: Mapping[str, int]) -> None:
        """Say that this worker still runs these jobs, at these attempts (for ALIVE_SECONDS)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id, attempt in attempts.items():
                pipe.set(self.alive_prefix + job_id, str(attempt), ex=ALIVE_SECONDS)
            pipe.execute()

    def gone(self, job_id: str) -> None:
        """The job has left this worker's hands: no longer alive."""
        self.redis.delete(self.alive_prefix + job_id)

    def alive(self, job_id: str) -> Optional[int]:
        """The attempt of ``job_id`` a live worker of ours says it runs, or None."""
        raw = self.redis.get(self.alive_prefix + job_id)
        try:
            return int(raw) if raw is not None else None
        except ValueError:  # written by other hands
            return None

    def ask(self, job_id: str, attempt: int, by: str) -> None:
        """Record a request to stop attempt ``attempt`` of job ``job_id``."""
        self.redis.set(self.prefix + job_id, json.dumps({"attempt": attempt, "by": by}),
                       ex=KEPT_SECONDS)

    def asked(self, job_id: str) -> Optional[Tuple[int, str]]:
        """(attempt, by) of the request to stop ``job_id``, or None; a value written by
        other hands that is not ours reads as none."""
        raw = self.redis.get(self.prefix + job_id)
        try:
            found = json.loads(raw) if raw is not None else None
            attempt, by = found["attempt"], found["by"]
        except (ValueError, TypeError, KeyError):
            return None
        if type(attempt) is not int or not isinstance(by, str):
            return None
        return attempt, by

    def forget(self, job_id: str) -> None:
        """Drop the request to stop ``job_id``: its attempt has ended."""
        self.redis.delete(self.prefix + job_id)

    # --- what JobControl asks of its storage ----------------------------------------------

    def stops_waiting(self, offset: int) -> bool:
        return True

    def stop_requests(self, offset: int) -> Tuple[List[StopRequest], int]:
        found = []
        for job_id in list(self.running()):
            asked = self.asked(job_id)
            if asked is not None:
                found.append(StopRequest(job_id, asked[0], asked[1], time.time()))
        return found, offset

    def write_progress(self, progress) -> None:
        """Nothing: on Redis a handler's progress is saved in its job's meta."""


class Keeper:
    """The thread that ticks a JobControl while the worker runs, and every BEAT_SECONDS
    says which jobs it still runs (``stops.beat``), so that ``stop`` knows a dead worker's."""

    def __init__(self, control, stops: Optional[RedisStops] = None) -> None:
        self.control, self.stops, self.done = control, stops, threading.Event()
        self.thread = threading.Thread(target=self.run, name="dbbasic-queue-stops", daemon=True)

    def run(self) -> None:
        beaten = time.monotonic()
        while not self.done.wait(TICK_SECONDS):
            try:
                self.control.tick()
                if self.stops is not None and time.monotonic() - beaten >= BEAT_SECONDS:
                    beaten = time.monotonic()
                    self.stops.beat({job_id: entry[1] for job_id, entry in
                                     list(self.control.running.items())})
            except Exception:  # Redis out of reach a moment: the jobs run all the same
                logger.debug("could not read the stop requests", exc_info=True)

    def __enter__(self) -> "Keeper":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join()
