"""Hooks (dbbasic_queue.add_hooks): the app's code at each step of a job's life, on both
backends and in a real worker process; a hook that raises changes no job's outcome."""

import json
import subprocess
import sys
import textwrap
import threading

import pytest

import dbbasic_queue
from dbbasic_queue import JobEvent, Retry, add_hooks, remove_hooks
from dbbasic_queue.worker.running import current_job
from support import ROOT, EMAIL, WAIT_SECONDS


class Recorder:
    """Keeps every event it is given, with the job current_job() named at that moment."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def record(self, event):
        running = current_job()
        with self.lock:
            self.events.append((event, None if running is None else running.id))

    on_enqueue = on_start = on_success = on_failure = on_retry = record

    def steps(self, job_id=None):
        return [event.step for event, _ in self.events if job_id in (None, event.id)]


@pytest.fixture
def recorder():
    hook = add_hooks(Recorder())
    yield hook
    remove_hooks(hook)


def test_hooks_see_each_step_of_a_job_that_succeeds_and_of_one_that_fails_for_good(
        backend, recorder):
    queue = backend.queue
    # Given a job that will succeed and one whose only attempt will fail
    ok = queue.enqueue("send_email", EMAIL, priority=5)
    broken = queue.enqueue("charge_card", {"amount": 150}, max_attempts=1)

    def charge_card(payload):
        raise ValueError(f"card declined for amount {payload['amount']}")
    # When a worker runs them
    assert queue.process_jobs({"send_email": lambda payload: {"sent": True},
                               "charge_card": charge_card}) == 2
    # Then the hooks saw, in order, each job's enqueue, start and outcome
    assert recorder.steps(ok) == ["on_enqueue", "on_start", "on_success"]
    assert recorder.steps(broken) == ["on_enqueue", "on_start", "on_failure"]
    events = {(event.id, event.step): (event, running) for event, running in recorder.events}
    enqueued, _ = events[(ok, "on_enqueue")]
    assert (enqueued.type, enqueued.payload, enqueued.priority, enqueued.attempt) == (
        "send_email", EMAIL, 5, 0)
    started, running = events[(ok, "on_start")]
    assert running == ok  # inside the handler's context, in its thread
    assert (started.attempt, started.max_attempts, started.payload) == (1, 3, EMAIL)
    succeeded, _ = events[(ok, "on_success")]
    assert succeeded.result == {"sent": True} and succeeded.duration >= 0
    failed, _ = events[(broken, "on_failure")]
    assert failed.final is True and failed.error == "ValueError: card declined for amount 150"
    assert isinstance(failed.exception, ValueError)
    assert queue.get_job(broken)["status"] == "failed"


def test_a_failed_attempt_with_attempts_left_is_a_failure_then_a_retry_later(
        backend, recorder):
    import time
    job_id = backend.queue.enqueue("flaky", {}, max_attempts=2)
    backend.queue.process_jobs({"flaky": lambda payload: 1 / 0})
    assert recorder.steps(job_id) == ["on_enqueue", "on_start", "on_failure", "on_retry"]
    failure, retry = (event for event, _ in recorder.events[2:])
    assert failure.final is False and failure.attempt == 1 and failure.max_attempts == 2
    assert retry.run_at > time.time() and retry.error == "ZeroDivisionError: division by zero"


def test_the_retry_is_at_the_jobs_run_at_and_the_last_failure_is_final(
        queue, clock, recorder):
    job_id = queue.enqueue("flaky", {}, max_attempts=2)
    queue.process_jobs({"flaky": lambda payload: 1 / 0})
    retry = recorder.events[-1][0]
    assert retry.run_at == queue.get_job(job_id)["run_at"] > clock()
    # and the last attempt's failure is final, with no retry after it
    clock.advance(3600)
    queue.process_jobs({"flaky": lambda payload: 1 / 0})
    assert recorder.steps(job_id)[4:] == ["on_start", "on_failure"]
    assert recorder.events[-1][0].final is True and recorder.events[-1][0].attempt == 2


def test_a_handler_asking_to_run_later_is_a_retry_and_no_failure(queue, clock, recorder):
    job_id = queue.enqueue("poll", {})

    def poll(payload):
        raise Retry(delay=120)
    queue.process_jobs({"poll": poll})
    assert recorder.steps(job_id) == ["on_enqueue", "on_start", "on_retry"]
    retry = recorder.events[-1][0]
    assert retry.run_at == queue.get_job(job_id)["run_at"] == int(clock()) + 120
    assert retry.error is None and queue.get_job(job_id)["attempts"] == 0


def test_a_periodic_schedules_firing_tells_the_hooks_of_the_job_it_adds(queue, clock, recorder):
    import datetime
    queue.periodic(every=datetime.timedelta(minutes=10), job_type="tick")(lambda payload: None)
    queue.process_jobs(queue.handlers)  # the schedule's first slot is its next one
    clock.advance(600)
    assert queue.process_jobs(queue.handlers) == 1
    fired = [event for event, _ in recorder.events if event.step == "on_enqueue"]
    assert [event.type for event in fired] == ["tick"]
    assert recorder.steps(fired[0].id) == ["on_enqueue", "on_start", "on_success"]


def test_a_hook_that_raises_is_logged_and_changes_no_outcome_nor_the_other_hooks(
        queue, recorder, caplog):
    class Broken:
        def on_start(self, event):
            raise RuntimeError("the hook's own bug")

        def on_enqueue(self, event):
            raise RuntimeError("the hook's own bug")
    broken = add_hooks(Broken())
    try:
        job_id = queue.enqueue("send_email", EMAIL)
        assert queue.process_jobs({"send_email": lambda payload: None}) == 1
    finally:
        remove_hooks(broken)
    assert queue.get_job(job_id)["status"] == "completed"
    assert recorder.steps(job_id) == ["on_enqueue", "on_start", "on_success"]
    raised = [r for r in caplog.records if "the job goes on" in r.getMessage()]
    assert len(raised) == 2 and all("the hook's own bug" in r.exc_text for r in raised)


def test_no_event_for_a_unique_keys_twin_and_one_at_commit_for_enqueue_after(queue, recorder):
    first = queue.enqueue("report", {}, unique_key="daily")
    assert queue.enqueue("report", {}, unique_key="daily") == first
    assert recorder.steps() == ["on_enqueue"]
    commits = []
    later = queue.enqueue_after(commits.append, "report", {"n": 2})
    assert recorder.steps() == ["on_enqueue"]  # nothing written yet
    commits[0]()
    assert [event.id for event, _ in recorder.events] == [first, later]


def test_add_hooks_refuses_an_object_with_no_hook_and_adds_one_hook_once(recorder):
    with pytest.raises(TypeError, match="on_enqueue, on_start"):
        add_hooks(object())
    assert add_hooks(recorder) is recorder
    assert dbbasic_queue.hooks.registered.count(recorder) == 1
    assert remove_hooks(recorder) is True and remove_hooks(recorder) is False
    add_hooks(recorder)  # for the fixture to remove
    assert JobEvent("on_start", "id", "type").queue == "default"


def test_hooks_declared_beside_the_handlers_run_in_a_cron_worker_process(tmp_path):
    # Given an app whose handlers module registers a hook writing each step to a file
    app = tmp_path / "app"
    app.mkdir()
    (app / "jobs.py").write_text(textwrap.dedent("""
        import json, os
        import dbbasic_queue

        class Log:
            def note(self, event):
                with open(os.environ["HOOK_LOG"], "a") as log:
                    log.write(json.dumps([event.step, event.id, event.final]) + "\\n")
            on_start = on_success = on_failure = on_retry = note

        dbbasic_queue.add_hooks(Log())

        @dbbasic_queue.handler("send_email")
        def send_email(payload):
            if payload.get("fail"):
                raise ValueError("no")

        handlers = dbbasic_queue.handlers
    """))
    queue = dbbasic_queue.Queue(tmp_path / "data" / "queue.tsv")
    ok = queue.enqueue("send_email", EMAIL)
    broken = queue.enqueue("send_email", {"fail": True}, max_attempts=1)
    # When the command line's cron run works the queue, in its own process
    log = tmp_path / "hooks.log"
    env = dict(__import__("os").environ, HOOK_LOG=str(log),
               PYTHONPATH=f"{app}{__import__('os').pathsep}{ROOT}")
    subprocess.run([sys.executable, "-m", "dbbasic_queue", "work", "--handlers", "jobs:handlers",
                    "--file", str(queue.path), "--max-seconds", "30"], cwd=tmp_path, env=env,
                   check=True, timeout=WAIT_SECONDS, capture_output=True)
    # Then its hooks saw both jobs' steps
    seen = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert [step for step, job_id, _ in seen if job_id == ok] == ["on_start", "on_success"]
    assert [(step, final) for step, job_id, final in seen if job_id == broken] == [
        ("on_start", False), ("on_failure", True)]


def test_the_opentelemetry_example_of_docs_hooks_md_gives_a_span_per_attempt(tmp_path):
    # Given the example of docs/hooks.md, under OpenTelemetry's SDK exporting to memory
    example = (ROOT / "docs" / "hooks.md").read_text().split("```python\n")[1].split("```")[0]
    script = textwrap.dedent("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    """) + example + textwrap.dedent("""
        queue = dbbasic_queue.Queue("data/queue.tsv")
        queue.enqueue("send_email", {})
        queue.enqueue("charge_card", {}, max_attempts=1)
        def charge_card(payload):
            raise ValueError("card declined")
        queue.process_jobs({"send_email": lambda payload: None, "charge_card": charge_card})
        print(json.dumps([[span.name, span.status.status_code.name,
                           [event.name for event in span.events]]
                          for span in exporter.get_finished_spans()]))
    """)
    # When a worker runs a job that succeeds and one that fails
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True,
                          capture_output=True, text=True, timeout=WAIT_SECONDS)
    # Then each attempt is a span: the failed one in error, with its exception recorded
    assert sorted(json.loads(done.stdout)) == [["job charge_card", "ERROR", ["exception"]],
                                               ["job send_email", "UNSET", []]]


