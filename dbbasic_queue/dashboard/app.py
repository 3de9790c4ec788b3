"""The dashboard as a WSGI application, mountable under any prefix (SCRIPT_NAME).

``DashboardApp(backend)`` serves the overview, the jobs, a job, the failures and the actions.
A request whose Host header names no host of the dashboard is refused first (400), before
who asks is looked at or the queue read. Reading is GET (never a change); every action is a
POST with a CSRF token, refused in read-only mode; a verb the backend does not offer is not
shown, and refused if posted anyway.
``mount(app, "/admin/jobs", dashboard)`` puts it under a prefix of another WSGI app.
"""

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs

from .. import __version__
from ..backend import (DEFAULT_MAX_ATTEMPTS, JOB_CONTROL, LISTING, PURGE, QUEUES, RETRY,
                       WORKERS)
from ..errors import QueueError, UnsupportedError
from ..metrics import prometheus_text
from ..model.job import STATUSES
from . import actions, detail, pages
from .reading import TABS
from .sources import reader_for
from .security import (SECURITY_HEADERS, AllowedHosts, Credentials, Csrf, basic_auth_matches,
                       is_direct_local_request)
from .templates import layout, url

logger = logging.getLogger("dbbasic_queue")

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"dashboard.css": "text/css; charset=utf-8",
                "dashboard.js": "text/javascript; charset=utf-8",
                "favicon.svg": "image/svg+xml"}
MAX_FORM_BYTES = 16 * 1024
PER_PAGE = 50

Response = Tuple[str, List[Tuple[str, str]], bytes]


