"""Odd input from callers and from hand-edited lines: a caller's mistake is refused with a
TypeError or ValueError that names the argument, before anything is written; a line that does
not read as a job is corrupt to every reader alike, left alone, and never stops the others.

The bounds asserted here are documented ones: payloads nest at most 200 levels; times end
with the year 9999 UTC; durations are at most 100 years; max_attempts at most 1,000,000.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dbbasic_queue import CorruptLineError, Queue, Retry

TESTS = Path(__file__).resolve().parent
MAX_DEPTH = 200  # the documented nesting limit of a payload
END_OF_9999 = 253402300799  # 9999-12-31 23:59:59 UTC, the documented last time
HUNDRED_YEARS = 100 * 365.25 * 86400  # the documented longest duration
HUGE = 10 ** 400  # no float can hold it
WAIT_SECONDS = 60  # upper bound for any child process; they take well under a second


def nested(levels: int, inner=None) -> dict:
    """A dict ``levels`` deep: nested(1) is {}, nested(2) is {"a": {}}."""
    value = {} if inner is None else inner
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_json(levels: int) -> str:
    """The JSON text of nested(levels), built as text: json.dumps itself may run out of stack."""
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


def quoted(text: str) -> str:
    """A field as the file stores it (CSV quoting when it holds a double quote)."""
    return '"' + text.replace('"', '""') + '"' if '"' in text else text


def hand_line(job_id: str, payload: str = "{}", status: str = "pending", created_at="1",
              run_at="1", attempts="0", error: str = "", result: str = "", options: str = "",
              job_type: str = "t") -> str:
    return "\t".join([job_id, job_type, quoted(payload), status, str(created_at), str(run_at),
                      str(attempts), error, quoted(result), quoted(options)])


def add_line(queue: Queue, line: str) -> bytes:
    """Append a line as a person editing the file would; returns its bytes."""
    data = line.encode("utf-8") + b"\n"
    with open(queue.path, "ab") as file:
        file.write(data)
    return data


def cli(path: Path, *args, runs_log: Path = None) -> subprocess.CompletedProcess:
    """``python -m dbbasic_queue --file PATH ARGS`` in a child process, run to its end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBBASIC_QUEUE_")}
    env["RUNS_LOG"] = str(runs_log or path.parent / "runs.log")
    return subprocess.run([sys.executable, "-m", "dbbasic_queue", "--file", str(path),
                           *map(str, args)], cwd=TESTS, env=env, capture_output=True,
                          text=True, timeout=WAIT_SECONDS)


def assert_one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr


def runs(runs_log: Path) -> list:
    return runs_log.read_text().split() if runs_log.exists() else []


@pytest.fixture
def queue(tmp_path):
    return Queue(tmp_path / "data" / "queue.tsv")


def record_to(log: list):
    def handler(payload):
        log.append(payload)
    return handler


# --- fault 7 and 16: deeply nested payloads ---------------------------------------------------

@pytest.mark.parametrize("payload", [
    nested(990), nested(2000), nested(MAX_DEPTH + 1),
    {"list": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)},
], ids=["990 levels", "2000 levels", "one level over the limit", "lists over the limit"])
def test_a_payload_nested_deeper_than_the_limit_is_refused_and_changes_nothing(queue, payload):
    # Given a queue file with a job
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    # When a payload deeper than the documented limit is enqueued
    with pytest.raises(ValueError) as refused:
        queue.enqueue("t", payload)

    # Then it is refused with a ValueError saying the limit, and the file is unchanged
    assert type(refused.value) is ValueError
    assert "nest" in str(refused.value) and str(MAX_DEPTH) in str(refused.value)
    assert queue.path.read_bytes() == before


def test_enqueue_after_refuses_a_deep_payload_at_once(queue):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()
    registered = []

    with pytest.raises(ValueError, match="nest"):
        queue.enqueue_after(registered.append, "t", nested(2000))

    assert registered == [] and queue.path.read_bytes() == before


def test_the_command_line_refuses_a_deep_payload_in_one_line(queue):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    done = cli(queue.path, "enqueue", "t", nested_json(990))

    assert_one_line_error(done, 2, "nest")
    assert queue.path.read_bytes() == before


