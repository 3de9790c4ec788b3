"""The dashboard's WSGI application on a real queue file: pages, escaping, actions, CSRF,
read-only mode, who may open it, mounting under a prefix, and the command that serves it.

Requests go straight to the WSGI callable (no server) except in the command's tests, which
start ``dbbasic-queue dashboard`` as a real process. The browser tests are in
test_dashboard_browser.py.
"""

import base64
import html
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode
from wsgiref.util import setup_testing_defaults

import pytest

from dbbasic_queue import Queue, backend
from dbbasic_queue.cli import main
from dbbasic_queue.dashboard import DashboardApp, mount
from dbbasic_queue.dashboard.security import load_credentials
from dbbasic_queue.errors import CorruptLineError
from dbbasic_queue.model.job import job_line, parse_line, peek_listing
from support import in_background, wait_for

EVIL_TYPE = "<script>document.title='pwned'</script>"
EVIL_PAYLOAD = {"note": "<img src=x onerror=\"window.pwned=1\">", "q": "\"quoted\" & 'single'"}
EVIL_ERROR = "<svg onload=alert(1)>"


class Reply:
    def __init__(self, status, headers, body):
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body
        self.text = body.decode("utf-8")

    def token(self):
        return re.search(r'name="csrf_token" value="([0-9a-f]+)"', self.text).group(1)


class Client:
    """A browser in miniature: keeps the dashboard's cookie, sends forms with its token."""

    def __init__(self, app, remote="127.0.0.1", headers=None):
        self.app, self.remote, self.headers, self.cookie = app, remote, headers or {}, None

    def request(self, method, path, query="", form=None, headers=None, script_name=""):
        body = urlencode(form or {}, doseq=True).encode()
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "SCRIPT_NAME": script_name, "REMOTE_ADDR": self.remote,
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                   "CONTENT_TYPE": "application/x-www-form-urlencoded"}
        setup_testing_defaults(environ)
        if self.cookie:
            environ["HTTP_COOKIE"] = self.cookie
        environ.update(self.headers)
        environ.update(headers or {})
        answer = {}

        def start_response(status, response_headers):
            answer["status"], answer["headers"] = status, response_headers
        content = b"".join(self.app(environ, start_response))
        reply = Reply(answer["status"], answer["headers"], content)
        if "Set-Cookie" in reply.headers:
            self.cookie = reply.headers["Set-Cookie"].split(";")[0]
        return reply

    def get(self, path, **query):
        return self.request("GET", path, urlencode(query, doseq=True))

    def token(self):
        """The token the dashboard's forms carry for this browser (its cookie, signed)."""
        if self.cookie is None:
            self.get("/")
        return self.app.csrf.token(self.cookie.split("=", 1)[1])

    def post(self, path, **form):
        form.setdefault("csrf_token", self.token())
        return self.request("POST", path, form=form)


def seed(queue):
    """Jobs of every status: two completed, one failed for good, one scheduled in an hour,
    one cancelled, one due now; returns their ids by name."""
    ids = {"done": queue.enqueue("send_email", {"to": "ann@example.com"}),
           "done2": queue.enqueue("send_email", {"to": "bob@example.com"}),
           "broken": queue.enqueue("resize_image", {"file": "cat.png"})}
    queue.process_jobs({"send_email": lambda payload: {"sent": True},
                        "resize_image": fail_with("RuntimeError", "ffmpeg not found")}, 1)
    ids["later"] = queue.enqueue("send_email", {"to": "cy@example.com"}, queue.clock() + 3600)
    ids["cancelled"] = queue.enqueue("send_email", {"to": "di@example.com"})
    queue.cancel_job(ids["cancelled"])
    ids["due"] = queue.enqueue("sync_crm", {"account": 7})
    return ids


def fail_with(kind, message):
    def handler(payload):
        raise {"RuntimeError": RuntimeError, "ValueError": ValueError}[kind](message)
    return handler


@pytest.fixture
def app(queue):
    return DashboardApp(queue)


@pytest.fixture
def client(app):
    return Client(app)


def file_bytes(queue):
    return queue.path.read_bytes()


# --- pages ----------------------------------------------------------------------------------

def test_every_page_answers_on_a_queue_with_jobs_of_every_status(queue, client):
    ids = seed(queue)
    for path, query in [("/", {}), ("/jobs", {}), ("/jobs", {"status": "failed"}),
                        ("/jobs/" + ids["broken"], {}), ("/failures", {}),
                        ("/actions/retry-failed", {"type": "resize_image"}),
                        ("/actions/purge", {}), ("/actions/purge", {"older_than": "1d",
                                                                    "status": "completed"}),
                        ("/static/dashboard.css", {}), ("/static/dashboard.js", {})]:
        assert client.get(path, **query).status == 200, (path, query)
    overview = client.get("/api/overview")
    assert overview.headers["Content-Type"] == "application/json"
    assert json.loads(overview.body)["by_status"]["failed"] == 1


def test_unknown_pages_jobs_and_files_are_404(queue, client):
    seed(queue)
    assert client.get("/nowhere").status == 404
    assert client.get("/jobs/0123456789abcdef").status == 404
    assert client.get("/static/../../queue.py").status == 404
    assert client.get("/static/other.js").status == 404


def test_a_head_request_gets_the_headers_without_the_body(queue, client):
    reply = client.request("HEAD", "/")
    assert reply.status == 200 and reply.body == b"" and int(reply.headers["Content-Length"]) > 0


def test_the_overview_counts_by_status_and_type_charts_24_hours_and_lists_next_runs(queue, client,
                                                                                   clock):
    # Given jobs finished at known hours, one due for 10 minutes and one in an hour
    ids = seed(queue)
    clock.advance(2 * 3600)
    queue.enqueue("sync_crm", {"late": True}, clock() - 600)
    figures = json.loads(client.get("/api/overview").body)
    stats = queue.stats()
    assert figures["by_status"] == stats["by_status"]
    assert figures["by_type"] == {t: c for t, c in stats["by_type"].items()}
    # The oldest due job was due 2 h ago (enqueued then, due at once)
    assert figures["latency_seconds"] == pytest.approx(stats["oldest_due_seconds"])
    assert [run["id"] for run in figures["next_runs"]] == []  # the 1-hour job is due now too
    chart = figures["chart"]
    assert len(chart["hour_starts"]) == 24 and chart["hour_starts"][-1] <= clock() < \
        chart["hour_starts"][-1] + 3600
    assert sum(chart["completed"]) == 2 and sum(chart["failed"]) == 1
    assert chart["completed"][-3] == 2  # two hours ago
    later = queue.enqueue("send_email", {}, clock() + 7200)
    figures = json.loads(client.get("/api/overview").body)
    assert [run["id"] for run in figures["next_runs"]] == [later]
    assert ids["due"] not in [run["id"] for run in figures["next_runs"]]


