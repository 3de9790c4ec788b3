"""``dbbasic-queue dashboard``: the dashboard on the standard library's wsgiref server.

Loopback (127.0.0.1) by default. Any other address needs credentials for HTTP basic auth,
from ``--credentials-file`` or DBBASIC_QUEUE_DASHBOARD_CREDENTIALS (``user:password``); the
command refuses to start without them and says on start who may open the page. It answers
to the Host names of loopback, of the address it was given (unless 0.0.0.0 or ::) and of
``--allowed-host``.

A client that connects and sends nothing cannot hold the server (``connections.py``): its
request must arrive within a few seconds, a newcomer beyond the connections it keeps
displaces the oldest one still waiting for its request, and out of descriptors it keeps
fewer and waits for one to close instead of retrying at once.
"""

import errno
import io
import logging
import os
import signal
import socket
import stat
import threading
import time
from socketserver import ThreadingMixIn
from typing import Iterable, Optional, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .app import DashboardApp
from .connections import Connections, DeadlineReader, Limits
from .security import CREDENTIALS_VARIABLE, LOOPBACK_NAMES, is_loopback_host, load_credentials

logger = logging.getLogger("dbbasic_queue")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class DashboardServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per connection (the page and its refresh at once), within
    ``limits`` (see Limits)."""
    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits in the kernel, not refused
    room_seconds = 0.5  # how long one accept waits for room before the loop looks again

    def __init__(self, address, handler, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.connections = Connections(limits.connections())
        self.warned = 0.0  # when the last warning of a full server was logged (monotonic)
        super().__init__(address, handler)

    def get_request(self):
        if not self.connections.make_room(self.room_seconds):
            self.warn("all %d connections are busy with requests", self.connections.most)
            raise BlockingIOError("no room for a connection")  # the loop looks again
        try:
            connection, address = super().get_request()
        except OSError as error:
            if error.errno in OUT_OF_DESCRIPTORS:
                self.connections.out_of_descriptors(self.room_seconds)
                self.warn("out of file descriptors (%s): keeping at most %d connections",
                          error.strerror, self.connections.most)
            raise
        self.connections.add(connection)
        return connection, address

    def shutdown_request(self, request) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self.connections.remove(request)

    def warn(self, message: str, *args) -> None:
        """Log a warning of a full server at most once a minute."""
        if time.monotonic() - self.warned >= 60:
            self.warned = time.monotonic()
            logger.warning("dashboard: " + message, *args)


class DashboardServer6(DashboardServer):
    address_family = socket.AF_INET6


class LoggingHandler(WSGIRequestHandler):
    """Requests go to the package's logger, not to stderr; the request must arrive within
    the server's limits."""

    def setup(self) -> None:
        limits = self.server.limits
        super().setup()
        self.connection.settimeout(limits.send_seconds)
        self.rfile.close()
        self.reader = DeadlineReader(self.connection, time.monotonic() + limits.header_seconds)
        self.rfile = io.BufferedReader(self.reader)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        if self.reader.ended:  # the client closed before the blank line: nothing to answer
            return False
        if parsed:
            self.reader.deadline = time.monotonic() + self.server.limits.body_seconds
            self.server.connections.started(self.connection)
        return parsed

    def handle(self) -> None:
        try:
            super().handle()
        except socket.timeout:
            logger.info("dashboard %s: dropped, its request took longer than %g s to arrive",
                        self.address_string(), self.server.limits.header_seconds)
        except ConnectionError:
            pass  # the client went away

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        logger.info("dashboard %s %s", self.address_string(), format % args)


def serve(app, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, limits: Limits = Limits()):
    """A started-to-listen server for ``app`` (port 0: a free one; see ``server_port``).
    The caller runs ``serve_forever()`` (in a thread, for tests) and ``server_close()``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"the port must be a whole number from 0 to 65535, not {port!r}")
    server_class = DashboardServer6 if ":" in host else DashboardServer
    try:
        server = server_class((host.strip("[]"), port), LoggingHandler, limits)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                         f"choose another --port or --host") from None
    server.set_app(app)
    return server


def run(backend, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, read_only: bool = False,
        credentials_file: Optional[str] = None, out: Optional[TextIO] = None,
        ready: Optional[threading.Event] = None, allowed_hosts: Iterable[str] = ()) -> int:
    """Serve the dashboard of ``backend`` until Ctrl-C or SIGTERM; returns 0. Raises
    ValueError (nothing served) for an address off loopback without credentials, unreadable
    credentials, a port in use or out of range, or a malformed allowed host. ``out`` gets the
    start message (the command's output). It answers to the Host names of loopback, of
    ``host`` unless that is 0.0.0.0 or ::, and of ``allowed_hosts``."""
    credentials = load_credentials(credentials_file)
    loopback = is_loopback_host(host)
    if not loopback and credentials is None:
        raise ValueError(f"--host {host} is not a loopback address, so the dashboard needs a "
                         f"user and password: set {CREDENTIALS_VARIABLE}=user:password or give "
                         f"--credentials-file FILE (its first line user:password)")
    app = DashboardApp(backend, credentials=credentials, read_only=read_only,
                       allowed_hosts=served_names(host, allowed_hosts))
    server = serve(app, host, port)
    shown_host = f"[{host.strip('[]')}]" if ":" in host else host
    for line in start_message(backend, f"http://{shown_host}:{server.server_port}/", loopback,
                              credentials, credentials_file, read_only, app.hosts.names):
        print(line, file=out, flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=app.warm, name="dbbasic-queue-dashboard-warm", daemon=True).start()
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def served_names(host: str, allowed_hosts: Iterable[str] = ()) -> list:
    """The Host names, besides loopback's, of a dashboard listening on ``host``: the
    allowed ones, and ``host`` itself unless it is every address (0.0.0.0, ::), which no
    browser can be pointed at."""
    return list(allowed_hosts) + ([] if host.strip() in WILDCARD_HOSTS else [host])


def _stop(signum, frame):
    raise KeyboardInterrupt  # leaves serve_forever in the main thread, as Ctrl-C does


def start_message(backend, address: str, loopback: bool, credentials, credentials_file,
                  read_only: bool, names: Iterable[str] = LOOPBACK_NAMES):
    yield f"dbbasic-queue dashboard of {backend.describe()} on {address}"
    others = sorted(set(names) - set(LOOPBACK_NAMES))
    yield (f"It answers to the Host names {', '.join(LOOPBACK_NAMES + tuple(others))} (any "
           f"port); --allowed-host NAME adds one.")
    if credentials is not None:
        source = credentials_file or CREDENTIALS_VARIABLE
        yield f"HTTP basic auth required: user {credentials.user!r} (from {source})"
        if not loopback:
            yield ("The password crosses the network in clear over HTTP: put the dashboard "
                   "behind HTTPS (a reverse proxy) or an SSH tunnel.")
        if credentials_file and os.stat(credentials_file).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            yield f"Warning: {credentials_file} is readable by other users: chmod 600 it."
    else:
        yield "No password: only this machine can open it (loopback, no proxy)."
    yield ("Read-only: actions are hidden and refused." if read_only else
           "Actions (retry, cancel, run now, purge) are on; --read-only turns them off.")
    yield "Ctrl-C stops it."
