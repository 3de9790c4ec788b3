"""What an operator meets at the command line: where the queue is, durations that delete,
listings that say what they leave out, a job in full, running a waiting job now, a worker
that says what it runs, handlers modules that fail, help, and extras not installed."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timezone

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.backend import UNIQUE_KEYS
from dbbasic_queue.cli import _parser, main
from dbbasic_queue.cli.display import utc
from support import ROOT, TESTS, kill_worker_mid_job

NO_FILE = "no queue file at"


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """A queue at data/queue.tsv in the current directory (the command line's default), with
    the handlers of jobs_for_cli importable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    return Queue(tmp_path / "data" / "queue.tsv")


def run(capsys, *args):
    """The command line in this process: (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args, cwd, code=None, env=None):
    """``python -m dbbasic_queue ARGS`` in a child process (its log on stderr), with the
    handlers of jobs_for_cli importable and none of the developer's settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DBBASIC_QUEUE_")}
    environment.update(PYTHONPATH=str(TESTS), RUNS_LOG=str(cwd / "runs.log"), **(env or {}))
    command = [sys.executable, "-m", "dbbasic_queue"] if code is None else [sys.executable, "-c", code]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60)


def one_line_error(err: str, *words) -> None:
    assert err.startswith("dbbasic-queue: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


# --- where the queue is -----------------------------------------------------------------------

def test_the_file_option_works_before_or_after_the_command(queue, capsys, tmp_path):
    other = tmp_path / "elsewhere" / "jobs.tsv"

    _, out, _ = run(capsys, "enqueue", "t", "{}", "--file", other)
    job_id = out.strip()

    assert Queue(other).get_job(job_id) is not None and not queue.path.exists()
    assert json.loads(run(capsys, "stats", "--file", other, "--json")[1])["jobs"] == 1
    assert json.loads(run(capsys, "--file", other, "stats", "--json")[1])["jobs"] == 1
    assert job_id in run(capsys, "list", "--file", other)[1]
    assert run(capsys, "show", job_id, "--file", other)[0] == 0


@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"], ["list"]])
def test_a_missing_queue_file_is_said_plainly_and_is_not_an_error(queue, capsys, command):
    code, out, err = run(capsys, *command)

    assert code == 0
    one_line_error(err, NO_FILE, str(queue.path), "nothing was ever enqueued here",
                   "--file/DBBASIC_QUEUE_FILE")
    if "--json" in command:
        assert json.loads(out)["jobs"] == 0
    assert not queue.path.parent.exists()


def test_an_existing_queue_file_gets_no_such_note(queue, capsys):
    queue.enqueue("t", {})
    for command in (["stats"], ["list"]):
        assert run(capsys, *command)[2] == ""


@pytest.mark.parametrize("command", [
    ["stats"], ["stats", "--json"], ["list"], ["show", "0123456789abcdef"], ["schedules"],
    ["cancel", "0123456789abcdef"], ["retry", "--failed"], ["run-now", "--all"],
    ["purge", "--older-than", "7d"], ["pause", "emails"], ["resume", "emails"]])
def test_a_file_option_naming_a_directory_that_does_not_exist_is_an_error(queue, capsys,
                                                                          tmp_path, command):
    missing = tmp_path / "no" / "such" / "q.tsv"

    code, out, err = run(capsys, *command, "--file", missing)

    assert (code, out) == (4, "")
    one_line_error(err, f"the directory {missing.parent} does not exist", str(missing),
                   "check --file or DBBASIC_QUEUE_FILE")
    assert not (tmp_path / "no").exists()


def test_dbbasic_queue_file_naming_a_directory_that_does_not_exist_is_an_error_too(
        queue, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DBBASIC_QUEUE_FILE", str(tmp_path / "no" / "q.tsv"))
    code, _, err = run(capsys, "stats")
    assert code == 4
    one_line_error(err, f"the directory {tmp_path / 'no'} does not exist")


def test_a_file_option_in_an_existing_directory_is_only_no_queue_file_yet(queue, capsys,
                                                                        tmp_path):
    code, _, err = run(capsys, "stats", "--file", tmp_path / "q.tsv")
    assert code == 0
    one_line_error(err, NO_FILE, str(tmp_path / "q.tsv"))
    code, out, _ = run(capsys, "enqueue", "t", "{}", "--file", tmp_path / "new" / "q.tsv")
    assert code == 0 and Queue(tmp_path / "new" / "q.tsv").get_job(out.strip()) is not None


def test_a_worker_may_start_before_the_directory_of_its_file_exists(queue, capsys, tmp_path):
    code, out, err = run(capsys, "work", "--handlers", "jobs_for_cli:handlers",
                         "--file", tmp_path / "later" / "q.tsv")
    assert (code, out) == (0, "ran 0 jobs\n")
    assert "does not exist" not in err


def test_a_worker_says_where_no_queue_file_is_and_exits_0(tmp_path):
    done = cli("work", "--handlers", "jobs_for_cli:handlers", cwd=tmp_path)

    assert done.returncode == 0 and done.stdout == "ran 0 jobs\n"
    assert NO_FILE in done.stderr and str(tmp_path / "data" / "queue.tsv") in done.stderr


# --- durations ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, number", [
    (["purge", "--older-than", "7"], "7"),
    (["purge", "--older-than", "1.5", "--dry-run"], "1.5"),
    (["work", "--handlers", "jobs_for_cli:handlers", "--retention", "7"], "7"),
])
def test_a_duration_that_deletes_needs_a_unit(queue, capsys, clock_past_retention, args, number):
    before = queue.path.read_bytes()

    code, _, err = run(capsys, *args)

    assert code == 2
    one_line_error(err, f"'{number}' has no unit", "deletes jobs", f"write {number}d for")
    assert queue.path.read_bytes() == before


