"""Faults of the file layer that users and attackers make: a lock file deleted while writers
run, symbolic links and FIFOs planted in the queue's directory (which the README's shared
set-up makes writable by the web app's user), and file metadata (ACLs, extended attributes)
that a rewrite must carry over. Real processes where the fault involves processes; every
wait is bounded and every child is reaped."""

import collections
import errno
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import needs_root
from dbbasic.tsv import TSV

from dbbasic_queue import Queue, QueueError
from dbbasic_queue.storage.history import day_of
from dbbasic_queue.model.job import HEADER, job_line

HELPER = str(Path(__file__).with_name("helpers.py"))
ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 60  # upper bound for any child; normal runs take a few seconds
COLUMNS = ["id", "type", "payload", "status", "created_at", "run_at", "attempts", "error",
           "result", "options"]
NEW_HEADER = ("\t".join(COLUMNS) + "\r\n").encode()  # as dbbasic-tsv writes a new table's

# Deletes (or replaces with a fresh file) the lock file as fast as it can, until the stop
# file appears or the deadline passes; prints how many times it did.
LOCK_VANDAL = r"""
import os, sys, time
lock, stop, how = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + float(sys.argv[4])
done = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        if how == "delete":
            os.unlink(lock)
        else:
            fresh = lock + ".fresh"
            os.close(os.open(fresh, os.O_CREAT | os.O_WRONLY, 0o644))
            os.replace(fresh, lock)
        done += 1
    except FileNotFoundError:
        pass
    time.sleep(0.0005)
print(done)
"""


@pytest.fixture
def spawn():
    """Start child processes; kill any still running at the end and reap them all."""
    children = []

    def start(*args, **popen):
        child = subprocess.Popen([*map(str, args)], stdout=subprocess.PIPE, text=True, **popen)
        children.append(child)
        return child
    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=WAIT_SECONDS)


def finish(child) -> str:
    out, _ = child.communicate(timeout=WAIT_SECONDS)
    assert child.returncode == 0
    return out


