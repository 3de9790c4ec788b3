"""Editing a file line by line during a rewrite: the Editor that decides each line, the
Bookmark that lets a worker's next rewrite skip what it has already looked at, and the copying
that passes lines through an editor or, once it is done, in large blocks."""

import os
from dataclasses import dataclass
from typing import Optional


class Editor:
    """Decides each job line of a rewrite: returns the line to write in its place, or None
    to drop it. It sets ``changed`` once it has changed anything (a rewrite that changes
    nothing is skipped), and ``done`` once it will change nothing more (the rest of the file
    is then copied as it is, without a look at each line)."""

    changed = False
    done = False
    position = 0  # set before each call: where the returned line starts in the new file
    resume_offset: Optional[int] = None  # set by the editor: see Bookmark
    # A last line without its newline, left by a writer killed mid-append, is ended and kept
    # (a corrupt line); False drops it, for a file whose every such piece has its job
    # elsewhere (an archive file's, see archive.py).
    ends_torn_line = True
    bookmark: Optional["Bookmark"] = None  # set by a rewrite that took place

    def __call__(self, line: bytes) -> Optional[bytes]:
        return line

    def commit(self) -> None:
        """Called with the lock held, the new file written and fsynced, just before it is
        renamed over the table: what must be durable before the new file is (archived lines)."""

    def abandon(self) -> None:
        """Called when this editor's rewrite will not be renamed into place."""


def same_file(fd: int, current: os.stat_result) -> bool:
    """Whether ``current`` describes the file open at ``fd``. Comparing inode numbers is
    enough only because ``fd`` holds that file open: a rewrite frees the old file's inode,
    and the next rewrite often gets the same number."""
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


@dataclass(frozen=True)
class Bookmark:
    """Where a worker's next rewrite may start editing: ``offset`` in a file it wrote itself.

    Until then that file only grows by appends, so the lines before ``offset`` (which its
    worker has already looked at) can be copied as they are. ``fd`` keeps the file open, so
    its inode cannot be reused; the owner closes it.
    """

    fd: int
    offset: int

    def still_current(self, current: os.stat_result) -> bool:
        return same_file(self.fd, current) and self.offset <= current.st_size

    def close(self) -> None:
        os.close(self.fd)


def edit_lines(source, out, edit: Editor, limit: Optional[int]) -> int:
    """Copy complete lines from ``source`` through ``edit``, reading at most ``limit`` bytes
    (all if None, with the lock held: then a final line without a newline, left by a writer
    killed mid-append, is kept as it is and ended, or dropped: see ``ends_torn_line``).
    Returns the bytes consumed."""
    consumed, written = 0, out.tell()
    for line in source:
        if edit.done:
            return consumed + copy_verbatim(source, out, line, None if limit is None else limit - consumed,
                                            edit.ends_torn_line)
        if not line.endswith(b"\n"):
            if limit is not None:
                break  # still being appended: the locked pass copies it
            if edit.ends_torn_line:
                out.write(line + b"\n")
        elif limit is not None and consumed + len(line) > limit:
            break
        else:
            edit.position = written
            new = edit(line)
            if new is not None:
                written += out.write(new)
        consumed += len(line)
    return consumed


def copy_verbatim(source, out, data: bytes, budget: Optional[int], end_torn: bool = True) -> int:
    """Copy ``data`` and what follows it in ``source`` unchanged, in large blocks. With a
    ``budget`` (the pass without the lock), at most that many bytes and only whole lines;
    without, to the end, ending a last line that has no newline (dropping it if not
    ``end_torn``). Returns the bytes consumed (``source`` may have been read beyond them)."""
    consumed = 0
    while True:
        if budget is not None:
            data = data[:budget - consumed]
        whole = data.rfind(b"\n") + 1
        out.write(data[:whole])
        consumed += whole
        data = data[whole:]  # the start of a line that continues in the next block
        more = source.read(1 << 20) if budget is None or consumed + len(data) < budget else b""
        if not more:
            break
        data += more
    if data and budget is None:
        if end_torn:
            out.write(data + b"\n")
        consumed += len(data)
    return consumed
