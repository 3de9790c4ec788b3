"""Named queues, priorities, pauses, and workers that take only what they can run.

In-process tests use the fake clocks (see conftest); where several workers meet, real
processes: the README's two workers side by side, and a loop worker paused and resumed from
the command line.
"""

import json
import math
import os
import random
import sys
import textwrap
import time

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.model.queues import waiting_message
from dbbasic_queue.worker.run import FIRST_BATCH
from support import EMAIL, ROOT, TESTS, finish, noop, wait_for


def kill_one_once_busy(workers, runs_log, runs: int) -> None:
    """SIGKILL the first of ``workers`` once ``runs`` jobs have started (lines of runs_log)."""
    wait_for(lambda: runs_log.exists() and len(runs_log.read_text().splitlines()) >= runs,
             what=f"{runs} jobs to start")
    workers[0].kill()
    workers[0].wait(timeout=30)


def recorder(seen, name=None):
    def handler(payload):
        seen.append(payload.get("n", name))
    return handler


# --- a worker runs only what it can run ------------------------------------------------------

def test_a_job_no_handler_of_the_worker_can_run_stays_pending_with_its_attempts(queue):
    # Given a job of a type the worker has no handler for, with a single attempt
    charge = queue.enqueue("charge_card", {"amount": 5}, max_attempts=1)
    email = queue.enqueue("send_email", EMAIL)

    # When the Quick Start worker (send_email only) runs, twice
    assert queue.process_jobs({"send_email": noop}) == 1
    assert queue.process_jobs({"send_email": noop}) == 0

    # Then the charge is still pending, attempts untouched, its error saying what it waits for
    job = queue.get_job(charge)
    assert (job["status"], job["attempts"], job["error"]) == (
        "pending", 0, waiting_message("charge_card"))
    assert "charge_card" in job["error"] and queue.get_job(email)["status"] == "completed"

    # And a worker with the handler runs it, and the waiting note goes
    assert queue.process_jobs({"charge_card": noop}) == 1
    job = queue.get_job(charge)
    assert (job["status"], job["attempts"], job["error"]) == ("completed", 1, None)


def test_stats_shows_the_jobs_waiting_for_a_handler_by_type(queue, clock):
    for _ in range(3):
        queue.enqueue("charge_card", {})
    queue.process_jobs({"send_email": noop})
    clock.advance(7200)

    waiting = queue.stats()["waiting_for_handler"]

    assert waiting == {"charge_card": {"jobs": 3, "oldest_seconds": 7200}}


def test_a_run_with_only_jobs_it_cannot_run_marks_them_once_then_writes_nothing(queue):
    queue.enqueue("charge_card", {})
    queue.process_jobs({"send_email": noop})
    before = queue.path.stat()

    for _ in range(3):
        assert queue.process_jobs({"send_email": noop}) == 0

    after = queue.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_worker_does_not_count_a_job_it_cannot_run_as_its_next_due(queue, clock):
    from dbbasic_queue.worker.run import WorkerRun
    from dbbasic_queue.worker.settings import Bounds, WorkerOptions
    queue.enqueue("charge_card", {})  # due now, for another worker
    later = queue.enqueue("send_email", EMAIL, run_at=clock.now + 600)

    run = WorkerRun(queue, WorkerOptions({"send_email": noop}, 3, 300, None, None),
                    Bounds(None, None, queue.monotonic))
    run.run()

    # A loop worker sleeps until its own job is due instead of waking at once for ever
    assert run.next_due == queue.get_job(later)["run_at"]


