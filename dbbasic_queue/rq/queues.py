"""Named queues, priorities and pauses on Redis, in the shapes RQ can hold them.

RQ keeps the jobs waiting in one FIFO list per RQ queue, and its worker takes from its queues
in the order they are given. So each (queue, priority) pair of ours is one RQ queue:
``("default", 0)`` is the RQ queue named after the RQQueue itself (``dbbasic-queue``, where
every job was before queues existed), any other is ``dbbasic-queue/emails/10``. A worker
takes from them in claim order: the queue's place in its ``queues`` list (strict), then the
higher priority. What RQ cannot do, and the TSV queue does: within one pair, jobs run in the
order they became due (RQ's FIFO), not by run_at; weights (RQ has no weighted draw); pausing a
job type (RQ cannot pass over a job in a list without taking it).

The pairs in use are a Redis set, added to at enqueue; the pauses a Redis hash (queue name
to the time it was paused), read by the worker before each take.
"""

import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..model.queues import DEFAULT_QUEUE, check_priority, check_queue_name

Pair = Tuple[str, int]  # (queue name, priority)


def rq_queue_name(base: str, queue: str, priority: int) -> str:
    """The RQ queue holding the jobs of ``queue`` at ``priority`` (names cannot hold '/')."""
    return base if (queue, priority) == (DEFAULT_QUEUE, 0) else f"{base}/{queue}/{priority}"


def claim_order(pairs, served: Optional[Sequence[str]]) -> List[Pair]:
    """The pairs a worker serving ``served`` (None: every queue) takes from, in the order it
    takes: the queue's place in ``served``, then higher priority, then the queue's name."""
    place = {name: index for index, name in enumerate(served or ())}
    chosen = [pair for pair in set(pairs) if served is None or pair[0] in place]
    return sorted(chosen, key=lambda pair: (place.get(pair[0], 0), -pair[1], pair[0]))


class QueueMap:
    """The pairs in use and the pauses of one RQQueue, in its Redis."""

    def __init__(self, redis, base: str) -> None:
        self.redis, self.base = redis, base
        self.pairs_key, self.paused_key = f"{base}/queues", f"{base}/paused"

    def record(self, queue: str, priority: int) -> None:
        """Note that jobs of ``queue`` at ``priority`` exist, so that workers listen there."""
        if (queue, priority) != (DEFAULT_QUEUE, 0):
            self.redis.sadd(self.pairs_key, f"{queue}/{priority}")

    def pairs(self) -> List[Pair]:
        """Every pair in use, the default one always; a member no enqueue could have written
        (written by hand in Redis) is passed over."""
        found = [(DEFAULT_QUEUE, 0)]
        for member in self.redis.smembers(self.pairs_key):
            name, _, priority = member.decode("utf-8", "replace").rpartition("/")
            try:
                found.append((check_queue_name(name), check_priority(int(priority))))
            except (TypeError, ValueError):
                continue
        return found

    def mark(self, queue: str, paused: bool) -> bool:
        """Pause (or resume) ``queue``; True if that changed anything."""
        check_queue_name(queue)
        if paused:
            return bool(self.redis.hsetnx(self.paused_key, queue, int(time.time())))
        return bool(self.redis.hdel(self.paused_key, queue))

    def paused_queues(self) -> Dict[str, int]:
        """The paused queues, each with the time it was paused (0 if unreadable)."""
        paused = {}
        for name, at in self.redis.hgetall(self.paused_key).items():
            name = name.decode("utf-8", "replace")
            paused[name] = int(at) if at.isdigit() else 0
        return paused

    def listing(self) -> List[dict]:
        """The pauses in force, as Queue.paused() lists them."""
        return [{"kind": "queue", "name": name, "paused_at": at}
                for name, at in sorted(self.paused_queues().items())]
