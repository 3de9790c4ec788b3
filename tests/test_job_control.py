"""A running job's progress and stopping it (worker/control.py, storage/notes.py): what a
handler reports through current_job(), what Queue.job_info, show and the dashboard see, and
Queue.stop, cooperative and forced, in the main thread and in threads; then real processes:
the command line against a cron worker, and a SIGKILLed worker's files."""

import threading

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.storage.notes import StopRequest
from dbbasic_queue.worker.running import current_job, with_current_job
from support import FakeClock, in_background, kill, wait_for




def cooperative(log):
    def handler(payload):
        job = current_job()
        step = 0
        while not job.stop_requested:
            job.progress(min(step / 1000, 1), note=f"{step} done")
            step += 1
            stop_seen.wait(0.01)
        log.append(step)
        return {"stopped_at": step}
    return handler


stop_seen = threading.Event()  # never set: its wait is a sleep the test does not time


def stubborn(payload):
    while True:  # ignores stop requests: only the interruption ends it
        sum(range(100))


# --- progress ---------------------------------------------------------------------------

def test_progress_reaches_job_info_within_a_second_without_writing_the_queue_file(real_queue):
    # Given a handler that reports its progress many times, then waits to be released
    release, reported = threading.Event(), threading.Event()

    def handler(payload):
        for step in range(1, 501):
            current_job().progress(step / 1000, note=f"{step} of 1000")
        reported.set()
        release.wait(30)
        return "done"
    job_id = real_queue.enqueue("export", {})
    thread, _ = in_background(real_queue, {"export": handler})
    reported.wait(30)
    before = real_queue.path.stat()
    # When a reader asks while it runs
    info = wait_for(lambda: (real_queue.job_info(job_id) or {}).get("progress"),
                    seconds=5, what="the progress to be visible")
    # Then it sees the latest report, and the queue file was not rewritten for it
    assert (info["done"], info["note"]) == (0.5, "500 of 1000")
    after = real_queue.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    release.set()
    thread.join(30)
    # And once the job ended, its progress file is gone with its run
    assert real_queue.job_info(job_id)["progress"] is None
    assert not list(real_queue.path.parent.glob("*.progress"))


def test_threads_a_handler_starts_report_progress_and_see_a_stop_through_with_current_job(
        real_queue):
    # Given a handler whose work runs in an executor's threads and in a thread of its own
    from concurrent.futures import ThreadPoolExecutor
    release, seen = threading.Event(), {}

    def part(number):
        current_job().progress(number / 4, note=f"part {number}")
        return current_job().id

    def watcher():
        while not current_job().stop_requested:
            release.wait(0.01)
        seen["stop"] = True

    def handler(payload):
        assert current_job() is not None
        with ThreadPoolExecutor(4) as pool:
            seen["ids"] = set(pool.map(with_current_job(part), range(1, 5)))
        current_job().progress(0.5, note="parts done")  # the handler's own, last
        thread = threading.Thread(target=with_current_job(watcher))
        thread.start()
        thread.join(30)
        seen["unwrapped"] = pool_less_current_job()
    job_id = real_queue.enqueue("export", {})
    thread, _ = in_background(real_queue, {"export": handler})
    # When it runs, its parts' progress is the job's, and a stop reaches its thread
    info = wait_for(lambda: (real_queue.job_info(job_id) or {}).get("progress"), seconds=10,
                    what="the progress to be visible")
    assert 0 < info["done"] <= 1
    assert real_queue.stop(job_id, by="ann")
    thread.join(30)
    # Then every thread knew the job, the stop reached the watcher, and the job ended cancelled
    assert seen == {"ids": {job_id}, "stop": True, "unwrapped": None}
    assert real_queue.get_job(job_id)["status"] == "cancelled"


def test_the_guide_s_executor_example_reports_each_part_s_progress(real_queue):
    # Given docs/workflows.md's example of with_current_job, as written there
    import re
    from pathlib import Path
    guide = (Path(__file__).resolve().parent.parent / "docs" / "workflows.md").read_text()
    [example] = [block for block in re.findall(r"```python\n(.*?)```", guide, re.S)
                 if "with_current_job(" in block]
    resized, seen = [], []
    namespace = {"queue": real_queue, "resize": resized.append}
    exec(compile(example, "docs/workflows.md", "exec"), namespace)
    real_job = namespace["resize_one"]
    namespace["resize_one"] = lambda number, path: (real_job(number, path),
                                                    seen.append(current_job().id))
    # When a worker runs it over 100 paths
    job_id = real_queue.enqueue("resize_album", {"paths": [f"p{n}.jpg" for n in range(100)]})
    assert real_queue.process_jobs(real_queue.handlers) == 1
    # Then each path was resized in the executor's threads, knowing its job
    assert real_queue.get_job(job_id)["status"] == "completed"
    assert sorted(resized) == sorted(f"p{n}.jpg" for n in range(100))
    assert seen == [job_id] * 100