@pytest.fixture
def clock_past_retention(queue):
    """A completed job that a bare 7 read as seconds would delete: finished 10 s ago."""
    queue.enqueue("send_email", {"key": 1})
    queue.clock = lambda: time.time() - 10
    queue.process_jobs({"send_email": lambda payload: None})
    queue.clock = time.time


def test_a_bare_number_is_seconds_where_nothing_is_deleted(queue, capsys):
    _, out, _ = run(capsys, "enqueue", "t", "{}", "--in", "90", "--timeout", "5")
    job = queue.get_job(out.strip())

    assert job["run_at"] - job["created_at"] in (90, 91)
    assert queue.job_options(job["id"]) == {"timeout": 5.0}
    assert run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--max-seconds", "5",
               "--lease", "60")[0] == 0


def test_purge_dry_run_counts_by_status_and_deletes_nothing(queue, capsys):
    for n in range(3):
        queue.enqueue("send_email", {"key": n})
    queue.enqueue("fail", {}, max_attempts=1)
    queue.cancel_job(queue.enqueue("send_email", {"key": "c"}))
    queue.process_jobs(__import__("jobs_for_cli").handlers)
    queue.enqueue("send_email", {"key": "waiting"})
    before = queue.path.read_bytes()

    code, out, _ = run(capsys, "purge", "--older-than", "0s", "--dry-run")
    assert (code, out) == (0, "would purge 4 jobs (completed 3, cancelled 1) older than 0s; "
                              "nothing was deleted\n")
    _, out, _ = run(capsys, "purge", "--older-than", "0s", "--status", "failed", "--dry-run")
    assert out.startswith("would purge 1 job (failed 1)")
    _, out, _ = run(capsys, "purge", "--older-than", "1h", "--dry-run")
    assert out.startswith("would purge 0 jobs (completed 0, cancelled 0) older than 1h")
    assert queue.path.read_bytes() == before

    assert run(capsys, "purge", "--older-than", "0s")[1] == "purged 4 jobs\n"


# --- list ---------------------------------------------------------------------------------------

def test_list_says_how_many_the_limit_left_out(queue, capsys):
    for n in range(33):
        queue.enqueue("t", {"n": n})

    code, out, err = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert len(lines) == 1 + 20 + 1
    assert lines[-1] == "20 of 33 jobs, newest first; --limit 33 shows them all"

    code, out, err = run(capsys, "list", "--json")
    assert len(json.loads(out)) == 20 and "20 of 33 jobs" in err
    out = run(capsys, "list", "--limit", "33")[1]
    assert len(out.splitlines()) == 34 and " of 33" not in out


