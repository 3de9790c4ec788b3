"""Django's task framework on the queue file: a real small project (tests/django_project),
its views called through Django's test client in this process, its tasks run by
``manage.py dbbasic_queue_worker`` in real subprocesses sharing the sqlite database and the
queue file. The same tests run on Django 6's ``django.tasks`` (Python 3.12+) and on the
``django-tasks`` backport with older Django (``pip install -e '.[test]'``)."""

import math
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from support import TESTS, wait_for

PROJECT = TESTS / "django_project"
BACKEND = "dbbasic_queue.django.TaskBackend"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The test project, set up in this process on a fresh sqlite database. Without Django's
    task framework installed the tests are skipped, saying why, except in CI, where they fail."""
    try:
        import django  # noqa: F401
        from dbbasic_queue.django import compat  # noqa: F401
    except ImportError as error:
        message = (f"Django's task framework is not installed ({error}): pip install -e "
                   f"'.[test]'")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import django
    from django.core.management import call_command
    database = tmp_path_factory.mktemp("shop") / "db.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["SHOP_DATABASE"] = str(database)
    sys.path.insert(0, str(PROJECT))
    django.setup()
    call_command("migrate", verbosity=0)
    return database


@pytest.fixture
def tasks_file(project, tmp_path):
    """A fresh queue file for this test, the backend's PATH (two attempts per task)."""
    from django.test import override_settings
    path = tmp_path / "data" / "tasks.tsv"
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "emails"],
                                              "OPTIONS": {"PATH": str(path), "MAX_ATTEMPTS": 2}}}):
        yield path


def backend():
    from dbbasic_queue.django.compat import task_backends
    return task_backends["default"]


