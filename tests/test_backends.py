"""One behaviour suite for both backends: the TSV file and RQ on a real Redis server.

Real time, no fake clock, so the same test runs on both. Where one backend cannot give what
the other does, the test says so and asserts what it does instead (the README's comparison
table shows the same). The TSV-only details (leases with a fake clock, the file format, the
bookmark) are in test_queue.py and test_table.py.
"""

import collections
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import dbbasic_queue
from dbbasic_queue import Queue

HELPER = str(Path(__file__).with_name("helpers.py"))
EMAIL = {"to": "user@example.com", "subject": "Welcome", "body": "Thanks for signing up!"}


@pytest.fixture(params=["tsv", "rq"])
def backend(request, tmp_path):
    """(queue, spec): spec names the same queue to a child process (see helpers.py)."""
    if request.param == "tsv":
        path = tmp_path / "data" / "queue.tsv"
        return Queue(path), str(path)
    from dbbasic_queue.rq_backend import RQQueue
    url, name = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:8]}"
    return RQQueue(url, name=name), f"{url}#{name}"


def count_jobs(queue) -> int:
    if isinstance(queue, Queue):
        return sum(1 for _ in queue.jobs())
    from rq.registry import ScheduledJobRegistry
    return queue.rq.count + len(ScheduledJobRegistry(queue=queue.rq))


def fail(payload):
    raise ValueError("SMTP said no")


def test_enqueue_get_process_and_cancel_keep_the_published_shapes(backend):
    queue, _ = backend
    job_id = queue.enqueue("send_email", EMAIL)
    later = queue.enqueue("send_email", EMAIL, run_at=time.time() + 3600)

    job = queue.get_job(job_id)
    assert set(job) == {"id", "type", "payload", "status", "created_at", "run_at", "attempts",
                        "error", "result"}
    assert (job["id"], job["type"], job["payload"], job["status"], job["attempts"]) == (
        job_id, "send_email", EMAIL, "pending", 0)
    assert all(isinstance(job[k], int) for k in ("created_at", "run_at", "attempts"))

    assert queue.process_jobs({"send_email": lambda p: {"sent": p["to"]}}) == 1
    done = queue.get_job(job_id)
    assert (done["status"], done["attempts"], done["result"], done["error"]) == (
        "completed", 1, {"sent": "user@example.com"}, None)
    assert queue.cancel_job(later) is True and queue.get_job(later)["status"] == "cancelled"
    assert queue.cancel_job(later) is False and queue.cancel_job(job_id) is False
    assert queue.get_job("0123456789abcdef") is None and queue.cancel_job("nope") is False


def test_a_delayed_job_waits_for_its_run_at(backend):
    queue, _ = backend
    job_id = queue.enqueue("t", {}, run_at=time.time() + 2)

    assert queue.process_jobs({"t": lambda p: "ran"}) == 0
    assert queue.get_job(job_id)["status"] == "pending"
    time.sleep(max(0.0, queue.get_job(job_id)["run_at"] - time.time()) + 0.2)  # whole seconds
    assert queue.process_jobs({"t": lambda p: "ran"}) == 1
    assert queue.get_job(job_id)["result"] == "ran"


def test_a_failing_job_is_retried_then_failed_with_its_error(backend):
    queue, _ = backend
    retried = queue.enqueue("send", {}, max_attempts=3)
    failed = queue.enqueue("send", {}, max_attempts=1)

    queue.process_jobs({"send": fail})

    job = queue.get_job(retried)
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 1, "ValueError: SMTP said no")
    assert job["run_at"] > time.time() + 60  # the backoff: 2 minutes, less jitter
    job = queue.get_job(failed)
    assert (job["status"], job["attempts"], job["error"]) == ("failed", 1, "ValueError: SMTP said no")


def test_a_job_without_handler_fails_naming_its_type(backend):
    queue, _ = backend
    job_id = queue.enqueue("new_feature", {}, max_attempts=1)
    queue.process_jobs({"other": lambda p: None})
    assert "new_feature" in queue.get_job(job_id)["error"]


@pytest.mark.parametrize("args, error", [
    ((None, {}), TypeError), (("", {}), ValueError), (("a\tb", {}), ValueError),
    (("t", ["list"]), TypeError), (("t", {"x": object()}), TypeError),
    (("t", {}, "tomorrow"), TypeError),
])
def test_bad_input_raises_and_adds_nothing(backend, args, error):
    queue, _ = backend
    queue.enqueue("t", {})
    with pytest.raises(error):
        queue.enqueue(*args)
    assert count_jobs(queue) == 1


