"""What the tests share: payloads, handlers, fake clocks, bounded waits and child processes.

The fixtures built on these are in conftest.py. The roles a child process plays (a cron
worker, an enqueuer) are in helpers.py, which runs as a script.
"""

import collections
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Counter, List, Optional

import pytest

from dbbasic_queue.testing import FakeClock  # noqa: F401 - re-exported: what an app's own tests use too

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HELPERS = TESTS / "helpers.py"
WAIT_SECONDS = 60  # the bound of any wait; a normal run takes a few seconds at most

EMAIL = {"to": "user@example.com", "subject": "Welcome", "body": "Thanks for signing up!"}
FAIL_ERROR = "ValueError: SMTP server said no"  # what `fail` leaves in a job's error


def noop(payload):
    return None


def fail(payload):
    raise ValueError("SMTP\tserver\nsaid no")  # a tab and a newline: the error stays one line


def wait_for(condition: Callable[[], object], seconds: float = WAIT_SECONDS / 2,
             what: str = "the condition", interval: float = 0.01):
    """Call ``condition`` until it returns something true, and return that; fail naming
    ``what`` once ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(interval)


def append_line(path, text: str) -> None:
    """Append one line with one O_APPEND write, so lines of several processes never mix."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def runs(runs_log: Path) -> Counter[str]:
    """How many times each key appears in a runs log (see helpers.py and jobs_for_cli.py)."""
    text = runs_log.read_text() if runs_log.exists() else ""
    return collections.Counter(text.split())


def in_background(queue, handlers, **options):
    """process_jobs in a daemon thread; returns the thread and a dict that gets its result
    (``ran``) when it ends."""
    import threading
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault(
        "ran", queue.process_jobs(handlers, **options)), daemon=True)
    thread.start()
    return thread, outcome


# --- child processes ------------------------------------------------------------------------

class Children:
    """Child processes of one test: started here, killed if still running and reaped at the
    end (see the ``children`` fixture)."""

    def __init__(self) -> None:
        self.started: List[subprocess.Popen] = []

    def start(self, command, **popen) -> subprocess.Popen:
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("text", True)
        child = subprocess.Popen([str(part) for part in command], **popen)
        self.started.append(child)
        return child

    def role(self, *args, **popen) -> subprocess.Popen:
        """``python helpers.py ARGS...``: a worker or an enqueuer (see helpers.py)."""
        return self.start([sys.executable, HELPERS, *args], **popen)

    def cli(self, *args, log: Optional[Path] = None, **env) -> subprocess.Popen:
        """``python -m dbbasic_queue ARGS...`` in the tests' directory (so ``--handlers
        jobs_for_cli:handlers`` imports), with ``env`` added to the environment; its stderr
        (the worker's log) goes to ``log`` if given."""
        command = [sys.executable, "-m", "dbbasic_queue", *args]
        environment = dict(os.environ, PYTHONPATH=str(ROOT), **env)
        if log is None:
            return self.start(command, cwd=TESTS, env=environment, stderr=subprocess.PIPE)
        with log.open("w") as stderr:
            return self.start(command, cwd=TESTS, env=environment, stderr=stderr)

    def reap(self) -> None:
        for child in self.started:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=WAIT_SECONDS)
            if child.stderr is not None:
                child.stderr.close()


def finish(child: subprocess.Popen) -> str:
    """Wait for a child to exit 0; return its output."""
    out, _ = child.communicate(timeout=WAIT_SECONDS)
    assert child.returncode == 0
    return out


def stop(child: subprocess.Popen, signum: int = signal.SIGTERM) -> int:
    """Send ``signum`` and wait for the child to exit; return its exit code."""
    child.send_signal(signum)
    child.communicate(timeout=WAIT_SECONDS)
    return child.returncode


def kill(child: subprocess.Popen) -> None:
    """SIGKILL: no handler runs, nothing is flushed or cleaned up."""
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=WAIT_SECONDS)


class Transaction:
    """A stand-in for a framework's transaction: callbacks run at commit, dropped at rollback."""

    def __init__(self):
        self.callbacks = []

    def on_commit(self, callback):
        self.callbacks.append(callback)

    def commit(self):
        for callback in self.callbacks:
            callback()
        self.callbacks = []


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StartLine:
    """Makes child processes start their work at one moment, once all have imported and
    opened their queue: each passed ``args()`` says it is ready in ``directory``, then waits
    for ``release``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir()

    def args(self) -> list:
        return ["--start-line", self.directory]

    def release(self, count: int) -> None:
        wait_for(lambda: len(list(self.directory.glob("ready.*"))) >= count,
                 what=f"{count} children to be ready")
        (self.directory / "go").touch()


def wait_at_start_line(directory: str) -> None:
    """The child's side of StartLine."""
    Path(directory, f"ready.{os.getpid()}").touch()
    wait_for(lambda: os.path.exists(os.path.join(directory, "go")), seconds=WAIT_SECONDS,
             what="the start", interval=0.001)


# --- the TSV file --------------------------------------------------------------------------

def kill_worker_mid_job(queue, lease_seconds: float = 60) -> None:
    """Leave the file as a worker SIGKILLed inside a handler leaves it: the first due job
    claimed, ``processing`` with one more attempt and its lease end in run_at, and nothing
    else. (test_processes.py does this with real processes and SIGKILL.)"""
    from dbbasic_queue.model.job import parse_line
    header, *lines = queue.path.read_bytes().splitlines(keepends=True)
    out, claimed = [header], False
    for line in lines:
        job = parse_line(line)
        if not claimed and job.status in ("pending", "processing") and job.run_at <= queue.clock():
            job = job.evolve(status="processing", attempts=job.attempts + 1,
                             run_at=math.ceil(queue.clock() + lease_seconds))
            claimed = True
        out.append(job.to_line())
    queue.path.write_bytes(b"".join(out))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners and users needs root")
