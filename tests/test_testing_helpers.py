"""The helpers an app's tests use (dbbasic_queue.testing and the pytest plugin), tested on a
small sample app whose own test suite runs in a real pytest process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.testing import FakeClock, run_until_empty

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"


def test_the_sample_app_s_tests_pass_with_the_installed_plugin():
    # The plugin comes from the package's entry point: the sample app has no conftest.
    assert not (SAMPLE_APP / "conftest.py").exists()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
                          cwd=SAMPLE_APP, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(SAMPLE_APP)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_run_until_empty_needs_a_fake_clock_and_stops_a_job_that_never_ends(tmp_path):
    with pytest.raises(RuntimeError, match="FakeClock"):
        run_until_empty(Queue(tmp_path / "queue.tsv"))
    from dbbasic_queue import Retry
    queue = Queue(tmp_path / "forever.tsv", clock=FakeClock())
    queue.enqueue("again", {})

    def again(payload):
        raise Retry(delay=60)
    with pytest.raises(RuntimeError, match="still pending after 5 runs"):
        run_until_empty(queue, {"again": again}, max_runs=5)
