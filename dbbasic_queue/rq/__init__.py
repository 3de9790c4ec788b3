"""The Redis backend on RQ (the ``rq`` extra): ``backend.py`` RQQueue and ``migrate``,
``jobs.py`` what makes an RQ job ours (JSON only, never unpickled), ``worker.py`` the worker
that runs our handlers, ``listing.py`` the jobs in RQ's registries."""
