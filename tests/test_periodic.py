"""Periodic jobs: cron expressions and time zones, firing exactly once per slot whichever
workers run, catch-up after an outage, the state file, inspection, and the Redis backend.

Time is a fake clock in this process; "exactly once" is proven with real overlapping worker
processes on a simulated clock (periodic_roles.py), a day passing in seconds.
"""

import collections
import datetime
import itertools
import json
import logging
import os
import sys
import threading
import time

import pytest

import dbbasic_queue
from dbbasic_queue import Queue, QueueError, UnsupportedError
from dbbasic_queue.worker import loop
from dbbasic_queue.backend import PERIODIC
from dbbasic_queue.periodic.cron import Cron, Every
from dbbasic_queue.periodic.firing import listing
from dbbasic_queue.periodic.schedules import MAX_CATCH_UP_SLOTS, ON_TIME_SECONDS, Handlers, declare
from support import TESTS, StartLine, finish, runs, wait_for

ROLES = TESTS / "periodic_roles.py"
UTC = datetime.timezone.utc
BERLIN = "Europe/Berlin"
MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400


def at(text: str) -> int:
    """A UTC time as Unix seconds: at("2026-10-25 00:30")."""
    return int(datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp())


def local(slot: int, timezone: str = BERLIN) -> str:
    from zoneinfo import ZoneInfo
    return datetime.datetime.fromtimestamp(slot, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def after(when, moment, count):
    return list(itertools.islice(when.slots_after(moment), count))


def record_handlers(runs_log):
    """The handlers of periodic_roles.py's schedules, without the schedules."""
    from periodic_roles import declare as declare_roles
    scratch = Queue(runs_log.with_suffix(".tsv"))
    declare_roles(scratch, str(runs_log))
    return scratch.handlers


def periodic_jobs(queue, job_type=None):
    """The periodic jobs in the queue and archive files, oldest slot first."""
    jobs = [job for job in queue.jobs() if "slot" in job["payload"]
            and job_type in (None, job["type"])]
    return sorted(jobs, key=lambda job: job["payload"]["slot"])


def slots(queue, job_type=None):
    return [job["payload"]["slot"] for job in periodic_jobs(queue, job_type)]


def state_lines(queue):
    path = queue.path.with_name("queue.schedules.tsv")
    header, *lines = path.read_text().splitlines()
    return {line.split("\t")[0]: dict(zip(header.split("\t"), line.split("\t"))) for line in lines}


# --- cron expressions -----------------------------------------------------------------------

@pytest.mark.parametrize("expression, start, expected", [
    ("*/20 * * * *", "2026-01-05 10:05", ["10:20", "10:40", "11:00"]),
    ("5-15/5 8 * * *", "2026-01-05 00:00", ["08:05", "08:10", "08:15", "08:05"]),
    ("5/20 9 * * *", "2026-01-05 00:00", ["09:05", "09:25", "09:45", "09:05"]),
    ("0 9,17 * * *", "2026-01-05 10:00", ["17:00", "09:00", "17:00"]),
    ("0 9 * * MON-fri", "2026-01-09 10:00", ["Mon 09:00", "Tue 09:00"]),  # Friday evening
    ("0 9 * * sat,7", "2026-01-05 10:00", ["Sat 09:00", "Sun 09:00", "Sat 09:00"]),
    ("30 6 1 jan,Jul *", "2026-02-01 00:00", ["2026-07-01 06:30", "2027-01-01 06:30"]),
    ("@hourly", "2026-01-05 10:05", ["11:00", "12:00"]),
    ("@weekly", "2026-01-05 10:00", ["Sun 00:00", "Sun 00:00"]),
    ("0 0 29 2 *", "2026-01-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
])
def test_cron_fields_take_ranges_steps_lists_names_and_nicknames(expression, start, expected):
    # Given an expression in UTC, When its next slots are asked for from a moment,
    # Then they are the times the expression names, in the format of each expectation.
    formats = {5: "%H:%M", 9: "%a %H:%M", 16: "%Y-%m-%d %H:%M"}
    got = [datetime.datetime.fromtimestamp(slot, UTC).strftime(formats[len(text)])
           for slot, text in zip(after(Cron(expression), at(start), len(expected)), expected)]
    assert got == expected


def test_either_day_field_matches_when_both_are_restricted_and_both_must_when_one_starts_with_a_star():
    # 2026-03-01 is a Sunday. "1 and Mondays" (both restricted): the 1st or any Monday.
    either = [datetime.datetime.fromtimestamp(s, UTC).strftime("%d %a")
              for s in after(Cron("0 0 1 * mon"), at("2026-02-27 00:00"), 4)]
    assert either == ["01 Sun", "02 Mon", "09 Mon", "16 Mon"]
    # "every other day from the 1st, on Mondays" (the day of month starts with *): both.
    both = [datetime.datetime.fromtimestamp(s, UTC).strftime("%d %a")
            for s in after(Cron("0 0 */2 * mon"), at("2026-02-27 00:00"), 3)]
    assert both == ["09 Mon", "23 Mon", "13 Mon"]


@pytest.mark.parametrize("args, error, words", [
    (("* * * *",), ValueError, "must have 5 fields"),
    (("0 * * * * *",), ValueError, "seconds and years are not supported"),
    (("60 * * * *",), ValueError, "minute field: '60' is not among 0-59"),
    (("0 24 * * *",), ValueError, "hour field"),
    (("0 0 0 * *",), ValueError, "day of month field"),
    (("0 0 * 13 *",), ValueError, "month field"),
    (("0 0 * * 8",), ValueError, "day of week field"),
    (("0 0 * * monday",), ValueError, "names like sun"),
    (("5-1 * * * *",), ValueError, "runs backwards"),
    (("*/0 * * * *",), ValueError, "a step must be 1 or more"),
    (("1,,2 * * * *",), ValueError, "is not a value"),
    (("0 0 31 4,6 *",), ValueError, "names no day that exists"),
    (("@reboot",), ValueError, "must have 5 fields"),
    ((3,), TypeError, "a cron expression is a str"),
    (("0 3 * * *", "Mars/Olympus"), ValueError, "unknown time zone 'Mars/Olympus'"),
    (("0 3 * * *", "../../etc/passwd"), ValueError, "unknown time zone"),
    (("0 3 * * *", 2), TypeError, "timezone must be a str"),
])
def test_a_bad_cron_expression_or_time_zone_is_refused_naming_the_fix(args, error, words):
    with pytest.raises(error, match=words.replace("*", r"\*")):
        Cron(*args)


def test_slots_counted_back_from_a_moment_are_those_counted_forward_to_it():
    # Over two weeks with both changes of the clocks in Berlin, for fixed and wall-clock times.
    for expression in ("30 2 * * *", "*/15 * * * *", "0,30 1-3 * * *", "0 0 * * sun", "45 2 * * 0"):
        cron = Cron(expression, BERLIN)
        for start in (at("2026-10-18 00:00"), at("2027-03-21 00:00")):
            forward = list(itertools.takewhile(lambda s: s <= start + 2 * WEEK, cron.slots_after(start)))
            backward = list(itertools.takewhile(lambda s: s > start, cron.slots_until(start + 2 * WEEK)))
            assert forward == backward[::-1] and forward, expression
            assert len(set(forward)) == len(forward)


# --- daylight saving time (Europe/Berlin: 2027-03-28 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00) --

def test_a_fixed_time_the_clocks_skip_fires_once_at_the_moment_they_jump():
    # Given 02:30 daily: on 28 March 2027 02:30 does not exist in Berlin.
    got = [local(s) for s in after(Cron("30 2 * * *", BERLIN), at("2027-03-26 12:00"), 3)]
    # Then that day it fires at 03:00 CEST, the first moment after the jump, once.
    assert got == ["2027-03-27 02:30 CET", "2027-03-28 03:00 CEST", "2027-03-29 02:30 CEST"]
    # Two times in the gap (02:00 and 02:30) are one firing at the jump.
    two = [local(s) for s in after(Cron("0,30 2 * * *", BERLIN), at("2027-03-28 00:00"), 2)]
    assert two == ["2027-03-28 03:00 CEST", "2027-03-29 02:00 CEST"]


def test_a_wall_clock_expression_has_no_slot_in_the_skipped_hour():
    got = [local(s) for s in after(Cron("30 * * * *", BERLIN), at("2027-03-27 23:45"), 3)]
    assert got == ["2027-03-28 01:30 CET", "2027-03-28 03:30 CEST", "2027-03-28 04:30 CEST"]
    quarters = after(Cron("*/15 * * * *", BERLIN), at("2027-03-28 00:40"), 3)
    assert [local(s) for s in quarters] == ["2027-03-28 01:45 CET", "2027-03-28 03:00 CEST",
                                            "2027-03-28 03:15 CEST"]
    assert quarters[1] - quarters[0] == 15 * MINUTE  # no gap in real time


def test_a_fixed_time_in_the_repeated_hour_fires_once_at_its_first_occurrence():
    got = after(Cron("30 2 * * *", BERLIN), at("2026-10-24 12:00"), 2)
    assert [local(s) for s in got] == ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]
    assert got[0] == at("2026-10-25 00:30")


def test_a_wall_clock_expression_fires_at_both_occurrences_of_the_repeated_hour():
    got = after(Cron("30 * * * *", BERLIN), at("2026-10-24 23:45"), 3)
    assert [local(s) for s in got] == ["2026-10-25 02:30 CEST", "2026-10-25 02:30 CET",
                                       "2026-10-25 03:30 CET"]
    # */15 over the whole 25-hour day: 100 slots, 15 minutes apart in real time.
    day = list(itertools.takewhile(lambda s: s < at("2026-10-25 23:00"),
                                   Cron("*/15 * * * *", BERLIN).slots_after(at("2026-10-24 22:00") - 1)))
    assert len(day) == 100 and {b - a for a, b in zip(day, day[1:])} == {15 * MINUTE}


def test_midnight_skipped_by_the_clocks_fires_when_they_jump():
    # Santiago moves its clocks from 00:00 to 01:00 on 6 September 2026.
    got = after(Cron("0 0 * * *", "America/Santiago"), at("2026-09-05 12:00"), 2)
    assert [local(s, "America/Santiago") for s in got] == ["2026-09-06 01:00 -03",
                                                           "2026-09-07 00:00 -03"]


def test_every_counts_whole_intervals_from_the_epoch_whatever_the_time_zone():
    every = Every(600)
    assert after(every, at("2026-01-05 10:05"), 2) == [at("2026-01-05 10:10"), at("2026-01-05 10:20")]
    assert list(itertools.islice(every.slots_until(at("2026-01-05 10:10")), 2)) == [
        at("2026-01-05 10:10"), at("2026-01-05 10:00")]


# --- declaring ------------------------------------------------------------------------------

def test_periodic_registers_the_handler_under_its_qualified_name_or_its_job_type(queue):
    @queue.periodic("0 3 * * *", timezone=BERLIN)
    def nightly_report(payload):
        return None

    @queue.periodic(every=datetime.timedelta(minutes=10), catch_up="all", job_type="feeds")
    def refresh(payload):
        return None

    assert queue.handlers == {
        "test_periodic_registers_the_handler_under_its_qualified_name_or_its_job_type.<locals>."
        "nightly_report": nightly_report, "feeds": refresh}
    assert {name: (s.text, s.catch_up) for name, s in queue.handlers.schedules.items()} == {
        "test_periodic_registers_the_handler_under_its_qualified_name_or_its_job_type.<locals>."
        "nightly_report": ("0 3 * * * Europe/Berlin", "latest"),
        "feeds": ("every 600s", "all")}
    # A handler registered already may get a schedule for its own type.
    queue.handler("send")(refresh)
    queue.periodic("@daily", job_type="send")(refresh)
    assert queue.handlers.schedules["send"].text == "@daily UTC"


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((), {}, TypeError, "one of the two"),
    (("0 3 * * *",), {"every": 60}, TypeError, "one of the two"),
    ((), {"every": datetime.timedelta(seconds=1.5)}, ValueError, "whole number of seconds"),
    ((), {"every": 0}, ValueError, "1 or more"),
    ((), {"every": "10m"}, TypeError, "timedelta or a number of seconds"),
    ((), {"every": 60, "timezone": BERLIN}, ValueError, "timezone applies to cron expressions"),
    (("0 3 * * *",), {"catch_up": "some"}, ValueError, "catch_up must be one of 'none', 'latest', 'all'"),
    (("0 3 * * *",), {"job_type": "two\tfields"}, ValueError, "job_type"),
    (("0 3 * * * *",), {}, ValueError, "5 fields"),
])
def test_a_bad_declaration_raises_at_import_time_and_registers_nothing(queue, args, kwargs, error, words):
    with pytest.raises(error, match=words):
        queue.periodic(*args, **kwargs)(lambda payload: None)
    assert queue.handlers == {} and queue.handlers.schedules == {}


