"""The file itself: a dbbasic-tsv table, one line per job, readable with cat, safe to share;
corrupt and half-written lines; the bookmark a worker's rewrite resumes from. (The crash
windows, with real processes and SIGKILL, are in test_processes.py.)"""

import csv
import io
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from dbbasic.tsv import TSV

from dbbasic_queue import CorruptLineError, Queue, QueueError
from dbbasic_queue.model.job import COLUMNS, STATUSES, Job, parse_line
from dbbasic_queue.storage import table
from dbbasic_queue.storage.table import Editor
from support import noop, needs_root

HEADER = "id\ttype\tpayload\tstatus\tcreated_at\trun_at\tattempts\terror\tresult"
NASTY = "tab\there, newline\nthere, \r\n, \"quotes\" and 'single', unicode é 漢字 🙂 \u2028 \x85"
DAY = 86400


def job_lines(queue):
    return queue.path.read_bytes().splitlines()[1:]


def test_the_file_starts_with_the_published_header_and_the_options_column(queue):
    queue.enqueue("t", {})
    assert queue.path.read_text().splitlines()[0] == HEADER + "\toptions"


def test_every_job_is_one_line_whatever_its_payload_error_and_result_hold(queue):
    big = "x" * 1_000_000
    payloads = [{"text": NASTY}, {"big": big}, {"nested": {"list": [NASTY, 1, None, 2.5]}}]
    ids = [queue.enqueue("t", p) for p in payloads]

    def handler(payload):
        if "big" in payload:
            raise RuntimeError(NASTY + big)
        return {"echo": payload}
    queue.process_jobs({"t": handler}, max_attempts=1)

    assert len(job_lines(queue)) == 3
    for job_id, payload in zip(ids, payloads):
        job = queue.get_job(job_id)
        assert job["payload"] == payload
        if "big" in payload:
            assert job["status"] == "failed" and "\n" not in job["error"] and "\t" not in job["error"]
            assert job["error"].startswith("RuntimeError: tab here") and big[:1000] in job["error"]
            assert job["error"].endswith("the rest is in the traceback file)")  # cut: MAX_ERROR_CHARS
        else:
            assert job["result"] == {"echo": payload}


def test_unicode_stays_readable_in_the_file(queue):
    queue.enqueue("t", {"name": "José 漢字"})
    assert "José 漢字" in queue.path.read_text(encoding="utf-8")


def test_dbbasic_tsv_reads_the_file_and_sees_the_same_jobs(queue):
    ids = [queue.enqueue("t", {"text": NASTY, "n": n}) for n in range(5)]
    queue.process_jobs({"t": lambda p: {"n": p["n"]}}, max_jobs=2)

    rows = list(TSV("queue", list(COLUMNS), data_dir=queue.path.parent).all())

    assert [row["id"] for row in rows] == ids
    for row in rows:
        job = queue.get_job(row["id"])
        assert [row[k] for k in ("type", "status", "created_at", "run_at", "attempts")] == [
            str(job[k]) for k in ("type", "status", "created_at", "run_at", "attempts")]
        assert json.loads(row["payload"]) == job["payload"]
        assert (json.loads(row["result"]) if row["result"] else None) == job["result"]
    assert [row["status"] for row in rows] == ["completed"] * 2 + ["pending"] * 3


def test_the_queue_reads_and_runs_jobs_that_dbbasic_tsv_wrote(tmp_path):
    table = TSV("queue", list(COLUMNS), data_dir=tmp_path)
    table.insert({"id": "fromtsv1", "type": "t", "payload": {"to": "ann"}, "status": "pending",
                  "created_at": 1, "run_at": 1, "attempts": 0, "error": "", "result": ""})
    queue = Queue(tmp_path / "queue.tsv")
    mine = queue.enqueue("t", {"to": "bob"})

    assert queue.get_job("fromtsv1")["payload"] == {"to": "ann"}
    assert queue.process_jobs({"t": lambda p: p["to"]}) == 2
    assert queue.get_job("fromtsv1")["result"] == "ann" and queue.get_job(mine)["result"] == "bob"
    # dbbasic-tsv reads the results where the run wrote them, and in their archive file, a
    # table like the queue's, once the next run's rewrite has moved them there
    assert TSV("queue", list(COLUMNS), data_dir=tmp_path).query_one(id=mine)["result"] == '"bob"'
    queue.enqueue("t", {"to": "cy"})
    assert queue.process_jobs({"t": lambda p: p["to"]}) == 1
    [archived] = [path for path in tmp_path.glob("queue.[0-9]*-*-*.tsv")]
    archive = TSV(archived.stem, list(COLUMNS), data_dir=tmp_path)
    assert archive.query_one(id=mine)["status"] == "completed"


