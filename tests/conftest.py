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


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["tsv"])
def queue(request, tmp_path, clock):
    """A queue on a fresh file, with a fake clock and jitter fixed at its midpoint."""
    return Queue(tmp_path / "data" / "queue.tsv", clock=clock, random=lambda: 0.5)