def test_two_schedules_for_one_job_type_are_refused(queue):
    queue.periodic("@daily", job_type="report")(lambda payload: None)
    with pytest.raises(ValueError, match="a schedule for 'report' is declared already"):
        queue.periodic("@hourly", job_type="report")(lambda payload: None)
    with pytest.raises(ValueError, match="a handler for 'report' is registered already"):
        queue.handler("report")(lambda payload: None)


def test_dbbasic_queue_periodic_declares_for_the_default_queue(tmp_path, monkeypatch):
    # Given a schedule every second declared at module level, in an app directory
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dbbasic_queue, "handlers", Handlers())
    ran = []

    @dbbasic_queue.periodic(every=1, job_type="heartbeat")
    def heartbeat(payload):
        ran.append(payload["slot"])

    assert dbbasic_queue.handlers.schedules["heartbeat"].text == "every 1s"
    # When cron-like runs of the published process_jobs follow each other (the real clock)
    wait_for(lambda: dbbasic_queue.process_jobs(dbbasic_queue.handlers) and ran, seconds=10,
             what="a heartbeat to fire and run")
    # Then the slots fire in data/queue.tsv, the default queue
    assert (tmp_path / "data" / "queue.schedules.tsv").exists()
    assert dbbasic_queue.get_job(Queue(tmp_path / "data" / "queue.tsv").stats()["schedules"][0]
                                 ["last_job"])["type"] == "heartbeat"


