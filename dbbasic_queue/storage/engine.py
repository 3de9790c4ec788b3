"""The TSV engine's verbs for one worker run: what a run asks of the queue's files.

A worker run (``worker/run.py``) runs handlers and keeps the jobs it holds; everything it
asks of the files goes through one ``RunStorage``:

- ``open()``: clear what dead runs left (temporary files, run locks, slots, rate files,
  files past retention) and take the run's liveness lock;
- ``exchange(held, finished, unstarted, claim)``: in one atomic rewrite of the queue file,
  settle the finished jobs (their final lines), renew the leases of the held ones, release
  the ``unstarted`` ones (back as they were) and fetch up to ``claim`` due jobs, in the
  order they should run. This is the engine's one write of a run: settling, renewing,
  releasing and fetching share it, so a batch costs one rewrite, not four;
- ``started(job_id)``: record that a handler starts, so a death from here on counts the
  attempt (see liveness.py);
- ``release_slots(ids)``: the concurrency slots of jobs whose handlers are done;
- ``report(record, in_hand, minutes)``: the worker's registry line and its jobs finished
  per minute (workers.py, throughput.py);
- ``write_progress(entries)``, ``stop_requests(offset)``: its running jobs' progress, and
  the requests to stop them (notes.py);
- ``close()``: give back every slot and the liveness lock.

Which lines a rewrite claims is decided in ``claim.py`` (the editor), and, where ranks
differ, chosen before it (``choosing.py``); this module holds what a run carries from one
rewrite to the next: where the next one may resume (the bookmark), what it remembers of its
last look, the final lines it wrote last (to move them to the archive without a parse), and
what it has logged already.
"""

import logging
import os
import stat
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Set

from ..model.job import PENDING_WORD, peek_status_and_run_at
from ..model.words import plural
from .choosing import look, take_remembered
from .claim import ClaimEditor, ClaimOutcome, Held
from .liveness import RunLock, WorkerLocks, new_token
from .notes import RunNotes
from .rates import Rates
from .slots import Slot, Slots
from .throughput import Throughput
from .workers import WorkerRecord, Workers

logger = logging.getLogger("dbbasic_queue")

STALE_TEMPORARY_SECONDS = 3600


class Exchange(NamedTuple):
    """What one ``RunStorage.exchange`` did, for the run to apply to the jobs it holds:
    ``claimed`` (the new jobs, and ``order``, the order to run them in), ``settled`` (final
    state written, put back, or taken by another worker: no longer held), ``renewed`` (held,
    with the lease ``lease_until``), ``adopted`` (held jobs that jobs enqueued since now wait
    for: the run holds these versions from now on)."""

    claimed: Dict[bytes, Held]
    order: List[bytes]
    settled: Set[bytes]
    renewed: Set[bytes]
    lease_until: float
    adopted: Dict[bytes, Held]


