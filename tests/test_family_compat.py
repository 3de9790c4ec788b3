"""What the other dbbasic packages call, on our own: ``from dbbasic.queue import Queue`` with
``push``/``pop``, ``dbbasic_queue._read_tsv``, ``dbbasic_queue.cli.COMMANDS`` and
``dbbasic_queue.admin.ADMIN_CONFIG``. test_family_packages.py runs the published packages'
own code against them; test_install_kinds.py installs the package both ways."""

import base64
import collections
import json
import logging
import math
import os
import sys

import pytest

import dbbasic_queue
from dbbasic.queue import Queue as FamilyQueue
from dbbasic_queue import Queue, admin
from dbbasic_queue.cli import COMMANDS, main
from dbbasic_queue.family.compat import PUSH_TYPE
from dbbasic_queue.model.job import parse_line
from support import ROOT, FakeClock, StartLine, append_line, finish, kill, runs, wait_for

UPLOAD = bytes(range(256)) * 4  # every byte value, as an uploaded file may hold


@pytest.fixture
def family(tmp_path):
    """dbbasic-web's queue: ``Queue(path)`` from ``dbbasic.queue``, on a fake clock."""
    return FamilyQueue(tmp_path / "_data" / "jobs.tsv", clock=FakeClock())


# --- push and pop ---------------------------------------------------------------------------

def test_dbbasic_queue_queue_is_our_queue_with_push_and_pop(family):
    assert isinstance(family, Queue)
    assert callable(family.push) and callable(family.pop)


def test_pop_gives_back_what_push_was_given_values_and_types_alike(family):
    payloads = [
        {"task": "process_upload", "args": {"filename": "photo.png", "data": UPLOAD}},
        {"task": "write_flatfile", "args": {"relpath": "é ☃.txt", "content": "a\tb\nc\"d"}},
        {"empty": b"", "nested": [b"\x00", {"deep": [1, 2.5, True, None, "x"]}], "n": -7},
        {"__bytes__": "a dict of the caller's that looks like a tag"},
        {"__dict__": {"__bytes__": "so does this"}},
        {},
    ]
    for payload in payloads:
        family.push(payload)

    popped = [family.pop() for _ in payloads]

    assert popped == payloads
    assert [type(p["args"]["data"]) for p in popped[:1]] == [bytes]
    assert type(popped[2]["nested"][0]) is bytes and type(popped[2]["n"]) is int
    assert family.pop() is None


def test_a_pushed_job_is_one_readable_line_its_bytes_in_base64(family):
    job_id = family.push({"task": "process_upload", "args": {"filename": "a", "data": UPLOAD}})

    [line] = family.path.read_bytes().splitlines()[1:]
    text = line.decode("ascii")  # the file stays plain text: bytes never reach it raw
    assert text.startswith(f"{job_id}\t{PUSH_TYPE}\t")
    job = family.get_job(job_id)
    assert job["status"] == "pending"
    assert job["payload"]["args"]["data"] == {"__bytes__": base64.b64encode(UPLOAD).decode()}


@pytest.mark.parametrize("value, where, kind", [
    ((1, 2), "payload['args']['x']", "tuple"),
    ({1, 2}, "payload['args']['x']", "set"),
    (bytearray(b"ab"), "payload['args']['x']", "bytearray"),
    (object(), "payload['args']['x']", "object"),
    ([b"ok", 1j], "payload['args']['x'][1]", "complex"),
    ({1: "int key"}, "payload['args']['x']", "key 1"),
    (math.nan, "payload['args']['x']", "nan"),
    (math.inf, "payload['args']['x']", "inf"),
])
def test_a_value_push_cannot_give_back_is_refused_with_a_type_error_and_nothing_is_written(
        family, value, where, kind):
    with pytest.raises(TypeError) as refused:
        family.push({"task": "t", "args": {"x": value}})

    assert where in str(refused.value) and kind in str(refused.value)
    assert not family.path.exists()


def test_push_takes_a_dict_only_and_refuses_a_payload_that_holds_itself(family):
    with pytest.raises(TypeError, match="push takes a dict, not list"):
        family.push([1, 2])
    looped = {"task": "t"}
    looped["self"] = looped
    with pytest.raises(TypeError, match="holds itself"):
        family.push(looped)
    assert not family.path.exists()


