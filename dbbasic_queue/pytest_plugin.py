"""The pytest plugin installed with dbbasic-queue: the ``queue_file`` fixture.

``queue_file`` is a Queue on a temporary ``data/queue.tsv`` with a FakeClock (``queue_file.clock``,
moved by ``dbbasic_queue.testing.run_until_empty`` or by hand) and the retry jitter fixed. For
the test's duration the module-level functions use it (``dbbasic_queue.testing.using_queue``),
so app code that calls ``dbbasic_queue.enqueue`` itself queues there, not in ``./data``.
"""

import pytest

from .testing import queue_on, using_queue


@pytest.fixture
def queue_file(tmp_path):
    """A Queue on a temporary file, with a fake clock: ``queue_file.clock.advance(60)``.
    Until the test ends, ``dbbasic_queue.enqueue``, ``get_job``, ``process_jobs``, ... use it
    and ``DBBASIC_QUEUE_FILE`` names its file; then all is as it was before."""
    with using_queue(queue_on(tmp_path)) as queue:
        yield queue