# --- firing ---------------------------------------------------------------------------------

def test_a_new_schedule_fires_its_first_slot_after_a_worker_first_sees_it(queue, clock):
    clock.now = at("2026-01-05 10:05") + 30.0
    ran = []
    queue.periodic(every=datetime.timedelta(minutes=10), job_type="tick")(ran.append)
    # The first run records the schedule: the 10:00 slot, before it saw it, does not fire.
    assert queue.process_jobs(queue.handlers) == 0
    clock.now = at("2026-01-05 10:10") + 1.0
    # The next run fires 10:10 and runs its job in the same run.
    assert queue.process_jobs(queue.handlers) == 1
    assert ran == [{"schedule": "tick", "slot": at("2026-01-05 10:10"),
                    "slot_time": "2026-01-05T10:10:00+00:00", "previous_slot": None}]
    clock.advance(30)
    assert queue.process_jobs(queue.handlers) == 0  # nothing due twice
    clock.now = at("2026-01-05 10:20")
    assert queue.process_jobs(queue.handlers) == 1
    assert ran[-1]["previous_slot"] == at("2026-01-05 10:10")


def test_a_slot_the_clocks_skip_is_enqueued_at_the_jump_with_its_local_time(queue, clock):
    clock.now = at("2027-03-27 12:00")
    ran = []
    queue.periodic("30 2 * * *", timezone=BERLIN, job_type="nightly")(ran.append)
    queue.process_jobs(queue.handlers)
    clock.now = at("2027-03-28 00:59") + 59  # 02:59:59 CET: nothing yet
    assert queue.process_jobs(queue.handlers) == 0
    clock.now = at("2027-03-28 01:00") + 1  # 03:00:01 CEST
    assert queue.process_jobs(queue.handlers) == 1
    assert ran[0]["slot"] == at("2027-03-28 01:00")
    assert ran[0]["slot_time"] == "2027-03-28T03:00:00+02:00"


