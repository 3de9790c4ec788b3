"""Named queues, priorities and what a worker takes: the rules of the claim's choice, pure.

A job's queue and priority are options (the file's ``options`` column): ``"queue"`` absent
means ``default``, ``"priority"`` absent means 0; so a 1.0.0 file reads as the default queue
at priority 0, and a job enqueued without them keeps the line it always had.

A worker takes a job only if it has a handler for its type, serves its queue, and neither
is paused (``Scope.takes``). Among the jobs it may take, it claims in this order
(``Scope.rank``): the queue's place in the worker's list (strict order; every queue shares
place 0 when the worker serves any queue), then higher priority, then earlier ``run_at``,
then earlier in the file (the order of enqueueing). With weights instead of a strict order,
each job of a claim comes from a queue drawn by weight among those with jobs due, so each
queue gets its share of the work while all have jobs (``Candidates.take``).
"""

import functools
import heapq
import re
from typing import (Callable, Container, Dict, FrozenSet, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

from .checks import shown
from .job import QUEUE_NAME

DEFAULT_QUEUE = "default"
LOWEST_PRIORITY, HIGHEST_PRIORITY = -100, 100  # Django's task priorities (job.py checks them too)
MAX_WEIGHT = 1000
# The queue and priority in a line's options field as encode_options writes them (quotes
# doubled by the file's quoting): a cheap look for the claim, checked like every other field.
_QUEUE_IN_OPTIONS = re.compile(rb'""queue""\s*:\s*""([A-Za-z0-9][A-Za-z0-9_.:-]{0,99})""')
_PRIORITY_IN_OPTIONS = re.compile(rb'""priority""\s*:\s*(-?\d{1,3})[,}]')
WAITING_FOR_HANDLER = "waiting for a worker with a handler for"


def check_queue_name(name, what: str = "queue") -> str:
    """``name`` if it can name a queue: 1 to 100 letters, digits and ``_ . : -``, starting
    with a letter or digit (so it is safe in a file name, a URL and a log line)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str such as 'emails', not {type(name).__name__}")
    if not QUEUE_NAME.match(name):
        raise ValueError(f"{what} {shown(name)} must be 1 to 100 letters, digits, '_', '.', ':' "
                         f"or '-', starting with a letter or digit, such as 'emails'")
    return name


def check_priority(priority) -> int:
    return _whole_number("priority", priority, LOWEST_PRIORITY, HIGHEST_PRIORITY,
                         " (higher runs first)")


def _whole_number(what: str, value, lowest: int, highest: int, hint: str = "") -> int:
    """``value`` if it is an int from ``lowest`` to ``highest``; TypeError or ValueError
    saying so otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int from {lowest} to {highest}{hint}, not "
                        f"{type(value).__name__}")
    if not lowest <= value <= highest:
        raise ValueError(f"{what} must be from {lowest} to {highest}{hint}, not {value}")
    return value


MAX_CONCURRENCY_LIMIT = 1000


def check_concurrency_key(key, what: str = "concurrency_key") -> str:
    """``key`` if it can key a limit: 1 to 500 printable characters."""
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str such as 'customer:7', not {type(key).__name__}")
    if not key or len(key) > 500 or not key.isprintable():
        raise ValueError(f"{what} {shown(key)} must be 1 to 500 printable characters, such as "
                         f"'customer:7'")
    return key


def check_concurrency_limit(limit) -> int:
    return _whole_number("a concurrency limit", limit, 1, MAX_CONCURRENCY_LIMIT)


def concurrency_of(options: Mapping, job_type: str, limits: Mapping[str, int]):
    """(key, limit) of a job with a ``concurrency_key``, or None: its own limit, else its
    handler's (``limits``), else 1 (one at a time per key)."""
    key = options.get("concurrency_key")
    if not isinstance(key, str) or not key:
        return None
    return key, options.get("concurrency_limit") or limits.get(job_type) or 1


