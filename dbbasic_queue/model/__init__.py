"""The job and its life, pure: nothing here reads a clock, opens a file or takes a lock.

``job.py`` the line format (the one judgement of a line) and its JSON values,
``transitions.py`` a job's life as functions (claim, complete, fail with ``retry_delay``,
cancel, retry, run now), ``options.py`` per-job options and ``Retry``, ``checks.py`` the
caller's arguments, checked before anything is written, ``words.py`` counts and durations as
messages say them.
"""
