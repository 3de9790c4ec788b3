"""Faults a handler or a foreign writer can cause in a worker run (issue 9, faults 2 to 6).

Each test reproduces a way the worker used to lose, double-run or stall a job; the ones that
involve processes (a foreign writer, the GIL, an exiting handler) use real processes.
"""

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.model.job import COLUMNS
from dbbasic_queue.storage.liveness import WorkerLocks
from dbbasic_queue.worker.timelimit import JobTimeout
from support import ROOT, WAIT_SECONDS, wait_for

# A worker process: python worker.py QUEUE RUNS_LOG LEASE SECONDS [CLOCK_OFFSET [CONCURRENCY]]
# runs process_jobs again and again for SECONDS (once for 0); each handler call appends the
# payload's key to RUNS_LOG when it starts and (most handlers) "done KEY" when it returns.
WORKER = textwrap.dedent("""
    import contextlib, fcntl, os, re, signal, sys, threading, time
    from dbbasic_queue import Queue
    from dbbasic_queue.worker.running import current_job
    path, runs, lease, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    offset = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    concurrency = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    queue = Queue(path, clock=lambda: time.time() + offset)

    def log(text):
        with open(runs, "a") as file:
            file.write(text + "\\n")

    def sleepy(payload):
        log(payload["key"])
        time.sleep(payload["sleep"])
        log("done " + payload["key"])
        return {"slept": payload["sleep"]}

    def regex(payload):
        log(payload["key"])
        re.match(r"(a+)+$", "a" * payload["n"] + "b")  # holds the GIL throughout
        log("done " + payload["key"])
        return "matched"

    def exits(payload):
        log(payload["key"])
        sys.exit(3)

    def quick(payload):
        log(payload["key"])
        if current_job().attempt == 1:
            time.sleep(payload.get("first_sleep", 0))

    def kills(payload):  # what an OOM kill or a segfault in a C extension does
        log(payload["key"])
        deadline = time.monotonic() + 30
        while payload.get("after") and time.monotonic() < deadline and (
                payload["after"] not in open(runs).read().split("\\n")):
            time.sleep(0.01)  # until the job payload["after"] has started in another thread
        os.kill(os.getpid(), signal.SIGKILL)

    def forks(payload):
        # On its first attempt: fork a child that outlives the handler (its pid goes to
        # payload["pids"]); with payload["enqueue"], while another thread enqueues in a tight
        # loop, and again (at most payload["forks"] times) until a child was forked while
        # that thread held the queue's lock: the lock is still held once the thread is done.
        # Then sleep payload["sleep"].
        log(payload["key"])
        first = current_job().attempt == 1
        for _ in range(payload.get("forks", 1) if first else 0):
            with enqueuing(payload.get("enqueue")):
                pid = os.fork()
                if pid == 0:  # the child: only sleeps, its output closed
                    null = os.open(os.devnull, os.O_RDWR)
                    os.dup2(null, 1), os.dup2(null, 2)
                    time.sleep(60)
                    os._exit(0)
                with open(payload["pids"], "a") as file:
                    file.write(f"{pid}\\n")
            if payload.get("enqueue") and queue_locked():
                break
        log("done " + payload["key"])
        time.sleep(payload.get("sleep", 0) if first else 0)

    def queue_locked():
        fd = os.open(path[:-len(".tsv")] + ".lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def enqueuing(wanted):
        if not wanted:
            yield
            return
        stop, going = threading.Event(), threading.Event()

        def enqueue_all():
            while not stop.is_set():
                queue.enqueue("quick", {"key": "filler"}, run_at=time.time() + 3600)
                going.set()
        thread = threading.Thread(target=enqueue_all)
        thread.start()
        going.wait()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    handlers = {"sleepy": sleepy, "regex": regex, "exits": exits, "quick": quick,
                "kills": kills, "forks": forks}
    end = time.monotonic() + seconds
    while True:
        queue.process_jobs(handlers, 3, lease_seconds=lease, concurrency=concurrency)
        if time.monotonic() >= end:
            break
        time.sleep(0.02)
""")


