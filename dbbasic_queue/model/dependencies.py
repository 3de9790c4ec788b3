"""Jobs that wait for other jobs: the options that link them, and what a job's end does to
the jobs waiting for it. Pure: ``storage/dependents.py`` carries it out in the rewrites.

A job others wait for holds their ids in its options, ``"then": [...]``. A job that waits is
``pending`` but no worker takes it while its options hold ``"after": [...]`` (the jobs it
depends on that have not finished: ``depends_on``, ``chain``) or ``"batch": {...}`` (a
batch's callback, with the count of its members finished by status). When a job ends
(completed, failed for good, cancelled, or deleted), every job in its ``then`` is told in the
same atomic rewrite (``notified``):

- ``after``: the job's id is taken out. If it did not complete, the waiting job is
  cancelled, its error saying which job and why, unless it was enqueued with
  ``allow_failure=True``; when ``after`` is empty the job is due as any other.
- ``batch``: the member's status is counted; when every member is, the counts go into the
  callback's payload under ``"batch"`` and the callback is due.

A job is told at most once per end: ``after`` forgets an id once told, and a job ends once
unless it is retried by hand (a retried batch member is counted again: see docs/workflows.md).
"""

import json
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .job import CANCELLED, COMPLETED, FAILED, PENDING, Job, json_value, to_json

THEN, AFTER, BATCH, ALLOW_FAILURE = "then", "after", "batch", "allow_failure"
LINKS = frozenset({THEN, AFTER, BATCH})  # the keys that tie a job to others
DELETED = "deleted"  # how a job deleted by hand ends, for the jobs waiting for it
ENDINGS = (COMPLETED, FAILED, CANCELLED, DELETED)
MAX_DEPENDENCIES = 100  # ids in one depends_on: each is a lookup in the enqueue's rewrite
BATCH_COUNTS = (COMPLETED, FAILED, CANCELLED)
# A waiting job's keys in its options field, as json and the file's quoting write them: a
# key, since it follows "{" or ", " (a quote inside a JSON string is escaped, so no value
# can hold these), and a list that is not empty.
_WAITING_KEY = re.compile(rb'(?:\{|, )""(?:after"": \[(?!\])|batch"": \{)')
_THEN_MARK = b'""then""'


def peek_waiting(line: bytes) -> bool:
    """Whether a plainly written line's options say it waits for other jobs (a cheap look
    at its last field, for the claim). Options written by other hands in another spelling
    are not seen here: the claim's full parse of the line (``is_waiting``) decides those."""
    options = line[line.rfind(b"\t") + 1:]
    return len(options) > 20 and _WAITING_KEY.search(options) is not None


def may_tell(line: bytes) -> bool:
    """Whether a line's options may name jobs waiting for it (cheap; parse to be sure)."""
    return _THEN_MARK in line[line.rfind(b"\t") + 1:]


def is_waiting(options: Dict[str, Any]) -> bool:
    """Whether a pending job with these options waits for other jobs."""
    return bool(options.get(AFTER)) or BATCH in options


def waiting_for(options: Dict[str, Any]) -> Optional[str]:
    """What a waiting job waits for, in words after "waiting" (for show and the dashboard):
    ``for 2 jobs: ID, ID`` or ``for its batch: 3 of 10 finished (...)``; None if it does not."""
    after = options.get(AFTER)
    if after:
        return f"for {len(after)} job{'s' if len(after) != 1 else ''}: {', '.join(after)}"
    counts = options.get(BATCH)
    if isinstance(counts, dict):
        done = sum(counts.get(name, 0) for name in BATCH_COUNTS)
        return (f"for its batch: {done} of {counts.get('size', 0)} finished ("
                + ", ".join(f"{counts.get(name, 0)} {name}" for name in BATCH_COUNTS) + ")")
    return None


def unlinked(options_text: str, *keys: str) -> str:
    """An options field without the link ``keys`` (all of them if none given)."""
    keys = keys or (THEN, AFTER, BATCH, ALLOW_FAILURE)
    if not options_text or not any(f'"{key}"' in options_text for key in keys):
        return options_text
    options = json.loads(options_text)
    if not isinstance(options, dict):
        return options_text
    for key in keys:
        options.pop(key, None)
    return _field(options)


def then_of(options: Dict[str, Any]) -> List[str]:
    """The ids of the jobs waiting for a job with these options."""
    return list(options.get(THEN) or ())