def worker_command(project, tasks_file, *options):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="project.settings",
               SHOP_DATABASE=str(project), SHOP_QUEUE_FILE=str(tasks_file))
    return dict(args=[sys.executable, "manage.py", "dbbasic_queue_worker", *options],
                cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_worker(project, tasks_file, *options):
    """One run of the worker (as cron starts it) in a subprocess; fails the test unless it
    exits 0."""
    done = subprocess.run(**worker_command(project, tasks_file, *options), timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_a_task_queued_by_a_view_after_its_commit_runs_in_the_worker_and_reads_back(
        project, tasks_file):
    from django.test import Client
    from dbbasic_queue.django.compat import TaskResultStatus, task_enqueued
    from shop.models import Order
    from shop.tasks import add, fulfil_order
    signalled = []

    def on_enqueued(sender, task_result, **kwargs):
        signalled.append((sender.__name__, task_result.id, task_result.status))
    task_enqueued.connect(on_enqueued)
    try:
        # Given a request whose transaction rolls back: nothing is queued
        client = Client()
        refused = client.post("/orders/", {"item": "rolled-back lamp", "fail": "1"})
        assert refused.status_code == 400
        assert not Order.objects.filter(item="rolled-back lamp").exists()
        assert not tasks_file.exists()

        # When a view saves an order and queues its fulfilment with transaction.on_commit
        response = client.post("/orders/", {"item": "atlas"})
        assert response.status_code == 200, response.content
        order_id, task_id = response.json()["order"], response.json()["task"]
        async_id = add.enqueue(2, 3).id
    finally:
        task_enqueued.disconnect(on_enqueued)

    # Then it is queued, READY, with nothing run yet, and task_enqueued was sent for each
    assert signalled == [("TaskBackend", task_id, TaskResultStatus.READY),
                         ("TaskBackend", async_id, TaskResultStatus.READY)]
    before = fulfil_order.get_result(task_id)
    assert (before.status, before.attempts, before.args, before.kwargs, before.errors) == (
        TaskResultStatus.READY, 0, [order_id], {}, [])
    assert before.started_at is None and before.finished_at is None and not before.is_finished
    assert abs(before.enqueued_at - datetime.now(timezone.utc)) < timedelta(seconds=30)
    with pytest.raises(ValueError):
        before.return_value
    assert Order.objects.get(pk=order_id).fulfilled is False

    # When a loop worker of two threads runs, in its own process, until it has run both
    done = run_worker(project, tasks_file, "--loop", "--max-jobs", "2", "--concurrency", "2")

    # Then the task ran on the committed row, and its result reads back here
    after = fulfil_order.get_result(task_id)
    assert after.status == TaskResultStatus.SUCCESSFUL
    assert after.return_value == {"order": order_id, "item": "atlas", "fulfilled": True}
    assert after.attempts == 1 and after.errors == []
    assert after.worker_ids[0].startswith(socket.gethostname() + ":")
    assert before.enqueued_at == after.enqueued_at
    assert after.enqueued_at - timedelta(seconds=1) <= after.started_at <= after.finished_at
    assert after.last_attempted_at == after.started_at
    assert Order.objects.get(pk=order_id).fulfilled is True
    # an async task ran too, and refresh() reloads a result in place
    result = add.get_result(async_id)
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    # and task_started and task_finished were sent in the worker (the framework logs them)
    assert f"Task id={task_id} path=shop.tasks.fulfil_order state=RUNNING" in done.stderr
    assert f"Task id={task_id} path=shop.tasks.fulfil_order state=SUCCESSFUL" in done.stderr


def test_a_failing_task_is_retried_then_fails_with_its_traceback(project, tasks_file):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.tasks import PaymentDeclined, charge_card

    # Given a task that raises at every attempt, and two attempts per task
    task_id = charge_card.enqueue(7, card="4000-0002").id

    # When the worker runs it once
    first = run_worker(project, tasks_file)

    # Then it waits for its retry, READY, with the error of attempt 1 and its traceback
    waiting = charge_card.get_result(task_id)
    assert (waiting.status, waiting.attempts, len(waiting.errors)) == (
        TaskResultStatus.READY, 1, 1)
    error = waiting.errors[0]
    assert error.exception_class_path == "shop.tasks.PaymentDeclined"
    assert error.exception_class is PaymentDeclined
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert ", in charge_card\n    raise PaymentDeclined(" in error.traceback
    assert error.traceback.rstrip().endswith(
        "PaymentDeclined: attempt 1: card 4000-0002 declined for order 7")
    assert waiting.started_at is not None and waiting.finished_at is None
    assert f"Task id={task_id} path=shop.tasks.charge_card state=READY" in first.stderr

    # When its retry falls due (made due now, not after the retry delay) and the worker runs
    assert backend().queue.run_now(task_id)
    second = run_worker(project, tasks_file)

    # Then it has failed for good, with both attempts' errors, the last one last
    failed = charge_card.get_result(task_id)
    assert (failed.status, failed.attempts, len(failed.errors)) == (
        TaskResultStatus.FAILED, 2, 2)
    assert failed.errors[1].exception_class is PaymentDeclined
    assert "attempt 2: card 4000-0002 declined" in failed.errors[1].traceback
    assert failed.is_finished and failed.started_at <= failed.finished_at
    with pytest.raises(ValueError):
        failed.return_value
    assert f"Task id={task_id} path=shop.tasks.charge_card state=FAILED" in second.stderr
    # and the queue file still holds one short line for the job, its error on one line
    header, line = tasks_file.read_text().splitlines()
    fields = line.split("\t")
    assert (fields[0], fields[1], fields[3], fields[6]) == (task_id, "shop.tasks.charge_card",
                                                            "failed", "2")
    assert fields[7] == "PaymentDeclined: attempt 2: card 4000-0002 declined for order 7"
    assert len(line) < 300


def test_under_debug_with_a_root_console_handler_the_worker_adds_no_copy_of_a_line(project,
                                                                             tasks_file):
    from shop.tasks import add

    # Given DEBUG=True and LOGGING's root console handler (Django's documented example)
    task_id = add.enqueue(2, 3).id
    command = worker_command(project, tasks_file, "--log-level", "DEBUG")
    command["env"]["SHOP_DEBUG_LOGGING"] = "1"

    # When the worker runs the task
    done = subprocess.run(**command, timeout=120)

    # Then the worker adds no copy of any line: the queue's are on stderr once, and the
    # framework's as often as LOGGING prints them (once for the backport's django_tasks
    # logger; Django 6's django.tasks is under "django", whose DEBUG console handler and the
    # root's each print it, as they print every django.* line)
    from dbbasic_queue.django.compat import FRAMEWORK
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ", 3)[-1] if line[:1].isdigit() else line
             for line in done.stderr.splitlines()]
    ours = [line for line in lines if not line.startswith("Task id=")]
    assert any(line.startswith(f"job {task_id} shop.tasks.add completed in") for line in ours)
    assert any(line.startswith("ran 1 job in") for line in ours), lines
    assert len(ours) == len(set(ours)), done.stderr
    printers = 2 if FRAMEWORK.startswith("django.") else 1
    assert lines.count(f"Task id={task_id} path=shop.tasks.add state=SUCCESSFUL") == printers, \
        done.stderr


def test_a_killed_workers_task_is_taken_again_once_its_lease_ends(project, tasks_file, tmp_path):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.tasks import pack_parcel

    # Given a task whose first attempt hangs, in a worker with a 2-second lease
    marker = tmp_path / "started"
    task_id = pack_parcel.enqueue(str(marker)).id
    first = subprocess.Popen(**worker_command(project, tasks_file, "--lease", "2"))
    try:
        wait_for(marker.exists, 60, "the task to start")
        running = pack_parcel.get_result(task_id)
        assert (running.status, running.attempts) == (TaskResultStatus.RUNNING, 1)

        # When its worker is killed mid-task
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
        first.stderr.close()
    assert pack_parcel.get_result(task_id).status == TaskResultStatus.RUNNING

    # Then, once its lease has run out (its end is the job's run_at), the next worker runs it
    lease_end = backend().queue.get_job(task_id)["run_at"]
    wait_for(lambda: time.time() > lease_end, 30, "the lease to run out")
    done = run_worker(project, tasks_file, "--lease", "2")
    result = pack_parcel.get_result(task_id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"packed_on_attempt": 2, "worker_ids": 2}
    assert result.attempts == 2 and result.worker_ids[0] == "unknown"
    assert "stopped without a result; trying again" in done.stderr


def test_a_task_past_its_timeout_is_stopped_and_its_next_attempt_runs(project, tasks_file,
                                                                          tmp_path):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.tasks import pack_parcel

    # Given a task whose first attempt hangs, and a worker with a 1-second time limit
    task_id = pack_parcel.enqueue(str(tmp_path / "started")).id

    # When the worker runs it, then again once its retry is due
    run_worker(project, tasks_file, "--timeout", "1")
    stopped = pack_parcel.get_result(task_id)
    assert backend().queue.run_now(task_id)
    run_worker(project, tasks_file, "--timeout", "1")

    # Then the first attempt was stopped where it hung, and the second one succeeded
    assert (stopped.status, stopped.attempts) == (TaskResultStatus.READY, 1)
    error = stopped.errors[0]
    assert error.exception_class_path == "dbbasic_queue.worker.timelimit.JobTimeout"
    assert "time.sleep(120)" in error.traceback and "timed out after 1 s" in error.traceback
    done = pack_parcel.get_result(task_id)
    assert (done.status, done.attempts, done.return_value) == (
        TaskResultStatus.SUCCESSFUL, 2, {"packed_on_attempt": 2, "worker_ids": 2})
    assert [e.exception_class_path for e in done.errors] == ["dbbasic_queue.worker.timelimit.JobTimeout"]


def test_the_backend_refuses_what_it_cannot_do_clearly_and_writes_nothing(tasks_file):
    from dbbasic_queue.django.compat import InvalidTask, TaskResultDoesNotExist
    from dbbasic_queue.django.backend import TaskBackend
    from shop.tasks import fulfil_order

    # The capability flags say what the backend does
    assert (TaskBackend.supports_defer, TaskBackend.supports_get_result,
            TaskBackend.supports_async_task, TaskBackend.supports_priority) == (
        True, True, True, True)
    # A queue name the backend's QUEUES does not list is refused when the task is made
    with pytest.raises(InvalidTask, match="reports"):
        fulfil_order.using(queue_name="reports")
    # Values JSON cannot hold as they are are refused at enqueue, naming the task
    with pytest.raises(TypeError, match="shop.tasks.fulfil_order: args and kwargs must be JSON"):
        fulfil_order.enqueue(object())
    with pytest.raises(ValueError, match="shop.tasks.fulfil_order"):
        fulfil_order.enqueue(float("nan"))
    with pytest.raises(ValueError, match="not a str"):
        fulfil_order.enqueue({1: "one"})
    assert not tasks_file.exists()
    # Unknown ids, and jobs that are not tasks, have no result
    backend().queue.enqueue("send_email", {"to": "ann@example.com"})
    plain_id = next(backend().queue.jobs())["id"]
    for unknown in ("0123456789abcdef", plain_id, "../etc", ""):
        with pytest.raises(TaskResultDoesNotExist):
            fulfil_order.get_result(unknown)


def test_run_after_is_the_jobs_run_at(tasks_file):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.tasks import fulfil_order

    later = datetime.now(timezone.utc).replace(microsecond=250000) + timedelta(hours=2)
    result = fulfil_order.using(run_after=later).enqueue(5)
    job = backend().queue.get_job(result.id)
    assert job["run_at"] == math.ceil(later.timestamp())
    read = fulfil_order.get_result(result.id)
    assert (read.status, read.task.run_after) == (TaskResultStatus.READY, later)
    # not due yet: a worker run leaves it waiting
    assert backend().queue.process_jobs({}) == 0


def test_the_worker_runs_only_task_objects_of_installed_apps_named_in_the_file(tasks_file):
    from dbbasic_queue.django.runner import handler_for

    # Given jobs written into the file by hand, naming what is not a task
    queue = backend().queue
    named = {"antigravity.fly": None, "shop.models.Order": None, "os.system": None,
             "shop.tasks.PaymentDeclined": None, "not a path": None}
    for path in named:
        named[path] = queue.enqueue("django_task", {"task": path, "args": ["x"], "kwargs": {}})
    assert "antigravity" not in sys.modules

    # When a worker runs them
    queue.process_jobs(handler_for(backend()), max_attempts=1)

    # Then each failed, saying it is not a task, and no module outside the apps was imported
    for path, job_id in named.items():
        job = queue.get_job(job_id)
        assert job["status"] == "failed"
        assert "which is not a task" in job["error"] and repr(path) in job["error"]
    assert "antigravity" not in sys.modules


def test_a_tasks_type_is_its_path_and_a_path_no_app_has_waits_for_a_worker_that_has_it(
        project, tasks_file):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.models import Order
    from shop.tasks import fulfil_order
    queue = backend().queue

    # Given a task enqueued now, one enqueued as the tasks before were (type django_task),
    # and a job naming a task no installed app has, written by another app sharing the file
    new = fulfil_order.enqueue(Order.objects.create(item="new").pk)
    old = queue.enqueue("django_task", {"task": "shop.tasks.fulfil_order",
                                        "args": [Order.objects.create(item="old").pk],
                                        "kwargs": {}})
    elsewhere = queue.enqueue("billing.tasks.invoice", {"task": "billing.tasks.invoice",
                                                        "args": [], "kwargs": {}})
    # and stats names the task by its path
    assert queue.stats()["by_type"]["shop.tasks.fulfil_order"]["pending"] == 1

    # When the worker runs
    done = run_worker(project, tasks_file)

    # Then both of the shop's tasks ran, and the other app's job waits, untouched, saying why
    assert fulfil_order.get_result(new.id).status == TaskResultStatus.SUCCESSFUL
    assert fulfil_order.get_result(old).status == TaskResultStatus.SUCCESSFUL
    waiting = queue.get_job(elsewhere)
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0), done.stderr
    assert "waiting for a worker with a handler for 'billing.tasks.invoice'" in waiting["error"]