MAX_RATE_COUNT = 100_000
_RATE = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{0,6})\s*([smhd])\s*\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(text) -> Tuple[int, int]:
    """(starts, seconds) of a rate limit written ``100/m``, ``10/s``, ``5/10m`` or ``1000/d``."""
    if not isinstance(text, str):
        raise TypeError(f"a rate limit must be a str such as '100/m', not {type(text).__name__}")
    found = _RATE.match(text)
    if found is None or not 1 <= int(found.group(1)) <= MAX_RATE_COUNT or found.group(2) == "0":
        raise ValueError(f"rate limit {shown(text)} must be STARTS/PERIOD such as '100/m', "
                         f"'10/s', '5/10m' or '1000/d' (1 to {MAX_RATE_COUNT:,} starts)")
    return int(found.group(1)), int(found.group(2) or 1) * _UNIT_SECONDS[found.group(3)]


def rate_of(options: Mapping, job_type: str, rates: Mapping[str, str]):
    """(key, starts, seconds) of a rate-limited job, or None: its own ``rate_limit`` (keyed by
    its ``rate_key``, else its type), else its handler's (``rates``, keyed by its type)."""
    own = options.get("rate_limit")
    if isinstance(own, str):
        key = options.get("rate_key")
        return (key if isinstance(key, str) and key else f"type:{job_type}", *parse_rate(own))
    declared = rates.get(job_type)
    return None if declared is None else (f"type:{job_type}", *parse_rate(declared))


def waiting_message(job_type: str) -> str:
    """The error a worker writes on a due job it has no handler for (attempts untouched)."""
    return f"{WAITING_FOR_HANDLER} {job_type!r}: the last worker to look had none"


def peek_queue_and_priority(line: bytes) -> Optional[Tuple[str, int]]:
    """(queue, priority) of a job line from a cheap look at its options field, or None when
    only a full parse can tell (options written by other hands)."""
    options = line[line.rfind(b"\t") + 1:]
    if len(options) <= 1:
        return DEFAULT_QUEUE, 0
    return _options_queue_and_priority(options)


@functools.lru_cache(maxsize=1024)  # a queue's lines repeat a few options fields
def _options_queue_and_priority(options: bytes) -> Optional[Tuple[str, int]]:
    queue, priority = DEFAULT_QUEUE, 0
    if b'queue' in options:
        found = _QUEUE_IN_OPTIONS.search(options)
        if found is None:
            return None
        queue = found.group(1).decode()
    if b'priority' in options:
        found = _PRIORITY_IN_OPTIONS.search(options)
        if found is None:
            return None
        priority = int(found.group(1))
    return queue, priority


def queue_and_priority(options: Mapping) -> Tuple[str, int]:
    """(queue, priority) from a job's decoded options."""
    queue, priority = options.get("queue", DEFAULT_QUEUE), options.get("priority", 0)
    return (queue if isinstance(queue, str) else DEFAULT_QUEUE,
            priority if isinstance(priority, int) and not isinstance(priority, bool) else 0)


QueueChoice = Union[None, Sequence[str], Mapping[str, int]]


