"""The TSV engine: the only code that knows files, locks and the lines on disk.

``table.py`` the queue file (lock, append, atomic rewrite, and the Editor that decides each
line of a rewrite), ``files.py`` how every file beside the queue is opened and what a rewrite keeps,
``claim.py`` the worker's rewrite (claim, settle, renew, release), ``liveness.py`` which
worker runs live and which jobs a dead one had started, ``edits.py`` the admin
verbs' rewrites (cancel, retry, purge, bring back from the archive), ``archive.py`` the dated
archive files, ``tracebacks.py`` failed attempts' tracebacks, ``unique.py`` the unique-key
index, ``stats.py`` the counts.
"""
