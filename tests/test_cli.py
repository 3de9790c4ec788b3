"""The command line: every command's output, --json shape, exit codes and messages."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.cli import _parser, main
from support import ROOT, TESTS


@pytest.fixture
def queue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBBASIC_QUEUE_FILE", raising=False)
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("RUNS_LOG", str(tmp_path / "runs.log"))
    return Queue(tmp_path / "data" / "queue.tsv")


def run(capsys, *args):
    """Run the command line in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, *words):
    assert err.count("\n") == 1 and err.startswith("dbbasic-queue: ") and "Traceback" not in err
    for word in words:
        assert word in err


def test_enqueue_prints_the_id_of_a_job_due_now_or_later(queue, capsys):
    code, out, _ = run(capsys, "enqueue", "send_email", '{"key": "a"}')
    assert code == 0 and queue.get_job(out.strip())["payload"] == {"key": "a"}

    _, out, _ = run(capsys, "enqueue", "send_email", '{"key": "b"}', "--in", "10m")
    job = queue.get_job(out.strip())
    assert job["run_at"] - job["created_at"] in (600, 601)
    _, out, _ = run(capsys, "enqueue", "send_email", "{}", "--at", "2000000000")
    assert queue.get_job(out.strip())["run_at"] == 2000000000


@pytest.mark.parametrize("args, words", [
    (["enqueue", "t", "{bad"], ["not valid JSON"]),
    (["enqueue", "t", "[1, 2]"], ["JSON object"]),
    (["enqueue", "bad\ttype", "{}"], ["job_type"]),
    (["enqueue", "t", "{}", "--in", "soon"], ["not a duration", "10m"]),
    (["list", "--status", "done"], ["invalid choice", "pending"]),
    (["list", "--limit", "0"], ["--limit"]),
    (["purge", "--older-than", "7d", "--status", "pending"], ["finished statuses"]),
    (["work", "--handlers", "no_such_module:handlers"], ["cannot import", "no_such_module"]),
    (["work", "--handlers", "jobs_for_cli"], ["module:name"]),
    (["work", "--handlers", "jobs_for_cli:send_email"], ["not a dict"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--retention", "forever"], ["--retention"]),
    (["retry"], ["one of the arguments"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_mistakes_give_one_line_and_exit_2_and_change_nothing(queue, capsys, args, words):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    code, _, err = run(capsys, *args)

    assert code == 2
    assert_one_line_error(err, *words)
    assert queue.path.read_bytes() == before


def test_unknown_ids_exit_1(queue, capsys):
    queue.enqueue("t", {})
    for command in ("show", "cancel", "retry"):
        code, _, err = run(capsys, command, "0123456789abcdef")
        assert code == 1
        assert_one_line_error(err, "no job '0123456789abcdef'")


def test_cancel_a_pending_job_and_refuse_a_finished_one(queue, capsys):
    pending = queue.enqueue("send_email", {"key": "p"}, run_at=queue.clock() + 60)
    done = queue.enqueue("send_email", {"key": "d"})
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    assert run(capsys, "cancel", pending)[:2] == (0, f"cancelled {pending}\n")
    code, _, err = run(capsys, "cancel", done)
    assert code == 1
    assert_one_line_error(err, "completed", "only pending")
    assert queue.get_job(pending)["status"] == "cancelled"


def test_delete_removes_a_job_wherever_it_is_and_an_unknown_id_exits_1(queue, capsys):
    pending = queue.enqueue("send_email", {"key": "p"}, run_at=queue.clock() + 60)
    done = queue.enqueue("send_email", {"key": "d"})
    queue.process_jobs(__import__("jobs_for_cli").handlers)
    queue.enqueue("send_email", {"key": "e"})
    queue.process_jobs(__import__("jobs_for_cli").handlers)  # done's line moves to its archive
    assert queue.archive.find(done.encode() + b"\t") is not None

    assert run(capsys, "delete", pending)[:2] == (0, f"deleted {pending}\n")
    assert run(capsys, "delete", done)[:2] == (0, f"deleted {done}\n")
    assert queue.get_job(pending) is None and queue.get_job(done) is None
    code, _, err = run(capsys, "delete", done)
    assert code == 1
    assert_one_line_error(err, done)


def test_work_runs_the_due_jobs_with_handlers_from_a_module_or_a_registry(queue, capsys, tmp_path):
    ids = [queue.enqueue("send_email", {"key": n}) for n in range(3)]

    code, out, _ = run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--max-jobs", "2")
    assert (code, out) == (0, "ran 2 jobs\n")
    code, out, _ = run(capsys, "work", "--handlers", "jobs_for_cli:registry")
    assert (code, out) == (0, "ran 1 job\n")
    assert [queue.get_job(i)["result"] for i in ids] == [{"sent": n} for n in range(3)]


def test_retry_puts_a_failed_job_back_with_fresh_attempts(queue, capsys):
    failed = queue.enqueue("fail", {"host": "smtp.example.com"})
    run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--max-attempts", "1")
    assert queue.get_job(failed)["status"] == "failed"

    assert run(capsys, "retry", failed)[:2] == (0, f"retrying {failed}\n")
    job = queue.get_job(failed)
    assert (job["status"], job["attempts"]) == ("pending", 0)
    assert job["error"] == "RuntimeError: cannot reach smtp.example.com"
    code, _, err = run(capsys, "retry", failed)
    assert code == 1
    assert_one_line_error(err, "pending", "only failed or cancelled")


def test_retry_failed_by_type(queue, capsys):
    kept = queue.enqueue("send_email", {"key": "x"})
    for _ in range(2):
        queue.enqueue("fail", {})
    queue.process_jobs({"fail": lambda p: 1 / 0, "send_email": lambda p: 1 / 0}, max_attempts=1)

    assert run(capsys, "retry", "--failed", "--type", "fail")[1] == "retrying 2 failed jobs\n"
    assert queue.get_job(kept)["status"] == "failed"
    assert run(capsys, "retry", "--failed")[1] == "retrying 1 failed job\n"


def test_purge_removes_old_finished_jobs_and_says_how_many(queue, capsys):
    done, failed = queue.enqueue("send_email", {"key": 1}), queue.enqueue("fail", {})
    waiting = queue.enqueue("send_email", {"key": 2}, run_at=queue.clock() + 3600)
    run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--max-attempts", "1")

    assert run(capsys, "purge", "--older-than", "7d")[:2] == (0, "purged 0 jobs\n")
    assert run(capsys, "purge", "--older-than", "0s")[:2] == (0, "purged 1 job\n")
    assert queue.get_job(done) is None and queue.get_job(failed)["status"] == "failed"
    assert run(capsys, "purge", "--older-than", "0", "--status", "failed,cancelled")[1] == \
        "purged 1 job\n"
    assert queue.get_job(waiting)["status"] == "pending"


def test_stats_counts_statuses_and_types_with_latency_and_next_run(queue, capsys):
    failing = {"fail": lambda p: 1 / 0}
    queue.enqueue("fail", {})
    queue.process_jobs(failing, max_attempts=1)  # failed for good
    queue.enqueue("fail", {})
    queue.process_jobs(failing, max_attempts=3)  # failed once: pending, retried in ~2 min
    queue.enqueue("send_email", {"key": 1}, run_at=queue.clock() - 30)  # waiting for 30 s
    queue.enqueue("send_email", {"key": 2}, run_at=2_000_000_000)

    code, out, _ = run(capsys, "stats", "--json")
    stats = json.loads(out)
    assert code == 0
    assert stats["by_status"] == {"pending": 3, "processing": 0, "completed": 0, "failed": 1,
                                  "cancelled": 0}
    assert stats["by_type"]["send_email"]["pending"] == 2 and stats["by_type"]["fail"]["failed"] == 1
    assert stats["jobs"] == 4 and stats["failed_last_hour"] == 1 and stats["retrying"] == 1
    assert 29 <= stats["oldest_due_seconds"] < 40
    assert 60 < stats["next_run_at"] - queue.clock() <= 121
    assert stats["size_bytes"] == queue.path.stat().st_size and stats["corrupt_lines"] == 0

    code, out, _ = run(capsys, "stats")
    assert code == 0 and "pending 3" in out and "failed 1" in out and "oldest due job" in out
    assert re.search(r"send_email\s+2\s+0\s+0\s+0\s+0", out)


def test_list_shows_newest_first_with_filters_and_a_limit(queue, capsys):
    ids = []
    for n in range(5):
        ids.append(queue.enqueue("send_email" if n % 2 else "fail", {"key": n}))
        queue.clock = (lambda t: (lambda: t))(queue.clock() + 1)  # one second apart

    code, out, _ = run(capsys, "list", "--json")
    assert code == 0 and [job["id"] for job in json.loads(out)] == ids[::-1]
    assert set(json.loads(out)[0]) == {"id", "type", "payload", "status", "created_at", "run_at",
                                       "attempts", "error", "result"}
    _, out, _ = run(capsys, "list", "--type", "send_email", "--limit", "1", "--json")
    assert [job["id"] for job in json.loads(out)] == [ids[3]]
    _, out, _ = run(capsys, "list", "--status", "completed", "--json")
    assert json.loads(out) == []
    _, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "TYPE", "STATUS"] and len(lines) == 6
    assert lines[1].startswith(ids[4])


def test_show_prints_the_whole_job(queue, capsys):
    job_id = queue.enqueue("fail", {"host": "smtp.example.com", "note": "é"})
    queue.process_jobs(__import__("jobs_for_cli").handlers)

    code, out, _ = run(capsys, "show", job_id)
    assert code == 0
    assert f"id          {job_id}" in out and "status      pending" in out
    assert "error       RuntimeError: cannot reach smtp.example.com" in out
    assert '"host": "smtp.example.com",' in out and '"note": "é"' in out
    _, out, _ = run(capsys, "show", job_id, "--json")
    shown = json.loads(out)
    assert {key: shown[key] for key in queue.get_job(job_id)} == queue.get_job(job_id)


def test_show_says_what_a_waiting_job_waits_for_and_a_batch_how_far_it_got(queue, capsys):
    first = queue.enqueue("send_email", {"key": 1})
    waiting = queue.enqueue("send_email", {"key": 2}, depends_on=first)
    with queue.batch(on_complete=("send_email", {"key": "album"})) as batch:
        for n in range(3):
            batch.enqueue("fail" if n == 0 else "t", {"key": n}, max_attempts=1)
    assert f"waiting     for 1 job: {first}" in run(capsys, "show", waiting)[1]
    queue.process_jobs({"fail": __import__("jobs_for_cli").handlers["fail"]})
    out = run(capsys, "show", batch.id)[1]
    assert "waiting     for its batch: 1 of 3 finished (0 completed, 1 failed, 0 cancelled)" in out
    assert not [line for line in run(capsys, "show", first)[1].splitlines()
                if line.startswith("waiting ")]


def test_the_file_option_and_the_environment_choose_the_queue(queue, capsys, tmp_path, monkeypatch):
    other = tmp_path / "other" / "jobs.tsv"
    _, out, _ = run(capsys, "--file", str(other), "enqueue", "t", "{}")
    assert Queue(other).get_job(out.strip()) is not None
    monkeypatch.setenv("DBBASIC_QUEUE_FILE", str(other))
    assert json.loads(run(capsys, "stats", "--json")[1])["jobs"] == 1


def test_the_console_script_and_python_m_both_run(queue, tmp_path):
    for command in ([sys.executable, "-m", "dbbasic_queue"],
                    [str(Path(sys.executable).with_name("dbbasic-queue"))]):
        done = subprocess.run([*command, "stats", "--json"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout)["jobs"] == 0


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    subparsers = next(a for a in _parser()._actions if a.dest == "==SUPPRESS==" or a.choices)
    for command in subparsers.choices:
        assert f"dbbasic-queue {command}" in readme, f"README does not show `dbbasic-queue {command}`"


def test_enqueue_takes_job_options_and_work_a_timeout(queue, capsys):
    first = run(capsys, "enqueue", "send_email", '{"key": 1, "sleep": 30}', "--unique-key", "k",
                "--max-attempts", "1")[1].strip()
    assert run(capsys, "enqueue", "send_email", '{"key": 1}', "--unique-key", "k")[1].strip() == first

    assert run(capsys, "work", "--handlers", "jobs_for_cli:handlers", "--timeout", "0.2")[0] == 0
    job = queue.get_job(first)
    assert (job["status"], job["error"]) == ("failed", "timed out after 0.2 s")
    code, _, err = run(capsys, "enqueue", "t", "{}", "--max-attempts", "0")
    assert code == 2
    assert_one_line_error(err, "max_attempts")
