"""What an operator sees: the worker registry (storage/workers.py), the throughput counts
(storage/throughput.py), ``stats`` (and ``--watch``), ``dbbasic-queue workers`` and
``dbbasic-queue metrics``: real worker processes write their lines; a SIGKILLed loop worker
shows as gone; a cron that stopped is flagged; the metrics parse with Prometheus's own
parser."""

import json
import os
import signal
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dbbasic_queue import Queue
from dbbasic_queue.cli import main
from dbbasic_queue.storage.workers import HEADER, MAX_WORKERS, WorkerRecord, Workers
from support import EMAIL, ROOT, WAIT_SECONDS, noop, wait_for


def test_cron_runs_of_one_host_serving_the_same_share_a_line_whose_counts_add_up(queue, clock):
    # Given two cron runs, a minute apart, of a worker serving send_email
    queue.enqueue("send_email", EMAIL)
    queue.enqueue("send_email", {"fail": True}, max_attempts=1)

    def send_email(payload):
        if payload.get("fail"):
            raise ValueError("no")
    queue.process_jobs({"send_email": send_email})
    clock.advance(60)
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": send_email})
    # Then the registry holds one line for both: its counts added, its interval a minute
    [worker] = queue.workers()
    assert (worker["kind"], worker["serves"], worker["pid"]) == ("cron", "send_email", os.getpid())
    assert (worker["completed"], worker["failed"], worker["retried"]) == (2, 1, 0)
    assert worker["interval"] == 60 and worker["state"] == "alive"
    assert worker["last_seen"] == int(clock()) and worker["started"] == int(clock()) - 60
    # and the file is a table a person reads with cat
    lines = (queue.path.parent / "queue.workers.tsv").read_bytes().splitlines(keepends=True)
    assert lines[0] == HEADER and len(lines) == 2
    # while a worker serving other types, or other queues, has its own line
    queue.process_jobs({"send_email": send_email, "sync_crm": noop}, queues=["emails"])
    assert sorted(w["serves"] for w in queue.workers()) == ["send_email",
                                                           "send_email,sync_crm in emails"]


def test_a_run_with_nothing_due_still_says_it_ran_and_stats_warns_when_cron_stops(queue, clock):
    # Given cron runs every minute with nothing to do (after a first job)
    queue.enqueue("send_email", EMAIL)
    for _ in range(3):
        queue.process_jobs({"send_email": noop})
        clock.advance(60)
    seen = queue.stats()["workers"]
    assert (seen["alive"], seen["seen"], seen["warning"]) == (1, 1, None)
    # When cron stops: no run for more than twice its interval (and a minute's grace)
    clock.advance(180)
    # Then the worker is late, and stats says so in words a person acts on
    [worker] = queue.workers()
    assert worker["state"] == "late"
    warning = queue.stats()["workers"]["warning"]
    assert "no worker has been seen for 4.0m" in warning and "every 1.0m" in warning
    assert "is cron" in warning


def test_a_loop_worker_is_alive_while_it_runs_and_gone_once_sigkilled(tmp_path, children):
    # Given a loop worker in its own process, idle on an empty queue
    path = tmp_path / "data" / "queue.tsv"
    queue = Queue(path)
    queue.enqueue("send_email", {"key": 1})
    worker = children.cli("--file", path, "work", "--loop", "--handlers",
                          "jobs_for_cli:handlers", RUNS_LOG=str(tmp_path / "runs"))
    # Then its line appears once its first run ends, alive, with the job it ran
    wait_for(lambda: [w for w in queue.workers() if w["kind"] == "loop"
                      and w["completed"] == 1], what="the loop worker's line")
    [line] = queue.workers()
    assert (line["pid"], line["state"]) == (worker.pid, "alive")
    # When it is SIGKILLed
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # Then it shows as gone, at once: its process no longer exists
    assert [w["state"] for w in queue.workers()] == ["gone"]
    assert queue.stats()["workers"]["warning"] is not None


