"""What the pages show, computed from a stream of jobs: counts, the 24-hour chart, a page of
jobs, the failures grouped, the dry-run counts of the bulk actions. Where the stream comes
from (the TSV files, or any backend's ``jobs()``) is in ``sources``.
"""

import heapq
import json
import re
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..backend import PERIODIC, QUEUES, WORKERS
from ..errors import CorruptLineError, QueueError
from ..periodic.firing import listing
from ..storage.tracebacks import raising_frame
from ..model.job import STATUSES
from ..model.queues import DEFAULT_QUEUE, WAITING_FOR_HANDLER, peek_queue_and_priority, queue_and_priority

HOUR = 3600
TABS = ("scheduled", "retries")  # the jobs page's views of pending jobs
CHART_HOURS = 24
THROUGHPUT_DAYS = 7  # the per-hour chart's span, the default retention
NEXT_RUNS = 10
SUMMARY_MAX_AGE = 30  # seconds a summary is reused while the file has not changed


class Record(NamedTuple):
    """One job as a listing sees it before it is shown: enough to filter, count and sort."""
    type: str
    status: str
    created_at: int
    run_at: int
    number: int  # its place in the listing, to keep the newest of one second in order
    source: Any  # the raw line (FileReader) or the job's dict (ListingReader)
    where: Any = None  # (file, line number) of a raw line, for a corrupt line's message


class Tally:
    """The counts of every job of a stream that a time does not change: by status, by type,
    and the completed and failed jobs by the hour their last attempt began. Tallies add up,
    so a reader may keep one for a file that did not change and add the rest to it."""

    def __init__(self) -> None:
        self.by_status = dict.fromkeys(STATUSES, 0)
        self.by_type: Dict[str, Dict[str, int]] = {}
        self.hours: Dict[int, List[int]] = {}  # hour start -> [completed, failed]
        self.corrupt = 0

    def add(self, record: Record) -> None:
        status = record.status
        self.by_status[status] += 1
        counts = self.by_type.get(record.type)
        if counts is None:
            counts = self.by_type[record.type] = dict.fromkeys(STATUSES, 0)
        counts[status] += 1
        if status in ("completed", "failed"):
            hour = record.run_at - record.run_at % HOUR
            pair = self.hours.get(hour)
            if pair is None:
                pair = self.hours[hour] = [0, 0]
            pair[status == "failed"] += 1

    def add_tally(self, other: "Tally") -> None:
        for status, count in other.by_status.items():
            self.by_status[status] += count
        for job_type, counts in other.by_type.items():
            mine = self.by_type.setdefault(job_type, dict.fromkeys(STATUSES, 0))
            for status, count in counts.items():
                mine[status] += count
        for hour, (done, lost) in other.hours.items():
            pair = self.hours.setdefault(hour, [0, 0])
            pair[0] += done
            pair[1] += lost
        self.corrupt += other.corrupt


class Active:
    """What the overview shows of the jobs to run and running, which depends on the time:
    the oldest due job, the next scheduled runs, the jobs waiting for a worker with their
    handler, and the counts by queue."""

    def __init__(self, now: float, reader: "Reader") -> None:
        self.now = now
        self.reader = reader
        self.oldest_due: Optional[int] = None
        self.upcoming: List[Tuple[int, int, Record]] = []  # a heap of the next NEXT_RUNS
        self.waiting: Dict[str, Dict[str, Any]] = {}
        self.by_queue: Dict[str, Dict[str, int]] = {}

    def add(self, record: Record) -> None:
        status = record.status
        queue = self.by_queue.setdefault(self.reader.queue_of(record),
                                         {"pending": 0, "processing": 0})
        queue[status] += 1
        if status != "pending":
            return
        if record.run_at <= self.now:
            if self.oldest_due is None or record.run_at < self.oldest_due:
                self.oldest_due = record.run_at
            if waits_for_a_handler(record.source):
                entry = self.waiting.setdefault(record.type, {"jobs": 0, "oldest_run_at": self.now})
                entry["jobs"] += 1
                entry["oldest_run_at"] = min(entry["oldest_run_at"], record.run_at)
        elif len(self.upcoming) < NEXT_RUNS:
            heapq.heappush(self.upcoming, (-record.run_at, -record.number, record))
        elif -record.run_at > self.upcoming[0][0]:
            heapq.heapreplace(self.upcoming, (-record.run_at, -record.number, record))