ONE_HOUR, ONE_WEEK = HOUR, WEEK


def outage(queue, clock, catch_up, length):
    """A schedule every 10 minutes, fired at 12:10; then no worker runs for ``length`` and
    7 minutes (past the on-time window), and one run comes back. Returns the slots that run
    fired and the slot fired before the outage."""
    clock.now = at("2026-06-01 12:00") + 1
    queue.periodic(every=datetime.timedelta(minutes=10), catch_up=catch_up, job_type="tick")(
        lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-06-01 12:10") + 1
    queue.process_jobs(queue.handlers)
    before = slots(queue)
    assert before == [at("2026-06-01 12:10")]
    clock.now = at("2026-06-01 12:10") + length + 7 * MINUTE
    queue.process_jobs(queue.handlers)
    return [s for s in slots(queue) if s not in before], before[0]


@pytest.mark.parametrize("length", [ONE_HOUR, ONE_WEEK], ids=["one-hour", "one-week"])
def test_catch_up_latest_fires_once_for_the_latest_missed_slot_after_an_outage(queue, clock, length):
    fired, last_before = outage(queue, clock, "latest", length)
    # Then one job, for the latest slot, telling which slot fired before it
    assert fired == [at("2026-06-01 12:10") + length]
    assert periodic_jobs(queue)[-1]["payload"]["previous_slot"] == last_before
    assert periodic_jobs(queue)[-1]["status"] == "completed"


@pytest.mark.parametrize("length", [ONE_HOUR, ONE_WEEK], ids=["one-hour", "one-week"])
def test_catch_up_all_fires_each_missed_slot_oldest_first_up_to_the_maximum(queue, clock, length,
                                                                           caplog):
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        fired, last_before = outage(queue, clock, "all", length)
    missed = list(range(at("2026-06-01 12:20"), at("2026-06-01 12:10") + length + 1, 10 * MINUTE))
    if length == ONE_HOUR:
        assert fired == missed and len(fired) == 6
        assert not caplog.records
    else:
        # 1008 slots missed in a week: the latest 1000 fire, the 8 oldest are passed over, said so
        assert len(missed) == 1008 and fired == missed[-MAX_CATCH_UP_SLOTS:]
        assert "tick: passed over 8 slots" in caplog.text and "only the latest 1000 fire" in caplog.text
    payloads = [job["payload"] for job in periodic_jobs(queue)]
    assert [p["previous_slot"] for p in payloads[1:]] == [p["slot"] for p in payloads[:-1]]
    assert all(job["status"] == "completed" for job in periodic_jobs(queue))


@pytest.mark.parametrize("length", [ONE_HOUR, ONE_WEEK], ids=["one-hour", "one-week"])
def test_catch_up_none_skips_the_missed_slots_and_fires_the_next_one_on_time(queue, clock, length):
    fired, _ = outage(queue, clock, "none", length)
    assert fired == []
    # The next slot, 3 minutes later, fires on time.
    clock.now = at("2026-06-01 12:20") + length + 1
    queue.process_jobs(queue.handlers)
    # (a week on, the 12:10 job itself is gone: retention drops finished jobs after 7 days)
    assert [s for s in slots(queue) if s > at("2026-06-01 12:10")] == [at("2026-06-01 12:20") + length]


def test_catch_up_none_fires_a_slot_a_worker_sees_within_the_on_time_window(queue, clock):
    clock.now = at("2026-06-01 11:59")
    queue.periodic("0 12 * * *", catch_up="none", job_type="noon")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-06-01 12:00") + ON_TIME_SECONDS  # a busy cron: five minutes late
    queue.process_jobs(queue.handlers)
    assert slots(queue) == [at("2026-06-01 12:00")]
    clock.now = at("2026-06-02 12:00") + ON_TIME_SECONDS + 1  # one second more: missed
    queue.process_jobs(queue.handlers)
    assert slots(queue) == [at("2026-06-01 12:00")]


def test_a_loop_worker_wakes_for_the_next_slot_on_time(queue, clock, monkeypatch):
    # Given a schedule a worker has seen, and a loop worker whose monotonic clock stands still
    # (so its periodic rescan never comes), idle after a run that changed nothing
    clock.now = at("2026-01-05 10:05")
    ran = threading.Event()
    queue.periodic(every=datetime.timedelta(minutes=10), job_type="tick")(lambda payload: ran.set())
    queue.process_jobs(queue.handlers)
    runs_ended = []

    class WatchedRun(loop.WorkerRun):
        def run(self):
            try:
                return super().run()
            finally:
                runs_ended.append(time.monotonic())
    monkeypatch.setattr(loop, "WorkerRun", WatchedRun)
    stop = threading.Event()
    worker = threading.Thread(target=queue.work, args=(queue.handlers,),
                              kwargs={"stop": stop, "handle_signals": False})
    worker.start()
    try:
        wait_for(lambda: runs_ended, what="the loop worker's first run")
        # When the clock reaches the slot
        clock.now = at("2026-01-05 10:10")
        # Then the idle worker starts a run and the slot's job runs, within the loop's pickup
        # latency (it looks every 50 ms)
        started = time.monotonic()
        assert ran.wait(10), "the loop worker did not wake for the slot"
        assert time.monotonic() - started < 2
        assert slots(queue) == [at("2026-01-05 10:10")]
    finally:
        stop.set()
        worker.join(10)


def test_a_slot_falling_due_while_a_handler_runs_is_fired_by_the_running_worker(queue, clock):
    clock.now = at("2026-01-05 10:05")
    release, fired = threading.Event(), []
    queue.handler("long")(lambda payload: release.wait(10))
    queue.periodic(every=datetime.timedelta(minutes=10), job_type="tick")(fired.append)
    queue.process_jobs(queue.handlers)
    queue.enqueue("long", {})
    worker = threading.Thread(target=queue.process_jobs, args=(queue.handlers,))
    worker.start()
    try:
        wait_for(lambda: any(job["status"] == "processing" for job in queue.jobs()),
                 what="the long job to start")
        clock.now = at("2026-01-05 10:10") + 1
        wait_for(lambda: slots(queue) == [at("2026-01-05 10:10")], what="the slot to fire")
    finally:
        release.set()
        worker.join(10)
    assert [p["slot"] for p in fired] == [at("2026-01-05 10:10")]  # and ran in that run


# --- the state file -------------------------------------------------------------------------

def test_the_state_file_is_one_readable_line_per_schedule(queue, clock):
    # Given 03:00 in Berlin (02:00 UTC in winter), first seen at 02:59 CET
    clock.now = at("2026-01-05 01:59")
    queue.periodic("0 3 * * *", timezone=BERLIN, job_type="report")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    path = queue.path.with_name("queue.schedules.tsv")
    header = "schedule\twhen\tcatch_up\tstatus\tdone_until\tlast_slot\tfired_at\tlast_job\tfiring\n"
    assert path.read_text() == header + ("report\t0 3 * * * Europe/Berlin\tlatest\tactive\t"
                                         "2026-01-05T01:59:00Z\t\t\t\t\n")
    # When its slot fires, 5 seconds late
    clock.now = at("2026-01-05 02:00") + 5
    queue.process_jobs(queue.handlers)
    (job,) = periodic_jobs(queue)
    assert path.read_text() == header + (
        f"report\t0 3 * * * Europe/Berlin\tlatest\tactive\t2026-01-05T02:00:00Z\t"
        f"2026-01-05T02:00:00Z\t2026-01-05T02:00:05Z\t{job['id']}\t\n")
    assert job["payload"]["slot_time"] == "2026-01-05T03:00:00+01:00"


def test_a_schedule_removed_from_code_stops_firing_and_is_logged_once(queue, clock, tmp_path, caplog):
    # Given two schedules fired by the workers
    clock.now = at("2026-01-05 10:05")
    for job_type in ("kept", "dropped"):
        queue.periodic(every=600, job_type=job_type)(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:10")
    queue.process_jobs(queue.handlers)
    # When the code no longer declares "dropped" and several workers (processes: new
    # Queue objects) run with it, over several slots
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        for minutes in (20, 30, 40):
            clock.now = at("2026-01-05 10:00") + minutes * MINUTE
            for _ in range(2):
                deployed = Queue(queue.path, clock=clock)
                deployed.periodic(every=600, job_type="kept")(lambda payload: None)
                deployed.process_jobs(deployed.handlers)
    # Then it fires no more, and one warning said so
    assert slots(queue, "dropped") == [at("2026-01-05 10:10")]
    assert slots(queue, "kept")[-1] == at("2026-01-05 10:40")
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "is not declared in this worker's code: it fires no more" in warnings[0]
    assert state_lines(queue)["dropped"]["status"] == "removed"
    # And a worker given plain handlers (no schedules) leaves the state alone
    before = queue.path.with_name("queue.schedules.tsv").read_bytes()
    Queue(queue.path, clock=clock).process_jobs({"kept": lambda payload: None})
    assert queue.path.with_name("queue.schedules.tsv").read_bytes() == before


def test_deleting_the_state_file_fires_no_slot_twice_and_restarts_each_schedule_from_the_next_run(
        queue, clock):
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=600, catch_up="all", job_type="tick")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:10") + 1
    queue.process_jobs(queue.handlers)
    # When the file is deleted, with the 10:20 and 10:30 slots missed meanwhile
    queue.path.with_name("queue.schedules.tsv").unlink()
    clock.now = at("2026-01-05 10:30") + 1
    queue.process_jobs(queue.handlers)
    # Then nothing fires twice (nor the missed slots: the schedule is new from now) ...
    assert slots(queue) == [at("2026-01-05 10:10")]
    clock.now = at("2026-01-05 10:40") + 1
    queue.process_jobs(queue.handlers)
    # ... and it goes on from the next slot
    assert slots(queue) == [at("2026-01-05 10:10"), at("2026-01-05 10:40")]


def test_a_corrupt_state_line_is_logged_once_left_alone_and_holds_only_its_schedule(
        queue, clock, caplog):
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=600, job_type="tick")(lambda payload: None)
    queue.periodic(every=600, job_type="tock")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    path = queue.path.with_name("queue.schedules.tsv")
    path.write_text(path.read_text().replace("tick\tevery 600s\tlatest\tactive\t2026",
                                             "tick\tevery 600s\tlatest\tactive\tyesterday"))
    edited = path.read_text()
    clock.now = at("2026-01-05 10:10") + 1
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs(queue.handlers)
        queue.process_jobs(queue.handlers)
    assert slots(queue, "tock") == [at("2026-01-05 10:10")]  # the other schedule is untouched
    assert slots(queue, "tick") == []  # held while its line does not read
    assert caplog.text.count(f"{path}, line 2: a corrupt line (its done_until 'yesterday") == 1
    assert "yesterday" in path.read_text().splitlines()[1]  # in its place, as it was
    assert path.read_text().splitlines()[1] == edited.splitlines()[1]
    # Removed by hand, its schedule starts afresh
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("tick")))
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:20") + 1
    queue.process_jobs(queue.handlers)
    assert slots(queue, "tick") == [at("2026-01-05 10:20")]


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_a_link_or_fifo_planted_as_the_state_file_is_refused_and_the_jobs_still_run(
        queue, clock, tmp_path, planted, caplog):
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=600, job_type="tick")(lambda payload: None)
    ran = []
    queue.handler("send")(ran.append)
    queue.enqueue("send", {"n": 1})
    outside = tmp_path / "outside.txt"
    outside.write_text("not the queue's\n")
    state = queue.path.with_name("queue.schedules.tsv")
    if planted == "symlink":
        state.symlink_to(outside)
    else:
        os.mkfifo(state)
    with caplog.at_level(logging.ERROR, logger="dbbasic_queue"):
        assert queue.process_jobs(queue.handlers) == 1  # returns: no wait on the FIFO
    assert ran == [{"n": 1}]
    assert "could not fire the periodic jobs" in caplog.text and str(state) in caplog.text
    assert outside.read_text() == "not the queue's\n"
    assert queue.stats()["schedules"] is None  # stats says it cannot tell
    with pytest.raises(QueueError, match="queue.schedules.tsv"):
        listing(queue)  # dbbasic-queue schedules: exit 3 with the message


