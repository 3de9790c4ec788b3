"""Jobs that work together: depends_on, chain and batch (model/dependencies.py,
storage/dependents.py, workflows.py). In-process on a fake clock, then with real worker
processes for the races: the last jobs of a batch ending in several workers at once, a worker
SIGKILLed at the last completion, a dependency failing while workers claim."""

import time

import pytest

from dbbasic_queue import CorruptLineError, Queue
from dbbasic_queue.worker.running import current_job
from support import StartLine, kill, runs, wait_for


def recorder(log, fail=()):
    """Handlers that note (type, payload key) in ``log``; types in ``fail`` raise."""
    def make(job_type):
        def handler(payload):
            log.append((job_type, payload.get("key")))
            if job_type in fail:
                raise ValueError(f"{job_type} said no")
            return {"ran": job_type}
        return handler
    return {name: make(name) for name in ("charge", "receipt", "ship", "resize", "album", "other")}


# --- depends_on --------------------------------------------------------------------------

def test_a_dependent_waits_until_its_dependency_completed_then_runs(queue):
    # Given a job that depends on another, which no worker here can run yet
    charge = queue.enqueue("charge", {"key": 1})
    receipt = queue.enqueue("receipt", {"key": 2}, depends_on=charge)
    log = []
    handlers = recorder(log)
    # When a worker that has a handler only for the dependent runs
    queue.process_jobs({"receipt": handlers["receipt"]})
    # Then the dependent waits, pending, and says for what
    assert log == []
    assert queue.get_job(receipt)["status"] == "pending"
    assert queue.job_options(receipt) == {"after": [charge]}
    # When both can run, the dependency runs first, and the dependent in the same run
    assert queue.process_jobs(handlers) == 2
    assert log == [("charge", 1), ("receipt", 2)]
    assert queue.get_job(receipt)["status"] == "completed"
    assert queue.job_options(receipt) == {}


def test_a_dependent_of_several_jobs_runs_once_all_have_completed(queue):
    first, second = queue.enqueue("charge", {"key": 1}), queue.enqueue("ship", {"key": 2})
    receipt = queue.enqueue("receipt", {"key": 3}, depends_on=[first, queue.get_job(second)])
    log = []
    handlers = recorder(log)
    queue.process_jobs({"charge": handlers["charge"], "receipt": handlers["receipt"]})
    assert queue.job_options(receipt) == {"after": [second]}
    queue.process_jobs(handlers)
    assert log[-1] == ("receipt", 3) and queue.get_job(receipt)["status"] == "completed"


def test_a_dependency_that_fails_for_good_cancels_its_dependent_saying_why(queue):
    charge = queue.enqueue("charge", {"key": 1}, max_attempts=1)
    receipt = queue.enqueue("receipt", {"key": 2}, depends_on=charge)
    log = []
    queue.process_jobs(recorder(log, fail={"charge"}))
    assert log == [("charge", 1)]
    job = queue.get_job(receipt)
    assert job["status"] == "cancelled"
    assert job["error"] == f"Cancelled: job {charge}, which it depends on, failed for good"


def test_a_retried_failure_is_not_an_end_the_dependent_keeps_waiting(queue, clock):
    charge = queue.enqueue("charge", {"key": 1}, max_attempts=2)
    receipt = queue.enqueue("receipt", {"key": 2}, depends_on=charge)
    log = []
    queue.process_jobs(recorder(log, fail={"charge"}))
    assert queue.get_job(charge)["status"] == "pending"  # its retry is due later
    assert queue.get_job(receipt)["status"] == "pending"
    assert queue.job_options(receipt) == {"after": [charge]}


def test_allow_failure_runs_the_dependent_once_its_dependencies_ended_however(queue):
    charge = queue.enqueue("charge", {"key": 1}, max_attempts=1)
    cleanup = queue.enqueue("other", {"key": 2}, depends_on=charge, allow_failure=True)
    log = []
    queue.process_jobs(recorder(log, fail={"charge"}))
    assert log == [("charge", 1), ("other", 2)]
    assert queue.get_job(cleanup)["status"] == "completed"