def test_the_readme_worker_and_a_periodic_worker_side_by_side_lose_nothing(tmp_path, children):
    # Given the Quick Start worker (send_email only) and the README's periodic worker
    # (its schedule's handler only), as files of an app
    app = tmp_path / "app"
    (app / "workers").mkdir(parents=True)
    (app / "workers" / "queue_worker.py").write_text(textwrap.dedent("""\
        import logging, os, time
        from dbbasic_queue import process_jobs

        def send_email_handler(payload):
            with open(os.environ["RUNS_LOG"], "a") as log:
                log.write(f"send_email:{payload['n']}\\n")
            return {'sent_at': time.time()}

        handlers = {'send_email': send_email_handler}

        if __name__ == '__main__':
            logging.basicConfig(level=logging.INFO)
            process_jobs(handlers, max_attempts=3)
        """))
    (app / "workers" / "charges.py").write_text(textwrap.dedent("""\
        import os
        from datetime import timedelta
        from dbbasic_queue import Queue

        queue = Queue()

        @queue.handler('charge_card')
        def charge_card(payload):
            with open(os.environ["RUNS_LOG"], "a") as log:
                log.write(f"charge_card:{payload['n']}\\n")

        @queue.periodic(every=timedelta(minutes=10))
        def refresh_feeds(payload):
            return None
        """))
    queue = Queue(app / "data" / "queue.tsv")
    ids = [queue.enqueue("charge_card", {"n": n}, max_attempts=1) for n in range(20)]
    ids += [queue.enqueue("send_email", {"n": n}) for n in range(20)]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{app}", RUNS_LOG=str(tmp_path / "runs"))

    # When both run at once, as cron starts them, several times over
    for _ in range(3):
        workers = [children.start([sys.executable, "workers/queue_worker.py"], cwd=app, env=env),
                   children.start([sys.executable, "-m", "dbbasic_queue", "work", "--handlers",
                                   "workers.charges:queue"], cwd=app, env=env)]
        for worker in workers:
            finish(worker)

    # Then every job completed, each exactly once, and none failed for lack of a handler
    assert [queue.get_job(job_id)["status"] for job_id in ids] == ["completed"] * 40
    runs = (tmp_path / "runs").read_text().split()
    assert sorted(runs) == sorted({*runs}) and len(runs) == 40


# --- named queues ------------------------------------------------------------------------------

def test_a_worker_given_queues_takes_only_jobs_of_those_queues(queue):
    seen = []
    queue.enqueue("send_email", {"n": "emails"}, queue="emails")
    queue.enqueue("send_email", {"n": "default"})

    assert queue.process_jobs({"send_email": recorder(seen)}, queues=["default"]) == 1
    assert seen == ["default"]
    assert queue.process_jobs({"send_email": recorder(seen)}, queues=["emails"]) == 1
    assert seen == ["default", "emails"]


def test_a_worker_without_queues_serves_every_queue(queue):
    queue.enqueue("send_email", {}, queue="emails")
    queue.enqueue("send_email", {}, queue="reports")
    queue.enqueue("send_email", {})

    assert queue.process_jobs({"send_email": noop}) == 3


def test_the_queue_is_an_option_a_1_0_0_line_reads_as_default(queue):
    plain = queue.enqueue("send_email", EMAIL)
    named = queue.enqueue("send_email", EMAIL, queue="emails", priority=5)

    assert queue.job_options(plain) == {}
    assert queue.job_options(named) == {"queue": "emails", "priority": 5}
    lines = queue.path.read_text().splitlines()
    assert lines[0].split("\t")[-1] == "options" and lines[1].endswith("\t")  # as 1.0.0 writes it
    assert queue.stats()["queues"] == {"default": {"pending": 1, "processing": 0},
                                       "emails": {"pending": 1, "processing": 0}}


@pytest.mark.parametrize("options", [
    {"queue": "emails"}, {"priority": -7}, {"queue": "a.b:c-d_1", "priority": 100},
    {"queue": "default", "priority": 3}, {"queue": "emails", "priority": 0},
    {"max_attempts": 2, "queue": "emails"}])
def test_a_queue_and_a_priority_are_written_as_json_dumps_writes_them(queue, options):
    # The hot path writes these options itself; the line must be the one json.dumps gives
    job_id = queue.enqueue("send_email", EMAIL, **options)
    kept = {key: value for key, value in options.items()
            if (key, value) not in (("queue", "default"), ("priority", 0))}
    [line] = [line for line in queue.path.read_text().splitlines() if line.startswith(job_id)]
    field = line.split("\t")[-1]
    assert field == '"' + json.dumps(kept).replace('"', '""') + '"'
    assert queue.job_options(job_id) == kept


def test_a_handler_declares_the_queue_of_its_jobs(tmp_path, clock, monotonic):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, monotonic=monotonic)

    @queue.handler("send_email", queue="emails")
    def send(payload):
        return None

    job_id = queue.enqueue("send_email", EMAIL)
    other = queue.enqueue("send_email", EMAIL, queue="bulk")

    assert queue.job_options(job_id) == {"queue": "emails"}
    assert queue.job_options(other) == {"queue": "bulk"}