def test_a_changed_definition_counts_its_slots_from_the_change(queue, clock, caplog):
    clock.now = at("2026-01-05 02:00")
    queue.periodic("0 3 * * *", job_type="report")(lambda payload: None)
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 03:00") + 1
    queue.process_jobs(queue.handlers)
    # When a deploy moves it to 02:00, at 10:00 (02:00 has passed today, after the last slot)
    clock.now = at("2026-01-05 10:00")
    changed = Queue(queue.path, clock=clock)
    changed.periodic("0 2 * * *", job_type="report")(lambda payload: None)
    with caplog.at_level(logging.INFO, logger="dbbasic_queue"):
        changed.process_jobs(changed.handlers)
    # Then today's 02:00 does not fire as if missed: the next is tomorrow's
    assert slots(queue) == [at("2026-01-05 03:00")]
    assert "report changed from 0 3 * * * UTC to 0 2 * * * UTC" in caplog.text
    clock.now = at("2026-01-06 02:00") + 1
    changed.process_jobs(changed.handlers)
    assert slots(queue) == [at("2026-01-05 03:00"), at("2026-01-06 02:00")]


@pytest.mark.parametrize("role", ["die-after-recording", "die-before-clearing"])
def test_a_worker_killed_while_firing_loses_no_slot_and_doubles_none(queue, clock, tmp_path,
                                                                      children, role, caplog):
    # Given the schedules of periodic_roles.py, seen at 10:05
    clock.now = at("2026-01-05 10:05")
    runs_log = tmp_path / "runs.log"
    finish(children.start([sys.executable, ROLES, "cron", queue.path, runs_log,
                           "--clock", clock.now]))
    # When a worker at 10:10:01 is SIGKILLed inside its firing (see the role)
    clock.now = at("2026-01-05 10:10") + 1
    child = children.start([sys.executable, ROLES, role, queue.path, runs_log, "--clock", clock.now])
    child.communicate(timeout=60)
    assert child.returncode == -9
    firing = state_lines(queue)["tick"]["firing"]
    assert json.loads(firing)[0][1] == at("2026-01-05 10:10")
    # Then the next worker adds what is missing, once
    from periodic_roles import declare as declare_roles
    declare_roles(queue, str(runs_log))
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs(queue.handlers)
        queue.process_jobs(queue.handlers)
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    assert state_lines(queue)["tick"]["firing"] == ""
    if role == "die-after-recording":
        assert ("a firing of 1 job was cut short (its worker stopped, or could not write); "
                "the 1 not in the queue whole is added now") in caplog.text
    assert runs(runs_log) == {f"tick:{at('2026-01-05 10:10')}": 1}


