"""The actions: retry, cancel, stop and run now on one job, retry all failed (of a type), purge,
pause and resume a queue or a job type.

Each is a POST carrying the CSRF token, answered by a redirect (303) to a page whose
``done``/``problem`` word picks one of the fixed messages below: nothing the request says is
echoed. The bulk actions are reached through a GET page that only counts (the dry run) and
asks; that page is all a GET of an action does.
"""

import re
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ..errors import UnsupportedError
from ..model.words import seconds_in
from ..model.job import FINISHED
from . import detail
from .security import CSRF_FIELD
from .templates import Markup, render

if TYPE_CHECKING:  # pragma: no cover
    from .app import DashboardApp, Request

DONE = {"retried": "The job is pending again, due now.",
        "cancelled": "The job is cancelled.",
        "run-now": "The job is due now: the next worker run takes it.",
        "retried-failed": "{n} failed jobs are pending again, due now.",
        "purged": "{n} finished jobs were removed from the file.",
        "paused": "Paused: no worker starts its jobs from its next claim on; jobs running finish.",
        "resumed": "Resumed: workers take its jobs again from their next claim.",
        "already": "Nothing changed: it was already so.",
        "deleted": "The job is deleted.",
        "stop-asked": "Its worker is asked to stop it: its handler sees the request within a "
                      "second, and is interrupted if it is still running after the worker's "
                      "grace period. The job then ends cancelled.",
        "bulk-retry": "{n} of the selected jobs are pending again, due now (only failed or "
                      "cancelled ones can be retried).",
        "bulk-cancel": "{n} of the selected jobs are cancelled (only pending ones can be).",
        "bulk-delete": "{n} of the selected jobs are deleted (processing ones cannot be)."}
PROBLEMS = {"not-retryable": "Only a failed or cancelled job can be retried; this one is not (any more).",
            "not-cancellable": "Only a pending job can be cancelled; this one is not (any more).",
            "not-runnable": "Only a pending job can be run now, or a processing one put back; "
                            "this one is neither (any more).",
            "not-deletable": "A processing job cannot be deleted: its worker holds it. Wait for "
                             "its result, or put it back first.",
            "not-stoppable": "Only a processing job can be stopped; this one is not (any more).",
            "not-sure": "Tick the box to delete the job: it cannot be undone.",
            "none-selected": "Select the jobs first, with the boxes of their rows.",
            "unsupported": "This backend does not offer that action.",
            "bad-pause": "Only a queue name or a job type the file can hold can be paused."}
JOB_PATH = re.compile(r"/jobs/([^/]+)(?:/(retry|cancel|stop|run-now|delete))?")  # a job, or an action
_JOB_VERBS = {"retry": ("retry", "retried", "not-retryable"),
              "cancel": ("cancel", "cancelled", "not-cancellable"),
              "stop": ("stop", "stop-asked", "not-stoppable"),
              "run-now": ("run_now", "run-now", "not-runnable"),
              "delete": ("delete", "deleted", "not-deletable")}


def flash(request: "Request") -> Markup:
    """The message a redirect after an action asked for, if any."""
    done, problem = request.arg("done"), request.arg("problem")
    try:
        count = f"{int(request.arg('n') or 0):,}"
    except ValueError:
        count = "0"
    if done in DONE:
        return render('<p class="flash" role="status">{text}</p>', text=DONE[done].format(n=count))
    if problem in PROBLEMS:
        return render('<p class="flash problem" role="alert">{text}</p>', text=PROBLEMS[problem])
    return Markup("")


def post(app: "DashboardApp", request: "Request"):
    if app.read_only:
        return app.page(request, detail.message(
            "Read-only", "This dashboard runs read-only: it changes nothing."), "403 Forbidden")
    if not request.read_form():
        return app.plain("413 Payload Too Large", "The form is too large.")
    if not app.csrf.accepts(request.environ, request.arg(CSRF_FIELD, request.form)):
        return app.page(request, detail.message(
            "The form has expired", "It carries no valid token for this browser (the dashboard "
            "restarted, its cookie was lost, or it came from another site). Reload the page and "
            "try again; a dashboard served by several processes needs one secret for all."),
            "403 Forbidden")
    match = JOB_PATH.fullmatch(request.path)
    try:
        if match and match.group(2):
            return job_action(app, request, match.group(1), match.group(2))
        if request.path == "/actions/retry-failed" and "retry" in app.offers:
            count = app.backend.retry_failed(request.arg("type", request.form))
            return app.redirect(request, "/failures", done="retried-failed", n=count)
        if request.path == "/actions/retry-group" and "retry" in app.offers:
            group = app.reader.failure_group(*group_key_of(request, request.form).values())
            count = 0 if group is None else sum(map(app.backend.retry_job, group["ids"]))
            return app.redirect(request, "/failures", done="retried-failed", n=count)
        if request.path == "/actions/purge" and "purge" in app.offers:
            seconds, statuses, problem = purge_arguments(request, request.form)
            if problem:
                return app.page(request, detail.message("Nothing purged", problem),
                                "400 Bad Request")
            count = app.backend.purge(seconds, statuses)
            return app.redirect(request, "/", done="purged", n=count)
        if request.path == "/actions/bulk":
            return bulk_action(app, request)
        if request.path in ("/actions/pause", "/actions/resume") and "pause" in app.offers:
            return pause_action(app, request, request.path == "/actions/pause")
    except UnsupportedError:
        return app.redirect(request, "/", problem="unsupported")
    return app.page(request, detail.message("Not found", "No such action here."),
                    "404 Not Found")