def test_two_workers_at_once_run_each_job_once(backend, tmp_path):
    queue, spec = backend
    for n in range(100):
        queue.enqueue("send_email", {"key": n})
    runs_log, start_at = tmp_path / "runs.log", time.time() + 1.0

    workers = [subprocess.Popen([sys.executable, HELPER, "work", spec, str(runs_log),
                                 "--sleep", "0.002", "--start-at", str(start_at)])
               for _ in range(2)]
    try:
        assert [w.wait(timeout=60) for w in workers] == [0, 0]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    assert collections.Counter(runs_log.read_text().split()) == {str(n): 1 for n in range(100)}


def test_a_worker_sigkilled_mid_job(backend, tmp_path):
    """TSV: the job is taken again once its lease runs out (1 s here), and the lost attempt
    counts. RQ does not offer that in the same way: the job stays `processing` (RQ's
    `started`) until RQ's own cleanup of abandoned jobs, about its worker's TTL later
    (minutes), moves it to failed; this test asserts exactly that difference."""
    queue, spec = backend
    job_id = queue.enqueue("send_email", {"key": "stuck", "sleep": 60})
    runs_log = tmp_path / "runs.log"
    worker = subprocess.Popen([sys.executable, HELPER, "work", spec, str(runs_log), "--lease", "1"])
    try:
        deadline = time.monotonic() + 30
        while "stuck" not in (runs_log.read_text() if runs_log.exists() else ""):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        worker.kill()
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert queue.get_job(job_id)["status"] == "processing"

    if isinstance(queue, Queue):
        time.sleep(2.2)  # the lease, in whole seconds
        assert queue.process_jobs({"send_email": lambda p: "again"}, lease_seconds=1) == 1
        job = queue.get_job(job_id)
        assert (job["status"], job["attempts"]) == ("completed", 2)
    else:
        assert queue.process_jobs({"send_email": lambda p: "again"}) == 0
        assert queue.get_job(job_id)["status"] == "processing"


# --- moving from the TSV file to Redis ----------------------------------------------------

def test_migrate_moves_pending_jobs_once_with_their_ids_run_at_and_attempts(tmp_path, redis_url):
    from dbbasic_queue.rq_backend import RQQueue, migrate
    source = Queue(tmp_path / "queue.tsv")
    target = RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    done = source.enqueue("send_email", {"key": "done"})
    source.process_jobs({"send_email": lambda p: None})
    due = source.enqueue("send_email", {"key": "due"})
    retrying = source.enqueue("send_email", {"key": "retrying"})
    scheduled = source.enqueue("send_email", {"key": "later"}, run_at=time.time() + 3600)
    before = source.path.read_bytes()

    assert [job.id for job in migrate(source, target, dry_run=True)] == [due, retrying, scheduled]
    assert source.path.read_bytes() == before and target.get_job(due) is None

    target._add(due, "send_email", '{"key": "due"}', int(time.time()), 1, 0, 3, None)  # as if
    moved = migrate(source, target)  # an earlier migration died after Redis had one job

    assert [job.id for job in moved] == [due, retrying, scheduled]
    assert count_jobs(target) == 3
    assert target.get_job(scheduled)["status"] == "pending"
    for job_id in (due, retrying, scheduled):
        moved_job = source.get_job(job_id)
        assert (moved_job["status"], moved_job["error"]) == ("cancelled", f"moved to {redis_url}")
    assert source.get_job(done)["status"] == "completed"
    assert migrate(source, target) == [] and count_jobs(target) == 3

    assert target.process_jobs({"send_email": lambda p: p["key"]}) == 2
    assert target.get_job(retrying)["result"] == "retrying"


def test_migrate_keeps_run_at_and_attempts(tmp_path, redis_url):
    from dbbasic_queue.rq_backend import RQQueue, migrate
    source = Queue(tmp_path / "queue.tsv")
    target = RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    job_id = source.enqueue("send", {}, max_attempts=5)
    source.process_jobs({"send": fail})  # attempt 1 failed: pending, retried in ~2 minutes
    waiting = source.get_job(job_id)

    migrate(source, target)

    moved = target.get_job(job_id)
    assert (moved["status"], moved["attempts"], moved["run_at"]) == (
        "pending", 1, waiting["run_at"])