def test_cancelling_or_deleting_a_dependency_cancels_its_dependents_down_the_line(queue):
    first = queue.enqueue("charge", {"key": 1})
    second = queue.enqueue("receipt", {"key": 2}, depends_on=first)
    third = queue.enqueue("ship", {"key": 3}, depends_on=second)
    other = queue.enqueue("other", {"key": 4})
    after_other = queue.enqueue("receipt", {"key": 5}, depends_on=other)
    assert queue.cancel_job(first) is True
    assert queue.get_job(second)["error"] == (f"Cancelled: job {first}, which it depends on, "
                                              f"was cancelled")
    assert queue.get_job(third)["status"] == "cancelled"
    assert queue.delete(other) is True
    assert queue.get_job(after_other)["error"] == (f"Cancelled: job {other}, which it depends "
                                                   f"on, was deleted")


def test_cancelling_a_waiting_job_tells_the_jobs_waiting_for_it(queue):
    first = queue.enqueue("charge", {"key": 1})
    second = queue.enqueue("receipt", {"key": 2}, depends_on=first)
    third = queue.enqueue("ship", {"key": 3}, depends_on=second, allow_failure=True)
    assert queue.cancel_job(second) is True
    assert queue.job_options(third) == {"allow_failure": True}  # due now: it allows failure
    log = []
    queue.process_jobs(recorder(log))
    assert log == [("charge", 1), ("ship", 3)]


def test_depending_on_jobs_that_already_ended_decides_at_enqueue(queue, clock):
    done = queue.enqueue("charge", {"key": 1})
    failed = queue.enqueue("charge", {"key": 2}, max_attempts=1)
    queue.process_jobs(recorder([], fail=set()))
    queue.update_each(lambda job: job.evolve(status="failed") if job.id == failed else None)
    clock.advance(10)
    queue.enqueue("other", {})
    queue.process_jobs({"other": lambda payload: None})  # its rewrite moves the completed job
    # A completed dependency (moved to the archive file by now): nothing to wait for
    assert not any(line.startswith(done) for line in queue.path.read_text().splitlines())
    runs_at_once = queue.enqueue("receipt", {"key": 3}, depends_on=done)
    assert queue.job_options(runs_at_once) == {}
    # A failed one: the dependent is written cancelled, saying why; allow_failure runs it
    cancelled = queue.enqueue("receipt", {"key": 4}, depends_on=[done, failed])
    assert queue.get_job(cancelled)["status"] == "cancelled"
    assert failed in queue.get_job(cancelled)["error"]
    assert queue.job_options(queue.enqueue("receipt", {"key": 5}, depends_on=failed,
                                           allow_failure=True)) == {"allow_failure": True}


@pytest.mark.parametrize("depends_on, error", [
    ("0123456789abcdef", ValueError), (["nope"], ValueError), ([], ValueError),
    ([{"no": "id"}], ValueError), (42, TypeError), (["a\tb"], ValueError),
    (b"ab", TypeError), ("a\ud800b", ValueError),
    ([f"{n:016x}" for n in range(101)], ValueError)])
def test_a_bad_depends_on_raises_and_writes_nothing(queue, depends_on, error):
    queue.enqueue("charge", {"key": 1})
    before = queue.path.read_bytes()
    with pytest.raises(error):
        queue.enqueue("receipt", {}, depends_on=depends_on)
    assert queue.path.read_bytes() == before


def test_depends_on_refuses_a_unique_key_and_allow_failure_needs_depends_on(queue):
    charge = queue.enqueue("charge", {})
    before = queue.path.read_bytes()
    with pytest.raises(TypeError, match="unique_key"):
        queue.enqueue("receipt", {}, depends_on=charge, unique_key="r:1")
    with pytest.raises(TypeError, match="depends_on"):
        queue.enqueue("receipt", {}, allow_failure=True)
    assert queue.path.read_bytes() == before