def test_the_registry_stays_small_and_drops_workers_not_seen_for_a_week(tmp_path):
    workers = Workers(tmp_path / "queue.tsv")
    for number in range(MAX_WORKERS + 20):
        workers.record(WorkerRecord("loop", "t", 1, started=1000.0 + number), now=2000.0 + number)
    listed = workers.listing(now=3000.0)
    assert len(listed) == MAX_WORKERS  # the least recently seen went first
    assert listed[-1]["last_seen"] == 2020
    workers.record(WorkerRecord("cron", "t", 1, started=1e6), now=2000.0 + 8 * 86400)
    assert [w["kind"] for w in workers.listing(now=2000.0 + 8 * 86400)] == ["cron"]


def test_a_hand_edited_registry_line_is_left_out_and_never_stops_a_worker(queue, clock):
    registry = queue.path.parent / "queue.workers.tsv"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_bytes(HEADER + b"not\ta\tworker\n")
    queue.enqueue("send_email", EMAIL)
    assert queue.process_jobs({"send_email": noop}) == 1
    assert [w["completed"] for w in queue.workers()] == [1]


def test_the_workers_command_lists_them_as_text_and_json(queue, clock, capsys):
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})
    assert main(["--file", str(queue.path), "workers"]) == 0
    out = capsys.readouterr().out
    assert "WORKER" in out and "cron" in out and "send_email" in out
    assert main(["--file", str(queue.path), "workers", "--json"]) == 0
    [worker] = json.loads(capsys.readouterr().out)
    assert worker["completed"] == 1
    assert main(["--file", str(queue.path), "stats"]) == 0
    assert "workers   1 alive, 0 late, 0 gone; the last seen at " in capsys.readouterr().out


def test_metrics_parse_with_prometheus_s_parser_and_escape_every_label(queue, clock, capsys):
    # Given jobs of an awkward type, a failed one, and a worker's counts
    awkward = 'say "hi"\\there'
    queue.enqueue(awkward, EMAIL, queue="emails")
    queue.enqueue("send_email", EMAIL, max_attempts=1)
    queue.process_jobs({"send_email": lambda payload: 1 / 0})
    # When the metrics are printed
    assert main(["--file", str(queue.path), "metrics"]) == 0
    text = capsys.readouterr().out
    # Then Prometheus's parser reads them all, labels unescaped as they were
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families.values() for sample in family.samples}
    assert samples[("dbbasic_queue_type_jobs", (("status", "pending"), ("type", awkward)))] == 1
    assert samples[("dbbasic_queue_queue_jobs", (("queue", "emails"), ("status", "pending")))] == 1
    assert samples[("dbbasic_queue_jobs", (("status", "failed"),))] == 1
    assert samples[("dbbasic_queue_workers", (("state", "alive"),))] == 1
    assert families["dbbasic_queue_worker_jobs"].type == "counter"  # the parser drops _total
    [failed] = [value for (name, labels), value in samples.items()
                if name == "dbbasic_queue_worker_jobs_total" and ("outcome", "failed") in labels]
    assert failed == 1


@pytest.mark.lacks("workers")
def test_metrics_on_a_backend_without_a_registry_leave_out_the_workers_and_the_command_says_why(
        backend, capsys, monkeypatch, tmp_path):
    from dbbasic_queue.metrics import prometheus_text
    backend.queue.enqueue("send_email", EMAIL)
    families = {f.name for f in text_string_to_metric_families(prometheus_text(backend.queue))}
    assert "dbbasic_queue_jobs" in families and "dbbasic_queue_workers" not in families
    # and `workers` there refuses, saying what the backend lacks
    monkeypatch.setenv("DBBASIC_QUEUE_URL", backend.spec.partition("#")[0])
    monkeypatch.chdir(tmp_path)
    assert main(["workers"]) != 0
    assert "workers" in capsys.readouterr().err


def test_the_dashboards_metrics_are_behind_its_credentials_and_parse(queue, clock):
    import base64

    from dbbasic_queue.dashboard import DashboardApp
    from test_dashboard import Client
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})
    app = DashboardApp(queue, credentials=("ops", "pw"))
    assert Client(app, "203.0.113.9").get("/metrics").status == 401
    good = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ops:pw").decode()}
    reply = Client(app, "203.0.113.9", good).get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    assert families["dbbasic_queue_worker_jobs"].samples[0].value == 1


