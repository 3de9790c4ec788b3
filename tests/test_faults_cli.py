"""The command line under hostile text and failing storage.

Job types, error texts and payloads come from users and the file: in human output their
control characters are shown escaped, never sent raw to the terminal; ``--json`` stays exact.
A file that cannot be read or written (permissions, a full disk, a size limit), a value too
large or too deep gives one line on stderr and a documented exit code, never a traceback.
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.cli import main
from support import TESTS, closed_port

BIDI_CONTROLS = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
EXIT_STORAGE = 4
HOSTILE_TYPE = "mail\x1b]0;owned\x07\x1b[2J"
HOSTILE_HOST = "smtp\x1b[31m\x9b2J\u202eevil"


def terminal_controls(text: str) -> list:
    """The characters of ``text`` a terminal would act on, other than the line breaks."""
    return [c for c in text if c != "\n" and (unicodedata.category(c) == "Cc" or
                                              unicodedata.bidirectional(c) in BIDI_CONTROLS)]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args, cwd, preexec_fn=None, extra_env=None, **popen):
    """``python -m dbbasic_queue ARGS`` in a child process, without the developer's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBBASIC_QUEUE_")}
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "dbbasic_queue", *args], cwd=cwd, env=env,
                          preexec_fn=preexec_fn, capture_output=True, text=True, timeout=60,
                          **popen)