def pool_less_current_job():
    """current_job() in a plain thread started without with_current_job: None."""
    found = []
    thread = threading.Thread(target=lambda: found.append(current_job()))
    thread.start()
    thread.join(30)
    return found[0]


@pytest.mark.parametrize("done", [1.5, -0.1, "half", True, None])
def test_progress_takes_a_fraction_from_0_to_1(real_queue, done):
    job_id = real_queue.enqueue("export", {})
    real_queue.process_jobs({"export": lambda payload: current_job().progress(done)},
                            max_attempts=1)
    assert real_queue.get_job(job_id)["error"].startswith("ValueError: progress takes a "
                                                          "fraction done from 0 to 1")


def test_job_info_has_the_published_keys_and_what_else_is_known(real_queue):
    first = real_queue.enqueue("charge", {"order": 7}, max_attempts=2)
    waiting = real_queue.enqueue("receipt", {}, depends_on=first)
    info = real_queue.job_info(first)
    assert {key: info[key] for key in real_queue.get_job(first)} == real_queue.get_job(first)
    assert (info["options"], info["progress"], info["stop_requested"], info["waiting"]) == (
        {"max_attempts": 2, "then": [waiting]}, None, None, None)
    assert real_queue.job_info(waiting)["waiting"] == f"for 1 job: {first}"
    assert real_queue.job_info("0123456789abcdef") is None


# --- stop ---------------------------------------------------------------------------------

def test_a_cooperative_handler_sees_the_stop_and_its_job_ends_cancelled_naming_who_asked(
        real_queue):
    log = []
    job_id = real_queue.enqueue("export", {})
    after = real_queue.enqueue("email_export", {}, depends_on=job_id)
    thread, outcome = in_background(real_queue, {"export": cooperative(log),
                                                 "email_export": lambda payload: None})
    wait_for(lambda: (real_queue.job_info(job_id) or {}).get("progress"), what="the job to run")
    assert real_queue.stop(job_id, by="ann") is True
    assert real_queue.job_info(job_id)["stop_requested"] == "ann"
    thread.join(30)
    job = real_queue.get_job(job_id)
    assert (job["status"], job["error"], job["attempts"]) == ("cancelled", "Stopped by ann", 1)
    assert job["result"] == {"stopped_at": log[0]}
    assert real_queue.get_job(after)["status"] == "cancelled"  # a stopped job did not complete
    assert not list(real_queue.path.parent.glob("*.stops"))


def test_a_stopped_job_is_a_last_failure_for_hooks_and_counts(real_queue):
    from dbbasic_queue import add_hooks, remove_hooks

    class Ends:
        events = []

        def on_failure(self, event):
            self.events.append((event.id, event.final, event.error))
    hook = Ends()
    add_hooks(hook)
    try:
        job_id = real_queue.enqueue("export", {})
        thread, _ = in_background(real_queue, {"export": cooperative([])})
        wait_for(lambda: (real_queue.job_info(job_id) or {}).get("progress"), what="it to run")
        real_queue.stop(job_id, by="ann")
        thread.join(30)
    finally:
        remove_hooks(hook)
    assert hook.events == [(job_id, True, "Stopped by ann")]
    assert real_queue.workers()[0]["failed"] == 1


def test_a_directory_planted_at_a_run_s_file_name_stops_no_worker(queue, caplog):
    for name in ("queue.worker-0123456789abcdef.progress", "queue.worker-x.stops"):
        (queue.path.parent / name).mkdir(parents=True)
    job_id = queue.enqueue("export", {})
    assert queue.process_jobs({"export": lambda payload: None}) == 1
    assert queue.get_job(job_id)["status"] == "completed"
    assert "could not delete" in caplog.text  # said, once per run, and left


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_handler_that_ignores_the_stop_is_interrupted_after_the_grace(real_queue, concurrency):
    # Given a stubborn handler among quick ones, in the main thread or in threads
    stuck = real_queue.enqueue("stubborn", {})
    quick = [real_queue.enqueue("quick", {"n": n}) for n in range(5)]
    thread, outcome = in_background(real_queue, {"stubborn": stubborn,
                                                 "quick": lambda payload: payload["n"]},
                                    stop_grace=0.2, concurrency=concurrency)
    wait_for(lambda: real_queue.get_job(stuck)["status"] == "processing", what="it to start")
    # When it is asked to stop and does not
    assert real_queue.stop(stuck) is True
    thread.join(30)
    # Then it is interrupted, ends cancelled, and nothing else is touched
    assert not thread.is_alive()
    job = real_queue.get_job(stuck)
    assert job["status"] == "cancelled" and job["error"].startswith("Stopped by ")
    assert [real_queue.get_job(job_id)["status"] for job_id in quick] == ["completed"] * 5
    assert outcome["ran"] == 6