def test_the_jobs_page_filters_searches_and_pages_newest_first(queue, client, clock):
    # Given 120 jobs, one a second, every third of type b
    ids = []
    for n in range(120):
        ids.append(queue.enqueue("b" if n % 3 == 0 else "a", {"n": n, "to": f"user{n}@x.org"}))
        clock.advance(1)
    page = client.get("/jobs")
    shown = re.findall(r'class="id" href="/jobs/([0-9a-f]{16})"', page.text)
    assert shown == ids[::-1][:50] and "<strong>120</strong> jobs match" in page.text
    page3 = re.findall(r'class="id" href="/jobs/([0-9a-f]{16})"', client.get("/jobs", page=3).text)
    assert page3 == ids[::-1][100:]
    of_b = re.findall(r'class="id" href="/jobs/([0-9a-f]{16})"',
                      client.get("/jobs", type="b", status="pending").text)
    assert of_b == [ids[n] for n in range(117, -1, -3)]
    found = client.get("/jobs", q='"to": "USER17@')
    assert re.findall(r'class="id" href="/jobs/([0-9a-f]{16})"', found.text) == [ids[17]]
    assert "<strong>0</strong> jobs match" in client.get("/jobs", status="failed").text


def test_search_finds_text_in_the_error_and_unicode_in_any_case(queue, client):
    queue.enqueue("greet", {"name": "Zoë"})
    broken = queue.enqueue("resize_image", {})
    queue.process_jobs({"greet": lambda p: None,
                        "resize_image": fail_with("ValueError", "disk quota exceeded")}, 1)
    assert broken in client.get("/jobs", q="QUOTA").text
    assert "Zoë" in client.get("/jobs/" + re.findall(
        r'href="/jobs/([0-9a-f]{16})"', client.get("/jobs", q="ZOË").text)[0]).text


def test_a_job_page_shows_payload_result_error_tracebacks_options_and_times(queue, client):
    ids = seed(queue)
    own = queue.enqueue("charge_card", {"order": 7}, max_attempts=10, unique_key="order:7")
    page = client.get("/jobs/" + own).text
    assert "0 of 10" in page and "unique_key=&#x27;order:7&#x27;" in page
    assert "&quot;order&quot;: 7" in page  # pretty-printed JSON, escaped
    done = client.get("/jobs/" + ids["done"]).text
    assert "&quot;sent&quot;: true" in done and "Last attempt began" in done
    broken = client.get("/jobs/" + ids["broken"]).text
    assert "RuntimeError: ffmpeg not found" in broken and 'attempts it had">1<' in broken
    assert "0 of 3" in client.get("/jobs/" + ids["due"]).text  # may run again: of how many
    assert "Attempt 1, failed at" in broken and "Traceback (most recent call last)" in broken
    assert "in handler" in broken  # the kept traceback of its failed attempt
    assert "None kept" in done


def test_a_job_page_says_what_a_waiting_job_waits_for_and_a_batch_how_far_it_got(queue, client):
    with queue.batch(on_complete=("album", {})) as batch:
        first = batch.enqueue("resize_image", {})
        batch.enqueue("resize_image", {})
    waiting = queue.enqueue("greet", {}, depends_on=first)
    assert f"for 1 job: {first}" in client.get("/jobs/" + waiting).text
    queue.process_jobs({"resize_image": lambda payload: None}, max_jobs=1)
    page = client.get("/jobs/" + batch.id).text
    assert "<dt>Waiting</dt><dd>for its batch: 1 of 2 finished (1 completed" in page
    queue.process_jobs({"resize_image": lambda payload: None})
    assert "<dt>Waiting</dt>" not in client.get("/jobs/" + batch.id).text


def test_a_running_job_s_page_shows_its_progress_and_a_stop_button_that_stops_it(real_queue):
    # Given a job whose handler reports progress until asked to stop
    from dbbasic_queue.worker.running import current_job

    def export(payload):
        job = current_job()
        while not job.stop_requested:
            job.progress(0.25, note="a quarter")
            stopped.wait(0.01)
    stopped = threading.Event()
    job_id = real_queue.enqueue("export", {})
    thread, _ = in_background(real_queue, {"export": export})
    client = Client(DashboardApp(real_queue))
    # When the dashboard shows it while it runs
    page = wait_for(lambda: (lambda text: text if "<dt>Progress</dt>" in text else None)(
        client.get("/jobs/" + job_id).text), what="the progress on the job page")
    # Then it shows how far it got, and a Stop button that stops it
    assert '<progress max="1" value="0.25"></progress> 25%, a quarter, reported' in page
    assert f'action="/jobs/{job_id}/stop"' in page
    answer = client.post(f"/jobs/{job_id}/stop")
    assert answer.status == 303 and "done=stop-asked" in answer.headers["Location"]
    thread.join(30)
    job = real_queue.get_job(job_id)
    assert (job["status"], job["error"]) == ("cancelled", "Stopped by the dashboard")


def test_failures_are_grouped_by_type_and_error_with_count_and_latest(queue, client, clock):
    for n in range(3):
        queue.enqueue("resize_image", {"n": n})
    queue.enqueue("sync_crm", {})
    queue.process_jobs({"resize_image": fail_with("RuntimeError", "ffmpeg not found"),
                        "sync_crm": fail_with("ValueError", "HTTP 429")}, 1)
    clock.advance(60)
    last = queue.enqueue("resize_image", {"n": 3})
    queue.process_jobs({"resize_image": fail_with("RuntimeError", "ffmpeg not found")}, 1)
    rows = re.findall(r"<tr><td class=\"type\">.*?</tr>", client.get("/failures").text)
    assert len(rows) == 2
    assert "resize_image" in rows[0] and ">4<" in rows[0] and last in rows[0]
    assert "sync_crm" in rows[1] and "ValueError: HTTP 429" in rows[1] and ">1<" in rows[1]


