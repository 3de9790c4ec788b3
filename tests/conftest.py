"""Shared fixtures. ``queue`` is parametrised by backend so a second backend reuses the suite."""

import pytest

from dbbasic_queue import Queue


class FakeClock:
    """A wall clock the test moves by hand, so run_at, backoff and leases need no sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The queue's settings from the developer's shell must not reach the tests."""
    for name in ("DBBASIC_QUEUE_FILE", "DBBASIC_QUEUE_URL", "DBBASIC_QUEUE_DURABLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["tsv"])
def queue(request, tmp_path, clock):
    """A queue on a fresh file, with a fake clock and jitter fixed at its midpoint."""
    return Queue(tmp_path / "data" / "queue.tsv", clock=clock, random=lambda: 0.5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on 127.0.0.1, on a free port, with its data in a temporary
    directory; stopped by its process id at the end. In CI (CI=true) a missing or failing
    server fails the tests that need it; elsewhere they are skipped, saying why."""
    import os
    import shutil
    import socket
    import subprocess
    import time

    def unavailable(message):
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server is not installed (apt-get install redis-server); the RQ "
                    "backend's tests need a real one")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir",
         str(tmp_path_factory.mktemp("redis")), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    from redis import Redis
    deadline = time.monotonic() + 10
    while True:
        try:
            Redis.from_url(url).ping()
            break
        except Exception as error:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                unavailable(f"redis-server did not start on port {port}: {error}")
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
