"""One behaviour suite for every backend: the TSV file, and RQ on a real redis-server.

Every test runs on each backend (the ``backend`` fixture in conftest.py), on the real clock,
the only one RQ has. Where backends differ, the test is marked with the capability it is
about (see dbbasic_queue.backend): ``declares`` runs it on the backends that declare the
capability, ``lacks`` on the others, asserting what they do instead. So the suite tests what
a backend declares, never which class it is. The TSV queue's details on a fake clock are in
test_queue.py; the file's format, crash windows and bookmark in test_storage.py and
test_processes.py; what only RQ has (the migration, its retention) in test_rq.py.
"""

import contextlib
import time
from pathlib import Path

import pytest

from dbbasic_queue import Retry, UnsupportedError
from dbbasic_queue.backend import (FILE, JOB_CONTROL, LEASES, LISTING, PERIODIC, PURGE, QUEUES,
                                   RETRY, RETRY_KEEPS_ATTEMPTS, UNIQUE_KEYS, WORKER_MAX_ATTEMPTS,
                                   WORKERS, WORKFLOWS)
from support import EMAIL, FAIL_ERROR, StartLine, fail, finish, kill, noop, runs, wait_for

CAPABILITIES = {UNIQUE_KEYS, LEASES, RETRY_KEEPS_ATTEMPTS, WORKER_MAX_ATTEMPTS, LISTING, PURGE,
                RETRY, FILE, PERIODIC, QUEUES, WORKERS, WORKFLOWS, JOB_CONTROL}
JOB_KEYS = {"id", "type", "payload", "status", "created_at", "run_at", "attempts", "error",
            "result"}

declares = pytest.mark.declares
lacks = pytest.mark.lacks


def retry_in_ten_minutes(payload):
    raise Retry(delay=600)


# --- what every backend does ------------------------------------------------------------

def test_a_backend_declares_known_capabilities_and_says_where_its_jobs_live(backend):
    queue = backend.queue
    assert isinstance(queue.capabilities, frozenset) and queue.capabilities <= CAPABILITIES
    assert queue.describe() == backend.spec.partition("#")[0]  # a path, or redis://host:port/db


def test_enqueue_get_process_and_cancel_keep_the_published_shapes(backend):
    queue = backend.queue
    job_id = queue.enqueue("send_email", EMAIL)
    later = queue.enqueue("send_email", EMAIL, run_at=time.time() + 3600)

    job = queue.get_job(job_id)
    assert set(job) == JOB_KEYS
    assert (job["id"], job["type"], job["payload"], job["status"], job["attempts"]) == (
        job_id, "send_email", EMAIL, "pending", 0)
    assert all(isinstance(job[k], int) for k in ("created_at", "run_at", "attempts"))

    assert queue.process_jobs({"send_email": lambda p: {"sent": p["to"]}}) == 1
    done = queue.get_job(job_id)
    assert (done["status"], done["attempts"], done["result"], done["error"]) == (
        "completed", 1, {"sent": "user@example.com"}, None)
    assert queue.cancel_job(later) is True and queue.get_job(later)["status"] == "cancelled"
    assert queue.cancel_job(later) is False and queue.cancel_job(job_id) is False


def test_unknown_and_malformed_ids_give_none_and_false(backend):
    queue = backend.queue
    queue.enqueue("t", {})
    for job_id in ("0123456789abcdef", "", "a\tb", "x\ny", None, 42, '"'):
        assert queue.get_job(job_id) is None
        assert queue.cancel_job(job_id) is False


def test_falsy_results_are_kept_and_none_reads_back_as_none(backend):
    queue = backend.queue
    ids = {value: queue.enqueue("t", {"v": value}) for value in (0, "", None)}

    queue.process_jobs({"t": lambda p: p["v"]})

    assert [queue.get_job(ids[v])["result"] for v in (0, "", None)] == [0, "", None]


@pytest.mark.slow  # waits two seconds of the real clock, the only one RQ has
def test_a_delayed_job_waits_for_its_run_at(backend):
    queue = backend.queue
    ran_at = []
    handlers = {"t": lambda p: ran_at.append(time.time()) or "ran"}
    job_id = queue.enqueue("t", {}, run_at=time.time() + 2)
    run_at = queue.get_job(job_id)["run_at"]

    assert queue.process_jobs(handlers) == 0
    assert queue.get_job(job_id)["status"] == "pending"
    wait_for(lambda: queue.process_jobs(handlers) == 1, seconds=15, interval=0.05,
             what="the job to run once due")
    assert ran_at[0] >= run_at and queue.get_job(job_id)["result"] == "ran"