@pytest.mark.parametrize("bad, error", [
    ({"queue": ""}, ValueError), ({"queue": "a b"}, ValueError), ({"queue": 3}, TypeError),
    ({"queue": "x" * 101}, ValueError), ({"priority": 101}, ValueError),
    ({"priority": -101}, ValueError), ({"priority": 1.5}, TypeError),
    ({"priority": True}, TypeError),
    ({"concurrency_key": ""}, ValueError), ({"concurrency_key": 7}, TypeError),
    ({"concurrency_key": "k", "concurrency_limit": 0}, ValueError),
    ({"concurrency_limit": 2}, TypeError),
    ({"rate_limit": "100"}, ValueError), ({"rate_limit": "0/m"}, ValueError),
    ({"rate_limit": "5/0m"}, ValueError), ({"rate_limit": 5}, TypeError),
    ({"rate_key": "k"}, TypeError)])
def test_a_bad_queue_priority_key_or_rate_is_refused_and_writes_nothing(queue, bad, error):
    with pytest.raises(error):
        queue.enqueue("send_email", EMAIL, **bad)
    assert not queue.path.exists()


@pytest.mark.parametrize("queues", [[], ["a", "a"], {"a": 0}, {"a": 1.5}, "", 7])
def test_a_bad_queue_choice_is_refused_before_the_file_is_touched(queue, queues):
    queue.enqueue("send_email", EMAIL)
    before = queue.path.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        queue.process_jobs({"send_email": noop}, queues=queues)
    assert queue.path.read_bytes() == before


def test_a_hand_written_bad_queue_is_a_corrupt_line_and_the_rest_run(queue, caplog):
    queue.enqueue("send_email", EMAIL)
    with open(queue.path, "a") as file:
        file.write('00000000000000aa\tsend_email\t{}\tpending\t1\t1\t0\t\t\t"{""queue"": ""a b""}"\n')

    assert queue.process_jobs({"send_email": noop}) == 1
    assert "queue 'a b' is not a queue name" in caplog.text


# --- priorities and the order of queues ----------------------------------------------------

def test_higher_priority_runs_first_then_due_time_then_enqueue_order(queue, clock):
    seen = []
    queue.enqueue("t", {"n": "late-0"}, run_at=clock.now - 10)
    queue.enqueue("t", {"n": "p5-a"}, priority=5)
    queue.enqueue("t", {"n": "low"}, priority=-3)
    queue.enqueue("t", {"n": "top"}, priority=100)
    queue.enqueue("t", {"n": "p5-b"}, priority=5)
    queue.enqueue("t", {"n": "early-0"}, run_at=clock.now - 20)

    queue.process_jobs({"t": recorder(seen)})

    assert seen == ["top", "p5-a", "p5-b", "early-0", "late-0", "low"]


def test_a_claim_smaller_than_the_due_jobs_takes_the_highest_priorities(queue):
    seen = []
    for n in range(3 * FIRST_BATCH):
        queue.enqueue("t", {"n": f"low-{n}"})
    for n in range(3):
        queue.enqueue("t", {"n": f"high-{n}"}, priority=10)

    queue.process_jobs({"t": recorder(seen)}, max_jobs=3)

    assert seen == ["high-0", "high-1", "high-2"]


def test_a_high_priority_job_enqueued_while_a_worker_runs_is_taken_next(queue):
    seen = []

    def handler(payload):
        seen.append(payload["n"])
        if payload["n"] == "low-0":
            queue.enqueue("t", {"n": "urgent"}, priority=50)
    for n in range(4 * FIRST_BATCH):
        queue.enqueue("t", {"n": f"low-{n}"})

    queue.process_jobs({"t": handler})

    assert len(seen) == 4 * FIRST_BATCH + 1
    assert seen.index("urgent") <= FIRST_BATCH  # in the next claim, not after every low one


def test_ranked_claims_after_the_first_look_keep_the_order_and_run_each_job_once(queue):
    rng = random.Random(3)
    for n in range(600):  # claims of 8, then more: the later ones from what the run remembers
        priority = rng.randint(-5, 5)
        queue.enqueue("t", {"n": n, "priority": priority}, priority=priority)
    seen = []

    queue.process_jobs({"t": lambda payload: seen.append((payload["priority"], payload["n"]))})

    assert seen == sorted(seen, key=lambda job: (-job[0], job[1]))
    assert len({n for _, n in seen}) == 600