def test_a_job_running_now_can_be_depended_on_and_its_worker_keeps_it(queue):
    # Given a handler that, while it runs, enqueues a job depending on its own job
    log, ids = [], {}

    def charge(payload):
        ids["receipt"] = queue.enqueue("receipt", {"key": 2}, depends_on=current_job().id)
        log.append("charge")
        return {"charged": True}
    charge_id = queue.enqueue("charge", {"key": 1})
    # When the worker records its result, over a line changed since its claim
    queue.process_jobs({"charge": charge, "receipt": lambda payload: log.append("receipt")})
    # Then its job is not taken for lost: completed once, and the dependent ran after it
    assert log == ["charge", "receipt"]
    assert queue.get_job(charge_id)["status"] == "completed"
    assert queue.get_job(ids["receipt"])["status"] == "completed"


def test_a_job_running_now_that_fails_for_good_still_cancels_a_dependent_added_meanwhile(queue):
    ids = {}

    def charge(payload):
        ids["receipt"] = queue.enqueue("receipt", {}, depends_on=current_job().id)
        raise ValueError("card declined")
    queue.enqueue("charge", {}, max_attempts=1)
    queue.process_jobs({"charge": charge, "receipt": lambda payload: None})
    assert queue.get_job(ids["receipt"])["status"] == "cancelled"


def test_dependents_wait_under_priorities_and_run_once_released(queue):
    # A ranked claim (priorities differ) chooses before its rewrite: a job it released must
    # still be taken by the next claim of the same run
    first = queue.enqueue("charge", {"key": 1}, priority=5)
    queue.enqueue("receipt", {"key": 2}, depends_on=first, priority=9)
    queue.enqueue("other", {"key": 3})
    log = []
    assert queue.process_jobs(recorder(log)) == 3
    assert sorted(log) == [("charge", 1), ("other", 3), ("receipt", 2)]
    assert log.index(("charge", 1)) < log.index(("receipt", 2))


def test_a_dependent_far_down_the_file_is_told_by_a_claim_that_takes_few_jobs(queue):
    # The rewrite that records the dependency's end goes on to the dependent's line, though
    # it has claimed all it wanted long before (plain order, and ranked by priority)
    for priority in (0, 3):
        first = queue.enqueue("charge", {"key": "first"}, priority=priority)
        for n in range(300):
            queue.enqueue("other", {"key": n}, priority=priority and 1)
        last = queue.enqueue("receipt", {"key": "last"}, depends_on=first, priority=priority)
        log = []
        assert queue.process_jobs(recorder(log)) == 302
        assert queue.get_job(last)["status"] == "completed"


def test_a_job_whose_options_merely_name_batch_or_after_is_no_waiting_job(queue):
    # "batch" and "after" as values (a queue, a key) must not read as the links' keys
    ids = [queue.enqueue("other", {"key": 1}, queue="batch"),
           queue.enqueue("other", {"key": 2}, concurrency_key="after"),
           queue.enqueue("other", {"key": 3}, unique_key="batch"),
           queue.enqueue("other", {"key": 4}, rate_limit="100/m", rate_key="after")]
    assert queue.process_jobs(recorder([])) == 4
    assert all(queue.get_job(job_id)["status"] == "completed" for job_id in ids)


def test_a_waiting_job_cancelled_then_retried_runs_and_is_not_stuck(queue):
    first = queue.enqueue("charge", {"key": 1})
    waiting = queue.enqueue("receipt", {"key": 2}, depends_on=first)
    with queue.batch(on_complete=("album", {"key": "album"})) as batch:
        batch.enqueue("resize", {"key": 3})
    assert queue.cancel_job(waiting) and queue.cancel_job(batch.id)
    queue.process_jobs(recorder([]))  # the dependency and the batch's job end meanwhile
    assert queue.retry_job(waiting) and queue.retry_job(batch.id)
    log = []
    assert queue.process_jobs(recorder(log)) == 2
    assert sorted(log) == [("album", "album"), ("receipt", 2)]