def test_a_failing_job_is_retried_then_failed_with_its_error(backend):
    queue = backend.queue
    retried = queue.enqueue("send", {}, max_attempts=3)
    failed = queue.enqueue("send", {}, max_attempts=1)

    queue.process_jobs({"send": fail})

    job = queue.get_job(retried)
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 1, FAIL_ERROR)
    assert job["run_at"] > time.time() + 60  # the backoff: 2 minutes, less jitter
    job = queue.get_job(failed)
    assert (job["status"], job["attempts"], job["error"]) == ("failed", 1, FAIL_ERROR)


def test_a_job_without_handler_fails_naming_its_type(backend):
    queue = backend.queue
    job_id = queue.enqueue("new_feature", {}, max_attempts=1)
    queue.process_jobs({"other": noop})
    assert "new_feature" in queue.get_job(job_id)["error"]


@pytest.mark.parametrize("args, error", [
    ((None, {}), TypeError), (("", {}), ValueError), (("a\tb", {}), ValueError),
    (("t", ["list"]), TypeError), (("t", {"x": object()}), TypeError),
    (("t", {}, "tomorrow"), TypeError),
])
def test_bad_input_raises_and_adds_nothing(backend, args, error):
    queue = backend.queue
    queue.enqueue("t", {})
    with pytest.raises(error):
        queue.enqueue(*args)
    assert backend.count_jobs() == 1


def test_two_workers_at_once_run_each_job_once(backend, tmp_path, children):
    queue = backend.queue
    for n in range(100):
        queue.enqueue("send_email", {"key": n})
    runs_log, start = tmp_path / "runs.log", StartLine(tmp_path / "start")

    workers = [children.role("work", backend.spec, runs_log, "--sleep", 0.002, *start.args())
               for _ in range(2)]
    start.release(len(workers))
    for worker in workers:
        finish(worker)

    assert runs(runs_log) == {str(n): 1 for n in range(100)}


# --- a worker killed in the middle of a job -------------------------------------------------

def sigkill_a_worker_mid_job(backend, tmp_path, children) -> str:
    """A job whose worker (leases of 1 s, where leases exist) was SIGKILLed inside its
    handler; returns its id."""
    job_id = backend.queue.enqueue("send_email", {"key": "stuck", "sleep": 60})
    runs_log = tmp_path / "runs.log"
    worker = children.role("work", backend.spec, runs_log, "--lease", 1)
    wait_for(lambda: runs(runs_log)["stuck"] == 1, what="the job to start")
    kill(worker)
    assert backend.queue.get_job(job_id)["status"] == "processing"
    return job_id


@declares(LEASES)
def test_a_sigkilled_worker_s_job_runs_again_and_the_attempt_counts(backend, tmp_path, children):
    """At once where the dead worker's lock file shows it died, else once its lease ran out
    (test_faults_worker.py tests both ways of knowing)."""
    queue = backend.queue
    job_id = sigkill_a_worker_mid_job(backend, tmp_path, children)
    handlers = {"send_email": lambda p: "again"}

    wait_for(lambda: queue.process_jobs(handlers, lease_seconds=1) == 1, seconds=15,
             interval=0.05, what="the job to be taken again")

    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["result"]) == ("completed", 2, "again")


@lacks(LEASES)
def test_without_leases_a_sigkilled_worker_s_job_stays_processing_and_does_not_run_again(
        backend, tmp_path, children):
    """RQ moves such a job to failed in its own cleanup of abandoned jobs, about its dead
    worker's TTL later (minutes); until then no worker runs it."""
    queue = backend.queue
    job_id = sigkill_a_worker_mid_job(backend, tmp_path, children)

    assert queue.process_jobs({"send_email": lambda p: "again"}) == 0
    assert queue.get_job(job_id)["status"] == "processing"


# --- unique keys ----------------------------------------------------------------------------

@declares(UNIQUE_KEYS)
def test_a_unique_key_gives_the_id_of_the_job_waiting_with_it(backend):
    queue = backend.queue
    first = queue.enqueue("t", {}, unique_key="k")

    assert queue.enqueue("t", {}, unique_key="k") == first
    assert backend.count_jobs() == 1