class Scope(NamedTuple):
    """What one worker takes: ``types`` it has handlers for (None: any, for admin looks; a
    Mapping other than a dict is asked type by type, as Django's TaskHandlers must be),
    ``queues`` it serves in strict order (None: every queue) or ``weights`` by queue, and the
    queues and types paused when it looked (see storage/pauses.py)."""

    types: Optional[Container[str]] = None
    queues: Optional[Tuple[str, ...]] = None
    weights: Optional[Tuple[int, ...]] = None
    paused_queues: FrozenSet[str] = frozenset()
    paused_types: FrozenSet[str] = frozenset()

    @classmethod
    def of(cls, types, queues: QueueChoice = None) -> "Scope":
        """The scope of a worker with handlers for ``types`` serving ``queues``: None (every
        queue), a list in strict order, or a dict of weights (``{"emails": 3, "default": 1}``).
        Raises TypeError or ValueError for a bad choice."""
        if types is not None and (isinstance(types, dict) or not isinstance(types, Mapping)):
            types = frozenset(types)  # else a Mapping that finds its types when asked
        if queues is None:
            return cls(types)
        if isinstance(queues, str):
            queues = [queues]
        if isinstance(queues, Mapping):
            names = tuple(check_queue_name(name) for name in queues)
            weights = tuple(queues.values())
            for name, weight in zip(names, weights):
                if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
                    raise ValueError(f"the weight of queue {name!r} must be an int from 1 to "
                                     f"{MAX_WEIGHT}, not {shown(weight)}")
        elif isinstance(queues, (list, tuple)):
            names, weights = tuple(check_queue_name(name) for name in queues), None
        else:
            raise TypeError(f"queues must be a list of queue names in the order to serve them, "
                            f"or a dict of weights such as {{'emails': 3, 'default': 1}}, not "
                            f"{type(queues).__name__}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"queues must name each queue once, and at least one, not "
                             f"{list(names)!r}")
        return cls(types, names, weights)

    def paused(self, queues: FrozenSet[str], types: FrozenSet[str]) -> "Scope":
        return Scope(self.types, self.queues, self.weights, queues, types)

    def serves(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def takes(self, job_type: str, queue: str) -> bool:
        """Whether the worker may claim a job of this type in this queue now."""
        return ((self.types is None or job_type in self.types) and self.serves(queue)
                and queue not in self.paused_queues and job_type not in self.paused_types)

    def handles(self, job_type: str) -> bool:
        return self.types is None or job_type in self.types

    @property
    def ordered(self) -> bool:
        """Whether the queues' order can change which jobs a claim takes."""
        return self.queues is not None and len(self.queues) > 1

    def rank(self, queue: str, priority: int, run_at: int, position: int) -> tuple:
        """The claim order's key of a job (smaller first); see the module docstring."""
        place = 0 if self.queues is None or self.weights is not None else self.queues.index(queue)
        return place, -priority, run_at, position


class Candidates:
    """The best-ranked due jobs a worker may take, as a look and later reads found them: one
    list (strict order), or one per queue (weights, which draw among queues). Each list
    keeps at most ``keep`` jobs, the worst dropped as better ones come (it is then *short*:
    a claim it can no longer fill needs a new look), so memory follows the claims, not the
    file. ``take`` removes what it returns, so a run can keep one between its claims."""

    def __init__(self, scope: Scope, keep: int) -> None:
        self.scope = scope
        self.per_queue = scope.weights is not None
        self.keep = max(keep, 1)
        # Of (the rank negated, queue, id): a heap while jobs are added (the worst on top),
        # sorted before a take (the best last, popped first).
        self.lists: Dict[str, list] = {}
        self.short: Dict[str, bool] = {}
        self.unsorted: set = set()
        self.count = 0  # jobs added

    def add(self, rank: tuple, queue: str, job_id: bytes) -> None:
        self.count += 1
        key = queue if self.per_queue else ""
        jobs = self.lists.setdefault(key, [])
        item = (tuple(-part for part in rank), queue, job_id)
        if len(jobs) < self.keep:
            heapq.heappush(jobs, item)  # a sorted list is a heap too
        else:
            self.short[key] = True
            if item[0] > jobs[0][0]:
                heapq.heapreplace(jobs, item)
        self.unsorted.add(key)

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self.lists.values())

    def take(self, room: int, random: Callable[[], float],
             fresh: bool = False) -> Optional[List[bytes]]:
        """The ids of at most ``room`` jobs, in the order to run them: by rank, or with weights
        each from a queue drawn by weight among those with jobs left (its best-ranked job
        first). None if a short list holds fewer than ``room`` (unless ``fresh``, just
        looked): jobs it dropped may rank before those it still has."""
        for key in self.unsorted:
            self.lists[key].sort()
        self.unsorted.clear()
        if not fresh and any(self.short.get(key) and len(jobs) < room
                             for key, jobs in self.lists.items()):
            return None
        if not self.per_queue:
            jobs = self.lists.get("", [])
            taken = jobs[len(jobs) - min(room, len(jobs)):]
            del jobs[len(jobs) - len(taken):]
            return [job_id for _, _, job_id in reversed(taken)]
        weight = dict(zip(self.scope.queues, self.scope.weights))
        chosen: List[bytes] = []
        while len(chosen) < room:
            names = sorted(name for name, jobs in self.lists.items() if jobs)
            if not names:
                break
            draw = random() * sum(weight[name] for name in names)
            for name in names:
                draw -= weight[name]
                if draw < 0:
                    break
            chosen.append(self.lists[name].pop()[2])
        return chosen
