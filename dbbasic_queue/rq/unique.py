"""Unique keys on Redis: which pending or processing job holds a ``unique_key``.

Each key held is a Redis string, ``<queue name>/unique/<key>``, naming its job's id. An
enqueue with a key watches that string, and sets it in the same transaction that adds the
job (MULTI/EXEC), so two enqueues at once give one job: the second sees the first's id. A
key whose job has ended (completed, failed for good, cancelled, deleted, expired) is free,
whether or not its string was cleared: the job's status is what counts. The worker and the
verbs that end a job clear its string (only while it still names that job) so that keys do
not pile up.
"""

from typing import Callable, Optional

from redis.exceptions import WatchError
from rq.job import Job as RQJob

LIVE = frozenset({"queued", "scheduled", "deferred", "started", "created"})  # pending, processing

# Delete the key only while it names this job: a later job may hold it by now.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class UniqueKeys:
    """The unique keys of one RQQueue, in its Redis."""

    def __init__(self, redis, base: str) -> None:
        self.redis, self.prefix = redis, f"{base}/unique/"
        self.release_script = redis.register_script(_RELEASE)

    def key(self, unique_key: str) -> str:
        return self.prefix + unique_key

    def holder(self, unique_key: str) -> Optional[str]:
        """The id of the pending or processing job holding ``unique_key``, or None."""
        held = self.redis.get(self.key(unique_key))
        if held is None:
            return None
        job_id = held.decode("utf-8", "replace")
        status = self.redis.hget(RQJob.key_for(job_id), "status")
        return job_id if status is not None and status.decode() in LIVE else None

    def add(self, unique_key: str, job_id: str, write: Callable) -> str:
        """Add the job (``write(pipeline)`` queues its commands) holding ``unique_key``,
        unless a live job holds it: returns the id of the job that holds it now."""
        key = self.key(unique_key)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    held = self.holder(unique_key)
                    if held is not None and held != job_id:
                        return held
                    pipe.multi()
                    pipe.set(key, job_id)
                    write(pipe)
                    pipe.execute()
                    return job_id
                except WatchError:  # another enqueue took or freed the key: look again
                    continue

    def release(self, unique_key, job_id: str) -> None:
        """Clear ``unique_key`` if it still names ``job_id`` (its job has ended)."""
        if isinstance(unique_key, str) and unique_key:
            self.release_script(keys=[self.key(unique_key)], args=[job_id])