def test_a_job_whose_type_and_task_disagree_fails_without_running_the_task(tasks_file):
    from dbbasic_queue.django.runner import handler_for
    queue = backend().queue

    # Given a hand-written job whose type is one task and whose payload names another
    job_id = queue.enqueue("shop.tasks.fulfil_order", {"task": "shop.tasks.close_shop",
                                                       "args": ["x"], "kwargs": {}})

    # When a worker runs it, then it fails saying so, and close_shop never ran (no SystemExit)
    assert queue.process_jobs(handler_for(backend()), max_attempts=1) == 1
    job = queue.get_job(job_id)
    assert job["status"] == "failed" and "a task's job type is its path" in job["error"]


def test_check_reports_bad_options_and_the_worker_refuses_them(project):
    from django.core.management import CommandError, call_command
    from django.test import override_settings
    from dbbasic_queue.django.backend import TaskBackend

    def messages(params):
        return [(m.id, m.msg) for m in TaskBackend("shop", params).check()]

    assert messages({"OPTIONS": {"PATH": "/srv/app/data/tasks.tsv"}}) == []
    found = messages({"QUEUES": ["default", "no spaces"], "OPTIONS": {
        "PATH": "data/tasks.csv", "MAX_ATTEMPTS": 0, "LEASE": 30, "TIMEOUT": -1}})
    assert [m[0] for m in found] == ["dbbasic_queue.E001"] * 5
    text = "\n".join(m[1] for m in found)
    for expected in ("unknown OPTIONS LEASE; the options are PATH, DURABLE, MAX_ATTEMPTS",
                     "OPTIONS['PATH'] must be the queue file's path, ending in .tsv",
                     "OPTIONS['MAX_ATTEMPTS'] must be a whole number greater than 0, not 0",
                     "OPTIONS['TIMEOUT'] must be a number of seconds greater than 0 or None",
                     "QUEUES: queue 'no spaces' must be 1 to 100 letters"):
        assert expected in text
    assert messages({"OPTIONS": {"PATH": "data/tasks.tsv"}}) == [("dbbasic_queue.W001", (
        "TASKS['shop']: OPTIONS['PATH'] 'data/tasks.tsv' is relative to the current directory, "
        "which may differ between the web server and the worker, so they would use two files; "
        "use an absolute path such as BASE_DIR / 'data' / 'tasks.tsv'"))]

    with pytest.raises(CommandError, match="MAX_ATTEMPTS"):
        with override_settings(TASKS={"default": {"BACKEND": BACKEND,
                                                  "OPTIONS": {"MAX_ATTEMPTS": "3"}}}):
            call_command("dbbasic_queue_worker")
    with pytest.raises(CommandError, match="--backend nope"):
        call_command("dbbasic_queue_worker", "--backend", "nope")


