"""``dbbasic-queue dashboard``: the dashboard on the standard library's wsgiref server.

Loopback (127.0.0.1) by default. Any other address needs credentials for HTTP basic auth,
from ``--credentials-file`` or DBBASIC_QUEUE_DASHBOARD_CREDENTIALS (``user:password``); the
command refuses to start without them and says on start who may open the page. It answers
to the Host names of loopback, of the address it was given (unless 0.0.0.0 or ::) and of
``--allowed-host``.
"""

import logging
import os
import signal
import socket
import stat
import threading
from socketserver import ThreadingMixIn
from typing import Iterable, Optional, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import DashboardApp
from .security import CREDENTIALS_VARIABLE, LOOPBACK_NAMES, is_loopback_host, load_credentials

logger = logging.getLogger("dbbasic_queue")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per request (the page and its refresh at once)."""
    daemon_threads = True


class ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class LoggingHandler(WSGIRequestHandler):
    """Requests go to the package's logger, not to stderr."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        logger.info("dashboard %s %s", self.address_string(), format % args)


def serve(app, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
    """A started-to-listen server for ``app`` (port 0: a free one; see ``server_port``).
    The caller runs ``serve_forever()`` (in a thread, for tests) and ``server_close()``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"the port must be a whole number from 0 to 65535, not {port!r}")
    server_class = ThreadingWSGIServer6 if ":" in host else ThreadingWSGIServer
    try:
        return make_server(host.strip("[]"), port, app, server_class=server_class,
                           handler_class=LoggingHandler)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                         f"choose another --port or --host") from None


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
