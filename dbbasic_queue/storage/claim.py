"""The claim logic: the editors that decide each line of a rewrite of the queue file.

``ClaimEditor`` is the worker's: in one rewrite it writes finished jobs, renews the leases of
held jobs, puts back jobs that never started, and claims due ones. A line is claimed when the
worker may take it (a handler for its type, its queue served and not paused: ``Scope``) and
it is ``pending`` and due, or ``processing`` and its worker gone: surely dead (see
liveness.py), at once; or, when that cannot be known, once its lease (``run_at``) has run
out. A dead worker's job that it had never started goes back to the attempts it had before
that claim. A due job no handler of this worker can run is left pending, attempts untouched,
its error saying what it waits for (``waiting_message``).

Which due jobs a claim takes when it cannot take them all follows ``Scope.rank`` (queue
order, priority, due time, file order): when the worker has seen that ranks differ, they
are chosen before the rewrite (see choosing.py); otherwise the editor claims in file order,
the enqueue order. A claim from what the run remembers (``thorough`` False) edits only the
lines it must: its held jobs, the chosen ones, and the final lines it wrote last. The
admin verbs' editor (cancel, retry, purge) is ``edits.EachJob``.
"""

import logging
import math
import re
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..model import transitions
from .archive import RetiringEditor
from .choosing import peek_choice
from .dependents import Dependents
from ..model.dependencies import THEN, is_waiting, linked, peek_waiting, then_of
from ..model.words import duration_text, plural
from ..errors import CorruptLineError
from ..model.job import (CLAIMABLE_WORDS, FAILED, PENDING, PENDING_WORD, PROCESSING,
                         PROCESSING_WORD, RETAINED_WORDS, STATUS_OF_WORD, Job, line_id,
                         parse_line, peek_status_and_run_at, same_job)
from ..model.options import WORKER_KEY, decode_options, with_worker, without_worker
from ..model.queues import (Scope, concurrency_of, queue_and_priority, rate_of,
                            waiting_message)
from .liveness import UNKNOWN, Owner, is_token

logger = logging.getLogger("dbbasic_queue")
# The worker's token in a line's options field as with_worker writes it (quotes doubled by
# the file's quoting): a cheap first look, confirmed by parse_line before a job is taken.
_TOKEN_IN_OPTIONS = re.compile(rb'""worker""\s*:\s*""([0-9a-f]{16})""')


class Held:
    """A job a worker has claimed and whose final state is not on disk yet: ``original`` as
    it was before the claim (to put back if it never starts), its ``max_attempts`` (the
    job's own, or the worker's), ``claimed_options`` (the options field while held: the
    job's own and the worker's token). ``linked_later``: jobs enqueued with
    ``depends_on`` it since it was claimed were added to its ``then`` (see dependents.py)."""

    __slots__ = ("original", "claimed_at", "lease_until", "max_attempts", "timeout",
                 "claimed_options", "queue", "priority", "written", "linked_later")

    def __init__(self, original: Job, claimed_at: float, lease_until: float,
                 max_attempts: int, timeout: Optional[float], claimed_options: str,
                 queue: str, priority: int, linked_later: bool = False) -> None:
        self.original, self.claimed_at, self.lease_until = original, claimed_at, lease_until
        self.max_attempts, self.timeout = max_attempts, timeout
        self.claimed_options, self.queue, self.priority = claimed_options, queue, priority
        self.linked_later = linked_later
        # The line for this lease, made once: compared at every rewrite while held.
        self.written = transitions.claim(original, lease_until, claimed_options).to_line()

    def __repr__(self) -> str:
        return f"Held({self.original.id}, attempt {self.attempt}, lease until {self.lease_until})"

    @property
    def attempt(self) -> int:
        return self.original.attempts + 1

    def line(self) -> bytes:
        """The line this worker last wrote for the job: if the file holds another, another
        worker has taken the job since (this worker's lease ran out)."""
        return self.written

    def renewed(self, lease_until: float) -> "Held":
        return Held(self.original, self.claimed_at, lease_until, self.max_attempts, self.timeout,
                    self.claimed_options, self.queue, self.priority, self.linked_later)

    def adopting(self, line: bytes) -> Optional["Held"]:
        """This job held with the ``then`` of ``line``, if ``line`` is this worker's line
        for it but for jobs added to its ``then`` since (an enqueue with ``depends_on``);
        None if ``line`` is another's (the job was lost)."""
        try:
            theirs, mine = parse_line(line), parse_line(self.written)
            their_options, my_options = (dict(decode_options(job.options)) for job in (theirs, mine))
        except (CorruptLineError, ValueError):
            return None
        then = their_options.pop(THEN, None)
        my_options.pop(THEN, None)
        if not then or their_options != my_options or theirs.evolve(options="") != mine.evolve(
                options=""):
            return None
        return Held(self.original.evolve(options=linked(self.original.options, then=then)),
                    self.claimed_at, self.lease_until, self.max_attempts, self.timeout,
                    linked(self.claimed_options, then=then), self.queue, self.priority, True)

    def final_line(self, final: bytes) -> bytes:
        """A final line the handler's thread made from this job as it was claimed, with
        the ``then`` added since (see ``linked_later``)."""
        if not self.linked_later:
            return final
        job = parse_line(final)
        then = then_of(decode_options(self.original.options))
        return job.evolve(options=linked(job.options, then=then)).to_line()


