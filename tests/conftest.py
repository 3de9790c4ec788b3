"""Shared fixtures: fake clocks, a TSV queue on them, the same queue on every backend, a real
redis-server, and child processes that are always reaped. Helpers are in support.py.

A test taking ``backend`` runs once per backend. ``@pytest.mark.declares(CAPABILITY, ...)``
keeps the backends that declare every one of them (see dbbasic_queue.backend),
``@pytest.mark.lacks(CAPABILITY, ...)`` those that declare none of them: the suite reads the
backends' declarations and never tests their classes.
"""

import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

collect_ignore = ["sample_app"]  # an app's own suite, run as such by test_testing_helpers.py

from dbbasic_queue import Queue
from support import Children, FakeClock, wait_for


# The fast core (``pytest -m "not slow"``, under 20 s) leaves out what starts processes,
# servers, browsers or installs: these modules whole, and any test asking for a fixture that
# starts something or waits on real time (a worker's keeper thread: ``real_queue``), or run
# on Redis.
SLOW_MODULES = {"test_bench", "test_install_kinds", "test_family_packages", "test_dashboard_browser",
                "test_django_tasks", "test_processes", "test_readme", "test_published",
                "test_concurrency", "test_faults_dashboard", "test_rq", "test_faults_rq",
                "test_ctrl_c", "test_testing_helpers", "test_faults_cli", "test_faults_storage",
                "test_faults_archive"}
SLOW_FIXTURES = {"children", "redis_url", "spawn", "real_queue"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or params.get("backend") == "rq"):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    config.addinivalue_line("markers", "declares(*capabilities): run on the backends that "
                                       "declare all of these capabilities")
    config.addinivalue_line("markers", "lacks(*capabilities): run on the backends that "
                                       "declare none of these capabilities")


def backend_classes():
    from dbbasic_queue.rq.backend import RQQueue
    return {"tsv": Queue, "rq": RQQueue}


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    wanted = {c for m in metafunc.definition.iter_markers("declares") for c in m.args}
    refused = {c for m in metafunc.definition.iter_markers("lacks") for c in m.args}
    names = [name for name, cls in backend_classes().items()
             if wanted <= cls.capabilities and not refused & cls.capabilities]
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The queue's settings from the developer's shell must not reach the tests."""
    for name in ("DBBASIC_QUEUE_FILE", "DBBASIC_QUEUE_URL", "DBBASIC_QUEUE_DURABLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock():
    """The wall clock of the ``queue`` fixture."""
    return FakeClock()


@pytest.fixture
def monotonic():
    """The monotonic clock of the ``queue`` fixture: a worker's max_seconds and result window."""
    return FakeClock(1000.0)


@pytest.fixture
def real_queue(tmp_path):
    """A TSV queue on a fresh file and the real clocks, for tests that wait on a worker's
    keeper thread, which ticks in real time (progress, stop requests)."""
    return Queue(tmp_path / "data" / "queue.tsv")


@pytest.fixture(params=["tsv"])
def queue(request, tmp_path, clock, monotonic):
    """A TSV queue on a fresh file, with fake clocks and jitter fixed at its midpoint."""
    return Queue(tmp_path / "data" / "queue.tsv", clock=clock, monotonic=monotonic,
                 random=lambda: 0.5)


@dataclass
class BackendUnderTest:
    queue: object  # the Backend
    spec: str  # the same queue for a child process (see helpers.py)
    count_jobs: Callable[[], int]  # every job stored, counted without the queue's own code


@pytest.fixture
def backend(request, tmp_path):
    """The same empty queue on one backend (one test run per backend, see the module's
    docstring), on the real clock, the only one RQ has."""
    if request.param == "tsv":
        path = tmp_path / "data" / "queue.tsv"
        return BackendUnderTest(Queue(path), str(path), lambda: len(
            path.read_bytes().splitlines()[1:]) if path.exists() else 0)
    from redis import Redis
    from rq import Queue as RedisJobQueue

    from dbbasic_queue.rq.backend import RQQueue
    url, name = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:8]}"
    jobs = RedisJobQueue(name, connection=Redis.from_url(url))

    def count_jobs():
        registries = (jobs.scheduled_job_registry, jobs.started_job_registry,
                      jobs.finished_job_registry, jobs.failed_job_registry,
                      jobs.deferred_job_registry, jobs.canceled_job_registry)
        return jobs.count + sum(len(registry) for registry in registries)
    return BackendUnderTest(RQQueue(url, name=name), f"{url}#{name}", count_jobs)


@pytest.fixture
def children():
    """Start child processes (see support.Children); at the end, kill those still running
    and reap them all."""
    group = Children()
    yield group
    group.reap()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on 127.0.0.1, on a free port, with its data in a temporary
    directory; stopped by its process id at the end. In CI (CI=true) a missing or failing
    server fails the tests that need it; elsewhere they are skipped, saying why."""
    import os

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

    def answers():
        if process.poll() is not None:
            raise RuntimeError(f"it exited with code {process.returncode}")
        try:
            return Redis.from_url(url).ping()
        except Exception:
            return False
    try:
        wait_for(answers, seconds=10, what="its answer to a ping", interval=0.05)
    except (AssertionError, RuntimeError) as error:
        process.kill()
        process.wait(timeout=10)
        unavailable(f"redis-server did not start on port {port}: {error}")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def shared_dir():
    """A directory other users can reach (pytest's tmp_path sits in a private one)."""
    path = Path(tempfile.mkdtemp(prefix="dbbasic-queue-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