def require_tool(name: str) -> str:
    """The path of a command-line tool; in CI (CI=true) its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install acl); the ACL test needs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def cli(queue_path: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    """Run the installed ``dbbasic-queue`` console script in a child process."""
    script = str(Path(sys.executable).with_name("dbbasic-queue"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    env.pop("DBBASIC_QUEUE_URL", None)
    return subprocess.run([script, "--file", str(queue_path), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=WAIT_SECONDS)


# --- fault 1: a lock file deleted while writers run ---------------------------------------

@pytest.mark.parametrize("how", ["delete", "replace"])
def test_a_deleted_or_replaced_lock_file_loses_no_job_and_runs_none_twice(tmp_path, spawn, how):
    # Given a queue, three enqueuers and two workers starting at the same moment
    path = tmp_path / "data" / "queue.tsv"
    Queue(path).enqueue("send_email", {"key": "first"})
    runs_log, stop = tmp_path / "runs.log", tmp_path / "stop"
    start_at = time.time() + 1.0
    enqueuers = [spawn(sys.executable, HELPER, "enqueue", path, 2000, "--start-at", start_at)
                 for _ in range(3)]
    workers = [spawn(sys.executable, HELPER, "work", path, runs_log, "--start-at", start_at,
                     "--until", start_at + 3) for _ in range(2)]
    # ... while another process deletes (or replaces) data/queue.lock in a loop
    vandal = spawn(sys.executable, "-c", LOCK_VANDAL, path.with_suffix(".lock"), stop, how,
                   WAIT_SECONDS / 2)

    printed = [finish(enqueuer).split() for enqueuer in enqueuers]
    for worker in workers:
        finish(worker)
    stop.touch()
    assert int(finish(vandal)) > 0, "the lock file was never deleted: the test proved nothing"

    # Then every id an enqueue returned is in the file, and each job ran exactly once
    queue = Queue(path)
    ids = [job_id for batch in printed for job_id in batch]
    assert len(ids) == 6000
    missing = [job_id for job_id in ids if queue.get_job(job_id) is None]
    assert missing == [], f"{len(missing)} of {len(ids)} returned ids are not in the file"
    seen = collections.Counter(runs_log.read_text().split())
    queue.process_jobs({"send_email": lambda payload: seen.update([payload["key"]])})
    twice = [key for key, count in seen.items() if count != 1]
    assert twice == [], f"{len(twice)} jobs ran more than once"
    assert len(seen) == 6001


# --- fault 9: symbolic links planted in the queue's directory -----------------------------

@pytest.fixture
def outside(tmp_path):
    """A directory standing in for root-only files (/etc/...): a queue file of another app,
    and the names of files that must not come to exist."""
    directory = tmp_path / "outside"
    directory.mkdir()
    victim = directory / "victim.tsv"
    Queue(victim).enqueue("other_app_job", {"secret": 1})
    two_hours_ago = time.time() - 7200  # old enough for a worker's sweep of temporary files
    os.utime(victim, (two_hours_ago, two_hours_ago))
    return directory


def snapshot(directory: Path) -> dict:
    return {entry.name: entry.read_bytes() for entry in sorted(directory.iterdir())}


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def assert_refused(error_info, link: Path) -> None:
    """A QueueError that names the planted path and says it is a symbolic link."""
    message = str(error_info.value)
    assert str(link) in message and "symbolic link" in message, message


@pytest.mark.parametrize("name", ["queue.meta", "queue.tmp", "queue.idx",
                                  ".dbbasic-queue-planted.tmp"])
@pytest.mark.parametrize("target", ["victim.tsv", "nologin"])
def test_a_symlink_planted_for_a_side_file_is_never_followed_when_the_queue_is_created(
        tmp_path, outside, name, target):
    # Given an empty data/ where the web user planted a symlink to a root-only file (or to
    # a file that must not come to exist)
    data = tmp_path / "data"
    plant(data / name, outside / target)
    before = snapshot(outside)
    queue = Queue(data / "queue.tsv")

    # When root creates the queue and runs its worker twice
    job_id = queue.enqueue("send_email", {"key": 1})
    queue.process_jobs({"send_email": lambda payload: None})
    queue.enqueue("send_email", {"key": 2})
    queue.process_jobs({"send_email": lambda payload: None})

    # Then nothing outside data/ was created, written or truncated
    assert snapshot(outside) == before
    assert queue.get_job(job_id)["status"] == "completed"


OPERATIONS = {
    "enqueue": lambda queue, job_id: queue.enqueue("send_email", {"key": 2}),
    "process_jobs": lambda queue, job_id: queue.process_jobs({"send_email": lambda p: None}),
    "cancel_job": lambda queue, job_id: queue.cancel_job(job_id),
    "get_job": lambda queue, job_id: queue.get_job(job_id),
    "stats": lambda queue, job_id: queue.stats(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("target", ["victim.tsv", "nologin"])
def test_a_symlink_planted_as_the_queue_file_is_refused_naming_it(tmp_path, outside, operation,
                                                                    target):
    # Given data/queue.tsv is a symlink to another app's queue file (or to a missing file)
    link = tmp_path / "data" / "queue.tsv"
    plant(link, outside / target)
    before = snapshot(outside)
    job_id = next(Queue(outside / "victim.tsv").jobs())["id"]

    # When root uses the queue, then it refuses with a QueueError naming the link
    with pytest.raises(QueueError) as refused:
        OPERATIONS[operation](Queue(link), job_id)
    assert_refused(refused, link)
    # ... and nothing outside data/ was created or written
    assert snapshot(outside) == before


@pytest.mark.parametrize("operation", ["enqueue", "process_jobs", "cancel_job"])
@pytest.mark.parametrize("target", ["victim.tsv", "nologin"])
def test_a_symlink_planted_as_the_lock_file_is_refused_naming_it(tmp_path, outside, operation,
                                                                   target):
    # Given a queue with a pending job, whose lock file the web user replaced by a symlink
    # to a root-only file (or to a file that must not exist, such as /etc/nologin)
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": 1})
    lock = queue.path.with_suffix(".lock")
    lock.unlink()
    plant(lock, outside / target)
    before = snapshot(outside)
    file_before = queue.path.read_bytes()

    # When root writes to the queue, then it refuses with a QueueError naming the link
    with pytest.raises(QueueError) as refused:
        OPERATIONS[operation](queue, job_id)
    assert_refused(refused, lock)
    # ... nothing outside data/ was created or written, and the queue is as it was
    assert snapshot(outside) == before
    assert queue.path.read_bytes() == file_before


def test_the_command_line_refuses_a_planted_symlink_in_one_line_with_exit_3(tmp_path, outside):
    # Given data/queue.tsv is a dangling symlink to a root-only path
    link = tmp_path / "data" / "queue.tsv"
    plant(link, outside / "nologin")
    before = snapshot(outside)

    # When root enqueues and runs the worker from the command line
    enqueued = cli(link, "enqueue", "send_email", '{"key": 1}')
    worked = cli(link, "work", "--handlers", "jobs_for_cli:handlers", "--log-level", "WARNING",
                 cwd=tmp_path)  # the error alone, without the start-up line

    # Then each says in one line which file is a symlink, exits 3, and creates nothing outside
    for done in (enqueued, worked):
        assert done.returncode == 3, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert str(link) in done.stderr and "symbolic link" in done.stderr
    assert snapshot(outside) == before


# --- beyond the list: FIFOs and directories planted in the queue's directory -------------

# One operation on a queue, in a child process so that a test can bound it: prints what it
# returns (as JSON) or the QueueError it raises.
CHILD = r"""
import json, sys
from dbbasic_queue import Queue, QueueError
queue, operation, job_id = Queue(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    if operation == "enqueue":
        print(json.dumps(queue.enqueue("send_email", {"key": 1})))
    elif operation == "process_jobs":
        print(json.dumps(queue.process_jobs({"send_email": lambda payload: None})))
    elif operation == "get_job":
        print(json.dumps(queue.get_job(job_id)))
    else:
        print(json.dumps(queue.tracebacks(job_id)))
except QueueError as error:
    print("QueueError:", error)
"""


def run_child(queue_path: Path, operation: str, job_id: str = "0123456789abcdef",
              what: str = "a file planted in data/") -> str:
    """The output of CHILD; fails the test if it runs past 20 s or dies."""
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(queue_path), operation, job_id],
                              capture_output=True, text=True, timeout=20, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{operation} blocked on {what} for 20 s")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("operation", ["enqueue", "process_jobs", "get_job"])
@pytest.mark.parametrize("name", ["queue.tsv", "queue.lock"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_directory_planted_in_the_queue_directory_is_refused_at_once_naming_it(
        tmp_path, kind, name, operation):
    # Given a queue with a job, where a FIFO (with no process at its other end) or a
    # directory took the place of the queue file or its lock: anyone who can write data/
    # can make one
    data = tmp_path / "data"
    job_id = Queue(data / "queue.tsv").enqueue("send_email", {"key": 1})
    (data / name).unlink()
    os.mkfifo(data / name) if kind == "fifo" else os.mkdir(data / name)

    # When root uses the queue, then it does not hang but refuses, naming what is there
    out = run_child(data / "queue.tsv", operation, job_id, what=f"the {kind} at {name}")
    if operation == "get_job" and name == "queue.lock":
        assert json.loads(out)["id"] == job_id  # readers take no lock
        return
    assert out.startswith("QueueError:") and str(data / name) in out
    assert "not a regular file" in out


# --- creation: the file is exactly the table dbbasic-tsv creates --------------------------

def test_a_new_queue_file_is_byte_for_byte_the_table_dbbasic_tsv_creates(tmp_path):
    # Given a table dbbasic-tsv creates, and a queue file the queue creates
    TSV("queue", COLUMNS, data_dir=tmp_path / "by_tsv")
    queue = Queue(tmp_path / "by_queue" / "queue.tsv")

    # When the queue adds its first job
    queue.enqueue("send_email", {"key": 1})

    # Then the file starts with exactly dbbasic-tsv's header bytes, and one line per job
    header = (tmp_path / "by_tsv" / "queue.tsv").read_bytes()
    content = queue.path.read_bytes()
    assert content.startswith(header) and content.count(b"\n") == 2


def test_a_child_forked_between_appends_locks_through_its_own_descriptors(tmp_path):
    # Given a process whose queue keeps its files open after an append, and a child forked
    # then (an flock belongs to the open file description, which a child shares)
    queue = Queue(tmp_path / "queue.tsv")
    queue.enqueue("t", {"n": "before"})
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: enqueue once told to, then say so
        try:
            os.read(go_read, 1)
            queue.enqueue("t", {"n": "child"})
            os.write(done_write, b"x")
        finally:
            os._exit(0)
    try:
        heard_while_locked = []

        def while_locked(fd):
            os.write(go_write, b"x")
            readable, _, _ = select.select([done_read], [], [], 1.0)
            heard_while_locked.append(bool(readable))
            return None

        # When the parent appends, and the child enqueues while the parent holds the lock
        queue.table.append(job_line("parent0000000001", "t", "{}", "pending", 1, 1, 0),
                           unless=while_locked)
        readable, _, _ = select.select([done_read], [], [], 30)
    finally:
        _, status = os.waitpid(pid, 0)
    # Then the child waited for the parent's lock: its job comes after the parent's
    assert heard_while_locked == [False] and readable and status == 0
    lines = queue.path.read_text().splitlines()[1:]
    assert ["before" in lines[0], lines[1].startswith("parent"), "child" in lines[2]] == [True] * 3


def test_dbbasic_tsv_reads_inserts_and_updates_a_table_the_queue_created(tmp_path):
    # Given a queue file created by the queue
    queue = Queue(tmp_path / "data" / "queue.tsv")
    mine = queue.enqueue("send_email", {"key": 1})

    # When dbbasic-tsv opens it, inserts a job and updates another
    table = TSV("queue", COLUMNS, data_dir=queue.path.parent)
    assert [row["id"] for row in table.all()] == [mine]
    table.insert({"id": "fromtsv0000000001", "type": "send_email", "payload": {"key": 2},
                  "status": "pending", "created_at": 1, "run_at": 1, "attempts": 0})
    assert table.update({"id": mine}, {"status": "cancelled"}) == 1

    # Then the queue reads what dbbasic-tsv wrote, and runs the job it inserted
    assert queue.get_job(mine)["status"] == "cancelled"
    assert queue.process_jobs({"send_email": lambda payload: payload["key"]}) == 1
    assert queue.get_job("fromtsv0000000001")["result"] == 2


# --- fault 13: ACLs and extended attributes survive rewrites ------------------------------

def rewrite(queue: Queue, how: str, job_id: str) -> None:
    """One rewrite of the file: a worker run, or a cancel from the command line."""
    if how == "worker":
        assert queue.process_jobs({"send_email": lambda payload: None}) >= 1
    else:
        done = cli(queue.path, "cancel", job_id)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", ["worker", "cli cancel"])
def test_a_rewrite_keeps_the_posix_acl_of_the_file(tmp_path, how):
    setfacl, getfacl = require_tool("setfacl"), require_tool("getfacl")
    # Given a queue file shared through an ACL: uid 65534 may read and write it
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": 1})
    subprocess.run([setfacl, "-m", "u:65534:rw", str(queue.path)], check=True, timeout=30)

    def acl():
        return subprocess.run([getfacl, "-n", "--omit-header", str(queue.path)], check=True,
                              capture_output=True, text=True, timeout=30).stdout
    before = acl()
    assert "user:65534:rw-" in before

    # When a worker (or the command line) rewrites the file
    rewrite(queue, how, job_id)

    # Then the ACL, and the mode and owner, are as they were
    assert acl() == before
    assert queue.get_job(job_id)["status"] in ("completed", "cancelled")


@pytest.mark.parametrize("how", ["worker", "cli cancel"])
def test_a_rewrite_keeps_the_extended_attributes_of_the_file(tmp_path, how):
    # Given a queue file with user extended attributes (a backup tool's marks, say)
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": 1})
    try:
        os.setxattr(queue.path, "user.backup.policy", b"daily")
    except OSError as error:
        if error.errno != errno.ENOTSUP or os.environ.get("CI"):
            raise
        pytest.skip(f"the file system of {queue.path} has no user extended attributes")
    os.setxattr(queue.path, "user.empty", b"")
    mode = queue.path.stat().st_mode

    # When a worker (or the command line) rewrites the file
    rewrite(queue, how, job_id)

    # Then the attributes are there with their values, and the mode is unchanged
    assert os.getxattr(queue.path, "user.backup.policy") == b"daily"
    assert os.getxattr(queue.path, "user.empty") == b""
    assert queue.path.stat().st_mode == mode


@pytest.mark.parametrize("how", ["worker", "cli cancel"])
def test_a_rewrite_does_not_give_the_file_an_acl_it_did_not_have(tmp_path, how):
    setfacl, getfacl = require_tool("setfacl"), require_tool("getfacl")
    # Given a queue file without an ACL, in a directory that has since been given a default
    # ACL (which new files there inherit, the rewrite's temporary file among them)
    queue = Queue(tmp_path / "data" / "queue.tsv")
    job_id = queue.enqueue("send_email", {"key": 1})
    subprocess.run([setfacl, "-d", "-m", "u:65534:rw", str(queue.path.parent)], check=True,
                   timeout=30)

    def acl():
        return subprocess.run([getfacl, "-n", "--omit-header", str(queue.path)], check=True,
                              capture_output=True, text=True, timeout=30).stdout
    before = acl()
    assert "65534" not in before

    # When a worker (or the command line) rewrites the file
    rewrite(queue, how, job_id)

    # Then the file has the permissions it had, not the directory's default ACL
    assert acl() == before


# --- beyond the list: attributes a rewrite may not copy, another writer of the lock ------


# Runs two worker runs as another user (after its imports, the worker's too, as the README
# says: the interpreter may sit where that user cannot read), logging to stderr.
WORKER_AS_USER = r"""
import logging, os, sys
from dbbasic_queue import Queue
import dbbasic_queue.worker
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
os.setgroups([]); os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))
queue = Queue(sys.argv[1])
for _ in range(2):
    assert queue.process_jobs({"send_email": lambda payload: None}, max_jobs=1) == 1
