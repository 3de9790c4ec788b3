"""Which due jobs a ranked claim takes: a look at the whole file, and a run's memory of it.

When the jobs a worker may take differ in rank (priorities, a strict order of queues) or it
serves queues by weight, the jobs one claim takes depend on every line, so the claim first
reads the file with cheap peeks (``look``) and keeps the best-ranked candidates
(``model.queues.Candidates``). A run keeps what is left of them for its next claims
(``Remembered``) while the file is the one its own last rewrite left: only the lines
appended since are read again, and the claim's rewrite passes every other line on at the
cost of a lookup. Another writer's rewrite, a change of pauses, a job falling due, or a
short list the claim would empty make the next claim look again; so does a claim that found
less than it asked for. A remembered job is only a candidate: the claim's editor takes it
only if its line, read under the same rules, still says it may.
"""

from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

from .archive import ARCHIVE_MIN_LINES
from ..model.job import (CLAIMABLE_WORDS, PENDING_WORD, PROCESSING_WORD, line_id,
                         peek_status_and_run_at)
from ..model.dependencies import peek_waiting
from ..model.transitions import finished_at
from ..model.queues import Candidates, Scope, peek_queue_and_priority, waiting_message

# A look keeps this many claims' worth of candidates, and at least KEEP_LEAST (per queue,
# by weight): about 200 bytes each.
KEEP_CLAIMS, KEEP_LEAST = 8, 10_000
_OTHER = ("other", None, None, None)


def peek_choice(line: bytes) -> Optional[Tuple[str, str, int]]:
    """(type, queue, priority) of a plainly written job line, cheaply, or None when only a
    full parse can tell."""
    start = line.find(b"\t") + 1
    end = line.find(b"\t", start)
    job_type = line[start:end]
    found = peek_queue_and_priority(line)
    if found is None or job_type.startswith(b'"'):
        return None
    try:
        return job_type.decode("utf-8"), found[0], found[1]
    except UnicodeDecodeError:
        return None


class Remembered:
    """What a run keeps of its last look between claims: the ``candidates`` left, for the
    ``scope`` it looked with; ``covered``, how many job lines at the start of the file they
    account for (the lines after are read at the next claim); ``next_due``, the earliest
    run_at of a job not due then (when it falls due the run looks again); and the next
    file-order rank to give a line read later (``position``)."""

    def __init__(self, candidates: Candidates, scope: Scope, covered: int,
                 next_due: Optional[int]) -> None:
        self.candidates, self.scope = candidates, scope
        self.covered, self.position = covered, covered
        self.next_due = next_due

    def usable(self, scope: Scope, now: float) -> bool:
        return scope == self.scope and (self.next_due is None or now < self.next_due)

    def due_at(self, run_at: Optional[int]) -> None:
        """A job it may take falls due at ``run_at``: look again from then."""
        if run_at is not None and (self.next_due is None or run_at < self.next_due):
            self.next_due = run_at

    def read_appended(self, lines: Iterable[Tuple[int, bytes]], now: float) -> bool:
        """Add the due jobs among ``lines``, those after the ones covered; False if a line
        there needs what only a look does (a full parse, a processing job, a handler
        missing)."""
        plain = True
        for _, line in lines:
            self.covered += 1
            self.position += 1
            judged = judge(line, now, self.scope)
            if judged is None:
                plain = False
            elif judged[0] == "due":
                self.candidates.add(self.scope.rank(judged[1], judged[2], judged[3],
                                                    self.position), judged[1], line_id(line))
            elif judged[0] == "later":
                self.due_at(judged[3])
            elif judged[0] != "other":
                plain = False
        return plain

    def rewritten(self, dropped: int) -> None:
        """The run's rewrite removed ``dropped`` lines (moved or dropped finished jobs):
        counted as if all lay among the covered lines, so at worst a line is read twice."""
        self.covered = max(self.covered - dropped, 0)


