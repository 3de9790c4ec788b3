"""Rate limits: at most N starts in any period of S seconds for one key (a job type, or a
job's ``rate_key``), across every worker, thread and process on the machine.

A key's window is a small file beside the queue, ``queue.rate-<digest>.tsv``: its first line
the key, then one line per start, the moment a worker claimed a job of the key (a Unix time
with milliseconds). A claim takes the file's flock, counts the starts inside the last S
seconds, and either appends one (the job may start) or tells when the oldest start leaves
the window (the job waits until then, pending, its attempts untouched). The file only grows by
whole-line appends under the flock and is replaced whole (temporary file, rename) once it
holds more than twice the starts a window allows; a line cut short by a kill is ignored, so
a crash can only forget a start that was being written, never count one twice.

A start is counted when the job is claimed: a job claimed and then put back unstarted (a
SIGTERM) has used its start. A claim whose rewrite is not renamed into place (another worker's
won the race) takes its starts back: it appends ``-<moment>``, which cancels that start.
"""

import contextlib
import os
from pathlib import Path
from typing import List, Optional

from .files import keep_mode_and_owner, key_digest, lock_current, temporary_file, unlock

STALE_RATE_SECONDS = 86400  # a window file untouched this long is deleted


class Rates:
    """The rate-limit windows of one queue file."""

    def __init__(self, queue_path: Path) -> None:
        self.directory = queue_path.parent
        self.prefix = f"{queue_path.stem}.rate-"

    def path(self, key: str) -> Path:
        digest = key_digest(key)
        return self.directory / f"{self.prefix}{digest}.tsv"

    def start(self, key: str, starts: int, seconds: int, now: float) -> Optional[float]:
        """Count a start of ``key`` now if fewer than ``starts`` began in the last
        ``seconds``, and return None; else return when the next start will be allowed."""
        path = str(self.path(key))
        try:
            fd, status = lock_current(path, os.O_RDWR | os.O_APPEND, create=True)
        except FileNotFoundError:  # no directory: nothing to run anyway
            return None
        try:
            data = os.pread(fd, status.st_size, 0) if status.st_size else b""
            moments = _moments(data)
            recent = [moment for moment in moments if moment > now - seconds]
            if len(recent) >= starts:
                return min(recent[-starts:]) + seconds
            if not data:
                os.write(fd, key.encode("utf-8", "backslashreplace") + b"\n")
            elif not data.endswith(b"\n"):
                os.write(fd, b"\n")  # a start cut short by a kill: ended, and ignored
            os.write(fd, f"{now:.3f}\n".encode())
            if len(moments) > 2 * starts + 16:
                self._compact(path, key, recent + [now], fd)
            return None
        finally:
            unlock(fd)

    def forget(self, key: str, moment: float) -> None:
        """Take back the start counted at ``moment`` (a claim that did not take place)."""
        try:
            fd, _ = lock_current(str(self.path(key)), os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return
        try:
            os.write(fd, f"-{moment:.3f}\n".encode())
        finally:
            unlock(fd)

    def _compact(self, path: str, key: str, moments: List[float], locked: int) -> None:
        """Replace the window file by one holding only ``moments`` (with its flock held,
        ``locked``: a claim waiting on the old file then opens the new one)."""
        temp_fd, temp = temporary_file(self.directory)
        try:
            with open(temp_fd, "wb") as out:
                out.write(key.encode("utf-8", "backslashreplace") + b"\n")
                out.write(b"".join(f"{moment:.3f}\n".encode() for moment in moments))
                out.flush()
                keep_mode_and_owner(out.fileno(), os.fstat(locked), path)
            os.replace(temp, path)
            temp = None
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def remove_stale(self, now: float) -> None:
        """Delete window files no claim touched for a day."""
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(self.prefix) and entry.name.endswith(".tsv"):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < now - STALE_RATE_SECONDS:
                            fd, _ = lock_current(entry.path, os.O_RDONLY)
                            try:
                                os.unlink(entry.path)
                            finally:
                                unlock(fd)


def _moments(data: bytes) -> List[float]:
    """The starts in a window file's bytes (after its key line), oldest first, less those
    taken back (``-<moment>``); a line that does not read as a time (cut short by a kill) is
    ignored."""
    moments, taken_back = [], []
    for line in data.split(b"\n")[1:]:
        try:
            moment = float(line)
        except ValueError:
            continue
        (taken_back.append(-moment) if line.startswith(b"-") else moments.append(moment))
    for moment in taken_back:
        if moment in moments:
            moments.remove(moment)
    return moments