class ClaimOutcome:
    """What one claim rewrite did, for the worker to apply and report."""

    def __init__(self) -> None:
        self.claimed: Dict[bytes, Held] = {}
        self.settled: Set[bytes] = set()  # final state written, put back, or lost
        self.renewed: Set[bytes] = set()
        self.lost: List[bytes] = []  # taken by another worker meanwhile
        self.recorded: Set[bytes] = set()  # final lines written, to move later
        self.abandoned: List[Job] = []  # lease lost on the last attempt
        self.retaken: List[Job] = []  # a dead worker's job, claimed again
        self.handed_back: List[Job] = []  # the same, never started: no attempt
        self.owner_alive: List[Job] = []  # lease out, but its worker lives
        self.corrupt: List[Tuple[bytes, str]] = []
        self.dropped = 0  # by retention
        self.archived = 0  # moved to archive files
        self.next_due: Optional[int] = None  # the earliest run_at of a job not due it may take
        self.ranked = False  # jobs it may take differ in rank (see choosing.py)
        self.ranks: Dict[bytes, tuple] = {}  # of the jobs claimed (Scope.rank)
        self.waiting: Dict[str, int] = {}  # due jobs of types it cannot run
        self.paused: Dict[str, int] = {}  # due jobs passed over: "queue x": n
        self.limited: Dict[str, int] = {}  # due jobs whose key had no free slot
        self.rated: Dict[str, int] = {}  # due jobs put off by a rate limit
        self.starts: List[Tuple[str, float]] = []  # counted by rate limits
        self.slots: Dict[bytes, Any] = {}  # the slots taken for jobs claimed
        self.adopted: Dict[bytes, Held] = {}  # held jobs others now wait for (Held.adopting)

    def log(self, path, edit_changed: bool, retention_seconds: Optional[float],
            reported: Set[bytes]) -> None:
        """Log what the rewrite did (drops and moves only if it took place); each corrupt
        line once per worker run (``reported`` holds those logged already)."""
        outcome = self
        for job_id in outcome.lost:
            logger.warning("job %s: another worker took it after its lease ran out (was this "
                           "process stopped?); its result here is not recorded", job_id.decode())
        for job in outcome.abandoned:
            logger.error("job %s %s failed for good: %s", job.id, job.type, job.error)
        for job in outcome.retaken:
            logger.warning("job %s %s: the worker of attempt %d stopped without a result; "
                           "trying again", job.id, job.type, job.attempts)
        for job in outcome.handed_back:
            logger.info("job %s %s: its worker died before starting it; claimed again, no "
                        "attempt counted", job.id, job.type)
        if outcome.dropped and edit_changed:
            logger.info("dropped %s older than %s (retention)",
                        plural(outcome.dropped, "completed or cancelled job"),
                        duration_text(retention_seconds))
        if outcome.archived and edit_changed:
            logger.debug("moved %s to the archive files", plural(outcome.archived, "finished job"))
        for line, reason in outcome.corrupt:
            if line not in reported:
                reported.add(line)
                logger.warning("%s: a corrupt line, left as it is (%s): %s", path,
                               reason, line[:120].decode("utf-8", "replace").rstrip())


