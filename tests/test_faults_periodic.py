"""Faults of the periodic jobs that users and machines make: a state file edited by hand
into nonsense or far times, an interval too long for any calendar, a clock set a year
ahead and back, and a disk that fills up while a slot is fired. Time is a fake clock in
this process; a failed or cut write is a real child process (periodic_roles.py)."""

import datetime
import json
import logging
import sys

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.model.checks import LAST_TIMESTAMP
from dbbasic_queue.periodic.cron import Every
from dbbasic_queue.dashboard import DashboardApp
from dbbasic_queue.periodic.schedules import CLOCK_ERROR_SECONDS, Schedule
from support import TESTS, finish, runs

ROLES = TESTS / "periodic_roles.py"
UTC = datetime.timezone.utc
MINUTE, HOUR, DAY = 60, 3600, 86400
FAR = "9999-12-31T23:59:59Z"


def at(text: str) -> int:
    """A UTC time as Unix seconds: at("2026-01-05 10:10")."""
    return int(datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp())


def state_path(queue):
    return queue.path.with_name("queue.schedules.tsv")


def edit_state(queue, name: str, **columns) -> None:
    """Set columns of one schedule's line in the state file, as a hand edit does."""
    header, *lines = state_path(queue).read_text().splitlines()
    names = header.split("\t")
    edited = []
    for line in lines:
        fields = line.split("\t")
        if fields[0] == name:
            for column, value in columns.items():
                fields[names.index(column)] = value
        edited.append("\t".join(fields))
    state_path(queue).write_text("\n".join([header, *edited]) + "\n")


def slots(queue, job_type):
    return sorted(job["payload"]["slot"] for job in queue.jobs()
                  if job["type"] == job_type and "slot" in job["payload"])


def row(queue, name):
    (found,) = [r for r in queue.stats()["schedules"] if r["schedule"] == name]
    return found


def overview_status(queue) -> str:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_HOST": "127.0.0.1:8321", "wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8321"}
    captured = {}
    b"".join(DashboardApp(queue)(environ, lambda status, headers: captured.update(status=status)))
    return captured["status"]


def two_schedules_fired_at_10_10(queue, clock, first=None):
    """``first`` (default: every 10 minutes, ``tick``) and ``tock`` every 10 minutes, seen at
    10:05 and fired at 10:10."""
    clock.now = at("2026-01-05 10:05")
    (first or queue.periodic(every=600, job_type="tick"))(lambda payload: None)
    queue.periodic(every=600, job_type="tock")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:10") + 1
    queue.process_jobs(queue.handlers)


# --- 6. a number out of range in the state file ---------------------------------------------

JOB = "0123456789abcdef"


@pytest.mark.parametrize("column, value", [
    ("firing", f'[["{JOB}", 1e999, null]]'),  # a float beyond any: int() overflows
    ("firing", f'[["{JOB}", {10 ** 30}, null]]'),  # a slot past the year 9999
    ("firing", f'[["{JOB}", 1767607800, -5]]'),  # a previous slot before 1970
    ("firing", "[" * 100_000 + "]" * 100_000),  # too deep for json
    ("firing", f'{{"{JOB}": 1}}'),
    ("done_until", "0001-01-01T00:00:00Z"),
], ids=["infinite", "past-9999", "before-1970", "too-deep", "not-a-list", "year-1"])
def test_an_out_of_range_value_in_the_state_file_holds_only_its_schedule(
        queue, clock, caplog, children, column, value):
    # Given two schedules fired at 10:10, and tick's line edited by hand
    two_schedules_fired_at_10_10(queue, clock)
    edit_state(queue, "tick", **{column: value})
    edited = state_path(queue).read_text()
    # When workers run at 10:20:01 (each a new process: a new Queue)
    clock.now = at("2026-01-05 10:20") + 1
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        for _ in range(2):
            Queue(queue.path, clock=clock).process_jobs(queue.handlers)
    # Then the other schedule fires, tick does not, and its line is left as it is
    assert slots(queue, "tock") == [at("2026-01-05 10:10"), at("2026-01-05 10:20")]
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    assert f"{state_path(queue)}, line 2: a corrupt line (" in caplog.text
    assert "schedule tick does not fire until then" in caplog.text
    assert value[:50] in state_path(queue).read_text()
    def ticks(text):
        return [line for line in text.splitlines() if line.startswith("tick")]
    assert ticks(state_path(queue).read_text()) == ticks(edited)
    # And stats, the schedules command and the dashboard say so, without failing
    assert row(queue, "tick")["status"] == "corrupt" and row(queue, "tick")["next_slot"] is None
    assert row(queue, "tock")["next_slot"] == at("2026-01-05 10:30")
    assert overview_status(queue).startswith("200")
    stats = children.cli("--file", queue.path, "stats", "--json")
    assert json.loads(finish(stats))["schedules"][0]["status"] == "corrupt"
    listed = children.cli("--file", queue.path, "schedules")
    out, err = listed.communicate(timeout=60)
    assert listed.returncode == 0
    assert "tick\n  when       every 600s (catch_up latest), corrupt" in out
    assert err.count("line 2: a corrupt line") == 1
    # And once the line is removed by hand, tick starts afresh from the next worker run
    state_path(queue).write_text("".join(line for line in edited.splitlines(keepends=True)
                                         if not line.startswith("tick")))
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:30") + 1
    queue.process_jobs(queue.handlers)
    assert slots(queue, "tick") == [at("2026-01-05 10:10"), at("2026-01-05 10:30")]