def test_list_marks_a_shortened_type_and_error_with_an_ellipsis_and_labels_times_utc(queue, capsys):
    long_type = "refresh_the_customer_relationship_cache"
    job_id = queue.enqueue(long_type, {}, max_attempts=1)
    queue.process_jobs({long_type: lambda payload: 1 / 0})  # ZeroDivisionError: division by zero
    queue.enqueue("short", {})
    error = queue.get_job(job_id)["error"]

    out = run(capsys, "list")[1]
    header, *rows = out.splitlines()
    row = next(row for row in rows if row.startswith(job_id))

    assert "CREATED (UTC)" in header and "RUN AT (UTC)" in header
    assert "refresh_the_custome\u2026 failed" in row
    assert len(error) <= 60 and row.endswith(error)  # short enough: whole, no ellipsis
    queue.retry_job(job_id)
    queue.process_jobs({long_type: lambda payload: (_ for _ in ()).throw(
        RuntimeError("the CRM answered 503 Service Unavailable for the third time this hour"))})
    error = queue.get_job(job_id)["error"]
    row = next(row for row in run(capsys, "list")[1].splitlines() if row.startswith(job_id))
    assert len(error) > 60 and row.endswith(f"  {error[:59]}\u2026")
    assert re.search(r"short\s+pending", out)


# --- show ---------------------------------------------------------------------------------------

def test_show_gives_the_job_s_options_attempts_of_its_max_and_its_tracebacks(queue, capsys):
    job_id = queue.enqueue("fail", {"host": "smtp.example.com"}, unique_key="welcome:42",
                           max_attempts=3, timeout=60)
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    code, out, _ = run(capsys, "show", job_id)

    assert code == 0
    assert "attempts    1 of 3\n" in out
    assert "options     unique_key welcome:42, max_attempts 3, timeout 60\n" in out
    assert re.search(r"attempt 1, failed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: RuntimeError: "
                     r"cannot reach smtp.example.com", out)
    assert "jobs_for_cli.py" in out and "    raise RuntimeError(f\"cannot reach" in out

    shown = json.loads(run(capsys, "show", job_id, "--json")[1])
    assert shown["options"] == {"unique_key": "welcome:42", "max_attempts": 3, "timeout": 60}
    assert shown["tracebacks"] == queue.tracebacks(job_id) and len(shown["tracebacks"]) == 1
    assert "jobs_for_cli.py" in shown["tracebacks"][0]["traceback"]


def test_show_says_nothing_of_a_max_the_job_does_not_carry(queue, capsys):
    job_id = queue.enqueue("send_email", {"key": 1})
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    out = run(capsys, "show", job_id)[1]

    assert "attempts    1\n" in out and "options     -\n" in out and "tracebacks\n" not in out
    assert "tracebacks  -\n" in out
    assert json.loads(run(capsys, "show", job_id, "--json")[1])["options"] == {}


def test_job_options_leave_out_the_worker_holding_the_job(queue):
    job_id = queue.enqueue("t", {}, max_attempts=2)
    seen = []

    queue.process_jobs({"t": lambda payload: seen.append(
        (queue.job_options(job_id), b'worker' in queue.path.read_bytes()))})

    assert seen == [({"max_attempts": 2}, True)]
    assert queue.job_options("0123456789abcdef") is None


def test_job_options_are_those_given_at_enqueue_on_every_backend(backend):
    job_id = backend.queue.enqueue("t", {}, max_attempts=5, timeout=30)

    assert backend.queue.job_options(job_id) == {"max_attempts": 5, "timeout": 30}
    assert backend.queue.job_options("0123456789abcdef") is None


@pytest.mark.declares(UNIQUE_KEYS)
def test_job_options_hold_the_unique_key(backend):
    job_id = backend.queue.enqueue("t", {}, unique_key="k")
    assert backend.queue.job_options(job_id) == {"unique_key": "k"}


def test_show_on_redis_gives_options_and_tracebacks(redis_url, capsys, monkeypatch, tmp_path):
    from redis import Redis

    from dbbasic_queue.rq.backend import RQQueue
    url = f"{redis_url.rsplit('/', 1)[0]}/9"  # the command line's default queue name: its own db
    Redis.from_url(url).flushdb()
    monkeypatch.setenv("DBBASIC_QUEUE_URL", url)
    monkeypatch.chdir(tmp_path)
    redis_queue = RQQueue(url)
    job_id = redis_queue.enqueue("t", {}, max_attempts=2)
    redis_queue.process_jobs({"t": lambda payload: {}["subject"]})

    shown = json.loads(run(capsys, "show", job_id, "--json")[1])

    assert shown["options"] == {"max_attempts": 2} and shown["attempts"] == 1
    assert "KeyError: 'subject'" in shown["tracebacks"][0]["traceback"]
    assert "attempts    1 of 2\n" in run(capsys, "show", job_id)[1]


# --- run-now ------------------------------------------------------------------------------------