def test_the_exception_kept_is_the_tasks_own_even_when_closing_connections_fails(
        tasks_file, monkeypatch):
    from django.db import OperationalError
    from dbbasic_queue.django import runner
    from dbbasic_queue.django.compat import TaskResultStatus, task_finished
    from shop.tasks import PaymentDeclined, charge_card

    # Given a task that raises, and a database whose connections fail to close after it
    calls = []

    def close_old_connections():
        calls.append(1)
        if len(calls) > 1:
            raise OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(runner, "close_old_connections", close_old_connections)
    finished = []

    def on_finished(sender, task_result, **kwargs):
        finished.append(task_result)
    task_finished.connect(on_finished)
    try:
        # When the worker runs it
        task_id = charge_card.enqueue(3, "4000").id
        backend().queue.process_jobs(runner.handler_for(backend()), max_attempts=1)
    finally:
        task_finished.disconnect(on_finished)

    # Then the queue kept the task's own exception, raised in the task's own frame
    assert len(calls) == 2
    [kept] = backend().queue.tracebacks(task_id)
    assert (kept["attempt"], kept["exception"]) == (1, "shop.tasks.PaymentDeclined")
    assert ", in charge_card\n" in kept["traceback"]
    assert "OperationalError" not in kept["traceback"]
    result = charge_card.get_result(task_id)
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class for e in result.errors] == [PaymentDeclined]
    assert result.errors[0].traceback == kept["traceback"]
    # and task_finished, sent in the worker, had the same error, as the last one
    [sent] = finished
    assert (sent.status, [e.exception_class for e in sent.errors]) == (
        TaskResultStatus.FAILED, [PaymentDeclined])
    assert "attempt 1: card 4000 declined for order 3" in sent.errors[0].traceback


