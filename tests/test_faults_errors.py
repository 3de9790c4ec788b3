"""Exceptions a handler can raise that the worker used to mishandle (issue 19, faults 4 and 5):
one whose text cannot be made, and one whose text is megabytes long."""

import logging

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.model.job import MAX_ERROR_CHARS
from dbbasic_queue.storage.tracebacks import MAX_TRACEBACK_CHARS


class StrRaises(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class StrAndReprRaise(StrRaises):
    def __repr__(self):
        raise RuntimeError("nor this")


class StrReturnsBytes(Exception):
    def __str__(self):
        return b"bytes"  # type: ignore[return-value]


@pytest.mark.parametrize("kind", [StrRaises, StrAndReprRaise, StrReturnsBytes])
def test_an_exception_whose_text_cannot_be_made_is_a_recorded_failed_attempt(tmp_path, clock, kind):
    # Given a handler raising an exception whose str() raises (or returns no string)
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    job_id = queue.enqueue("broken", {})
    after = queue.enqueue("after", {})

    def broken(payload):
        raise kind()
    # When a worker runs it
    assert queue.process_jobs({"broken": broken, "after": lambda payload: "ok"}) == 2
    # Then its attempt is counted with a retry time, and its class named in the error
    job = queue.get_job(job_id)
    assert job["status"] == "pending" and job["attempts"] == 1 and job["run_at"] > clock()
    assert job["error"].startswith(f"{kind.__name__}: ") and len(job["error"]) > len(kind.__name__) + 3
    assert queue.tracebacks(job_id)[0]["exception"].endswith(kind.__qualname__)
    assert queue.get_job(after)["status"] == "completed"
    clock.advance(3600)  # well past its lease and its retry: it runs again, it is not stuck
    assert queue.process_jobs({"broken": broken}) == 1
    assert queue.get_job(job_id)["attempts"] == 2


def test_a_five_megabyte_error_is_cut_in_the_line_and_the_log_and_kept_longer_in_the_traceback_file(
        tmp_path, clock, caplog):
    # Given a handler whose exception carries an HTML error page of 5 MB
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    job_id = queue.enqueue("fetch", {})
    page = "<html>" + "x" * 5_000_000 + "</html>"

    def fetch(payload):
        raise ValueError(page)
    # When it fails
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs({"fetch": fetch})
    # Then the queue's line holds at most MAX_ERROR_CHARS of it, saying it was cut
    job = queue.get_job(job_id)
    assert len(job["error"]) <= MAX_ERROR_CHARS
    assert job["error"].startswith("ValueError: <html>xxx") and "5,000,025 characters in all" in job["error"]
    assert (tmp_path / "queue.tsv").stat().st_size < 3 * MAX_ERROR_CHARS
    # and so does every log line
    assert caplog.records and max(len(r.getMessage()) for r in caplog.records) < MAX_ERROR_CHARS + 500
    # and the traceback file keeps more of it, within its own bound
    kept = queue.tracebacks(job_id)[0]
    assert MAX_ERROR_CHARS < len(kept["error"]) <= MAX_TRACEBACK_CHARS
    assert len(kept["traceback"]) <= MAX_TRACEBACK_CHARS + 100
    assert sum(path.stat().st_size for path in tmp_path.glob("queue.tracebacks.*.tsv")) < 4 * MAX_TRACEBACK_CHARS


# --- stats, as every other reader sees the files (faults 13 and 14) -------------------------

def archive_line(tmp_path, line: bytes) -> None:
    from dbbasic_queue.model.job import HEADER
    path = tmp_path / "queue.2026-11-29.tsv"
    if not path.exists():
        path.write_bytes(HEADER)
    with open(path, "ab") as file:
        file.write(line)


def test_stats_counts_a_job_in_the_live_file_and_an_archive_file_once(tmp_path, clock):
    # Given a job in queue.tsv and in an archive file, as a kill in the middle of a move leaves it
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    job_id = queue.enqueue("send_email", {})
    queue.process_jobs({"send_email": lambda payload: None})
    line = next(line for line in (tmp_path / "queue.tsv").read_bytes().splitlines(keepends=True)
                if line.startswith(job_id.encode()))
    archive_line(tmp_path, line)
    # Then stats counts it once, as list does
    stats = queue.stats()
    assert stats["jobs"] == 1 and stats["by_status"]["completed"] == 1
    assert [job["id"] for job in queue.jobs()] == [job_id]


@pytest.mark.parametrize("fields", [
    ("send_email", "{not json", "completed", "1764400000", "1764400000", "1", "", ""),
    ("send_email", "{}", "completed", "12abc", "1764400000", "1", "", ""),
    ("send_email", "{}", "completed", "1764400000", "1764400000", "1", "", "{broken"),
])
def test_an_archived_line_edited_into_nonsense_is_corrupt_to_stats_as_to_get_job(tmp_path, clock, fields):
    from dbbasic_queue import CorruptLineError
    queue = Queue(tmp_path / "queue.tsv", clock=clock)
    queue.enqueue("other", {})
    job_id = "00000000000000aa"
    archive_line(tmp_path, ("\t".join((job_id,) + fields + ("",)) + "\n").encode())
    with pytest.raises(CorruptLineError):
        queue.get_job(job_id)
    stats = queue.stats()
    assert stats["corrupt_lines"] == 1 and stats["by_status"]["completed"] == 0 and stats["jobs"] == 1