def test_a_state_line_fixed_by_hand_catches_up_as_its_policy_says(queue, clock):
    two_schedules_fired_at_10_10(queue, clock)
    edit_state(queue, "tick", firing="[1e999]")
    clock.now = at("2026-01-05 10:20") + 1
    queue.process_jobs(queue.handlers)
    edit_state(queue, "tick", firing="")  # the operator empties the column again
    clock.now = at("2026-01-05 10:30") + 1
    queue.process_jobs(queue.handlers)
    # Then the slots held meanwhile are caught up as for an outage: the latest, once
    assert slots(queue, "tick") == [at("2026-01-05 10:10"), at("2026-01-05 10:30")]
    (job,) = [job for job in queue.jobs() if job["payload"].get("slot") == at("2026-01-05 10:30")
              and job["type"] == "tick"]
    assert job["payload"]["previous_slot"] == at("2026-01-05 10:10")


# --- 7. far times in the state file -------------------------------------------------------

def test_a_far_done_until_in_a_zone_ahead_of_utc_is_shown_and_handled(queue, clock, caplog,
                                                                      children):
    # Given a cron schedule in Tokyo whose line says it fired at the very end of 9999 UTC
    # (10000-01-01 08:59:59 in Tokyo, beyond what a datetime holds)
    two_schedules_fired_at_10_10(queue, clock, queue.periodic("0 3 * * *", timezone="Asia/Tokyo",
                                                              job_type="tokyo"))
    edit_state(queue, "tokyo", done_until=FAR, last_slot=FAR, fired_at=FAR)
    # Then stats, the schedules command and the dashboard show it
    tokyo = row(queue, "tokyo")
    assert tokyo["last_slot"] == LAST_TIMESTAMP
    assert tokyo["next_slot"] == at("2026-01-05 18:00")  # 03:00 JST, from now: a clock error
    assert overview_status(queue).startswith("200")
    assert finish(children.cli("--file", queue.path, "stats")).startswith("file")
    shown = finish(children.cli("--file", queue.path, "schedules"))
    assert "tokyo\n  when       0 3 * * * Asia/Tokyo (catch_up latest), active\n" \
           "  last slot  9999-12-31 23:59:59 UTC\n  next slot  " in shown
    assert shown.split("tokyo\n")[1].split("\n")[2].endswith(" 03:00:00 JST")  # the real clock
    # And the workers fire both schedules: tokyo resumes from now, saying why
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        for now in (at("2026-01-05 10:20") + 1, at("2026-01-05 18:00") + 1):
            clock.now = now
            queue.process_jobs(queue.handlers)
    assert slots(queue, "tokyo") == [at("2026-01-05 18:00")]
    assert slots(queue, "tock")[-1] == at("2026-01-05 18:00")
    assert "schedule tokyo: its slots are settled up to 9999-12-31T23:59:59Z" in caplog.text


def test_describe_slot_shows_a_time_past_9999_in_local_time_as_utc():
    from dbbasic_queue.periodic.cron import zone
    from dbbasic_queue.periodic.schedules import describe_slot
    assert describe_slot(LAST_TIMESTAMP, zone("Asia/Tokyo")) == "9999-12-31 23:59:59 UTC"
    assert describe_slot(at("2026-01-05 18:00"), zone("Asia/Tokyo")) == "2026-01-06 03:00:00 JST"


@pytest.mark.parametrize("expression, timezone", [
    ("0 3 * * *", "Asia/Tokyo"), ("59 23 31 12 *", "America/Los_Angeles"),
    ("*/15 * * * *", "Europe/Berlin"), ("0 0 * * *", "UTC")])