def test_a_task_that_calls_sys_exit_fails_with_systemexit_and_its_traceback(tasks_file):
    from dbbasic_queue.django.compat import TaskResultStatus
    from dbbasic_queue.django.runner import handler_for
    from shop.tasks import close_shop

    # Given a task that calls sys.exit (SystemExit: a BaseException, and a builtin)
    task_id = close_shop.enqueue("closed for the holidays").id

    # When the worker runs it, with one attempt
    backend().queue.process_jobs(handler_for(backend()), max_attempts=1)

    # Then it failed with SystemExit, importable from its class path, and the task's frame
    result = close_shop.get_result(task_id)
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    [error] = result.errors
    assert error.exception_class_path == "builtins.SystemExit"
    assert error.exception_class is SystemExit
    assert "in close_shop\n    sys.exit(reason)" in error.traceback
    assert error.traceback.rstrip().endswith("SystemExit: closed for the holidays")


def test_a_tasks_tracebacks_read_back_once_archived_and_go_with_retention(tasks_file, tmp_path):
    from dbbasic_queue import Queue
    from dbbasic_queue.django.compat import TaskResultDoesNotExist, TaskResultStatus
    from dbbasic_queue.django.runner import handler_for
    from shop.tasks import PaymentDeclined, charge_card, pack_parcel

    # Given a task stopped by its time limit once, then successful at its second attempt,
    # and a task that failed for good
    queue = backend().queue
    packed = pack_parcel.enqueue(str(tmp_path / "started")).id
    queue.process_jobs(handler_for(backend()), timeout=0.5)
    assert queue.run_now(packed)
    queue.process_jobs(handler_for(backend()))
    declined = charge_card.enqueue(9, "4000").id
    queue.process_jobs(handler_for(backend()), max_attempts=1)

    # When a later worker rewrite moves the finished job to an archive file
    archiving = Queue(tasks_file, archive_after=0)
    archiving.enqueue("no_op", {})
    archiving.process_jobs({"no_op": lambda payload: None})
    assert packed not in tasks_file.read_text()
    assert any(packed in path.read_text() for _, path in archiving.archive.files())

    # Then both results read back with their tracebacks
    result = pack_parcel.get_result(packed)
    assert (result.status, result.attempts, result.return_value["packed_on_attempt"]) == (
        TaskResultStatus.SUCCESSFUL, 2, 2)
    assert [e.exception_class_path for e in result.errors] == [
        "dbbasic_queue.worker.timelimit.JobTimeout"]
    assert "time.sleep(120)" in result.errors[0].traceback
    failed = charge_card.get_result(declined)
    assert (failed.status, [e.exception_class for e in failed.errors]) == (
        TaskResultStatus.FAILED, [PaymentDeclined])
    assert failed.started_at <= failed.finished_at

    # When a worker with 7 days' retention runs 8 days later
    later = Queue(tasks_file, clock=lambda: time.time() + 8 * 86400)
    later.process_jobs({}, retention_seconds=7 * 86400)

    # Then the tracebacks' day files have gone, with the archived task; the task that failed
    # for good stays in the file, its error now the file's one line
    assert list(tasks_file.parent.glob("tasks.tracebacks.*")) == []
    assert queue.tracebacks(packed) == [] and queue.tracebacks(declined) == []
    with pytest.raises(TaskResultDoesNotExist):
        pack_parcel.get_result(packed)
    failed = charge_card.get_result(declined)
    assert failed.status == TaskResultStatus.FAILED
    assert [(e.exception_class_path, e.traceback) for e in failed.errors] == [
        ("dbbasic_queue.errors.QueueError",
         "PaymentDeclined: attempt 1: card 4000 declined for order 9")]