def test_a_line_is_quoted_exactly_as_the_csv_module_quotes_it():
    rng = random.Random(7)
    alphabet = ['a', '"', "'", " ", "é", "{", ":", "\\", "🙂"]
    for _ in range(500):
        values = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(6))) for _ in range(10)]
        values[3], values[4:7] = rng.choice(STATUSES), ["1", "2", "3"]
        # payload, result and options hold JSON (a line with other text there is corrupt)
        values[2] = json.dumps({values[2]: values[8]}, ensure_ascii=False)
        values[8] = json.dumps(values[8], ensure_ascii=False)
        values[9] = json.dumps({"note": values[9]}, ensure_ascii=False) if values[9] else ""
        job = Job(*values[:4], 1, 2, 3, *values[7:])
        expected = io.StringIO()
        csv.writer(expected, delimiter="\t", lineterminator="\n").writerow(
            [job.id, job.type, job.payload, job.status, "1", "2", "3", job.error, job.result,
             job.options])
        assert job.to_line().decode() == expected.getvalue()
        if job.id:
            assert parse_line(job.to_line()) == job


def test_lines_that_dbbasic_tsv_update_breaks_over_two_lines_are_reported_not_fatal(queue, caplog):
    good = queue.enqueue("t", {})
    TSV("queue", list(COLUMNS), data_dir=queue.path.parent).update(
        {"id": good}, {"error": "multi\nline"})  # dbbasic-tsv's update() keeps the newline
    other = queue.enqueue("t", {})

    assert queue.process_jobs({"t": lambda p: None}) == 1
    assert queue.get_job(other)["status"] == "completed"
    assert b'"multi\nline"' in queue.path.read_bytes()
    assert "corrupt line" in caplog.text


def test_a_rewrite_keeps_the_mode_bits_of_the_file(queue):
    queue.enqueue("t", {})
    os.chmod(queue.path, 0o664)

    queue.process_jobs({"t": lambda p: None})

    assert queue.path.stat().st_mode & 0o7777 == 0o664


def test_new_files_follow_the_process_umask(tmp_path):
    old = os.umask(0o007)
    try:
        Queue(tmp_path / "data" / "queue.tsv").enqueue("t", {})
    finally:
        os.umask(old)
    assert (tmp_path / "data" / "queue.tsv").stat().st_mode & 0o777 == 0o660


# --- which files are queues -----------------------------------------------------------------

@pytest.mark.parametrize("use", [
    lambda q: q.enqueue("t", {}), lambda q: q.process_jobs({}), lambda q: q.get_job("ann")])
def test_a_file_that_is_not_a_queue_is_refused_and_left_alone(tmp_path, use):
    path = tmp_path / "notes.tsv"
    path.write_text("name\tphone\nann\t123\n")

    with pytest.raises(QueueError, match="header"):
        use(Queue(path))

    assert path.read_text() == "name\tphone\nann\t123\n"


def test_a_queue_path_must_be_a_tsv_file():
    with pytest.raises(ValueError, match=r"\.tsv"):
        Queue("data/queue.txt")


# --- corrupt lines: reported, left alone, never in the way ---------------------------------

CORRUPT_LINES = [
    b"handmade\tt\t{}\tpending\n",  # too few fields
    b"badjson\tt\t{not json\tpending\t1\t1\t0\t\t\n",
    b"badint\tt\t{}\tpending\tyesterday\t1\t0\t\t\n",
    b"badstatus\tt\t{}\tdone\t1\t1\t0\t\t\n",
    b'strayquote\tt\t"{""a"": 1}\tpending\t1\t1\t0\t\t\n',
    b"notutf8\tt\t{}\tpending\t1\t1\t0\t\xff\t\n",
    b"listpayload\tt\t[1]\tpending\t1\t1\t0\t\t\n",
]


def test_corrupt_lines_are_reported_left_alone_and_do_not_stop_other_jobs(queue, caplog):
    first = queue.enqueue("t", {"n": 1})
    with open(queue.path, "ab") as file:
        file.writelines(CORRUPT_LINES)
    last = queue.enqueue("t", {"n": 2})

    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        assert queue.process_jobs({"t": noop}) == 2

    assert queue.get_job(first)["status"] == queue.get_job(last)["status"] == "completed"
    lines = queue.path.read_bytes().splitlines(keepends=True)
    assert lines[2:2 + len(CORRUPT_LINES)] == CORRUPT_LINES
    for line in CORRUPT_LINES:
        assert line.split(b"\t")[0].decode() in caplog.text
    with pytest.raises(CorruptLineError, match="line 3"):
        queue.get_job("handmade")


def test_a_half_written_last_line_does_not_swallow_the_next_job(queue):
    queue.enqueue("t", {})
    with open(queue.path, "ab") as file:
        file.write(b"killedwriter\tt\t{\"bo")  # a writer died mid-line
    job_id = queue.enqueue("t", {"after": True})

    assert queue.get_job(job_id)["payload"] == {"after": True}
    assert queue.process_jobs({"t": noop}) == 2
    assert b"killedwriter\tt\t{\"bo\n" in queue.path.read_bytes()