def search_fragments(term: str) -> List[bytes]:
    """The parts of a search term that appear byte for byte, lower-cased, in any line whose
    job matches it: runs of printable ASCII without ``"`` (doubled by the file's quoting)
    and ``\\`` (JSON escapes). Used to skip lines before parsing them."""
    return [part.lower().encode() for part in re.split(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]+', term)
            if part]


def matches(term: str, job_id: str, payload_json: str, error: Optional[str]) -> bool:
    """Whether ``term`` (case-insensitive) is in the job's id, its payload's JSON or its error."""
    term = term.lower()
    text = f"{job_id}\n{payload_json}\n{error or ''}".lower()
    if term in text:
        return True
    if "\\u" in payload_json:  # written with ASCII escapes (by 1.0.0): search the characters too
        try:
            return term in json.dumps(json.loads(payload_json), ensure_ascii=False).lower()
        except ValueError:
            return False
    return False


def waits_for_a_handler(source) -> bool:
    """Whether a pending job's error says it waits for a worker with its handler: ``source``
    is its raw line (its error field is looked at) or its get_job dict."""
    if isinstance(source, bytes):
        fields = source.split(b"\t", 8)
        return len(fields) > 8 and fields[7].startswith(WAITING_FOR_HANDLER.encode())
    return isinstance(source, dict) and str(source.get("error") or "").startswith(WAITING_FOR_HANDLER)