def test_a_task_keeps_its_priority_and_queue_and_the_worker_serves_the_queues_named(
        project, tasks_file):
    from dbbasic_queue.django.compat import TaskResultStatus
    from shop.models import Order
    from shop.tasks import fulfil_order
    orders = [Order.objects.create(item=item).pk for item in ("mail", "low", "high")]

    # Given tasks in two queues, with priorities
    mailed = fulfil_order.using(queue_name="emails").enqueue(orders[0])
    low = fulfil_order.using(priority=-10).enqueue(orders[1])
    high = fulfil_order.using(priority=10).enqueue(orders[2])
    assert backend().queue.job_options(high.id) == {"priority": 10}
    assert backend().queue.job_options(mailed.id) == {"queue": "emails"}

    # When a worker serving only the default queue runs them, one at a time
    run_worker(project, tasks_file, "--queue", "default", "--max-jobs", "1")
    run_worker(project, tasks_file, "--queue", "default")

    # Then the higher priority ran first, and the emails task waits for its queue's worker
    high_done, low_done = fulfil_order.get_result(high.id), fulfil_order.get_result(low.id)
    assert high_done.status == low_done.status == TaskResultStatus.SUCCESSFUL
    assert high_done.started_at <= low_done.started_at
    waiting = fulfil_order.get_result(mailed.id)
    assert waiting.status == TaskResultStatus.READY and waiting.task.queue_name == "emails"
    assert (high_done.task.priority, low_done.task.priority) == (10, -10)
    run_worker(project, tasks_file, "--queue", "emails")
    assert fulfil_order.get_result(mailed.id).status == TaskResultStatus.SUCCESSFUL
