"""Faults of the dated files (archive and tracebacks): a worker killed in the middle of its
append to one, and an admin purge that empties one while workers move jobs into it. After each, every job is in
some file exactly once as a whole line, and the readers (get_job, jobs, stats) never take a
piece of a line for a job."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from dbbasic_queue import Queue
from dbbasic_queue.storage.history import day_of
from dbbasic_queue.model.job import HEADER, job_line, line_id, parse_line
from support import ROOT, WAIT_SECONDS, noop

DAY = 86400


def finished(count, finished_at, start=0, status="completed"):
    """``count`` whole lines of jobs finished at ``finished_at``, as a worker writes them."""
    return [job_line(f"{n:016x}", "send_email", '{"n": %d}' % n, status, finished_at - 5,
                     finished_at, 1, "", '"ok"') for n in range(start, start + count)]


def assert_each_job_once_and_whole(queue, archive, lines):
    """The archive file holds ``lines``, each once, whole, and nothing else; get_job, jobs
    and stats read each of them."""
    content = archive.read_bytes().splitlines(keepends=True)
    assert content[0] == HEADER
    assert sorted(content[1:]) == sorted(lines)
    assert all(parse_line(line) for line in content[1:])
    for line in lines:
        assert queue.get_job(line_id(line).decode())["status"] == "completed"
    listed = [job["id"] for job in queue.jobs()]
    assert sorted(listed) == sorted(set(listed)) and len(listed) == len(lines) + 1
    assert queue.stats()["corrupt_lines"] == 0


def test_a_move_killed_at_any_byte_of_its_archive_append_leaves_each_job_once_and_whole(
        tmp_path, clock, caplog):
    # Given jobs finished a day ago, in queue.tsv and about to move to their archive file,
    # which is new (its header is written by the move too) or holds earlier jobs
    day_ago = int(clock()) - DAY
    earlier, moving = finished(2, day_ago, start=100), finished(3, day_ago)
    for base in (b"", HEADER + b"".join(earlier)):
        appended = (b"" if base else HEADER) + b"".join(moving)  # what the move writes
        for cut in range(len(appended)):
            # When the worker was killed after writing only the first ``cut`` bytes: its
            # rename never happened, so queue.tsv still holds every job
            directory = tmp_path / f"{len(base)}-{cut}"
            directory.mkdir()
            path = directory / "queue.tsv"
            path.write_bytes(HEADER + b"".join(moving))
            archive = directory / f"queue.{day_of(day_ago)}.tsv"
            archive.write_bytes(base + appended[:cut])
            queue = Queue(path, clock=clock)
            # Then the readers take no piece of a line for a job
            for line in moving:
                assert queue.get_job(line_id(line).decode())["status"] == "completed"
                found = queue.archive.find(line_id(line) + b"\t")
                assert found is None or found[2] == line
            assert len(list(queue.jobs())) == len(earlier if base else []) + len(moving)
            # and the next move leaves each job once, whole, in the archive file
            queue.enqueue("t", {})
            assert queue.process_jobs({"t": noop}, retention_seconds=None) == 1
            assert [parse_line(line).type for line in path.read_bytes().splitlines()[1:]] == ["t"]
            assert_each_job_once_and_whole(queue, archive, (earlier if base else []) + moving)
    assert not [r for r in caplog.records if "corrupt" in r.getMessage()]


def test_a_traceback_append_killed_at_any_byte_leaves_no_piece_of_a_line_in_its_file(
        tmp_path, clock):
    # Given a traceback file holding one attempt's line, then each possible piece of the
    # next one: what a worker killed after writing its first ``cut`` bytes leaves
    from dbbasic_queue.storage.tracebacks import HEADER as TRACEBACK_HEADER
    source = Queue(tmp_path / "source" / "queue.tsv", clock=clock)
    job_id = source.enqueue("broken", {})
    source.process_jobs({"broken": lambda payload: 1 / 0}, max_attempts=1)
    [kept_file] = source.traceback_files.files()
    first = kept_file.read_bytes()[len(TRACEBACK_HEADER):]
    piece = first.replace(b"\t1\t", b"\t2\t", 1)  # attempt 2's line, as cut
    for cut in range(1, len(piece)):
        directory = tmp_path / str(cut)
        directory.mkdir()
        queue = Queue(directory / "queue.tsv", clock=clock)
        path = queue.traceback_files.path(day_of(clock()))
        path.write_bytes(TRACEBACK_HEADER + first + piece[:cut])
        # Then the reader takes no piece for an attempt
        assert [t["attempt"] for t in queue.tracebacks(job_id)] == [1]
        # and when the next attempt fails, the piece is gone, never a line of its own
        queue.traceback_files.add(job_id, 3, clock(), "ZeroDivisionError: division by zero",
                                  ZeroDivisionError("division by zero"))
        lines = path.read_bytes().splitlines(keepends=True)
        assert lines[:2] == [TRACEBACK_HEADER, first] and len(lines) == 3, cut
        assert lines[2].startswith(job_id.encode() + b"\t3\t")
        assert [t["attempt"] for t in queue.tracebacks(job_id)] == [1, 3]


def test_retry_and_purge_of_an_archived_job_drop_a_line_cut_short_in_its_file(tmp_path, clock):
    # Given an archive file with two completed jobs and a cancelled one, and after them 30
    # bytes of a move of job 0 cut short by a kill (job 0 is still in queue.tsv)
    path = tmp_path / "queue.tsv"
    day_ago = int(clock()) - DAY
    moving = finished(1, day_ago)[0]
    archived = finished(2, day_ago, start=100) + finished(1, day_ago, start=102, status="cancelled")
    archive = tmp_path / f"queue.{day_of(day_ago)}.tsv"
    path.write_bytes(HEADER + moving)
    archive.write_bytes(HEADER + b"".join(archived) + moving[:30])
    queue = Queue(path, clock=clock)
    # When the cancelled job is retried (its line leaves the archive file)
    assert queue.retry_job(f"{102:016x}") is True
    # Then the piece went with the rewrite: it never becomes a line
    assert archive.read_bytes() == HEADER + b"".join(archived[:2])
    # And when a purge empties the file of another such piece's day
    archive.write_bytes(archive.read_bytes() + moving[:30])
    assert queue.purge(DAY / 2, statuses=["completed"]) == 3  # job 0 in queue.tsv too
    # Then no line is left in it, and the file is gone
    assert not archive.exists() and queue.stats()["corrupt_lines"] == 0


def test_an_archive_file_whose_header_was_cut_short_holds_no_job_for_any_reader(tmp_path, clock):
    # Given a new archive file whose creator was killed 10 bytes into its header
    path = tmp_path / "queue.tsv"
    day_ago = int(clock()) - DAY
    moving = finished(1, day_ago)[0]
    path.write_bytes(HEADER + moving)
    archive = tmp_path / f"queue.{day_of(day_ago)}.tsv"
    archive.write_bytes(HEADER[:10])
    queue = Queue(path, clock=clock)
    # Then every reader and admin verb reads it as no job
    assert [job["id"] for job in queue.jobs()] == [line_id(moving).decode()]
    assert queue.stats()["archived"]["jobs"] == 0 and queue.stats()["corrupt_lines"] == 0
    assert queue.purge(DAY / 2) == 1  # job 0, in queue.tsv
    assert archive.read_bytes() == HEADER[:10]


# A worker whose writes to files stop at FSIZE bytes, killed by the kernel (SIGXFSZ) at the
# first write past them: a real process killed in the middle of its archive append.
KILLED_AT_A_BYTE = """
import resource, signal, sys
from dbbasic_queue import Queue
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; a kill as the kernel sends it
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
Queue(sys.argv[1]).process_jobs({"t": lambda payload: None}, retention_seconds=None)
"""


def test_a_worker_killed_by_the_kernel_mid_append_leaves_each_job_once_and_whole(
        tmp_path, children):
    # Given an archive file with earlier jobs, and jobs of its day in queue.tsv to move
    path = tmp_path / "queue.tsv"
    day_ago = int(time.time()) - DAY
    earlier, moving = finished(8, day_ago, start=100), finished(3, day_ago)
    archive = tmp_path / f"queue.{day_of(day_ago)}.tsv"
    base = HEADER + b"".join(earlier)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")  # no .pyc past FSIZE
    whole = b"".join(moving)
    for cut in (1, 17, len(moving[0]) - 1, len(moving[0]), len(whole) - 1):
        path.write_bytes(HEADER + b"".join(moving))
        archive.write_bytes(base)
        for today in set(tmp_path.glob("queue.*-*-*.tsv")) - {archive}:
            today.unlink()  # the last round's job "t", finished and moved at once
        queue = Queue(path)
        queue.enqueue("t", {})
        # When a worker is killed after the first ``cut`` bytes of its append (every other
        # file it writes is smaller than the archive file, so this is where it dies)
        child = children.start([sys.executable, "-c", KILLED_AT_A_BYTE, path, len(base) + cut],
                               env=env, stderr=subprocess.PIPE)
        child.communicate(timeout=WAIT_SECONDS)
        assert child.returncode == -signal.SIGXFSZ
        assert archive.read_bytes() == base + whole[:cut]
        assert len(path.read_bytes().splitlines()) == 1 + len(moving) + 1  # not renamed
        # Then the next worker's move leaves each job once and whole
        assert queue.process_jobs({"t": noop}, retention_seconds=None) == 1
        assert_each_job_once_and_whole(queue, archive, earlier + moving)


# A purge whose deletion of an archive file it emptied is met, at that very moment, by a
# worker moving a job into that file: the audit hook runs, just before the unlink, what the
# worker would do then if it could take the queue's lock.
PURGE_MET_BY_A_MOVE = """
import fcntl, os, sys
from dbbasic_queue import Queue
queue = Queue(sys.argv[1])
archive, line, finished_at, outcome = sys.argv[2], sys.argv[3].encode(), int(sys.argv[4]), sys.argv[5]