def judge(line: bytes, now: float, scope: Scope):
    """What a look makes of one line, from cheap peeks: (what, queue, priority, when), what
    being "due" for a pending job the worker may take now, "later" for one not due yet,
    "processing" for one it may take if its worker is dead, "waiting" for a due job of a
    type it has no handler for, not marked as waiting yet, "finished" for a completed or
    cancelled job (when: the time it finished), "other" for the rest; None for a line only
    a full parse can judge."""
    peek = peek_status_and_run_at(line)
    if peek is None:
        return None
    status, run_at, created_at = peek
    if status in CLAIMABLE_WORDS:
        if status == PENDING_WORD and peek_waiting(line):
            return _OTHER  # a job waiting for others: due once they end (dependents.py)
        choice = peek_choice(line)
        if choice is None:
            return None
        job_type, queue, priority = choice
        if not scope.takes(job_type, queue):
            if (status == PENDING_WORD and run_at <= now and scope.serves(queue)
                    and not scope.handles(job_type)
                    and waiting_message(job_type).encode() not in line):
                return ("waiting", queue, priority, run_at)
            return _OTHER
        if status == PROCESSING_WORD:
            return ("processing", queue, priority, run_at)
        return ("due" if run_at <= now else "later", queue, priority, run_at)
    finished = finished_at(status, run_at, created_at)
    return _OTHER if finished is None else ("finished", None, None, finished)


class Look(NamedTuple):
    """What a read of the whole file before a claim found: whether a claim rewrite could
    change anything (``worth``), the earliest run_at of a job not due that the worker may
    take, and, where ranks differ or queues have weights, what the run remembers of the due
    jobs (None: claim in file order)."""

    worth: bool
    next_due: Optional[int] = None
    remembered: Optional[Remembered] = None


def look(lines, now: float, scope: Scope, room: int, archive_before: Optional[float],
         drop_before: Optional[float]) -> Look:
    """Read every line (cheap peeks) for a claim of at most ``room`` jobs: see Look. Worth a
    claim: a job due that the worker may take, a processing one it may take (its worker
    may be dead), a due job of a type it cannot run not yet marked waiting, a line only a
    full parse can judge, a finished line past retention, or enough finished lines to move
    (see RetiringEditor)."""
    next_due, retiring, worth, ranked = None, 0, False, False
    candidates = Candidates(scope, max(KEEP_CLAIMS * room, KEEP_LEAST))
    position = -1
    for position, (_, line) in enumerate(lines):
        judged = judge(line, now, scope)
        if judged is None:
            worth = True
            continue
        what = judged[0]
        if what == "due":
            rank = scope.rank(judged[1], judged[2], judged[3], position)
            ranked = ranked or bool(judged[2]) or (scope.ordered and rank[0] != 0)
            candidates.add(rank, judged[1], line_id(line))
        elif what == "later":
            next_due = judged[3] if next_due is None else min(next_due, judged[3])
        elif what in ("processing", "waiting"):
            worth = True
        elif what == "finished" and not worth:
            if drop_before is not None and judged[3] < drop_before:
                worth = True  # past retention: it goes, even from a queue gone quiet
            elif archive_before is not None and judged[3] < archive_before:
                retiring += 1
                worth = retiring >= ARCHIVE_MIN_LINES
    if not candidates.count:
        return Look(worth, next_due)
    if not (ranked or scope.weights):
        return Look(True, next_due)
    return Look(True, next_due, Remembered(candidates, scope, position + 1, next_due))


def take_remembered(remembered: Remembered, table, now: float, room: int,
                    random: Callable[[], float]) -> Optional[List[bytes]]:
    """The jobs to claim from what a run remembers, after reading the lines appended since;
    None if only a new look can tell (see the module docstring)."""
    if not remembered.read_appended(table.lines(skip=remembered.covered), now):
        return None
    chosen = remembered.candidates.take(room, random)
    return list(dict.fromkeys(chosen)) if chosen else None  # once each: a line read twice