def test_stop_is_for_running_jobs_only(real_queue):
    pending = real_queue.enqueue("export", {})
    done = real_queue.enqueue("other", {})
    real_queue.process_jobs({"other": lambda payload: None})
    assert real_queue.stop(pending) is False and real_queue.get_job(pending)["status"] == "pending"
    assert real_queue.stop(done) is False
    assert real_queue.stop("0123456789abcdef") is False
    with pytest.raises(TypeError):
        real_queue.stop(pending, by=7)


class FakeStorage:
    """The two verbs JobControl asks of its run's storage, with the requests given."""

    def __init__(self, *requests):
        self.requests, self.written = list(requests), []

    def stops_waiting(self, offset):
        return offset < len(self.requests)

    def stop_requests(self, offset):
        return self.requests[offset:], len(self.requests)

    def write_progress(self, entries):
        self.written.append(entries)


def test_a_stop_request_applies_to_the_attempt_it_names_also_before_that_attempt_starts():
    from dbbasic_queue.worker.control import JobControl, JobStopped
    clock = FakeClock(100.0)
    storage = FakeStorage(StopRequest("a", 7, "old", 0.0), StopRequest("b", 2, "ann", 0.0))
    control = JobControl(storage, clock, clock, grace=5)
    control.tick()  # neither runs yet: both kept for their start
    called = []
    control.stoppable("a", 8, called.append)({"job": "a"})  # asked for attempt 7 only: runs
    with pytest.raises(JobStopped):  # asked before it started: its handler is never called
        control.stoppable("b", 2, called.append)({"job": "b"})
    assert called == [{"job": "a"}]
    assert (control.stopped_by("a"), control.stopped_by("b")) == (None, "ann")


def report_a_hundred_times(control):
    for step in range(100):
        control.report("a", step / 100)
        control.tick()


def test_progress_is_written_at_most_every_half_second_however_often_it_is_reported():
    from dbbasic_queue.worker.control import JobControl
    clock = FakeClock(100.0)
    storage = FakeStorage()
    control = JobControl(storage, clock, clock, grace=5)
    control.stoppable("a", 1, lambda payload: report_a_hundred_times(control))({})
    assert len(storage.written) == 1
    clock.advance(0.5)
    control.tick()
    assert len(storage.written) == 2 and storage.written[-1]["a"].done == 0.99
    control.forget("a")
    clock.advance(0.5)
    control.tick()
    assert storage.written[-1] == {}


# --- real processes ---------------------------------------------------------------------

def cron_worker_reporting(tmp_path, children):
    """A queue with one job whose handler reports progress until asked to stop, and a
    ``dbbasic-queue work`` process running it: (queue, job id, worker, its environment)."""
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("report_until_stopped", {})
    env = {"DBBASIC_QUEUE_FILE": str(queue.path), "RUNS_LOG": str(tmp_path / "runs.log")}
    worker = children.cli("work", "--handlers", "jobs_for_cli:stoppable", **env)
    return queue, job_id, worker, env


def test_the_command_line_shows_progress_and_stops_a_cron_worker_s_job(tmp_path, children):
    queue, job_id, worker, env = cron_worker_reporting(tmp_path, children)

    def shown():
        out = children.cli("show", job_id, **env).communicate(timeout=60)[0]
        return out if "\nprogress " in out else None
    out = wait_for(shown, what="show to print the job's progress")
    assert " of 3000 (" in out and "status      processing" in out
    stopping = children.cli("stop", job_id, "--by", "ops", **env)
    assert stopping.communicate(timeout=60)[0].strip() == f"asked to stop {job_id}"
    worker.communicate(timeout=60)
    assert worker.returncode == 0
    job = queue.get_job(job_id)
    assert (job["status"], job["error"]) == ("cancelled", "Stopped by ops")
    again = children.cli("stop", job_id, **env)
    again.communicate(timeout=60)
    assert again.returncode != 0  # not running any more: refused, saying why


def test_a_killed_worker_s_progress_file_is_removed_by_the_next_run(tmp_path, children):
    queue, job_id, worker, _ = cron_worker_reporting(tmp_path, children)
    wait_for(lambda: list(tmp_path.glob("*.progress")), what="the progress file")
    queue.stop(job_id)  # a stops file too, never read: its worker is killed
    kill(worker)
    assert list(tmp_path.glob("*.progress")) and list(tmp_path.glob("*.stops"))
    assert queue.stop(job_id) is False  # its worker is dead: nobody to ask
    queue.process_jobs({"report_until_stopped": lambda payload: None})
    assert not list(tmp_path.glob("*.progress")) and not list(tmp_path.glob("*.stops"))
    assert queue.get_job(job_id)["status"] == "completed"  # taken again, as its worker died