@declares(WORKFLOWS)
def test_dependencies_chains_and_batches_run_in_order_and_release_once(backend):
    queue, order = backend.queue, []

    def note(payload):
        order.append(payload["key"])
    first = queue.enqueue("t", {"key": "first"})
    queue.enqueue("t", {"key": "after first"}, depends_on=first)
    queue.chain(("t", {"key": "step 1"}), ("t", {"key": "step 2"}))
    with queue.batch(on_complete=("t", {"key": "album"})) as batch:
        batch.enqueue("t", {"key": "image"})
    while queue.process_jobs({"t": note}):
        pass
    assert sorted(order) == sorted(["first", "after first", "step 1", "step 2", "image", "album"])
    assert order.index("first") < order.index("after first")
    assert order.index("step 1") < order.index("step 2")
    assert order.index("image") < order.index("album")
    assert queue.get_job(batch.id)["payload"]["batch"]["completed"] == 1


@declares(WORKFLOWS)
def test_a_dependency_that_fails_for_good_cancels_its_dependents_unless_allowed(backend):
    queue = backend.queue
    charge = queue.enqueue("bad", {}, max_attempts=1)
    receipt = queue.enqueue("t", {}, depends_on=charge)
    audit = queue.enqueue("t", {"key": "audit"}, depends_on=charge, allow_failure=True)
    while queue.process_jobs({"bad": fail, "t": lambda p: p.get("key")}):
        pass
    assert (queue.get_job(receipt)["status"], queue.get_job(receipt)["error"]) == (
        "cancelled", f"Cancelled: job {charge}, which it depends on, failed for good")
    assert queue.get_job(audit)["result"] == "audit"


@declares(JOB_CONTROL)
def test_only_a_processing_job_can_be_asked_to_stop_and_job_info_says_who_asked(backend):
    queue = backend.queue
    job_id = queue.enqueue("t", {})
    assert queue.stop(job_id) is False and queue.stop("0123456789abcdef") is False
    info = queue.job_info(job_id)
    assert {key: info[key] for key in JOB_KEYS} == queue.get_job(job_id)
    assert (info["progress"], info["stop_requested"], info["waiting"]) == (None, None, None)


# --- Retry from a handler -------------------------------------------------------------------

@declares(RETRY_KEEPS_ATTEMPTS)
def test_retry_from_a_handler_reschedules_the_job_without_using_an_attempt(backend):
    queue = backend.queue
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": retry_in_ten_minutes})

    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, None)
    assert job["run_at"] > time.time() + 60


@lacks(RETRY_KEEPS_ATTEMPTS)
def test_without_retry_keeping_attempts_retry_from_a_handler_reschedules_using_one(backend):
    queue = backend.queue
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": retry_in_ten_minutes})

    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert job["error"].startswith("Retry: ") and job["run_at"] > time.time() + 60


# --- the worker's max_attempts ---------------------------------------------------------------

@declares(WORKER_MAX_ATTEMPTS)
def test_the_worker_s_max_attempts_applies_to_jobs_enqueued_without_their_own(backend):
    queue = backend.queue
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": fail}, max_attempts=1)

    assert queue.get_job(job_id)["status"] == "failed"


@lacks(WORKER_MAX_ATTEMPTS)
def test_without_worker_max_attempts_a_job_keeps_the_attempts_fixed_at_enqueue(backend):
    queue = backend.queue
    job_id = queue.enqueue("t", {})  # 3 attempts, the default, fixed now

    with contextlib.suppress(UnsupportedError):  # refusing the option is as good
        queue.process_jobs({"t": fail}, max_attempts=1)

    assert queue.get_job(job_id)["status"] == "pending"  # not failed at its first error


# --- listing, purging and retrying -----------------------------------------------------------