@pytest.fixture
def spawn(tmp_path, children):
    """Start worker processes; every one is reaped at the end of the test."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return lambda *args: children.start([sys.executable, script, *args], env=env, stdout=None,
                                        stderr=subprocess.PIPE)


@pytest.fixture
def grandchildren(tmp_path, children):
    """The file where handlers write the pids of the processes they fork; at the end, those
    still running are killed (before ``children`` reaps the workers, whose pipes they hold)."""
    pids = tmp_path / "grandchildren.pids"
    yield pids
    for pid in pids.read_text().split() if pids.exists() else ():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def forked(pids: Path) -> list:
    """The pids of the grandchildren forked so far, each checked to be still running."""
    found = [int(pid) for pid in pids.read_text().split()]
    for pid in found:
        os.kill(pid, 0)  # ProcessLookupError if it has ended
    return found


def runs_of(log: Path, key: str) -> int:
    """How many times the job with ``key`` started."""
    return log.read_text().splitlines().count(key) if log.exists() else 0


def test_a_job_rewritten_by_dbbasic_tsv_while_it_runs_is_run_once(tmp_path, spawn):
    # Given a worker with a short lease running a 2.5 s job, and a second worker polling
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("sleepy", {"key": "slow", "sleep": 2.5})
    other = queue.enqueue("quick", {"key": "other"}, run_at=time.time() + 3600)
    runs = tmp_path / "runs.log"
    first = spawn(queue.path, runs, 1, 0)
    wait_for(lambda: runs_of(runs, "slow") == 1, what="the job to start")
    second = spawn(queue.path, runs, 1, 4)
    # When dbbasic-tsv's own update() rewrites the file (every line in its CRLF dialect)
    from dbbasic.tsv import TSV
    assert TSV("queue", list(COLUMNS), data_dir=tmp_path).update({"id": other}, {"attempts": "0"}) == 1
    assert b"\r\n" in queue.path.read_bytes().split(b"\n", 2)[1] + b"\n"
    # Then the running job is still its worker's: it runs once and its result is recorded
    assert first.wait(timeout=30) == 0 and second.wait(timeout=30) == 0
    assert runs_of(runs, "slow") == 1
    job = queue.get_job(job_id)
    assert (job["status"], job["result"], job["attempts"]) == ("completed", {"slept": 2.5}, 1)


def test_a_handler_holding_the_gil_past_its_lease_keeps_its_job(tmp_path, spawn):
    # Given a handler whose regex holds the GIL for longer than the 0.5 s lease, so the
    # keeper thread cannot renew it, and a second worker polling all the while
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("regex", {"key": "gil", "n": 25})
    runs = tmp_path / "runs.log"
    owner = spawn(queue.path, runs, 0.5, 0)
    wait_for(lambda: runs_of(runs, "gil") == 1, what="the job to start")
    rival = spawn(queue.path, runs, 0.5, 3)
    # When both are done
    assert owner.wait(timeout=60) == 0 and rival.wait(timeout=60) == 0
    # Then the rival never took the job while its owner lived: one run, completed
    assert runs_of(runs, "gil") == 1
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["result"]) == ("completed", 1, "matched")
    assert not list(tmp_path.glob("queue.worker-*.lock"))  # each run removed its own


def test_a_job_whose_worker_was_killed_is_still_taken_again_after_its_lease(tmp_path, spawn):
    # The liveness lock must not keep a dead worker's job: SIGKILL releases it at once.
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("sleepy", {"key": "doomed", "sleep": 30})
    runs = tmp_path / "runs.log"
    victim = spawn(queue.path, runs, 1, 0)
    wait_for(lambda: runs_of(runs, "doomed") == 1, what="the job to start")
    victim.kill()
    victim.wait(timeout=30)
    assert len(list(tmp_path.glob("queue.worker-*.lock"))) == 1  # left behind, unlocked
    Queue(queue.path).update_each(lambda job: job.evolve(
        run_at=0, payload='{"key": "doomed", "sleep": 0}') if job.id == job_id else None)
    assert spawn(queue.path, runs, 1, 0).wait(timeout=30) == 0
    assert runs_of(runs, "doomed") == 2
    assert queue.get_job(job_id)["status"] == "completed"


def test_a_result_too_deep_to_encode_is_recorded_once_and_the_worker_goes_on(tmp_path, clock):
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    deep = queue.enqueue("deep", {})
    after = queue.enqueue("after", {})
    calls = []

    def nested(payload):
        calls.append("deep")
        result = []
        for _ in range(100_000):
            result = [result]
        return result
    handlers = {"deep": nested, "after": lambda payload: calls.append("after")}
    assert queue.process_jobs(handlers) == 2
    job = queue.get_job(deep)
    assert job["status"] == "completed" and isinstance(job["result"], str)
    assert queue.get_job(after)["status"] == "completed"
    clock.advance(3600)  # well past any lease: nothing is taken again
    assert queue.process_jobs(handlers) == 0
    assert calls == ["deep", "after"]


def test_a_handler_that_returned_is_never_reported_timed_out(tmp_path):
    # Handlers that finish right at their time limit: the alarm lands just before or just
    # after the return. Every JobTimeout the handler's own frame can see is recorded by its
    # except clause, which also covers its return statement; a job reported timed out must
    # have been interrupted there, inside the handler.
    queue = Queue(tmp_path / "queue.tsv")
    limit = 0.002
    for number in range(300):
        queue.enqueue("edge", {"n": number, "wait": limit + random.uniform(-40e-6, 40e-6)},
                      timeout=limit)
    interrupted = set()

    def edge(payload):
        try:
            end = time.perf_counter() + payload["wait"]
            while time.perf_counter() < end:
                pass
            return payload["n"]
        except JobTimeout:
            interrupted.add(payload["n"])
            raise
    queue.process_jobs({"edge": edge}, max_attempts=1)
    jobs = list(queue.jobs())
    timed_out = {job["payload"]["n"] for job in jobs if job["status"] == "failed"}
    completed = {job["payload"]["n"] for job in jobs if job["status"] == "completed"}
    assert len(timed_out) + len(completed) == 300
    assert timed_out <= interrupted
    assert all(job["result"] == job["payload"]["n"] for job in jobs if job["status"] == "completed")


def test_a_handler_calling_sys_exit_fails_after_max_attempts_and_the_others_run(tmp_path, spawn):
    # Given a job whose handler calls sys.exit(), between five ordinary ones
    queue = Queue(tmp_path / "queue.tsv")
    others = [queue.enqueue("quick", {"key": f"other{n}"}) for n in range(2)]
    exiting = queue.enqueue("exits", {"key": "exit"})
    others += [queue.enqueue("quick", {"key": f"other{n}"}) for n in range(2, 5)]
    runs = tmp_path / "runs.log"
    # When cron runs a worker process four times, each an hour after the last
    for hour in range(4):
        child = spawn(queue.path, runs, 300, 0, hour * 3600)
        assert child.wait(timeout=30) == 0, child.stderr.read()
    # Then every other job ran exactly once, and the exiting one failed after its 3 attempts
    assert [runs_of(runs, f"other{n}") for n in range(5)] == [1] * 5
    assert runs_of(runs, "exit") == 3
    job = queue.get_job(exiting)
    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert job["error"].startswith("SystemExit: 3")


def test_keyboard_interrupt_from_a_handler_counts_an_attempt_and_stops_the_run(tmp_path, clock):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, random=lambda: 0.5)
    interrupting = queue.enqueue("interrupt", {})
    waiting = queue.enqueue("quick", {})

    def interrupt(payload):
        raise KeyboardInterrupt
    handlers = {"interrupt": interrupt, "quick": lambda payload: "ran"}
    for attempt in (1, 2, 3):
        with pytest.raises(KeyboardInterrupt):
            queue.process_jobs(handlers)
        job = queue.get_job(interrupting)
        assert job["attempts"] == attempt and job["error"] == "KeyboardInterrupt: "
        if attempt == 1:  # the run stopped: the job claimed after it went back untouched
            assert queue.get_job(waiting)["status"] == "pending"
            assert queue.process_jobs(handlers) == 1  # and the next run runs it
        clock.advance(3600)
    assert queue.get_job(interrupting)["status"] == "failed"
    assert queue.get_job(waiting)["status"] == "completed"


@pytest.mark.parametrize("error", [GeneratorExit, type("Custom", (BaseException,), {})])
def test_any_other_base_exception_from_a_handler_is_a_failed_attempt(tmp_path, clock, error):
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    job_id = queue.enqueue("odd", {})
    other = queue.enqueue("quick", {})

    def odd(payload):
        raise error("odd")
    assert queue.process_jobs({"odd": odd, "quick": lambda payload: None}, max_attempts=1) == 2
    assert queue.get_job(job_id)["status"] == "failed"
    assert queue.get_job(job_id)["error"] == f"{error.__name__}: odd"
    assert queue.get_job(other)["status"] == "completed"


# --- a worker killed by its job, stopped by SIGTERM, or forked by a handler ----------------

def unfinished(queue) -> list:
    return [job for job in queue.jobs() if job["status"] in ("pending", "processing")]


def test_a_job_that_kills_its_worker_fails_alone_and_its_batch_mates_run_once(tmp_path, spawn):
    # Given a job whose handler SIGKILLs its worker on every attempt (an OOM kill, a segfault
    # in a C extension), claimed first in a batch with 7 others
    queue = Queue(tmp_path / "queue.tsv")
    killer = queue.enqueue("kills", {"key": "killer"})
    mates = [queue.enqueue("quick", {"key": f"mate{n}"}) for n in range(7)]
    runs = tmp_path / "runs.log"
    # When cron runs a worker (with the default 300 s lease) again as soon as one ends,
    # until no job is left to run (at most 10 runs)
    ends = []
    while unfinished(queue) and len(ends) < 10:
        ends.append(spawn(queue.path, runs, 300, 0).wait(timeout=WAIT_SECONDS))
    # Then the killer killed one worker per attempt and failed for good, and every batch-mate
    # ran once, with one attempt: the deaths handed it back without counting one
    assert ends == [-signal.SIGKILL] * 3 + [0]
    assert runs_of(runs, "killer") == 3
    job = queue.get_job(killer)
    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert "the worker of attempt 3 stopped without a result" in job["error"]
    assert [runs_of(runs, f"mate{n}") for n in range(7)] == [1] * 7
    assert {(queue.get_job(m)["status"], queue.get_job(m)["attempts"]) for m in mates} == {
        ("completed", 1)}


def test_with_threads_the_jobs_running_when_their_worker_died_count_an_attempt(tmp_path, spawn):
    # Given a worker with two threads: one runs a long job, the other a job that kills the
    # worker once the long one has started; four more jobs were claimed with them
    queue = Queue(tmp_path / "queue.tsv")
    running = queue.enqueue("quick", {"key": "running", "first_sleep": 30})
    killer = queue.enqueue("kills", {"key": "killer", "after": "running"}, max_attempts=1)
    waiting = [queue.enqueue("quick", {"key": f"waiting{n}"}) for n in range(4)]
    runs = tmp_path / "runs.log"
    assert spawn(queue.path, runs, 300, 0, 0, 2).wait(timeout=WAIT_SECONDS) == -signal.SIGKILL
    # When the next worker runs, at once (the dead worker's 300 s lease is not waited for)
    assert spawn(queue.path, runs, 300, 0).wait(timeout=WAIT_SECONDS) == 0
    # Then the two jobs that were running used up an attempt each; the four waiting did not
    assert unfinished(queue) == []
    assert (queue.get_job(running)["status"], queue.get_job(running)["attempts"]) == (
        "completed", 2)
    assert (queue.get_job(killer)["status"], queue.get_job(killer)["attempts"]) == ("failed", 1)
    assert {(queue.get_job(w)["status"], queue.get_job(w)["attempts"]) for w in waiting} == {
        ("completed", 1)}
    assert [runs_of(runs, f"waiting{n}") for n in range(4)] == [1] * 4


@pytest.mark.parametrize("replacement", ["deleted", "symlink", "another kernel's"])
def test_a_killed_workers_jobs_wait_for_their_lease_when_its_file_cannot_be_trusted(
        tmp_path, spawn, replacement):
    # Given a worker SIGKILLed by a job (lease 2 s), and its liveness file then deleted,
    # replaced by a symbolic link, or its first line naming another machine's kernel: nothing
    # tells whether that worker is dead, or which jobs it started
    queue = Queue(tmp_path / "queue.tsv")
    killer = queue.enqueue("kills", {"key": "killer"}, max_attempts=1)
    mate = queue.enqueue("quick", {"key": "mate"})
    runs = tmp_path / "runs.log"
    assert spawn(queue.path, runs, 2, 0).wait(timeout=WAIT_SECONDS) == -signal.SIGKILL
    [liveness] = tmp_path.glob("queue.worker-*.lock")
    if replacement == "another kernel's":
        record = liveness.read_bytes().split(b"\n", 1)[1]
        liveness.write_bytes(b"dbbasic-queue worker run, boot 0000-elsewhere\n" + record)
    else:
        liveness.unlink()
    if replacement == "symlink":
        (tmp_path / "elsewhere").write_text("")
        liveness.symlink_to(tmp_path / "elsewhere")
    # When a worker runs at once, then it leaves both jobs to their lease
    assert spawn(queue.path, runs, 2, 0).wait(timeout=WAIT_SECONDS) == 0
    assert {job["status"] for job in queue.jobs()} == {"processing"}
    # and once the lease has run out, they are taken again, the attempt counted as before
    wait_for(lambda: spawn(queue.path, runs, 2, 0).wait(timeout=WAIT_SECONDS) == 0 and
             not unfinished(queue), what="the jobs taken again after the lease", interval=0.2)
    assert (queue.get_job(killer)["status"], queue.get_job(killer)["attempts"]) == ("failed", 1)
    assert (queue.get_job(mate)["status"], queue.get_job(mate)["attempts"]) == ("completed", 2)


def test_a_dead_workers_file_is_kept_while_a_job_names_its_run_and_a_week_at_most(tmp_path,
                                                                                  spawn):
    # Given two workers SIGKILLed by their jobs, one after the other, each leaving its file
    # (the record read when its jobs are taken again); the first one's job then ended
    # (by hand here, without its worker's token, as when it is taken again)
    queue = Queue(tmp_path / "queue.tsv")
    locks = WorkerLocks(queue.path)
    runs, files = tmp_path / "runs.log", []
    for key in ("first", "second"):
        job_id = queue.enqueue("kills", {"key": key})
        assert spawn(queue.path, runs, 300, 0).wait(timeout=WAIT_SECONDS) == -signal.SIGKILL
        files += [path for path in tmp_path.glob("queue.worker-*.lock") if path not in files]
        if key == "first":
            queue.update_each(lambda job: job.evolve(status="failed", options="")
                              if job.id == job_id else None)
    # When dead files are cleaned up two hours later, then the file of the run a job still
    # names stays, and the other goes
    locks.remove_dead(time.time() + 7200)
    assert [path.exists() for path in files] == [False, True]
    # and a week later, the job still there, it goes too: its job then waits for its lease
    locks.remove_dead(time.time() + 8 * 86400)
    assert not files[1].exists()


def test_sigterm_to_process_jobs_in_a_script_puts_the_unstarted_back_then_ends_it(tmp_path,
                                                                                   spawn):
    # Given a script calling process_jobs (SIGTERM left to its default), inside a 1.5 s job
    # claimed with another
    queue = Queue(tmp_path / "queue.tsv")
    slow = queue.enqueue("sleepy", {"key": "slow", "sleep": 1.5})
    behind = queue.enqueue("quick", {"key": "behind"})
    runs = tmp_path / "runs.log"
    worker = spawn(queue.path, runs, 300, 0)
    wait_for(lambda: runs_of(runs, "slow") == 1, what="the slow job to start")
    # When it gets SIGTERM (timeout, systemctl stop, docker stop)
    worker.send_signal(signal.SIGTERM)
    # Then the job in hand finishes, the other is put back untouched, and the script still
    # ends by SIGTERM, as it would have without the queue
    assert worker.wait(timeout=WAIT_SECONDS) == -signal.SIGTERM
    assert (queue.get_job(slow)["status"], queue.get_job(slow)["attempts"]) == ("completed", 1)
    assert (queue.get_job(behind)["status"], queue.get_job(behind)["attempts"]) == ("pending", 0)
    assert runs_of(runs, "behind") == 0


def test_process_jobs_leaves_an_apps_own_sigterm_handler_in_place(tmp_path):
    queue = Queue(tmp_path / "queue.tsv")
    queue.enqueue("look", {})
    seen = []

    def apps_own(signum, frame):
        pass
    previous = signal.signal(signal.SIGTERM, apps_own)
    try:
        queue.process_jobs({"look": lambda payload: seen.append(signal.getsignal(signal.SIGTERM))})
        assert seen == [apps_own] and signal.getsignal(signal.SIGTERM) is apps_own
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_process_jobs_puts_the_default_sigterm_disposition_back(tmp_path):
    queue = Queue(tmp_path / "queue.tsv")
    queue.enqueue("look", {})
    seen = []
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        queue.process_jobs({"look": lambda payload: seen.append(signal.getsignal(signal.SIGTERM))})
        assert seen[0] is not signal.SIG_DFL  # the run's own, while it runs
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_child_forked_while_another_thread_enqueues_does_not_keep_the_queue_locked(
        tmp_path, spawn, grandchildren, children):
    # Given a handler that forks long-sleeping children while another of its threads
    # enqueues in a tight loop, until one fork lands while that thread holds the queue's
    # lock (at most 20: the lock is held a good part of the time)
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("forks", {"key": "forker", "forks": 20, "enqueue": True,
                                     "pids": str(grandchildren)})
    runs = tmp_path / "runs.log"
    worker = spawn(queue.path, runs, 300, 0)
    wait_for(lambda: runs_of(runs, "done forker") == 1, what="the handler to fork")
    # When another process enqueues, after the handler returned
    enqueuer = children.role("enqueue", queue.path, 1)
    # Then it is not held up by the children, which still live; nor is the worker
    out, _ = enqueuer.communicate(timeout=10)
    assert enqueuer.returncode == 0 and len(out.split()) == 1
    assert forked(grandchildren)
    assert worker.wait(timeout=10) == 0
    assert queue.get_job(job_id)["status"] == "completed"
    assert forked(grandchildren)


def test_a_workers_forked_child_does_not_keep_its_jobs_from_being_taken_again(
        tmp_path, spawn, grandchildren):
    # Given a worker (1 s lease) whose handler forked a long-lived child, and was SIGKILLed
    # while the handler still ran
    queue = Queue(tmp_path / "queue.tsv")
    job_id = queue.enqueue("forks", {"key": "forker", "pids": str(grandchildren), "sleep": 60})
    runs = tmp_path / "runs.log"
    victim = spawn(queue.path, runs, 1, 0)
    wait_for(lambda: runs_of(runs, "done forker") == 1, what="the handler to fork")
    victim.kill()
    victim.wait(timeout=WAIT_SECONDS)
    # When another worker polls the queue for 3 s
    assert spawn(queue.path, runs, 1, 3).wait(timeout=WAIT_SECONDS) == 0
    # Then it took the job again (the attempt counted: it had started) while the child lives
    assert runs_of(runs, "forker") == 2
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("completed", 2)
    assert len(forked(grandchildren)) == 1
