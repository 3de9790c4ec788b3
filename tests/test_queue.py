"""The TSV queue's behaviour in detail: the published API, retries, leases, a run's bounds,
bad input, retention and the admin verbs.

The clocks are fake (see conftest), so schedules, leases and bounds are tested without
sleeping. What every backend does is in test_backends.py; the file itself in test_storage.py.
"""

import logging
import math
import re
import threading

import pytest

from dbbasic_queue import retry_delay
from support import EMAIL, FAIL_ERROR, WAIT_SECONDS, fail, kill_worker_mid_job, noop, wait_for


def file_bytes(queue):
    return queue.path.read_bytes() if queue.path.exists() else b""


# --- the published API -----------------------------------------------------------------

def test_enqueue_returns_an_id_and_get_job_returns_the_documented_dict(queue, clock):
    job_id = queue.enqueue("send_email", EMAIL)

    assert isinstance(job_id, str) and len(job_id) == 16
    assert queue.get_job(job_id) == {
        "id": job_id, "type": "send_email", "payload": EMAIL, "status": "pending",
        "created_at": int(clock.now), "run_at": int(clock.now), "attempts": 0,
        "error": None, "result": None}


def test_process_jobs_runs_due_jobs_and_records_their_results(queue):
    seen = []
    job_id = queue.enqueue("send_email", EMAIL)

    ran = queue.process_jobs({"send_email": lambda p: seen.append(p) or {"sent": True}})

    assert ran == 1 and seen == [EMAIL]
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["result"], job["error"]) == (
        "completed", 1, {"sent": True}, None)


def test_a_job_scheduled_later_waits_for_its_run_at(queue, clock):
    job_id = queue.enqueue("send_email", EMAIL, run_at=clock.now + 60)

    assert queue.process_jobs({"send_email": noop}) == 0
    clock.advance(60)
    assert queue.process_jobs({"send_email": noop}) == 1
    assert queue.get_job(job_id)["status"] == "completed"


def test_a_float_run_at_is_stored_as_an_int_never_earlier(queue, clock):
    job_id = queue.enqueue("t", {}, run_at=clock.now + 10.2)

    assert queue.get_job(job_id)["run_at"] == math.ceil(clock.now + 10.2)


def test_cancel_job_returns_whether_a_pending_job_was_cancelled(queue):
    done = queue.enqueue("t", {})
    queue.process_jobs({"t": noop})
    later = queue.enqueue("t", {}, run_at=queue.clock() + 100)

    assert queue.cancel_job(later) is True
    assert queue.cancel_job(later) is False
    assert queue.cancel_job(done) is False
    assert queue.get_job(later)["status"] == "cancelled"
    assert queue.process_jobs({"t": noop}) == 0


def test_get_job_on_a_missing_file_is_none_and_creates_nothing(queue):
    assert queue.get_job("0123456789abcdef") is None
    assert queue.cancel_job("0123456789abcdef") is False
    assert queue.process_jobs({}) == 0
    assert not queue.path.exists()


# --- retries ---------------------------------------------------------------------------

def test_retry_delay_follows_the_published_schedule_with_a_cap_and_jitter():
    no_jitter = dict(random=lambda: 0.0)
    assert [retry_delay(n, **no_jitter) for n in (1, 2, 3)] == [120, 240, 480]
    assert retry_delay(10, **no_jitter) == 3600
    assert retry_delay(1, random=lambda: 1.0) == 120 * 0.75
    assert retry_delay(2, base=1, factor=3, cap=100, jitter=0, random=lambda: 0.9) == 9


def test_a_failing_job_is_retried_on_schedule_then_failed_with_its_last_error(queue, clock):
    job_id = queue.enqueue("send_email", EMAIL)

    queue.process_jobs({"send_email": fail})
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert job["run_at"] == math.ceil(clock.now + retry_delay(1, random=lambda: 0.5))
    assert job["error"] == FAIL_ERROR

    clock.advance(job["run_at"] - clock.now - 1)
    assert queue.process_jobs({"send_email": fail}) == 0  # not yet due
    clock.advance(1)
    assert queue.process_jobs({"send_email": fail}) == 1
    clock.advance(3600)
    assert queue.process_jobs({"send_email": fail}) == 1

    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["error"]) == (
        "failed", 3, FAIL_ERROR)
    clock.advance(10 * 3600)
    assert queue.process_jobs({"send_email": fail}) == 0  # failed jobs stay, never rerun


