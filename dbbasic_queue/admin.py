"""dbbasic-admin's sidebar entry: "Jobs" at ``/admin/jobs``, its badge the number of failed jobs.

dbbasic-admin 0.1.1 imports ``<package>.admin`` for every ``dbbasic_*`` package it finds
(``pkgutil.iter_modules``: a regular install, or the package's directory on the path) and adds
the entries of its ``ADMIN_CONFIG`` list to the sidebar. It reads the list once per process,
so the entry is a dict that counts its badge again when it is read (at most once a second):
a failure shows up without restarting the admin. The count is cheap: failed jobs stay in the
queue file (only completed and cancelled jobs move to archive files), so it reads that file
alone, and mostly the status field of each line. The file is the module functions' queue
(``$DBBASIC_QUEUE_FILE`` or ``data/queue.tsv`` in the current directory); no file counts 0.
Reading never raises: a file that cannot be read, or a queue that is not a file (Redis), is
logged and shown without a badge.
"""

import logging
import time
from typing import Optional

from .backend import FILE
from .errors import CorruptLineError
from .model.job import parse_line, peek_listing

logger = logging.getLogger("dbbasic_queue")

REFRESH_SECONDS = 1.0


def failed_jobs() -> Optional[int]:
    """How many failed jobs the module functions' queue file holds (0 without a file), or
    None if that cannot be told (logged). Corrupt lines are not counted, as in ``stats``."""
    from . import default_queue  # the package's choice, made at each call
    try:
        queue = default_queue()
        if FILE not in queue.capabilities:
            return None
        count = 0
        for _, line in queue.table.lines():
            seen = peek_listing(line)
            if seen is None:
                try:
                    count += parse_line(line).status == "failed"
                except CorruptLineError:
                    pass
            else:
                count += seen[1] == "failed"
        return count
    except Exception as error:  # a sidebar badge must not break the admin's pages
        logger.warning("the admin's Jobs badge: cannot count the failed jobs (%s: %s)",
                       type(error).__name__, error)
        return None


class JobsEntry(dict):
    """The sidebar entry; its ``badge`` (failed jobs) is counted afresh whenever the entry is
    read, at most once every REFRESH_SECONDS, and is absent when it cannot be counted."""

    def __init__(self) -> None:
        super().__init__(icon="⏰", label="Jobs", href="/admin/jobs", order=90)
        self._counted_at: Optional[float] = None

    def _fresh(self) -> "JobsEntry":
        now = time.monotonic()
        if self._counted_at is None or now - self._counted_at >= REFRESH_SECONDS:
            self._counted_at = now
            badge = failed_jobs()
            if badge is None:
                dict.pop(self, "badge", None)
            else:
                dict.__setitem__(self, "badge", badge)
        return self

    # Every way of reading a dict (json.dumps uses items(); dict(entry) uses keys() and
    # __getitem__ once __iter__ is overridden) counts first.
    def __getitem__(self, key):
        return dict.__getitem__(self._fresh(), key)

    def get(self, key, default=None):
        return dict.get(self._fresh(), key, default)

    def __contains__(self, key) -> bool:
        return dict.__contains__(self._fresh(), key)

    def __iter__(self):
        return dict.__iter__(self._fresh())

    def __len__(self) -> int:
        return dict.__len__(self._fresh())

    def keys(self):
        return dict.keys(self._fresh())

    def values(self):
        return dict.values(self._fresh())

    def items(self):
        return dict.items(self._fresh())

    def copy(self) -> dict:
        return dict(dict.items(self._fresh()))

    def __repr__(self) -> str:
        return dict.__repr__(self._fresh())


ADMIN_CONFIG = [JobsEntry()]
"""dbbasic-admin's list of sidebar entries: icon, label, href, order and badge."""