def test_cron_slots_end_with_the_year_9999_in_any_zone(expression, timezone):
    from dbbasic_queue.periodic.cron import Cron
    cron = Cron(expression, timezone)
    for moment in (LAST_TIMESTAMP - 2 * DAY, LAST_TIMESTAMP, LAST_TIMESTAMP + DAY):
        assert all(0 <= slot <= LAST_TIMESTAMP for slot in cron.slots_after(moment))
        assert next(cron.slots_until(moment)) <= LAST_TIMESTAMP


# --- 8. an interval longer than 100 years -------------------------------------------------

@pytest.mark.parametrize("every", [datetime.timedelta(days=4_000_000), 10 ** 400,
                                   3_155_760_001], ids=["4M-days", "400-digits", "100y+1s"])
def test_an_interval_beyond_100_years_is_refused_at_declaration_naming_the_bound(queue, every):
    with pytest.raises(ValueError, match=r"at most 100 years \(3155760000 s\)"):
        queue.periodic(every=every)(lambda payload: None)
    assert queue.handlers == {} and queue.handlers.schedules == {}


def test_schedules_whose_slots_pass_the_year_9999_stop_none_of_the_others(queue, clock, caplog):
    # Given, two hours before the end of 9999, the longest interval and crons in zones on
    # either side of UTC, beside a schedule every 10 minutes
    clock.now = LAST_TIMESTAMP + 1 - 2 * HOUR
    queue.periodic(every=datetime.timedelta(days=36525), job_type="century")(lambda payload: None)
    queue.periodic("0 3 * * *", timezone="Asia/Tokyo", job_type="tokyo")(lambda payload: None)
    queue.periodic("59 23 * * *", timezone="America/Los_Angeles", job_type="la")(lambda p: None)
    queue.periodic(every=600, job_type="tick")(lambda payload: None)
    # When workers run until the last second of the year
    with caplog.at_level(logging.ERROR, logger="dbbasic_queue"):
        for minutes in range(0, 121, 10):
            clock.now = LAST_TIMESTAMP + 1 - 2 * HOUR + minutes * MINUTE
            queue.process_jobs(queue.handlers)
    # Then the schedule every 10 minutes fired each slot, and nothing failed
    assert len(slots(queue, "tick")) == 11
    assert not caplog.records
    assert row(queue, "century")["next_slot"] is None and row(queue, "la")["next_slot"] is None


class Overflowing(Every):
    """An interval whose slots cannot be worked out (a fault no input is known to cause)."""

    def slots_until(self, moment):
        raise OverflowError("date value out of range")


def test_a_schedule_whose_slots_cannot_be_worked_out_stops_none_of_the_others(queue, clock,
                                                                             caplog):
    two_schedules_fired_at_10_10(queue, clock)
    queue.handlers.schedules["tick"] = Schedule("tick", Overflowing(600))
    clock.now = at("2026-01-05 10:20") + 1
    with caplog.at_level(logging.ERROR, logger="dbbasic_queue"):
        queue.process_jobs(queue.handlers)
        queue.process_jobs(queue.handlers)
    assert slots(queue, "tock") == [at("2026-01-05 10:10"), at("2026-01-05 10:20")]
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    assert caplog.text.count("schedule tick: its slots could not be worked out") == 1


# --- 9. a clock set ahead and back --------------------------------------------------------

def test_a_clock_set_a_year_ahead_and_back_resumes_the_schedule_from_now(queue, clock, caplog):
    # Given a schedule fired at 10:10, then a worker on a clock a year ahead
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=600, job_type="tick")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:10") + 1
    queue.process_jobs(queue.handlers)
    clock.now = at("2027-01-05 10:10") + 1
    queue.process_jobs(queue.handlers)
    # When the clock is set back to the right time
    clock.now = at("2026-01-05 10:20") + 1
    assert row(queue, "tick")["next_slot"] == at("2026-01-05 10:30")  # what the workers do
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        for minutes in (20, 30, 40):
            clock.now = at("2026-01-05 10:00") + minutes * MINUTE + 1
            queue.process_jobs(queue.handlers)
            queue.process_jobs(queue.handlers)
    # Then the schedule goes on from now (as a new one: from its next slot), and one
    # warning said what it did
    # (the 10:10 job is gone: a year on, the worker dropped it, finished over 7 days before)
    assert slots(queue, "tick") == [at("2026-01-05 10:30"), at("2026-01-05 10:40"),
                                    at("2027-01-05 10:10")]
    warnings = [r for r in caplog.records if "tick" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert ("its slots are settled up to 2027-01-05T10:10:00Z, 365.0d ahead of this worker's "
            "clock (2026-01-05T10:20:01Z)") in warnings[0].getMessage()
    assert "it resumes from now" in warnings[0].getMessage()


@pytest.mark.parametrize("back", [5 * MINUTE, CLOCK_ERROR_SECONDS - 1])
def test_a_clock_stepped_back_within_the_bound_refires_no_slot(queue, clock, caplog, back):
    # Given a slot fired by a clock ahead by ``back`` (an NTP correction to come)
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=60, catch_up="all", job_type="tick")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:06") + back
    queue.process_jobs(queue.handlers)
    fired = slots(queue, "tick")
    # When the clock is stepped back and workers run up to where it was
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        for seconds in range(0, back + 1, 60):
            clock.now = at("2026-01-05 10:06") + seconds
            queue.process_jobs(queue.handlers)
    # Then no slot fired twice, nothing was logged, and the next slot fires
    assert slots(queue, "tick") == fired and not caplog.records
    clock.now = at("2026-01-05 10:06") + back + 60
    queue.process_jobs(queue.handlers)
    assert len(slots(queue, "tick")) == len(fired) + 1 == len(set(slots(queue, "tick")))