def test_max_attempts_one_fails_at_the_first_error(queue):
    job_id = queue.enqueue("t", {})
    queue.process_jobs({"t": fail}, max_attempts=1)
    assert queue.get_job(job_id)["status"] == "failed"


def test_a_job_without_handler_fails_like_an_error_and_runs_once_one_is_deployed(queue, clock):
    job_id = queue.enqueue("new_feature", {})

    queue.process_jobs({"send_email": noop})
    job = queue.get_job(job_id)
    assert job["status"] == "pending" and "new_feature" in job["error"]

    clock.advance(3600)
    queue.process_jobs({"new_feature": lambda p: "done"})
    assert queue.get_job(job_id)["result"] == "done"


def test_a_result_that_is_not_json_is_stored_as_text_and_never_rerun(queue, caplog):
    calls = []
    job_id = queue.enqueue("t", {})

    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs({"t": lambda p: calls.append(1) or {1, 2}})
    queue.process_jobs({"t": lambda p: calls.append(1)})

    job = queue.get_job(job_id)
    assert (job["status"], job["result"], calls) == ("completed", "{1, 2}", [1])
    assert "not JSON-serialisable" in caplog.text


# --- leases: a worker that died -------------------------------------------------------------

def test_a_job_whose_worker_died_is_taken_again_after_its_lease_and_the_attempt_counts(queue, clock):
    job_id = queue.enqueue("t", {})
    kill_worker_mid_job(queue, lease_seconds=60)
    assert queue.get_job(job_id)["status"] == "processing"
    assert queue.get_job(job_id)["run_at"] == math.ceil(clock.now + 60)

    clock.advance(59)
    assert queue.process_jobs({"t": noop}) == 0  # lease still running
    clock.advance(1)
    assert queue.process_jobs({"t": noop}) == 1

    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("completed", 2)


def test_a_job_that_kills_its_worker_on_every_attempt_ends_failed(queue, clock):
    job_id = queue.enqueue("t", {})
    for _ in range(3):
        kill_worker_mid_job(queue, lease_seconds=10)
        clock.advance(10)

    assert queue.process_jobs({"t": noop}, max_attempts=3) == 0
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert "stopped without a result" in job["error"]


# --- bounds of one run --------------------------------------------------------------------

def test_max_jobs_bounds_a_run_and_leaves_the_rest_pending(queue):
    ids = [queue.enqueue("t", {"n": n}) for n in range(25)]

    assert queue.process_jobs({"t": noop}, max_jobs=10) == 10
    statuses = [queue.get_job(i)["status"] for i in ids]
    assert statuses == ["completed"] * 10 + ["pending"] * 15


def test_max_seconds_stops_claiming_and_puts_unstarted_jobs_back_untouched(queue, monotonic):
    ids = [queue.enqueue("t", {}) for _ in range(40)]
    before = {i: queue.get_job(i) for i in ids}

    def one_second(payload):
        monotonic.advance(1)

    ran = queue.process_jobs({"t": one_second}, max_seconds=5)

    assert ran == 5  # the job in hand is finished, no other starts
    after = [queue.get_job(i) for i in ids]
    assert [j["status"] for j in after] == ["completed"] * 5 + ["pending"] * 35
    assert after[5:] == [before[i] for i in ids[5:]]


# --- the long-running worker (work) --------------------------------------------------------