def test_run_now_makes_a_job_waiting_for_a_retry_due_keeping_its_attempts(queue, capsys):
    job_id = queue.enqueue("fail", {})
    queue.process_jobs(__import__("jobs_for_cli").handlers)
    assert queue.get_job(job_id)["run_at"] > time.time() + 60  # in backoff

    code, out, _ = run(capsys, "run-now", job_id)

    job = queue.get_job(job_id)
    assert (code, out) == (0, f"{job_id} is due now (1 attempt so far, kept)\n")
    assert job["status"] == "pending" and job["attempts"] == 1 and job["run_at"] <= time.time()
    assert queue.process_jobs(__import__("jobs_for_cli").handlers) == 1


def test_run_now_by_type_or_all_takes_every_waiting_job(queue, capsys):
    later = time.time() + 3600
    emails = [queue.enqueue("send_email", {"key": n}, run_at=later) for n in range(2)]
    report = queue.enqueue("report", {}, run_at=later)
    queue.enqueue("send_email", {"key": "due"})  # due already: not counted

    assert run(capsys, "run-now", "--type", "send_email")[:2] == (
        0, "2 waiting jobs of type send_email due now, attempts kept\n")
    assert [queue.get_job(i)["run_at"] <= time.time() for i in emails + [report]] == [True, True, False]
    assert run(capsys, "run-now", "--all")[1] == "1 waiting job due now, attempts kept\n"
    assert queue.get_job(report)["run_at"] <= time.time()


def test_run_now_all_runs_the_waiting_jobs_of_a_type_on_every_backend(backend):
    later = time.time() + 3600
    chosen = backend.queue.enqueue("chosen", {}, run_at=later)
    other = backend.queue.enqueue("other", {}, run_at=later)

    assert backend.queue.run_now_all("chosen") == 1

    assert backend.queue.process_jobs({"chosen": lambda p: "ran", "other": lambda p: "ran"}) == 1
    assert backend.queue.get_job(chosen)["result"] == "ran"
    assert backend.queue.get_job(other)["status"] == "pending"


def test_run_now_refuses_a_running_job_without_force_saying_what_force_risks(queue, capsys):
    job_id = queue.enqueue("send_email", {"key": 1})
    kill_worker_mid_job(queue, lease_seconds=300)
    before = queue.path.read_bytes()

    code, _, err = run(capsys, "run-now", job_id)

    assert code == 1
    one_line_error(err, "processing", "its lease runs until", "--force", "runs twice at once")
    assert queue.path.read_bytes() == before

    code, out, err = run(capsys, "run-now", job_id, "--force")
    job = queue.get_job(job_id)
    assert (code, out) == (0, f"{job_id} is pending, due now (attempt 1 not counted)\n")
    one_line_error(err, "was processing", "runs twice at once")
    assert (job["status"], job["attempts"]) == ("pending", 0)


def test_run_now_refuses_force_for_many_jobs_and_finished_jobs(queue, capsys):
    done = queue.enqueue("send_email", {"key": 1})
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    code, _, err = run(capsys, "run-now", "--all", "--force")
    assert code == 2
    one_line_error(err, "--force goes with one job's id")
    code, _, err = run(capsys, "run-now", done)
    assert code == 1
    one_line_error(err, "completed", "dbbasic-queue retry")
    assert run(capsys, "run-now", "0123456789abcdef")[0] == 1


# --- enqueue ------------------------------------------------------------------------------------

def test_enqueue_with_a_key_a_pending_job_has_prints_that_job_and_says_so(queue, capsys):
    code, out, err = run(capsys, "enqueue", "t", '{"n": 1}', "--unique-key", "k")
    first = out.strip()
    assert code == 0 and err == ""

    code, out, err = run(capsys, "enqueue", "t", '{"n": 2}', "--unique-key", "k")

    assert (code, out) == (0, f"{first}\n")
    one_line_error(err, f"a pending job has this key: {first}", "nothing was added")
    assert sum(1 for _ in queue.jobs()) == 1


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T09:00:00+01:00", datetime(2026, 12, 1, 8, tzinfo=timezone.utc)),
    ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, tzinfo=timezone.utc)),
    ("2026-12-01 08:00:30.500+00:00", datetime(2026, 12, 1, 8, 0, 31, tzinfo=timezone.utc)),
    ("1796112000", datetime(2026, 12, 1, 8, tzinfo=timezone.utc)),
])
def test_at_takes_iso_8601_with_a_zone_or_a_unix_timestamp(queue, capsys, text, expected):
    code, out, _ = run(capsys, "enqueue", "t", "{}", "--at", text)

    assert code == 0 and queue.get_job(out.strip())["run_at"] == expected.timestamp()