"""




@needs_root
def test_an_attribute_a_rewrite_cannot_copy_is_reported_once_and_the_jobs_still_run(shared_dir):
    import pwd
    nobody = pwd.getpwnam("nobody")
    # Given a queue of the web user (nobody) on which root set a security.* attribute,
    # which only root may set
    queue = Queue(shared_dir / "data" / "queue.tsv")
    ids = [queue.enqueue("send_email", {"key": n}) for n in range(2)]
    for path in (queue.path.parent, queue.path, queue.path.with_suffix(".lock")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.setxattr(queue.path, "security.dbbasic-test", b"root's mark")

    # When the web user's worker rewrites the file several times
    done = subprocess.run([sys.executable, "-c", WORKER_AS_USER, str(queue.path),
                           str(nobody.pw_uid), str(nobody.pw_gid)],
                          capture_output=True, text=True, timeout=WAIT_SECONDS)

    # Then it says once which attribute it could not keep, and runs the jobs all the same
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("WARNING") == 1, done.stderr
    assert "could not carry over the extended attributes security.dbbasic-test" in done.stderr
    assert [queue.get_job(job_id)["status"] for job_id in ids] == ["completed"] * 2


TSV_INSERTER = r"""
import sys, time
from pathlib import Path
from dbbasic.tsv import TSV
path, count, start_at = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
table = TSV(path.stem, sys.argv[4].split(","), data_dir=path.parent)
time.sleep(max(0.0, start_at - time.time()))
for n in range(count):
    job_id = f"tsv{n:013d}"
    assert table.insert({"id": job_id, "type": "send_email", "payload": {"key": f"tsv-{n}"},
                         "status": "pending", "created_at": 1, "run_at": 1, "attempts": 0})
    print(job_id)
