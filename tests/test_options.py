"""Job options: unique keys, per-job attempts and timeouts, Retry, enqueue after commit,
handler registration, and the options column they live in."""

import collections
import sys
import time
import types

import pytest
from dbbasic.tsv import TSV

import dbbasic_queue
from dbbasic_queue import Queue, Retry
from dbbasic_queue.model.job import COLUMNS, PUBLISHED_COLUMNS
from support import StartLine, Transaction, fail, finish, kill_worker_mid_job, noop


# --- unique jobs -----------------------------------------------------------------------

def test_a_unique_key_gives_the_waiting_job_s_id_instead_of_a_second_job(queue):
    first = queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42")

    assert queue.enqueue("welcome", {"user": 42}, unique_key="welcome:42") == first
    other = queue.enqueue("welcome", {"user": 43}, unique_key="welcome:43")
    plain = queue.enqueue("welcome", {"user": 42})
    assert len({first, other, plain}) == 3
    assert sum(1 for _ in queue.jobs()) == 3


def test_a_unique_key_is_free_again_once_its_job_has_finished(queue):
    first = queue.enqueue("welcome", {}, unique_key="k")
    queue.process_jobs({"welcome": noop})  # a rewrite: the key's job is completed

    second = queue.enqueue("welcome", {}, unique_key="k")

    assert second != first and queue.get_job(second)["status"] == "pending"
    assert queue.enqueue("welcome", {}, unique_key="k") == second


def test_a_unique_key_is_free_after_every_worker_run_however_inodes_are_reused(queue):
    """Rewrites free inode numbers that the next rewrite often takes again: the index must
    not mistake the new file for the one it read, or it answers with a finished job's id
    and adds nothing."""
    ids = [queue.enqueue("welcome", {"n": n}, unique_key=f"k{n}") for n in range(100)]
    for n in range(10):
        queue.process_jobs({"welcome": noop}, max_jobs=1)  # two rewrites: job n completes
        assert queue.get_job(ids[n])["status"] == "completed"

        again = queue.enqueue("welcome", {"n": n}, unique_key=f"k{n}")

        assert again != ids[n] and queue.get_job(again)["status"] == "pending"


def test_a_unique_key_holds_while_its_job_is_processing(queue, clock):
    first = queue.enqueue("t", {}, unique_key="k")
    kill_worker_mid_job(queue)
    assert queue.get_job(first)["status"] == "processing"

    assert queue.enqueue("t", {}, unique_key="k") == first


def test_four_processes_enqueueing_one_key_at_once_create_exactly_one_job(tmp_path, children):
    path = tmp_path / "data" / "queue.tsv"
    start = StartLine(tmp_path / "start")
    enqueuers = [children.role("enqueue", path, 50, "--unique-key", "welcome:42", *start.args())
                 for _ in range(4)]
    start.release(len(enqueuers))

    ids = [job_id for enqueuer in enqueuers for job_id in finish(enqueuer).split()]

    jobs = list(Queue(path).jobs())
    assert len(jobs) == 1 and set(ids) == {jobs[0]["id"]} and len(ids) == 200


@pytest.mark.parametrize("key, error", [(42, TypeError), ("", ValueError), ("a\tb", ValueError),
                                        ("a\nb", ValueError), ("x" * 501, ValueError)])
def test_a_bad_unique_key_raises_and_writes_nothing(queue, key, error):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()
    with pytest.raises(error):
        queue.enqueue("t", {}, unique_key=key)
    assert queue.path.read_bytes() == before


# --- per-job attempts and timeouts ---------------------------------------------------------

def test_a_job_s_max_attempts_overrides_the_worker_s(queue, clock):
    stubborn = queue.enqueue("t", {}, max_attempts=5)
    fragile = queue.enqueue("t", {}, max_attempts=1)

    for _ in range(6):
        queue.process_jobs({"t": fail}, max_attempts=3)
        clock.advance(3600)

    assert (queue.get_job(stubborn)["status"], queue.get_job(stubborn)["attempts"]) == ("failed", 5)
    assert (queue.get_job(fragile)["status"], queue.get_job(fragile)["attempts"]) == ("failed", 1)


def test_a_handler_past_its_timeout_is_stopped_counted_as_failed_and_the_worker_goes_on(queue):
    hung = queue.enqueue("hang", {}, timeout=0.3)
    after = queue.enqueue("quick", {})
    started = time.monotonic()

    ran = queue.process_jobs({"hang": lambda p: time.sleep(3600), "quick": lambda p: "done"})

    assert ran == 2 and time.monotonic() - started < 10
    job = queue.get_job(hung)
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 1, "timed out after 0.3 s")
    assert queue.get_job(after)["result"] == "done"