def test_a_payload_at_the_limit_runs_in_a_real_worker_exactly_as_given(queue, tmp_path):
    # Given a payload exactly as deep as allowed, with brackets inside its strings too
    payload = {"key": "deep", "text": "[{" * 5000, "deep": nested(MAX_DEPTH - 1, {"end": "}]"})}
    job_id = queue.enqueue("send_email", payload)

    # When a real worker runs it
    done = cli(queue.path, "work", "--handlers", "jobs_for_cli:handlers")

    # Then the handler got it and the job completed
    assert done.returncode == 0, done.stderr
    assert runs(tmp_path / "data" / "runs.log") == ["deep"]
    job = queue.get_job(job_id)
    assert job["status"] == "completed" and job["payload"] == payload


def test_brackets_inside_strings_are_not_nesting(queue):
    payload = {"brackets": "[" * 10_000 + "{" * 10_000, "escaped": '\\"[[[[' * 1000}
    job_id = queue.enqueue("t", payload)
    assert queue.get_job(job_id)["payload"] == payload


def test_a_hand_written_990_level_payload_is_a_corrupt_line_and_a_real_worker_runs_the_rest(
        queue, tmp_path):
    # Given a 990-level payload written into the file by hand, between two ordinary jobs
    first = queue.enqueue("send_email", {"key": "first"})
    deep = add_line(queue, hand_line("dddddddddddddddd", nested_json(990),
                                     job_type="send_email"))
    last = queue.enqueue("send_email", {"key": "last"})

    # When a real worker runs
    done = cli(queue.path, "work", "--handlers", "jobs_for_cli:handlers")

    # Then it runs the other jobs, leaves the deep line exactly as it was, and every reader
    # calls that line corrupt
    assert done.returncode == 0, done.stderr
    assert sorted(runs(tmp_path / "data" / "runs.log")) == ["first", "last"]
    assert queue.get_job(first)["status"] == queue.get_job(last)["status"] == "completed"
    assert deep in queue.path.read_bytes().splitlines(keepends=True)
    listed = cli(queue.path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {job["id"] for job in json.loads(listed.stdout)} == {first, last}
    stats = cli(queue.path, "stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["corrupt_lines"] == 1
    assert_one_line_error(cli(queue.path, "show", "dddddddddddddddd"), 3, "corrupt")
    with pytest.raises(CorruptLineError):
        queue.get_job("dddddddddddddddd")


# --- fault 8: one judgement of a corrupt line ---------------------------------------------------

BAD_ID = "bbbbbbbbbbbbbbbb"
CORRUPT_LINES = {
    "options not JSON": hand_line(BAD_ID, options="not json"),
    "options a JSON list": hand_line(BAD_ID, options="[1]"),
    "payload a JSON list": hand_line(BAD_ID, payload="[1]"),
    "payload a JSON number": hand_line(BAD_ID, payload="7"),
    "payload empty": hand_line(BAD_ID, payload=""),
    "payload broken JSON": hand_line(BAD_ID, payload='{"a": '),
    "result broken JSON": hand_line(BAD_ID, result="[1"),
    "max_attempts option a string": hand_line(BAD_ID, options='{"max_attempts": "3"}'),
    "max_attempts option zero": hand_line(BAD_ID, options='{"max_attempts": 0}'),
    "timeout option a string": hand_line(BAD_ID, options='{"timeout": "soon"}'),
    "unique_key option a number": hand_line(BAD_ID, options='{"unique_key": 7}'),
    "payload nested 990 levels": hand_line(BAD_ID, payload=nested_json(990)),
    "run_at negative": hand_line(BAD_ID, run_at="-5"),
    "run_at with a plus sign": hand_line(BAD_ID, run_at="+5"),
    "run_at in Arabic-Indic digits": hand_line(BAD_ID, run_at="\u0665"),
    "run_at of 30 digits": hand_line(BAD_ID, run_at="9" * 30),
    "attempts with spaces": hand_line(BAD_ID, attempts=" 1 "),
}


@pytest.mark.parametrize("line", CORRUPT_LINES.values(), ids=CORRUPT_LINES.keys())
def test_a_line_the_worker_calls_corrupt_is_corrupt_to_every_reader(queue, line):
    # Given an ordinary job and a hand-edited line that cannot be run as it stands
    good = queue.enqueue("t", {"good": True})
    bad = add_line(queue, line)

    # Then stats, get_job and jobs() all call it corrupt
    stats = queue.stats()
    assert stats["corrupt_lines"] == 1 and stats["jobs"] == 1
    with pytest.raises(CorruptLineError, match="line 3"):
        queue.get_job(BAD_ID)
    assert [job["id"] for job in queue.jobs()] == [good]

    # And the worker runs the other job only, leaving the line exactly as it was
    ran = []
    assert queue.process_jobs({"t": record_to(ran)}) == 1
    assert ran == [{"good": True}]
    assert bad in queue.path.read_bytes().splitlines(keepends=True)
    assert queue.stats()["corrupt_lines"] == 1


def test_the_command_line_reports_every_corrupt_line_alike(queue):
    good = queue.enqueue("t", {})
    for number, line in enumerate(CORRUPT_LINES.values()):
        add_line(queue, line.replace(BAD_ID, f"bad{number:013d}", 1))
    before = queue.path.read_bytes()

    stats = cli(queue.path, "stats", "--json")
    listed = cli(queue.path, "list", "--json", "--limit", "100")
    shown = cli(queue.path, "show", "bad0000000000000")

    assert stats.returncode == 0 and json.loads(stats.stdout)["corrupt_lines"] == len(CORRUPT_LINES)
    assert listed.returncode == 0 and [job["id"] for job in json.loads(listed.stdout)] == [good]
    assert_one_line_error(shown, 3, "corrupt", "line 3")
    assert queue.path.read_bytes() == before


def test_a_corrupt_line_holds_no_unique_key(queue):
    # Given a hand-edited line that names a unique key but cannot run (its payload is a list)
    queue.enqueue("t", {})
    add_line(queue, hand_line(BAD_ID, payload="[1]", options='{"unique_key": "welcome:42"}'))

    # When a job with that key is enqueued
    job_id = queue.enqueue("t", {"user": 42}, unique_key="welcome:42")

    # Then it is a new job, which the worker runs, and the key holds while it waits
    assert job_id != BAD_ID and queue.get_job(job_id)["status"] == "pending"
    assert queue.enqueue("t", {"user": 42}, unique_key="welcome:42") == job_id
    ran = []
    assert queue.process_jobs({"t": record_to(ran)}) == 2 and {"user": 42} in ran


def test_a_result_nested_deeper_than_the_limit_is_kept_as_text_and_the_job_reads_back(queue):
    job_id = queue.enqueue("t", {})

    queue.process_jobs({"t": lambda payload: nested(MAX_DEPTH + 100)})

    job = queue.get_job(job_id)
    assert job["status"] == "completed" and isinstance(job["result"], str)
    assert queue.stats()["corrupt_lines"] == 0


# --- fault 12: file descriptors ----------------------------------------------------------------

PER_REQUEST = """
import os, resource, sys
from dbbasic_queue import Queue
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
path = sys.argv[1]

def handle_request(n):  # a web app that builds its Queue in each request
    return Queue(path).enqueue("send_welcome", {"user": n}, unique_key=f"welcome:{n}")

open_before = len(os.listdir("/proc/self/fd"))
ids = [handle_request(n) for n in range(300)]
again = [handle_request(n) for n in range(300)]
print(len(set(ids)), ids == again, len(os.listdir("/proc/self/fd")) - open_before)
"""


def test_queues_built_per_request_with_unique_keys_never_run_out_of_file_descriptors(queue):
    # Given a process allowed 64 open files, building a Queue per request
    done = subprocess.run([sys.executable, "-c", PER_REQUEST, str(queue.path)],
                          capture_output=True, text=True, timeout=WAIT_SECONDS)

    # Then 600 requests with unique keys all succeed, and no descriptor is left open
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["300", "True", "0"]
    assert len(queue.path.read_bytes().splitlines()) == 301


# --- fault 14: far-future times ----------------------------------------------------------------

@pytest.mark.parametrize("run_at", [END_OF_9999 + 1, 1e17, HUGE, 1e300],
                         ids=["end of 9999 + 1", "1e17", "10**400", "1e300"])
def test_a_run_at_after_the_year_9999_is_refused_and_changes_nothing(queue, run_at):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    with pytest.raises(ValueError) as refused:
        queue.enqueue("t", {}, run_at)

    assert type(refused.value) is ValueError and "9999" in str(refused.value)
    assert queue.path.read_bytes() == before


def test_a_run_at_at_the_end_of_9999_is_kept(queue):
    job_id = queue.enqueue("t", {}, END_OF_9999)
    assert queue.get_job(job_id)["run_at"] == END_OF_9999


@pytest.mark.parametrize("when", [["--at", "1e17"], ["--in", "999999999999d"],
                                  ["--at", "253402300800"]])
def test_the_command_line_refuses_far_future_times_in_one_line(queue, when):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    done = cli(queue.path, "enqueue", "t", "{}", *when)

    assert_one_line_error(done, 2, "9999")
    assert queue.path.read_bytes() == before


@pytest.mark.parametrize("kwargs", [{"delay": 1e17}, {"at": 1e17}, {"at": END_OF_9999 + 1},
                                    {"at": HUGE}, {"delay": HUGE}, {"delay": HUNDRED_YEARS + 1}])
def test_retry_refuses_times_beyond_its_bounds(kwargs):
    with pytest.raises(ValueError) as refused:
        Retry(**kwargs)
    assert type(refused.value) is ValueError and "Retry" in str(refused.value)


def test_a_handler_asking_for_a_retry_in_1e17_seconds_fails_its_attempt_and_the_worker_goes_on(
        queue):
    # Given a job whose handler asks to run again in 1e17 seconds, and another job
    far = queue.enqueue("far", {})
    other = queue.enqueue("t", {})

    def far_handler(payload):
        raise Retry(delay=1e17)

    # When the worker runs both
    ran = queue.process_jobs({"far": far_handler, "t": lambda payload: None})

    # Then the far job's attempt failed with a message saying why, and the other one ran
    assert ran == 2
    job = queue.get_job(far)
    assert job["status"] == "pending" and job["attempts"] == 1
    assert "Retry delay" in job["error"] and "100 years" in job["error"]
    assert queue.get_job(other)["status"] == "completed"


def test_far_future_times_written_by_hand_are_shown_and_do_not_stop_a_real_worker(
        queue, tmp_path):
    # Given hand-written lines with times far beyond the year 9999, and an ordinary job
    good = queue.enqueue("send_email", {"key": "good"})
    far = [add_line(queue, hand_line("f" * 15 + "1", run_at=10 ** 17)),
           add_line(queue, hand_line("f" * 15 + "2", status="completed", created_at=10 ** 18,
                                     run_at=10 ** 18, attempts=1)),
           add_line(queue, hand_line("f" * 15 + "3", status="processing", run_at=10 ** 17,
                                     attempts=1))]

    # Then list, stats and show show them
    listed = cli(queue.path, "list")
    assert listed.returncode == 0, listed.stderr
    assert all(f"{'f' * 15}{n}" in listed.stdout for n in (1, 2, 3))
    assert cli(queue.path, "stats").returncode == 0
    shown = cli(queue.path, "show", "f" * 15 + "1")
    assert shown.returncode == 0 and str(10 ** 17) in shown.stdout, shown.stderr
    assert json.loads(cli(queue.path, "show", "f" * 15 + "2", "--json").stdout)["run_at"] == 10 ** 18
    assert queue.stats()["corrupt_lines"] == 0

    # And a real worker runs the ordinary job and leaves them as they were
    done = cli(queue.path, "work", "--handlers", "jobs_for_cli:handlers")
    assert done.returncode == 0, done.stderr
    assert queue.get_job(good)["status"] == "completed"
    lines = queue.path.read_bytes().splitlines(keepends=True)
    assert all(line in lines for line in far)


# --- fault 16 and beyond: odd arguments --------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, error, words", [
    (("t", nested(2000)), {}, ValueError, ["payload", "nest"]),
    (("t", {}, HUGE), {}, ValueError, ["run_at"]),
    (("t", {}), {"max_attempts": HUGE}, ValueError, ["max_attempts"]),
    (("t", {}), {"max_attempts": 1_000_001}, ValueError, ["max_attempts", "1000000"]),
    (("t", {}), {"timeout": HUGE}, ValueError, ["timeout"]),
    (("t", {}), {"timeout": 1e300}, ValueError, ["timeout"]),
    (("t", {}), {"timeout": HUNDRED_YEARS + 1}, ValueError, ["timeout", "100 years"]),
    (("t", {}), {"unique_key": "\ud800"}, ValueError, ["unique_key", "Unicode"]),
    (("t", {}), {"unique_key": "welcome:\udcff"}, ValueError, ["unique_key", "Unicode"]),
], ids=["payload 2000 deep", "run_at 10**400", "max_attempts 10**400", "max_attempts 1000001",
        "timeout 10**400", "timeout 1e300", "timeout over 100 years", "lone surrogate key",
        "surrogate escape key"])
