"""The RQ backend on a real redis-server: what is in Redis is data, never code, and every verb
of the published API and the command line either works there or says clearly that it cannot.

Anyone who can write to the Redis can plant a job. The backend reads only JSON, runs only its
own dispatcher, and refuses any other job (a pickle, another function, a callback) in
get_job, in the command line and in the worker, without loading or importing anything of it.
"""

import json
import os
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest

import dbbasic_queue
from dbbasic_queue import QueueError, UnsupportedError
from dbbasic_queue.cli import main

pytest.importorskip("rq")

from redis import Redis  # noqa: E402
from rq import Queue as RQ  # noqa: E402
from rq.job import Callback, Job  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from dbbasic_queue.rq.backend import RQQueue  # noqa: E402
from support import TESTS, Transaction, closed_port, wait_for  # noqa: E402

DISPATCH = "dbbasic_queue.rq.backend.dispatch"  # the one function our jobs name (README)
CLI_DB = 8  # the command line uses the default queue name: it gets a database of its own
REFUSED = "not a dbbasic-queue job"


class OpensAFile:
    """Unpickling this opens (creates) the file at ``path``: what a planted pickle can do."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def rq_queue(redis_url):
    """(queue, name): an RQQueue of its own on the test server."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    return RQQueue(redis_url, name=name), name