def job_action(app: "DashboardApp", request: "Request", job_id: str, action: str):
    verb, done, problem = _JOB_VERBS[action]
    if verb not in app.offers:
        return app.redirect(request, "/jobs/" + job_id, problem="unsupported")
    if verb == "delete":
        if request.arg("sure", request.form) != "yes":
            return app.redirect(request, "/jobs/" + job_id, problem="not-sure")
        if app.backend.delete(job_id):
            return app.redirect(request, "/jobs", done="deleted")
        return app.redirect(request, "/jobs/" + job_id, problem=problem)
    if verb == "retry":
        changed = app.backend.retry_job(job_id)
    elif verb == "cancel":
        changed = app.backend.cancel_job(job_id)
    elif verb == "stop":
        changed = app.backend.stop(job_id, by="the dashboard")
    else:
        changed = app.backend.run_now(job_id, force=request.arg("force", request.form) == "yes")
    if changed:
        return app.redirect(request, "/jobs/" + job_id, done=done)
    return app.redirect(request, "/jobs/" + job_id, problem=problem)


BULK_VERBS = {"retry": ("retry", "retry_job"), "cancel": ("cancel", "cancel_job"),
              "delete": ("delete", "delete")}  # the form's action: (offer, backend method)
MAX_BULK = 1000  # jobs one bulk action may change


def bulk_action(app: "DashboardApp", request: "Request"):
    """Retry, cancel or delete the jobs ticked on the jobs page: first a page that states
    the count and asks, then (``sure``) each job, counting those that changed."""
    action = request.arg("action", request.form)
    ids = list(dict.fromkeys(request.form.get("id", [])))[:MAX_BULK]
    if action not in BULK_VERBS or BULK_VERBS[action][0] not in app.offers:
        return app.redirect(request, "/jobs", problem="unsupported")
    if not ids:
        return app.redirect(request, "/jobs", problem="none-selected")
    if request.arg("sure", request.form) != "yes":
        return app.page(request, detail.confirm_bulk(app.view(request), action, ids))
    change = getattr(app.backend, BULK_VERBS[action][1])
    count = sum(1 for job_id in ids if change(job_id))
    return app.redirect(request, "/jobs", done=f"bulk-{action}", n=count)


def pause_action(app: "DashboardApp", request: "Request", pause: bool):
    """Pause or resume the queue (``kind=queue``) or the job type (``kind=type``) named."""
    kind, name = request.arg("kind", request.form), request.arg("name", request.form)
    if kind not in ("queue", "type") or name is None:
        return app.redirect(request, "/", problem="bad-pause")
    verb = app.backend.pause if pause else app.backend.resume
    try:
        changed = verb(name) if kind == "queue" else verb(job_type=name)
    except (TypeError, ValueError):
        return app.redirect(request, "/", problem="bad-pause")
    except UnsupportedError:  # a job type, on Redis
        return app.redirect(request, "/", problem="unsupported")
    return app.redirect(request, "/", done=("paused" if pause else "resumed") if changed
                        else "already")


def purge_arguments(request: "Request", source) -> Tuple[float, Tuple[str, ...], str]:
    """(seconds, statuses, problem) of a purge form; ``problem`` says what is wrong, if anything."""
    statuses = tuple(dict.fromkeys(part.strip() for value in source.get("status", [])
                                   for part in value.split(",") if part.strip()))
    try:
        seconds = seconds_in(request.arg("older_than", source) or "")
    except ValueError as error:
        return 0.0, statuses, f"Older than: {error}."
    unknown = [status for status in statuses if status not in FINISHED]
    if not statuses or unknown:
        return seconds, statuses, (f"Choose among {', '.join(FINISHED)}"
                                   + (f", not {', '.join(unknown)}." if unknown else "."))
    return seconds, statuses, ""


def group_key_of(request: "Request", source) -> Dict[str, str]:
    """A failure group's key from a link's query or a form (see pages.group_key)."""
    return {"type": request.arg("type", source) or "",
            "exception": request.arg("exception", source) or "",
            "frame": request.arg("frame", source) or "", "error": request.arg("error", source) or ""}


def confirmation(app: "DashboardApp", request: "Request", view):
    """The GET page of a bulk action: how many jobs it would change, and the button."""
    if request.path == "/actions/retry-group":
        if not view.can("retry"):
            return refused(app, request)
        key = group_key_of(request, request.query)
        return app.page(request, detail.confirm_retry_group(
            view, app.reader.failure_group(*key.values()), key))
    if request.path == "/actions/retry-failed":
        if not view.can("retry"):
            return refused(app, request)
        job_type: Optional[str] = request.arg("type")
        return app.page(request, detail.confirm_retry_failed(
            view, job_type, app.reader.count("failed", job_type)))
    if not view.can("purge"):
        return refused(app, request)
    older_text = request.arg("older_than")
    if older_text is None:
        return app.page(request, detail.purge(view, "7d", None, ("completed", "cancelled"), None))
    seconds, statuses, problem = purge_arguments(request, request.query)
    count = None if problem else app.reader.purge_count(seconds, statuses)
    return app.page(request, detail.purge(view, older_text, seconds, statuses, count, problem),
                    "400 Bad Request" if problem else "200 OK")


def refused(app: "DashboardApp", request: "Request"):
    reason = ("This dashboard runs read-only." if app.read_only
              else "This backend does not offer that action.")
    return app.page(request, detail.message("Not available", reason), "403 Forbidden")
