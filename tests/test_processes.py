"""The guarantees, proven with real processes: overlapping workers, concurrent enqueuers,
SIGKILL at any moment, the loop worker under signals. Every wait is bounded and every child
is reaped (the ``children`` fixture)."""

import collections
import os
import random
import signal
import time

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.model.job import parse_line
from support import StartLine, finish, kill, runs, stop, wait_for


def jobs_on_disk(queue):
    """Every job line of the queue file and its archive files, parsed: fails if any line does
    not parse or an id appears twice in one of them. A job in both (a kill in the middle of a
    move leaves it so, by design) is the live file's."""
    live = [parse_line(line) for _, line in queue.table.lines()]
    archived = [parse_line(line) for _, _, line in queue.archive.lines()]
    for jobs in (live, archived):
        ids = [job.id for job in jobs]
        assert len(ids) == len(set(ids)), "an id appears twice"
    return {**{job.id: job for job in archived}, **{job.id: job for job in live}}


def test_three_overlapping_workers_run_each_of_300_jobs_exactly_once(tmp_path, children):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    ids = [queue.enqueue("send_email", {"key": n}) for n in range(300)]
    runs_log, start = tmp_path / "runs.log", StartLine(tmp_path / "start")

    workers = [children.role("work", queue.path, runs_log, "--sleep", 0.002, *start.args())
               for _ in range(3)]
    start.release(len(workers))  # all three begin at one moment, imports done
    for worker in workers:
        finish(worker)

    assert runs(runs_log) == collections.Counter(str(n) for n in range(300))
    assert {job.status for job in jobs_on_disk(queue).values()} == {"completed"}
    assert len(jobs_on_disk(queue)) == len(ids)


def test_a_handler_running_past_its_lease_is_not_taken_while_its_worker_lives(tmp_path,
                                                                              children):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": "slow", "sleep": 3.0})
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"

    first = children.role("work", queue.path, runs_log, "--lease", 1.0)
    wait_for(lambda: runs(runs_log)["slow"] == 1, what="the slow handler to start")
    others = [children.role("work", queue.path, runs_log, "--lease", 1.0, "--stop-file", stop_file)
              for _ in range(2)]  # they try to claim all along the 3 s, three 1 s leases
    finish(first)
    stop_file.touch()
    for worker in others:
        finish(worker)

    assert runs(runs_log)["slow"] == 1
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_four_enqueuers_and_a_worker_at_once_lose_nothing(tmp_path, children):
    path = tmp_path / "fresh" / "queue.tsv"  # not there yet: the processes race to create it
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"
    start = StartLine(tmp_path / "start")

    enqueuers = [children.role("enqueue", path, 500, *start.args()) for _ in range(4)]
    worker = children.role("work", path, runs_log, "--stop-file", stop_file, *start.args())
    start.release(5)
    printed = [finish(e).split() for e in enqueuers]
    stop_file.touch()  # the worker ran all along the enqueues
    finish(worker)

    queue = Queue(path)
    ids = [job_id for ids in printed for job_id in ids]
    on_disk = jobs_on_disk(queue)
    assert len(ids) == len(set(ids)) == 2000
    assert set(on_disk) == set(ids)

    queue.process_jobs({"send_email": lambda p: None})
    assert {job.status for job in jobs_on_disk(queue).values()} == {"completed"}
    assert all(count == 1 for count in runs(runs_log).values())


def test_the_result_of_a_finished_job_is_on_disk_within_about_a_second(tmp_path, children):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    quick = queue.enqueue("send_email", {"key": "quick"})
    queue.enqueue("send_email", {"key": "slow", "sleep": 10.0})
    runs_log = tmp_path / "runs.log"

    worker = children.role("work", queue.path, runs_log)
    wait_for(lambda: runs(runs_log)["slow"] == 1, what="the slow job to start")
    wait_for(lambda: queue.get_job(quick)["status"] == "completed", seconds=3,
             what="the quick job's result while the slow one runs")
    assert worker.poll() is None  # still inside the slow handler


def temporary_files(queue):
    return sorted(queue.path.parent.glob(".dbbasic-queue-*.tmp"))


def test_workers_sigkilled_at_any_moment_lose_nothing_and_later_runs_finish_every_job(
        tmp_path, children):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    padding = "p" * 1500  # a bigger file: rewrites take long enough to be hit
    ids = [queue.enqueue("send_email", {"key": n, "pad": padding}) for n in range(3000)]
    runs_log = tmp_path / "runs.log"
    worker_args = ("work", queue.path, runs_log, "--lease", 1.0, "--max-attempts", 100)
    rng = random.Random(os.getpid())
    kills = collections.Counter()

    def check_nothing_lost():
        assert set(jobs_on_disk(queue)) == set(ids)

    # Inside a handler: kill once a handler has started (each sleeps 50 ms).
    for _ in range(4):
        started = sum(runs(runs_log).values())
        worker = children.role(*worker_args, "--sleep", 0.05)
        wait_for(lambda: sum(runs(runs_log).values()) > started, what="a handler to start")
        kill(worker)
        kills["in a handler"] += 1
        check_nothing_lost()

    # During a rewrite: hold the table lock, so the worker's rewrite stops after writing and
    # fsyncing its temporary file, just before its rename; kill it there.
    for _ in range(3):
        with queue.table.lock():
            before = temporary_files(queue)
            worker = children.role(*worker_args)
            wait_for(lambda: len(temporary_files(queue)) > len(before),
                     what="the worker's temporary file")
            kill(worker)
        kills["during a rewrite"] += 1
        check_nothing_lost()

    # Anywhere at all: no-op handlers, killed at a random moment (the one sleep that waits
    # for nothing: the moment is the randomness under test, and any moment must do).
    for _ in range(6):
        worker = children.role(*worker_args)
        time.sleep(rng.uniform(0.2, 0.8))
        kill(worker)
        kills["at random"] += 1
        check_nothing_lost()

    assert sum(kills.values()) >= 10

    def all_completed():  # later runs: the killed workers' leases run out within ~2 s
        queue.process_jobs({"send_email": lambda p: None}, lease_seconds=1.0, max_attempts=100)
        return {job.status for job in jobs_on_disk(queue).values()} == {"completed"}
    wait_for(all_completed, seconds=20, what="later runs to complete every job")
    assert set(jobs_on_disk(queue)) == set(ids)