class WatchedStop(threading.Event):
    """A stop event that tells when the worker waits on it: only an idle loop worker does."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = threading.Event()

    def wait(self, timeout=None):
        self.idle.set()
        return super().wait(timeout)


def test_an_idle_loop_worker_runs_a_job_enqueued_while_it_idles(queue):
    first = queue.enqueue("t", {})
    stop = WatchedStop()
    ran = []
    worker = threading.Thread(target=lambda: ran.append(
        queue.work({"t": noop}, stop=stop, handle_signals=False)))
    worker.start()
    try:
        wait_for(stop.idle.is_set, what="the worker to idle")
        assert queue.get_job(first)["status"] == "completed"

        second = queue.enqueue("t", {})

        wait_for(lambda: queue.get_job(second)["status"] == "completed", seconds=5,
                 what="the job enqueued while the worker idled")
    finally:
        stop.set()
        worker.join(timeout=WAIT_SECONDS)
    assert ran == [2]


def test_a_job_enqueued_just_after_a_run_s_last_look_wakes_the_idle_loop_worker(queue,
                                                                                monkeypatch):
    from dbbasic_queue.worker import loop

    class LateEnqueue(loop.WorkerRun):
        """Enqueues a job right after the first run that found nothing, before the worker
        idles: as a web app may, in that instant."""
        late = []

        def run(self):
            ran = super().run()
            if ran == 0 and not self.late:
                self.late.append(queue.enqueue("t", {"late": True}))
            return ran
    monkeypatch.setattr(loop, "WorkerRun", LateEnqueue)
    stop = threading.Event()
    worker = threading.Thread(target=queue.work, args=({"t": noop},),
                              kwargs=dict(stop=stop, handle_signals=False))
    worker.start()
    try:
        wait_for(lambda: LateEnqueue.late, what="the late enqueue")
        wait_for(lambda: queue.get_job(LateEnqueue.late[0])["status"] == "completed", seconds=5,
                 what="the late job, long before the idle worker's rescan")
    finally:
        stop.set()
        worker.join(timeout=WAIT_SECONDS)


def test_a_loop_worker_stops_once_max_seconds_have_passed_on_its_clock(queue, monotonic):
    ids = [queue.enqueue("t", {}) for _ in range(3)]

    def one_minute(payload):
        monotonic.advance(60)
    stop, ran = threading.Event(), []
    worker = threading.Thread(target=lambda: ran.append(
        queue.work({"t": one_minute}, max_seconds=120, stop=stop, handle_signals=False)))
    worker.start()
    worker.join(timeout=10)  # it returns at once; if it idles instead, it is stopped here
    stop.set()
    worker.join(timeout=WAIT_SECONDS)

    assert ran == [2]
    assert [queue.get_job(i)["status"] for i in ids] == ["completed", "completed", "pending"]


# --- bad input: a clear error, nothing written ------------------------------------------

@pytest.mark.parametrize("job_type, payload, run_at, error", [
    (None, {}, None, TypeError),
    (b"send_email", {}, None, TypeError),
    ("", {}, None, ValueError),
    ("send\temail", {}, None, ValueError),
    ("send\nemail", {}, None, ValueError),
    (" send_email", {}, None, ValueError),
    ("t", ["not", "a", "dict"], None, TypeError),
    ("t", "{}", None, TypeError),
    ("t", {"when": object()}, None, TypeError),
    ("t", {"ids": {1, 2}}, None, TypeError),
    ("t", {"x": float("nan")}, None, TypeError),
    ("t", {}, "tomorrow", TypeError),
    ("t", {}, True, TypeError),
    ("t", {}, float("inf"), ValueError),
    ("t", {}, -1, ValueError),
])
def test_bad_enqueue_arguments_raise_and_write_nothing(queue, job_type, payload, run_at, error):
    queue.enqueue("t", {"first": True})
    before = file_bytes(queue)

    with pytest.raises(error):
        queue.enqueue(job_type, payload, run_at)

    assert file_bytes(queue) == before


def test_the_payload_error_names_the_offending_type(queue):
    with pytest.raises(TypeError, match="set"):
        queue.enqueue("t", {"ids": {1, 2}})


@pytest.mark.parametrize("kwargs, error", [
    (dict(handlers=[("t", noop)]), TypeError),
    (dict(handlers={"t": "noop"}), TypeError),
    (dict(max_attempts=0), ValueError),
    (dict(max_attempts=2.5), TypeError),
    (dict(lease_seconds=0), ValueError),
    (dict(max_jobs=0), ValueError),
    (dict(max_seconds=-1), ValueError),
])
def test_bad_worker_options_raise_before_touching_the_file(queue, kwargs, error):
    queue.enqueue("t", {})
    before = file_bytes(queue)
    kwargs.setdefault("handlers", {"t": noop})

    with pytest.raises(error):
        queue.process_jobs(**kwargs)

    assert file_bytes(queue) == before


# --- logs ----------------------------------------------------------------------------

def test_each_job_logs_its_start_and_success_at_debug_and_failure_with_the_next_run(queue, caplog):
    good, bad = queue.enqueue("good", {}), queue.enqueue("bad", {})

    with caplog.at_level(logging.DEBUG, logger="dbbasic_queue"):
        queue.process_jobs({"good": noop, "bad": fail})

    records = [r for r in caplog.records if r.name == "dbbasic_queue"]
    def logged(level, *parts):
        return any(r.levelno == level and all(p in r.getMessage() for p in parts) for r in records)
    assert logged(logging.DEBUG, good, "started (attempt 1 of 3)")
    assert logged(logging.DEBUG, good, "completed in", "ms")
    assert logged(logging.WARNING, bad, "failed (attempt 1 of 3)", "next try at")


def test_a_run_logs_one_summary_line_at_info_and_nothing_per_job(queue, caplog):
    for n in range(5):
        queue.enqueue("good", {"n": n})
    queue.enqueue("bad", {})
    with caplog.at_level(logging.INFO, logger="dbbasic_queue"):
        queue.process_jobs({"good": noop, "bad": fail})
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1
    assert info[0].startswith("ran 6 jobs in ") and info[0].endswith("s: 5 completed, 1 to retry")



def test_a_run_with_nothing_due_logs_its_one_line_at_debug_only(queue, clock, caplog):
    # Given a job due only in an hour (and so a file to read)
    queue.enqueue("good", {}, run_at=clock.now + 3600)

    # When a run finds nothing due, logged at DEBUG
    with caplog.at_level(logging.DEBUG, logger="dbbasic_queue"):
        assert queue.process_jobs({"good": noop}) == 0

    # Then it says so in one DEBUG line, and nothing at INFO or above
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "dbbasic_queue"]
    assert len(lines) == 1 and lines[0][0] == logging.DEBUG, lines
    assert re.fullmatch(r"ran 0 jobs in \d+\.\d\d s", lines[0][1]), lines


# --- retention -------------------------------------------------------------------------

DAY = 86400


def test_retention_drops_old_completed_and_cancelled_jobs_in_a_rewrite_done_anyway(queue, clock):
    done, failed = queue.enqueue("t", {}), queue.enqueue("bad", {})
    cancelled = queue.enqueue("t", {}, run_at=clock.now + 60)
    queue.cancel_job(cancelled)
    queue.process_jobs({"t": noop, "bad": fail}, max_attempts=1)
    recent = queue.enqueue("t", {})
    queue.process_jobs({"t": noop})
    clock.advance(7 * DAY + 120)
    fresh = queue.enqueue("t", {})

    assert queue.process_jobs({"t": noop}) == 1  # a rewrite it does anyway: drops the old

    assert queue.get_job(done) is None and queue.get_job(cancelled) is None
    assert queue.get_job(failed)["status"] == "failed"  # failed jobs stay until purged
    assert queue.get_job(recent) is None  # completed over 7 days ago too
    assert queue.get_job(fresh)["status"] == "completed"


def test_retention_none_keeps_every_finished_job(queue, clock):
    done = queue.enqueue("t", {})
    queue.process_jobs({"t": noop})
    clock.advance(30 * DAY)
    queue.enqueue("t", {})

    queue.process_jobs({"t": noop}, retention_seconds=None)

    assert queue.get_job(done)["status"] == "completed"


def test_purge_removes_only_finished_jobs_of_the_given_statuses(queue, clock):
    done, failed = queue.enqueue("t", {}), queue.enqueue("bad", {})
    queue.process_jobs({"t": noop, "bad": fail}, max_attempts=1)
    waiting = queue.enqueue("t", {}, run_at=clock.now + DAY)
    clock.advance(2 * DAY)

    assert queue.purge(3 * DAY) == 0
    assert queue.purge(DAY) == 1 and queue.get_job(done) is None
    assert queue.purge(DAY, statuses=["failed"]) == 1 and queue.get_job(failed) is None
    assert queue.get_job(waiting)["status"] == "pending"
    with pytest.raises(ValueError, match="finished"):
        queue.purge(DAY, statuses=["pending"])


def test_retry_job_gives_a_failed_job_fresh_attempts_due_now(queue, clock):
    job_id = queue.enqueue("bad", {})
    queue.process_jobs({"bad": fail}, max_attempts=1)
    clock.advance(100)

    assert queue.retry_job(job_id) is True and queue.retry_job(job_id) is False
    job = queue.get_job(job_id)
    assert (job["status"], job["attempts"], job["run_at"]) == ("pending", 0, int(clock.now))
    assert queue.process_jobs({"bad": noop}) == 1


def test_run_now_makes_a_job_in_backoff_due_now_keeping_its_attempts(queue, clock):
    # Given a job that failed once and waits for its retry
    job_id = queue.enqueue("flaky", {"n": 1})
    queue.process_jobs({"flaky": lambda payload: 1 / 0})
    waiting = queue.get_job(job_id)
    assert waiting["status"] == "pending" and waiting["run_at"] > clock()
    # When it is asked to run now
    assert queue.run_now(job_id) is True
    # Then it is due now with its attempt still counted, and runs at the next worker run
    now_due = queue.get_job(job_id)
    assert now_due["run_at"] <= clock() and now_due["attempts"] == 1
    assert queue.process_jobs({"flaky": lambda payload: "ok"}) == 1
    assert queue.get_job(job_id)["status"] == "completed"


def test_run_now_refuses_finished_jobs_and_a_processing_one_without_force(queue, clock):
    done = queue.enqueue("t", {})
    queue.process_jobs({"t": lambda payload: None})
    assert queue.run_now(done) is False and queue.run_now("nosuchjob0000000") is False
    # A job left processing by a dead worker, its lease still running
    held = queue.enqueue("t", {})
    line = queue.path.read_bytes().replace(f"{held}\tt\t{{}}\tpending".encode(),
                                            f"{held}\tt\t{{}}\tprocessing".encode())
    queue.path.write_bytes(line.replace(b"processing\t%d\t%d\t0" % (clock(), clock()),
                                        b"processing\t%d\t%d\t1" % (clock(), clock() + 300)))
    assert queue.get_job(held)["status"] == "processing"
    assert queue.run_now(held) is False
    assert queue.run_now(held, force=True) is True
    after = queue.get_job(held)
    assert after["status"] == "pending" and after["attempts"] == 0 and after["run_at"] <= clock()


def test_the_tracebacks_of_failed_attempts_are_kept_beside_the_file_not_in_it(queue, clock):
    job_id = queue.enqueue("broken", {"n": 1})

    def broken(payload):
        raise KeyError("subject")
    for _ in range(3):
        queue.process_jobs({"broken": broken})
        clock.advance(3600)
    kept = queue.tracebacks(job_id)
    assert [t["attempt"] for t in kept] == [1, 2, 3]
    assert all(t["error"] == "KeyError: 'subject'" and t["exception"] == "KeyError" for t in kept)
    assert 'raise KeyError("subject")' in kept[0]["traceback"]
    assert "Traceback (most recent call last)" in kept[0]["traceback"]
    # queue.tsv keeps one short line; get_job keeps its published shape
    assert b"Traceback" not in queue.path.read_bytes()
    assert set(queue.get_job(job_id)) == {"id", "type", "payload", "status", "created_at",
                                         "run_at", "attempts", "error", "result"}
    # and one grep finds the job's line and its tracebacks
    found = [line for path in queue.path.parent.glob("queue*.tsv")
             for line in path.read_bytes().splitlines() if line.startswith(job_id.encode())]
    assert len(found) == 4
    assert queue.tracebacks("nosuchjob") == [] and queue.tracebacks("\ud800") == []


def test_a_traceback_is_cut_to_its_start_and_end_and_goes_with_retention(queue, clock):
    from dbbasic_queue.storage.tracebacks import MAX_TRACEBACK_CHARS
    job_id = queue.enqueue("deep", {})

    def deep(payload, n=300):
        return deep(payload, n - 1) if n else 1 / 0
    queue.process_jobs({"deep": deep}, max_attempts=1)
    [kept] = queue.tracebacks(job_id)
    assert len(kept["traceback"]) <= MAX_TRACEBACK_CHARS + 100
    assert kept["traceback"].startswith("Traceback") and "ZeroDivisionError" in kept["traceback"]
    clock.advance(9 * 86400)
    queue.process_jobs({}, retention_seconds=7 * 86400)
    assert queue.tracebacks(job_id) == []


def test_run_at_takes_a_timezone_aware_datetime_and_refuses_a_naive_one(queue, clock):
    from datetime import datetime, timedelta, timezone
    in_an_hour = datetime.fromtimestamp(clock() + 3600, timezone(timedelta(hours=2)))
    job_id = queue.enqueue("t", {}, run_at=in_an_hour)
    assert queue.get_job(job_id)["run_at"] == int(clock() + 3600)
    before = queue.path.read_bytes()
    with pytest.raises(ValueError, match="no time zone"):
        queue.enqueue("t", {}, run_at=datetime(2030, 1, 1, 9, 0))
    with pytest.raises(ValueError, match="9999"):
        queue.enqueue("t", {}, run_at=datetime.max.replace(tzinfo=timezone.utc))
    assert queue.path.read_bytes() == before