@pytest.fixture
def cli_url(redis_url, monkeypatch, tmp_path):
    """DBBASIC_QUEUE_URL for the command line, on an emptied database of its own."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{CLI_DB}"
    Redis.from_url(url).flushdb()
    monkeypatch.setenv("DBBASIC_QUEUE_URL", url)
    monkeypatch.chdir(tmp_path)
    return url


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """(module name, marker): a module on sys.path whose import, or any call into it, creates
    the marker file."""
    name, marker = f"evil_{uuid.uuid4().hex[:8]}", tmp_path / "imported.marker"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        f"def run(*args, **kwargs):\n    return 'ran'\n"
        f"def callback(*args, **kwargs):\n    return 'called'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def plant(url, queue_name, func, *args, serializer=None, **options) -> str:
    """Put a job into the queue as anyone who can write to the Redis could, with RQ's own
    API: any function name, any arguments, pickled unless another serializer is named."""
    rq = RQ(queue_name, connection=Redis.from_url(url), serializer=serializer)
    return rq.enqueue(func, *args, **options).id


def planted_bomb(url, queue_name, where, marker) -> str:
    """A job of our dispatcher whose arguments or meta, once unpickled, create ``marker``."""
    if where == "args":
        return plant(url, queue_name, DISPATCH, "t", OpensAFile(marker))
    return plant(url, queue_name, DISPATCH, "t", "{}", meta={"attempts": OpensAFile(marker)})


def failed_ids(url, queue_name) -> list:
    return RQ(queue_name, connection=Redis.from_url(url),
              serializer=JSONSerializer).failed_job_registry.get_job_ids()


# --- fault 10: no pickle, no foreign job -------------------------------------------------

@pytest.mark.parametrize("where", ["args", "meta"])
def test_get_job_never_unpickles_a_job_planted_in_redis(rq_queue, redis_url, tmp_path, where):
    queue, name = rq_queue
    marker = tmp_path / "unpickled.marker"
    planted = planted_bomb(redis_url, name, where, marker)

    with pytest.raises(QueueError, match=REFUSED) as refused:
        queue.get_job(planted)

    assert not marker.exists()
    assert planted in str(refused.value)


@pytest.mark.parametrize("serializer", [None, JSONSerializer], ids=["pickled", "json"])
def test_get_job_refuses_a_job_naming_another_function_without_importing_it(
        rq_queue, redis_url, evil_module, serializer):
    queue, name = rq_queue
    module, marker = evil_module
    planted = plant(redis_url, name, f"{module}.run", "t", "{}", serializer=serializer)

    for verb in (queue.get_job, queue.cancel_job):
        with pytest.raises(QueueError, match=REFUSED):
            verb(planted)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["args", "meta"])
def test_the_worker_never_unpickles_a_planted_job_and_runs_the_others(
        rq_queue, redis_url, tmp_path, caplog, where):
    queue, name = rq_queue
    marker = tmp_path / "unpickled.marker"
    planted = planted_bomb(redis_url, name, where, marker)
    good = queue.enqueue("send_email", {"to": "ann@example.com"})

    ran = queue.process_jobs({"send_email": lambda p: "sent", "t": lambda p: "ran"})

    assert not marker.exists()
    assert ran == 1 and queue.get_job(good)["result"] == "sent"
    assert planted in failed_ids(redis_url, name)
    assert any(planted in r.getMessage() and REFUSED in r.getMessage() for r in caplog.records
               if r.name == "dbbasic_queue")


@pytest.mark.parametrize("serializer", [None, JSONSerializer], ids=["pickled", "json"])
@pytest.mark.parametrize("how", ["function", "success callback", "failure callback"])
def test_the_worker_never_imports_a_function_named_in_redis(rq_queue, redis_url, evil_module,
                                                            serializer, how):
    queue, name = rq_queue
    module, marker = evil_module
    if how == "function":
        planted = plant(redis_url, name, f"{module}.run", "t", "{}", serializer=serializer)
    elif how == "success callback":
        planted = plant(redis_url, name, DISPATCH, "t", "{}", serializer=serializer,
                        on_success=Callback(f"{module}.callback"))
    else:
        planted = plant(redis_url, name, DISPATCH, "fail", "{}", serializer=serializer,
                        on_failure=Callback(f"{module}.callback"))
    good = queue.enqueue("t", {})

    ran = queue.process_jobs({"t": lambda p: "ran", "fail": lambda p: 1 / 0})

    assert not marker.exists()
    assert ran == 1 and queue.get_job(good)["result"] == "ran"
    assert planted in failed_ids(redis_url, name)
    with pytest.raises(QueueError, match=REFUSED):
        queue.get_job(planted)


@pytest.mark.parametrize("field, value", [("status", "bogus"), ("created_at", "not a date"),
                                          ("timeout", "x1"), ("retry_intervals", "{")])
def test_a_job_whose_fields_rq_cannot_parse_fails_alone_and_the_others_run(
        rq_queue, redis_url, field, value):
    queue, name = rq_queue
    planted = plant(redis_url, name, DISPATCH, "t", "{}", serializer=JSONSerializer)
    Redis.from_url(redis_url).hset(Job.key_for(planted), field, value)
    good = queue.enqueue("t", {})

    ran = queue.process_jobs({"t": lambda p: "ran"})

    assert ran == 1 and queue.get_job(good)["result"] == "ran"
    with pytest.raises(QueueError, match=REFUSED):
        queue.get_job(planted)


def test_show_refuses_a_planted_job_in_one_line_with_exit_3(cli_url, tmp_path, capsys,
                                                             evil_module):
    module, imported = evil_module
    marker = tmp_path / "unpickled.marker"
    for planted in (planted_bomb(cli_url, "dbbasic-queue", "args", marker),
                    plant(cli_url, "dbbasic-queue", f"{module}.run", serializer=JSONSerializer)):
        for args in (["show", planted], ["show", planted, "--json"], ["cancel", planted]):
            code = main(args)
            out, err = capsys.readouterr()
            assert code == 3 and out == "", (args, err)
            assert err.startswith("dbbasic-queue: ") and err.count("\n") == 1
            assert REFUSED in err and planted in err
    assert not marker.exists() and not imported.exists()


def test_dbbasic_queue_work_on_redis_never_runs_what_is_planted(cli_url, tmp_path, evil_module):
    """The real command, from the app's directory (on sys.path, as for --handlers)."""
    module, imported = evil_module
    marker = tmp_path / "unpickled.marker"
    planted = [planted_bomb(cli_url, "dbbasic-queue", "args", marker),
               plant(cli_url, "dbbasic-queue", f"{module}.run", "t", "{}")]
    good = RQQueue(cli_url).enqueue("send_email", {"key": "good"})
    env = dict(os.environ, PYTHONPATH=str(TESTS), RUNS_LOG=str(tmp_path / "runs.log"))

    done = subprocess.run([sys.executable, "-m", "dbbasic_queue", "work", "--handlers",
                           "jobs_for_cli:handlers"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0 and done.stdout == "ran 1 job\n", done.stderr
    assert not marker.exists() and not imported.exists()
    assert RQQueue(cli_url).get_job(good)["result"] == {"sent": "good"}
    assert set(planted) <= set(failed_ids(cli_url, "dbbasic-queue"))
    assert all(job_id in done.stderr for job_id in planted)


# --- issue 11: every verb works on Redis, or says it cannot ------------------------------

@pytest.mark.parametrize("command", ["show", "cancel"])
def test_an_unknown_id_on_redis_gives_one_line_and_exit_1(cli_url, capsys, command):
    code = main([command, "nosuchid"])

    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("dbbasic-queue: no job 'nosuchid'") and err.count("\n") == 1
    assert cli_url in err


def test_enqueue_after_on_redis_writes_the_job_only_at_commit(rq_queue):
    queue, _ = rq_queue
    transaction = Transaction()

    job_id = queue.enqueue_after(transaction.on_commit, "welcome", {"user": 42}, max_attempts=5)
    rolled_back = queue.enqueue_after(transaction.on_commit, "welcome", {"user": 43})
    transaction.callbacks.pop()  # a rollback of the second

    assert queue.get_job(job_id) is None
    transaction.commit()
    assert queue.get_job(job_id)["payload"] == {"user": 42}
    assert queue.get_job(rolled_back) is None
    with pytest.raises(TypeError):
        queue.enqueue_after(transaction.on_commit, "welcome", {"when": object()})
    assert transaction.callbacks == []


def test_enqueue_on_commit_works_on_redis(cli_url, monkeypatch):
    transaction, used = Transaction(), []
    django = types.ModuleType("django")
    django.db = types.ModuleType("django.db")
    django.db.transaction = types.SimpleNamespace(
        on_commit=lambda callback, using=None: used.append(using) or transaction.on_commit(callback))
    monkeypatch.setitem(sys.modules, "django", django)
    monkeypatch.setitem(sys.modules, "django.db", django.db)

    job_id = dbbasic_queue.enqueue_on_commit("welcome", {"user": 42}, using="replica")

    assert dbbasic_queue.get_job(job_id) is None and used == ["replica"]
    transaction.commit()
    assert dbbasic_queue.get_job(job_id)["status"] == "pending"
    assert RQQueue(cli_url).get_job(job_id)["payload"] == {"user": 42}


def test_the_worker_s_timeout_stops_a_long_handler_on_redis(rq_queue):
    queue, _ = rq_queue
    job_id = queue.enqueue("slow", {}, max_attempts=1)
    started = time.monotonic()

    queue.process_jobs({"slow": lambda p: time.sleep(8)}, timeout=1)

    assert time.monotonic() - started < 6
    job = queue.get_job(job_id)
    assert job["status"] == "failed" and "timed out" in job["error"]


def test_max_seconds_on_redis_stops_after_the_job_in_hand(rq_queue):
    queue, _ = rq_queue
    ids = [queue.enqueue("slow", {"n": n}) for n in range(6)]
    started = time.monotonic()

    ran = queue.process_jobs({"slow": lambda p: time.sleep(0.4)}, max_seconds=1)

    assert 1 <= ran <= 3 and time.monotonic() - started < 2.3
    statuses = [queue.get_job(job_id)["status"] for job_id in ids]
    assert statuses.count("completed") == ran and statuses.count("pending") == 6 - ran


@pytest.mark.parametrize("verb, option", [
    ("process_jobs", {"lease_seconds": 60}), ("process_jobs", {"retention_seconds": 3600}),
    ("process_jobs", {"retention_seconds": None}), ("work", {"lease_seconds": 60}),
    ("work", {"stop": threading.Event()}), ("work", {"handle_signals": False}),
    ("process_jobs", {"concurrency": 2}), ("process_jobs", {"queues": {"emails": 3}}),
])
def test_worker_options_rq_cannot_honour_are_refused_by_name(rq_queue, verb, option):
    queue, _ = rq_queue
    job_id = queue.enqueue("t", {})

    with pytest.raises(UnsupportedError, match=next(iter(option))) as refused:
        getattr(queue, verb)({"t": lambda p: "ran"}, max_jobs=1, **option)

    assert isinstance(refused.value, QueueError) and "Redis" in str(refused.value)
    assert queue.get_job(job_id)["status"] == "pending"


def test_what_rq_cannot_hold_of_queues_is_refused_by_name_and_changes_nothing(rq_queue):
    queue, _ = rq_queue
    with pytest.raises(UnsupportedError, match="pausing a job type"):
        queue.pause(job_type="send_email")
    with pytest.raises(UnsupportedError, match="concurrency_key"):
        queue.enqueue("send_email", {}, queue="emails", concurrency_key="customer-1")
    with pytest.raises(UnsupportedError, match="rate_limit"):
        queue.handler("send_email", rate_limit="100/m")
    assert queue.paused() == [] and queue.stats()["jobs"] == 0


def test_a_redis_password_never_reaches_a_message():
    port = closed_port()
    queue = RQQueue(f"redis://:s3cret@127.0.0.1:{port}/0")

    with pytest.raises(ConnectionError) as unreachable:
        queue.enqueue("t", {})

    assert "s3cret" not in str(unreachable.value) and f"127.0.0.1:{port}" in str(unreachable.value)
    assert "s3cret" not in queue.describe() + repr(queue)


def test_the_work_command_refuses_a_lease_on_redis_in_one_line(cli_url, capsys, tmp_path,
                                                               monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    job_id = RQQueue(cli_url).enqueue("send_email", {"key": 1})

    code = main(["work", "--handlers", "jobs_for_cli:handlers", "--lease", "60"])

    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("dbbasic-queue: ") and err.count("\n") == 1
    assert "lease" in err and "Redis" in err
    assert RQQueue(cli_url).get_job(job_id)["status"] == "pending"


def test_stats_and_list_work_on_redis_and_count_a_planted_job_as_corrupt(cli_url, capsys,
                                                                         tmp_path):
    queue = RQQueue(cli_url)
    done = queue.enqueue("send_email", {"key": "done"})
    failed = queue.enqueue("fail", {}, max_attempts=1)
    queue.process_jobs({"send_email": lambda p: "sent", "fail": lambda p: 1 / 0})
    due = queue.enqueue("send_email", {"key": "due"})
    later = queue.enqueue("send_email", {"key": "later"}, run_at=time.time() + 3600)
    cancelled = queue.enqueue("send_email", {"key": "x"}, run_at=time.time() + 3600)
    assert queue.cancel_job(cancelled)
    marker = tmp_path / "unpickled.marker"
    planted_bomb(cli_url, "dbbasic-queue", "args", marker)

    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["by_status"] == {"pending": 2, "processing": 0, "completed": 1, "failed": 1,
                                  "cancelled": 1}
    assert stats["jobs"] == 5 and stats["corrupt_lines"] == 1
    assert stats["by_type"]["send_email"]["pending"] == 2 and stats["by_type"]["fail"]["failed"] == 1
    assert 3500 < stats["next_run_at"] - time.time() <= 3601

    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "pending 2" in out and "completed 1" in out and cli_url in out

    assert main(["list", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert {job["id"] for job in jobs} == {done, failed, due, later, cancelled}
    assert next(job for job in jobs if job["id"] == done)["result"] == "sent"
    assert main(["list", "--status", "failed", "--json"]) == 0
    assert [job["id"] for job in json.loads(capsys.readouterr().out)] == [failed]
    assert main(["list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
    assert not marker.exists()


def test_run_now_on_redis_queues_a_scheduled_job_and_refuses_to_force_one(rq_queue):
    queue, _ = rq_queue
    later = queue.enqueue("t", {}, run_at=time.time() + 3600)
    done = queue.enqueue("t", {})
    queue.process_jobs({"t": lambda p: "ran"})
    assert queue.get_job(later)["status"] == "pending"

    assert queue.run_now(later) is True and queue.run_now(done) is False
    assert queue.process_jobs({"t": lambda p: "now"}) == 1
    assert queue.get_job(later)["result"] == "now"
    assert queue.run_now("0123456789abcdef") is False


def test_a_handler_on_redis_knows_its_job_and_failed_attempts_keep_their_tracebacks(rq_queue):
    from dbbasic_queue.worker.running import current_job
    queue, _ = rq_queue
    job_id = queue.enqueue("t", {}, max_attempts=1)
    seen = []

    def fail(payload):
        seen.append(current_job())
        raise ZeroDivisionError("no")
    queue.process_jobs({"t": fail})

    assert [(job.id, job.type, job.attempt, job.max_attempts) for job in seen] == [
        (job_id, "t", 1, 1)]
    kept = queue.tracebacks(job_id)
    assert [(t["attempt"], t["exception"], t["error"]) for t in kept] == [
        (1, "ZeroDivisionError", "ZeroDivisionError: no")]
    assert "raise ZeroDivisionError" in kept[0]["traceback"]
    assert queue.tracebacks("0123456789abcdef") == []


def test_the_dashboard_answers_on_redis_and_counts_a_planted_job_without_loading_it(
        rq_queue, redis_url, tmp_path):
    import io
    from wsgiref.util import setup_testing_defaults
    from dbbasic_queue.dashboard.app import DashboardApp
    queue, name = rq_queue
    failed = queue.enqueue("fail", {}, max_attempts=1)
    queue.process_jobs({"fail": lambda p: 1 / 0})
    queue.enqueue("t", {}, run_at=time.time() + 3600)
    marker = tmp_path / "unpickled.marker"
    planted = planted_bomb(redis_url, name, "args", marker)
    app = DashboardApp(queue)

    def get(path):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        answer = {}
        body = b"".join(app(environ, lambda status, headers: answer.update(status=status)))
        return answer["status"], body

    for path in ("/", "/jobs", f"/jobs/{failed}", "/failures"):
        assert get(path)[0].startswith("200"), path
    status, body = get(f"/jobs/{planted}")  # as a corrupt line asked for is
    assert status.startswith("500") and REFUSED.encode() in body
    status, body = get("/api/overview")
    assert json.loads(body)["by_status"] == {"pending": 1, "processing": 0, "completed": 0,
                                             "failed": 1, "cancelled": 0}
    assert b"ZeroDivisionError" in get(f"/jobs/{failed}")[1]
    assert not marker.exists()


def test_rq_requeue_on_our_failed_jobs_leaves_them_ours_and_our_worker_completes_them(
        rq_queue, redis_url):
    rq_queue, _ = rq_queue
    # Given two of our jobs failed for good
    ids = [rq_queue.enqueue("charge_card", {"n": n}, max_attempts=1) for n in range(2)]

    def decline(payload):
        raise ValueError("card declined")
    rq_queue.process_jobs({"charge_card": decline})
    assert [rq_queue.get_job(i)["status"] for i in ids] == ["failed", "failed"]
    # When RQ's own command requeues them, with its default serializer (pickle), which
    # re-saves their meta as a pickled {"unserialized": <our JSON>}
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    subprocess.run([rq, "requeue", "--all", "--queue", rq_queue.rq.name, "-u", redis_url],
                   check=True, capture_output=True, timeout=60)
    assert rq_queue.redis.hget(f"rq:job:{ids[0]}", "meta").startswith(b"\x80")
    # Then they are still ours, read without unpickling, and our worker completes them
    assert [rq_queue.get_job(i)["status"] for i in ids] == ["pending", "pending"]
    assert rq_queue.process_jobs({"charge_card": lambda payload: "charged"}) == 2
    assert [rq_queue.get_job(i)["result"] for i in ids] == ["charged", "charged"]


def test_a_pickled_meta_that_is_more_than_rqs_wrapper_is_refused_and_never_loaded(
        rq_queue, tmp_path):
    import pickle
    rq_queue, _ = rq_queue
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    job_id = rq_queue.enqueue("t", {})
    for meta in ({"unserialized": Payload()}, {"unserialized": b"{}", "more": Payload()},
                 {"unserialized": b"not json"}):
        rq_queue.redis.hset(f"rq:job:{job_id}", "meta", pickle.dumps(meta))
        with pytest.raises(QueueError, match="its meta is not JSON"):
            rq_queue.get_job(job_id)
    assert not marker.exists()


# --- RQ's own tools on our jobs: rq empty, a plain rq worker, RQ's dashboard -------------

def rq_command(*args):
    """RQ's own command line, as an operator runs it."""
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return subprocess.run([rq, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(TESTS.parent)))


def test_after_rq_empty_our_verbs_and_worker_go_on_without_an_error(cli_url, capsys):
    queue = RQQueue(cli_url)
    failed = queue.enqueue("charge_card", {}, max_attempts=1)
    queue.process_jobs({"charge_card": lambda p: 1 / 0})
    queued = queue.enqueue("send_email", {"key": "queued"}, unique_key="welcome:1")
    waiting = queue.enqueue("send_email", {"key": "waiting"}, depends_on=queued)
    later = queue.enqueue("send_email", {"key": "later"}, run_at=time.time() + 3600)
    # When RQ's own command empties our queue (its queued jobs are deleted from Redis)
    done = rq_command("empty", "-u", cli_url, "dbbasic-queue")
    assert done.returncode == 0, done.stderr
    # Then stats, list and show answer, no job is counted as corrupt, the emptied job is gone
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["corrupt_lines"] == 0 and stats["by_status"]["failed"] == 1
    assert main(["list", "--json"]) == 0
    assert queued not in {job["id"] for job in json.loads(capsys.readouterr().out)}
    assert main(["show", queued]) == 1 and "no job" in capsys.readouterr().err
    assert main(["show", later]) == 0 and capsys.readouterr().err == ""
    # and the rest goes on: the unique key is free, a retry and the worker run, the job that
    # waited for the emptied one is cancelled, saying so, at the worker's sweep
    assert queue.enqueue("send_email", {"key": "again"}, unique_key="welcome:1") != queued
    assert main(["retry", failed]) == 0 and queue.run_now(later)
    assert queue.process_jobs({"charge_card": lambda p: "charged",
                               "send_email": lambda p: p["key"]}) == 3
    assert [queue.get_job(i)["status"] for i in (failed, later)] == ["completed"] * 2
    assert queue.get_job(waiting)["error"] == (f"Cancelled: job {queued}, which it depends on, "
                                               f"was deleted")


@pytest.mark.parametrize("serializer", [None, "rq.serializers.JSONSerializer"],
                         ids=["pickle", "json"])
def test_a_plain_rq_worker_fails_our_jobs_saying_which_worker_to_use_and_loses_none(
        rq_queue, redis_url, capsys, monkeypatch, serializer):
    queue, name = rq_queue
    once = queue.enqueue("send_email", {"key": "once"}, max_attempts=1)
    twice = queue.enqueue("send_email", {"key": "twice"}, max_attempts=2)
    # When RQ's own worker, which has none of our handlers, takes them
    args = ["worker", "--burst", "-u", redis_url, name]
    done = rq_command(*args, *(["--serializer", serializer] if serializer else []))
    assert done.returncode == 0, done.stderr
    # Then neither ran: one failed, saying which worker to use, the other waits for a retry
    job = queue.get_job(once)
    assert job["status"] == "failed" and "dbbasic-queue work" in job["error"], job
    assert queue.get_job(twice)["status"] == "pending"
    monkeypatch.setenv("DBBASIC_QUEUE_URL", redis_url)
    # And nothing is lost: our retry and our worker complete both
    assert queue.retry_job(once) and queue.run_now(twice)
    assert queue.process_jobs({"send_email": lambda p: p["key"]}) == 2
    assert [queue.get_job(i)["result"] for i in (once, twice)] == ["once", "twice"]


def test_the_rq_calls_of_rq_dashboard_s_actions_leave_our_jobs_ours(rq_queue):
    """rq-dashboard (not installed here: Flask and more) acts with these calls: Job.fetch
    then get_meta and latest_result (its job page; with its --json, as our docs say, else
    its page fails unpickling our JSON meta, changing nothing), requeue_job (its Requeue
    buttons), job.delete (Delete) and queue.empty (Empty), all with RQ's default serializer;
    and RQ's cancel_job, which its pages do not offer but RQ's API does."""
    from rq.job import cancel_job, requeue_job
    queue, name = rq_queue
    failed = queue.enqueue("charge_card", {}, max_attempts=1)
    queue.process_jobs({"charge_card": lambda p: 1 / 0})
    deleted, cancelled = queue.enqueue("t", {}), queue.enqueue("t", {})
    later = queue.enqueue("t", {}, run_at=time.time() + 3600)
    connection = Redis.from_url(queue.url)
    for job_id in (failed, deleted, later):  # the job page, with --json
        shown = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert shown.get_meta()["attempts"] in (0, 1) and shown.get_status()
        shown.latest_result(), shown.description
        with pytest.raises(Exception):  # without --json: its page fails, nothing changes
            Job.fetch(job_id, connection=connection).get_meta()
    requeue_job(failed, connection=connection)
    Job.fetch(deleted, connection=connection).delete()
    cancel_job(cancelled, connection=connection)
    assert [queue.get_job(i)["status"] for i in (failed, cancelled, later)] == [
        "pending", "cancelled", "pending"]
    assert queue.get_job(deleted) is None and queue.stats()["corrupt_lines"] == 0
    assert queue.process_jobs({"charge_card": lambda p: "charged", "t": lambda p: "ran"}) == 1
    assert queue.get_job(failed)["result"] == "charged"
    emptied = queue.enqueue("t", {})
    RQ(name, connection=connection).empty()
    assert queue.get_job(emptied) is None and queue.get_job(later)["status"] == "pending"
    assert queue.stats()["corrupt_lines"] == 0


# --- a worker killed mid-job, and the verbs after it -----------------------------------

# A worker that runs one job, telling the test through a file named after the job's payload
# that it has started it: RQ's record of the run (its heartbeat TTL, the job's timeout + 60
# s) is cut to 3 s, and the worker's "alive" string to 1 s, so that what a minute of a dead
# worker does happens here in seconds. Nothing else of RQ or dbbasic-queue is changed.
DYING_WORKER = """
import pathlib, sys, time
from dbbasic_queue.rq import stops, worker
from dbbasic_queue.rq.backend import RQQueue
worker.DispatchWorker.get_heartbeat_ttl = lambda self, job: 3
stops.ALIVE_SECONDS, stops.BEAT_SECONDS = 1, 0.2
url, name, queue, started = sys.argv[1:5]

def hang(payload):
    (pathlib.Path(started) / payload["n"]).write_text("")
    time.sleep(600)
RQQueue(url, name=name).work({"hang": hang}, max_jobs=1, queues=[queue])
"""


def test_a_dead_worker_s_jobs_in_every_queue_end_at_the_next_run_and_retry_delete_purge_work(
        rq_queue, redis_url, children, tmp_path):
    queue, name = rq_queue
    # Given three jobs, two of the default queue and one of "emails", each run by a worker
    # SIGKILLed mid-job; one has a job waiting for it, two have unique keys, one was asked
    # to stop just before
    retried = queue.enqueue("hang", {"n": "a"}, unique_key="key-a", max_attempts=1)
    emails = queue.enqueue("hang", {"n": "b"}, unique_key="key-b", max_attempts=1,
                           queue="emails")
    waiting = queue.enqueue("hang", {"n": "w"}, depends_on=emails, queue="emails")
    purged = queue.enqueue("hang", {"n": "c"}, max_attempts=1)
    workers = [children.start([sys.executable, "-c", DYING_WORKER, redis_url, name, served,
                               tmp_path], env=dict(os.environ, PYTHONPATH=str(TESTS.parent)))
               for served in ("default", "emails", "default")]
    wait_for(lambda: all((tmp_path / n).exists() for n in "abc"), seconds=30,
             what="the three workers to start their jobs")
    assert queue.stop(retried, by="ann") is True
    for worker in workers:
        worker.kill()
        worker.wait(timeout=30)
    # stop() of a job whose worker is dead says False, as on the file
    wait_for(lambda: queue.stop(emails, by="ann") is False, seconds=10,
             what="stop() to see the worker is dead")

    # When RQ's record of their runs has expired and a cron run of process_jobs starts
    registries = [queue.rq_queue(pair).started_job_registry
                  for pair in (("default", 0), ("emails", 0))]
    wait_for(lambda: all(len(registry.get_expired_job_ids()) == count
                         for registry, count in zip(registries, (2, 1))),
             seconds=15, what="RQ's record of the dead runs to expire")
    assert queue.process_jobs({"hang": lambda payload: "done"}) == 0

    # Then every served queue was cleaned: each job failed, saying its worker died and how
    # to run it again; its unique key is free; the job waiting for it is cancelled
    for job_id in (retried, emails, purged):
        job = queue.get_job(job_id)
        assert (job["status"], job["error"]) == ("failed", (
            f"its worker died while running it (attempt 1); `dbbasic-queue retry {job_id}` "
            f"runs it again"))
    assert queue.get_job(waiting)["status"] == "cancelled"
    assert "failed for good" in queue.get_job(waiting)["error"]
    assert queue.unique_keys.holder("key-b") is None
    assert queue.redis.get(queue.unique_keys.key("key-b")) is None
    assert sorted(job["id"] for job in queue.jobs() if job["status"] == "failed") == sorted(
        [retried, emails, purged])
    # And retry, delete and purge work on them; the old stop request stops nothing
    assert queue.retry_job(retried) is True
    assert queue.get_job(retried)["status"] == "pending"
    assert queue.job_options(retried)["unique_key"] == "key-a"
    assert queue.delete(emails) is True and queue.get_job(emails) is None
    assert queue.purge(0, statuses=("failed",)) == 1 and queue.get_job(purged) is None
    assert queue.process_jobs({"hang": lambda payload: "done"}) == 1
    assert (queue.get_job(retried)["status"], queue.get_job(retried)["result"]) == (
        "completed", "done")


RETRIER = """
import sys
from dbbasic_queue.rq.backend import RQQueue
print(RQQueue(sys.argv[1], name=sys.argv[2]).retry_failed())
"""


def test_retries_at_once_add_each_failed_job_once(rq_queue, redis_url, children):
    queue, name = rq_queue
    ids = [queue.enqueue("boom", {}, max_attempts=1) for _ in range(40)]
    queue.process_jobs({"boom": lambda payload: 1 / 0})
    # When four processes retry every failed job at once
    retriers = [children.start([sys.executable, "-c", RETRIER, redis_url, name],
                               env=dict(os.environ, PYTHONPATH=str(TESTS.parent)),
                               stderr=subprocess.PIPE) for _ in range(4)]
    outputs = [retrier.communicate(timeout=60) for retrier in retriers]
    # Then none crashed, together they retried each job once, and each runs once
    assert [retrier.returncode for retrier in retriers] == [0] * 4, outputs
    assert sum(int(out) for out, _ in outputs) == len(ids)
    assert sorted(queue.rq.get_job_ids()) == sorted(ids)
    ran = []
    assert queue.process_jobs({"boom": lambda payload: ran.append(1)}) == len(ids)
    assert len(ran) == len(ids)


def test_a_retry_racing_an_enqueue_of_its_unique_key_never_gives_two_jobs_the_key(
        rq_queue, monkeypatch):
    from dbbasic_queue.rq.jobs import SafeJob
    queue, name = rq_queue
    other = RQQueue(queue.url, name=name)  # another client, as another process would be
    failed = queue.enqueue("boom", {}, unique_key="K", max_attempts=1)
    queue.process_jobs({"boom": lambda payload: 1 / 0})
    # When an enqueue of its key lands while retry is replacing the job
    deleting, enqueued = threading.Event(), threading.Event()
    delete = SafeJob.delete

    def held_delete(self, *args, **kwargs):
        result = delete(self, *args, **kwargs)
        deleting.set()
        assert enqueued.wait(30)
        return result
    monkeypatch.setattr(SafeJob, "delete", held_delete)
    retry = threading.Thread(target=lambda: results.append(queue.retry_job(failed)))
    results: list = []
    retry.start()
    assert deleting.wait(30)
    newer = other.enqueue("boom", {}, unique_key="K")
    enqueued.set()
    retry.join(30)
    # Then both jobs are pending, and one alone holds the key
    assert results == [True] and newer != failed
    pending = [job["id"] for job in queue.jobs() if job["status"] == "pending"]
    assert sorted(pending) == sorted([failed, newer])
    assert [queue.job_options(job_id).get("unique_key") for job_id in (failed, newer)] == [
        None, "K"]
    assert queue.enqueue("boom", {}, unique_key="K") == newer


def test_a_stop_asked_as_a_job_ends_does_not_stop_it_later(rq_queue):
    queue, _ = rq_queue

    def asked_then_failed(payload):
        assert queue.stop(job_id, by="ann")  # `stop ID` landing as the job fails on its own
        raise RuntimeError("failed on its own")

    def slow(payload):
        time.sleep(0.8)  # longer than a stop's grace and the keeper's ticks
        return "done"
    job_id = queue.enqueue("t", {}, max_attempts=1)
    queue.process_jobs({"t": asked_then_failed}, stop_grace=0.2)
    assert queue.get_job(job_id)["status"] == "failed"
    assert queue.retry_job(job_id)
    queue.process_jobs({"t": slow}, stop_grace=0.2)
    job = queue.get_job(job_id)
    assert (job["status"], job["result"]) == ("completed", "done")


def test_a_waiting_job_whose_links_are_not_rq_s_is_passed_over_and_the_others_run(
        rq_queue, caplog):
    queue, _ = rq_queue
    first = queue.enqueue("ok", {}, run_at=time.time() + 3600)
    odd = queue.enqueue("ok", {}, depends_on=[first])
    plain = queue.enqueue("ok", {})
    key = Job(odd, connection=queue.redis).dependencies_key
    queue.redis.delete(key)
    queue.redis.set(key, "not a set")  # WRONGTYPE for RQ's SMEMBERS
    assert queue.process_jobs({"ok": lambda payload: 1}) == 1
    assert queue.get_job(plain)["status"] == "completed"
    assert f"job {odd}: its dependencies cannot be read" in caplog.text
    assert queue.job_info(odd)["status"] == "pending"
    assert len(list(queue.jobs())) == 3


def test_the_sweep_of_waiting_jobs_reads_a_bounded_batch_and_settles_only_those_with_an_end(
        rq_queue, monkeypatch):
    from dbbasic_queue.rq import links
    queue, _ = rq_queue
    first = queue.enqueue("ok", {}, run_at=time.time() + 3600)
    waiting = [queue.enqueue("ok", {"n": n}, depends_on=[first]) for n in range(25)]
    settled = []
    settle = links.settle
    monkeypatch.setattr(links, "settle", lambda connection, job_id, told={}: (
        settled.append(job_id), settle(connection, job_id, told))[1])
    # Nothing has ended: a sweep looks at a batch and settles none
    assert links.sweep([queue.rq], batch=10) == 10 and settled == []
    # Once their dependency is gone (as `rq empty` deletes it), the sweeps in turn cancel them
    Job(first, connection=queue.redis).delete()
    for _ in range(3):
        links.sweep([queue.rq], batch=10)
    assert sorted(settled) == sorted(waiting)
    assert {queue.get_job(job_id)["status"] for job_id in waiting} == {"cancelled"}