def checked_dependencies(depends_on) -> List[str]:
    """The ids in a ``depends_on`` argument: a job id, a get_job dict, or a list of them.
    Raises TypeError or ValueError saying what is wrong."""
    if isinstance(depends_on, (bytes, bytearray)):
        raise TypeError("depends_on takes job ids as str (as enqueue returns them), not bytes")
    items = [depends_on] if isinstance(depends_on, (str, dict)) else depends_on
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"depends_on takes a job id, a get_job dict or a list of them, not "
                        f"{type(depends_on).__name__}") from None
    ids: List[str] = []
    for item in items:
        job_id = item.get("id") if isinstance(item, dict) else item
        if (not isinstance(job_id, str) or not job_id or any(c in job_id for c in '\t\r\n"')
                or not job_id.isprintable() or not _encodable(job_id)):
            raise ValueError(f"depends_on holds {item!r}, which is not a job id (the str "
                             f"enqueue returned) or a get_job dict")
        if job_id not in ids:
            ids.append(job_id)
    if not ids:
        raise ValueError("depends_on is empty: leave it out for a job that waits for none")
    if len(ids) > MAX_DEPENDENCIES:
        raise ValueError(f"depends_on names {len(ids)} jobs; at most {MAX_DEPENDENCIES} (for "
                         f"more, enqueue them as a batch with an on_complete job)")
    return ids


def checked_step(step, what: str) -> Tuple[str, dict, dict]:
    """(job_type, payload, options) of a chain's step or a batch's on_complete job, given as
    ``(job_type, payload)`` or ``(job_type, payload, {options})``; TypeError otherwise."""
    if not isinstance(step, tuple) or len(step) not in (2, 3):
        raise TypeError(f"{what} takes (job_type, payload) or (job_type, payload, {{options}}), "
                        f"not {step!r}")
    own = step[2] if len(step) == 3 else {}
    if not isinstance(own, dict):
        raise TypeError(f"the options of {what} must be a dict, not {type(own).__name__}")
    return step[0], step[1], own


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate
        return False


def linked(options_text: str, **links: Any) -> str:
    """An options field with the links given added (``then``, ``after``, ``batch``,
    ``allow_failure``); a link of None or an empty list is left out. ``then`` ids are
    added to those the field holds."""
    options = dict(json.loads(options_text)) if options_text else {}
    for key, value in links.items():
        if key == THEN and value:
            value = then_of(options) + [job_id for job_id in value if job_id not in then_of(options)]
        if value is None or value == [] or value is False:
            options.pop(key, None)
        else:
            options[key] = value
    return to_json(options) if options else ""


def notified(job: Job, ends: Iterable[Tuple[str, str]]) -> Job:
    """``job`` after being told that the jobs in ``ends`` ended, as (id, how: completed,
    failed, cancelled or deleted): see the module docstring. A job not waiting (cancelled by
    hand meanwhile, or told already) is returned as it is."""
    if job.status != PENDING or not job.options:
        return job
    options = json.loads(job.options)  # a fresh dict: changed here, then written once
    if not isinstance(options, dict) or not is_waiting(options):
        return job
    ends = list(ends)
    counts = options.get(BATCH)
    if isinstance(counts, dict):
        for _, how in ends:
            name = how if how in BATCH_COUNTS else CANCELLED
            counts[name] = counts.get(name, 0) + 1
        if sum(counts.get(name, 0) for name in BATCH_COUNTS) < counts.get("size", 0):
            return job.evolve(options=to_json(options))
        del options[BATCH]
        payload = dict(json_value(job.payload))
        payload[BATCH] = {"id": job.id, **counts}
        return job.evolve(payload=to_json(payload), options=_field(options))
    waiting = options.get(AFTER) or []
    told = dict(ends)
    failed = [(job_id, how) for job_id, how in ends if how != COMPLETED and job_id in waiting]
    if failed and not options.get(ALLOW_FAILURE):
        options.pop(AFTER, None)
        return job.evolve(status=CANCELLED, options=_field(options),
                          error=dependency_error(*failed[0]))
    after = [job_id for job_id in waiting if job_id not in told]
    if after:
        options[AFTER] = after
    else:
        options.pop(AFTER, None)
    return job.evolve(options=_field(options))


def _field(options: Dict[str, Any]) -> str:
    return to_json(options) if options else ""


def dependency_error(job_id: str, how: str) -> str:
    """The error of a job cancelled because a job it depends on did not complete."""
    words = {FAILED: "failed for good", CANCELLED: "was cancelled", DELETED: "was deleted"}
    return f"Cancelled: job {job_id}, which it depends on, {words.get(how, how)}"


def ended(old: Optional[Job], new: Optional[Job]) -> Optional[str]:
    """How a change of a job's line ends it for the jobs waiting for it (completed, failed,
    cancelled, deleted), or None if it does not: a line of a job still active becoming
    final, or removed (``new`` None)."""
    if old is not None and old.status in (COMPLETED, FAILED, CANCELLED):
        return None
    if new is None:
        return DELETED
    return new.status if new.status in (COMPLETED, FAILED, CANCELLED) else None