def test_stats_watch_redraws_what_changes_and_quits_cleanly_on_ctrl_c(tmp_path, children):
    # Given a live view of a queue with one job
    path = tmp_path / "data" / "queue.tsv"
    queue = Queue(path)
    queue.enqueue("send_email", EMAIL)
    view = children.start([sys.executable, "-m", "dbbasic_queue", "--file", str(path), "stats",
                           "--watch", "0.1"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames = []

    def frame_with(text):
        line = view.stdout.readline()
        frames.append(line)
        return text in line
    wait_for(lambda: frame_with("pending 1,"), what="a frame with the first job")
    # When a second job is queued while it watches
    queue.enqueue("send_email", EMAIL)
    # Then a later frame shows it, each frame under its own header
    wait_for(lambda: frame_with("pending 2,"), what="a frame with the second job")
    assert sum("dbbasic-queue stats at " in line for line in frames) >= 2
    # and Ctrl-C ends it with exit status 0 and nothing on stderr
    view.send_signal(signal.SIGINT)
    out, err = view.communicate(timeout=WAIT_SECONDS)
    assert view.returncode == 0 and err == ""


def test_throughput_counts_each_minute_s_finished_jobs_once_and_goes_with_retention(
        queue, clock):
    # Given jobs finished in one minute by two runs: two completed, one failed, one to retry
    queue.enqueue("send_email", EMAIL)
    queue.enqueue("send_email", {"fail": True}, max_attempts=1)
    queue.enqueue("send_email", {"fail": True}, max_attempts=2)

    def send_email(payload):
        if payload.get("fail"):
            raise ValueError("no")
    queue.process_jobs({"send_email": send_email})
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": send_email})
    # Then stats counts them in the last minute, hour and day
    expected = {"completed": 2, "failed": 1, "retried": 1}
    assert queue.stats()["throughput"] == {span: expected for span in
                                           ("last_minute", "last_hour", "last_day")}
    # and, as time passes, in the longer spans only
    clock.advance(180)
    totals = queue.stats()["throughput"]
    assert totals["last_minute"] == dict.fromkeys(expected, 0) and totals["last_hour"] == expected
    clock.advance(86400)
    assert queue.stats()["throughput"]["last_day"] == dict.fromkeys(expected, 0)
    # A run with nothing finished adds no line; retention deletes the day's file
    counts_files = list(queue.path.parent.glob("queue.counts.*.tsv"))
    assert len(counts_files) == 1 and len(counts_files[0].read_bytes().splitlines()) == 3
    clock.advance(8 * 86400)
    queue.process_jobs({"sync_crm": noop})  # a run that finishes nothing
    assert list(queue.path.parent.glob("queue.counts.*.tsv")) == []


def test_throughput_by_minute_and_hour_reads_only_what_was_appended_since_it_last_looked(
        queue, clock):
    # Given jobs finished now and two hours ago
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})
    clock.advance(2 * 3600)
    for n in range(3):
        queue.enqueue("send_email", {"n": n})
    queue.process_jobs({"send_email": noop})
    # Then the minutes of the last hour hold the three, the current minute last
    minutes = queue.throughput()
    assert minutes["step"] == 60 and len(minutes["starts"]) == 60
    assert minutes["starts"][-1] <= clock() < minutes["starts"][-1] + 60
    assert minutes["completed"][-1] == 3 and sum(minutes["completed"]) == 3
    # and the hours of a week all four, in their hours
    hours = queue.throughput(step=3600, steps=168)
    assert hours["completed"][-1] == 3 and hours["completed"][-3] == 1
    assert sum(hours["failed"]) == sum(hours["retried"]) == 0
    # When another process appends a line, the queue object (kept, as the dashboard keeps it)
    # reads it; and when the file is replaced whole, it reads the new one from its start
    counts = next(queue.path.parent.glob("queue.counts.*.tsv"))
    minute = int(clock()) // 60 * 60
    with open(counts, "ab") as file:
        file.write(f"{minute}\tother:loop:1\t2\t1\t0\n".encode())
    assert queue.throughput()["completed"][-1] == 5
    assert queue.throughput()["failed"][-1] == 1  # asked again: counted once
    replacement = counts.with_name("replacement")
    replacement.write_bytes(counts.read_bytes().splitlines(keepends=True)[0] +
                            f"{minute}\tw\t7\t0\t0\n".encode())
    os.replace(replacement, counts)
    assert queue.throughput()["completed"][-1] == 7
    # and when it is emptied in place (the same inode) and written again, from its start too
    header = counts.read_bytes().splitlines(keepends=True)[0]
    with open(counts, "r+b") as file:
        file.truncate(len(header))
        file.seek(0, os.SEEK_END)
        file.write(f"{minute}\tw\t4\t0\t0\n{minute}\tw\t6\t0\t0\n".encode())
    assert queue.throughput()["completed"][-1] == 10 == Queue(queue.path, clock=clock).throughput(
        )["completed"][-1]
    # A piece of a line still being appended is not read until it is whole
    with open(counts, "ab") as file:
        file.write(f"{minute}\tw\t1".encode())
    assert queue.throughput()["completed"][-1] == 10
    with open(counts, "ab") as file:
        file.write(b"0\t0\t0\n")
    assert queue.throughput()["completed"][-1] == 20