def test_jobs_moved_to_archive_files_are_counted_listed_and_shown_once(queue, client, clock):
    # Given finished jobs that a worker run two hours later moved to an archive file
    ids = seed(queue)
    clock.advance(2 * 3600)
    queue.process_jobs({"sync_crm": lambda payload: None}, 1)
    assert queue.archive.files()
    figures = json.loads(client.get("/api/overview").body)
    assert figures["by_status"] == queue.stats()["by_status"]
    assert figures["by_status"]["completed"] == 3 and figures["by_status"]["cancelled"] == 1
    assert ids["done"] in client.get("/jobs", status="completed").text
    assert "&quot;sent&quot;: true" in client.get("/jobs/" + ids["done"]).text
    # When a job is in an archive file and the live file at once (a move back cut short)
    path, _, line = queue.archive.find(ids["cancelled"].encode() + b"\t")
    queue.table.append(line.replace(b"\tcancelled\t", b"\tpending\t"))
    # Then it is listed once, as it is in the live file
    figures = json.loads(client.get("/api/overview").body)
    assert figures["jobs"] == sum(1 for _ in queue.jobs()) == 6
    assert figures["by_status"]["cancelled"] == 0


@pytest.fixture
def judged(monkeypatch):
    """The lines the dashboard's reader judges (its cheap look, peek_listing), as it judges
    them: a list to clear and count."""
    from dbbasic_queue.dashboard import sources
    lines, real_peek = [], sources.peek_listing
    monkeypatch.setattr(sources, "peek_listing", lambda line: lines.append(line) or real_peek(line))
    return lines


def test_an_open_dashboard_counts_as_a_fresh_one_reading_only_what_changed(queue, clock,
                                                                           judged):
    # Given 300 finished jobs moved to an archive file, and a dashboard that has shown them
    queue.enqueue_many([("send_email", {"n": n}) for n in range(300)])
    queue.process_jobs({"send_email": noop_handler})
    clock.advance(2 * 3600)
    queue.enqueue("sync_crm", {"account": 0})
    queue.process_jobs({"sync_crm": noop_handler})  # the run that moves them
    assert queue.archive.files()
    kept = Client(DashboardApp(queue))

    def figures(client):
        shown = json.loads(client.get("/api/overview").body)
        return {key: shown[key] for key in ("jobs", "by_status", "by_type", "chart",
                                            "corrupt_lines", "queues")}
    first = figures(kept)
    assert first["by_status"]["completed"] == 301
    # When one more job runs and moves there, the open dashboard reads its line, not the 300
    queue.enqueue("sync_crm", {"account": 1})
    queue.process_jobs({"sync_crm": noop_handler})
    fresh = figures(Client(DashboardApp(queue)))
    del judged[:]
    assert figures(kept) == fresh
    assert 0 < len(judged) < 10
    # And it still counts as a fresh dashboard after a retry moves a job back, a corrupt
    # line is appended to the archive, a purge rewrites it, and a cancel
    archived = next(job for job in queue.jobs() if job["status"] == "completed")
    steps = [lambda: queue.update_each(lambda job: job.evolve(status="failed")
                                       if job.id == archived["id"] else None),
             lambda: queue.retry_job(archived["id"]),
             lambda: open(queue.archive.files()[-1][1], "ab").write(b"garbage\n"),
             lambda: queue.purge(3600),
             lambda: queue.cancel_job(queue.enqueue("send_email", {"n": -1}))]
    for step in steps:
        step()
        assert figures(kept) == figures(Client(DashboardApp(queue)))


def test_an_archive_file_emptied_in_place_and_grown_again_is_read_again(queue, clock):
    # Given an open dashboard that counted an archive file
    queue.enqueue_many([("old_type", {"n": n}) for n in range(20)])
    queue.process_jobs({"old_type": noop_handler})
    clock.advance(2 * 3600)
    queue.enqueue("sync_crm", {"account": 0})
    queue.process_jobs({"sync_crm": noop_handler})  # the run that moves them
    kept = Client(DashboardApp(queue))
    assert json.loads(kept.get("/api/overview").body)["by_type"]["old_type"]["completed"] == 20
    # When the file is emptied in place (the same inode, as a reused one would be) and
    # holds other, longer lines than before
    [(_, archived)] = queue.archive.files()
    lines = archived.read_bytes().splitlines(keepends=True)
    with open(archived, "r+b") as file:
        file.truncate(len(lines[0]))
        file.seek(0, os.SEEK_END)
        for line in lines[1:]:
            file.write(line.replace(b"old_type", b"a_newer_type"))
    # Then the open dashboard counts as a fresh one
    figures = json.loads(kept.get("/api/overview").body)
    assert figures == json.loads(Client(DashboardApp(queue)).get("/api/overview").body)
    assert "old_type" not in figures["by_type"]


def test_a_payload_with_a_lone_surrogate_shows_on_every_page(queue, client):
    job_id = queue.enqueue("send_email", {"note": "\ud800 broken"})
    for path in ("/jobs", "/jobs/" + job_id, "/"):
        page = client.get(path)
        assert page.status == 200, path
    assert "\\ud800 broken" in client.get("/jobs").text


def test_the_jobs_page_of_a_fresh_dashboard_judges_only_the_lines_it_may_show(queue, clock,
                                                                           judged):
    # Given 200 completed jobs and 3 failed ones, and an overview counted long ago
    queue.enqueue_many([("send_email", {"n": n}) for n in range(200)])
    queue.process_jobs({"send_email": noop_handler})
    app = DashboardApp(queue)
    app.warm()
    for n in range(3):
        queue.enqueue("resize_image", {"n": n})
    queue.process_jobs({"resize_image": fail_with("RuntimeError", "no")}, 1)
    # When a fresh look asks for the failed jobs
    del judged[:]
    page = Client(app).get("/jobs", status="failed").text
    # Then only their lines were judged, and the type menu has every type, the new one too
    assert len(judged) == 3
    menu = re.search(r'<select name="type">(.*?)</select>', page).group(1)
    assert re.findall(r'<option value="([^"]*)"', menu) == ["", "resize_image", "send_email"]