def test_odd_enqueue_arguments_raise_a_plain_error_naming_them_and_write_nothing(
        queue, args, kwargs, error, words):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    with pytest.raises((TypeError, ValueError)) as refused:
        queue.enqueue(*args, **kwargs)

    assert type(refused.value) is error  # not a RecursionError, OverflowError or UnicodeError
    for word in words:
        assert word in str(refused.value)
    assert queue.path.read_bytes() == before


@pytest.mark.parametrize("job_id", ["\ud800", "0123456789abcde\udcff", None, 7,
                                    b"0123456789abcdef", "", "x" * 100_000, "bad\x00id"],
                         ids=["lone surrogate", "surrogate escape", "None", "int", "bytes",
                              "empty", "100,000 characters", "NUL"])
def test_lookups_with_odd_ids_give_none_and_false_and_change_nothing(queue, job_id):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    assert queue.get_job(job_id) is None
    assert queue.cancel_job(job_id) is False
    assert queue.retry_job(job_id) is False
    assert queue.path.read_bytes() == before


def test_retry_failed_of_a_type_no_job_can_have_retries_none(queue):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()
    assert queue.retry_failed("\ud800") == 0
    assert queue.path.read_bytes() == before


@pytest.mark.parametrize("call, error, words", [
    (lambda q: q.purge(HUGE), ValueError, ["older_than"]),
    (lambda q: q.purge(HUNDRED_YEARS + 1), ValueError, ["older_than", "100 years"]),
    (lambda q: q.purge(60, statuses="completed"), TypeError, ["statuses", "list"]),
    (lambda q: q.purge(60, statuses=None), TypeError, ["statuses"]),
    (lambda q: q.retry_failed(7), TypeError, ["job_type"]),
    (lambda q: q.retry_failed(b"t"), TypeError, ["job_type"]),
], ids=["purge older_than 10**400", "purge older_than over 100 years", "purge statuses a str",
        "purge statuses None", "retry_failed job_type int", "retry_failed job_type bytes"])