@pytest.mark.parametrize("role", ["die-after-recording", "die-before-clearing"])
def test_a_firing_cut_short_is_completed_by_a_worker_that_no_longer_declares_its_schedule(
        queue, clock, tmp_path, children, caplog, role):
    clock.now = at("2026-01-05 10:05")
    runs_log = tmp_path / "runs.log"
    finish(children.start([sys.executable, ROLES, "cron", queue.path, runs_log, "--clock", clock.now]))
    clock.now = at("2026-01-05 10:10") + 1
    child = children.start([sys.executable, ROLES, role, queue.path, runs_log, "--clock", clock.now])
    child.communicate(timeout=60)
    assert child.returncode == -9
    # When the next worker's code has only the "quarter" schedule: "tick" was removed
    queue.periodic("*/15 * * * *", timezone=BERLIN, catch_up="all", job_type="quarter")(
        lambda payload: None)
    queue.handler("tick")(lambda payload: None)  # the jobs already queued still run
    with caplog.at_level(logging.WARNING, logger="dbbasic_queue"):
        queue.process_jobs(queue.handlers)
    # Then the slot it had decided to fire is in the queue, once, and "tick" fires no more
    assert slots(queue, "tick") == [at("2026-01-05 10:10")]
    assert state_lines(queue)["tick"]["status"] == "removed"
    assert state_lines(queue)["tick"]["firing"] == ""
    added = "the 1 not in the queue whole is added now" in caplog.text
    assert added == (role == "die-after-recording")
    assert "schedule tick (every 600s) is not declared in this worker's code" in caplog.text


