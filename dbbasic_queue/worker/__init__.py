"""Running jobs: one worker run (``run.py``: claim, run, record, with its settings), the
long-running worker (``loop.py``), handler time limits
(``timelimit.py``) and ``current_job()`` (``running.py``)."""