def test_odd_arguments_to_the_admin_methods_raise_and_change_nothing(queue, call, error, words):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()

    with pytest.raises((TypeError, ValueError)) as refused:
        call(queue)

    assert type(refused.value) is error
    for word in words:
        assert word in str(refused.value)
    assert queue.path.read_bytes() == before


WORKER_OPTIONS = {
    "max_attempts 10**400": ({"max_attempts": HUGE}, "max_attempts"),
    "max_attempts 1000001": ({"max_attempts": 1_000_001}, "max_attempts"),
    "lease 10**400": ({"lease_seconds": HUGE}, "lease_seconds"),
    "lease 1e300": ({"lease_seconds": 1e300}, "lease_seconds"),
    "lease over 100 years": ({"lease_seconds": HUNDRED_YEARS + 1}, "lease_seconds"),
    "timeout 1e300": ({"timeout": 1e300}, "timeout"),
    "timeout 10**400": ({"timeout": HUGE}, "timeout"),
    "max_seconds 10**400": ({"max_seconds": HUGE}, "max_seconds"),
    "retention 10**400": ({"retention_seconds": HUGE}, "retention_seconds"),
    "concurrency 10**400": ({"concurrency": HUGE}, "concurrency"),
}


@pytest.mark.parametrize("method", ["process_jobs", "work"])
@pytest.mark.parametrize("kwargs, name", WORKER_OPTIONS.values(), ids=WORKER_OPTIONS.keys())
def test_odd_worker_options_raise_a_plain_error_before_touching_the_file(queue, method, kwargs,
                                                                         name):
    queue.enqueue("t", {})
    before = queue.path.read_bytes()
    ran = []

    stopped = threading.Event()
    stopped.set()  # work() would otherwise run until stopped, had it accepted the option
    extra = {"stop": stopped} if method == "work" else {}

    with pytest.raises(ValueError) as refused:
        getattr(queue, method)({"t": record_to(ran)}, **kwargs, **extra)

    assert type(refused.value) is ValueError and name in str(refused.value)
    assert ran == [] and queue.path.read_bytes() == before


