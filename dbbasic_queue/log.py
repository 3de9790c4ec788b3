"""The package's logger, ``dbbasic_queue``, for the modules a process that only enqueues loads.

``logger()`` imports ``logging`` at the first message, so a web process's enqueue, or a
``python -c`` hook, never loads it (with the traceback, tokenize and threading modules it
brings). The worker, periodic jobs and the faces log through ``logging.getLogger`` as usual.
"""


def logger():
    import logging
    return logging.getLogger("dbbasic_queue")
