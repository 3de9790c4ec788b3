"""The TSV engine: the only code that knows files, locks and the lines on disk.

``engine.py`` the verbs a worker run asks of it (open, exchange: settle, renew, release and
fetch in one rewrite; started, close), ``table.py`` the queue file (lock, append, atomic
rewrite, and the Editor that decides each line of a rewrite), ``files.py`` how every file
beside the queue is opened and what a rewrite keeps, ``claim.py`` the claim logic (the
editor of a worker's rewrite), ``choosing.py`` a ranked claim's look and what a run keeps of
it, ``liveness.py`` which worker runs live and which jobs a dead one had started,
``edits.py`` the admin verbs' rewrites (cancel, retry, purge, bring back from the archive),
``history.py`` every dated file (append, torn tails, expiry), ``archive.py`` finished jobs'
files, ``tracebacks.py`` failed attempts' tracebacks, ``unique.py`` the unique-key index,
``pauses.py``, ``slots.py`` and ``rates.py`` what pauses and limits keep, ``workers.py``
the worker registry, ``throughput.py`` the jobs finished per minute, ``stats.py`` the
counts.
"""