def test_a_max_jobs_beyond_any_float_means_no_bound(queue):
    queue.enqueue("t", {})
    queue.enqueue("t", {})
    assert queue.process_jobs({"t": lambda payload: None}, max_jobs=HUGE) == 2


@pytest.mark.parametrize("args, words", [
    (["enqueue", "t", "{}", "--max-attempts", str(HUGE)], ["max_attempts"]),
    (["enqueue", "t", "{}", "--timeout", "999999999999d"], ["timeout"]),
    (["enqueue", "t", "{}", "--unique-key", "caf\udce9"], ["unique_key"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--lease", "999999999999d"], ["lease"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--max-attempts", str(HUGE)],
     ["max_attempts"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--timeout", "999999999999d"], ["timeout"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--max-seconds", "9" * 400], ["max_seconds"]),
    (["purge", "--older-than", "999999999999d"], ["older_than"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--concurrency", str(HUGE)], ["concurrency"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--max-jobs", str(HUGE)], ["max_jobs"]),
    (["enqueue", "t", "{}", "--max-attempts", "1000001"], ["max_attempts", "1000000"]),
    (["enqueue", "t", "{}", "--timeout", "40000d"], ["timeout", "100 years"]),
    (["work", "--handlers", "jobs_for_cli:handlers", "--lease", "40000d"], ["lease", "100 years"]),
], ids=["enqueue --max-attempts 10**400", "enqueue --timeout far", "enqueue --unique-key bytes",
        "work --lease far", "work --max-attempts 10**400", "work --timeout far",
        "work --max-seconds 400 digits", "purge --older-than far", "work --concurrency 10**400",
        "work --max-jobs 10**400", "enqueue --max-attempts 1000001",
        "enqueue --timeout over 100 years", "work --lease over 100 years"])