def test_throughput_asked_from_many_threads_while_lines_are_appended_counts_each_once(
        queue, clock):
    # Given a queue object shared by threads (the dashboard's), and counts being appended
    import threading
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})
    counts = next(queue.path.parent.glob("queue.counts.*.tsv"))
    minute = int(clock()) // 60 * 60
    stop, errors = threading.Event(), []

    def ask():
        try:
            while not stop.is_set():
                queue.throughput()
        except Exception as error:  # a dict changed while read, say
            errors.append(error)
    readers = [threading.Thread(target=ask) for _ in range(6)]
    for reader in readers:
        reader.start()
    for _ in range(300):
        with open(counts, "ab") as file:
            file.write(f"{minute}\tother\t1\t0\t0\n".encode())
        queue.throughput()
    stop.set()
    for reader in readers:
        reader.join(30)
    # Then every line counted once, and no reader failed
    assert errors == []
    assert queue.throughput()["completed"][-1] == 301


@pytest.mark.parametrize("step, steps", [(0, 60), (30, 60), (61, 10), (60.0, 60), (60, 0),
                                          (60, 10_001), ("60", 60)])
def test_throughput_refuses_a_span_that_is_no_whole_minutes(queue, step, steps):
    with pytest.raises(ValueError, match="step|steps"):
        queue.throughput(step, steps)


def test_the_dashboards_workers_page_lists_them_escaped_with_their_state(queue, clock):
    from dbbasic_queue.dashboard import DashboardApp
    from test_dashboard import Client
    client = Client(DashboardApp(queue))
    assert "No worker seen yet" in client.get("/workers").text
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop, "<b>x</b>": noop})
    page = client.get("/workers").text
    assert "status-alive" in page and "Every worker seen" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    clock.advance(3600)
    assert "status-late" in client.get("/workers").text
    assert "is cron, or the loop worker, still running?" in client.get("/workers").text


@pytest.mark.parametrize("planted", ["fifo", "directory", "no day"])
def test_a_planted_or_misnamed_dated_file_never_stops_a_run_nor_the_views(queue, clock, planted):
    # Given old counts and tracebacks names that are a FIFO, a directory, or no day
    data = queue.path.parent
    data.mkdir(parents=True)
    for kind in ("counts.", "tracebacks."):
        path = data / f"queue.{kind}{'2026-13-40' if planted == 'no day' else '2020-01-01'}.tsv"
        if planted == "fifo":
            os.mkfifo(path)
        elif planted == "directory":
            path.mkdir()
        else:
            path.write_bytes(b"x\n")
    # Then a run with retention still runs its job, and stats and metrics answer
    queue.enqueue("send_email", EMAIL)
    assert queue.process_jobs({"send_email": noop}) == 1
    assert queue.stats()["throughput"]["last_minute"]["completed"] == 1
    from dbbasic_queue.metrics import prometheus_text
    assert "dbbasic_queue_jobs" in prometheus_text(queue)
    # and an archive name planted so: the run still runs its job (stats and get_job say
    # what is wrong with that file, as for any archive file)
    archive = data / "queue.2020-01-01.tsv"
    os.mkfifo(archive) if planted == "fifo" else archive.mkdir() if planted == "directory" \
        else (data / "queue.2026-13-40.tsv").write_bytes(b"x\n")
    queue.enqueue("send_email", EMAIL)
    assert queue.process_jobs({"send_email": noop}) == 1