# --- 10. a full disk while firing ---------------------------------------------------------

def cron_run(children, role, queue, runs_log, now, *extra):
    child = children.start([sys.executable, ROLES, role, queue.path, runs_log, "--clock", now,
                            *extra], stderr=-1)
    out, err = child.communicate(timeout=60)
    return child.returncode, err


def seen_then_fired_at_10_10_01(queue, clock, tmp_path, children, role, *extra):
    """periodic_roles.py's schedules, seen at 10:05 by a cron run; then ``role`` at
    10:10:01. The queue holds a job for next year, so its file is larger than the state
    file (for the size limit)."""
    clock.now = at("2026-01-05 10:05")
    runs_log = tmp_path / "runs.log"
    queue.enqueue("later", {"pad": "x" * 4000}, run_at=at("2027-01-01 00:00"))
    assert cron_run(children, "cron", queue, runs_log, clock.now)[0] == 0
    clock.now = at("2026-01-05 10:10") + 1
    return runs_log, cron_run(children, role, queue, runs_log, clock.now, *extra)


def next_worker_fires(queue, runs_log, caplog):
    from periodic_roles import declare as declare_roles
    declare_roles(queue, str(runs_log))
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs(queue.handlers)
        queue.process_jobs(queue.handlers)


def test_a_firing_that_hits_a_full_disk_fails_loudly_and_the_next_run_fires_its_slot_once(
        queue, clock, tmp_path, children, caplog):
    # Given a cron run at 10:10:01 whose queue file may grow by 40 bytes only (the job's
    # line is longer): a full disk, for that file
    runs_log, (code, err) = seen_then_fired_at_10_10_01(queue, clock, tmp_path, children,
                                                        "size-limit", "--grow", "40")
    # Then it says it could not fire, and why, in one line; and it runs its other jobs
    assert code == 0, err
    assert "could not fire the periodic jobs: [Errno 27] File too large" in err
    assert "Traceback" not in err
    # And a second run with the disk still full fails the same way, losing nothing
    code, err = cron_run(children, "size-limit", queue, runs_log, clock.now, "--grow", "0")
    assert code == 0 and "File too large" in err
    # When the next run has room, it fires the slot, once, and its job runs once
    next_worker_fires(queue, runs_log, caplog)
    assert runs(runs_log) == {f"tick:{at('2026-01-05 10:10')}": 1}
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    state = dict(zip(*[line.split("\t") for line in state_path(queue).read_text().splitlines()
                       if line.startswith(("schedule", "tick"))]))
    assert state["firing"] == "" and queue.get_job(state["last_job"])["status"] == "completed"
    assert "the 1 not in the queue whole is added now" in caplog.text


@pytest.mark.parametrize("then", ["nothing", "an enqueue"])
def test_a_job_line_cut_halfway_is_never_taken_for_the_job(queue, clock, tmp_path, children,
                                                          caplog, then):
    # Given a cron run at 10:10:01 killed halfway through writing the slot's job line
    # (and, maybe, a job enqueued after it, which ends the cut line)
    runs_log, (code, err) = seen_then_fired_at_10_10_01(queue, clock, tmp_path, children,
                                                        "die-mid-append")
    assert code == -9
    assert not queue.path.read_bytes().endswith(b"\n")
    if then == "an enqueue":
        queue.enqueue("later", {}, run_at=at("2027-01-01 00:00"))
    # When the next worker runs
    next_worker_fires(queue, runs_log, caplog)
    # Then it fires the slot again, once; the cut line is a corrupt line, left as it is
    assert runs(runs_log) == {f"tick:{at('2026-01-05 10:10')}": 1}
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    assert queue.stats()["corrupt_lines"] == 1
    assert "the 1 not in the queue whole is added now" in caplog.text