def test_a_fifo_planted_as_an_archive_file_is_reported_by_the_overview_as_by_the_list(queue):
    queue.enqueue("send_email", {"n": 1})
    os.mkfifo(queue.path.parent / "queue.2026-01-01.tsv")
    kept = Client(DashboardApp(queue))
    for path in ("/", "/api/overview", "/jobs"):
        page = kept.get(path)
        assert page.status == 500 and b"cannot be read" in page.body or b"not a regular" in \
            page.body, (path, page.status, page.body[:300])


def test_warming_counts_the_overview_before_the_first_look(queue, caplog):
    seed(queue)
    app = DashboardApp(queue)
    assert app.reader.cached_types() is None
    app.warm()
    assert app.reader.cached_types() == ["resize_image", "send_email", "sync_crm"]
    # A queue that cannot be read is logged; the pages will say it
    queue.path.write_bytes(b"not a header\n")
    DashboardApp(queue).warm()
    assert "could not count the queue yet" in caplog.text


def noop_handler(payload):
    return None


def test_a_corrupt_line_is_counted_as_stats_counts_it_and_the_other_jobs_show(queue, client):
    ids = seed(queue)
    with open(queue.path, "ab") as file:
        file.write(b"garbage without fields\n")
    figures = json.loads(client.get("/api/overview").body)
    assert figures["corrupt_lines"] == queue.stats()["corrupt_lines"] == 1
    assert figures["jobs"] == queue.stats()["jobs"]
    assert ids["done"] in client.get("/jobs").text


@pytest.mark.parametrize("line, cheap", [
    (job_line("a1", "t", '{"x": 1}', "pending", 5, 6, 0), True),
    (job_line("a1", "t", "{}", "completed", 5, 6, 1, 'said "no"', '{"r": "\\u00e9"}', ""), True),
    (b"a1\tt\t{}\tpending\t5\t6\t0\t\t\n", True),  # 1.0.0's nine columns
    (job_line("a1", 'ty"pe', "{}", "failed", 5, 6, 1, "E: x", "", ""), False),
    (b'a1\tt\t"{"x"}"\tpending\t5\t6\t0\t\t\t\n', False),  # a lone quote in a quoted field
    (b'a1\tt\t"{""x\tx"": 1}"\tpending\t5\t6\t0\t\t\t\n', False),  # quoted around a tab
    (b'a1\tt\t{}\t"pending"\t5\t6\t0\t\t\t\n', False),  # a quoted status
    (b'a1\tt\tab"c\tpending\t5\t6\t0\t\t\t\n', False),  # a quote inside a plain field
    (b"a1\tt\t{}\tdone\t5\t6\t0\t\t\t\n", False), (b"a1\tt\t{}\tpending\tfive\t6\t0\t\t\t\n", False),
    (b"\tt\t{}\tpending\t5\t6\t0\t\t\t\n", False), (b"a1\tt\xff\t{}\tpending\t5\t6\t0\t\t\t\n", False),
    (b"a1\tt\t{}\tpending\t5\t6\n", False),
])
def test_the_cheap_look_at_a_line_agrees_with_the_full_parse(line, cheap):
    # A plain line is read cheaply, with parse_line's values; any other is left to parse_line
    peek = peek_listing(line)
    assert (peek is not None) == cheap
    try:
        job = parse_line(line)
    except CorruptLineError:
        assert peek is None
        return
    assert peek is None or peek == (job.type, job.status, job.created_at, job.run_at)


# --- escaping and headers -------------------------------------------------------------------

def test_markup_from_the_file_shows_as_text_on_every_page(queue, client):
    # Given a job whose type, payload and error are HTML
    evil = queue.enqueue(EVIL_TYPE, EVIL_PAYLOAD)
    queue.process_jobs({EVIL_TYPE: fail_with("ValueError", EVIL_ERROR)}, 1)
    pages = [client.get(path, **query) for path, query in [
        ("/", {}), ("/jobs", {}), ("/jobs", {"type": EVIL_TYPE}), ("/jobs", {"q": "onerror"}),
        ("/jobs/" + evil, {}), ("/failures", {}), ("/actions/retry-failed", {"type": EVIL_TYPE})]]
    for page in pages:
        assert page.status == 200
        for raw in ("<script>document", "<img src=x", "<svg onload", "onerror=\"window"):
            assert raw not in page.text
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in pages[4].text
    assert "&lt;img src=x onerror=\\&quot;window.pwned=1\\&quot;&gt;" in pages[4].text
    assert "ValueError: &lt;svg onload=alert(1)&gt;" in pages[4].text
    api = client.get("/api/overview")
    assert b"<" not in api.body and EVIL_TYPE in json.loads(api.body)["by_type"]


def test_pages_carry_no_inline_script_style_or_event_handler(queue, client):
    ids = seed(queue)
    for path in ("/", "/jobs", "/jobs/" + ids["broken"], "/failures", "/actions/purge"):
        text = client.get(path).text
        assert re.findall(r"<script(?![^>]*\ssrc=)", text) == []
        assert " style=" not in text and not re.search(r"\son[a-z]+=", text)


def test_security_headers_forbid_inline_scripts_framing_and_caching(queue, client):
    for path in ("/", "/api/overview", "/nowhere"):
        headers = client.get(path).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy and headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
    cookie = client.get("/").headers.get("Set-Cookie") or Client(client.app).get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


# --- actions --------------------------------------------------------------------------------

def test_no_get_changes_anything_not_even_of_an_action_url(queue, client):
    ids = seed(queue)
    before = file_bytes(queue)
    for path, query in [("/jobs/" + ids["broken"] + "/retry", {}),
                        ("/jobs/" + ids["due"] + "/cancel", {}),
                        ("/jobs/" + ids["later"] + "/run-now", {}),
                        ("/actions/retry-failed", {"type": "resize_image"}),
                        ("/actions/purge", {"older_than": "0s", "status": "completed"}),
                        ("/", {}), ("/jobs", {}), ("/failures", {})]:
        assert client.get(path, **query).status in (200, 303, 405)
        client.request("HEAD", path)
    assert file_bytes(queue) == before


@pytest.mark.parametrize("case", ["no token", "wrong token", "another browser's token",
                                  "no cookie", "from another site"])