def test_dbbasic_queue_url_moves_the_published_functions_and_the_worker_to_redis(
        tmp_path, redis_url, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBBASIC_QUEUE_URL", redis_url)
    job_id = dbbasic_queue.enqueue("send_email", EMAIL)

    assert dbbasic_queue.get_job(job_id)["status"] == "pending"
    assert not (tmp_path / "data").exists()
    (tmp_path / "app_jobs_redis.py").write_text("handlers = {'send_email': lambda p: 'sent'}\n")
    from dbbasic_queue.cli import main
    assert main(["work", "--handlers", "app_jobs_redis:handlers"]) == 0
    assert dbbasic_queue.get_job(job_id)["result"] == "sent"
    assert main(["stats"]) == 2 and "rq info" in capsys.readouterr().err


# --- what differs, asserted (the README's table) -----------------------------------------

def test_unique_keys_work_on_tsv_and_are_refused_on_rq(backend):
    queue, _ = backend
    if isinstance(queue, Queue):
        first = queue.enqueue("t", {}, unique_key="k")
        assert queue.enqueue("t", {}, unique_key="k") == first
    else:
        with pytest.raises(dbbasic_queue.QueueError, match="not supported on the RQ backend"):
            queue.enqueue("t", {}, unique_key="k")
        assert count_jobs(queue) == 0


def test_retry_from_a_handler_uses_no_attempt_on_tsv_and_one_on_rq(backend):
    queue, _ = backend
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": lambda p: (_ for _ in ()).throw(dbbasic_queue.Retry(delay=600))})

    job = queue.get_job(job_id)
    assert job["status"] == "pending" and job["run_at"] > time.time() + 60
    if isinstance(queue, Queue):
        assert (job["attempts"], job["error"]) == (0, None)
    else:
        assert job["attempts"] == 1 and job["error"].startswith("Retry: ")


def test_the_worker_s_max_attempts_applies_on_tsv_but_rq_fixes_attempts_at_enqueue(backend):
    queue, _ = backend
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": fail}, max_attempts=1)

    expected = "failed" if isinstance(queue, Queue) else "pending"  # RQ: 3, fixed at enqueue
    assert queue.get_job(job_id)["status"] == expected


def test_rq_keeps_results_7_days_and_failures_10_years(redis_url):
    from rq.job import Job as RQJob
    from dbbasic_queue.rq_backend import RQQueue
    queue = RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    job = RQJob.fetch(queue.enqueue("t", {}), connection=queue.redis)
    assert (job.result_ttl, job.failure_ttl) == (7 * 86400, 10 * 365 * 86400)


def test_the_migrate_command_prints_what_moves_and_moves_it_once(tmp_path, redis_url, capsys):
    from dbbasic_queue.cli import main
    source = Queue(tmp_path / "queue.tsv")
    ids = [source.enqueue("send_email", {"key": n}) for n in range(3)]
    url = redis_url[:-1] + "2"  # a database of its own

    assert main(["--file", str(source.path), "migrate", "--to", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(job_id in out for job_id in ids) and out.endswith(f"would move 3 pending jobs to {url}\n")
    assert source.get_job(ids[0])["status"] == "pending"

    assert main(["--file", str(source.path), "migrate", "--to", url]) == 0
    assert capsys.readouterr().out.endswith(f"moved 3 pending jobs to {url}\n")
    assert main(["--file", str(source.path), "migrate", "--to", url]) == 0
    assert capsys.readouterr().out == f"moved 0 pending jobs to {url}\n"
    assert main(["--file", str(source.path), "migrate", "--to", "mysql://x"]) == 2


def test_a_loop_worker_on_redis_runs_new_jobs_and_stops_on_sigterm(tmp_path, redis_url):
    import os
    import signal
    url = redis_url[:-1] + "3"
    env = dict(os.environ, DBBASIC_QUEUE_URL=url, RUNS_LOG=str(tmp_path / "runs.log"),
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    worker = subprocess.Popen([sys.executable, "-m", "dbbasic_queue", "work", "--loop",
                               "--handlers", "jobs_for_cli:handlers"],
                              cwd=Path(__file__).parent, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        from dbbasic_queue.rq_backend import RQQueue
        queue = RQQueue(url)
        time.sleep(1.0)
        job_id = queue.enqueue("send_email", {"key": "live"})
        deadline = time.monotonic() + 30
        while queue.get_job(job_id)["status"] != "completed":
            assert time.monotonic() < deadline, "the loop worker did not run the job"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0 and "ran 1 jobs" in out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)


def test_the_example_cron_worker_runs_unchanged_on_redis_with_one_setting(tmp_path, redis_url):
    import os
    url = redis_url[:-1] + "4"
    env = dict(os.environ, DBBASIC_QUEUE_URL=url,
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    from dbbasic_queue.rq_backend import RQQueue
    queue = RQQueue(url)
    job_id = queue.enqueue("send_email", {"to": "ann@example.com", "subject": "Welcome"})

    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "examples" /
                                        "queue_worker.py")],
                   cwd=tmp_path, env=env, check=True, timeout=60, capture_output=True)

    job = queue.get_job(job_id)
    assert job["status"] == "completed" and isinstance(job["result"]["sent_at"], float)
    assert not (tmp_path / "data").exists()  # nothing went to a TSV file
