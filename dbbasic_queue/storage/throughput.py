"""Throughput: how many jobs finished each minute, kept beside the queue for ``stats``.

``data/queue.counts.2026-12-07.tsv`` (a dated file, kept as history.py keeps every one:
whole-line appends under its own flock, a torn tail never left as a line, deleted whole
with retention) has one line per worker and minute in which it finished jobs: the minute
(the Unix time of its start), the worker's name (as in the registry), and its completed,
failed and retried counts. A worker appends its minutes when it writes its registry line
(when a run ends, and every 10 s while a loop worker or a long run goes on), so a minute may
have several lines; readers add them up. A minute without a finished job writes nothing,
so the cost follows the minutes worked, not the jobs: at most one line per worker report.

A reader kept alive (the dashboard's) keeps each day's counts by minute and, at its next
look, reads only the lines appended since (history.follow): a chart of a week costs the
lines written since the last refresh, not the week's.
"""

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import QueueError
from .history import DatedFiles, Place, day_of, day_start, follow

COLUMNS = ("minute", "worker", "completed", "failed", "retried")
OUTCOMES = COLUMNS[2:]
# completed_jobs, failed_jobs, retried_jobs in the header: see workers.HEADER.
HEADER = ("\t".join(COLUMNS[:2] + tuple(f"{outcome}_jobs" for outcome in OUTCOMES)) + "\n"
          ).encode()

Counts = Dict[str, int]


class Throughput:
    """The counts files of one queue file."""

    def __init__(self, queue_path: Path) -> None:
        self.queue_path = queue_path
        self.dated = DatedFiles(queue_path, HEADER, kind="counts")
        self._read: Dict[Any, Tuple[Optional[Place], Optional[Dict[int, Counts]]]] = {}
        self._reading = threading.Lock()

    def add(self, worker: str, minutes: Dict[int, Counts]) -> None:
        """Append ``worker``'s counts of each of ``minutes`` (minute start -> counts)."""
        by_day: Dict[str, list] = {}
        for minute, counts in sorted(minutes.items()):
            if any(counts.values()):
                fields = [str(minute), worker.replace("\t", " ")] + [
                    str(counts.get(outcome, 0)) for outcome in OUTCOMES]
                by_day.setdefault(day_of(minute), []).append("\t".join(fields) + "\n")
        if not by_day:
            return
        model = None
        with contextlib.suppress(FileNotFoundError):
            model = os.stat(self.queue_path)
        for day, lines in by_day.items():
            self.dated.append(day, ["".join(lines).encode("utf-8", "backslashreplace")], model,
                              durable=False)

    def minutes(self, since: float, until: float) -> List[Tuple[int, Counts]]:
        """(minute, counts) of every minute starting in [since, until) with counts, each
        minute's lines added up, in no particular order. Under the reader's lock: threads
        (the dashboard's) share what it keeps, and bringing it up to date changes it."""
        files = self.dated.files()
        found = []
        with self._reading:
            for gone in set(self._read) - {path for _, path in files}:
                del self._read[gone]
            for day, path in files:
                start = day_start(day)
                if start + 86400 <= since or start >= until:
                    continue
                found.extend((minute, dict(counts)) for minute, counts in self._day(path).items()
                             if since <= minute < until)
        return found

    def _day(self, path) -> Dict[int, Counts]:
        """A day file's counts by minute, kept with the place read up to: read again, the
        file costs only the lines appended since."""
        place, by_minute = self._read.get(path, (None, None))
        try:
            followed = follow(path, place)
        except QueueError:  # planted (a FIFO, a link): counts are a view, it is left out
            followed = None
        if followed is None:
            self._read.pop(path, None)
            return {}
        again, lines, place = followed
        if again or by_minute is None:
            by_minute = {}
        for _, line in lines:
            fields = line.rstrip(b"\r\n").split(b"\t")
            if len(fields) != len(COLUMNS):
                continue
            try:
                minute = int(fields[0])
                counts = [int(field) for field in fields[2:]]
            except ValueError:
                continue  # a hand-edited line: counts are a view, not the record
            if min(counts) < 0:
                continue
            kept = by_minute.get(minute)
            if kept is None:
                by_minute[minute] = dict(zip(OUTCOMES, counts))
            else:
                for outcome, count in zip(OUTCOMES, counts):
                    kept[outcome] += count
        self._read[path] = (place, by_minute)
        return by_minute

    def series(self, now: float, step: int, steps: int) -> Dict[str, Any]:
        """The counts of each of the last ``steps`` spans of ``step`` seconds (60: minutes,
        3600: hours), the span holding ``now`` last: {"starts": [their starts], "step",
        "completed": [...], "failed": [...], "retried": [...]}."""
        current = int(now) // step * step
        first = current - (steps - 1) * step
        series: Dict[str, List[int]] = {outcome: [0] * steps for outcome in OUTCOMES}
        for minute, counts in self.minutes(first, current + step):
            at = (minute - first) // step
            for outcome, count in counts.items():
                series[outcome][at] += count
        return dict(series, starts=[first + n * step for n in range(steps)], step=step)

    def totals(self, now: float) -> Dict[str, Counts]:
        """The counts of the last minute, hour and day before ``now``, by whole minutes:
        each span also holds the current minute (the last minute: this one and the one
        before it)."""
        current = int(now) // 60 * 60
        spans = {"last_minute": 60, "last_hour": 3600, "last_day": 86400}
        totals = {name: dict.fromkeys(OUTCOMES, 0) for name in spans}
        for minute, counts in self.minutes(current - 86400, current + 60):
            for name, span in spans.items():
                if minute >= current - span:
                    for outcome, count in counts.items():
                        totals[name][outcome] += count
        return totals

    def remove_expired(self, drop_before: float) -> None:
        for path in self.dated.expired(drop_before):
            self.dated.unlink(path)