def test_a_batch_job_retried_by_hand_is_counted_once(queue):
    with queue.batch(on_complete=("album", {"key": "album"})) as batch:
        first = batch.enqueue("charge", {"key": 1}, max_attempts=1)
        second = batch.enqueue("resize", {"key": 2}, run_at=queue.clock() + 3600)
    log = []
    queue.process_jobs(recorder(log, fail={"charge"}))
    assert queue.retry_job(first)
    queue.process_jobs(recorder(log, fail={"charge"}))  # fails again: no second count
    assert queue.get_job(batch.id)["status"] == "pending"
    assert queue.job_options(batch.id)["batch"]["failed"] == 1
    queue.run_now(second)
    queue.process_jobs(recorder(log))
    assert queue.get_job(batch.id)["payload"]["batch"]["completed"] == 1
    assert log.count(("album", "album")) == 1


def test_an_edit_of_many_jobs_applies_its_change_to_the_waiting_ones_it_also_tells(queue):
    first = queue.enqueue("charge", {})
    waiting = queue.enqueue("receipt", {}, depends_on=first)
    moved = queue.update_each(lambda job: job.evolve(status="cancelled", error="moved away")
                              if job.status == "pending" else None)
    assert moved == 2
    assert queue.get_job(waiting)["error"] == "moved away"


def test_a_running_job_with_options_in_another_spelling_keeps_its_worker(queue):
    # Options written by other hands, valid but compact: the worker still sees that only
    # `then` was added, keeps its job, and runs it once
    runs, ids = [], {}

    def charge(payload):
        runs.append("charge")
        ids["receipt"] = queue.enqueue("receipt", {}, depends_on=current_job().id)
    charge_id = queue.enqueue("charge", {}, max_attempts=3)
    queue.update_each(lambda job: job.evolve(options='{"max_attempts":3}'))
    queue.process_jobs({"charge": charge, "receipt": lambda payload: runs.append("receipt")})
    assert runs == ["charge", "receipt"]
    assert queue.get_job(charge_id)["status"] == "completed"


# --- chain ------------------------------------------------------------------------------

def test_a_chain_runs_its_steps_in_order_and_a_failing_step_cancels_the_rest(queue):
    ok = queue.chain(("charge", {"key": 1}), ("receipt", {"key": 2}), ("ship", {"key": 3}))
    broken = queue.chain(("charge", {"key": 4}, {"max_attempts": 1}), ("receipt", {"key": 5}),
                         ("ship", {"key": 6}))
    log = []
    handlers = recorder(log)
    handlers["charge"] = lambda payload: (log.append(("charge", payload["key"])),
                                          payload["key"] == 1 or 1 / 0)
    queue.process_jobs(handlers)
    assert [key for _, key in log] == [1, 4, 2, 3]
    assert [queue.get_job(job_id)["status"] for job_id in ok] == ["completed"] * 3
    assert [queue.get_job(job_id)["status"] for job_id in broken] == [
        "failed", "cancelled", "cancelled"]


def test_a_chain_is_one_append_checked_whole(queue):
    queue.enqueue("other", {})
    before = queue.path.read_bytes()
    with pytest.raises(TypeError, match="step 1 of chain"):
        queue.chain(("charge", {}), ("receipt", {"bad": float("nan")}))
    with pytest.raises(TypeError, match="step 0 of chain"):
        queue.chain(("charge",))
    with pytest.raises(ValueError):
        queue.chain()
    assert queue.path.read_bytes() == before


# --- batch ------------------------------------------------------------------------------