"""


def test_dbbasic_tsv_inserting_while_enqueuers_and_workers_run_loses_nothing(tmp_path, spawn):
    # Given a queue, and dbbasic-tsv's own TSV.insert (which takes queue.lock through its own
    # code, and writes its index through queue.tmp) adding jobs while two enqueuers and two
    # workers run
    path = tmp_path / "data" / "queue.tsv"
    Queue(path).enqueue("send_email", {"key": "first"})
    runs_log = tmp_path / "runs.log"
    start_at = time.time() + 1.5
    inserter = spawn(sys.executable, "-c", TSV_INSERTER, path, 300, start_at, ",".join(COLUMNS))
    enqueuers = [spawn(sys.executable, HELPER, "enqueue", path, 1000, "--start-at", start_at)
                 for _ in range(2)]
    workers = [spawn(sys.executable, HELPER, "work", path, runs_log, "--start-at", start_at,
                     "--until", start_at + 3) for _ in range(2)]

    ids = finish(inserter).split() + [i for e in enqueuers for i in finish(e).split()]
    for worker in workers:
        finish(worker)

    # Then every job either wrote is in the file, and each ran exactly once
    queue = Queue(path)
    assert len(ids) == 2300
    missing = [job_id for job_id in ids if queue.get_job(job_id) is None]
    assert missing == [], f"{len(missing)} of {len(ids)} jobs are not in the file"
    seen = collections.Counter(runs_log.read_text().split())
    queue.process_jobs({"send_email": lambda payload: seen.update([payload["key"]])})
    assert [key for key, count in seen.items() if count != 1] == []
    assert len(seen) == 2301


# --- beyond the list: the other files beside the queue (archive, tracebacks, liveness) ---

def finished_line(job_id: str, finished_at: int) -> bytes:
    return job_line(job_id, "send_email", "{}", "completed", finished_at - 5, finished_at, 1,
                    "", '"ok"')


def queue_with_an_old_finished_job(data: Path):
    """A queue file holding a pending job and a job finished two hours ago (to move to its
    archive file at the next rewrite); returns the finished job's id and its day."""
    queue = Queue(data / "queue.tsv")
    queue.enqueue("send_email", {"key": 1})
    finished_at = int(time.time()) - 7200
    with open(queue.path, "ab") as file:
        file.write(finished_line("feedfacefeedface", finished_at))
    return "feedfacefeedface", day_of(finished_at)