# --- the bookmark: where a worker's rewrite resumes ------------------------------------

def test_a_job_early_in_the_file_that_falls_due_during_a_run_runs_in_that_run(queue, clock):
    early = queue.enqueue("t", {}, run_at=clock.now + 10)  # first line, not yet due
    for n in range(50):
        queue.enqueue("t", {"n": n})

    def tick(payload):
        clock.advance(1)  # each job takes "a second": `early` falls due after ten

    assert queue.process_jobs({"t": tick}) == 51
    assert queue.get_job(early)["status"] == "completed"


# --- a run rewrites the file only when it has to ---------------------------------------------

def test_a_run_with_nothing_to_do_rewrites_the_file_for_retention_once_at_most(queue, clock):
    # The last results of a run wait in the file for a next rewrite; in a queue gone quiet,
    # the first run past retention drops them, and the runs after it write nothing.
    queue.enqueue("t", {})
    queue.process_jobs({"t": noop})
    clock.advance(30 * DAY)
    assert queue.process_jobs({"t": noop}) == 0
    before = queue.path.stat()

    assert queue.process_jobs({"t": noop}) == 0

    after = queue.path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert queue.path.read_bytes().count(b"\n") == 1  # the header alone


# --- a root worker and the web app's user ---------------------------------------------------





@needs_root
def test_after_a_root_worker_run_the_web_user_can_still_enqueue(shared_dir):
    """The web app (here: nobody) enqueues; the cron worker (root) rewrites; the web app must
    still be able to append afterwards, so the rewrite keeps the owner."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    data = shared_dir / "data"
    data.mkdir()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)

    def enqueue_as_nobody():
        # The interpreter may sit where nobody cannot read, so the child drops to nobody
        # after its imports, before it touches the queue.
        code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from dbbasic_queue import Queue; "
                "import dbbasic.tsv; "
                "os.setgroups([]); os.setgid(int(sys.argv[4])); os.setuid(int(sys.argv[3])); "
                "print(Queue(sys.argv[1]).enqueue('t', {}))")
        return subprocess.run(
            [sys.executable, "-c", code, str(data / "queue.tsv"), str(Path(__file__).parents[1]),
             str(nobody.pw_uid), str(nobody.pw_gid)],
            capture_output=True, text=True, timeout=30, check=True).stdout.strip()

    first = enqueue_as_nobody()
    queue = Queue(data / "queue.tsv")
    assert queue.process_jobs({"t": lambda p: None}) == 1
    second = enqueue_as_nobody()

    stat = (data / "queue.tsv").stat()
    assert (stat.st_uid, stat.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert queue.get_job(first)["status"] == "completed"
    assert queue.get_job(second)["status"] == "pending"


class EditingSome(Editor):
    """An editor that changes, drops and stops on the lines of ``ids``, noting where each
    one it saw starts in the new file."""

    def __init__(self, ids, stop_after):
        self.ids, self.stop_after, self.seen = ids, stop_after, []

    def __call__(self, line):
        if line[:line.find(b"\t")] not in self.ids:
            return line
        self.seen.append(self.position)
        self.done = len(self.seen) >= self.stop_after
        return None if len(self.seen) % 3 == 0 else line.upper() + b"x" * (len(self.seen) % 5)


def test_a_rewrite_that_sees_only_some_lines_writes_what_seeing_every_line_writes(monkeypatch):
    rng = random.Random(1)
    for _ in range(2000):  # files of ids of one width and of several, torn ends, byte limits
        ids = [b"%016x" % rng.getrandbits(64) if rng.random() < 0.9 else b"u" * rng.randint(1, 20)
               for _ in range(rng.randint(0, 60))]
        data = b"".join(job_id + b"\tpayload" + b"z" * rng.randint(0, 50) + b"\n" for job_id in ids)
        if rng.random() < 0.3:
            data += b"torn" * rng.randint(1, 5)  # a last line still being appended
        some = set(rng.sample(ids, rng.randint(0, len(ids))))
        stop_after, limit = rng.randint(1, 30), rng.choice([None, rng.randint(0, len(data))])
        ends_torn_line = rng.random() < 0.5
        monkeypatch.setattr(table, "_BLOCK", rng.choice([7, 64, 1 << 20]))  # lines across blocks
        results = []
        for only in (None, some):
            edit = EditingSome(some, stop_after)
            edit.only, edit.ends_torn_line = only, ends_torn_line
            out = io.BytesIO()
            consumed = table.edit_lines(io.BytesIO(data), out, edit, limit)
            results.append((consumed, out.getvalue(), edit.seen))
        assert results[0] == results[1]