def test_a_batch_callback_runs_once_every_job_ended_with_the_counts(queue):
    with queue.batch(on_complete=("album", {"key": "album"})) as batch:
        for n in range(5):
            batch.enqueue("resize", {"key": n}, max_attempts=1)
        batch.enqueue("charge", {"key": "bad"}, max_attempts=1)
    log = []
    queue.process_jobs({"resize": recorder(log)["resize"]})
    assert queue.get_job(batch.id)["status"] == "pending"
    assert queue.job_options(batch.id) == {"batch": {"size": 6, "completed": 5, "failed": 0,
                                                     "cancelled": 0}}
    queue.process_jobs(recorder(log, fail={"charge"}))
    assert log.count(("album", "album")) == 1
    callback = queue.get_job(batch.id)
    assert callback["status"] == "completed"
    assert callback["payload"] == {"key": "album", "batch": {
        "id": batch.id, "size": 6, "completed": 5, "failed": 1, "cancelled": 0}}


def test_a_cancelled_batch_job_counts_as_ended(queue):
    with queue.batch(on_complete=("album", {})) as batch:
        first = batch.enqueue("resize", {})
        batch.enqueue("resize", {})
    assert batch.ids[0] == first
    queue.cancel_job(first)
    queue.process_jobs({"resize": lambda p: None, "album": lambda p: None})
    assert queue.get_job(batch.id)["payload"]["batch"]["cancelled"] == 1
    assert queue.get_job(batch.id)["status"] == "completed"


def test_a_batch_is_written_in_one_append_and_nothing_if_its_block_raises(queue):
    queue.enqueue("other", {})
    before = queue.path.read_bytes()
    with pytest.raises(RuntimeError):
        with queue.batch(on_complete=("album", {})) as batch:
            batch.enqueue("resize", {"key": 1})
            raise RuntimeError("the upload failed")
    with pytest.raises(TypeError, match="job 1 of the batch"):
        with queue.batch(on_complete=("album", {})) as batch:
            batch.enqueue("resize", {"key": 1})
            batch.enqueue("resize", {"key": float("inf")})
    with pytest.raises(TypeError):
        queue.batch(on_complete="album")
    assert queue.path.read_bytes() == before


def test_an_empty_batch_runs_its_callback_at_once(queue):
    with queue.batch(on_complete=("album", {"key": "a"})) as batch:
        pass
    assert queue.get_job(batch.id)["payload"]["batch"]["size"] == 0
    assert queue.process_jobs({"album": lambda payload: None}) == 1


def test_the_links_are_plain_json_in_the_options_and_bad_ones_are_corrupt_lines(queue):
    charge = queue.enqueue("charge", {})
    queue.enqueue("receipt", {}, depends_on=charge)
    text = queue.path.read_text()
    assert '""then"": [""' in text and '""after""' in text
    queue.update_each(lambda job: job.evolve(options='{"after": "everything"}')
                      if job.type == "receipt" else None)
    bad = [line for line in queue.path.read_text().splitlines() if "receipt" in line][0]
    with pytest.raises(CorruptLineError, match="its after 'everything' is not a list of job ids"):
        queue.get_job(bad.split("\t")[0])
    assert queue.process_jobs({"charge": lambda p: None, "receipt": lambda p: None}) == 1


# --- real processes ------------------------------------------------------------------------

def worker(children, queue, runs_log, stop_file, *extra):
    return children.role("work", queue.path, runs_log, "--stop-file", stop_file, *extra)