def test_pop_takes_the_oldest_due_pushed_job_and_leaves_other_jobs_to_process_jobs(family):
    # Given pushed jobs around an ordinary job, one running, and one of them waiting for a retry
    first = family.push({"n": 1})
    email = family.enqueue("send_email", {"to": "a@example.com"})
    later = family.enqueue(PUSH_TYPE, {"n": "not yet"}, run_at=family.clock() + 60)
    second = family.push({"n": 2})

    # When popping until None
    popped = [family.pop(), family.pop(), family.pop()]

    # Then the due pushed jobs came in file order, and only they
    assert popped == [{"n": 1}, {"n": 2}, None]
    assert family.get_job(email)["status"] == "pending"
    assert family.get_job(later)["status"] == "pending"
    family.clock.advance(60)
    assert family.pop() == {"n": "not yet"}
    assert [family.get_job(i)["status"] for i in (first, second)] == ["completed", "completed"]


def test_a_popped_job_is_completed_at_the_pop_and_never_runs_in_process_jobs(family):
    job_id = family.push({"task": "write_flatfile"})
    family.clock.advance(5)

    assert family.pop() == {"task": "write_flatfile"}

    job = family.get_job(job_id)
    assert (job["status"], job["attempts"], job["run_at"]) == ("completed", 1, family.clock())
    ran = []
    assert family.process_jobs({PUSH_TYPE: ran.append}) == 0 and ran == []
    assert family.pop() is None


def test_process_jobs_runs_a_pushed_job_at_least_once_if_given_a_handler_instead(family):
    family.push({"task": "write_flatfile", "data": b"x"})
    seen = []

    assert family.process_jobs({PUSH_TYPE: seen.append}) == 1

    assert seen == [{"task": "write_flatfile", "data": {"__bytes__": "eA=="}}]  # tagged form
    assert family.pop() is None