@declares(LISTING)
def test_jobs_lists_every_job_as_get_job_shows_it_and_stats_counts_them(backend):
    queue = backend.queue
    done = queue.enqueue("t", {"n": 1})
    queue.process_jobs({"t": noop})
    later = queue.enqueue("t", {"n": 2}, run_at=time.time() + 3600)
    failed = queue.enqueue("bad", {}, max_attempts=1)
    queue.process_jobs({"bad": fail})

    assert {job["id"]: job for job in queue.jobs()} == {
        job_id: queue.get_job(job_id) for job_id in (done, later, failed)}
    stats = queue.stats()
    zero = dict.fromkeys(("pending", "processing", "completed", "failed", "cancelled"), 0)
    assert stats["jobs"] == 3
    assert stats["by_status"] == dict(zero, pending=1, completed=1, failed=1)
    assert stats["by_type"] == {"bad": dict(zero, failed=1),
                                "t": dict(zero, pending=1, completed=1)}


@declares(PURGE)
def test_purge_removes_finished_jobs_older_than_asked_and_nothing_else(backend):
    queue = backend.queue
    done = queue.enqueue("t", {})
    failed = queue.enqueue("bad", {}, max_attempts=1)
    queue.process_jobs({"t": noop, "bad": fail})
    waiting = queue.enqueue("t", {}, run_at=time.time() + 3600)

    assert queue.purge(3600) == 0 and queue.get_job(done)["status"] == "completed"
    wait_for(lambda: queue.purge(0) == 1, seconds=5, interval=0.05,
             what="the completed job to be older than now")

    assert queue.get_job(done) is None
    assert queue.get_job(failed)["status"] == "failed"  # not among the default statuses
    assert queue.get_job(waiting)["status"] == "pending"


@declares(RETRY)
def test_retry_job_and_retry_failed_give_failed_jobs_fresh_attempts_due_now(backend):
    queue = backend.queue
    first, second = (queue.enqueue("bad", {}, max_attempts=1) for _ in range(2))
    other = queue.enqueue("other", {}, max_attempts=1)
    queue.process_jobs({"bad": fail, "other": fail})

    assert queue.retry_job(first) is True and queue.retry_job(first) is False
    job = queue.get_job(first)
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, FAIL_ERROR)
    assert job["run_at"] <= time.time()
    assert queue.retry_failed("bad") == 1 and queue.get_job(other)["status"] == "failed"
    assert queue.retry_failed() == 1
    assert queue.process_jobs({"bad": noop, "other": noop}) == 3
    assert {queue.get_job(i)["status"] for i in (first, second, other)} == {"completed"}


@declares(FILE)
def test_the_jobs_live_in_a_file_one_line_each_that_grep_finds(backend):
    queue = backend.queue
    job_id = queue.enqueue("send_email", EMAIL)
    queue.enqueue("send_email", EMAIL)

    lines = Path(queue.describe()).read_text(encoding="utf-8").splitlines()

    [line] = [line for line in lines if job_id in line]
    assert "send_email" in line and "pending" in line and "user@example.com" in line


@declares(QUEUES)
def test_a_worker_takes_its_queues_in_order_and_the_higher_priority_first(backend):
    # Given jobs in three queues, two of them in default at different priorities
    queue, order = backend.queue, []
    for name, options in [("d0", {}), ("d5", {"priority": 5}), ("c0", {"queue": "critical"}),
                          ("e0", {"queue": "emails"})]:
        queue.enqueue("t", {"n": name}, **options)

    # When a worker serves critical, then default
    ran = queue.process_jobs({"t": lambda p: order.append(p["n"])}, queues=["critical", "default"])

    # Then it takes critical's job, then default's by priority, and leaves emails alone
    assert (ran, order) == (3, ["c0", "d5", "d0"])
    assert queue.stats()["queues"]["emails"] == {"pending": 1, "processing": 0}
    assert queue.process_jobs({"t": lambda p: order.append(p["n"])}) == 1 and order[-1] == "e0"


@declares(QUEUES)
def test_a_paused_queue_keeps_its_jobs_untouched_until_resumed(backend):
    queue = backend.queue
    assert queue.pause("emails") is True and queue.pause("emails") is False
    assert [(p["kind"], p["name"]) for p in queue.paused()] == [("queue", "emails")]
    held = queue.enqueue("send_email", EMAIL, queue="emails", priority=9)
    other = queue.enqueue("send_email", EMAIL)

    assert queue.process_jobs({"send_email": noop}) == 1
    assert queue.get_job(other)["status"] == "completed"
    assert (queue.get_job(held)["status"], queue.get_job(held)["attempts"]) == ("pending", 0)

    assert queue.resume("emails") is True and queue.resume("emails") is False
    assert queue.paused() == []
    assert queue.process_jobs({"send_email": noop}) == 1
    assert queue.get_job(held)["status"] == "completed"