class Reader:
    """The listings of one backend. Subclasses provide ``records``, ``load`` and ``signature``."""

    def __init__(self, backend, clock: Callable[[], float]) -> None:
        self.backend = backend
        self.clock = clock
        self._summary: Optional[Tuple[Any, float, Dict[str, Any]]] = None

    def records(self, status: Optional[str] = None, job_type: Optional[str] = None,
                search: Optional[str] = None, corrupt: Optional[List[Any]] = None,
                types: Optional[set] = None) -> Iterator[Record]:
        """The jobs that match, in file order; ``corrupt`` gets the corrupt lines' places,
        ``types`` every job's type, matching or not (see ``type_names``)."""
        raise NotImplementedError

    @staticmethod
    def type_names(types: set) -> List[str]:
        """The types ``records`` gathered, as names, sorted."""
        return sorted(types)

    def load(self, record: Record) -> Dict[str, Any]:
        """The job as get_job shows it, plus ``options`` (a dict, or None if unknown)."""
        raise NotImplementedError

    def signature(self) -> Optional[tuple]:
        """Changes whenever the jobs may have changed; None if nothing cheap tells."""
        return None

    def options_of(self, job_id: str) -> Optional[Dict[str, Any]]:
        """A job's own options, or None where the backend does not show them."""
        return None

    # --- built on records() -----------------------------------------------------------------

    def summary(self) -> Dict[str, Any]:
        """The overview's figures; reused for a while if the jobs have not changed."""
        now = self.clock()
        signature = self.signature()
        cached = self._summary
        if (signature is not None and cached is not None and cached[0] == signature
                and 0 <= now - cached[1] < SUMMARY_MAX_AGE):
            figures = dict(cached[2])
        else:
            figures = self._count(now)
            self._summary = (signature, now, figures)
        oldest = figures["oldest_due_run_at"]
        figures["now"] = now
        figures["next_runs"] = [run for run in figures["next_runs"] if run["run_at"] > now]
        figures["latency_seconds"] = None if oldest is None else max(0.0, now - oldest)
        figures["schedules"] = self.schedules()
        figures["paused"] = self.paused()
        figures["throughput"] = self.throughput()
        return figures

    def throughput(self) -> Optional[Dict[str, Any]]:
        """What the workers finished per minute over the last hour and per hour over the
        last THROUGHPUT_DAYS (Queue.throughput: counts kept beside the queue, read only as
        far as they grew since the last look), or None where the backend keeps none."""
        if WORKERS not in self.backend.capabilities or not callable(
                getattr(self.backend, "throughput", None)):
            return None
        try:
            return {"minutes": self.backend.throughput(60, 60),
                    "hours": self.backend.throughput(HOUR, THROUGHPUT_DAYS * 24)}
        except (QueueError, OSError):
            return None

    def paused(self) -> List[Dict[str, Any]]:
        """The paused queues and types (a small file, read each time)."""
        if QUEUES not in self.backend.capabilities:
            return []
        try:
            return self.backend.paused()
        except (QueueError, OSError):
            return []

    def schedules(self) -> List[Dict[str, Any]]:
        """The periodic jobs as the workers last recorded them (a small file, read each
        time); none on a backend without periodic jobs, or if the file cannot be read."""
        if PERIODIC not in self.backend.capabilities:
            return []
        try:
            return [row for row in listing(self.backend) if row["status"] != "removed"]
        except (QueueError, OSError):
            return []

    def cached_types(self) -> Optional[List[str]]:
        """The job types of the last summary, without reading anything; None if there is none."""
        return None if self._summary is None else list(self._summary[2]["by_type"])

    def _count(self, now: float) -> Dict[str, Any]:
        tally = Tally()
        corrupt: List[Any] = []
        active = Active(now, self)
        for record in self.records(corrupt=corrupt):
            tally.add(record)
            if record.status in ("pending", "processing"):
                active.add(record)
        tally.corrupt += len(corrupt)
        return self._figures(now, tally, active)

    def _figures(self, now: float, tally: "Tally", active: "Active") -> Dict[str, Any]:
        """The overview's figures from the counts of every job and of the active ones."""
        next_runs = []
        for _, _, record in sorted(active.upcoming, reverse=True):
            try:
                job_id = self.load(record)["id"]
            except CorruptLineError:
                continue
            next_runs.append({"id": job_id, "type": record.type, "run_at": record.run_at})
        first_hour = (int(now) // HOUR - (CHART_HOURS - 1)) * HOUR
        completed, failed = [0] * CHART_HOURS, [0] * CHART_HOURS
        for hour, (done, lost) in tally.hours.items():
            if first_hour <= hour <= now:
                completed[(hour - first_hour) // HOUR] += done
                failed[(hour - first_hour) // HOUR] += lost
        return {"jobs": sum(tally.by_status.values()),
                "by_status": tally.by_status, "by_type": dict(sorted(tally.by_type.items())),
                "oldest_due_run_at": active.oldest_due, "next_runs": next_runs,
                "chart": {"hour_starts": [first_hour + n * HOUR for n in range(CHART_HOURS)],
                          "completed": completed, "failed": failed},
                "completed_24h": sum(completed), "failed_24h": sum(failed),
                "corrupt_lines": tally.corrupt,
                "waiting_for_handler": dict(sorted(active.waiting.items())),
                "queues": dict(sorted(active.by_queue.items()))}

    def queue_of(self, record: Record) -> str:
        """The queue of a job to run or running: a cheap look at its line, else its options."""
        if isinstance(record.source, bytes):
            peeked = peek_queue_and_priority(record.source)
            if peeked is not None:
                return peeked[0]
        try:
            options = self.load(record).get("options")
        except CorruptLineError:
            return DEFAULT_QUEUE
        return queue_and_priority(options)[0] if isinstance(options, dict) else DEFAULT_QUEUE

    def page(self, status: Optional[str], job_type: Optional[str], search: Optional[str],
             number: int, per_page: int, tab: Optional[str] = None,
             types: Optional[set] = None) -> Tuple[List[Record], int]:
        """Page ``number`` (from 1) of the jobs that match, newest first; and how many match.
        ``tab``: ``scheduled`` (pending, due later) or ``retries`` (pending after a failed
        attempt) narrows them; ``types`` gets every job's type on the way (the type menu)."""
        keep = number * per_page
        newest: List[Tuple[int, int, Record]] = []  # a heap of the newest ``keep``
        total = 0
        if tab in TABS:
            status = "pending"
        now = self.clock()
        for record in self.records(status, job_type, search, types=types):
            if tab == "scheduled" and record.run_at <= now:
                continue
            if tab == "retries" and not self.attempts_of(record):
                continue
            total += 1
            item = (record.created_at, record.number, record)  # numbers differ: no Record compared
            if len(newest) < keep:
                heapq.heappush(newest, item)
            elif item > newest[0]:
                heapq.heapreplace(newest, item)
        ordered = sorted(newest, reverse=True)[(number - 1) * per_page:]
        return [record for _, _, record in ordered], total

    @staticmethod
    def attempts_of(record: Record) -> int:
        """The attempts a listed job has had (its raw line's field, or its dict's)."""
        if isinstance(record.source, bytes):
            field = record.source.split(b"\t", 7)[6]
            return int(field) if field.isdigit() else 0
        return int(record.source.get("attempts") or 0)

    def failure_groups(self) -> List[Dict[str, Any]]:
        """Failed jobs grouped by type, exception class and the frame that raised it (from
        their last kept traceback), the messages listed inside a group; jobs with no
        traceback kept (a worker killed on their last attempt) by type and message. Each
        group: its key, count, ids, messages (message, count, most first), latest run and
        its job; most jobs first."""
        failed = []
        for record in self.records(status="failed"):
            try:
                failed.append((record, self.load(record)))
            except CorruptLineError:
                continue
        attempts = self.last_attempts([job["id"] for _, job in failed])
        groups: Dict[Tuple[str, ...], Dict[str, Any]] = {}
        for record, job in failed:
            last = attempts.get(job["id"]) or {}
            exception, frame = last.get("exception") or "", last.get("frame") or ""
            error = job["error"] or ""
            key = (record.type, exception, frame, "" if exception else error)
            group = groups.get(key)
            if group is None:
                group = groups[key] = {"type": record.type, "exception": exception,
                                       "frame": frame, "error": key[3], "count": 0, "ids": [],
                                       "messages": {}, "latest_at": None, "latest_id": None}
            group["count"] += 1
            group["ids"].append(job["id"])
            group["messages"][error] = group["messages"].get(error, 0) + 1
            if group["latest_at"] is None or record.run_at >= group["latest_at"]:
                group["latest_at"], group["latest_id"] = record.run_at, job["id"]
        for group in groups.values():
            group["messages"] = sorted(group["messages"].items(), key=lambda m: (-m[1], m[0]))
        return sorted(groups.values(), key=lambda g: (-g["count"], -g["latest_at"], g["type"]))

    def failure_group(self, job_type: str, exception: str, frame: str,
                      error: str) -> Optional[Dict[str, Any]]:
        """The group of ``failure_groups`` with this key, as it is now (None if none)."""
        return next((group for group in self.failure_groups()
                     if (group["type"], group["exception"], group["frame"], group["error"])
                     == (job_type, exception, frame, error)), None)

    def last_attempts(self, job_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        """Each job's last failed attempt (exception, frame) from the backend's kept
        tracebacks: asked job by job here; a file reader reads its files once."""
        found = {}
        for job_id in job_ids:
            try:
                kept = self.backend.tracebacks(job_id)
            except Exception:  # help, not the record: a job without them groups by message
                continue
            if kept:
                found[job_id] = {"exception": kept[-1].get("exception") or "",
                                 "frame": raising_frame(kept[-1].get("traceback") or "")}
        return found

    def count(self, status: str, job_type: Optional[str] = None) -> int:
        return sum(1 for _ in self.records(status, job_type))

    def purge_count(self, older_than: float, statuses: Sequence[str]) -> int:
        """How many jobs ``purge(older_than, statuses)`` would remove now: finished jobs of
        those statuses whose later of created_at and run_at is more than ``older_than`` ago."""
        before = self.clock() - older_than
        return sum(1 for status in statuses for record in self.records(status)
                   if max(record.created_at, record.run_at) < before)