def assert_one_line(done, code, *words):
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("dbbasic-queue: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


@pytest.fixture
def queue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Queue(tmp_path / "data" / "queue.tsv")


@pytest.fixture
def hostile(queue):
    """A job whose type and error text hold terminal escapes, and whose payload holds C1 and
    bidi controls, as a user's input quoted in an exception would."""
    job_id = queue.enqueue(HOSTILE_TYPE, {"host": HOSTILE_HOST}, max_attempts=1)

    def fail(payload):
        raise RuntimeError(f"cannot reach {payload['host']}")
    queue.process_jobs({HOSTILE_TYPE: fail})
    return job_id


# --- fault 11: terminal escapes ---------------------------------------------------------------

def test_list_shows_control_characters_of_types_and_errors_escaped(hostile, capsys):
    code, out, _ = run(capsys, "list")

    assert code == 0 and hostile in out
    assert terminal_controls(out) == []
    assert "mail\\x1b]0;owned\\x07" in out and "cannot reach smtp\\x1b[31m" in out


def test_show_prints_control_characters_escaped_in_every_field(hostile, capsys):
    code, out, _ = run(capsys, "show", hostile)

    assert code == 0
    assert terminal_controls(out) == []
    assert "type        mail\\x1b]0;owned\\x07\\x1b[2J" in out
    assert "error       RuntimeError: cannot reach smtp\\x1b[31m\\x9b2J\\u202eevil" in out


def test_stats_shows_a_hostile_job_type_escaped(hostile, capsys):
    code, out, _ = run(capsys, "stats")

    assert code == 0 and "mail\\x1b]0;owned" in out
    assert terminal_controls(out) == []


@pytest.mark.parametrize("command", ["list", "show"])
def test_json_output_stays_exact_and_holds_no_raw_control_character(hostile, queue, capsys,
                                                                    command):
    code, out, _ = run(capsys, *([command, hostile] if command == "show" else [command]),
                       "--json")

    assert code == 0
    job = json.loads(out) if command == "show" else json.loads(out)[0]
    assert {key: job[key] for key in queue.get_job(hostile)} == queue.get_job(hostile)
    assert job["type"] == HOSTILE_TYPE and job["payload"] == {"host": HOSTILE_HOST}
    assert terminal_controls(out) == []


def test_the_worker_s_log_on_the_terminal_shows_a_hostile_error_escaped(hostile, queue, tmp_path):
    again = queue.enqueue("fail", {"host": HOSTILE_HOST}, max_attempts=1)

    done = cli("work", "--handlers", "jobs_for_cli:handlers", cwd=tmp_path,
               extra_env={"PYTHONPATH": str(TESTS), "RUNS_LOG": str(tmp_path / "runs.log")})

    assert done.returncode == 0 and again in done.stderr and "smtp\\x1b[31m" in done.stderr
    assert terminal_controls(done.stderr) == []


def test_an_error_message_quoting_a_hostile_file_name_is_escaped(tmp_path, capsys):
    hostile_file = tmp_path / "data\x1b]0;owned\x07\u202e" / "queue.tsv"
    Queue(hostile_file).enqueue("t", {})

    code, _, err = run(capsys, "--file", str(hostile_file), "show", "0123456789abcdef")

    assert code == 1 and err.count("\n") == 1 and "data\\x1b]0;owned" in err
    assert terminal_controls(err) == []


# --- fault 15: exit codes for storage failures and odd values --------------------------------

def without_root_s_override():
    """For a child process: drop the capabilities that let root ignore file modes, so a file
    with mode 000 is unreadable even when the tests run as root."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("args", [["stats"], ["list"], ["show", "ID"], ["cancel", "ID"],
                                  ["enqueue", "t", "{}"]])
def test_a_queue_file_without_permission_gives_one_line_and_exit_4(queue, tmp_path, args):
    job_id = queue.enqueue("t", {})
    queue.path.chmod(0)
    try:
        done = cli(*[job_id if a == "ID" else a for a in args], cwd=tmp_path,
                   preexec_fn=without_root_s_override)
    finally:
        queue.path.chmod(0o644)

    assert_one_line(done, EXIT_STORAGE, "Permission denied", "queue.tsv")
    assert queue.get_job(job_id)["status"] == "pending"


def test_a_read_only_queue_file_still_shows_and_refuses_writes_with_exit_4(queue, tmp_path):
    job_id = queue.enqueue("t", {})
    queue.path.chmod(0o444)
    try:
        shown = cli("show", job_id, cwd=tmp_path, preexec_fn=without_root_s_override)
        added = cli("enqueue", "t", "{}", cwd=tmp_path, preexec_fn=without_root_s_override)
    finally:
        queue.path.chmod(0o644)

    assert shown.returncode == 0 and job_id in shown.stdout
    assert_one_line(added, EXIT_STORAGE, "Permission denied")
    assert sum(1 for _ in queue.jobs()) == 1


def test_a_file_size_limit_gives_one_line_and_exit_4(queue, tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored: the write fails with EFBIG, as on a full disk."""
    queue.enqueue("t", {})
    limit = queue.path.stat().st_size + 100

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = cli("enqueue", "t", json.dumps({"big": "x" * 10_000}), cwd=tmp_path,
               preexec_fn=limited)

    assert_one_line(done, EXIT_STORAGE, "File too large")


def test_a_full_disk_gives_one_line_and_exit_4(tmp_path):
    """A 64 KB tmpfs in a private mount namespace, filled up: the enqueue fails with ENOSPC."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a private tmpfs; the size-limit test "
                    "covers the same failed write")
    disk, log = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    queue_file = disk / "data" / "queue.tsv"
    script = f"""
mount -t tmpfs -o size=64k tmpfs {disk} || exit 97
"$0" -m dbbasic_queue --file {queue_file} enqueue t '{{}}' > {log}.first || exit 98
dd if=/dev/zero of={disk}/filler bs=4096 2>/dev/null
"$0" -m dbbasic_queue --file {queue_file} enqueue t "$1" > {log}.out 2> {log}.err
echo $? > {log}.code
"$0" -m dbbasic_queue --file {queue_file} show "$(cat {log}.first)" > {log}.show
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBBASIC_QUEUE_")}
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                           sys.executable, json.dumps({"big": "x" * 20_000})],
                          env=env, capture_output=True, text=True, timeout=60)
    if done.returncode == 97 or "unshare:" in done.stderr:
        pytest.skip(f"cannot mount a private tmpfs here ({done.stderr.strip()}); the size-limit "
                    f"test covers the same failed write")
    assert done.returncode == 0, done.stderr

    err = Path(f"{log}.err").read_text()
    assert Path(f"{log}.code").read_text().strip() == str(EXIT_STORAGE), err
    assert err.startswith("dbbasic-queue: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device" in err
    assert "status      pending" in Path(f"{log}.show").read_text()


def test_a_payload_nested_too_deep_is_a_mistake_in_one_line_exit_2(queue, tmp_path):
    deep = '{"a": ' + "[" * 20_000 + "]" * 20_000 + "}"

    done = cli("enqueue", "t", deep, cwd=tmp_path)

    assert_one_line(done, 2, "nested")
    assert not queue.path.exists()


BIG = "9" * 400


@pytest.mark.parametrize("args, name", [
    (["enqueue", "t", "{}", "--max-attempts", BIG], "--max-attempts"),
    (["work", "--handlers", "jobs_for_cli:handlers", "--max-attempts", BIG], "--max-attempts"),
    (["work", "--handlers", "jobs_for_cli:handlers", "--max-jobs", BIG], "--max-jobs"),
])
def test_a_number_too_large_is_a_mistake_in_one_line_exit_2(queue, tmp_path, args, name):
    done = cli(*args, cwd=tmp_path, extra_env={"PYTHONPATH": str(TESTS),
                                               "RUNS_LOG": str(tmp_path / "runs.log")})

    assert_one_line(done, 2, name)
    assert not queue.path.exists()


def hand_written(queue, **fields) -> str:
    """Add a job through the API, then change some of its fields in the file by hand."""
    job_id = queue.enqueue("t", {"n": 1})
    lines = queue.path.read_text().splitlines()
    header, line = lines[0], lines[-1]
    columns = header.split("\t")
    values = dict(zip(columns, line.split("\t")))
    values.update({k: str(v) for k, v in fields.items()})
    text = queue.path.read_text().replace(line, "\t".join(values[c] for c in columns))
    queue.path.write_text(text)
    return job_id


@pytest.mark.parametrize("fields", [
    {"run_at": 10 ** 17}, {"created_at": 10 ** 30}, {"run_at": -10 ** 20},
    {"payload": '"{""a"": ' + "[" * 5000 + "]" * 5000 + '}"'},
], ids=["far-future run_at", "huge created_at", "far-past run_at", "payload 5000 deep"])
def test_a_hand_edited_extreme_line_is_shown_or_reported_never_a_traceback(queue, tmp_path,
                                                                           fields):
    good = queue.enqueue("t", {"n": 0})
    odd = hand_written(queue, **fields)

    for args in (["list"], ["stats"], ["show", odd], ["show", good]):
        done = cli(*args, cwd=tmp_path)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode in (0, 3), (args, done.stderr)
        if done.returncode == 3:
            assert done.stderr.count("\n") == 1 and "corrupt" in done.stderr
        if args[0] == "list" and done.returncode == 0:
            assert good in done.stdout


def test_a_closed_pipe_ends_list_quietly(queue, tmp_path):
    for n in range(2000):
        queue.enqueue("t", {"n": n})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBBASIC_QUEUE_")}
    reader = subprocess.Popen([sys.executable, "-m", "dbbasic_queue", "list", "--limit", "2000"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        reader.stdout.readline()
        reader.stdout.close()  # as `| head -1` does
        err = reader.stderr.read().decode()
        reader.wait(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(timeout=60)
        reader.stderr.close()

    assert "Traceback" not in err and "Error" not in err, err


def test_an_unreachable_redis_gives_one_line_and_exit_4(tmp_path):
    port = closed_port()
    for args in (["show", "0123456789abcdef"], ["enqueue", "t", "{}"]):
        done = cli(*args, cwd=tmp_path,
                   extra_env={"DBBASIC_QUEUE_URL": f"redis://127.0.0.1:{port}/0"})
        assert_one_line(done, EXIT_STORAGE, f"127.0.0.1:{port}")
