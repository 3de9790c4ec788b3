"""The published 1.0.0 usage keeps working: module functions, default path, Quick Start."""

import os
import subprocess
import sys
from pathlib import Path

import dbbasic_queue
from dbbasic_queue import Queue, cancel_job, enqueue, get_job, process_jobs
from support import ROOT, TESTS

PUBLISHED = TESTS / "published"


def run_script(script: Path, cwd: Path, prefix: str = "") -> None:
    code = prefix + script.read_text()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DBBASIC_QUEUE_FILE", None)
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, timeout=60)


def test_the_published_quick_start_runs_word_for_word(tmp_path):
    run_script(PUBLISHED / "quickstart_enqueue.py", tmp_path)
    queue = Queue(tmp_path / "data" / "queue.tsv")
    [(_, line)] = list(queue.table.lines())
    job_id = line.split(b"\t")[0].decode()

    run_script(PUBLISHED / "quickstart_worker.py", tmp_path)
    job = queue.get_job(job_id)  # 1.0.0's snippet forgot `import time`: a retried error
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert job["error"] == "NameError: name 'time' is not defined"

    queue.cancel_job(job_id)
    run_script(PUBLISHED / "quickstart_enqueue.py", tmp_path)
    run_script(PUBLISHED / "quickstart_worker.py", tmp_path, prefix="import time\n")
    jobs = {job["status"]: job for job in queue.jobs()}  # the live file's and the archive's
    assert sorted(jobs) == ["cancelled", "completed"]
    assert isinstance(jobs["completed"]["result"]["sent_at"], float)


def test_the_module_functions_use_data_queue_tsv_in_the_current_directory_at_each_call(
        tmp_path, monkeypatch):
    monkeypatch.delenv("DBBASIC_QUEUE_FILE", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    monkeypatch.chdir(tmp_path / "a")
    in_a = enqueue("t", {"where": "a"})
    monkeypatch.chdir(tmp_path / "b")
    in_b = enqueue("t", {"where": "b"})

    assert get_job(in_a) is None and get_job(in_b)["payload"] == {"where": "b"}
    assert process_jobs({"t": lambda p: p["where"]}) == 1
    monkeypatch.chdir(tmp_path / "a")
    assert get_job(in_a)["status"] == "pending" and cancel_job(in_a) is True
    assert (tmp_path / "a" / "data" / "queue.tsv").exists()


def test_dbbasic_queue_file_overrides_the_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBBASIC_QUEUE_FILE", str(tmp_path / "elsewhere" / "jobs.tsv"))

    job_id = enqueue("t", {})

    assert dbbasic_queue.default_queue().path == tmp_path / "elsewhere" / "jobs.tsv"
    assert Queue(tmp_path / "elsewhere" / "jobs.tsv").get_job(job_id)["status"] == "pending"
    assert not (tmp_path / "data").exists()


def test_several_queues_on_several_files_work_side_by_side(tmp_path):
    emails, reports = Queue(tmp_path / "emails.tsv"), Queue(tmp_path / "reports.tsv")
    email, report = emails.enqueue("send", {}), reports.enqueue("build", {})

    assert emails.process_jobs({"send": lambda p: "sent"}) == 1
    assert emails.get_job(report) is None and reports.get_job(report)["status"] == "pending"
    assert reports.process_jobs({"build": lambda p: "built"}) == 1
    assert (emails.get_job(email)["result"], reports.get_job(report)["result"]) == ("sent", "built")


def test_the_package_exports_the_published_functions_and_its_own_names():
    assert {"enqueue", "process_jobs", "get_job", "cancel_job", "Queue", "QueueError",
            "CorruptLineError", "__version__"} <= set(dbbasic_queue.__all__)
    for name in dbbasic_queue.__all__:
        assert hasattr(dbbasic_queue, name)


def test_ci_runs_the_test_command_the_readme_starts_with():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.split("```bash", 1)[1].split("```", 1)[0].splitlines()
                if line and not line.startswith("#")]
    assert len(commands) == 2 and "examples/demo.py" in commands[0]
    assert "pytest" in commands[1] and commands[1] in ci


def test_the_example_worker_serves_cron_and_the_handlers_option_of_the_systemd_unit(tmp_path):
    # The systemd unit names workers.queue_worker:handlers: the module must define it at import
    unit = (ROOT / "examples" / "dbbasic-queue-worker.service").read_text()
    assert "--handlers workers.queue_worker:handlers" in unit
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "queue_worker.py").write_text(
        (ROOT / "examples" / "queue_worker.py").read_text())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    enqueue = [sys.executable, "-c", "from dbbasic_queue import enqueue; "
               "enqueue('send_email', {'to': 'a@example.com', 'subject': 'Hi', 'body': ''})"]
    for worker in ([sys.executable, "workers/queue_worker.py"],
                   [sys.executable, "-m", "dbbasic_queue", "work",
                    "--handlers", "workers.queue_worker:handlers"]):
        subprocess.run(enqueue, cwd=tmp_path, env=env, check=True, timeout=60)
        done = subprocess.run(worker, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "ran 1 job" in done.stderr + done.stdout
    assert sum(path.read_text().count("\tcompleted\t")  # the queue file and its archive
               for path in (tmp_path / "data").glob("queue*.tsv")) == 2


def test_the_constraint_files_ci_tests_are_the_ends_of_the_declared_ranges():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"dbbasic-tsv>=1.0.2,<2"' in pyproject and '"rq>=2.6,<3", "redis>=5,<9"' in pyproject
    def pins(name):
        text = (TESTS / "constraints" / f"{name}.txt").read_text()
        return dict(line.split("==") for line in text.splitlines() if "==" in line)
    assert pins("lower") == {"rq": "2.6.0", "redis": "5.0.0", "dbbasic-tsv": "1.0.2"}
    upper = pins("upper")
    assert upper["rq"].startswith("2.") and upper["redis"].startswith("8.")
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'tests/constraints/$bound.txt' in ci and "for bound in lower upper" in ci
