"""``from dbbasic.queue import Queue``: the name dbbasic-web (and the dbbasic family) imports.

This file is dbbasic-queue's only file in the ``dbbasic`` package, whose ``__init__.py``
belongs to dbbasic-tsv; it adds a module beside dbbasic-tsv's and replaces none of them.
``Queue`` here is ``dbbasic_queue.Queue`` with ``push`` and ``pop`` (see
``dbbasic_queue/compat.py``).
"""

from dbbasic_queue.family.compat import PushPopQueue as Queue

__all__ = ["Queue"]
