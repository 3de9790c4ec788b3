"""The Redis backend on RQ (the ``rq`` extra): ``backend.py`` RQQueue and ``migrate``,
``jobs.py`` what makes an RQ job ours (JSON only, never unpickled), ``worker.py`` the worker
that runs our handlers, ``listing.py`` the jobs in RQ's registries, ``queues.py`` named
queues and pauses, ``unique.py`` unique keys, ``links.py`` jobs that wait for jobs,
``stops.py`` stopping a running job."""
