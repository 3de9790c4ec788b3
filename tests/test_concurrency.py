"""process_jobs(..., concurrency=N): up to N handlers at once in threads, with the same
leases, time limits, retries and graceful stop as one at a time."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.worker.run import FIRST_BATCH
from support import ROOT, wait_for


def test_n_handlers_run_at_once_and_never_more(tmp_path):
    # Given 32 jobs whose handlers each wait at a barrier for 8 of them
    queue = Queue(tmp_path / "queue.tsv")
    ids = [queue.enqueue("meet", {"n": n}) for n in range(32)]
    barrier = threading.Barrier(8, timeout=20)
    lock, running, most = threading.Lock(), [0], [0]

    def meet(payload):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            barrier.wait()  # breaks (and the job fails) unless 8 handlers run at once
        finally:
            with lock:
                running[0] -= 1
        return payload["n"]
    # When a worker runs them 8 at a time
    assert queue.process_jobs({"meet": meet}, concurrency=8) == 32
    # Then every job completed (each barrier filled) and never more than 8 ran at once
    assert [queue.get_job(i)["status"] for i in ids] == ["completed"] * 32
    assert most[0] == 8


def test_a_failure_or_a_timeout_in_one_thread_affects_only_its_job(tmp_path, clock):
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    failing = queue.enqueue("fail", {})
    hung = queue.enqueue("hang", {}, timeout=0.3)
    fine = [queue.enqueue("ok", {"n": n}) for n in range(6)]

    def hang(payload):
        while True:  # Python code: interrupted at its next instruction
            time.sleep(0.01)

    def fail(payload):
        raise ValueError("bad input")
    handlers = {"fail": fail, "hang": hang, "ok": lambda payload: payload["n"]}
    assert queue.process_jobs(handlers, max_attempts=1, concurrency=4) == 8
    assert queue.get_job(failing)["error"] == "ValueError: bad input"
    assert (queue.get_job(hung)["status"], queue.get_job(hung)["error"]) == (
        "failed", "timed out after 0.3 s")
    assert [queue.get_job(i)["result"] for i in fine] == list(range(6))


def test_a_failed_job_is_retried_on_schedule_under_concurrency(tmp_path, clock):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, random=lambda: 0.5)
    job_id = queue.enqueue("flaky", {})
    calls = []

    def flaky(payload):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "done"
    for _ in range(3):
        queue.process_jobs({"flaky": flaky}, concurrency=4)
        clock.advance(3600)
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["result"]) == ("completed", 3, "done")


def test_a_stop_lets_running_handlers_finish_and_puts_unstarted_jobs_back(tmp_path):
    queue = Queue(tmp_path / "queue.tsv")
    ids = [queue.enqueue("slow", {"n": n}) for n in range(20)]
    stop, started, release = threading.Event(), threading.Semaphore(0), threading.Event()

    def slow(payload):
        started.release()
        assert release.wait(20)
        return payload["n"]
    worker = threading.Thread(target=queue.work, args=({"slow": slow},),
                              kwargs=dict(concurrency=4, stop=stop, handle_signals=False))
    worker.start()
    for _ in range(4):
        assert started.acquire(timeout=20)
    stop.set()
    release.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    statuses = [queue.get_job(i)["status"] for i in ids]
    assert statuses.count("completed") == 4  # the four in hand finished and were recorded
    assert statuses.count("pending") == 16
    assert all(queue.get_job(i)["attempts"] == 0 for i in ids if queue.get_job(i)["status"] == "pending")


def test_a_loop_worker_with_threads_keeps_running_after_a_run_that_found_nothing(tmp_path):
    # Given a loop worker of 4 threads on a queue with nothing to do
    queue, stop, seen = Queue(tmp_path / "queue.tsv"), threading.Event(), []
    queue.enqueue("later", {}, run_at=time.time() + 3600)
    loop = threading.Thread(target=queue.work, args=({"ping": lambda p: seen.append(p["n"])},),
                            kwargs={"concurrency": 4, "stop": stop, "handle_signals": False})
    loop.start()
    try:
        # When jobs come, one after the other, each after the last one ran
        for n in range(3):
            queue.enqueue("ping", {"n": n})
            wait_for(lambda: len(seen) == n + 1, what=f"the loop worker to run job {n}")
        # Then it ran each: its runs that found nothing did not end the loop
        assert loop.is_alive() and seen == [0, 1, 2]
    finally:
        stop.set()
        loop.join(timeout=30)
    assert not loop.is_alive()


def test_concurrency_is_checked_before_the_file_is_touched(tmp_path):
    queue = Queue(tmp_path / "queue.tsv")
    for bad, error in ((0, ValueError), (1.5, TypeError), (10_000, ValueError), ("4", TypeError)):
        with pytest.raises(error):
            queue.process_jobs({}, concurrency=bad)
    assert not queue.path.exists()


def test_two_worker_processes_with_four_threads_each_run_every_job_once(tmp_path, children):
    queue = Queue(tmp_path / "queue.tsv")
    for n in range(200):
        queue.enqueue("record", {"key": n})
    runs = tmp_path / "runs.log"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import os, time
        from dbbasic_queue import Queue
        def record(payload):
            fd = os.open({str(runs)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, b"%d\\n" % payload["key"])
            os.close(fd)
            time.sleep(0.005)
        Queue({str(queue.path)!r}).process_jobs({{"record": record}}, concurrency=4)
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workers = [children.start([sys.executable, script], env=env, stdout=None) for _ in range(2)]
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    keys = sorted(int(line) for line in runs.read_text().split())
    assert keys == list(range(200))
    assert all(job["status"] == "completed" for job in queue.jobs())


def test_the_command_line_worker_takes_a_concurrency(tmp_path):
    queue = Queue(tmp_path / "queue.tsv")
    (tmp_path / "meeting.py").write_text(textwrap.dedent("""
        import threading
        barrier = threading.Barrier(3, timeout=20)
        handlers = {"meet": lambda payload: barrier.wait()}
    """))
    ids = [queue.enqueue("meet", {}) for _ in range(3)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "dbbasic_queue", "--file", str(queue.path), "work",
                           "--handlers", "meeting:handlers", "--concurrency", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ran 3 jobs" in done.stdout
    assert [queue.get_job(i)["status"] for i in ids] == ["completed"] * 3


def test_with_threads_the_next_batch_is_claimed_before_the_last_jobs_of_this_one_run(tmp_path):
    # Given a first claim of FIRST_BATCH jobs whose first blocks its thread until the job
    # after the batch has run, so the other thread runs the rest of the batch alone
    queue = Queue(tmp_path / "queue.tsv")
    ids = [queue.enqueue("hold", {})] + [queue.enqueue("step", {"n": n})
                                         for n in range(1, FIRST_BATCH + 1)]
    next_batch_ran = threading.Event()
    seen_by_last = []

    def step(payload):
        if payload["n"] == FIRST_BATCH - 1:  # the last job of the first batch
            seen_by_last.append(queue.get_job(ids[FIRST_BATCH])["status"])
        if payload["n"] == FIRST_BATCH:
            next_batch_ran.set()

    # When two threads run them
    ran = queue.process_jobs({"hold": lambda payload: next_batch_ran.wait(30), "step": step},
                             concurrency=2)

    # Then the next job was already claimed when the last of the first batch ran: a thread
    # claimed ahead while the other still had its job, instead of running dry first
    assert ran == FIRST_BATCH + 1 and seen_by_last == ["processing"]
    assert all(queue.get_job(job_id)["status"] == "completed" for job_id in ids)