def test_the_worker_s_timeout_applies_to_jobs_without_their_own(queue):
    def busy(payload):  # pure Python that never sleeps: interrupted all the same
        while True:
            pass
    job_id = queue.enqueue("busy", {})

    queue.process_jobs({"busy": busy}, timeout=0.2, max_attempts=1)

    assert (queue.get_job(job_id)["status"], queue.get_job(job_id)["error"]) == (
        "failed", "timed out after 0.2 s")


def test_a_timeout_is_not_caught_by_the_handler_s_own_except_exception(queue):
    def stubborn(payload):
        try:
            time.sleep(3600)
        except Exception:
            return "swallowed"
    job_id = queue.enqueue("s", {}, timeout=0.2)
    queue.process_jobs({"s": stubborn})
    assert queue.get_job(job_id)["error"] == "timed out after 0.2 s"


@pytest.mark.parametrize("options, error", [
    (dict(max_attempts=0), ValueError), (dict(max_attempts=2.5), TypeError),
    (dict(timeout=0), ValueError), (dict(timeout="10s"), TypeError),
    (dict(timeout=float("inf")), ValueError),
])
def test_bad_job_options_raise_and_write_nothing(queue, options, error):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()
    with pytest.raises(error):
        queue.enqueue("t", {}, **options)
    assert queue.path.read_bytes() == before


# --- Retry ------------------------------------------------------------------------------------

def test_retry_with_a_delay_reschedules_without_using_an_attempt(queue, clock):
    job_id = queue.enqueue("api", {})
    calls = []

    def rate_limited(payload):
        calls.append(clock.now)
        if len(calls) < 5:
            raise Retry(delay=300)
        return "ok"

    for _ in range(5):
        queue.process_jobs({"api": rate_limited}, max_attempts=2)
        job = queue.get_job(job_id)
        if job["status"] == "pending":
            assert job["run_at"] == int(clock.now) + 300 and job["attempts"] == 0
            assert queue.process_jobs({"api": rate_limited}) == 0  # not due yet
        clock.advance(300)

    assert len(calls) == 5 and queue.get_job(job_id)["result"] == "ok"
    assert queue.get_job(job_id)["attempts"] == 1


def test_retry_at_a_timestamp(queue, clock):
    job_id = queue.enqueue("t", {})
    queue.process_jobs({"t": lambda p: (_ for _ in ()).throw(Retry(at=clock.now + 1234.5))})
    assert queue.get_job(job_id)["run_at"] == int(clock.now + 1234.5) + 1


@pytest.mark.parametrize("args, kwargs, error", [
    ((), {}, TypeError), ((5,), {"at": 10}, TypeError), ((-1,), {}, ValueError),
    ((), {"at": float("nan")}, ValueError), (("soon",), {}, ValueError),
])
def test_retry_needs_one_valid_delay_or_time(args, kwargs, error):
    with pytest.raises(error):
        Retry(*args, **kwargs)


# --- enqueue after commit -----------------------------------------------------------------

def test_enqueue_after_writes_the_job_only_at_commit_under_the_id_it_returned(queue):
    transaction = Transaction()

    job_id = queue.enqueue_after(transaction.on_commit, "welcome", {"user": 42}, max_attempts=5)

    assert queue.get_job(job_id) is None
    transaction.commit()
    assert queue.get_job(job_id)["payload"] == {"user": 42}


def test_a_rolled_back_transaction_leaves_no_job_and_bad_input_raises_at_once(queue):
    transaction = Transaction()
    queue.enqueue_after(transaction.on_commit, "welcome", {})
    transaction.callbacks = []  # rollback

    with pytest.raises(TypeError):
        queue.enqueue_after(transaction.on_commit, "welcome", {"when": object()})
    assert transaction.callbacks == [] and not queue.path.exists()


