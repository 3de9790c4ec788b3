"""The helpers an app's tests use (dbbasic_queue.testing and the pytest plugin), tested on a
small sample app whose own test suite runs in a real pytest process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dbbasic_queue
from dbbasic_queue import Queue
from dbbasic_queue.testing import FakeClock, immediate, queue_on, run_until_empty, using_queue

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


# --- the module-level functions in a test ------------------------------------------------------

APP_MODULE = """
import dbbasic_queue

def sign_up(email):
    return dbbasic_queue.enqueue("send_welcome", {"to": email})
"""

APP_TESTS = """
import os
from pathlib import Path

import dbbasic_queue
import shop


def test_1_the_app_s_own_enqueue_goes_to_the_fixture_s_queue(queue_file):
    job_id = shop.sign_up("ann@example.com")
    assert queue_file.get_job(job_id)["payload"] == {"to": "ann@example.com"}
    assert dbbasic_queue.get_job(job_id) == queue_file.get_job(job_id)
    assert dbbasic_queue.cancel_job(job_id) and queue_file.get_job(job_id)["status"] == "cancelled"
    assert os.environ["DBBASIC_QUEUE_FILE"] == str(queue_file.path)
    Path("fixture_job").write_text(job_id)


def test_2_after_it_the_module_functions_choose_from_the_environment_again():
    assert os.environ.get("DBBASIC_QUEUE_FILE") == "set/before.tsv"
    assert dbbasic_queue.default_queue().path == Path("set/before.tsv").resolve()
    assert dbbasic_queue.get_job(Path("fixture_job").read_text()) is None
"""


def test_queue_file_routes_an_app_s_own_enqueue_in_a_real_pytest_run(tmp_path, monkeypatch):
    # Given an app whose code calls dbbasic_queue.enqueue, and its tests using queue_file,
    # run by pytest in the app's directory with DBBASIC_QUEUE_FILE set beforehand
    app = tmp_path / "app"
    app.mkdir()
    (app / "shop.py").write_text(APP_MODULE)
    (app / "test_shop.py").write_text(APP_TESTS)
    monkeypatch.chdir(app)
    env = dict(os.environ, PYTHONPATH=str(app), DBBASIC_QUEUE_FILE="set/before.tsv")
    env.pop("DBBASIC_QUEUE_URL", None)

    # When they run (the plugin comes from the package's entry point)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "pytest"),
                           "test_shop.py"],
                          cwd=app, env=env, capture_output=True, text=True, timeout=120)

    # Then both pass, and nothing was queued in the app's own data/ or the file set before
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert not (app / "data").exists() and not (app / "set").exists()


def test_using_queue_routes_the_module_functions_and_restores_the_environment(
        tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    monkeypatch.chdir(app)
    monkeypatch.setenv("DBBASIC_QUEUE_URL", "redis://localhost:1/0")
    monkeypatch.delenv("DBBASIC_QUEUE_FILE", raising=False)
    queue = queue_on(tmp_path / "test")

    with using_queue(queue):
        job_id = dbbasic_queue.enqueue("send_welcome", {"to": "ann@example.com"})
        assert dbbasic_queue.default_queue() is queue
        assert queue.get_job(job_id)["status"] == "pending"
        assert dbbasic_queue.process_jobs({"send_welcome": lambda payload: "sent"}) == 1
        assert dbbasic_queue.get_job(job_id)["result"] == "sent"
        assert os.environ["DBBASIC_QUEUE_FILE"] == str(queue.path)
        assert "DBBASIC_QUEUE_URL" not in os.environ

    assert os.environ["DBBASIC_QUEUE_URL"] == "redis://localhost:1/0"
    assert "DBBASIC_QUEUE_FILE" not in os.environ
    monkeypatch.delenv("DBBASIC_QUEUE_URL")
    assert dbbasic_queue.default_queue() is not queue
    assert dbbasic_queue.get_job(job_id) is None
    assert not (app / "data").exists()


def test_using_queue_puts_back_the_queue_the_app_had_chosen(tmp_path):
    apps = queue_on(tmp_path / "app")
    dbbasic_queue.use_queue(apps)
    try:
        with using_queue(queue_on(tmp_path / "test")) as test_queue:
            assert dbbasic_queue.default_queue() is test_queue
        assert dbbasic_queue.default_queue() is apps
    finally:
        assert dbbasic_queue.use_queue(None) is apps


def test_a_job_enqueued_in_immediate_mode_is_looked_up_inside_the_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBBASIC_QUEUE_FILE", raising=False)
    monkeypatch.delenv("DBBASIC_QUEUE_URL", raising=False)
    with immediate({"send_welcome": lambda payload: "sent"}):
        job_id = dbbasic_queue.enqueue("send_welcome", {"to": "ann@example.com"})
        assert dbbasic_queue.get_job(job_id)["result"] == "sent"

    assert dbbasic_queue.get_job(job_id) is None  # the block's queue is gone
    assert not (tmp_path / "data").exists()