class Request:
    """The parts of a WSGI environ the dashboard reads, decoded once."""

    def __init__(self, environ: Dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.base = environ.get("SCRIPT_NAME", "").rstrip("/")
        # PEP 3333: PATH_INFO holds the URL's bytes as latin-1 characters.
        self.path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace") or "/"
        self.query = parse_qs(environ.get("QUERY_STRING", ""))
        self.form: Dict[str, List[str]] = {}
        self.new_cookie: Optional[str] = None  # a CSRF cookie to set, for a browser without one

    def arg(self, name: str, source: Optional[Dict[str, List[str]]] = None) -> Optional[str]:
        values = (self.query if source is None else source).get(name)
        return values[0].strip() if values and values[0].strip() else None

    def read_form(self) -> bool:
        """Parse a urlencoded POST body; False if it is too big."""
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_FORM_BYTES:
            return False
        body = self.environ["wsgi.input"].read(length) if length > 0 else b""
        self.form = parse_qs(body.decode("utf-8", "replace"))
        return True


class DashboardApp:
    """The dashboard of ``backend`` (a Queue, an RQQueue: anything with the Backend interface).

    ``credentials`` (user, password) asks every request for HTTP basic auth; ``authorize``,
    a function of the WSGI environ returning True for a request the host app has already
    let in, replaces it. With neither, only requests made straight from this machine are
    answered (loopback, no proxy header). ``allowed_hosts`` are the names it answers to in the
    Host header besides localhost, 127.0.0.1 and [::1] (``jobs.example.com``; ``.example.com``
    for a domain and its subdomains; ``*`` for any, when a proxy in front checks the name).
    ``read_only`` hides and refuses every action.
    ``secret`` signs the CSRF tokens: give the same one to every process of a multi-process
    server (default: random, per process). ``max_attempts`` is the workers', for the
    "attempts of max" column of jobs without their own.
    """

    def __init__(self, backend, *, credentials: Optional[Tuple[str, str]] = None,
                 authorize: Optional[Callable[[Dict[str, Any]], bool]] = None,
                 allowed_hosts: Iterable[str] = (), read_only: bool = False,
                 secret: Optional[bytes] = None,
                 clock: Optional[Callable[[], float]] = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, refresh_seconds: int = 5) -> None:
        self.backend = backend
        self.credentials = None if credentials is None else Credentials(*credentials)
        self.authorize = authorize
        self.hosts = AllowedHosts(allowed_hosts)
        self.read_only = read_only
        self.csrf = Csrf(secret)
        self.clock = clock or getattr(backend, "clock", None) or time.time
        self.max_attempts = max_attempts
        self.refresh_seconds = refresh_seconds
        self.reader = reader_for(backend, self.clock)
        self.where = describe(backend)
        self.offers = offered_verbs(backend, self.reader is not None)

    def warm(self) -> None:
        """Count the overview's figures once, so that the first look finds them kept (an
        open dashboard then reads only what changed, see sources.FileReader._count). ``run``
        calls it in a thread as it starts serving; a failure is logged, the pages say it."""
        if self.reader is None:
            return
        try:
            self.reader.summary()
        except Exception as error:  # the first page will show and log it
            logger.warning("dashboard: could not count the queue yet (%s)", error)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            status, headers, body = self.respond(request)
        except QueueError as error:  # the file cannot be read, a corrupt line asked for
            logger.warning("dashboard: %s", error)
            status, headers, body = self.page(request, detail.message(
                "The queue cannot be read", str(error)), "500 Internal Server Error")
        except Exception:
            logger.exception("dashboard: %s %s failed", request.method, request.path)
            status, headers, body = self.page(request, detail.message(
                "Something went wrong", "The error is in the server's log."),
                "500 Internal Server Error")
        headers = headers + list(SECURITY_HEADERS) + [("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [b"" if request.method == "HEAD" else body]

    def respond(self, request: Request) -> Response:
        refusal = self.refuse(request)
        if refusal is not None:
            return refusal
        if request.method in ("GET", "HEAD"):
            return self.get(request)
        if request.method == "POST":
            return actions.post(self, request)
        return self.page(request, detail.message("Method not allowed", "Use GET, or POST for "
                                                 "an action."), "405 Method Not Allowed",
                         [("Allow", "GET, HEAD, POST")])

    def refuse(self, request: Request) -> Optional[Response]:
        environ = request.environ
        if not self.hosts.allow(environ):
            logger.warning("dashboard: refused a request for Host %r (not among its names; "
                           "DNS rebinding, or a name to add to allowed_hosts)",
                           environ.get("HTTP_HOST", "")[:200])
            return self.plain("400 Bad Request", "This dashboard does not answer to the host "
                              "name of this request. If it is the dashboard's own name, add it "
                              "with --allowed-host NAME (allowed_hosts= when mounted).")
        if self.credentials is not None:
            if not basic_auth_matches(environ, self.credentials):
                return ("401 Unauthorized",
                        [("WWW-Authenticate", 'Basic realm="dbbasic-queue", charset="UTF-8"'),
                         ("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
                        b"This dashboard asks for a user and password.\n")
        elif self.authorize is not None:
            if not self.authorize(environ):
                return self.plain("403 Forbidden", "Not allowed.")
        elif not is_direct_local_request(environ):
            return self.plain("403 Forbidden", "This dashboard has no credentials, so it answers "
                              "only requests from this machine that no proxy forwarded. Give it "
                              "credentials (DBBASIC_QUEUE_DASHBOARD_CREDENTIALS=user:password) "
                              "or an authorize function.")
        return None

    # --- reading ----------------------------------------------------------------------------

    def get(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/static/"):
            return self.static(path[len("/static/"):])
        if path == "/api/overview":
            figures = self.reader.summary() if self.reader else {"listing": False}
            return ("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                    json.dumps(figures).replace("<", "\\u003c").encode())  # never reads as HTML
        if path == "/metrics" and self.reader is not None:  # Prometheus scrapes this
            return ("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                               ("Cache-Control", "no-store")],
                    prometheus_text(self.backend).encode("utf-8"))
        if path == "/lookup":
            return self.redirect(request, "/jobs/" + (request.arg("id") or ""))
        view = self.view(request)
        match = actions.JOB_PATH.fullmatch(path)
        if match and match.group(2) in (None, "run-now"):
            return self.job_page(request, view, match.group(1), match.group(2) == "run-now")
        if match:
            return self.page(request, detail.message("Method not allowed", "An action is a POST "
                                                     "from its button."), "405 Method Not Allowed",
                             [("Allow", "POST")])
        if path == "/" and self.reader is None:
            return self.page(request, pages.no_listing(view, self.where))
        if self.reader is None and path in ("/jobs", "/failures", "/actions/retry-failed",
                                            "/actions/retry-group", "/actions/purge"):
            return self.redirect(request, "/")
        if path == "/":
            return self.page(request, pages.overview(view, self.reader.summary()))
        if path == "/jobs":
            return self.page(request, self.jobs_page(request, view))
        if path == "/failures":
            return self.page(request, pages.failures(view, self.reader.failure_groups()))
        if path == "/workers":
            listed = self.backend.workers() if WORKERS in self.backend.capabilities else None
            return self.page(request, pages.workers(view, listed))
        if path in ("/actions/retry-failed", "/actions/retry-group", "/actions/purge"):
            return actions.confirmation(self, request, view)
        return self.page(request, detail.message("Not found", f"No page {path}.", url(
            request.base)), "404 Not Found")

    def jobs_page(self, request: Request, view: pages.View) -> pages.Page:
        status = request.arg("status")
        status = status if status in STATUSES else None
        search = (request.arg("q") or "")[:200] or None
        try:
            number = max(1, min(int(request.arg("page") or 1), 100_000))
        except ValueError:
            number = 1
        tab = request.arg("tab")
        tab = tab if tab in TABS else None
        filters = pages.Filters(None if tab else status, request.arg("type"), search, number, tab)
        types: set = set()  # every job's, gathered by the same pass: the type menu
        records, total = self.reader.page(filters.status, filters.type, search, number, PER_PAGE,
                                          tab, types)
        rows = []
        for record in records:
            try:
                rows.append(self.reader.load(record))
            except QueueError as error:
                rows.append(str(error))
        retry_count = None
        if status == "failed" and filters.type and not search:
            retry_count = total
        return pages.jobs(view, filters, rows, total, PER_PAGE, self.reader.type_names(types),
                          retry_count)

    def job_page(self, request: Request, view: pages.View, job_id: str, force: bool) -> Response:
        # job_info, where the backend has it, is get_job's dict with the options, progress and
        # stop request: one look at the files for all of it.
        informed = JOB_CONTROL in getattr(self.backend, "capabilities", ())
        shown = (self.backend.job_info if informed else self.backend.get_job)(job_id)
        if shown is None:
            return self.page(request, detail.message("No such job", f"There is no job {job_id} "
                                                     f"in {self.where}.",
                                                     url(request.base, "/jobs")), "404 Not Found")
        if not informed and self.reader is not None:
            shown = dict(shown, options=self.reader.options_of(job_id))
        if callable(getattr(self.backend, "tracebacks", None)):
            try:
                shown = dict(shown, tracebacks=self.backend.tracebacks(job_id))
            except UnsupportedError:
                pass
        if not force:
            return self.page(request, detail.job(view, shown))
        if shown["status"] != "processing" or not view.can("run_now"):
            return self.redirect(request, "/jobs/" + job_id)
        return self.page(request, detail.confirm_force(view, shown))

    # --- responses --------------------------------------------------------------------------

    def view(self, request: Request) -> pages.View:
        cookie = Csrf.cookie_value(request.environ)
        if cookie is None:
            cookie = request.new_cookie = Csrf.new_cookie_value()
        return pages.View(request.base, self.clock(), self.read_only, self.offers,
                          self.csrf.token(cookie), self.max_attempts)

    def page(self, request: Request, page: pages.Page, status: str = "200 OK",
             headers: Optional[List[Tuple[str, str]]] = None) -> Response:
        title, content = page
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")] + (
            headers or [])
        new_cookie = request.new_cookie
        if new_cookie is not None:
            headers.append(("Set-Cookie", Csrf.set_cookie_header(
                new_cookie, url(request.base, "") or "/",
                request.environ.get("wsgi.url_scheme") == "https")))
        active = request.path.strip("/").split("/")[0] or "overview"
        body = layout(base=request.base, page=active, title=title, content=content,
                      where=self.where, read_only=self.read_only,
                      refresh=self.refresh_seconds, version=__version__,
                      flash=actions.flash(request), listing=self.reader is not None)
        # A lone surrogate (from an exception's text, say) shows as its escape, not a 500.
        return status, headers, body.encode("utf-8", "backslashreplace")

    @staticmethod
    def plain(status: str, text: str) -> Response:
        return status, [("Content-Type", "text/plain; charset=utf-8"),
                        ("Cache-Control", "no-store")], (text + "\n").encode()

    @staticmethod
    def redirect(request: Request, path: str, **query: Any) -> Response:
        return "303 See Other", [("Location", url(request.base, path, **query)),
                                 ("Cache-Control", "no-store")], b""

    def static(self, name: str) -> Response:
        if name not in STATIC_TYPES:
            return self.plain("404 Not Found", "No such file.")
        return "200 OK", [("Content-Type", STATIC_TYPES[name]),
                          ("Cache-Control", "public, max-age=3600")], (STATIC_DIR / name).read_bytes()


def offered_verbs(backend, listing: bool) -> frozenset:
    """The actions and pages this backend offers, from its declared capabilities."""
    capabilities = getattr(backend, "capabilities", frozenset())
    verbs = {"cancel"}  # published: every backend has cancel_job
    if callable(getattr(backend, "delete", None)):
        verbs.add("delete")
    if RETRY in capabilities:
        verbs.add("retry")
    if PURGE in capabilities:
        verbs.add("purge")
    if listing or LISTING in capabilities:
        verbs.add("listing")
    if callable(getattr(backend, "run_now", None)):  # no capability names it yet
        verbs.add("run_now")
    if QUEUES in capabilities:
        verbs.add("pause")
    if JOB_CONTROL in capabilities:
        verbs.add("stop")
    return frozenset(verbs)


def describe(backend) -> str:
    """Where the jobs live, for the page's top bar."""
    if callable(getattr(backend, "describe", None)):
        return backend.describe()
    return str(getattr(backend, "url", None) or type(backend).__name__)


def mount(app, prefix: str, dashboard):
    """A WSGI app sending requests under ``prefix`` (``/admin/jobs``) to ``dashboard`` and the
    rest to ``app``, with SCRIPT_NAME and PATH_INFO moved as WSGI expects."""
    prefix = "/" + prefix.strip("/")

    def dispatch(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ = dict(environ, SCRIPT_NAME=environ.get("SCRIPT_NAME", "") + prefix,
                           PATH_INFO=path[len(prefix):])
            return dashboard(environ, start_response)
        return app(environ, start_response)
    return dispatch