@declares(QUEUES)
def test_a_handlers_queue_and_an_enqueues_priority_are_the_jobs_options(backend):
    queue = backend.queue

    @queue.handler("digest", queue="bulk")
    def digest(payload):
        return "sent"

    bulk = queue.enqueue("digest", {})
    urgent = queue.enqueue("digest", {}, queue="default", priority=7)
    plain = queue.enqueue("send_email", EMAIL)

    def queue_options(job_id):  # RQ names max_attempts too, fixed at enqueue there
        return {k: v for k, v in queue.job_options(job_id).items() if k in ("queue", "priority")}
    assert queue_options(bulk) == {"queue": "bulk"}
    assert queue_options(urgent) == {"priority": 7}
    assert queue_options(plain) == {}
    assert queue.process_jobs(queue.handlers, queues=["bulk"]) == 1
    assert queue.get_job(bulk)["result"] == "sent" and queue.get_job(urgent)["status"] == "pending"


@declares(QUEUES)
def test_a_bad_queue_priority_or_choice_is_refused_and_adds_nothing(backend):
    queue = backend.queue
    for options, error in [({"queue": "no spaces"}, ValueError), ({"queue": 3}, TypeError),
                           ({"priority": 101}, ValueError), ({"priority": "1"}, TypeError)]:
        with pytest.raises(error):
            queue.enqueue("send_email", EMAIL, **options)
    with pytest.raises(ValueError):
        queue.process_jobs({"send_email": noop}, queues=[])
    with pytest.raises(ValueError):
        queue.pause("no spaces")
    assert backend.count_jobs() == 0


def test_delete_removes_any_job_but_one_its_worker_runs(backend):
    from dbbasic_queue.worker.running import current_job
    queue = backend.queue
    pending = queue.enqueue("send_email", EMAIL, run_at=time.time() + 3600)
    refused = []

    def handler(payload):
        refused.append(queue.delete(current_job().id))  # processing: its worker's
    running = queue.enqueue("t", {})
    assert queue.process_jobs({"t": handler}) == 1
    assert refused == [False] and queue.get_job(running)["status"] == "completed"
    assert queue.delete(pending) is True and queue.get_job(pending) is None
    assert queue.delete(running) is True and queue.get_job(running) is None
    assert queue.delete(pending) is False and queue.delete("0" * 16) is False


def test_enqueue_many_adds_every_job_or_none_and_returns_their_ids_in_order(backend):
    queue = backend.queue
    jobs = [("send_email", dict(EMAIL, n=n)) for n in range(50)] + [("sync_crm", {"id": 7})]
    ids = queue.enqueue_many(jobs, max_attempts=2)
    assert len(ids) == len(set(ids)) == 51 and backend.count_jobs() == 51
    assert [queue.get_job(job_id)["payload"] for job_id in ids] == [p for _, p in jobs]
    assert queue.job_options(ids[0])["max_attempts"] == 2
    # one bad job: an error naming it, and nothing written
    with pytest.raises(TypeError, match="job 2 of enqueue_many: payload must be a dict"):
        queue.enqueue_many([("t", {}), ("t", {}), ("t", "not a dict")])
    with pytest.raises(ValueError, match="job 1 of enqueue_many"):
        queue.enqueue_many([("t", {}), ("", {})])
    with pytest.raises(TypeError, match="unique_key"):
        queue.enqueue_many([("t", {})], unique_key="k")
    assert backend.count_jobs() == 51
    assert queue.enqueue_many([]) == []
    # and a worker runs them all
    assert queue.process_jobs({"send_email": noop, "sync_crm": noop}) == 51


# --- what an operator sees ------------------------------------------------------------------

@declares(WORKERS)
def test_the_workers_and_their_throughput_are_listed(backend):
    queue = backend.queue
    for _ in range(3):
        queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})

    assert queue.workers() and queue.workers()[0]["completed"] == 3
    assert sum(queue.throughput()["completed"]) == 3


@lacks(WORKERS)
def test_without_a_registry_workers_and_throughput_are_refused_saying_where_to_look(backend):
    for verb in (backend.queue.workers, backend.queue.throughput):
        with pytest.raises(UnsupportedError, match="rq info"):
            verb()