def test_a_hook_raising_systemexit_ends_neither_the_job_nor_the_enqueue(queue, recorder, caplog):
    class Exiting:
        def on_enqueue(self, event):
            raise SystemExit(1)

        def on_start(self, event):
            raise SystemExit(1)
    exiting = add_hooks(Exiting())
    try:
        job_id = queue.enqueue("send_email", EMAIL)  # written: no exception, the id returned
        assert queue.process_jobs({"send_email": lambda payload: None}) == 1
    finally:
        remove_hooks(exiting)
    assert queue.get_job(job_id)["status"] == "completed"
    assert recorder.steps(job_id) == ["on_enqueue", "on_start", "on_success"]
    assert len([r for r in caplog.records if "the job goes on" in r.getMessage()]) == 2


def test_enqueue_many_through_the_module_tells_the_hooks_and_keeps_declared_queues(
        queue, recorder, monkeypatch):
    from dbbasic_queue.testing import using_queue
    monkeypatch.setattr(dbbasic_queue, "handlers", dbbasic_queue.model.options.Handlers())
    dbbasic_queue.handler("send_email", queue="emails")(lambda payload: None)
    with using_queue(queue):
        ids = dbbasic_queue.enqueue_many([("send_email", {"n": 1}), ("sync_crm", {}),
                                          ("send_email", {"n": 2})])
        with pytest.raises(TypeError, match="job 1 of enqueue_many"):
            dbbasic_queue.enqueue_many([("send_email", {}), ("sync_crm", [])])
    assert [event.id for event, _ in recorder.events] == [ids[0], ids[2], ids[1]]
    assert [queue.job_options(job_id).get("queue", "default") for job_id in ids] == [
        "emails", "default", "emails"]
    assert len(list(queue.jobs())) == 3  # the refused batch wrote nothing