class RunStorage:
    """One worker run's side of the TSV engine (see the module docstring). ``queue`` gives
    the files, the clock and randomness; ``options`` the run's settings (a WorkerOptions).
    ``next_due`` is the earliest run_at of a job not due yet that the run may take, as last
    seen by a claim that read every line; ``resumed`` whether the last exchange edited
    only part of the file (so a claim that found nothing there may look again at all)."""

    def __init__(self, queue, options) -> None:
        self.queue, self.options = queue, options
        self.token = new_token()
        self.locks = WorkerLocks(queue.path)
        self.notes = RunNotes(queue.path)
        self.slots = Slots(queue.path)
        self.rates = Rates(queue.path)
        self.liveness: Optional[RunLock] = None  # held while the run serves
        self.slot_of: Dict[bytes, Slot] = {}  # the concurrency slot each held job took
        self.bookmark = None  # where the next rewrite may resume (see table.Bookmark)
        self.resumed = False
        self.next_due: Optional[int] = None
        self.recorded: Set[bytes] = set()  # final lines the last rewrite wrote (see ClaimEditor)
        self.ranked = False  # jobs it may take differ in rank: claims choose first
        self.remembered = None  # of the last look, for the next ranked claim (see choosing.py)
        self.reported: set = set()  # corrupt lines already logged in this run
        self.passed_over: set = set()  # paused queues and types, and missing handlers, logged

    def open(self) -> bool:
        """Clear what dead runs left and take the run's liveness lock; False if the queue's
        directory does not exist (so there is nothing to run)."""
        queue, now = self.queue, self.queue.clock()
        queue.table.remove_stale_temporary_files(older_than=STALE_TEMPORARY_SECONDS, now=now)
        self.locks.remove_dead(now)
        for token in self.notes.tokens():  # the progress and stop requests of runs gone
            if self.locks.owner(token).alive is not True and token != self.token:
                self.notes.remove(token)
        self.slots.remove_stale(now)
        self.rates.remove_stale(now)
        if self.options.retention_seconds is not None:
            drop_before = now - self.options.retention_seconds
            for files in (queue.archive, queue.traceback_files, Throughput(queue.path)):
                try:
                    files.remove_expired(drop_before)
                except Exception:  # a file we may not delete: the jobs run all the same
                    logger.warning("could not delete the expired files beside %s", queue.path,
                                   exc_info=True)
        try:
            self.liveness = self.locks.hold(self.token)
        except FileNotFoundError:
            return False
        return True

    def started(self, job_id: str) -> None:
        self.liveness.started(job_id)

    def forget_started(self) -> None:
        """Every job the run started has its final state on disk (see liveness.py)."""
        self.liveness.forget_started()

    def release_slots(self, job_ids: Iterable[bytes]) -> None:
        for job_id in job_ids:
            slot = self.slot_of.pop(job_id, None)
            if slot is not None:
                slot.release()

    def report(self, record: WorkerRecord, in_hand: int, minutes) -> None:
        """Write the worker's line in the registry (workers.py) and its jobs finished by
        minute (throughput.py); a failure to is logged and changes nothing else. Also
        between runs (a loop worker's heartbeat): it needs no open run."""
        try:
            Workers(self.queue.path).record(record, self.queue.clock(), in_hand)
            Throughput(self.queue.path).add(record.name, minutes)
        except Exception:
            logger.warning("could not write this worker's line or counts beside %s",
                           self.queue.path, exc_info=True)

    def write_progress(self, entries) -> None:
        self.notes.write_progress(self.token, entries)

    def stops_waiting(self, offset: int) -> bool:
        """Whether requests to stop this run's jobs were appended beyond ``offset`` (a cheap
        look, never through a link; stop_requests reads them)."""
        try:
            status = os.lstat(self.notes.stops_path(self.token))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(status.st_mode) and status.st_size > offset

    def stop_requests(self, offset: int):
        return self.notes.stop_requests(self.token, offset)

    def close(self) -> None:
        self.release_slots(list(self.slot_of))
        if self.liveness is not None:
            self.liveness.release()
        if self.bookmark is not None:
            self.bookmark.close()
        self.notes.remove(self.token)

    def exchange(self, held: Dict[bytes, Held], finished: Dict[bytes, bytes],
                 unstarted: Set[bytes], claim: int = 0, full: bool = False,
                 apply: Callable[[Exchange], None] = lambda exchange: None
                 ) -> Optional[Exchange]:
        """Settle ``finished``, renew ``held``, release ``unstarted`` and fetch up to
        ``claim`` due jobs, in one rewrite (see the module docstring); None if nothing was
        written. ``apply`` gets the Exchange as soon as the rewrite is in place, before
        anything else here can be interrupted. Unless ``full``, the rewrite starts at the
        bookmark: jobs before it that have become due since the last look wait for a full
        look (every run ends with one)."""
        queue, options = self.queue, self.options
        now = queue.clock()
        retention = options.retention_seconds
        drop_before = None if retention is None else now - retention
        resume = None if full else self.bookmark
        archive_after = queue.archive_after
        archive_before = None if archive_after is None else now - archive_after
        scope = options.scope.paused(*queue.pauses.current())
        # Held jobs spread over the file by rank: a rewrite that claims nothing sees only
        # the run's own lines (held jobs, and final lines to move).
        remembered, chosen, thorough = self.remembered, None, not self.ranked
        if claim:
            choice = self._choose(claim, held, resume, full, scope, now, archive_before,
                                  drop_before)
            if choice is None:
                return None
            chosen, remembered, thorough = choice
        if chosen is not None:
            resume = None  # they may lie before the bookmark
        picked = set(chosen) if chosen is not None else None if thorough else set()
        edit = queue.table.rewrite(lambda: ClaimEditor(
            held, finished, unstarted, now, now + options.lease_seconds, claim,
            options.max_attempts, drop_before, worker=self.token, owner=self.locks.owner,
            archive_before=archive_before,
            spool=None if archive_after is None else queue.archive.spool(),
            scope=scope, chosen=picked, slots=self.slots, limits=options.limits,
            rates=self.rates, rate_limits=options.rate_limits, recorded=self.recorded,
            thorough=thorough), resume)
        self.resumed = resume is not None or not thorough
        if edit is None:
            return None
        outcome = edit.outcome
        if edit.dependents.told:
            remembered = None  # jobs it released are due, and no look has seen them
        if remembered is not None and (outcome.claimed if claim else self.remembered):
            self.remembered = self._remember(remembered, edit, finished)
        if edit.changed:
            self.recorded = outcome.recorded
        self.ranked = self.ranked or outcome.ranked
        if claim and len(outcome.claimed) < claim and resume is None:
            self.next_due = outcome.next_due  # it looked at every line
        order = list(outcome.claimed)
        if chosen is None and outcome.ranked:  # claimed in file order: run by rank
            order.sort(key=lambda job_id: outcome.ranks.get(job_id, ()))
        elif chosen is not None:  # in the order chosen
            order = [job_id for job_id in chosen if job_id in outcome.claimed] + [
                job_id for job_id in order if job_id not in picked]
        self.slot_of.update(outcome.slots)
        self.release_slots(outcome.settled)
        exchange = Exchange(outcome.claimed, order, outcome.settled, outcome.renewed,
                            edit.lease_until, outcome.adopted)
        apply(exchange)
        if edit.bookmark is not None or edit.changed:
            # After the run knows the jobs claimed (a Ctrl-C from here on lets it put them
            # back), and swapped before the close: a Ctrl-C right after the close must not
            # leave a closed (maybe reused) descriptor for the run's last rewrite to use.
            old, self.bookmark = self.bookmark, edit.bookmark
            if old is not None:
                old.close()
        outcome.dropped, outcome.archived = edit.dropped, edit.archived
        outcome.log(queue.path, edit.changed, retention, self.reported)
        for job_id in edit.dependents.unpaid():
            logger.warning("job %s, told that a job it waits for ended, is not in %s (deleted?)",
                           job_id, queue.path)
        self._log_passed_over(outcome)
        return exchange

    def _choose(self, claim: int, held, resume, full: bool, scope, now: float,
                archive_before: Optional[float], drop_before: Optional[float]):
        """Which jobs a claim of at most ``claim`` takes, decided before its rewrite:
        (chosen, remembered, thorough). ``chosen`` None claims in file order; ``thorough``
        False lets the rewrite show the editor only the run's own lines and the chosen ones
        (see choosing.py). None if a look at the whole file found nothing to claim, mark,
        move or drop (``next_due`` is then set)."""
        table = self.queue.table
        remembered, self.remembered = self.remembered, None  # a claim keeps its own, or none
        ranked = self.ranked or scope.weights
        if (ranked and not full and remembered is not None and remembered.usable(scope, now)
                and table.holds(self.bookmark)):
            chosen = take_remembered(remembered, table, now, claim, self.queue.random)
            if chosen is not None:
                return chosen, remembered, False
        if (held or resume is not None) and not ranked:
            return None, None, True  # the resumed rewrite claims in file order
        seen = look(table.lines(), now, scope, claim, archive_before, drop_before)
        if not seen.worth and not held:
            self.next_due = seen.next_due
            return None
        if seen.remembered is None:
            return None, None, True
        self.ranked = True
        return (seen.remembered.candidates.take(claim, self.queue.random, fresh=True),
                seen.remembered, True)

    def _remember(self, remembered, edit, finished: Dict[bytes, bytes]):
        """What the run remembers for its next ranked claim after its rewrite ``edit``:
        None if the file is no longer one it can vouch for."""
        if edit.changed:
            if edit.bookmark is None:
                return None
            remembered.rewritten(edit.dropped + edit.archived)
        later = [edit.outcome.next_due] + [  # a job put off by a limit, a retry of its own
            peek[1] for peek in map(peek_status_and_run_at, finished.values())
            if peek is not None and peek[0] == PENDING_WORD]
        for run_at in later:
            if run_at is not None and run_at > edit.now:  # jobs due now are candidates already
                remembered.due_at(run_at)
        return remembered

    def _log_passed_over(self, outcome: ClaimOutcome) -> None:
        """Once per run and name: the due jobs it left to others (no handler here) or
        skipped (paused)."""
        for job_type, count in outcome.waiting.items():
            if ("type", job_type) not in self.passed_over:
                self.passed_over.add(("type", job_type))
                logger.info("left %s to another worker: no handler here for %r",
                            plural(count, f"due {job_type} job"), job_type)
        for key, count in outcome.limited.items():
            if ("key", key) not in self.passed_over:
                self.passed_over.add(("key", key))
                logger.debug("left %s: as many jobs of concurrency key %r run as its limit "
                             "allows", plural(count, "due job"), key)
        for key, count in outcome.rated.items():
            if ("rate", key) not in self.passed_over:
                self.passed_over.add(("rate", key))
                logger.info("put off %s: %s started as many jobs as its rate limit allows",
                            plural(count, "due job"), key)
        for what, count in outcome.paused.items():
            if what not in self.passed_over:
                self.passed_over.add(what)
                logger.info("skipping %s: %s is paused", plural(count, "due job"), what)