def test_the_last_jobs_of_a_batch_ending_in_several_workers_at_once_release_it_once(
        tmp_path, children):
    # Given a batch of 120 short jobs and four cron workers started at one moment
    queue = Queue(tmp_path / "queue.tsv")
    with queue.batch(on_complete=("callback", {"key": "callback"})) as batch:
        for n in range(120):
            batch.enqueue("fail" if n % 10 == 0 else "send_email", {"key": n}, max_attempts=1)
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"
    start = StartLine(tmp_path / "start")
    workers = [worker(children, queue, runs_log, stop_file, *start.args()) for _ in range(4)]
    start.release(4)
    # When they have run every job
    wait_for(lambda: queue.get_job(batch.id)["status"] == "completed", what="the callback")
    stop_file.touch()
    for child in workers:
        child.communicate(timeout=60)
    # Then the callback ran once, counting each job once
    counts = runs(runs_log)
    assert counts["callback"] == 1
    assert all(counts[str(n)] == 1 for n in range(120))
    assert queue.get_job(batch.id)["payload"]["batch"] == {
        "id": batch.id, "size": 120, "completed": 108, "failed": 12, "cancelled": 0}


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02, 0.2])
def test_a_worker_killed_at_the_last_completion_leaves_the_batch_to_be_released_once(
        tmp_path, children, delay):
    # Given a batch whose callback only a second worker can run
    queue = Queue(tmp_path / "queue.tsv")
    with queue.batch(on_complete=("callback", {"key": "callback"})) as batch:
        for n in range(3):
            batch.enqueue("send_email", {"key": n})
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"
    first = worker(children, queue, runs_log, stop_file, "--skip", "callback")
    # When the first worker is SIGKILLed as the last job's handler returns (or just after)
    wait_for(lambda: runs(runs_log)["2"], what="the last job to run")
    time.sleep(delay)  # where the kill lands: before, during or after the result's write
    kill(first)
    # Then a second worker finishes what was left, and the callback runs once, with every
    # job counted once
    second = worker(children, queue, runs_log, stop_file, "--lease", "1")
    wait_for(lambda: queue.get_job(batch.id)["status"] == "completed", what="the callback")
    stop_file.touch()
    second.communicate(timeout=60)
    assert runs(runs_log)["callback"] == 1
    assert queue.get_job(batch.id)["payload"]["batch"]["completed"] == 3
    assert all(queue.get_job(job_id)["status"] == "completed" for job_id in batch.ids)


def test_a_dependency_failing_while_workers_claim_never_lets_its_dependent_run(
        tmp_path, children):
    # Given 60 pairs of a job and its dependent, a third of the jobs failing for good
    queue = Queue(tmp_path / "queue.tsv")
    pairs = []
    for n in range(60):
        first = queue.enqueue("fail" if n % 3 == 0 else "send_email", {"key": f"a{n}"},
                              max_attempts=1)
        pairs.append((n, first, queue.enqueue("send_email", {"key": f"b{n}"}, depends_on=first)))
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"
    start = StartLine(tmp_path / "start")
    workers = [worker(children, queue, runs_log, stop_file, *start.args()) for _ in range(3)]
    start.release(3)
    # When three workers claim and run them all
    wait_for(lambda: all(queue.get_job(second)["status"] in ("completed", "cancelled")
                         for _, _, second in pairs), what="every dependent to end")
    stop_file.touch()
    for child in workers:
        child.communicate(timeout=60)
    # Then a dependent ran once, after its job, exactly when that job completed
    order = runs_log.read_text().split()
    for n, first, second in pairs:
        if n % 3 == 0:
            assert f"b{n}" not in order
            assert queue.get_job(second)["status"] == "cancelled"
        else:
            assert order.count(f"b{n}") == 1 and order.index(f"a{n}") < order.index(f"b{n}")


def test_a_job_another_process_runs_can_be_depended_on_and_runs_once(tmp_path, children):
    # Given a job running in a cron worker process (its handler sleeps a second)
    queue = Queue(tmp_path / "queue.tsv")
    first = queue.enqueue("send_email", {"key": "first", "sleep": 1.0})
    runs_log, stop_file = tmp_path / "runs.log", tmp_path / "stop"
    child = worker(children, queue, runs_log, stop_file)
    wait_for(lambda: runs(runs_log)["first"], what="the job to start")
    # When this process enqueues a job depending on it, while it runs
    second = queue.enqueue("send_email", {"key": "second"}, depends_on=first)
    # Then the worker keeps its job (the line changed under it: only its then), and the
    # dependent runs after it, each once
    wait_for(lambda: queue.get_job(second)["status"] == "completed", what="the dependent")
    stop_file.touch()
    child.communicate(timeout=60)
    assert queue.get_job(first)["status"] == "completed"
    assert runs_log.read_text().split() == ["first", "second"]