def test_a_job_enqueued_between_ranked_claims_is_ranked_with_the_remembered_ones(queue):
    seen = []

    def handler(payload):
        seen.append(payload["n"])
        if payload["n"] == "first":
            queue.enqueue("t", {"n": "urgent"}, priority=50)  # appended: the file stays the run's
    queue.enqueue("t", {"n": "first"}, priority=9)
    for n in range(20 * FIRST_BATCH):
        queue.enqueue("t", {"n": f"low-{n}"}, priority=-1 - n % 3)

    queue.process_jobs({"t": handler})

    assert len(seen) == 20 * FIRST_BATCH + 2
    assert seen.index("urgent") <= FIRST_BATCH  # in the next claim, not after the low ones


def test_a_job_cancelled_between_ranked_claims_never_runs(queue):
    seen = []
    ids = []

    def handler(payload):
        seen.append(payload["n"])
        if payload["n"] == 0:
            assert queue.cancel_job(ids[5 * FIRST_BATCH])  # one the run chose from its look
    for n in range(20 * FIRST_BATCH):
        ids.append(queue.enqueue("t", {"n": n}, priority=-(n % 3 != 0)))

    queue.process_jobs({"t": handler}, queues={"default": 1})

    assert 5 * FIRST_BATCH not in seen
    assert sorted(seen) == [n for n in range(20 * FIRST_BATCH) if n != 5 * FIRST_BATCH]
    assert queue.get_job(ids[5 * FIRST_BATCH])["status"] == "cancelled"


def test_strict_queue_order_serves_the_first_queue_before_the_next(queue):
    seen = []
    queue.enqueue("t", {"n": "default-high"}, priority=100)
    queue.enqueue("t", {"n": "critical"}, queue="critical", priority=-100)

    queue.process_jobs({"t": recorder(seen)}, queues=["critical", "default"])

    assert seen == ["critical", "default-high"]


@pytest.mark.slow  # thousands of jobs: in the full suite, not the fast core
def test_weighted_queues_each_get_their_share_within_ten_percent(tmp_path, clock, monotonic):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, monotonic=monotonic,
                  random=random.Random(7).random)
    for n in range(1500):
        queue.enqueue("t", {"n": "a"}, queue="a")
        queue.enqueue("t", {"n": "b"}, queue="b")
    seen = []

    queue.process_jobs({"t": recorder(seen)}, queues={"a": 3, "b": 1}, max_jobs=1000)

    share = seen.count("a") / len(seen)
    assert len(seen) == 1000 and 0.75 * 0.9 <= share <= 0.75 * 1.1


# --- pause and resume ------------------------------------------------------------------------

def test_a_paused_queue_is_skipped_until_resumed_and_the_pause_is_a_readable_file(queue):
    seen = []
    queue.enqueue("t", {"n": "email"}, queue="emails")
    queue.enqueue("t", {"n": "other"})

    assert queue.pause("emails") is True and queue.pause("emails") is False
    assert queue.process_jobs({"t": recorder(seen)}) == 1 and seen == ["other"]
    assert [p["name"] for p in queue.paused()] == ["emails"]
    pause_file = queue.path.with_name("queue.paused.tsv").read_text().splitlines()
    assert pause_file[0] == "kind\tname\tpaused_at" and pause_file[1].startswith("queue\temails\t")
    job = next(job for job in queue.jobs() if job["payload"]["n"] == "email")
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, None)

    assert queue.resume("emails") is True and queue.resume("emails") is False
    assert queue.process_jobs({"t": recorder(seen)}) == 1 and seen == ["other", "email"]


def test_a_paused_job_type_is_skipped_in_every_queue(queue, caplog):
    seen = []
    queue.enqueue("charge_card", {"n": "charge"}, queue="payments")
    queue.enqueue("send_email", {"n": "email"}, queue="payments")
    queue.pause(job_type="charge_card")

    with caplog.at_level("INFO", logger="dbbasic_queue"):
        queue.process_jobs({"charge_card": recorder(seen), "send_email": recorder(seen)})

    assert seen == ["email"]
    assert "type 'charge_card' is paused" in caplog.text
    assert queue.stats()["paused"][0]["name"] == "charge_card"


def test_pause_takes_a_queue_or_a_type(queue):
    with pytest.raises(TypeError):
        queue.pause()
    with pytest.raises(TypeError):
        queue.pause("emails", job_type="t")
    with pytest.raises(ValueError):
        queue.pause("no spaces")