def move_a_job_in(event, args):
    if event != "os.remove" or str(args[0]) != archive or os.path.exists(outcome):
        return
    lock = os.open(queue.table.lock_path, os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        result = "locked out"  # the purge holds the lock: no worker can move a job in now
    else:
        spool = queue.archive.spool()
        spool.add(line, finished_at)
        spool.commit()
        result = "moved"
    finally:
        os.close(lock)
    with open(outcome, "w") as file:
        file.write(result)

sys.addaudithook(move_a_job_in)
print(queue.purge(2 * 86400))
"""


def test_purge_never_deletes_an_archive_file_a_worker_moved_a_job_into(tmp_path):
    # Given an archive file of three days ago with five jobs, all of them past a purge's age
    path = tmp_path / "queue.tsv"
    three_days_ago = int(time.time()) - 3 * DAY
    old = finished(5, three_days_ago)
    archive = tmp_path / f"queue.{day_of(three_days_ago)}.tsv"
    path.write_bytes(HEADER)
    archive.write_bytes(HEADER + b"".join(old))
    # When a purge empties it and, as it deletes the file, a worker moves a job of that day in
    newcomer = finished(1, three_days_ago + 60, start=500)[0]
    outcome = tmp_path / "outcome"
    purge = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PURGE_MET_BY_A_MOVE), path, archive,
         newcomer.decode(), str(three_days_ago + 60), outcome],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=WAIT_SECONDS)
    assert purge.returncode == 0, purge.stderr
    assert purge.stdout.split() == ["5"]
    # Then the job moved in is still there, or the purge held the lock and no move could land
    queue = Queue(path)
    if outcome.read_text() == "moved":
        assert queue.get_job(line_id(newcomer).decode()) is not None
    else:
        assert outcome.read_text() == "locked out" and not archive.exists()
