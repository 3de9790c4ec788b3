"""What only the RQ backend has: moving a TSV queue's jobs to Redis, its retention times,
``DBBASIC_QUEUE_URL``, and the worker on Redis run as cron or as a loop. All on a real
redis-server (the ``redis_url`` fixture); the behaviour it shares with the TSV queue is
tested in test_backends.py."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import dbbasic_queue
from dbbasic_queue import Queue
from support import EMAIL, ROOT, fail, finish, runs, wait_for


def rq_queue(redis_url):
    from dbbasic_queue.rq.backend import RQQueue
    return RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")


def count_jobs(queue) -> int:
    from rq.registry import ScheduledJobRegistry
    return queue.rq.count + len(ScheduledJobRegistry(queue=queue.rq))


# --- moving from the TSV file to Redis ----------------------------------------------------

def test_migrate_moves_pending_jobs_once_with_their_ids_run_at_and_attempts(tmp_path, redis_url):
    from dbbasic_queue.rq.backend import migrate
    source = Queue(tmp_path / "queue.tsv")
    target = rq_queue(redis_url)
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


def test_migrate_leaves_jobs_that_wait_or_are_waited_for_in_the_file(tmp_path, redis_url,
                                                                      caplog):
    # RQ has no dependencies here: moving either side would run a job too early, or never
    from dbbasic_queue.rq.backend import migrate
    source, target = Queue(tmp_path / "queue.tsv"), rq_queue(redis_url)
    first = source.enqueue("send_email", {"key": "charge"})
    waiting = source.enqueue("send_email", {"key": "receipt"}, depends_on=first)
    with source.batch(on_complete=("send_email", {"key": "album"})) as batch:
        batch.enqueue("send_email", {"key": "image"})
    plain = source.enqueue("send_email", {"key": "plain"})
    assert [job.id for job in migrate(source, target)] == [plain]
    assert "left 4 pending jobs" in caplog.text
    assert [source.get_job(job_id)["status"] for job_id in (first, waiting, batch.id)] == [
        "pending"] * 3
    assert source.process_jobs({"send_email": lambda payload: None}) == 4


def test_migrate_keeps_run_at_and_attempts(tmp_path, redis_url):
    from dbbasic_queue.rq.backend import migrate
    source = Queue(tmp_path / "queue.tsv")
    target = rq_queue(redis_url)
    job_id = source.enqueue("send", {}, max_attempts=5)
    source.process_jobs({"send": fail})  # attempt 1 failed: pending, retried in ~2 minutes
    waiting = source.get_job(job_id)

    migrate(source, target)

    moved = target.get_job(job_id)
    assert (moved["status"], moved["attempts"], moved["run_at"]) == (
        "pending", 1, waiting["run_at"])


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


# --- moving back, from Redis to a TSV file ------------------------------------------------

def test_migrate_back_moves_redis_pending_jobs_into_a_file_once_with_what_they_were(
        tmp_path, redis_url):
    from dbbasic_queue.rq.backend import migrate_back
    source = rq_queue(redis_url)
    target = Queue(tmp_path / "data" / "queue.tsv")
    done = source.enqueue("send_email", {"key": "done"})
    source.process_jobs({"send_email": lambda p: None})  # finished: it stays in Redis
    waiting = [source.enqueue("send_email", {"key": n}, max_attempts=4) for n in range(3)]
    later = source.enqueue("report", {"key": "later"}, run_at=time.time() + 3600,
                           queue="reports", priority=10)
    before = source.get_job(waiting[0])
    assert sorted(job["id"] for job in migrate_back(source, target, dry_run=True)) == sorted(
        waiting + [later])
    assert not target.path.exists()

    moved = migrate_back(source, target)

    assert sorted(job["id"] for job in moved) == sorted(waiting + [later])
    back = target.get_job(waiting[0])
    assert (back["type"], back["payload"], back["status"], back["run_at"], back["attempts"]) == (
        "send_email", {"key": 0}, "pending", before["run_at"], 0)
    assert target.job_options(waiting[0])["max_attempts"] == 4
    assert target.job_options(later) == {"queue": "reports", "priority": 10, "max_attempts": 3}
    assert target.get_job(later)["run_at"] == source.get_job(later)["run_at"]
    for job_id in waiting + [later]:
        there = source.get_job(job_id)
        assert (there["status"], there["error"]) == ("cancelled", f"moved to {target.path}")
    assert source.get_job(done)["status"] == "completed" and target.get_job(done) is None
    # a second run moves nothing, and the file's worker runs them
    assert migrate_back(source, target) == []
    assert target.process_jobs({"send_email": lambda p: p["key"]}) == 3
    assert [target.get_job(job_id)["result"] for job_id in waiting] == [0, 1, 2]


def test_migrate_back_killed_midway_then_run_again_moves_every_job_once(tmp_path, redis_url,
                                                                        children):
    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/7"
    from redis import Redis
    Redis.from_url(url).flushdb()
    source = RQQueue(url)
    ids = source.enqueue_many([("send_email", {"n": n}) for n in range(1500)])
    path = tmp_path / "data" / "queue.tsv"
    script = (f"from dbbasic_queue import Queue\nfrom dbbasic_queue.rq.backend import "
              f"RQQueue, migrate_back\nmigrate_back(RQQueue({url!r}), Queue({str(path)!r}))\n")
    mover = children.start([sys.executable, "-c", script],
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    # When it is SIGKILLed once it has moved some jobs, but not all
    wait_for(lambda: path.exists() and len(path.read_bytes().splitlines()) > 20,
             what="the first jobs moved")
    mover.send_signal(signal.SIGKILL)
    mover.wait()
    # Then a second run moves the rest, and every job is in the file once, cancelled in Redis
    from dbbasic_queue.rq.backend import migrate_back
    migrate_back(source, Queue(path))
    lines = path.read_bytes().splitlines()[1:]
    moved = [line.split(b"\t")[0].decode() for line in lines]
    assert sorted(moved) == sorted(ids)  # each once: none lost, none twice
    assert all(source.get_job(job_id)["status"] == "cancelled" for job_id in ids[::50])
    assert Queue(path).stats()["corrupt_lines"] == 0


def test_migrate_to_redis_killed_midway_then_run_again_moves_every_job_once(tmp_path, redis_url,
                                                                          children):
    # Given 1,500 pending jobs in the file, half of them with a unique key, and a migration
    # to Redis in another process
    from dbbasic_queue.rq.backend import RQQueue, migrate
    source = Queue(tmp_path / "data" / "queue.tsv")
    ids = source.enqueue_many([("send_email", {"n": n}) for n in range(750)])
    ids += [source.enqueue("send_email", {"n": n}, unique_key=f"k{n}") for n in range(750, 1500)]
    name = f"test-{uuid.uuid4().hex[:8]}"
    target = RQQueue(redis_url, name=name)
    script = (f"from dbbasic_queue import Queue\nfrom dbbasic_queue.rq.backend import "
              f"RQQueue, migrate\nmigrate(Queue({str(source.path)!r}), "
              f"RQQueue({redis_url!r}, name={name!r}))\n")
    mover = children.start([sys.executable, "-c", script],
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    # When it is SIGKILLed once Redis holds some of them, but not all
    wait_for(lambda: target.rq.count > 20, what="the first jobs in Redis")
    mover.send_signal(signal.SIGKILL)
    mover.wait()
    assert target.rq.count < 1500, "the migration ended before the kill: kill it sooner"
    # Then a second run moves the rest: each job once in Redis, with its key, and moved in
    # the file; a third moves nothing
    migrate(source, target)
    queued = target.rq.job_ids
    assert sorted(queued) == sorted(ids)  # each once: none lost, none twice
    assert all(source.get_job(job_id)["status"] == "cancelled" for job_id in ids)
    assert target.job_options(ids[-1])["unique_key"] == "k1499"
    assert target.enqueue("send_email", {}, unique_key="k1499") == ids[-1]
    assert migrate(source, target) == [] and target.rq.count == 1500
    assert source.stats()["corrupt_lines"] == 0


# --- RQ's own settings --------------------------------------------------------------------

def test_rq_keeps_results_7_days_and_failures_10_years(redis_url):
    from rq.job import Job as RQJob
    queue = rq_queue(redis_url)
    job = RQJob.fetch(queue.enqueue("t", {}), connection=queue.redis)
    assert (job.result_ttl, job.failure_ttl) == (7 * 86400, 10 * 365 * 86400)


# --- DBBASIC_QUEUE_URL: the same app and worker, on Redis ---------------------------------

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
    capsys.readouterr()
    assert main(["pause", "--type", "send_email"]) == 2  # a pause by type: RQ has none
    assert f"not supported on the RQ backend ({redis_url})" in capsys.readouterr().err


def start_loop_worker(children, tmp_path, url: str):
    """``dbbasic-queue work --loop`` on ``url`` (a Redis database of the test's own, so the
    only worker there is this one), once it has registered with Redis."""
    from redis import Redis
    from rq import Worker
    worker = children.cli("work", "--loop", "--handlers", "jobs_for_cli:handlers",
                          log=tmp_path / "worker.log", DBBASIC_QUEUE_URL=url,
                          RUNS_LOG=str(tmp_path / "runs.log"))
    wait_for(lambda: Worker.count(connection=Redis.from_url(url)) == 1,
             what="the worker to register with Redis")
    return worker


def test_a_loop_worker_on_redis_runs_new_jobs_and_stops_on_sigterm(tmp_path, redis_url, children):
    from dbbasic_queue.rq.backend import RQQueue
    url = redis_url[:-1] + "3"
    worker = start_loop_worker(children, tmp_path, url)

    queue = RQQueue(url)
    job_id = queue.enqueue("send_email", {"key": "live"})
    wait_for(lambda: queue.get_job(job_id)["status"] == "completed",
             what="the loop worker to run the job")
    worker.send_signal(signal.SIGTERM)
    assert "ran 1 job\n" in finish(worker)


def test_a_loop_worker_on_redis_finds_a_new_queue_and_honours_its_pause(tmp_path, redis_url,
                                                                        children):
    from dbbasic_queue.rq.backend import RQQueue
    url = redis_url[:-1] + "5"
    worker = start_loop_worker(children, tmp_path, url)

    # Given, once the worker runs, a paused queue that did not exist when it started, holding
    # a job of high priority, and then a job in the default queue
    queue = RQQueue(url)
    assert queue.pause("emails")
    held = queue.enqueue("send_email", {"key": "held"}, queue="emails", priority=9)
    other = queue.enqueue("send_email", {"key": "other"})

    # Then the worker runs the default job and leaves the paused one, untouched
    wait_for(lambda: queue.get_job(other)["status"] == "completed",
             what="the loop worker to run the default queue's job")
    assert (queue.get_job(held)["status"], queue.get_job(held)["attempts"]) == ("pending", 0)

    # When the queue is resumed, then the running worker takes its job
    assert queue.resume("emails")
    wait_for(lambda: queue.get_job(held)["status"] == "completed",
             what="the loop worker to run the resumed queue's job")
    worker.send_signal(signal.SIGTERM)
    assert "ran 2 jobs\n" in finish(worker)


def test_the_example_cron_worker_runs_unchanged_on_redis_with_one_setting(tmp_path, redis_url):
    from dbbasic_queue.rq.backend import RQQueue
    url = redis_url[:-1] + "4"
    queue = RQQueue(url)
    job_id = queue.enqueue("send_email", {"to": "ann@example.com", "subject": "Welcome"})

    subprocess.run([sys.executable, str(ROOT / "examples" / "queue_worker.py")], cwd=tmp_path,
                   env=dict(os.environ, DBBASIC_QUEUE_URL=url, PYTHONPATH=str(ROOT)),
                   check=True, timeout=60, capture_output=True)

    job = queue.get_job(job_id)
    assert job["status"] == "completed" and isinstance(job["result"]["sent_at"], float)
    assert not (tmp_path / "data").exists()  # nothing went to a TSV file


def test_failed_jobs_are_retried_and_finished_ones_purged_on_redis(redis_url, capsys,
                                                                  monkeypatch, tmp_path):
    from redis import Redis

    from dbbasic_queue.cli import main
    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/8"  # the command line's default queue: its own db
    Redis.from_url(url).flushdb()
    queue = RQQueue(url)
    broken = [queue.enqueue("charge_card", {"n": n}, max_attempts=1) for n in range(2)]
    other = queue.enqueue("sync_crm", {}, max_attempts=1)
    done = queue.enqueue("send_email", EMAIL)

    def decline(payload):
        raise ValueError("card declined")
    queue.process_jobs({"charge_card": decline, "sync_crm": decline,
                        "send_email": lambda p: "ok"})
    assert [queue.get_job(i)["status"] for i in broken + [other]] == ["failed"] * 3
    # One job retried: pending again, fresh attempts, its traceback kept
    assert queue.retry_job(broken[0]) is True and queue.retry_job(done) is False
    job = queue.get_job(broken[0])
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, "ValueError: card declined")
    assert len(queue.tracebacks(broken[0])) == 1
    # the failed jobs of one type, from the command line
    monkeypatch.setenv("DBBASIC_QUEUE_URL", url)
    monkeypatch.chdir(tmp_path)
    assert main(["retry", "--failed", "--type", "charge_card"]) == 0
    assert "retrying 1 failed job" in capsys.readouterr().out
    assert queue.get_job(other)["status"] == "failed"
    # and a worker now completes them, with their own options
    assert queue.process_jobs({"charge_card": lambda p: "charged"}) == 2
    assert [queue.get_job(i)["result"] for i in broken] == ["charged", "charged"]
    # purge: finished jobs older than the age given go; pending and failed-for-good the
    # statuses not named stay
    assert queue.purge(3600, ["completed"]) == 0  # none that old
    assert main(["purge", "--older-than", "0s", "--status", "completed"]) == 0
    assert [queue.get_job(i) for i in broken + [done]] == [None, None, None]
    assert queue.get_job(other)["status"] == "failed"


def test_the_migrate_command_moves_back_from_the_redis_of_dbbasic_queue_url(
        tmp_path, redis_url, capsys, monkeypatch):
    from redis import Redis

    from dbbasic_queue.cli import main
    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/6"
    Redis.from_url(url).flushdb()
    ids = [RQQueue(url).enqueue("send_email", {"key": n}) for n in range(2)]
    monkeypatch.setenv("DBBASIC_QUEUE_URL", url)
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", "--to", "data/queue.tsv", "--dry-run"]) == 0
    file = tmp_path / "data" / "queue.tsv"
    assert capsys.readouterr().out.endswith(f"would move 2 pending jobs to {file}\n")
    assert main(["migrate", "--to", "data/queue.tsv"]) == 0
    assert capsys.readouterr().out.endswith(f"moved 2 pending jobs to {file}\n")
    assert [Queue("data/queue.tsv").get_job(i)["status"] for i in ids] == ["pending"] * 2
    assert main(["migrate", "--to", "data/queue.tsv"]) == 0
    assert capsys.readouterr().out == f"moved 0 pending jobs to {file}\n"
    monkeypatch.delenv("DBBASIC_QUEUE_URL")  # back from where? the command says
    assert main(["migrate", "--to", "data/queue.tsv"]) == 2
    assert "DBBASIC_QUEUE_URL naming that Redis" in capsys.readouterr().err


def test_a_run_on_redis_logs_one_line_per_failure_and_one_summary_line(redis_url, caplog):
    import logging
    queue = rq_queue(redis_url)
    queue.enqueue("send_email", EMAIL)
    broken = queue.enqueue("charge_card", {}, max_attempts=1)
    retried = queue.enqueue("charge_card", {}, max_attempts=2)

    def decline(payload):
        raise ValueError("card declined")
    with caplog.at_level(logging.INFO):
        assert queue.process_jobs({"send_email": lambda p: None, "charge_card": decline}) == 3
    # One WARNING a failed attempt, no traceback printed by RQ's own handler
    failures = [r for r in caplog.records if "card declined" in r.getMessage()]
    assert len(failures) == 2 and all(r.name == "dbbasic_queue" for r in failures)
    assert not [r for r in caplog.records if r.name.startswith("rq") and r.levelno >= logging.ERROR]
    assert not any("Traceback" in r.getMessage() for r in caplog.records)
    # and one summary line, as on the file
    [summary] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ran ")]
    assert summary.startswith("ran 3 jobs in ") and summary.endswith(
        "1 completed, 1 failed, 1 to retry")
    assert len(queue.tracebacks(broken)) == 1 and queue.get_job(retried)["attempts"] == 1


def test_a_handler_s_progress_on_redis_is_in_its_meta_and_job_info_shows_it(redis_url):
    from dbbasic_queue.worker.running import current_job
    queue, seen = rq_queue(redis_url), {}

    def export(payload):
        current_job().progress(0.3, note="3 of 10")
        seen["info"] = rq_queue_named(redis_url, queue).job_info(current_job().id)
        return "done"
    job_id = queue.enqueue("export", {})
    assert queue.process_jobs({"export": export}) == 1
    assert seen["info"]["status"] == "processing"
    assert (seen["info"]["progress"]["done"], seen["info"]["progress"]["note"]) == (0.3, "3 of 10")
    assert queue.job_info(job_id)["progress"] is None  # it ended
    assert queue.stop(job_id) is False  # only a processing job is asked to stop


def rq_queue_named(redis_url, queue):
    """Another RQQueue on the same Redis queue (as a web process would have)."""
    from dbbasic_queue.rq.backend import RQQueue
    return RQQueue(redis_url, name=queue.name)


# --- unique keys, kept through migrate both ways -----------------------------------------

def test_a_unique_key_on_redis_is_held_until_its_job_ends(redis_url):
    queue = rq_queue(redis_url)
    first = queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42")
    assert queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42") == first
    assert queue.job_options(first) == {"unique_key": "welcome:42"}
    assert queue.process_jobs({"welcome": lambda p: "sent"}) == 1
    assert queue.redis.get(f"{queue.name}/unique/welcome:42") is None  # freed at its end
    second = queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42")
    assert second != first and queue.cancel_job(second)
    assert queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42") not in (first, second)
    with pytest.raises(ValueError):
        queue.enqueue("welcome", {}, unique_key="two\nlines")


def test_enqueues_of_one_unique_key_from_four_processes_at_once_make_one_job(redis_url,
                                                                             children):
    queue = rq_queue(redis_url)
    script = (f"import sys\nfrom dbbasic_queue.rq.backend import RQQueue\n"
              f"queue = RQQueue({redis_url!r}, name={queue.name!r})\n"
              f"print(' '.join(queue.enqueue('t', {{}}, unique_key='k') for _ in range(50)))\n")
    enqueuers = [children.start([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                env=dict(os.environ, PYTHONPATH=str(ROOT))) for _ in range(4)]
    ids = set()
    for enqueuer in enqueuers:
        out, _ = enqueuer.communicate(timeout=60)
        assert enqueuer.returncode == 0
        ids |= set(out.split())
    assert len(ids) == 1 and count_jobs(queue) == 1


def test_unique_keys_survive_migrate_to_redis_and_back(tmp_path, redis_url):
    from dbbasic_queue.rq.backend import migrate, migrate_back
    source, target = Queue(tmp_path / "queue.tsv"), rq_queue(redis_url)
    held_there = target.enqueue("welcome", {"user": 7}, unique_key="welcome:7")
    keyed = source.enqueue("welcome", {"user": 42}, unique_key="welcome:42")
    twin = source.enqueue("welcome", {"user": 7}, unique_key="welcome:7")
    # Given a migration to Redis: the key goes with its job, and a job whose key a job in
    # Redis holds is not added (as enqueue would not add it), its error naming that job
    assert [job.id for job in migrate(source, target)] == [keyed, twin]
    assert target.job_options(keyed) == {"unique_key": "welcome:42"}
    assert target.enqueue("welcome", {"user": 42}, unique_key="welcome:42") == keyed
    assert target.get_job(twin) is None
    assert source.get_job(twin)["error"] == (f"moved to {redis_url}: job {held_there} there "
                                             f"has its unique key")
    # When the jobs move back to a file, then the file's enqueue honours the keys
    back = Queue(tmp_path / "back.tsv")
    assert sorted(job["id"] for job in migrate_back(target, back)) == sorted([keyed, held_there])
    assert back.job_options(keyed) == {"unique_key": "welcome:42", "max_attempts": 3}
    assert back.enqueue("welcome", {"user": 42}, unique_key="welcome:42") == keyed
    assert back.enqueue("welcome", {"user": 7}, unique_key="welcome:7") == held_there
    # and the keys are free in Redis, whose jobs were cancelled
    assert target.enqueue("welcome", {"user": 42}, unique_key="welcome:42") != keyed


def test_migrate_back_does_not_add_a_job_whose_key_a_file_job_holds_and_names_that_job(
        tmp_path, redis_url):
    from dbbasic_queue.rq.backend import migrate_back
    source, target = rq_queue(redis_url), Queue(tmp_path / "queue.tsv")
    in_file = target.enqueue("welcome", {"user": 7}, unique_key="welcome:7")
    in_redis = source.enqueue("welcome", {"user": 7}, unique_key="welcome:7")
    # When the Redis job moves back to a file whose pending job holds its key
    assert [job["id"] for job in migrate_back(source, target)] == [in_redis]
    # Then it is not added (as the file's enqueue would not add it), and its error names
    # the file's job; the file has one job with the key
    assert [job["id"] for job in target.jobs() if job["status"] == "pending"] == [in_file]
    assert target.get_job(in_redis) is None
    assert source.get_job(in_redis)["status"] == "cancelled"
    assert source.get_job(in_redis)["error"] == (f"moved to {target.describe()}: job {in_file} "
                                                 f"there has its unique key")
    assert migrate_back(source, target) == []


# --- jobs that wait for jobs, on Redis ----------------------------------------------------

def decline(payload):
    raise ValueError("card declined")


def test_on_redis_a_failed_dependency_cancels_its_dependents_down_the_chain(redis_url):
    queue = rq_queue(redis_url)
    charge = queue.enqueue("charge", {}, max_attempts=1)
    receipt = queue.enqueue("receipt", {}, depends_on=charge)
    [thanks] = [queue.enqueue("thanks", {}, depends_on=receipt)]
    audit = queue.enqueue("audit", {}, depends_on=[charge, receipt], allow_failure=True)
    assert queue.job_info(receipt)["waiting"] == f"for 1 job: {charge}"
    assert queue.get_job(receipt)["status"] == "pending"

    while queue.process_jobs({"charge": decline, "receipt": noop_handler, "thanks": noop_handler,
                              "audit": lambda p: "audited"}):
        pass

    assert queue.get_job(charge)["status"] == "failed"
    assert (queue.get_job(receipt)["status"], queue.get_job(receipt)["error"]) == (
        "cancelled", f"Cancelled: job {charge}, which it depends on, failed for good")
    assert queue.get_job(thanks)["error"] == (f"Cancelled: job {receipt}, which it depends on, "
                                              f"was cancelled")
    assert queue.get_job(audit)["result"] == "audited"  # allow_failure: it ran all the same


def noop_handler(payload):
    return None


def test_on_redis_cancel_and_delete_tell_the_jobs_waiting_and_a_retry_waits_for_nothing(
        redis_url):
    queue = rq_queue(redis_url)
    later = queue.enqueue("t", {}, run_at=time.time() + 3600)
    cancelled_after = queue.enqueue("t", {}, depends_on=later)
    allowed = queue.enqueue("t", {"key": "allowed"}, depends_on=later, allow_failure=True)
    doomed = queue.enqueue("t", {})
    deleted_after = queue.enqueue("t", {}, depends_on=doomed)

    assert queue.cancel_job(later) and queue.delete(doomed)

    assert queue.get_job(cancelled_after)["error"] == (
        f"Cancelled: job {later}, which it depends on, was cancelled")
    assert queue.get_job(deleted_after)["error"] == (
        f"Cancelled: job {doomed}, which it depends on, was deleted")
    assert queue.get_job(allowed)["status"] == "pending" and queue.job_info(allowed)["waiting"] is None
    assert queue.retry_job(cancelled_after)
    assert queue.process_jobs({"t": lambda p: p.get("key", "ran")}) == 2
    assert [queue.get_job(i)["result"] for i in (allowed, cancelled_after)] == ["allowed", "ran"]


def test_on_redis_a_batch_s_callback_gets_its_counts_and_a_late_dependency_is_refused(
        redis_url):
    from dbbasic_queue import UnsupportedError
    queue = rq_queue(redis_url)
    with queue.batch(on_complete=("album", {"album": 3}), max_attempts=1) as batch:
        for n in range(3):
            batch.enqueue("resize", {"n": n})
        batch.enqueue("charge", {})
    assert queue.job_info(batch.id)["waiting"] == (
        "for its batch: 0 of 4 finished (0 completed, 0 failed, 0 cancelled)")
    with queue.batch(on_complete=("album", {"album": 4})) as empty:
        pass
    while queue.process_jobs({"resize": noop_handler, "charge": decline,
                              "album": lambda p: p["batch"]}):
        pass
    assert queue.get_job(batch.id)["result"] == {"id": batch.id, "size": 4, "completed": 3,
                                                 "failed": 1, "cancelled": 0}
    assert queue.get_job(batch.id)["payload"]["batch"]["failed"] == 1
    assert queue.get_job(empty.id)["result"]["size"] == 0
    first = queue.enqueue("t", {})
    with pytest.raises(UnsupportedError, match="run_at"):
        queue.enqueue("t", {}, depends_on=first, run_at=time.time() + 60)
    with pytest.raises(ValueError, match="no such job"):
        queue.enqueue("t", {}, depends_on="0123456789abcdef")
    assert count_jobs(queue) == 1


def test_on_redis_three_workers_ending_a_batch_at_once_run_its_callback_once(tmp_path,
                                                                             redis_url, children):
    from redis import Redis

    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/10"
    Redis.from_url(url).flushdb()
    queue = RQQueue(url)
    with queue.batch(on_complete=("send_email", {"key": "album"})) as batch:
        for n in range(90):
            batch.enqueue("send_email", {"key": f"image-{n}"})
    runs_log = tmp_path / "runs.log"
    workers = [children.cli("work", "--handlers", "jobs_for_cli:handlers",
                            DBBASIC_QUEUE_URL=url, RUNS_LOG=str(runs_log)) for _ in range(3)]
    for worker in workers:
        finish(worker)
    queue.process_jobs({"send_email": lambda p: "late"})  # in case it was queued after them
    ran = runs(runs_log)
    assert ran["album"] == 1 and len(ran) == 91 and set(ran.values()) == {1}
    assert queue.get_job(batch.id)["payload"]["batch"]["completed"] == 90


# --- stopping a running job, on Redis -----------------------------------------------------

STOPPABLE = """
import time
from dbbasic_queue.worker.running import current_job