def test_overlapping_real_workers_fire_each_slot_once_over_a_simulated_day(tmp_path, children):
    # Given the 25 hours of 25 October 2026 in Berlin (the clocks go back), passing in about
    # 20 seconds from the start (an hour before, to let the workers see the schedules), and
    # three cron-like workers and one loop worker started at one moment
    start, end = at("2026-10-24 22:00"), at("2026-10-25 23:00")  # midnight to midnight, Berlin
    clock = f"{start - HOUR},go,{(end - start) / 20}"  # from the moment the start line opens
    path, runs_log, line = tmp_path / "data" / "queue.tsv", tmp_path / "runs.log", StartLine(tmp_path / "start")
    workers = [children.start([sys.executable, ROLES, role, path, runs_log, "--clock", clock,
                               "--until", end + HOUR, *line.args()])
               for role in ("cron", "cron", "cron", "loop")]
    line.release(len(workers))
    for worker in workers:
        finish(worker)
    # (jobs a worker fired in its last instant and did not run: a worker without schedules, an
    # hour past the moment the workers stopped at, as a worker's last run fired a slot a few
    # simulated seconds after it, due only then)
    queue = Queue(path, clock=lambda: end + 2 * HOUR)
    queue.process_jobs(dict(record_handlers(runs_log)))
    # Then every slot of the day fired exactly once, and its job ran once
    for job_type, step in (("quarter", 15 * MINUTE), ("tick", 10 * MINUTE)):
        fired = slots(queue, job_type)
        assert fired == list(range(fired[0], fired[-1] + 1, step)), job_type  # none twice or missed
        assert fired[0] <= start and fired[-1] >= end, job_type  # over the whole day
    assert len([s for s in slots(queue, "quarter") if start <= s < end]) == 100  # 25 hours
    assert slots(queue, "nightly") == [at("2026-10-25 00:30")]  # 02:30 CEST, not again at CET
    assert runs(runs_log) == collections.Counter(
        f"{job['type']}:{job['payload']['slot']}" for job in periodic_jobs(queue))
    assert set(runs(runs_log).values()) == {1}


