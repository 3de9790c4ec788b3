"""Where the dashboard's jobs come from: the TSV queue's files, or any backend's ``jobs()``.

``FileReader`` (a backend declaring ``file``, the TSV queue) streams the queue file and its
archive files and looks at each line cheaply (``job.peek_listing``, and byte searches for the
filters), so 100,000 jobs cost a fraction of a second; only the lines a page shows are parsed
in full. ``ListingReader`` uses ``jobs()`` of any backend declaring ``listing``. A backend
with neither has no reader: the dashboard then looks its jobs up by id.
"""

import array
import itertools
import json
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .. import backend as interface
from ..errors import CorruptLineError
from ..model.job import as_dict, corrupt_message, job_with_id_prefix, line_id, parse_line, peek_listing
from ..model.checks import checked_job_type
from ..model.options import decode_options
from .reading import Active, Reader, Record, Tally, matches, search_fragments


class FileReader(Reader):
    """Reads the TSV queue's file and its archive files line by line, parsing only what a
    page shows."""

    def __init__(self, queue, clock: Callable[[], float]) -> None:
        super().__init__(queue, clock)
        self.table = queue.table
        self.archive = getattr(queue, "archive", None)  # finished jobs, in files of their day
        self._archived: Dict[Any, tuple] = {}  # path -> (place, tally, id keys, usable)
        self._tallying = threading.Lock()  # one count at a time brings the kept tallies up

    def archive_files(self) -> List[Any]:
        return [path for _, path in self.archive.files()] if self.archive is not None else []

    def signature(self) -> Optional[tuple]:
        files = []
        for path in self.archive_files():
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            files.append((path.name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return self.table.signature(), tuple(files)

    def sources(self) -> Iterator[Tuple[Any, Iterator[Tuple[int, bytes]], Optional[set]]]:
        """(file, its numbered lines, the ids to skip in it) for the archive files, oldest
        first, then the queue file, as Queue.jobs lists them. A job moved back from an archive
        file (a retry) is in both for a moment: only its live line counts."""
        files = self.archive_files()
        if not files:
            yield self.table.path, self.table.lines(), None
            return
        live = list(self.table.lines())
        current = {line_id(line) for _, line in live}
        for path in files:
            yield path, self.archive.table_of(path).lines(), current
        yield self.table.path, iter(live), None

    def records(self, status=None, job_type=None, search=None, corrupt=None, types=None):
        order = itertools.count(1)
        for path, lines, skip in self.sources():
            yield from self.records_in(path, lines, skip, order, status, job_type, search,
                                       corrupt, types)

    def records_in(self, path, lines, skip, order, status=None, job_type=None, search=None,
                   corrupt=None, types=None) -> Iterator[Record]:
        """The records of one file's ``lines`` that match, numbered from ``order``; a line
        whose id is in ``skip`` is left out, a corrupt one added to ``corrupt``; ``types``
        gets each line's type field as it is written (see ``type_names``)."""
        # Byte searches first: a line lacking the status word, the type or a search fragment
        # cannot match, and skipping it costs a fraction of a parse.
        status_word = status.encode() if status else None
        type_word = job_type.replace('"', '""').encode() if job_type else None
        fragments = search_fragments(search) if search else []
        for number, line in lines:
            place = next(order)
            if types is not None:
                start = line.find(b"\t") + 1
                types.add(line[start:line.find(b"\t", start)])
            if ((status_word is not None and status_word not in line)
                    or (type_word is not None and type_word not in line)):
                continue
            if skip and line[:line.find(b"\t")] in skip:
                continue
            if fragments:
                lower = line.lower()
                if not all(fragment in lower for fragment in fragments):
                    continue
            record = judged(line, path, number, place, corrupt)
            if record is None:
                continue
            if (status and record.status != status) or (job_type and record.type != job_type):
                continue
            if search:
                job = parse_line(line)
                if not matches(search, job.id, job.payload, job.error):
                    continue
            yield record

    def _count(self, now: float) -> Dict[str, Any]:
        """As Reader._count, with each archive file's tally kept between calls: a file read
        before costs only the lines appended to it since (archive files only grow, or are
        replaced whole), so an overview refreshed every few seconds costs the live file and
        what moved into the archive, not the archive's week."""
        files = self.archive_files()
        if not files:
            return super()._count(now)
        with self._tallying:
            live = list(self.table.lines())
            current = {line_id(line) for _, line in live}
            current_keys = {id_key(job_id) for job_id in current}
            tally, active, corrupt, order = Tally(), Active(now, self), [], itertools.count(1)
            for gone in set(self._archived) - set(files):
                del self._archived[gone]
            for path in files:
                kept = self._archived_tally(path, current_keys)
                if kept is not None:
                    tally.add_tally(kept)
                    continue
                for record in self.records_in(path, self.archive.table_of(path).lines(),
                                              current, order, corrupt=corrupt):
                    tally.add(record)
                    if record.status in ("pending", "processing"):
                        active.add(record)
            for record in self.records_in(self.table.path, iter(live), None, order,
                                          corrupt=corrupt):
                tally.add(record)
                if record.status in ("pending", "processing"):
                    active.add(record)
            tally.corrupt += len(corrupt)
        return self._figures(now, tally, active)

    def _archived_tally(self, path, current_keys: set) -> Optional[Tally]:
        """The tally of an archive file, brought up to date with the lines appended since it
        was kept; None when it cannot stand for the file: it holds a job to run or running
        (no writer of ours puts one there), or may hold a job the live file holds too (a
        retry moves a job back: only its live line counts). ``current_keys``: the live
        file's ids as ``id_key`` makes them; the file's are kept the same way, 8 bytes each."""
        place, tally, keys, usable = self._archived.get(path, (None, None, None, True))
        followed = self.archive.table_of(path).follow(place)
        if followed is None:
            self._archived.pop(path, None)
            return Tally()
        again, lines, place = followed
        if again or tally is None:
            tally, keys, usable = Tally(), array.array("Q"), True
        corrupt: List[Any] = []
        for number, line in lines:
            keys.append(id_key(line[:line.find(b"\t")]))
            record = judged(line, path, number, 0, corrupt)
            if record is None:
                continue
            usable = usable and record.status not in ("pending", "processing")
            tally.add(record)
        tally.corrupt += len(corrupt)
        self._archived[path] = (place, tally, keys, usable)
        return tally if usable and current_keys.isdisjoint(keys) else None

    @staticmethod
    def type_names(types: set) -> List[str]:
        """The type fields gathered, as names: unquoted where the file quotes them; a field
        that is no type's (a corrupt line's) is left out."""
        names = set()
        for field in types:
            if field[:1] == b'"' and field[-1:] == b'"' and len(field) > 1:
                field = field[1:-1].replace(b'""', b'"')
            try:
                names.add(checked_job_type(field.decode("utf-8")))
            except (UnicodeDecodeError, TypeError, ValueError):
                continue
        return sorted(names)

    def load(self, record: Record) -> Dict[str, Any]:
        job = parse_line(record.source)
        try:
            shown = as_dict(job)
            shown["options"] = decode_options(job.options)
        except ValueError as error:
            raise CorruptLineError(corrupt_message(*record.where, error)) from None
        return shown

    def last_attempts(self, job_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        """One pass over the traceback files (see Reader.last_attempts)."""
        return self.backend.traceback_files.last_attempts()

    def options_of(self, job_id: str) -> Optional[Dict[str, Any]]:
        prefix = job_with_id_prefix(job_id)
        if prefix is None:
            return None
        line = next((line for _, line in self.table.lines() if line.startswith(prefix)), None)
        if line is None and self.archive is not None:
            found = self.archive.find(prefix)
            line = None if found is None else found[2]
        try:
            return None if line is None else decode_options(parse_line(line).options)
        except (CorruptLineError, ValueError):
            return None


class ListingReader(Reader):
    """Reads any backend that lists its jobs (``jobs()``), as get_job dicts."""

    def records(self, status=None, job_type=None, search=None, corrupt=None, types=None):
        for number, job in enumerate(self.backend.jobs(), start=1):
            if types is not None:
                types.add(job["type"])
            if (status and job["status"] != status) or (job_type and job["type"] != job_type):
                continue
            if search and not matches(search, job["id"], json.dumps(job["payload"],
                                                                     ensure_ascii=False),
                                      job["error"]):
                continue
            yield Record(job["type"], job["status"], int(job["created_at"]), int(job["run_at"]),
                         number, job)

    def load(self, record: Record) -> Dict[str, Any]:
        return dict(record.source, options=record.source.get("options"))


def id_key(job_id: bytes) -> int:
    """A job id as 64 bits, for telling cheaply whether two files may hold one job: two ids
    with one key (one chance in 2**64 a pair) only send a count the long way."""
    return hash(job_id) & 0xFFFF_FFFF_FFFF_FFFF


def judged(line: bytes, path, number: int, order: int, corrupt: Optional[List[Any]]
           ) -> Optional[Record]:
    """A line as a Record, judged as parse_line judges it (peek_listing where it can tell,
    parse_line where only it can); None for a corrupt line, then added to ``corrupt``."""
    peek = peek_listing(line)
    if peek is None:
        try:
            job = parse_line(line)
        except CorruptLineError:
            if corrupt is not None:
                corrupt.append((path, number))
            return None
        peek = (job.type, job.status, job.created_at, job.run_at)
    return Record(peek[0], peek[1], peek[2], peek[3], order, line, (path, number))


def reader_for(backend, clock: Callable[[], float]) -> Optional[Reader]:
    """The cheapest reader the backend allows, or None if it cannot list its jobs."""
    capabilities = getattr(backend, "capabilities", frozenset())
    if interface.FILE in capabilities and hasattr(getattr(backend, "table", None), "lines"):
        return FileReader(backend, clock)
    if interface.LISTING in capabilities:
        return ListingReader(backend, clock)
    return None