def test_a_fifo_planted_as_the_registry_is_not_waited_on_and_a_run_goes_on(tmp_path):
    # Given a FIFO where the worker registry should be
    path = tmp_path / "data" / "queue.tsv"
    queue = Queue(path)
    queue.enqueue("send_email", EMAIL)
    os.mkfifo(tmp_path / "data" / "queue.workers.tsv")
    # Then the run completes its job, and the views answer at once: no registry there
    assert queue.process_jobs({"send_email": noop}) == 1
    for command in (["workers"], ["stats"], ["metrics"]):
        done = subprocess.run([sys.executable, "-m", "dbbasic_queue", "--file", str(path),
                               *command], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              capture_output=True, text=True, timeout=WAIT_SECONDS)
        assert done.returncode == 0, (command, done.stderr)
    assert queue.workers() == []


def test_hand_edited_registry_and_counts_lines_are_left_out_and_shown_escaped(queue, clock, capsys):
    queue.enqueue("send_email", EMAIL)
    queue.process_jobs({"send_email": noop})
    registry = queue.path.parent / "queue.workers.tsv"
    [line] = registry.read_bytes().splitlines()[1:]
    fields = line.split(b"\t")
    evil = b"\t".join(fields[:2] + [b"18446744073709551616"] + fields[3:])  # no pid
    odd = b"\t".join([b"odd"] + fields[1:3] + [b"lo\x1b[2Jop"] + fields[4:])
    registry.write_bytes(registry.read_bytes() + evil + b"\n" + odd + b"\n")
    counts = next(queue.path.parent.glob("queue.counts.*.tsv"))
    minute = counts.read_bytes().splitlines()[1].split(b"\t")[0]
    counts.write_bytes(counts.read_bytes() + minute + b"\tx\t-5\t0\t0\n")
    assert sorted(w["worker"] for w in queue.workers()) == sorted([fields[0].decode(), "odd"])
    assert queue.stats()["throughput"]["last_minute"]["completed"] == 1  # -5 left out
    assert main(["--file", str(queue.path), "workers"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "lo\\x1b[2Jop" in out


def test_metrics_replace_control_characters_in_labels(queue, clock, capsys):
    queue.enqueue("t\x1b]0;pwned\x07", EMAIL)
    assert main(["--file", str(queue.path), "metrics"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert any(sample.labels.get("type") == "t\ufffd]0;pwned\ufffd"
               for family in text_string_to_metric_families(out) for sample in family.samples)


@pytest.mark.parametrize("period", ["0.01", "999999999"])
def test_stats_watch_refuses_a_period_beyond_its_bounds(queue, capsys, period):
    queue.enqueue("send_email", EMAIL)
    assert main(["--file", str(queue.path), "stats", "--watch", period]) == 2
    assert "--watch takes a period from 0.1 s to 3600 s" in capsys.readouterr().err


def test_cron_runs_at_once_lose_no_count_in_the_registry_nor_in_the_throughput(tmp_path,
                                                                             children):
    # Given 200 jobs and four cron runs of one host serving the same, started together
    path = tmp_path / "data" / "queue.tsv"
    queue = Queue(path)
    queue.enqueue_many([("send_email", {"key": n}) for n in range(200)])
    runs = [children.cli("--file", path, "work", "--handlers", "jobs_for_cli:handlers",
                         RUNS_LOG=str(tmp_path / "runs")) for _ in range(4)]
    for run in runs:
        run.communicate(timeout=WAIT_SECONDS)
        assert run.returncode == 0
    # Then their one shared line counts every job once, and so do the minutes' counts
    [worker] = queue.workers()
    assert (worker["completed"], worker["failed"], worker["retried"]) == (200, 0, 0)
    assert queue.stats()["throughput"]["last_hour"]["completed"] == 200
