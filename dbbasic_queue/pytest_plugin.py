"""The pytest plugin installed with dbbasic-queue: the ``queue_file`` fixture.

``queue_file`` is a Queue on a temporary ``data/queue.tsv`` with a FakeClock (``queue_file.clock``,
moved by ``dbbasic_queue.testing.run_until_empty`` or by hand) and the retry jitter fixed.
"""

import pytest

from .testing import queue_on


@pytest.fixture
def queue_file(tmp_path):
    """A Queue on a temporary file, with a fake clock: ``queue_file.clock.advance(60)``."""
    return queue_on(tmp_path)
