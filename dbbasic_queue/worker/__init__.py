"""Running jobs: one worker run (``run.py``: claim, run, record, with its settings), the
long-running worker (``loop.py``), handler time limits
(``timelimit.py``) and ``current_job()`` (``running.py``).

``import dbbasic_queue`` leaves all this out (a web process only enqueues); the first
``process_jobs`` or ``work`` imports it. A process that may change user after its imports
(``os.setuid``: root, or a process given the capability) loads here everything a
worker run may import later, among them the standard modules the core imports at first
use, since it may then no longer read the interpreter's files: such a process imports
``dbbasic_queue.worker`` before it changes user. Any other process loads those at first use
(a cron run with nothing to do loads neither periodic firing nor retry jitter).
"""

import importlib
import os

CAP_SETGID, CAP_SETUID = 6, 7  # bits of a Linux process's effective capabilities


def may_change_user() -> bool:
    """Whether this process could change its user or group: on Linux, whether it holds
    CAP_SETUID or CAP_SETGID (root does, unless they were dropped); elsewhere, whether it
    runs as root."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"CapEff:"):
                    effective = int(line.split()[1], 16)
                    return bool(effective & (1 << CAP_SETUID | 1 << CAP_SETGID))
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


if may_change_user():
    for _module in ("_strptime", "calendar", "csv", "ctypes", "datetime", "hashlib", "random",
                    "dbbasic_queue.storage.pauses", "dbbasic_queue.storage.tracebacks",
                    "dbbasic_queue.periodic.firing", "dbbasic_queue.worker.loop"):
        importlib.import_module(_module)