def test_a_fifo_planted_as_a_worker_liveness_file_does_not_stall_the_worker(tmp_path):
    # Given a queue with a pending job, and a FIFO where a worker's liveness file could be
    data = tmp_path / "data"
    Queue(data / "queue.tsv").enqueue("send_email", {"key": 1})
    os.mkfifo(data / "queue.worker-0123456789abcdef.lock")

    # When a worker runs, then it does not wait on the FIFO: it runs the job
    assert run_child(data / "queue.tsv", "process_jobs", what="a worker's FIFO") == "1\n"


def test_a_fifo_planted_as_an_archive_file_is_refused_and_no_finished_job_is_lost(tmp_path):
    # Given a job finished two hours ago, and a FIFO where its archive file would be
    data = tmp_path / "data"
    finished, day = queue_with_an_old_finished_job(data)
    fifo = data / f"queue.{day}.tsv"
    os.mkfifo(fifo)

    # When a worker runs (and would move the finished job to that day's file)
    out = run_child(data / "queue.tsv", "process_jobs", what="an archive FIFO")

    # Then it refuses, naming the FIFO, and the finished job is still in the queue file
    assert out.startswith("QueueError:") and str(fifo) in out and "not a regular file" in out
    assert finished in (data / "queue.tsv").read_text()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_an_archive_file_planted_as_a_symlink_or_fifo_is_refused_when_looking_a_job_up(
        tmp_path, outside, kind):
    # Given a queue, and in data/ an archive file name that is a FIFO, or a symlink to a
    # file outside that holds a job line
    data = tmp_path / "data"
    Queue(data / "queue.tsv").enqueue("send_email", {"key": 1})
    planted = data / f"queue.{day_of(int(time.time()) - 86400)}.tsv"
    if kind == "symlink":
        (outside / "planted.tsv").write_bytes(
            NEW_HEADER + finished_line("feedfacefeedface", int(time.time()) - 86400))
        plant(planted, outside / "planted.tsv")
    else:
        os.mkfifo(planted)

    # When root looks up a job that is not in the queue file
    out = run_child(data / "queue.tsv", "get_job", "feedfacefeedface", what=f"an archive {kind}")

    # Then it refuses, naming the planted file, and reads nothing through it
    assert out.startswith("QueueError:") and str(planted) in out, out