def test_a_corrupt_line_in_the_pause_file_is_reported_and_pauses_nothing(queue, caplog):
    queue.pause("emails")
    with open(queue.path.with_name("queue.paused.tsv"), "a") as file:
        file.write("queue\tbad name\tyesterday\n")
    queue.enqueue("t", {}, queue="other")

    assert queue.process_jobs({"t": noop}) == 1
    assert [p["name"] for p in queue.paused()] == ["emails"]
    assert "queue.paused.tsv, line 3" in caplog.text

    queue.resume("emails")  # the corrupt line stays where it was
    assert "bad name" in queue.path.with_name("queue.paused.tsv").read_text()


def test_a_pause_holds_for_a_running_loop_worker_from_its_next_claim(tmp_path, children):
    # Given a loop worker of another process, serving every queue
    data = tmp_path / "data"
    queue = Queue(data / "queue.tsv")
    runs_log = tmp_path / "runs"
    worker = children.cli("--file", data / "queue.tsv", "work", "--loop", "--handlers",
                          "jobs_for_cli:handlers", log=tmp_path / "worker.log",
                          RUNS_LOG=str(runs_log))
    first = queue.enqueue("send_email", {"key": "first"})
    wait_for(lambda: queue.get_job(first)["status"] == "completed", what="the first job")

    # When the emails queue is paused from the command line, and jobs come in both queues
    pause = children.cli("--file", data / "queue.tsv", "pause", "emails")
    assert finish(pause) == "paused queue emails\n"
    held = [queue.enqueue("send_email", {"key": f"held-{n}"}, queue="emails") for n in range(3)]
    marker = queue.enqueue("send_email", {"key": "marker"})

    # Then the worker runs the other queue's job but none of the paused queue's
    wait_for(lambda: queue.get_job(marker)["status"] == "completed", what="the marker job")
    assert [queue.get_job(job_id)["status"] for job_id in held] == ["pending"] * 3

    # And once resumed, it wakes and runs them, each once
    finish(children.cli("--file", data / "queue.tsv", "resume", "emails"))
    wait_for(lambda: all(queue.get_job(job_id)["status"] == "completed" for job_id in held),
             what="the resumed jobs")
    assert sorted(runs_log.read_text().split()) == sorted(
        ["first", "marker", "held-0", "held-1", "held-2"])
    assert "skipping" in (tmp_path / "worker.log").read_text()


def test_the_command_line_enqueues_into_a_queue_with_a_priority_and_serves_queues(
        tmp_path, monkeypatch):
    from dbbasic_queue.cli import main
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs"))
    monkeypatch.syspath_prepend(str(TESTS))
    path = str(tmp_path / "queue.tsv")
    assert main(["--file", path, "enqueue", "send_email", json.dumps({"key": "k"}), "--queue",
                 "emails", "--priority", "7"]) == 0
    queue = Queue(path)
    job = next(queue.jobs())
    assert queue.job_options(job["id"]) == {"queue": "emails", "priority": 7}

    assert main(["--file", path, "work", "--handlers", "jobs_for_cli:handlers",
                 "--queue", "default"]) == 0
    assert queue.get_job(job["id"])["status"] == "pending"
    assert main(["--file", path, "work", "--handlers", "jobs_for_cli:handlers",
                 "--queue", "emails:2,default:1"]) == 0
    assert queue.get_job(job["id"])["status"] == "completed"


@pytest.mark.parametrize("argv", [["--queue", "a:1,b"], ["--queue", "a,a"], ["--queue", "a:x"]])
def test_the_command_line_refuses_a_bad_queue_choice(tmp_path, argv, capsys):
    from dbbasic_queue.cli import main
    assert main(["--file", str(tmp_path / "queue.tsv"), "work", "--handlers",
                 "jobs_for_cli:handlers", *argv]) == 2
    assert not (tmp_path / "queue.tsv").exists()