def test_a_post_without_this_browsers_token_is_refused_and_changes_nothing(queue, app, case):
    ids = seed(queue)
    client, other = Client(app), Client(app)
    token = client.get(f"/jobs/{ids['broken']}").token()  # as its Retry button carries it
    form = {"no token": {}, "wrong token": {"csrf_token": "0" * 64},
            "another browser's token": {"csrf_token": other.token()},
            "no cookie": {"csrf_token": token}, "from another site": {"csrf_token": token}}[case]
    if case == "no cookie":
        client.cookie = None
    headers = {"HTTP_SEC_FETCH_SITE": "cross-site"} if case == "from another site" else {}
    before = file_bytes(queue)
    reply = client.request("POST", f"/jobs/{ids['broken']}/retry", form=form, headers=headers)
    assert reply.status == 403 and "Reload the page" in reply.text
    assert file_bytes(queue) == before


def test_retry_puts_a_failed_job_back_to_pending_due_now(queue, client, clock):
    ids = seed(queue)
    reply = client.post(f"/jobs/{ids['broken']}/retry")
    assert reply.status == 303 and reply.headers["Location"] == f"/jobs/{ids['broken']}?done=retried"
    job = queue.get_job(ids["broken"])
    assert job["status"] == "pending" and job["attempts"] == 0 and job["run_at"] <= clock()
    page = client.get(f"/jobs/{ids['broken']}", done="retried").text
    assert "pending again" in page
    again = client.post(f"/jobs/{ids['broken']}/retry")  # now pending: not retryable
    assert again.headers["Location"].endswith("problem=not-retryable")


def test_cancel_cancels_a_pending_job_only(queue, client):
    ids = seed(queue)
    assert client.post(f"/jobs/{ids['due']}/cancel").status == 303
    assert queue.get_job(ids["due"])["status"] == "cancelled"
    assert client.post(f"/jobs/{ids['done']}/cancel").headers["Location"].endswith(
        "problem=not-cancellable")
    assert queue.get_job(ids["done"])["status"] == "completed"


def test_run_now_makes_a_scheduled_job_due_now(queue, client, clock):
    ids = seed(queue)
    assert "Run now" in client.get(f"/jobs/{ids['later']}").text
    client.post(f"/jobs/{ids['later']}/run-now")
    job = queue.get_job(ids["later"])
    assert job["status"] == "pending" and job["run_at"] <= clock()


def test_a_processing_job_is_put_back_only_with_the_confirmation(queue, client, clock):
    ids = seed(queue)
    queue.update_each(lambda job: job.evolve(status="processing", attempts=1,
                                             run_at=int(clock() + 300)), only_id=ids["due"])
    confirm = client.get(f"/jobs/{ids['due']}/run-now")
    assert confirm.status == 200 and "run twice" in confirm.text and 'name="force"' in confirm.text
    client.post(f"/jobs/{ids['due']}/run-now")
    assert queue.get_job(ids["due"])["status"] == "processing"
    client.post(f"/jobs/{ids['due']}/run-now", force="yes")
    job = queue.get_job(ids["due"])
    assert job["status"] == "pending" and job["attempts"] == 0


def test_retry_all_failed_of_a_type_counts_first_then_retries_only_that_type(queue, client):
    for job_type in ("resize_image", "resize_image", "sync_crm"):
        queue.enqueue(job_type, {})
    queue.process_jobs({"resize_image": fail_with("RuntimeError", "x"),
                        "sync_crm": fail_with("RuntimeError", "y")}, 1)
    confirm = client.get("/actions/retry-failed", type="resize_image")
    assert "<strong>2</strong>" in confirm.text and "Retry 2 jobs" in confirm.text
    assert queue.stats()["by_status"]["failed"] == 3  # the count changed nothing
    reply = client.post("/actions/retry-failed", type="resize_image")
    assert reply.headers["Location"] == "/failures?done=retried-failed&n=2"
    assert queue.stats()["by_type"]["resize_image"]["pending"] == 2
    assert queue.stats()["by_type"]["sync_crm"]["failed"] == 1


def charge_card(payload):
    if payload["amount"] > 1000:
        raise PermissionError("card blocked")
    raise ValueError(f"card declined for amount {payload['amount']}")


def test_failures_group_by_exception_and_raising_line_and_retry_exactly_a_group(queue, client):
    # Given four declines of different amounts, raised on one line, and a block on another
    for amount in (150, 200, 250, 300, 5000):
        queue.enqueue("charge_card", {"amount": amount})
    queue.process_jobs({"charge_card": charge_card}, 1)
    # Then the failures page has two groups: the declines together, their messages in it
    page = client.get("/failures").text
    rows = re.findall(r"<tr><td class=\"type\">.*?</tr>", page, re.S)
    assert len(rows) == 2
    declined, blocked = rows
    assert "ValueError" in declined and ">4<" in declined and "in charge_card" in declined
    assert all(f"card declined for amount {n}" in declined for n in (150, 200, 250, 300))
    assert "PermissionError" in blocked and ">1<" in blocked
    # When the declines' group is retried: its link asks first, with its count
    href = html.unescape(re.search(r'class="retry-group" href="([^"]+)"', declined).group(1))
    path, _, query = href.partition("?")
    confirm = client.get(path, **{k: v[0] for k, v in parse_qs(query).items()})
    assert "<strong>4</strong>" in confirm.text and "Retry 4 jobs" in confirm.text
    reply = client.post(path, **{k: v[0] for k, v in parse_qs(query).items()})
    # Then exactly its four jobs are pending again; the blocked card stays failed
    assert reply.headers["Location"] == "/failures?done=retried-failed&n=4"
    statuses = sorted(job["status"] for job in queue.jobs())
    assert statuses == ["failed"] + ["pending"] * 4


def test_purge_counts_first_then_removes_exactly_those_jobs(queue, client, clock):
    ids = seed(queue)
    clock.advance(3 * 86400)
    fresh = queue.enqueue("send_email", {})
    queue.process_jobs({"send_email": lambda p: None, "sync_crm": lambda p: None}, 1)
    dry = client.get("/actions/purge", older_than="2d", status=["completed", "cancelled"])
    count = int(re.search(r'<p class="dry-run"><strong>(\d+)</strong>', dry.text).group(1))
    assert count == 3 and queue.get_job(ids["done"]) is not None  # done, done2, cancelled
    reply = client.post("/actions/purge", older_than="2d", status="completed,cancelled")
    assert reply.headers["Location"] == "/?done=purged&n=3"
    assert [queue.get_job(ids[n]) for n in ("done", "done2", "cancelled")] == [None] * 3
    assert queue.get_job(fresh)["status"] == "completed" and queue.get_job(ids["broken"])