def test_at_in_the_past_still_enqueues_and_says_the_job_is_due_now(queue, capsys):
    past = int(time.time()) - 3600

    code, out, err = run(capsys, "enqueue", "t", "{}", "--at", str(past))

    assert code == 0 and queue.get_job(out.strip())["run_at"] == past
    assert err == f"dbbasic-queue: note: --at {utc(past)} UTC is in the past; the job is due now\n"
    assert run(capsys, "enqueue", "t", "{}", "--at", str(past + 7200))[2] == ""


@pytest.mark.parametrize("text, words", [
    ("2026-12-01T09:00:00", ["has no time zone", "2026-12-01T09:00:00+01:00", "Z for UTC"]),
    ("2026-12-01", ["has no time zone"]),
    ("next tuesday", ["is not a time", "ISO 8601", "Unix timestamp"]),
])
def test_at_refuses_a_time_without_a_zone_or_not_a_time(queue, capsys, text, words):
    code, _, err = run(capsys, "enqueue", "t", "{}", "--at", text)

    assert code == 2
    one_line_error(err, "--at", *words)
    assert not queue.path.exists()


# --- the worker ---------------------------------------------------------------------------------

def test_work_says_once_at_start_what_it_runs_and_ends_with_a_plural_right(queue, tmp_path):
    queue.enqueue("send_email", {"key": 1})
    queue.enqueue("fail", {}, max_attempts=1)

    done = cli("work", "--handlers", "jobs_for_cli:handlers", "--retention", "30d",
               "--concurrency", "2", cwd=tmp_path)

    assert done.returncode == 0 and done.stdout == "ran 2 jobs\n", done.stderr
    start = [line for line in done.stderr.splitlines() if "worker on" in line]
    assert len(start) == 1 and " INFO " in start[0]
    assert start[0].endswith(f"dbbasic-queue worker on {queue.path}: 2 handlers (fail, "
                             f"send_email); lease 5m, retention 30d, concurrency 2, max attempts 3")
    assert "failed for good after 1 attempt:" in done.stderr
    assert NO_FILE not in done.stderr

    queue.enqueue("send_email", {"key": 2})
    done = cli("work", "--handlers", "jobs_for_cli:handlers", "--loop", "--max-jobs", "1",
               cwd=tmp_path)
    assert done.stdout == "ran 1 job\n" and "worker (loop) on" in done.stderr


def test_the_cli_s_counts_read_as_english(queue, capsys):
    queue.enqueue("fail", {}, max_attempts=1)
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    assert run(capsys, "retry", "--failed")[1] == "retrying 1 failed job\n"
    assert re.search(r"^file .*queue.tsv \(\d+ B, 1 job\)$", run(capsys, "stats")[1], re.M)
    queue.process_jobs(__import__("jobs_for_cli").handlers, max_attempts=1)
    assert run(capsys, "purge", "--older-than", "0s", "--status", "failed")[1] == "purged 1 job\n"


# --- --handlers -------------------------------------------------------------------------------

@pytest.fixture
def app_modules(tmp_path, monkeypatch):
    """Writes modules into a fresh package in the current directory; forgets them after."""
    package = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)

    def write(name: str, source: str) -> str:
        (tmp_path / package / f"{name}.py").write_text(textwrap.dedent(source))
        return f"{package}.{name}"
    yield write
    for name in [name for name in sys.modules if name.startswith(package)]:
        del sys.modules[name]
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_a_handlers_module_that_raises_on_import_gets_its_error_and_traceback(app_modules, capsys):
    module = app_modules("jobs", """\
        import os
        SMTP_HOST = os.environ["SMTP_HOST_NOT_SET_ANYWHERE"]
        handlers = {}
        """)

    code, _, err = run(capsys, "work", "--handlers", f"{module}:handlers")

    *traceback_lines, last = err.splitlines()
    assert code == 2
    assert traceback_lines[0] == "Traceback (most recent call last):"
    assert any("jobs.py\", line 2, in <module>" in line for line in traceback_lines)
    assert not any("importlib" in line for line in traceback_lines)
    assert last.startswith(f"dbbasic-queue: --handlers: importing '{module}' raised KeyError: "
                           f"'SMTP_HOST_NOT_SET_ANYWHERE'")
    assert "PYTHONPATH" not in err