def polite(payload):
    while not current_job().stop_requested:
        time.sleep(0.02)
    return "stopped politely"

def stubborn(payload):
    while True:
        time.sleep(0.02)

handlers = {"polite": polite, "stubborn": stubborn, "quick": lambda payload: "quick"}
"""


def test_a_job_on_redis_is_asked_to_stop_then_interrupted_and_rq_s_own_stop_is_the_same(
        tmp_path, redis_url, children):
    from redis import Redis
    from rq.command import send_stop_job_command
    from rq import Worker

    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/11"
    Redis.from_url(url).flushdb()
    (tmp_path / "stoppable_jobs.py").write_text(STOPPABLE)
    queue = RQQueue(url)
    polite, stubborn, by_rq = (queue.enqueue(kind, {}) for kind in ("polite", "stubborn", "polite"))
    after = queue.enqueue("quick", {}, depends_on=polite)
    worker = children.start(
        [sys.executable, "-m", "dbbasic_queue", "work", "--loop", "--handlers",
         "stoppable_jobs:handlers", "--stop-grace", "1s"], cwd=tmp_path, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}", DBBASIC_QUEUE_URL=url))

    def stopped(job_id, ask):
        wait_for(lambda: queue.get_job(job_id)["status"] == "processing", what="the job to start")
        ask()
        wait_for(lambda: queue.get_job(job_id)["status"] == "cancelled", seconds=15,
                 what="the job to end cancelled")
        return queue.get_job(job_id)["error"]

    # A handler that looks at stop_requested stops there; its dependents are cancelled
    assert stopped(polite, lambda: queue.stop(polite, by="ann")) == "Stopped by ann"
    assert queue.get_job(after)["status"] == "cancelled"
    # One that does not is interrupted after the grace
    started = time.monotonic()
    assert stopped(stubborn, lambda: queue.stop(stubborn, by="bob")) == "Stopped by bob"
    assert time.monotonic() - started >= 1
    # RQ's own stop command asks the same, and leaves the worker running
    assert stopped(by_rq, lambda: send_stop_job_command(queue.redis, by_rq)) == (
        "Stopped by RQ's stop command")
    quick = queue.enqueue("quick", {})
    wait_for(lambda: queue.get_job(quick)["status"] == "completed", what="the worker to go on")
    assert Worker.count(connection=queue.redis) == 1 and worker.poll() is None
    assert queue.stop(quick) is False
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
