"""The published dbbasic packages that call the queue, running their own code against it.

A session fixture installs them as published, with ``pip install --no-deps`` into a temporary
directory: none of the dependencies they declare is on these paths (dbbasic-web's jobs need
only the standard library and ``dbbasic.queue``; dbbasic-admin's discovery only pkgutil),
except dbbasic-cli's ``pkg_resources``, which the test extra pins (setuptools). Each test runs
their commands and modules in child processes, from an app's directory, as a user would.
"""

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.cli import COMMANDS
from support import ROOT, WAIT_SECONDS, wait_for

PUBLISHED = ("dbbasic-email==1.0.0", "dbbasic-cli==1.0.0", "dbbasic-admin==0.1.1",
             "dbbasic-web==0.1.11")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """A directory holding the published packages, installed without their dependencies."""
    target = tmp_path_factory.mktemp("family") / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--disable-pip-version-check", "--target", str(target), *PUBLISHED],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        message = f"pip could not install {', '.join(PUBLISHED)}:\n{done.stderr}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return target


def run(site: Path, command, cwd: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    """``command`` (a list; ``dbbasic`` and ``dbbasic-web`` are the published scripts) run
    with the published packages and this checkout on the path, ``env`` added."""
    done = subprocess.run([str(site / "bin" / command[0]), *command[1:]], cwd=cwd,
                          env=environment(site, **env), capture_output=True, text=True,
                          timeout=WAIT_SECONDS)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def python(site: Path, code: str, cwd: Path, **env) -> str:
    """Run ``code`` with the published packages on the path; return its output."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment(site, **env),
                          capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert done.returncode == 0, done.stderr
    return done.stdout


def environment(site: Path, **env) -> dict:
    # This checkout on the path too: dbbasic-admin finds packages with pkgutil, which sees
    # the directories on sys.path, not setuptools' editable finder (test_install_kinds.py
    # shows discovery in a wheel install).
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("DBBASIC_QUEUE_")}
    environment.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), **env)
    return environment


def ctrl_c(child: subprocess.Popen) -> str:
    """Press Ctrl-C until the child exits (a second press only if CPython swallowed the first,
    as it does when it lands in a weakref callback); return its output."""
    for _ in range(3):
        child.send_signal(signal.SIGINT)
        try:
            return child.communicate(timeout=WAIT_SECONDS / 6)[0]
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError("the worker did not stop at Ctrl-C")


def reap(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.communicate(timeout=WAIT_SECONDS)


def queue_of(app: Path) -> Queue:
    return Queue(app / "data" / "queue.tsv")


def failing(app: Path, count: int) -> None:
    """``count`` failed jobs in the app's queue."""
    queue = queue_of(app)
    for n in range(count):
        queue.enqueue("resize_image", {"n": n})
    queue.process_jobs({"resize_image": lambda payload: 1 / 0}, max_attempts=1)


# --- dbbasic-web ----------------------------------------------------------------------------

@pytest.fixture
def web_app(tmp_path) -> Path:
    """A dbbasic-web project directory: with templates/ in it, its data is ``../_data``."""
    app = tmp_path / "app"
    (app / "templates").mkdir(parents=True)
    return app


ENQUEUE = """
from dbbasic_web import jobs
print(jobs.enqueue("write_flatfile", relpath="notes/hello.txt", content="Hello from a job\\n"))
print(jobs.enqueue("process_upload", filename="photo.png", data=bytes(range(256)) * 4))
"""


def test_dbbasic_web_jobs_enqueue_and_process_write_a_flat_file_and_an_upload(site, web_app):
    data = web_app.parent / "_data"
    text_id, upload_id = python(site, ENQUEUE, web_app).split()

    python(site, "from dbbasic_web import jobs; jobs.process_jobs()", web_app)

    assert (data / "notes" / "hello.txt").read_text() == "Hello from a job\n"
    assert (data / "uploads" / "photo.png").read_bytes() == bytes(range(256)) * 4
    queue = Queue(data / "jobs.tsv")
    assert [queue.get_job(i)["status"] for i in (text_id, upload_id)] == ["completed"] * 2
    for table in data.glob("jobs*.tsv"):  # the queue file, and the archive the jobs moved to
        header = table.read_text(encoding="ascii").splitlines()[0]
        assert header.split("\t")[:9] == ["id", "type", "payload", "status", "created_at",
                                          "run_at", "attempts", "error", "result"]
    assert sorted(job["id"] for job in queue.jobs()) == sorted([text_id, upload_id])


def test_dbbasic_web_hands_each_job_over_once_a_second_run_does_nothing(site, web_app):
    data = web_app.parent / "_data"
    python(site, ENQUEUE, web_app)
    python(site, "from dbbasic_web import jobs; jobs.process_jobs()", web_app)
    (data / "notes" / "hello.txt").unlink()

    python(site, "from dbbasic_web import jobs; jobs.process_jobs()", web_app)

    assert not (data / "notes" / "hello.txt").exists()


def test_the_dbbasic_web_worker_runs_jobs_as_they_come_and_stops_at_ctrl_c(site, web_app):
    data = web_app.parent / "_data"
    worker = subprocess.Popen([str(site / "bin" / "dbbasic-web"), "worker"], cwd=web_app,
                              env=environment(site), stdout=subprocess.PIPE, text=True)
    try:
        python(site, ENQUEUE, web_app)
        wait_for(lambda: (data / "uploads" / "photo.png").exists(), what="the upload")
        wait_for(lambda: len((data / "uploads" / "photo.png").read_bytes()) == 1024,
                 what="the whole upload")
        out = ctrl_c(worker)
    finally:
        reap(worker)
    assert out == "Starting job worker...\n\nWorker stopped\n"
    assert (data / "notes" / "hello.txt").read_text() == "Hello from a job\n"


# --- dbbasic-email --------------------------------------------------------------------------

class SMTPServer(socketserver.ThreadingTCPServer):
    """Just enough SMTP on 127.0.0.1 for smtplib.send_message; keeps what it is sent."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SMTPSession)
        self.messages = []


class SMTPSession(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        message = None
        for raw in self.rfile:
            line = raw.rstrip(b"\r\n")
            if message is not None:
                if line == b".":
                    self.server.messages.append(b"\n".join(message).decode())
                    message = None
                    self.wfile.write(b"250 queued\r\n")
                else:
                    message.append(line)
                continue
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"DATA":
                message = []
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # EHLO, MAIL, RCPT
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp():
    server = SMTPServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=WAIT_SECONDS)


def test_dbbasic_email_queues_sends_and_counts_pending_and_completed_emails(site, tmp_path,
                                                                           smtp):
    app, mail = tmp_path / "app", dict(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp.server_address[1]))
    app.mkdir()
    # Given two emails queued with `dbbasic email:send` and sent by `dbbasic email:worker`
    sent = [run(site, ["dbbasic", "email:send", f"{name}@example.com", "Welcome", "Hi!"], app,
                **mail).stdout.split()[3] for name in ("ann", "bob")]
    worker = subprocess.Popen([str(site / "bin" / "dbbasic"), "email:worker"], cwd=app,
                              env=environment(site, **mail), stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [queue_of(app).get_job(i)["status"] for i in sent] == ["completed"] * 2,
                 what="the worker to send both emails")
        out = ctrl_c(worker)
    finally:
        reap(worker)
    assert out.endswith("✓ Worker stopped\n")
    assert sorted(m.split("To: ")[1].split("\n")[0] for m in smtp.messages) == [
        "ann@example.com", "bob@example.com"]
    # and, two hours later, a worker's rewrite has moved them to an archive file
    later = Queue(app / "data" / "queue.tsv", clock=lambda: time.time() + 7200)
    later.enqueue("resize_image", {})
    later.process_jobs({"resize_image": lambda payload: None})
    assert later.archive.files()
    # and a third email waits
    run(site, ["dbbasic", "email:send", "cy@example.com", "Welcome", "Hi!"], app, **mail)

    out = run(site, ["dbbasic", "email:queue"], app).stdout

    assert out == ("📧 Email Queue\n\nTotal:     3\nPending:   1\nCompleted: 2\n"
                   "Failed:    0\n")


def test_dbbasic_email_queue_says_so_when_there_is_no_email(site, tmp_path):
    assert run(site, ["dbbasic", "email:queue"], tmp_path).stdout == (
        "📧 Email Queue\n\nNo emails in queue\n")


# --- dbbasic-cli ----------------------------------------------------------------------------

def test_dbbasic_help_lists_every_queue_command_with_its_summary(site, tmp_path):
    out = run(site, ["dbbasic", "help"], tmp_path).stdout

    for name, command in COMMANDS.items():
        assert f"  {name:20} - {command.__doc__}\n" in out
    assert f"  {'email:queue':20} - Show email queue status\n" in out


def test_dbbasic_queue_commands_print_and_exit_as_dbbasic_queue_does(site, tmp_path):
    queue = queue_of(tmp_path)
    job_id = queue.enqueue("send_email", {"to": "ann@example.com"})
    queue.process_jobs({"send_email": lambda payload: "sent"})
    failing(tmp_path, 2)
    for words, code in ((["stats"], 0), (["list", "--status", "failed"], 0),
                        (["show", job_id], 0), (["cancel", job_id], 1),
                        (["show", "feedfacefeedface"], 1), (["list", "--limit", "0"], 2)):
        ours = subprocess.run([sys.executable, "-m", "dbbasic_queue", *words], cwd=tmp_path,
                              env=environment(site), capture_output=True, text=True,
                              timeout=WAIT_SECONDS)

        theirs = run(site, ["dbbasic", f"queue:{words[0]}", *words[1:]], tmp_path, check=False)

        assert (theirs.returncode, theirs.stdout) == (code, ours.stdout), words
        assert ours.stderr in theirs.stderr  # theirs may add setuptools' deprecation warning
    assert "failed 2" in run(site, ["dbbasic", "queue:stats"], tmp_path).stdout


# --- dbbasic-admin --------------------------------------------------------------------------

NAV = """
import json, time
from dbbasic_admin.admin import discover_modules
from dbbasic_admin.api import nav
print(json.dumps([module["name"] for module in discover_modules()]))
status, headers, [body] = nav.handle(None)  # the admin's /admin/api/nav
print(body.decode())
"""


def test_dbbasic_admin_finds_the_jobs_entry_its_badge_the_failed_jobs(site, tmp_path):
    failing(tmp_path, 2)

    names, body = python(site, NAV, tmp_path).split("\n", 1)

    assert "dbbasic_queue" in json.loads(names)
    ours = [item for item in json.loads(body) if item.get("badge") is not None]
    assert ours == [{"icon": "⏰", "label": "Jobs", "href": "/admin/jobs", "order": 90,
                     "badge": 2}]


def test_the_admin_badge_follows_new_failures_in_a_running_admin(site, tmp_path):
    failing(tmp_path, 1)
    admin = subprocess.Popen(
        [sys.executable, "-c", "import json, sys\n"
         "from dbbasic_admin.admin import build_nav\n"
         "for _ in sys.stdin:\n"
         "    print(json.dumps([i.get('badge') for i in build_nav() if 'badge' in i]), "
         "flush=True)\n"],
        cwd=tmp_path, env=environment(site), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)

    def badges():
        admin.stdin.write("\n")
        admin.stdin.flush()
        return json.loads(admin.stdout.readline())
    try:
        assert badges() == [1]
        failing(tmp_path, 2)
        wait_for(lambda: badges() == [3], seconds=10, what="the badge to count 3",
                 interval=0.2)
    finally:
        admin.communicate(timeout=WAIT_SECONDS)  # closes its stdin: it ends


def test_dbbasic_admin_shows_no_failure_and_creates_nothing_without_a_queue_file(site,
                                                                               tmp_path):
    body = python(site, NAV, tmp_path).split("\n", 1)[1]

    assert [item["badge"] for item in json.loads(body) if "badge" in item] == [0]
    assert list(tmp_path.iterdir()) == []