def test_a_pause_holds_across_three_overlapping_workers_one_sigkilled(tmp_path, children):
    # Given the emails queue paused, and jobs in it and in the default queue
    data = tmp_path / "data"
    queue = Queue(data / "queue.tsv")
    queue.pause("emails")
    held = [queue.enqueue("send_email", {"key": f"mail-{n}", "sleep": 0.01}, queue="emails")
            for n in range(30)]
    free = [queue.enqueue("send_email", {"key": f"free-{n}", "sleep": 0.05}) for n in range(30)]
    runs_log = tmp_path / "runs"

    def loop_worker(name):
        return children.cli("--file", data / "queue.tsv", "work", "--loop", "--lease", "5",
                            "--handlers", "jobs_for_cli:handlers", log=tmp_path / f"{name}.log",
                            RUNS_LOG=str(runs_log))

    # When three loop workers run them, and one is SIGKILLed in the middle of its jobs
    kill_one_once_busy([loop_worker(f"w{n}") for n in range(3)], runs_log, 5)
    wait_for(lambda: all(queue.get_job(job_id)["status"] == "completed" for job_id in free),
             what="every free job, the killed worker's included")

    # Then no job of the paused queue started, in any worker
    assert not [key for key in runs_log.read_text().split() if key.startswith("mail-")]
    assert [queue.get_job(job_id)["attempts"] for job_id in held] == [0] * 30

    # And once resumed, the two left run each of them once, nothing lost
    queue.resume("emails")
    wait_for(lambda: all(queue.get_job(job_id)["status"] == "completed" for job_id in held),
             what="the resumed jobs")
    runs = runs_log.read_text().split()
    assert sorted({*runs}) == sorted([f"mail-{n}" for n in range(30)] + [f"free-{n}" for n in range(30)])
    assert len([key for key in runs if key.startswith("mail-")]) == 30


# --- concurrency limits per key ----------------------------------------------------------------

@pytest.mark.slow  # thousands of jobs: in the full suite, not the fast core
def test_sixteen_threads_never_run_more_than_the_limit_of_one_key_at_once(queue):
    import collections
    import threading
    import time as clock_time
    running, most, lock = collections.Counter(), collections.Counter(), threading.Lock()

    def handler(payload):
        key = payload["key"]
        with lock:
            running[key] += 1
            most[key] = max(most[key], running[key])
        clock_time.sleep(0.002)
        with lock:
            running[key] -= 1
    ids = [queue.enqueue("sync", {"key": f"customer:{n % 50}"}, concurrency_key=f"customer:{n % 50}",
                         concurrency_limit=2) for n in range(1000)]

    assert queue.process_jobs({"sync": handler}, concurrency=16) == 1000

    assert max(most.values()) <= 2 and len(most) == 50
    assert {queue.get_job(job_id)["status"] for job_id in ids} == {"completed"}


def test_a_key_without_a_limit_runs_one_at_a_time_and_a_handler_declares_its_limit(
        tmp_path, clock, monotonic):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, monotonic=monotonic)
    seen = []

    @queue.handler("sync", limit=3)
    def sync(payload):
        seen.append(("sync", payload["n"]))

    @queue.handler("plain")
    def plain(payload):
        seen.append(("plain", payload["n"]))

    for n in range(5):
        queue.enqueue("sync", {"n": n}, concurrency_key="crm")
        queue.enqueue("plain", {"n": n}, concurrency_key="crm")
    from dbbasic_queue.storage.slots import Slots
    held = Slots(queue.path).take("crm", 1)  # another process runs a job of the key

    # The handler's limit (3) leaves two slots for sync; plain, without a limit, has one: held
    assert queue.process_jobs(queue.handlers) == 5
    assert seen == [("sync", n) for n in range(5)]
    assert {job["attempts"] for job in queue.jobs() if job["type"] == "plain"} == {0}
    held.release()
    assert queue.process_jobs(queue.handlers) == 5
    assert seen[5:] == [("plain", n) for n in range(5)]


def test_a_limit_holds_across_three_workers_one_sigkilled_and_no_slot_leaks(tmp_path, children):
    import fcntl
    # Given 90 jobs over 6 customers, at most 2 at once per customer (the handler's limit)
    data = tmp_path / "data"
    queue = Queue(data / "queue.tsv")
    ids = [queue.enqueue("sync_customer", {"n": n, "customer": f"c{n % 6}", "sleep": 0.03},
                         concurrency_key=f"c{n % 6}") for n in range(90)]
    marks, runs_log = tmp_path / "marks", tmp_path / "runs"
    marks.mkdir()

    def worker(name):
        return children.cli("--file", data / "queue.tsv", "work", "--loop", "--concurrency", "4",
                            "--lease", "5", "--handlers", "limits_app:queue",
                            log=tmp_path / f"{name}.log", RUNS_LOG=str(runs_log), MARKS=str(marks),
                            DBBASIC_QUEUE_FILE=str(data / "queue.tsv"))

    # When three loop workers of 4 threads run them, and one is SIGKILLed among its jobs
    kill_one_once_busy([worker(f"w{n}") for n in range(3)], runs_log, 15)
    wait_for(lambda: all(queue.get_job(job_id)["status"] == "completed" for job_id in ids),
             what="every job, the killed worker's included")

    # Then no customer ever had more than 2 jobs running at once, in any process
    lines = [line.split() for line in runs_log.read_text().splitlines()]
    assert max(int(count) for _, _, count in lines) <= 2
    assert {int(n) for n, _, _ in lines} == set(range(90))  # nothing lost
    # And no slot is left held: each slot file can be locked now
    for path in data.glob("queue.slot-*.lock"):
        with open(path, "rb") as slot:
            fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert len(list(data.glob("queue.slot-*.lock"))) == 12  # 6 keys, 2 slots each


