"""What a running job says and is told: its progress, and requests to stop it, in two small
files beside its worker run's liveness lock (see liveness.py), so neither costs a rewrite of
the queue file.

- ``<queue>.worker-<token>.progress`` (TSV: job_id, done, note, at): the run's jobs'
  latest progress, written only by that run, whole, atomically (temporary file, rename;
  not fsynced: a crash loses a progress report, never a job), at most about once a second;
- ``<queue>.worker-<token>.stops`` (TSV: job_id, attempt, by, at): requests to stop the
  run's jobs, one appended line each (one write with O_APPEND, so two never mix), read by
  the run as the file grows. A request names the attempt it is for, so it never stops a
  later run of the job.

A run deletes both when it ends; a dead run's are deleted by the next run's ``open`` once
its liveness lock is gone or unlocked. Readers (``job_info``, ``show``, the dashboard) look
up the run a processing job names in its options. A note or name is one line of at most
NOTE_CHARS characters; every reader shows it escaped, as any text from the file.
"""

import contextlib
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from ..errors import QueueError
from ..log import logger
from ..model.job import one_line, quote_field, unquote_field
from .files import check_regular, open_own, temporary_file
from .liveness import is_token

NOTE_CHARS = 200
MAX_BYTES = 1 << 20  # a reader reads no more of either file
PROGRESS_HEADER = b"job_id\tdone\tnote\tat\n"
STOPS_HEADER = b"job_id\tattempt\tby\tat\n"


class Progress(NamedTuple):
    """A running job's latest progress: ``done`` from 0 to 1, a ``note``, and ``at``, when
    its handler reported it (Unix time)."""

    done: float
    note: str
    at: float


class StopRequest(NamedTuple):
    job_id: str
    attempt: int
    by: str
    at: float


def checked_progress(done, note: str, at: float) -> Progress:
    """A handler's progress report, checked: ``done`` from 0 to 1, a note (ValueError or
    TypeError saying what is wrong)."""
    if isinstance(done, bool) or not isinstance(done, (int, float)) or not 0 <= done <= 1:
        raise ValueError(f"progress takes a fraction done from 0 to 1, such as 0.4, not "
                         f"{done!r}")
    return Progress(float(done), checked_note(note), at)


def checked_note(text, what: str = "note") -> str:
    """A note or a name as a file keeps it: one line, at most NOTE_CHARS characters."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    return one_line(text)[:NOTE_CHARS]


class RunNotes:
    """The progress and stop files of one queue file's worker runs."""

    def __init__(self, queue_path: Path) -> None:
        self.directory = queue_path.parent
        self.prefix = f"{queue_path.stem}.worker-"

    def _path(self, token: str, kind: str) -> str:
        return str(self.directory / f"{self.prefix}{token}.{kind}")

    def stops_path(self, token: str) -> str:
        return self._path(token, "stops")

    # --- progress: written by the run ------------------------------------------------------

    def write_progress(self, token: str, entries: Dict[str, Progress]) -> None:
        """Replace the run's progress file with ``entries`` (none: delete it)."""
        path = self._path(token, "progress")
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        lines = [PROGRESS_HEADER] + [
            f"{quote_field(job_id)}\t{entry.done:.4g}\t{quote_field(entry.note)}\t{entry.at:.3f}\n"
            .encode("utf-8", "backslashreplace") for job_id, entry in entries.items()]
        fd, temp = temporary_file(self.directory)
        try:
            try:
                os.write(fd, b"".join(lines))
                os.fchmod(fd, 0o644)  # as the liveness lock: readable by whoever reads the queue
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def progress_of(self, token: str, job_id: str) -> Optional[Progress]:
        """The latest progress run ``token`` wrote for ``job_id``, or None."""
        for fields in self._rows(self._path(token, "progress"), 4):
            if fields[0] == job_id:
                try:
                    return Progress(float(fields[1]), fields[2], float(fields[3]))
                except ValueError:
                    return None
        return None

    # --- stop requests: appended by anyone, read by the run ----------------------------------

    def ask_stop(self, token: str, request: StopRequest) -> None:
        """Append a request to stop one of run ``token``'s jobs."""
        path = self._path(token, "stops")
        line = (f"{quote_field(request.job_id)}\t{request.attempt:d}\t{quote_field(request.by)}\t"
                f"{request.at:.3f}\n").encode("utf-8", "backslashreplace")
        try:
            fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            line = STOPS_HEADER + line
        except FileExistsError:
            fd = open_own(path, os.O_WRONLY | os.O_APPEND)
        check_regular(fd, path)  # closes it if it is not a regular file
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def stop_requests(self, token: str, offset: int) -> Tuple[List[StopRequest], int]:
        """The requests appended to run ``token``'s stops file from ``offset`` on, and the
        offset after the last whole line read."""
        path = self._path(token, "stops")
        try:
            fd = open_own(path, os.O_RDONLY)
        except FileNotFoundError:
            return [], offset
        size = check_regular(fd, path).st_size  # closes it if it is not a regular file
        try:
            if size <= offset:
                return [], offset
            data = os.pread(fd, min(size - offset, MAX_BYTES), offset)
        finally:
            os.close(fd)
        whole = data.rfind(b"\n") + 1  # a line being appended is read next time
        requests = []
        for line in data[:whole].splitlines():
            fields = [unquote_field(field) for field in line.decode("utf-8", "replace").split("\t")]
            if len(fields) == 4 and None not in fields and fields[1].isdigit():
                with contextlib.suppress(ValueError):
                    requests.append(StopRequest(fields[0], int(fields[1]), fields[2],
                                                float(fields[3])))
        return requests, offset + whole

    def stop_request_for(self, token: str, job_id: str, attempt: int) -> Optional[str]:
        """Who asked run ``token`` to stop attempt ``attempt`` of ``job_id``, or None."""
        requests, _ = self.stop_requests(token, 0)
        return next((request.by for request in requests
                     if request.job_id == job_id and request.attempt == attempt), None)

    # --- both --------------------------------------------------------------------------------

    def remove(self, token: str) -> None:
        """Delete run ``token``'s files (it has ended); what cannot be deleted (a directory
        planted at the name, say) is left, and never stops a run."""
        for kind in ("progress", "stops"):
            try:
                os.unlink(self._path(token, kind))
            except FileNotFoundError:
                pass
            except OSError as error:
                logger().warning("could not delete %s (%s)", self._path(token, kind),
                               error.strerror or error)

    def tokens(self) -> List[str]:
        """The runs that have a progress or stops file (a name with no run's token is no
        run's, and left alone)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = set()
        for name in names:
            stem, dot, kind = name.rpartition(".")
            token = stem[len(self.prefix):]
            if name.startswith(self.prefix) and kind in ("progress", "stops") and is_token(token):
                found.add(token)
        return sorted(found)

    def _rows(self, path: str, width: int) -> List[List[str]]:
        try:
            fd = open_own(path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except (OSError, QueueError):
            return []  # planted, or another user's: no progress shown
        try:
            check_regular(fd, path)
        except QueueError:
            return []
        with open(fd, "rb") as file:
            data = file.read(MAX_BYTES)
        rows = []
        for line in data.splitlines()[1:]:
            fields = [unquote_field(field) for field in line.decode("utf-8", "replace").split("\t")]
            if len(fields) == width and None not in fields:
                rows.append(fields)
        return rows