@pytest.mark.parametrize("form", [{"older_than": "soon", "status": "completed"},
                                  {"older_than": "1d", "status": "pending"},
                                  {"older_than": "1d"}])
def test_a_bad_purge_form_is_400_and_removes_nothing(queue, client, form):
    seed(queue)
    before = file_bytes(queue)
    assert client.get("/actions/purge", **form).status == 400
    assert client.post("/actions/purge", **form).status == 400
    assert file_bytes(queue) == before


def test_read_only_hides_every_action_and_refuses_them(queue):
    ids = seed(queue)
    client = Client(DashboardApp(queue, read_only=True))
    for path in ("/", "/jobs", "/jobs/" + ids["broken"], "/jobs/" + ids["due"], "/failures"):
        text = client.get(path).text
        assert 'method="post"' not in text and "Retry all" not in text and "read-only" in text
    assert client.get("/actions/purge", older_than="0s", status="completed").status == 403
    assert client.get("/actions/retry-failed").status == 403
    before = file_bytes(queue)
    for path in (f"/jobs/{ids['broken']}/retry", f"/jobs/{ids['due']}/cancel", "/actions/purge"):
        assert client.request("POST", path, form={"older_than": "0s", "status": "completed"}
                              ).status == 403
    assert file_bytes(queue) == before


def test_a_backend_that_lists_but_cannot_retry_or_purge_shows_neither(queue, clock):
    # Given a listing-only backend (no file, retry, purge or run_now)
    class ListingOnly(Queue):
        capabilities = frozenset({backend.LISTING})
        run_now = None
    limited = ListingOnly(queue.path, clock=clock)
    ids = seed(limited)
    client = Client(DashboardApp(limited))
    for path in ("/", "/jobs", "/jobs/" + ids["broken"], "/jobs/" + ids["later"], "/failures"):
        page = client.get(path)
        assert page.status == 200
        for hidden in ("/retry", "/run-now", "Retry all", "Purge"):
            assert hidden not in page.text, (path, hidden)
    assert "Cancel" in client.get("/jobs/" + ids["later"]).text  # published on every backend
    assert ids["broken"] in client.get("/jobs", status="failed", q="ffmpeg").text
    reply = client.post(f"/jobs/{ids['broken']}/retry")
    assert reply.status == 303 and "problem=unsupported" in reply.headers["Location"]
    assert limited.get_job(ids["broken"])["status"] == "failed"


def test_a_backend_without_listing_gets_a_look_up_by_id_and_cancel(redis_url):
    import uuid

    from dbbasic_queue.rq.backend import RQQueue

    class NoListing(RQQueue):
        capabilities = frozenset()  # declares nothing, not even listing

    rq_queue = NoListing(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    job_id = rq_queue.enqueue("send_email", {"to": "<b>ann</b>"}, run_at=2_000_000_000)
    client = Client(DashboardApp(rq_queue))
    home = client.get("/")
    assert home.status == 200 and "look a job up by its id" in home.text
    assert client.get("/lookup", id=job_id).headers["Location"] == f"/jobs/{job_id}"
    page = client.get(f"/jobs/{job_id}").text
    assert "&lt;b&gt;ann&lt;/b&gt;" in page and "/retry" not in page and "/cancel" in page
    assert "None kept" in page  # no traceback is invented where none is kept
    assert client.get("/jobs").status == 303
    client.post(f"/jobs/{job_id}/cancel")
    assert rq_queue.get_job(job_id)["status"] == "cancelled"


def test_on_redis_the_dashboard_lists_counts_and_shows_jobs(redis_url):
    import uuid

    from dbbasic_queue.rq.backend import RQQueue
    rq_queue = RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    later = rq_queue.enqueue("send_email", {"to": "<b>ann</b>"}, run_at=2_000_000_000)
    failed = rq_queue.enqueue("resize_image", {}, max_attempts=1)
    rq_queue.process_jobs({"resize_image": fail_with("RuntimeError", "ffmpeg not found")})
    client = Client(DashboardApp(rq_queue))

    assert later in client.get("/jobs").text and failed in client.get("/failures").text
    assert json.loads(client.get("/api/overview").body)["by_status"]["failed"] == 1
    page = client.get(f"/jobs/{failed}").text
    assert "RuntimeError: ffmpeg not found" in page and f"/jobs/{failed}/retry" in page
    # and its Retry button puts it back, due now, on Redis too
    client.post(f"/jobs/{failed}/retry")
    assert rq_queue.get_job(failed)["status"] == "pending"


def test_on_redis_a_queue_is_paused_with_its_button_and_a_type_pause_is_refused(redis_url):
    import uuid

    from dbbasic_queue.rq.backend import RQQueue
    rq_queue = RQQueue(redis_url, name=f"test-{uuid.uuid4().hex[:8]}")
    rq_queue.enqueue("send_email", {"to": "ann@example.com"}, queue="emails")
    client = Client(DashboardApp(rq_queue))
    assert '<table class="grid" id="queues">' in client.get("/").text

    assert "done=paused" in client.post("/actions/pause", kind="queue", name="emails"
                                        ).headers["Location"]
    assert "problem=unsupported" in client.post("/actions/pause", kind="type",
                                                name="send_email").headers["Location"]
    assert [(entry["kind"], entry["name"]) for entry in rq_queue.paused()] == [("queue", "emails")]
    assert rq_queue.process_jobs({"send_email": lambda p: None}) == 0
    assert "Paused: queue emails since" in client.get("/").text


# --- who may open it ------------------------------------------------------------------------

@pytest.mark.parametrize("remote, headers, status", [
    ("127.0.0.1", {}, 200), ("::1", {}, 200), ("127.8.9.10", {}, 200),
    ("10.0.0.5", {}, 403), ("192.168.1.2", {}, 403), ("", {}, 403),
    ("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}, 403),
    ("127.0.0.1", {"HTTP_FORWARDED": "for=203.0.113.9"}, 403),
])
def test_without_credentials_only_requests_straight_from_this_machine_are_answered(
        app, remote, headers, status):
    reply = Client(app, remote, headers).get("/")
    assert reply.status == status
    if status == 403:
        assert "DBBASIC_QUEUE_DASHBOARD_CREDENTIALS" in reply.text


def test_credentials_are_asked_of_every_request_from_anywhere(queue):
    app = DashboardApp(queue, credentials=("admin", "s3cret:pass"))
    for header in (None, "Basic " + base64.b64encode(b"admin:wrong").decode(), "Bearer x",
                   "Basic !!!", "Basic " + base64.b64encode(b"admin").decode()):
        reply = Client(app, "127.0.0.1", {"HTTP_AUTHORIZATION": header} if header else {}).get("/")
        assert reply.status == 401 and reply.headers["WWW-Authenticate"].startswith("Basic ")
    good = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"admin:s3cret:pass").decode()}
    assert Client(app, "203.0.113.9", good).get("/").status == 200


