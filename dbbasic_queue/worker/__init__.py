"""Running jobs: one worker run (``run.py``: claim, run, record, with its settings), the
long-running worker (``loop.py``), handler time limits
(``timelimit.py``) and ``current_job()`` (``running.py``).

``import dbbasic_queue`` leaves all this out (a web process only enqueues); the first
``process_jobs`` or ``work`` imports it. Importing this package loads everything a worker run
may import later, among them the standard modules the core imports at first use: a process
that changes user after its imports (``os.setuid``), and may then no longer read the
interpreter's files, imports ``dbbasic_queue.worker`` before it does."""

import importlib

for _module in ("calendar", "csv", "random",  # retention's days, lines dbbasic-tsv quoted, jitter
                "dbbasic_queue.storage.pauses", "dbbasic_queue.storage.tracebacks",
                "dbbasic_queue.worker.loop"):
    importlib.import_module(_module)