class ClaimEditor(RetiringEditor):
    """One rewrite of the worker run ``worker`` (its token): see the module docstring.
    ``held`` are the jobs the run holds, ``finished`` their final lines, ``unstarted`` the
    held ids to put back; ``owner(token)`` tells what is known of another run (see
    liveness.Owner), asked once per token in a rewrite. ``recorded`` are the final lines
    the run's last rewrite wrote: moved without a parse, as this process made them."""

    def __init__(self, held: Dict[bytes, Held], finished: Dict[bytes, bytes],
                 unstarted: Set[bytes], now: float, lease_until: float, claim: int,
                 max_attempts: int, drop_before: Optional[float] = None, *,
                 worker: str, owner: Callable[[str], Owner],
                 archive_before: Optional[float] = None, spool=None,
                 scope: Scope = Scope(), chosen: Optional[Set[bytes]] = None,
                 slots=None, limits: Optional[Dict[str, int]] = None, rates=None,
                 rate_limits: Optional[Dict[str, str]] = None,
                 recorded: Set[bytes] = frozenset(), thorough: bool = True) -> None:
        self.worker, self.owner = worker, owner
        self.recorded = recorded
        # Not thorough: lines other than these pass as they are (chosen: also not None).
        self.thorough = thorough
        self.recorded_ids = set() if thorough else {line_id(line) for line in recorded}
        self.chosen_seen = self.recorded_seen = 0
        if not thorough:
            self.only = self.recorded_ids.union(held, chosen)
        self.slots, self.limits = slots, limits or {}  # see slots.py
        self.full_keys: Set[tuple] = set()  # (key, limit) without a free slot in this rewrite
        self.rates, self.rate_limits = rates, rate_limits or {}  # see rates.py
        self.scope, self.chosen = scope, chosen  # chosen: the pending jobs to claim, if ranked
        self.owners: Dict[str, Owner] = {}
        self.archive_before, self.spool = archive_before, spool  # see archive.py
        self.held, self.finished, self.unstarted = held, finished, unstarted
        self.now, self.lease_until = now, lease_until
        self.claim, self.max_attempts = claim, max_attempts
        self.drop_before = drop_before  # retention: finished jobs older than this go
        self.outcome = ClaimOutcome()
        self.held_seen = 0
        self.dependents = Dependents(None if thorough else self.only)
        self.telling = False  # shown only the lines of jobs to tell (see __call__)
        self.parsed = None  # (line, its Job): the last line told, for its claim

    @property
    def done(self) -> bool:
        if self.held_seen != len(self.held) or self.dependents.owed:
            return False
        if self.thorough:
            return self.telling or len(self.outcome.claimed) >= self.claim
        return (self.chosen_seen == len(self.chosen)
                and self.recorded_seen == len(self.recorded_ids))

    def __call__(self, line: bytes) -> Optional[bytes]:
        new = self._decide(line)
        if (self.dependents.owed and self.only is None and self.held_seen == len(self.held)
                and len(self.outcome.claimed) >= self.claim):
            # All it came for is done but jobs further down wait to be told: from here on
            # the rewrite shows it only theirs (as a finished claim copies the rest).
            self.only = self.dependents.only = set(self.dependents.owed)
            self.telling = True
        return new

    def _decide(self, line: bytes) -> Optional[bytes]:
        job_id = line_id(line)
        if job_id in self.dependents.owed:
            told = self.dependents.tell(job_id, line)
            if told is not line:
                self.changed = True
                self._look_again_from_here()
                if self.dependents.last.status != PENDING:
                    return told  # cancelled: moved by a later rewrite, once the file holds it
                line = told  # released, or waiting still: this rewrite may claim it
                self.parsed = (told, self.dependents.last)
        mine = self.held.get(job_id)
        if mine is None:
            if not self.thorough:
                if job_id in self.chosen:
                    self.chosen_seen += 1
                elif job_id in self.recorded_ids:
                    self.recorded_seen += 1
                else:
                    return line
            return self._not_mine(job_id, line)
        self.held_seen += 1
        outcome = self.outcome
        if not same_job(line, mine.line()):
            adopted = mine.adopting(line)
            if adopted is None:
                outcome.lost.append(job_id)
                outcome.settled.add(job_id)
                return line
            mine = outcome.adopted[job_id] = adopted
        self.changed = True
        if job_id in self.finished:
            outcome.settled.add(job_id)
            # A final line moves to its archive file in a later rewrite, once the live file
            # holds it: an archive append whose rename a kill prevented then holds the very
            # line the next move appends (and skips). Moved now, a kill before the rename
            # would leave an archived result of a run the file never recorded, and the job,
            # run again, archived twice.
            final = mine.final_line(self.finished[job_id])
            peek = peek_status_and_run_at(final)
            if peek is not None and peek[0] != PENDING_WORD:
                self.dependents.ended(mine.original, STATUS_OF_WORD[peek[0]])
            if peek is not None and peek[0] in RETAINED_WORDS:
                outcome.recorded.add(final)
                self._look_again_from_here()
            return final
        if job_id in self.unstarted:
            outcome.settled.add(job_id)
            return mine.original.to_line()
        outcome.renewed.add(job_id)
        self._look_again_from_here()
        return mine.renewed(self.lease_until).line()

    def _look_again_from_here(self) -> None:
        """The next rewrite edits from this line on (a held job's, or a final line to move)."""
        if self.resume_offset is None:
            self.resume_offset = self.position

    def _not_mine(self, job_id: bytes, line: bytes) -> Optional[bytes]:
        claiming = len(self.outcome.claimed) < self.claim
        if not claiming and self.drop_before is None and self.spool is None:
            return line
        peek = peek_status_and_run_at(line)
        if peek is None:
            return self._claim(job_id, line) if claiming else line  # parses it to report it
        status, run_at, created_at = peek
        if status in CLAIMABLE_WORDS:
            if status == PENDING_WORD and peek_waiting(line):
                return line  # told when the jobs it waits for end (see dependents.py)
            choice = peek_choice(line)
            if choice is None:  # only a full parse can tell its type or queue
                return self._claim(job_id, line) if claiming else line
            job_type, queue, priority = choice
            if not self.scope.takes(job_type, queue):
                return self._passed_over(line, status, run_at, job_type, queue)
            if priority or (self.scope.ordered and self.scope.rank(queue, 0, 0, 0)[0]):
                self.outcome.ranked = True
            if claiming and (run_at <= self.now or (
                    status == PROCESSING_WORD and self._owner_ended(line))):
                if (self.chosen is not None and status == PENDING_WORD
                        and job_id not in self.chosen):
                    return line
                return self._claim(job_id, line)
            if self.outcome.next_due is None or run_at < self.outcome.next_due:
                self.outcome.next_due = run_at
            return line
        finished = transitions.finished_at(status, run_at, created_at)
        if finished is not None:
            return self.retire(line, finished, known_good=line in self.recorded)
        return line

    def _passed_over(self, line: bytes, status: bytes, run_at: int, job_type: str,
                      queue: str) -> bytes:
        """A claimable line this worker may not take: counted for its log and, if it is a
        due job of a type it has no handler for, marked as waiting for one."""
        if status != PENDING_WORD or run_at > self.now or not self.scope.serves(queue):
            return line
        counts, what = ((self.outcome.waiting, job_type) if not self.scope.handles(job_type)
                        else (self.outcome.paused, f"queue {queue!r}" if queue in
                              self.scope.paused_queues else f"type {job_type!r}"))
        counts[what] = counts.get(what, 0) + 1
        if counts is self.outcome.paused or waiting_message(job_type).encode() in line:
            return line
        try:
            job = parse_line(line)
        except CorruptLineError as error:
            self.outcome.corrupt.append((line, str(error)))
            return line
        if job.error == waiting_message(job_type):  # written with quoting
            return line
        self.changed = True
        return job.evolve(error=waiting_message(job_type)).to_line()

    def _claim(self, job_id: bytes, line: bytes) -> bytes:
        if self.parsed is not None and self.parsed[0] is line:
            job = self.parsed[1]  # a line this rewrite made (told), from a parsed one
        else:
            try:
                job = parse_line(line)  # the one judgement of a line: payload, options, numbers
            except CorruptLineError as error:
                self.outcome.corrupt.append((line, str(error)))
                return line
        options = decode_options(job.options)
        if job.status == PENDING and is_waiting(options):
            return line
        queue, priority = queue_and_priority(options)
        if not self.scope.takes(job.type, queue):
            return self._passed_over(line, job.status.encode(), job.run_at, job.type, queue)
        self.outcome.ranks[job_id] = self.scope.rank(queue, priority, job.run_at, self.position)
        max_attempts = options.get("max_attempts") or self.max_attempts
        due = transitions.is_due(job, self.now)
        if job.status == PROCESSING:
            owner = self._owner(options.get(WORKER_KEY))
            if owner.alive or (owner.alive is None and not due):
                if owner.alive and due:
                    self.outcome.owner_alive.append(job)
                return line
            if not self._slot_for(job_id, job.type, options):
                return line  # a dead worker's job stays its, for a claim with a free slot
            self.changed = True
            if owner.started is not None and job.id not in owner.started:
                job = transitions.hand_back(job, self.now)
                self.outcome.handed_back.append(job)
            else:  # it had started, or nobody can tell: the attempt counts
                failed = transitions.retake_or_abandon(job, max_attempts)
                if failed is not None:
                    failed = failed.evolve(options=without_worker(failed.options))
                    self.outcome.abandoned.append(failed)
                    self.dependents.ended(failed, FAILED)
                    return failed.to_line()
                self.outcome.retaken.append(job)
            job = job.evolve(options=without_worker(job.options))
        elif not due or not self._slot_for(job_id, job.type, options):
            return line  # not due, or as many of its key run already: attempts untouched
        else:
            wait_until = self._rate_wait(job.type, options)
            if wait_until is not None:  # its key started its rate's worth: due again then
                slot = self.outcome.slots.pop(job_id, None)
                if slot is not None:
                    slot.release()
                self.changed = True
                return job.evolve(run_at=wait_until).to_line()
        self.changed = True
        held = self.outcome.claimed[job_id] = Held(job, self.now, self.lease_until, max_attempts,
                                                   options.get("timeout"),
                                                   with_worker(job.options, self.worker, options),
                                                   queue, priority)
        if self.resume_offset is None:
            self.resume_offset = self.position
        return held.line()

    def _slot_for(self, job_id: bytes, job_type: str, options: Dict[str, Any]) -> bool:
        """Whether the job may run now as far as its ``concurrency_key`` goes: it has none,
        or a slot of it was free and is now taken for it (see slots.py)."""
        concurrency = None if self.slots is None else concurrency_of(options, job_type, self.limits)
        if concurrency is None:
            return True
        # A key found full stays full for the rest of this rewrite: its slots are not tried
        # again for each of its jobs (a slot freed meanwhile serves the next claim).
        slot = None if concurrency in self.full_keys else self.slots.take(*concurrency)
        if slot is None:
            self.full_keys.add(concurrency)
            limited = self.outcome.limited
            limited[concurrency[0]] = limited.get(concurrency[0], 0) + 1
            # A slot frees without the file changing: a loop worker looks again within
            # about a second instead of waiting for the next write.
            soon = int(self.now) + 1
            if self.outcome.next_due is None or soon < self.outcome.next_due:
                self.outcome.next_due = soon
            return False
        self.outcome.slots[job_id] = slot
        return True

    def _rate_wait(self, job_type: str, options: Dict[str, Any]) -> Optional[int]:
        """None if the job may start as far as its rate limit goes (its start is counted);
        else the whole second from which its key may start again (see rates.py)."""
        rate = None if self.rates is None else rate_of(options, job_type, self.rate_limits)
        if rate is None:
            return None
        key, starts, seconds = rate
        moment = round(self.now, 3)
        until = self.rates.start(key, starts, seconds, moment)
        if until is None:
            self.outcome.starts.append((key, moment))
            return None
        rated = self.outcome.rated
        rated[key] = rated.get(key, 0) + 1
        return math.ceil(until)

    def abandon(self) -> None:
        """This rewrite is not renamed into place: the slots it took go back, and the
        starts it counted."""
        for slot in self.outcome.slots.values():
            slot.release()
        self.outcome.slots.clear()
        for key, moment in self.outcome.starts:  # and the starts it counted
            self.rates.forget(key, moment)
        self.outcome.starts.clear()
        super().abandon()

    def _owner(self, token) -> Owner:
        if not is_token(token):
            return UNKNOWN
        if token not in self.owners:
            self.owners[token] = self.owner(token)
        return self.owners[token]

    def _owner_ended(self, line: bytes) -> bool:
        """Whether a processing line not due yet looks like a surely dead worker's job."""
        found = _TOKEN_IN_OPTIONS.search(line, line.rfind(b"\t") + 1)
        return found is not None and self._owner(found.group(1).decode()).alive is False