# --- inspection -----------------------------------------------------------------------------

def test_stats_lists_the_schedules_with_their_last_and_next_slots(queue, clock):
    clock.now = at("2026-01-05 10:05")
    queue.periodic(every=600, job_type="tick")(lambda payload: None)
    assert queue.stats()["schedules"] == []
    queue.process_jobs(queue.handlers)
    clock.now = at("2026-01-05 10:10") + 1
    queue.process_jobs(queue.handlers)
    (row,) = queue.stats()["schedules"]
    assert row == {"schedule": "tick", "when": "every 600s", "catch_up": "latest",
                   "status": "active", "last_slot": at("2026-01-05 10:10"),
                   "fired_at": at("2026-01-05 10:10") + 1, "last_job": periodic_jobs(queue)[0]["id"],
                   "next_slot": at("2026-01-05 10:20"), "timezone": "UTC"}


def test_dbbasic_queue_schedules_shows_a_schedule_defined_in_an_app_module(tmp_path, children):
    path = tmp_path / "data" / "queue.tsv"
    # Before any worker ran: the schedules of the app module, new
    shown = finish(children.cli("--file", path, "schedules", "--handlers", "periodic_app:queue"))
    assert "nightly_report\n  when       0 3 * * * Europe/Berlin (catch_up latest), new" in shown
    assert "refresh_feeds\n  when       every 600s (catch_up all), new" in shown
    assert "last slot  -" in shown
    assert " 03:00:00 CE" in shown  # the next 03:00 in Berlin, CET or CEST
    # A worker with the app's handlers records them; the file alone then lists them
    finish(children.cli("--file", path, "work", "--handlers", "periodic_app:queue"))
    listed = json.loads(finish(children.cli("--file", path, "schedules", "--json")))
    assert [(row["schedule"], row["status"]) for row in listed] == [("nightly_report", "active"),
                                                                   ("refresh_feeds", "active")]
    nightly = listed[0]
    assert nightly["timezone"] == BERLIN and nightly["last_slot"] is None
    assert local(nightly["next_slot"]).endswith(("03:00 CET", "03:00 CEST"))
    assert 0 < nightly["next_slot"] - time.time() <= DAY + HOUR


def test_dbbasic_queue_schedules_refuses_handlers_without_schedules(tmp_path, children):
    child = children.cli("--file", tmp_path / "queue.tsv", "schedules", "--handlers",
                         "jobs_for_cli:handlers")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 2
    assert "jobs_for_cli:handlers declares no schedule" in err


# --- backends -------------------------------------------------------------------------------

@pytest.mark.declares(PERIODIC)
def test_a_backend_with_periodic_fires_a_due_slot_once(backend):
    ran = []
    backend.queue.periodic(every=1, job_type="heartbeat")(lambda payload: ran.append(payload["slot"]))
    wait_for(lambda: backend.queue.process_jobs(backend.queue.handlers) and ran, seconds=10,
             what="a slot to fire and run")
    assert len(ran) == len(set(ran))


@pytest.mark.lacks(PERIODIC)
def test_without_periodic_declaring_or_running_schedules_is_refused_saying_what_to_do(backend,
                                                                                    monkeypatch):
    with pytest.raises(UnsupportedError, match=r"@periodic \(periodic jobs\) is not supported on .*rq cron"):
        backend.queue.periodic("0 3 * * *")(lambda payload: None)
    declared = Handlers()  # the same declaration a TSV queue takes, handed to this worker
    declare(declared, "0 3 * * *", job_type="report")(lambda payload: None)
    for refused in (backend.queue.check_worker, backend.queue.process_jobs):
        with pytest.raises(UnsupportedError, match="keep the schedule on a TSV queue"):
            refused(declared)
    assert backend.count_jobs() == 0
    monkeypatch.setenv("DBBASIC_QUEUE_URL", backend.spec.partition("#")[0])
    with pytest.raises(UnsupportedError, match="is not supported on redis"):
        dbbasic_queue.periodic("0 3 * * *")