def test_the_command_line_enqueues_with_a_concurrency_key(tmp_path, capsys):
    from dbbasic_queue.cli import main
    path = str(tmp_path / "queue.tsv")
    assert main(["--file", path, "enqueue", "sync", "{}", "--concurrency-key", "customer:7",
                 "--concurrency-limit", "2"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert Queue(path).job_options(job_id) == {"concurrency_key": "customer:7",
                                               "concurrency_limit": 2}
    assert main(["--file", path, "enqueue", "sync", "{}", "--concurrency-limit", "2"]) == 2


# --- rate limits ---------------------------------------------------------------------------------

def test_a_rate_limit_puts_off_the_jobs_over_it_until_a_start_frees(tmp_path, clock, monotonic):
    queue = Queue(tmp_path / "queue.tsv", clock=clock, monotonic=monotonic)
    seen = []

    @queue.handler("call_api", rate_limit="3/m")
    def call_api(payload):
        seen.append(payload["n"])

    ids = [queue.enqueue("call_api", {"n": n}) for n in range(7)]

    # Three start in the first minute; the others wait, pending, attempts untouched
    assert queue.process_jobs(queue.handlers) == 3
    waiting = [queue.get_job(job_id) for job_id in ids[3:]]
    assert {(job["status"], job["attempts"]) for job in waiting} == {("pending", 0)}
    assert {job["run_at"] for job in waiting} == {math.ceil(clock.now) + 60}
    clock.advance(30)
    assert queue.process_jobs(queue.handlers) == 0  # nothing due yet: the loop sleeps
    clock.advance(31)
    assert queue.process_jobs(queue.handlers) == 3
    clock.advance(61)
    assert queue.process_jobs(queue.handlers) == 1
    assert seen == list(range(7))


def test_a_job_rate_limit_counts_its_rate_key_across_types(queue, clock):
    for job_type in ("a", "b", "a", "b"):
        queue.enqueue(job_type, {}, rate_limit="2/h", rate_key="api:crm")

    assert queue.process_jobs({"a": noop, "b": noop}) == 2
    clock.advance(3601)
    assert queue.process_jobs({"a": noop, "b": noop}) == 2


def test_a_rate_limit_holds_across_worker_processes(tmp_path, children):
    # Given 40 jobs limited to 10 starts a minute, and four cron runs at once
    data = tmp_path / "data"
    queue = Queue(data / "queue.tsv")
    ids = [queue.enqueue("send_email", {"key": n}, rate_limit="10/m") for n in range(40)]
    runs_log = tmp_path / "runs"
    workers = [children.cli("--file", data / "queue.tsv", "work", "--handlers",
                            "jobs_for_cli:handlers", RUNS_LOG=str(runs_log)) for _ in range(4)]
    for worker in workers:
        finish(worker)

    # Then at most ten started, whichever worker took them, and the others wait, none failed
    # (a claim that loses its race to another worker's gives its starts back, but a worker
    # that looked meanwhile has put its jobs off: under contention a window may go unfilled,
    # and a job put off waits at most one period)
    started = len(runs_log.read_text().split()) if runs_log.exists() else 0
    assert 0 <= started <= 10
    jobs = [queue.get_job(job_id) for job_id in ids]
    statuses = [job["status"] for job in jobs]
    assert statuses.count("completed") == started and statuses.count("pending") == 40 - started
    assert all(job["run_at"] <= math.ceil(time.time()) + 60 for job in jobs
               if job["status"] == "pending"), sorted(job["run_at"] - time.time() for job in jobs)