def test_a_handlers_module_whose_own_import_is_missing_gets_that_error(app_modules, capsys):
    module = app_modules("jobs", "import no_such_dependency_here\nhandlers = {}\n")

    code, _, err = run(capsys, "work", "--handlers", f"{module}:handlers")

    assert code == 2 and "No module named 'no_such_dependency_here'" in err
    assert "PYTHONPATH" not in err and "Traceback" in err


def test_a_handlers_module_that_does_not_exist_keeps_the_path_advice(app_modules, capsys):
    package = app_modules("jobs", "handlers = {}\n").split(".")[0]

    for spec, missing in ((f"{package}.nojobs:handlers", f"{package}.nojobs"),
                          ("nowhere_at_all.jobs:handlers", "nowhere_at_all")):
        code, _, err = run(capsys, "work", "--handlers", spec)
        assert code == 2
        one_line_error(err, f"there is no module '{missing}'", "PYTHONPATH")


def test_a_handlers_name_the_module_lacks_is_said_so_not_nonetype(app_modules, capsys):
    module = app_modules("worker", """\
        def send_email(payload):
            return None

        if __name__ == '__main__':
            handlers = {'send_email': send_email}
        """)

    code, _, err = run(capsys, "work", "--handlers", f"{module}:handlers")

    assert code == 2
    one_line_error(err, f"module '{module}' has no attribute 'handlers'", "top level")
    assert "NoneType" not in err


# --- help ---------------------------------------------------------------------------------------

def subcommands():
    return next(a for a in _parser()._actions if a.choices and a.dest == "name").choices


def test_every_command_and_option_has_help_and_the_exit_codes_are_in_it(capsys):
    for name, command in subcommands().items():
        assert command.description, f"{name} has no description"
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in range(5):
        assert re.search(rf"^  {code}  ", out, re.M), code
    with pytest.raises(SystemExit):
        main(["list", "--help"])
    assert "exit codes: 0 done" in capsys.readouterr().out


def test_an_unknown_log_level_names_the_valid_ones(queue, capsys):
    code, _, err = run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--log-level", "verbose")

    assert code == 2
    one_line_error(err, "'verbose' is not a log level", "DEBUG, INFO, WARNING or ERROR")
    assert run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--log-level", "debug")[0] == 0


# --- extras not installed ---------------------------------------------------------------------

BLOCKER = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, NotInstalled())
"""


def without(*packages) -> str:
    """Python source that makes ``packages`` look not installed, then runs the rest."""
    return BLOCKER.format(blocked=set(packages))


def test_a_redis_url_without_the_rq_extra_names_the_extra_in_the_library(tmp_path):
    code = without("redis", "rq") + textwrap.dedent("""
        import dbbasic_queue
        try:
            dbbasic_queue.enqueue('t', {})
        except dbbasic_queue.QueueError as error:
            print('QueueError:', error)
        """)

    done = cli(cwd=tmp_path, code=code, env={"DBBASIC_QUEUE_URL": "redis://127.0.0.1:1/0"})

    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("QueueError: DBBASIC_QUEUE_URL is set")
    assert "pip install 'dbbasic-queue[rq]'" in done.stdout


def test_a_redis_url_without_the_rq_extra_names_the_extra_at_the_command_line(tmp_path):
    code = without("redis", "rq") + "from dbbasic_queue.cli import main\nsys.exit(main())\n"

    done = cli("stats", cwd=tmp_path, code=code, env={"DBBASIC_QUEUE_URL": "redis://127.0.0.1:1/0"})

    assert done.returncode == 2
    one_line_error(done.stderr, "pip install 'dbbasic-queue[rq]'", "DBBASIC_QUEUE_URL")


def test_enqueue_on_commit_without_django_names_the_fix(tmp_path):
    code = without("django") + textwrap.dedent("""
        import dbbasic_queue
        try:
            dbbasic_queue.enqueue_on_commit('t', {})
        except dbbasic_queue.QueueError as error:
            print('QueueError:', error)
        """)

    done = cli(cwd=tmp_path, code=code)

    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("QueueError: enqueue_on_commit needs Django")
    assert "pip install django" in done.stdout and "enqueue_after" in done.stdout
    assert not (tmp_path / "data").exists()


def test_the_readme_shows_the_options_the_grammar_has():
    section = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    for name, command in subcommands().items():
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help", "--file"):
                    assert option in section, f"README's Command line lacks {name} {option}"
