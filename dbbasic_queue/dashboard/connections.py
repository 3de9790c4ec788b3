"""How long a client of the dashboard's server may take and how many may be connected.

``Limits`` holds the bounds; ``Connections`` counts the open connections, knows which are
still waiting for their request line and headers, and drops the oldest of those to make
room; ``DeadlineReader`` gives each read of a request only the time left to its deadline,
so a client sending a byte now and then is dropped all the same.
"""

import io
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional

MAX_CONNECTIONS = 32  # the page, its refresh and a few people: a dashboard, not a site
DESCRIPTORS_KEPT = 16  # for the interpreter, the listening socket and the log


@dataclass(frozen=True)
class Limits:
    """How long a client may take and how many may be connected at once.

    ``header_seconds``: from connecting to the end of the headers; ``body_seconds``: from
    there to the end of the body (a form is at most 16 KB); ``send_seconds``: each send of
    the answer to a client that does not read it; ``max_connections``: open at once (None:
    32, or half the descriptors under RLIMIT_NOFILE beyond 16, if that is fewer: the other
    half is for the files the requests read).
    """
    header_seconds: float = 5.0
    body_seconds: float = 10.0
    send_seconds: float = 10.0
    max_connections: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("header_seconds", "body_seconds", "send_seconds"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0 < value < 3600:
                raise ValueError(f"{name} must be a number of seconds above 0 and below 3600, "
                                 f"not {value!r}")
        most = self.max_connections
        if most is not None and (isinstance(most, bool) or not isinstance(most, int) or most < 1):
            raise ValueError(f"max_connections must be a whole number of at least 1 (or None), "
                             f"not {most!r}")

    def connections(self) -> int:
        """How many connections the server keeps open at once."""
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return MAX_CONNECTIONS
        return max(1, min(MAX_CONNECTIONS, (soft - DESCRIPTORS_KEPT) // 2))


class Connections:
    """The server's open connections, counted, and those still waiting for their request
    line and headers (the ones that may be dropped to make room)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.count = 0
        self.waiting: Dict[socket.socket, float] = {}  # connection -> when it was accepted
        self.changed = threading.Condition()

    def make_room(self, seconds: float) -> bool:
        """Whether there is room for one more connection: if not, drop the oldest still
        waiting for its request, and wait up to ``seconds`` for it (or any) to close."""
        with self.changed:
            if self.count >= self.most:
                self.drop_oldest()
            return self.changed.wait_for(lambda: self.count < self.most, seconds)

    def out_of_descriptors(self, seconds: float) -> None:
        """Out of descriptors: from now on keep at most half the connections open now (the
        other half of their descriptors for the files the requests read), drop the waiting
        ones beyond, and wait up to ``seconds`` for a connection to close."""
        with self.changed:
            count = self.count
            self.most = max(1, min(self.most, count // 2))
            dropped = 0
            while count - dropped > self.most and self.drop_oldest():
                dropped += 1
            self.changed.wait_for(lambda: self.count < count, seconds)

    def drop_oldest(self) -> bool:
        if not self.waiting:
            return False
        oldest = min(self.waiting, key=self.waiting.__getitem__)
        del self.waiting[oldest]
        _shut(oldest)
        return True

    def add(self, connection: socket.socket) -> None:
        with self.changed:
            self.count += 1
            self.waiting[connection] = time.monotonic()

    def started(self, connection: socket.socket) -> None:
        """Its request line and headers are in: it is no longer dropped for a newcomer."""
        with self.changed:
            self.waiting.pop(connection, None)

    def remove(self, connection: socket.socket) -> None:
        with self.changed:
            self.waiting.pop(connection, None)
            self.count -= 1
            self.changed.notify_all()


def _shut(connection: socket.socket) -> None:
    """End a connection another thread reads: its read returns at once, with nothing; that
    thread closes it (closing it here could close a descriptor reused meanwhile)."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class DeadlineReader(io.RawIOBase):
    """A connection's reads, each given only the time left until ``deadline`` (a monotonic
    time, moved on by the reader's owner); ``ended`` once the client has closed its side."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self.connection = connection
        self.deadline = deadline
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request took too long to arrive")
        timeout = self.connection.gettimeout()
        self.connection.settimeout(left)
        try:
            count = self.connection.recv_into(buffer)
        finally:
            self.connection.settimeout(timeout)
        self.ended = self.ended or count == 0
        return count
