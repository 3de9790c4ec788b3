"""Archive files: finished jobs leave queue.tsv an hour after they finish, for a file of their
day that retention deletes whole; every job stays findable (get_job, jobs, stats, grep)."""

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dbbasic_queue import Queue
from dbbasic_queue.storage.archive import ARCHIVE_MIN_LINES
from dbbasic_queue.storage.history import day_of
from dbbasic_queue.model.job import COLUMNS, PUBLISHED_COLUMNS, job_line, parse_line
from support import ROOT, finish, kill, runs, wait_for

NOW = 1_800_000_000  # 2027-01-15 08:00 UTC


def finished_lines(count, finished_at, status="completed", columns=len(COLUMNS), start=0):
    """``count`` lines of jobs finished at ``finished_at``, as a worker writes them."""
    lines = []
    for n in range(start, start + count):
        line = job_line(f"{n:016x}", "send_email", '{"n": %d}' % n, status, finished_at - 5,
                        finished_at, 1, "", '"ok"')
        lines.append(line if columns == len(COLUMNS) else line.rsplit(b"\t", 1)[0] + b"\n")
    return b"".join(lines)


def ids_in(path: Path):
    return [line.split(b"\t", 1)[0].decode() for line in path.read_bytes().splitlines()[1:]]


def test_a_finished_job_stays_in_the_queue_file_for_an_hour_then_moves_to_its_day(tmp_path, clock):
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    done = queue.enqueue("t", {"n": 1})
    queue.process_jobs({"t": lambda payload: {"sent": True}})
    # Right after the run: in queue.tsv with its result, as 1.0.0's users expect
    assert done in ids_in(queue.path)
    clock.advance(3601)
    # An hour later, the next rewrite done anyway (a new job's run) moves it
    queue.enqueue("t", {"n": 2})
    queue.process_jobs({"t": lambda payload: {"sent": True}})
    archive = tmp_path / f"queue.{day_of(int(clock() - 3601))}.tsv"
    assert done not in ids_in(queue.path) and ids_in(archive) == [done]
    assert archive.read_bytes().startswith(b"\t".join(c.encode() for c in COLUMNS) + b"\n")
    job = queue.get_job(done)
    assert (job["status"], job["result"]) == ("completed", {"sent": True})
    # One grep over the documented glob finds its one line
    grep = subprocess.run(f"grep -h {done} queue*.tsv", shell=True, cwd=tmp_path,
                          capture_output=True, text=True)
    assert len(grep.stdout.splitlines()) == 1


def test_the_last_results_of_a_queue_that_went_quiet_still_go_at_retention(tmp_path, clock):
    # Given a run's last results, left in queue.tsv for a next rewrite that never comes
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    done = queue.enqueue("t", {"n": 1})
    queue.process_jobs({"t": lambda payload: "sent"})
    assert done in ids_in(queue.path)
    # When cron runs with nothing due: within retention it writes nothing
    before = os.stat(queue.path)
    clock.advance(6 * 86400)
    queue.process_jobs({"t": lambda payload: "sent"})
    assert os.stat(queue.path).st_ino == before.st_ino
    # Then past retention its run drops them, as it drops archive files
    clock.advance(2 * 86400)
    queue.process_jobs({"t": lambda payload: "sent"})
    assert ids_in(queue.path) == [] and queue.get_job(done) is None


def test_a_1_0_0_file_full_of_history_is_taken_over_by_the_first_run(tmp_path, clock):
    # Given a 1.0.0 file (nine columns): a week of completed jobs and one pending job
    path = tmp_path / "queue.tsv"
    week = b"".join(finished_lines(500, int(clock()) - day * 86400, columns=9, start=day * 500)
                    for day in range(1, 8))
    pending = job_line("a" * 16, "send_email", "{}", "pending", int(clock()), int(clock()) + 3600,
                       0).rsplit(b"\t", 1)[0] + b"\n"
    path.write_bytes(("\t".join(PUBLISHED_COLUMNS) + "\n").encode() + week + pending)
    queue = Queue(path, clock=clock)
    # When the first worker run finds nothing due
    assert queue.process_jobs({"send_email": lambda payload: None}, retention_seconds=None) == 0
    # Then the history went to one file per day, and queue.tsv holds what workers look at
    assert ids_in(path) == ["a" * 16]
    assert len(queue.archive.files()) == 7
    assert sum(len(ids_in(p)) for _, p in queue.archive.files()) == 3500
    assert queue.get_job(f"{700:016x}")["status"] == "completed"
    assert queue.stats()["by_status"]["completed"] == 3500
    # and dbbasic-tsv reads an archive file as a table
    from dbbasic.tsv import TSV
    day, archive = queue.archive.files()[0]
    rows = list(TSV(archive.stem, list(COLUMNS), data_dir=tmp_path).all())
    assert len(rows) == 500 and rows[0]["status"] == "completed"