def test_pop_on_an_idle_queue_reads_the_file_and_rewrites_nothing(family):
    family.push({"n": 1})
    family.pop()
    before = os.stat(family.path)

    assert family.pop() is None

    after = os.stat(family.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert FamilyQueue(family.path.with_name("none.tsv")).pop() is None
    assert not family.path.with_name("none.tsv").exists()


def test_a_corrupt_pushed_line_is_reported_once_left_alone_and_the_next_job_pops(family, caplog):
    family.push({"n": 1})
    family.push({"n": 2})
    lines = family.path.read_bytes().splitlines(keepends=True)
    broken = lines[1].replace(b'{""n"": 1}', b'{""n"": {""__bytes__"": ""%%%""}}')
    family.path.write_bytes(lines[0] + broken + lines[2])

    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        assert family.pop() == {"n": 2}
        assert family.pop() is None

    assert family.path.read_bytes().splitlines(keepends=True)[1] == broken
    warnings = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert warnings == [f"{family.path}, line 2: a corrupt line (its pushed payload cannot be "
                        f"read back (a __bytes__ tag holds broken base64 (Only base64 data is "
                        f"allowed))); fix or remove it by hand"]


def test_pop_moves_old_finished_jobs_to_the_archive_files_as_a_worker_does(family):
    for n in range(3):
        family.push({"n": n})
    family.pop()
    family.pop()
    family.clock.advance(2 * 3600)  # past the archive age of the two popped jobs
    family.push({"n": 3})

    assert family.pop() == {"n": 2}

    live = [parse_line(line).status for _, line in family.table.lines()]
    assert live == ["completed", "pending"]  # the job just popped, and the next
    [(day, archived)] = family.archive.files()
    assert [parse_line(line).payload for _, line in family.archive.table_of(archived).lines()] \
        == ['{"n": 0}', '{"n": 1}']
    assert len(list(family.jobs())) == 4


POPPER = """
import sys
from dbbasic.queue import Queue
from support import append_line, wait_at_start_line
queue, log, start = Queue(sys.argv[1]), sys.argv[2], sys.argv[4]
wait_at_start_line(start)
while True:
    payload = queue.pop()
    if payload is None:
        if sys.argv[3] == "until-empty":
            break
        continue
    append_line(log, payload["key"])
"""


def popper(children, queue_path, log, mode, start):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return children.start([sys.executable, "-c", POPPER, queue_path, log, mode, start.directory],
                          env=env)


def test_four_processes_popping_at_once_hand_each_of_200_jobs_over_exactly_once(tmp_path,
                                                                               children):
    queue = FamilyQueue(tmp_path / "_data" / "jobs.tsv")
    for n in range(200):
        queue.push({"key": str(n), "data": b"\xff" * n})
    log, start = tmp_path / "popped.log", StartLine(tmp_path / "start")

    poppers = [popper(children, queue.path, log, "until-empty", start) for _ in range(4)]
    start.release(len(poppers))
    for child in poppers:
        finish(child)

    assert runs(log) == collections.Counter(str(n) for n in range(200))
    assert {job["status"] for job in queue.jobs()} == {"completed"}


def test_poppers_killed_at_any_moment_never_hand_a_job_over_twice(tmp_path, children):
    queue = FamilyQueue(tmp_path / "_data" / "jobs.tsv")
    for n in range(300):
        queue.push({"key": str(n)})
    log, start = tmp_path / "popped.log", StartLine(tmp_path / "start")
    poppers = [popper(children, queue.path, log, "forever", start) for _ in range(3)]
    start.release(len(poppers))

    # Kill each popper once it has handed over some jobs, then let a last one empty the queue
    for child, after in zip(poppers, (20, 60, 100)):
        wait_for(lambda: sum(runs(log).values()) >= after, what=f"{after} pops")
        kill(child)
    again = StartLine(tmp_path / "again")
    last = popper(children, queue.path, log, "until-empty", again)
    again.release(1)
    finish(last)

    handed = runs(log)
    assert max(handed.values()) == 1  # at most once, whatever was killed when
    jobs = list(queue.jobs())
    assert len(jobs) == 300 and {job["status"] for job in jobs} == {"completed"}
    lost = 300 - len(handed)  # popped by a popper killed before it wrote its log line
    assert 0 <= lost <= len(poppers)


# --- _read_tsv ------------------------------------------------------------------------------

def test_read_tsv_gives_every_job_as_strings_in_the_published_columns_in_file_order(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    queue = Queue("data/queue.tsv", clock=clock)  # the module functions' file
    later = queue.enqueue("send_email", {"to": "a@example.com", "note": 'say "hi"'},
                          run_at=clock() + 60)
    report = queue.enqueue("report", {})
    queue.process_jobs({"report": lambda payload: {"pages": 2}})

    rows = dbbasic_queue._read_tsv()

    now = str(int(clock()))
    assert rows == [
        [later, "send_email", '{"to": "a@example.com", "note": "say \\"hi\\""}', "pending",
         now, str(int(clock() + 60)), "0", "", ""],
        [report, "report", "{}", "completed", now, now, "1", "", '{"pages": 2}'],
    ]
    assert all(type(field) is str for row in rows for field in row)


def test_read_tsv_counts_the_jobs_moved_to_archive_files_once_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    queue = Queue("data/queue.tsv", clock=clock, archive_after=0)
    sent = [queue.enqueue("send_email", {"n": n}) for n in range(3)]
    queue.process_jobs({"send_email": lambda payload: None}, max_jobs=2)
    clock.advance(1)
    waiting = queue.enqueue("send_email", {"n": 3})
    queue.process_jobs({"send_email": lambda payload: None})  # moves the first two
    assert queue.archive.files()

    rows = dbbasic_queue._read_tsv()

    assert [(row[0], row[3]) for row in rows] == [
        (sent[0], "completed"), (sent[1], "completed"),  # from the archive file
        (sent[2], "completed"), (waiting, "completed")]  # from the queue file
    assert [line.split(b"\t")[0].decode() for _, line in queue.table.lines()] == sent[2:] + [
        waiting]


def test_read_tsv_reads_dbbasic_queue_file_and_gives_nothing_without_a_file(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dbbasic_queue._read_tsv() == []
    monkeypatch.setenv("DBBASIC_QUEUE_FILE", str(tmp_path / "elsewhere" / "jobs.tsv"))
    job_id = dbbasic_queue.enqueue("send_email", {})

    assert [row[0] for row in dbbasic_queue._read_tsv()] == [job_id]
    assert not (tmp_path / "data").exists()


def test_read_tsv_skips_a_corrupt_line_reporting_it_as_everywhere(tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.chdir(tmp_path)
    good = dbbasic_queue.enqueue("send_email", {})
    append_line("data/queue.tsv", "oops\tsend_email\t{}\tlost")

    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        rows = dbbasic_queue._read_tsv()

    assert [row[0] for row in rows] == [good]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'data' / 'queue.tsv'}, line 3: a corrupt line (it has 4 fields, not 10 "
        f"(or 9, without options)); fix or remove it by hand"]


# --- COMMANDS for dbbasic-cli ---------------------------------------------------------------

def test_commands_offer_the_queue_verbs_each_with_a_one_line_docstring():
    for name in ("queue:worker", "queue:stats", "queue:list", "queue:show", "queue:retry",
                 "queue:cancel"):
        assert name in COMMANDS
    for name, command in COMMANDS.items():
        assert name.startswith("queue:") and callable(command)
        assert command.__doc__ and "\n" not in command.__doc__.strip(), name


def test_a_command_prints_what_dbbasic_queue_prints_wherever_file_is_given(tmp_path, capsys):
    path = str(tmp_path / "q.tsv")
    job_id = Queue(path).enqueue("send_email", {"to": "a@example.com"})
    Queue(path).process_jobs({"send_email": lambda payload: "sent"})  # stats without a clock
    for command, argv, words in (
            ("queue:stats", ["--file", path, "stats"], ["--file", path]),
            ("queue:list", ["--file", path, "list", "--status", "completed"],
             ["--status", "completed", "--file", path]),
            ("queue:show", ["--file=" + path, "show", job_id], [job_id, "--file=" + path])):
        assert main(argv) == 0
        expected = capsys.readouterr()

        assert COMMANDS[command](words) is None

        assert capsys.readouterr() == expected and "send_email" in expected.out


def test_a_failing_command_leaves_with_dbbasic_queues_exit_code_and_message(tmp_path, capsys):
    path = str(tmp_path / "q.tsv")
    job_id = Queue(path).enqueue("send_email", {})
    Queue(path).process_jobs({"send_email": lambda payload: None})
    for command, words, code in (("queue:show", ["feedfacefeedface"], 1),
                                 ("queue:cancel", [job_id], 1),
                                 ("queue:list", ["--limit", "0"], 2),
                                 ("queue:worker", [], 2)):
        assert main(["--file", path, command.split(":")[1].replace("worker", "work"),
                     *words]) == code
        expected = capsys.readouterr()
        with pytest.raises(SystemExit) as exit:
            COMMANDS[command]([*words, "--file", path])
        assert exit.value.code == code
        assert capsys.readouterr() == expected


# --- ADMIN_CONFIG for dbbasic-admin ---------------------------------------------------------

@pytest.fixture
def fresh_badge(monkeypatch):
    """The badge counted at every read, so a test sees each change at once."""
    monkeypatch.setattr(admin, "REFRESH_SECONDS", 0.0)


def test_the_admin_entry_is_jobs_at_admin_jobs_with_no_badge_to_count_without_a_file(
        tmp_path, monkeypatch, fresh_badge):
    monkeypatch.chdir(tmp_path)
    [entry] = admin.ADMIN_CONFIG

    assert {key: entry[key] for key in ("label", "href", "order")} == {
        "label": "Jobs", "href": "/admin/jobs", "order": 90}
    assert entry["badge"] == 0 and entry.get("icon")
    assert not (tmp_path / "data").exists()


def test_the_admin_badge_counts_failed_jobs_and_follows_the_file(tmp_path, monkeypatch,
                                                                fresh_badge):
    monkeypatch.chdir(tmp_path)
    for n in range(3):
        dbbasic_queue.enqueue("broken", {"n": n})
    dbbasic_queue.enqueue("fine", {})
    dbbasic_queue.process_jobs({"broken": lambda p: 1 / 0, "fine": lambda p: None},
                               max_attempts=1)
    append_line("data/queue.tsv", "hand-edited\tbroken\t{}\tfailed\tnot a time\t0\t1\t\t")
    [entry] = admin.ADMIN_CONFIG

    assert entry["badge"] == 3
    assert json.loads(json.dumps(admin.ADMIN_CONFIG))[0]["badge"] == 3  # as dbbasic-admin's API
    assert dict(entry)["badge"] == 3 and {**entry}["badge"] == 3

    Queue("data/queue.tsv").retry_failed("broken")
    assert entry["badge"] == 0


@pytest.mark.slow  # waits a second of the real clock
def test_the_admin_badge_is_counted_at_most_once_a_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    entry = admin.JobsEntry()
    assert entry["badge"] == 0
    dbbasic_queue.enqueue("broken", {})
    dbbasic_queue.process_jobs({"broken": lambda p: 1 / 0}, max_attempts=1)

    assert entry["badge"] == 0  # read again at once: the count of a moment ago
    assert wait_for(lambda: entry["badge"] == 1, seconds=5, what="a fresh count")


def test_the_admin_badge_never_raises_it_is_left_out_when_the_file_cannot_be_read(
        tmp_path, monkeypatch, fresh_badge, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "queue.tsv").write_text("name\temail\nann\tann@example.com\n")
    [entry] = admin.ADMIN_CONFIG

    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        assert "badge" not in entry and entry.get("badge") is None
        assert json.loads(json.dumps(admin.ADMIN_CONFIG))[0]["label"] == "Jobs"

    assert "is not a dbbasic-queue file" in caplog.records[0].getMessage()