# --- the long-running worker (the command line's work --loop) ------------------------------

@pytest.fixture
def loop_worker(tmp_path, children):
    """Start `python -m dbbasic_queue work --loop` on a queue in tmp_path; its handlers
    append each job's key to runs.log, its log goes to worker-N.log."""
    started = []

    def start():
        log = tmp_path / f"worker-{len(started)}.log"
        started.append(children.cli(
            "--file", tmp_path / "data" / "queue.tsv", "work", "--loop", "--handlers",
            "jobs_for_cli:handlers", log=log, RUNS_LOG=str(tmp_path / "runs.log")))
        # Its start-up line: imports done, so a SIGTERM from the test meets its handler
        wait_for(lambda: log.exists() and "dbbasic-queue worker (loop)" in log.read_text(),
                 what="the loop worker's start-up line")
        return started[-1]
    return start


def test_a_loop_worker_runs_jobs_enqueued_after_its_first_run(tmp_path, loop_worker):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    first = queue.enqueue("send_email", {"key": "first"})
    worker = loop_worker()
    wait_for(lambda: queue.get_job(first)["status"] == "completed", what="the first job")

    job_id = queue.enqueue("send_email", {"key": "second"})
    wait_for(lambda: queue.get_job(job_id)["status"] == "completed", seconds=5,
             what="the job enqueued after the first run")
    assert stop(worker) == 0


def test_sigterm_lets_the_job_in_hand_finish_then_exits_0(tmp_path, loop_worker):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    slow = queue.enqueue("send_email", {"key": "slow", "sleep": 1.5})
    behind = queue.enqueue("send_email", {"key": "behind"})
    worker = loop_worker()
    wait_for(lambda: runs(tmp_path / "runs.log")["slow"] == 1, what="the slow job to start")

    assert stop(worker) == 0
    assert queue.get_job(slow)["status"] == "completed"
    behind_job = queue.get_job(behind)  # claimed with it, never started: put back untouched
    assert (behind_job["status"], behind_job["attempts"]) == ("pending", 0)
    assert runs(tmp_path / "runs.log")["behind"] == 0


def test_sigterm_to_a_cron_worker_finishes_the_job_in_hand_puts_the_rest_back_and_exits_0(
        tmp_path, children):
    # Given `dbbasic-queue work` (no --loop, as cron runs it) inside a 1.5 s job claimed with
    # another
    queue = Queue(tmp_path / "data" / "queue.tsv")
    slow = queue.enqueue("send_email", {"key": "slow", "sleep": 1.5})
    behind = queue.enqueue("send_email", {"key": "behind"})
    runs_log = tmp_path / "runs.log"
    worker = children.cli("--file", queue.path, "work", "--handlers", "jobs_for_cli:handlers",
                          log=tmp_path / "worker.log", RUNS_LOG=str(runs_log))
    wait_for(lambda: runs(runs_log)["slow"] == 1, what="the slow job to start")

    # When it gets SIGTERM (timeout, systemctl stop, docker stop), then it behaves as --loop
    assert stop(worker) == 0
    assert queue.get_job(slow)["status"] == "completed"
    behind_job = queue.get_job(behind)
    assert (behind_job["status"], behind_job["attempts"]) == ("pending", 0)
    assert runs(runs_log)["behind"] == 0
    assert "SIGTERM: finishing the job in hand" in (tmp_path / "worker.log").read_text()


def test_a_second_signal_exits_at_once_leaving_the_job_to_its_lease(tmp_path, loop_worker):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    stuck = queue.enqueue("send_email", {"key": "stuck", "sleep": 60})
    worker = loop_worker()
    wait_for(lambda: runs(tmp_path / "runs.log")["stuck"] == 1, what="the job to start")

    worker.send_signal(signal.SIGTERM)
    log = tmp_path / "worker-0.log"
    wait_for(lambda: "SIGTERM: finishing the job in hand" in log.read_text(),
             what="the worker to take the first signal")
    started = time.monotonic()
    assert stop(worker) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10
    assert queue.get_job(stuck)["status"] == "processing"


def test_two_loop_workers_share_the_work_and_run_each_job_once(tmp_path, loop_worker):
    queue = Queue(tmp_path / "data" / "queue.tsv")
    queue.enqueue("send_email", {"key": "warm-up"})
    workers = [loop_worker(), loop_worker()]
    ids = [queue.enqueue("send_email", {"key": n}) for n in range(200)]

    wait_for(lambda: all(queue.get_job(i)["status"] == "completed" for i in ids),
             what="all 200 jobs")
    assert [stop(worker) for worker in workers] == [0, 0]
    counts = runs(tmp_path / "runs.log")
    assert all(counts[str(n)] == 1 for n in range(200)) and len(counts) == 201