def test_fewer_old_lines_than_a_batch_wait_for_a_rewrite_done_anyway(tmp_path, clock):
    path = tmp_path / "queue.tsv"
    Queue(path).enqueue("t", {})  # creates the file
    Queue(path).update_each(lambda job: job.evolve(status="completed", run_at=0) or None)
    with open(path, "ab") as file:
        file.write(finished_lines(10, int(clock()) - 7200))
    before = path.read_bytes()
    Queue(path, clock=clock).process_jobs({}, retention_seconds=None)
    assert path.read_bytes() == before  # nothing due, too little to move: no rewrite
    assert ARCHIVE_MIN_LINES > 10


def test_retention_deletes_whole_archive_files_and_nothing_younger(tmp_path, clock):
    path = tmp_path / "queue.tsv"
    lines = b"".join(finished_lines(ARCHIVE_MIN_LINES, int(clock()) - days * 86400, start=days * 10**4)
                     for days in (2, 9, 10))
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() + lines)
    queue = Queue(path, clock=clock)
    queue.process_jobs({}, retention_seconds=None)
    assert len(queue.archive.files()) == 3
    queue.process_jobs({}, retention_seconds=7 * 86400)
    assert [day for day, _ in queue.archive.files()] == [day_of(int(clock()) - 2 * 86400)]


def test_jobs_stats_and_purge_cover_the_archive_files(tmp_path, clock):
    path = tmp_path / "queue.tsv"
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() +
                     finished_lines(ARCHIVE_MIN_LINES, int(clock()) - 3 * 86400) +
                     finished_lines(5, int(clock()) - 3 * 86400, "cancelled", start=10**5))
    queue = Queue(path, clock=clock)
    queue.process_jobs({}, retention_seconds=None)
    assert ids_in(path) == []
    stats = queue.stats()
    assert stats["by_status"]["completed"] == ARCHIVE_MIN_LINES
    assert stats["by_status"]["cancelled"] == 5 and stats["archived"]["files"] == 1
    assert stats["by_type"]["send_email"]["completed"] == ARCHIVE_MIN_LINES
    assert sum(1 for _ in queue.jobs()) == ARCHIVE_MIN_LINES + 5
    assert queue.purge(2 * 86400, statuses=["cancelled"]) == 5
    assert queue.purge(2 * 86400) == ARCHIVE_MIN_LINES
    assert queue.archive.files() == [] and list(queue.jobs()) == []


def test_retrying_an_archived_job_brings_it_back_once(tmp_path, clock):
    path = tmp_path / "queue.tsv"
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() +
                     finished_lines(ARCHIVE_MIN_LINES, int(clock()) - 86400, "cancelled"))
    queue = Queue(path, clock=clock)
    queue.process_jobs({}, retention_seconds=None)
    job_id = f"{3:016x}"
    assert queue.get_job(job_id)["status"] == "cancelled"
    assert queue.retry_job(job_id) is True
    assert queue.get_job(job_id)["status"] == "pending" and ids_in(path) == [job_id]
    assert [j["id"] for j in queue.jobs()].count(job_id) == 1
    assert queue.process_jobs({"send_email": lambda payload: "again"}) == 1
    assert queue.get_job(job_id)["result"] == "again"


def test_a_move_cut_between_its_archive_append_and_its_rename_duplicates_nothing(tmp_path, clock):
    # Given the state a worker killed in that window leaves: the lines both in the archive
    # file and still in queue.tsv
    path = tmp_path / "queue.tsv"
    old = finished_lines(ARCHIVE_MIN_LINES, int(clock()) - 86400)
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() + old)
    archive = tmp_path / f"queue.{day_of(int(clock()) - 86400)}.tsv"
    lines = old.splitlines(keepends=True)
    cut = lines[500][:30]  # the next line, cut short (a full disk, a kill mid-write)
    archive.write_bytes(("\t".join(COLUMNS) + "\n").encode() + b"".join(lines[:500]) + cut)
    # When the next worker moves them
    Queue(path, clock=clock).process_jobs({}, retention_seconds=None)
    # Then each job is in the archive file once, whole, and the cut line is gone
    content = archive.read_bytes().splitlines(keepends=True)[1:]
    assert sorted(content) == sorted(lines) and ids_in(path) == []