def test_a_fifo_planted_as_a_traceback_file_does_not_stall_reading_or_writing_tracebacks(
        tmp_path):
    # Given a FIFO where today's traceback file would be
    data = tmp_path / "data"
    queue = Queue(data / "queue.tsv")
    job_id = queue.enqueue("fail", {"key": 1})
    for day in {day_of(int(time.time())), day_of(int(time.time()) + 60)}:  # midnight may pass
        os.mkfifo(data / f"queue.tracebacks.{day}.tsv")

    # When a worker records a failure with a traceback longer than a pipe holds, and the
    # tracebacks of the job are read, then neither waits on the FIFO
    code = ("import sys; from dbbasic_queue import Queue\n"
            "def fail(payload): raise RuntimeError('x' * 200000)\n"
            "print(Queue(sys.argv[1]).process_jobs({'fail': fail}, max_attempts=1))")
    try:
        ran = subprocess.run([sys.executable, "-c", code, str(queue.path)], capture_output=True,
                             text=True, timeout=20, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker blocked on a FIFO planted as a traceback file")
    assert ran.returncode == 0 and ran.stdout == "1\n", ran.stderr
    assert queue.get_job(job_id)["status"] == "failed"
    assert run_child(queue.path, "tracebacks", job_id, what="a traceback FIFO") == "[]\n"


def test_archive_and_traceback_files_are_as_shared_as_the_queue_file(tmp_path):
    setfacl, getfacl = require_tool("setfacl"), require_tool("getfacl")
    # Given a queue file shared through an ACL, with a job finished two hours ago and a job
    # that will fail
    data = tmp_path / "data"
    finished, day = queue_with_an_old_finished_job(data)
    queue = Queue(data / "queue.tsv")
    queue.enqueue("fail", {"key": 2})
    subprocess.run([setfacl, "-m", "u:65534:rw", str(queue.path)], check=True, timeout=30)

    def acl(path):
        return subprocess.run([getfacl, "-n", "--omit-header", str(path)], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    # When a worker moves the finished job to its archive file and keeps a traceback
    def fail(payload):
        raise RuntimeError("smtp down")
    started = int(time.time())
    queue.process_jobs({"send_email": lambda payload: None, "fail": fail}, max_attempts=1)
    ended = int(time.time())

    # Then the new files have the queue file's ACL, as they have its owner and mode (the job
    # finished now goes to today's file, which is the old job's too unless midnight is between)
    archive, tracebacks = queue.archive.files(), queue.traceback_files.files()
    names = {path.name for _, path in archive}
    today = {f"queue.{day_of(started)}.tsv", f"queue.{day_of(ended)}.tsv"}
    assert f"queue.{day}.tsv" in names and names - {f"queue.{day}.tsv"} <= today
    assert len(tracebacks) == 1
    assert "user:65534:rw-" in acl(queue.path)
    for path in [path for _, path in archive] + tracebacks:
        assert acl(path) == acl(queue.path)


def wait_for(condition, what: str, seconds: float = WAIT_SECONDS / 2):
    """The first true value of ``condition()``, polled until ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_spool_file_swapped_for_a_symlink_mid_rewrite_brings_nothing_from_outside(
        tmp_path, outside, spawn):
    # Given a job finished two hours ago, a root-only file outside, and its archive file's
    # flock held here, so that a worker stops after spooling the job, as it appends the spool
    data = tmp_path / "data"
    finished, day = queue_with_an_old_finished_job(data)
    (outside / "secret.txt").write_bytes(b"first line\nroot-only secret\n")
    archive_path = data / f"queue.{day}.tsv"
    archive_path.write_bytes(HEADER)
    lock = os.open(archive_path, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        worker = spawn(sys.executable, "-c", CHILD, data / "queue.tsv", "process_jobs", "-")

        def spool_file():
            # The spool is the temporary file holding the finished job (the rewrite's copy,
            # beside it, no longer does); it is flushed just before the append waits here
            return next((path for path in data.glob(".dbbasic-queue-*.tmp")
                         if finished.encode() in path.read_bytes()), None)
        spooled = wait_for(spool_file, "the worker's spool file")

        # When the web user swaps the spool file for a symlink to the root-only file
        spooled.unlink()
        os.symlink(outside / "secret.txt", spooled)
    finally:
        os.close(lock)
    assert finish(worker) == "1\n"

    # Then the archive file holds the finished job, and nothing read through the link
    archive = (data / f"queue.{day}.tsv").read_bytes()
    assert finished.encode() in archive and b"root-only secret" not in archive