def test_enqueue_on_commit_uses_django_s_on_commit(tmp_path, monkeypatch):
    """Django is not installed by the test command; the helper's own glue is tested with a
    stand-in module in its place."""
    transaction = Transaction()
    used = []
    django = types.ModuleType("django")
    django.db = types.ModuleType("django.db")
    django.db.transaction = types.SimpleNamespace(
        on_commit=lambda callback, using=None: used.append(using) or transaction.on_commit(callback))
    monkeypatch.setitem(sys.modules, "django", django)
    monkeypatch.setitem(sys.modules, "django.db", django.db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBBASIC_QUEUE_FILE", raising=False)

    job_id = dbbasic_queue.enqueue_on_commit("welcome", {"user": 42}, using="replica")

    assert dbbasic_queue.get_job(job_id) is None and used == ["replica"]
    transaction.commit()
    assert dbbasic_queue.get_job(job_id)["status"] == "pending"


# --- handler registration -----------------------------------------------------------------

def test_queue_handler_decorator_builds_the_handlers_dict(queue):
    @queue.handler("send_email")
    def send_email(payload):
        return payload["to"]

    job_id = queue.enqueue("send_email", {"to": "ann"})
    assert queue.handlers == {"send_email": send_email}
    assert queue.process_jobs(queue.handlers) == 1 and queue.get_job(job_id)["result"] == "ann"


def test_two_handlers_for_one_type_is_an_error_when_the_second_is_defined(queue):
    queue.handler("t")(noop)
    with pytest.raises(ValueError, match="registered already"):
        @queue.handler("t")
        def other(payload):
            pass


def test_the_module_level_decorator_registers_for_the_default_queue(monkeypatch):
    monkeypatch.setattr(dbbasic_queue, "handlers", {})

    @dbbasic_queue.handler("report")
    def report(payload):
        pass

    assert dbbasic_queue.handlers == {"report": report}
    with pytest.raises(ValueError):
        dbbasic_queue.handler("report")(noop)


def test_the_command_line_takes_a_queue_with_registered_handlers(tmp_path, monkeypatch, capsys):
    module = tmp_path / "app_jobs_registry.py"
    module.write_text("from dbbasic_queue import Queue\n"
                      "queue = Queue('data/queue.tsv')\n"
                      "@queue.handler('send_email')\n"
                      "def send_email(payload):\n"
                      "    return 'sent'\n")
    monkeypatch.chdir(tmp_path)
    job_id = Queue(tmp_path / "data" / "queue.tsv").enqueue("send_email", {})

    from dbbasic_queue.cli import main
    assert main(["work", "--handlers", "app_jobs_registry:queue"]) == 0
    assert Queue(tmp_path / "data" / "queue.tsv").get_job(job_id)["result"] == "sent"


# --- the options column ------------------------------------------------------------------

def test_options_live_in_one_column_after_result_and_cut_f4_still_gives_the_status(queue):
    queue.enqueue("t", {"a": 1}, unique_key="k", max_attempts=4, timeout=30)
    queue.enqueue("t", {})

    header, with_options, without = queue.path.read_text().splitlines()
    assert header.split("\t") == list(COLUMNS) and COLUMNS[:9] == PUBLISHED_COLUMNS
    assert with_options.split("\t")[3] == without.split("\t")[3] == "pending"
    assert with_options.split("\t")[9] == '"{""unique_key"": ""k"", ""max_attempts"": 4, ""timeout"": 30}"'
    assert without.split("\t")[9] == ""


def test_dbbasic_tsv_reads_the_file_with_the_options_column(queue):
    job_id = queue.enqueue("t", {}, unique_key="k")
    rows = list(TSV("queue", list(COLUMNS), data_dir=queue.path.parent).all())
    assert [(r["id"], r["status"], r["options"]) for r in rows] == [
        (job_id, "pending", '{"unique_key": "k"}')]


def test_a_file_written_before_the_options_column_reads_as_jobs_without_options(tmp_path):
    path = tmp_path / "queue.tsv"
    path.write_text("\t".join(PUBLISHED_COLUMNS) + "\n"
                    "oldjob00000000aa\tt\t{}\tpending\t1\t1\t0\t\t\n")
    queue = Queue(path)

    assert queue.get_job("oldjob00000000aa")["status"] == "pending"
    new = queue.enqueue("t", {}, max_attempts=1)
    assert queue.process_jobs({"t": fail}) == 2

    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(COLUMNS)  # the rewrite brought the header up to date
    assert queue.get_job(new)["status"] == "failed"  # its own max_attempts
    assert queue.get_job("oldjob00000000aa")["status"] == "pending"  # the worker's 3
    rows = list(TSV("queue", list(COLUMNS), data_dir=tmp_path).all())
    assert collections.Counter(r["status"] for r in rows) == {"failed": 1, "pending": 1}