def test_odd_numbers_on_the_command_line_give_one_line_exit_2_and_change_nothing(queue, args,
                                                                                  words):
    queue.enqueue("send_email", {"key": "waiting"})
    before = queue.path.read_bytes()

    done = cli(queue.path, *args)

    # the command line's own checks name the option (--max-attempts), the queue's the argument
    assert_one_line_error(done, 2)
    for word in words:
        assert word in done.stderr or word.replace("_", "-") in done.stderr, done.stderr
    assert queue.path.read_bytes() == before


@pytest.mark.parametrize("path", ["data/\ud800.tsv", "data/que\x00ue.tsv"],
                         ids=["lone surrogate", "NUL"])
def test_a_queue_path_that_cannot_name_a_file_is_refused_when_the_queue_is_built(
        tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as refused:
        Queue(path)
    assert type(refused.value) is ValueError and "queue file" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("job_type, error", [("send\temail", ValueError), (" send", ValueError),
                                             ("\ud800", ValueError), (b"send", TypeError)],
                         ids=["tab", "leading space", "lone surrogate", "bytes"])
def test_a_handler_is_registered_only_for_a_job_type_enqueue_accepts(queue, job_type, error):
    with pytest.raises(error) as refused:
        queue.handler(job_type)
    assert type(refused.value) is error and "job_type" in str(refused.value)
    assert queue.handlers == {}


def dashboard_get(queue: Queue, path: str, query: str = "") -> tuple:
    """GET ``path`` from the dashboard's WSGI app on ``queue`` from the loopback address:
    (status code, body text)."""
    from wsgiref.util import setup_testing_defaults

    from dbbasic_queue.dashboard import DashboardApp
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
               "REMOTE_ADDR": "127.0.0.1"}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers):
        answer["status"] = int(status.split()[0])
    body = b"".join(DashboardApp(queue)(environ, start_response))
    return answer["status"], body.decode("utf-8")


def test_the_dashboard_judges_lines_as_stats_does_and_shows_far_future_times(queue):
    # Given an ordinary job, a line every reader must call corrupt, and a far-future time
    good = queue.enqueue("t", {})
    add_line(queue, hand_line(BAD_ID, payload="[1]"))
    far = "f" * 15 + "1"
    add_line(queue, hand_line(far, run_at=10 ** 17))

    # Then the dashboard counts what stats counts, lists the jobs, and shows the far one
    status, overview = dashboard_get(queue, "/api/overview")
    assert status == 200
    figures = json.loads(overview)
    assert figures["corrupt_lines"] == queue.stats()["corrupt_lines"] == 1
    assert figures["jobs"] == queue.stats()["jobs"] == 2
    status, listing = dashboard_get(queue, "/jobs")
    assert status == 200 and good in listing and far in listing and BAD_ID not in listing
    status, page = dashboard_get(queue, "/jobs/" + far)
    assert status == 200 and "after 9999-12-31" in page