def test_an_authorize_function_lets_a_host_app_decide(queue):
    app = DashboardApp(queue, authorize=lambda environ: environ.get("HTTP_X_STAFF") == "yes")
    assert Client(app, "203.0.113.9", {"HTTP_X_STAFF": "yes"}).get("/").status == 200
    assert Client(app, "127.0.0.1").get("/").status == 403


def test_credentials_come_from_a_file_or_the_environment(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("ops:pa:ss\n")
    assert load_credentials(str(path), {}) == ("ops", "pa:ss")
    assert load_credentials(None, {"DBBASIC_QUEUE_DASHBOARD_CREDENTIALS": "a:b"}) == ("a", "b")
    assert load_credentials(None, {}) is None
    for bad in ("nopassword", ":x", "user:"):
        with pytest.raises(ValueError, match="user:password"):
            load_credentials(None, {"DBBASIC_QUEUE_DASHBOARD_CREDENTIALS": bad})


# --- mounting and the command ---------------------------------------------------------------

def test_mounted_under_a_prefix_every_link_form_and_cookie_stays_under_it(queue):
    ids = seed(queue)

    def host_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the host app"]
    client = Client(mount(host_app, "/admin/jobs", DashboardApp(queue)))
    assert client.get("/elsewhere").body == b"the host app"
    page = client.get("/admin/jobs/jobs/" + ids["broken"])
    links = re.findall(r'(?:href|action|src)="([^"]+)"', page.text)
    assert links and all(link.startswith("/admin/jobs") for link in links)
    assert "Path=/admin/jobs;" in page.headers["Set-Cookie"]
    reply = client.request("POST", f"/admin/jobs/jobs/{ids['broken']}/retry",
                           form={"csrf_token": page.token()})
    assert reply.headers["Location"] == f"/admin/jobs/jobs/{ids['broken']}?done=retried"
    assert client.get("/admin/jobs").status == 200


def test_the_command_refuses_a_public_address_without_credentials(queue, capsys, monkeypatch):
    monkeypatch.delenv("DBBASIC_QUEUE_DASHBOARD_CREDENTIALS", raising=False)
    code = main(["--file", str(queue.path), "dashboard", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "not a loopback address" in err and "--credentials-file" in err


def start_command(queue, *args, env=None):
    """``dbbasic-queue dashboard --port 0 ARGS`` as a process; (process, URL, first lines)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dbbasic_queue", "--file", str(queue.path), "dashboard",
         "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, **(env or {})))
    said = b""
    deadline = time.monotonic() + 20
    while b"Ctrl-C" not in said:
        ready, _, _ = select.select([process.stdout], [], [], max(0, deadline - time.monotonic()))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            process.wait()
            pytest.fail(f"the dashboard exited or said nothing for 20 s: {said!r}")
        said += chunk
    text = said.decode()
    return process, re.search(r"on (http://\S+/)", text).group(1), text


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_the_command_serves_on_loopback_and_stops_at_sigterm(queue):
    seed(queue)
    process, address, said = start_command(queue, "--read-only")
    try:
        assert address.startswith("http://127.0.0.1:") and "Read-only" in said
        with urllib.request.urlopen(address + "jobs?status=failed", timeout=10) as reply:
            assert reply.status == 200 and b"resize_image" in reply.read()
    finally:
        stop(process)


def test_the_command_off_loopback_asks_for_the_credentials_it_was_given(queue):
    process, address, said = start_command(
        queue, "--host", "0.0.0.0", env={"DBBASIC_QUEUE_DASHBOARD_CREDENTIALS": "ops:pw"})
    try:
        assert "HTTP basic auth required: user 'ops'" in said
        local = address.replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(local, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(local, headers={
            "Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
    finally:
        stop(process)


def test_the_overview_lists_the_periodic_jobs_with_their_last_and_next_slot(tmp_path):
    from dbbasic_queue import Queue
    from dbbasic_queue.dashboard import DashboardApp
    queue = Queue(tmp_path / "data" / "queue.tsv")

    @queue.periodic("0 3 * * *", timezone="Europe/Berlin")
    def nightly_report(payload):
        return None
    queue.process_jobs(queue.handlers)  # a worker run records the schedule
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8321",
               "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8321"}
    captured = {}
    body = b"".join(DashboardApp(queue)(environ, lambda status, headers: captured.update(status=status)))
    assert captured["status"].startswith("200")
    page = body.decode()
    assert "Periodic jobs" in page and "nightly_report" in page and "0 3 * * * Europe/Berlin" in page


def test_the_overview_says_what_is_paused_and_what_waits_for_a_handler(queue, client, clock):
    # Given a paused queue, and two due charges no worker that looked could run
    queue.pause("emails")
    queue.enqueue("charge_card", {"amount": 5})
    queue.enqueue("charge_card", {"amount": 6})
    queue.process_jobs({"send_email": lambda payload: None})
    clock.advance(7200)

    page = client.get("/").body.decode()
    figures = json.loads(client.get("/api/overview").body)

    assert [entry["name"] for entry in figures["paused"]] == ["emails"]
    assert figures["waiting_for_handler"]["charge_card"]["jobs"] == 2
    assert "Paused: queue emails since" in page and "dbbasic-queue resume emails" in page
    assert "Waiting for a worker with a handler: 2 charge_card, oldest 2.0h" in page


def test_a_queue_and_a_job_type_are_paused_and_resumed_from_the_overview(queue, client):
    # Given jobs in two queues
    queue.enqueue("send_email", {"to": "ann@example.com"}, queue="emails")
    queue.enqueue("sync_crm", {"account": 7})
    page = client.get("/").text
    assert '<table class="grid" id="queues">' in page
    assert 'action="/actions/pause"' in page and 'name="kind" value="queue"' in page

    # When the operator pauses the emails queue and the sync_crm type with the buttons
    first = client.post("/actions/pause", kind="queue", name="emails")
    second = client.post("/actions/pause", kind="type", name="sync_crm")

    # Then both are paused for every worker, the page says so and offers Resume
    assert (first.status, second.status) == (303, 303)
    assert "done=paused" in first.headers["Location"]
    assert {(entry["kind"], entry["name"]) for entry in queue.paused()} == {
        ("queue", "emails"), ("type", "sync_crm")}
    assert queue.process_jobs({"send_email": lambda p: None, "sync_crm": lambda p: None}) == 0
    page = client.get("/").text
    assert page.count('action="/actions/resume"') == 2
    assert "Paused: queue emails since" in page
    # pausing again changes nothing and says so
    assert "done=already" in client.post("/actions/pause", kind="queue", name="emails"
                                         ).headers["Location"]

    # When both are resumed, the jobs run
    client.post("/actions/resume", kind="queue", name="emails")
    client.post("/actions/resume", kind="type", name="sync_crm")
    assert queue.paused() == []
    assert queue.process_jobs({"send_email": lambda p: None, "sync_crm": lambda p: None}) == 2


def test_a_pause_the_file_cannot_hold_is_refused_and_writes_nothing(queue, client):
    queue.enqueue("send_email", {"to": "ann@example.com"})
    for form in ({"kind": "queue", "name": "no spaces"}, {"kind": "type", "name": "a\tb"},
                 {"kind": "backend", "name": "emails"}, {"kind": "queue"}):
        reply = client.post("/actions/pause", **form)
        assert reply.status == 303 and "problem=bad-pause" in reply.headers["Location"]
    assert queue.paused() == []
    assert not queue.path.with_name("queue.paused.tsv").exists()
    # without the form's token nothing is paused either
    assert client.request("POST", "/actions/pause", form={"kind": "queue", "name": "emails"}
                          ).status == 403
    assert queue.paused() == []


def test_a_job_is_deleted_from_its_page_only_when_the_box_is_ticked(queue, client, clock):
    ids = seed(queue)
    page = client.get("/jobs/" + ids["broken"]).text
    assert f'action="/jobs/{ids["broken"]}/delete"' in page and 'name="sure"' in page
    # An unticked form changes nothing; a ticked one deletes the job, wherever it is
    reply = client.post(f"/jobs/{ids['broken']}/delete")
    assert reply.headers["Location"].endswith("problem=not-sure")
    assert queue.get_job(ids["broken"])["status"] == "failed"
    reply = client.post(f"/jobs/{ids['broken']}/delete", sure="yes")
    assert reply.headers["Location"] == "/jobs?done=deleted"
    assert queue.get_job(ids["broken"]) is None
    # and a read-only dashboard neither offers nor does it
    read_only = Client(DashboardApp(queue, read_only=True))
    assert "/delete" not in read_only.get("/jobs/" + ids["due"]).text
    assert read_only.post(f"/jobs/{ids['due']}/delete", sure="yes").status == 403
    assert queue.get_job(ids["due"]) is not None


def test_bulk_actions_on_ticked_jobs_ask_with_the_count_then_change_only_those(queue, client):
    failed = [queue.enqueue("resize_image", {"n": n}) for n in range(3)]
    queue.process_jobs({"resize_image": fail_with("RuntimeError", "x")}, 1)
    pending = [queue.enqueue("sync_crm", {"n": n}, run_at=queue.clock() + 600) for n in range(2)]
    page = client.get("/jobs").text
    assert 'form id="bulk"' in page and f'name="id" value="{failed[0]}" form="bulk"' in page
    # Nothing ticked: nothing changes, and the page says what to do
    assert client.post("/actions/bulk", action="retry").headers["Location"].endswith(
        "problem=none-selected")
    # Ticked: a confirmation with the count first, which changes nothing
    confirm = client.post("/actions/bulk", action="retry", id=failed[:2] + [pending[0]])
    assert confirm.status == 200 and "Retry 3 jobs" in confirm.text
    assert [queue.get_job(i)["status"] for i in failed] == ["failed"] * 3
    # then the jobs that can change do: two failed ones, not the pending one nor the third
    reply = client.post("/actions/bulk", action="retry", sure="yes",
                        id=failed[:2] + [pending[0]])
    assert reply.headers["Location"] == "/jobs?done=bulk-retry&n=2"
    assert [queue.get_job(i)["status"] for i in failed] == ["pending", "pending", "failed"]
    reply = client.post("/actions/bulk", action="delete", sure="yes", id=pending)
    assert reply.headers["Location"] == "/jobs?done=bulk-delete&n=2"
    assert all(queue.get_job(i) is None for i in pending)
    # An unknown action is refused; a read-only dashboard offers and does none
    assert client.post("/actions/bulk", action="purge", id=failed).headers[
        "Location"].endswith("problem=unsupported")
    read_only = Client(DashboardApp(queue, read_only=True))
    assert 'form id="bulk"' not in read_only.get("/jobs").text
    assert read_only.post("/actions/bulk", action="delete", sure="yes", id=failed).status == 403
    assert queue.get_job(failed[2])["status"] == "failed"


def test_the_scheduled_and_retries_tabs_show_only_their_pending_jobs(queue, client, clock):
    later = queue.enqueue("report", {}, run_at=clock() + 3600)
    due = queue.enqueue("report", {})
    flaky = queue.enqueue("flaky", {}, max_attempts=3)
    queue.process_jobs({"flaky": fail_with("RuntimeError", "x")})  # retried in 2 min
    queue.enqueue("report", {"n": 2})  # due: neither scheduled nor a retry

    def listed(tab):
        return set(re.findall(r'class="id" href="/jobs/([0-9a-f]+)"', client.get(
            "/jobs", tab=tab).text))
    assert listed("scheduled") == {later, flaky}  # due later: by its run_at or its retry
    assert listed("retries") == {flaky}
    assert due in listed(None) and 'aria-current="page">Retries' in client.get(
        "/jobs", tab="retries").text


def test_every_page_names_the_favicon_it_serves(queue, client):
    page = client.get("/").text
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg?v=' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert icon.body.startswith(b"<svg")