def test_a_worker_killed_before_the_rename_recording_a_result_archives_the_job_once(
        tmp_path, children):
    # Given a worker killed while its rewrite recording a job's result waits for the lock,
    # the new file written and fsynced, only its rename to come
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": "a", "sleep": 0.3})
    runs_log = tmp_path / "runs.log"
    worker = children.role("work", queue.path, runs_log)
    wait_for(lambda: runs(runs_log)["a"] == 1, what="the handler to start")

    def recording_rewrite():
        return any(b"\tcompleted\t" in temp.read_bytes()
                   for temp in queue.path.parent.glob(".dbbasic-queue-*.tmp"))
    with queue.table.lock():
        wait_for(recording_rewrite, what="the rewrite recording the result (its completed line in the new file)")
        kill(worker)
    # Then no archive file holds the result the queue file never recorded
    assert queue.get_job(job_id)["status"] == "processing"
    assert list(queue.archive.lines()) == []
    # and the job, run again, is archived once, with that run's result, by the rewrite after
    # the one recording it
    finish(children.role("work", queue.path, runs_log))
    queue.enqueue("send_email", {"key": "b"})
    finish(children.role("work", queue.path, runs_log))
    archived = [parse_line(line) for _, _, line in queue.archive.lines()]
    assert [(job.id, job.attempts) for job in archived] == [(job_id, 2)]
    assert runs(runs_log)["a"] == 2


def whole_lines(path: Path):
    """The job lines of a file that end with a newline: a line cut short by a kill is none."""
    return [line for line in path.read_bytes().splitlines(keepends=True)[1:] if line.endswith(b"\n")]


def test_workers_sigkilled_while_moving_history_lose_and_duplicate_nothing(tmp_path, children):
    # Given 20,000 finished jobs two days old and 200 due jobs in a 1.0.0-sized file
    path = tmp_path / "queue.tsv"
    now = int(time.time())
    path.write_bytes(("\t".join(COLUMNS) + "\n").encode() + finished_lines(20_000, now - 2 * 86400))
    queue = Queue(path)
    due = {queue.enqueue("t", {}) for _ in range(200)}
    every_id = {f"{n:016x}".encode() for n in range(20_000)} | {job_id.encode() for job_id in due}
    # Workers with a short lease, so what a killed one held is free again soon; attempts
    # enough for every kill to cost one
    lease = 2
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        from dbbasic_queue import Queue
        Queue({str(path)!r}).process_jobs({{"t": lambda payload: None}}, retention_seconds=None,
                                           lease_seconds={lease}, max_attempts=20)
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(7)

    def files():
        return [path] + [p for _, p in queue.archive.files()]
    # When workers are SIGKILLed at random moments of their runs, again and again
    for attempt in range(6):
        started = set(tmp_path.glob("queue.worker-*.lock"))
        child = children.start([sys.executable, script], env=env, stdout=None)
        wait_for(lambda: child.poll() is not None or set(tmp_path.glob("queue.worker-*.lock")) - started,
                 what="the worker's run to begin")
        time.sleep(rng.uniform(0, 0.3))  # a random moment of the run, not a guess at a timing
        kill(child)
        # nothing lost at any moment, and no piece of a line reads as a job
        assert {line.split(b"\t", 1)[0] for p in files() for line in whole_lines(p)} == every_id

    # Then once the killed workers' leases have run out, a clean run finishes: every job
    # once, completed, the history in its archive file
    def leases_out():
        ends = [parse_line(line).run_at for line in whole_lines(path) if b"\tprocessing\t" in line]
        return time.time() >= max(ends, default=0)
    wait_for(leases_out, seconds=lease + 30, what="the killed workers' leases to run out")
    child = subprocess.run([sys.executable, str(script)], env=env, timeout=120)
    assert child.returncode == 0
    lines = [line for p in files() for line in p.read_bytes().splitlines(keepends=True)[1:]]
    assert all(line.endswith(b"\n") for line in lines)
    assert len(lines) == len({line.split(b"\t", 1)[0] for line in lines}) == 20_200
    assert all(parse_line(line).status == "completed" for line in lines)
    assert {job["id"] for job in queue.jobs() if job["type"] == "t"} == due
