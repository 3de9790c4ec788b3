"""The pages of one job and of the actions that ask first: a job in full with its buttons,
the confirmations of "retry all failed" and "run now" on a processing job, the purge dry run,
and the message page (not found, refused, a file that cannot be read).

A job's tracebacks come from the backend's ``tracebacks(id)`` (attempt, failed_at, error,
traceback); a backend without it keeps only the last error, and the page says so rather than
inventing one.
"""

from typing import Any, Dict, List, Optional, Sequence

from ..model.dependencies import waiting_for
from ..model.job import FINISHED
from .pages import Page, View, action_form, attempts_of_max, purge_form
from .templates import Markup, badge, join, pretty_json, render, url, utc, when

RUN_AT_MEANING = {"pending": "Due at", "processing": "Lease ends", "completed": "Last attempt began",
                  "failed": "Last attempt began", "cancelled": "Run at"}


def job(view: View, shown: Dict[str, Any]) -> Page:
    job_id = shown["id"]
    facts = join(render('<dt>{name}</dt><dd>{value}</dd>', name=name, value=value) for name, value in (
        ("Type", Markup(render('<span class="type">{t}</span>', t=shown["type"]))),
        ("Status", badge(shown["status"])),
        ("Attempts", attempts_of_max(view, shown)),
        ("Created", when(shown["created_at"], view.now)),
        (RUN_AT_MEANING.get(shown["status"], "Run at"), when(shown["run_at"], view.now)),
        ("Options", options_text(shown.get("options"))),
    ) + waiting_row(shown) + running_rows(view, shown))
    content = render(JOB, id=job_id, badge=badge(shown["status"]), facts=facts,
                     jobs=url(view.base, "/jobs"), actions=job_actions(view, shown),
                     payload=pretty_json(shown["payload"]),
                     result=block(shown["result"], "No result."),
                     error=block(shown["error"], "No error.", css="error"),
                     tracebacks=tracebacks(shown))
    return f"Job {job_id}", content


JOB = """<p class="crumbs"><a href="{jobs}">Jobs</a> / <span class="id">{id}</span></p>
<h1>Job <span class="id">{id}</span> {badge}</h1>
<div class="actions">{actions}</div>
<dl class="facts">{facts}</dl>
<section class="panel"><h2>Payload</h2><pre>{payload}</pre></section>
<section class="panel"><h2>Result</h2>{result}</section>
<section class="panel"><h2>Error</h2>{error}</section>
<section class="panel"><h2>Tracebacks</h2>{tracebacks}</section>
"""


def waiting_row(shown: Dict[str, Any]):
    """The "Waiting for" fact of a pending job that waits for others (model/dependencies.py):
    the jobs it depends on, or its batch's progress; none for any other job."""
    waiting = waiting_for(shown.get("options") or {}) if shown["status"] == "pending" else None
    return () if waiting is None else (("Waiting", waiting),)


def running_rows(view: View, shown: Dict[str, Any]):
    """The "Progress" and "Stop asked by" facts of a running job, where known."""
    rows = []
    progress = shown.get("progress")
    if progress:
        note = f", {progress['note']}" if progress.get("note") else ""
        rows.append(("Progress", render(
            '<progress max="1" value="{done}"></progress> {text}, reported {at}',
            done=f"{progress['done']:.4g}", text=f"{progress['done']:.0%}{note}",
            at=when(progress["at"], view.now))))
    if shown.get("stop_requested"):
        rows.append(("Stop asked by", shown["stop_requested"]))
    return tuple(rows)


def options_text(options: Optional[Dict[str, Any]]) -> Markup:
    if options is None:
        return Markup('<span class="hint">not shown by this backend</span>')
    if not options:
        return Markup('<span class="hint">none (the worker\'s settings apply)</span>')
    return render('<code>{text}</code>', text=", ".join(f"{key}={value!r}" if isinstance(value, str)
                                                        else f"{key}={value}"
                                                        for key, value in options.items()))


def block(value: Any, empty: str, css: str = "") -> Markup:
    if value is None or value == "":
        return render('<p class="hint">{empty}</p>', empty=empty)
    text = value if isinstance(value, str) and css == "error" else pretty_json(value)
    return render('<pre class="{css}">{text}</pre>', css=css, text=text)


def tracebacks(shown: Dict[str, Any]) -> Markup:
    """The tracebacks of the job's failed attempts, as the backend keeps them."""
    if "tracebacks" not in shown:
        return Markup('<p class="hint">Not recorded: this backend keeps the last error of a job '
                      '(above), not the traceback of each attempt.</p>')
    if not shown["tracebacks"]:
        return Markup('<p class="hint">None kept: no attempt of this job has failed within the '
                      'retention period.</p>')
    items = []
    for number, item in enumerate(shown["tracebacks"], start=1):
        failed_at = item.get("failed_at")
        heading = f"Attempt {item.get('attempt', number)}" + (
            f", failed at {utc(failed_at)} UTC" if isinstance(failed_at, (int, float)) else "")
        items.append(render('<h3>{heading}</h3><p class="error-line">{error}</p>'
                            '<pre class="traceback">{text}</pre>', heading=heading,
                            error=item.get("error") or "", text=item.get("traceback") or ""))
    return join(items)


def job_actions(view: View, shown: Dict[str, Any]) -> Markup:
    if view.read_only:
        return Markup("")
    job_id, status = shown["id"], shown["status"]
    buttons = []
    if status in ("failed", "cancelled") and view.can("retry"):
        buttons.append(action_form(view, f"/jobs/{job_id}/retry", "Retry"))
    if status == "pending" and shown["run_at"] > view.now and view.can("run_now"):
        buttons.append(action_form(view, f"/jobs/{job_id}/run-now", "Run now"))
    if status == "pending" and view.can("cancel"):
        buttons.append(action_form(view, f"/jobs/{job_id}/cancel", "Cancel", css="button danger"))
    if status == "processing" and view.can("stop") and not shown.get("stop_requested"):
        buttons.append(action_form(view, f"/jobs/{job_id}/stop", "Stop", css="button danger"))
    if status == "processing" and view.can("run_now"):
        buttons.append(render('<a class="button danger" href="{href}">Put back now&hellip;</a>',
                              href=url(view.base, f"/jobs/{job_id}/run-now")))
    if status != "processing" and view.can("delete"):
        buttons.append(action_form(view, f"/jobs/{job_id}/delete", "Delete",
                                   css="button danger", confirm_field="sure"))
    return join(buttons, " ")


CONFIRM = """<h1>{title}</h1>
<section class="panel confirm"><p class="dry-run">{text}</p>
<div class="row">{form}<a href="{back}">{back_label}</a></div></section>
"""


def confirm_force(view: View, shown: Dict[str, Any]) -> Page:
    text = render('It is <strong>processing</strong>. If its worker is alive, the job may then '
                  'run twice at once: use this only for a worker you know is dead, before its '
                  'lease ends ({lease}).', lease=when(shown["run_at"], view.now))
    content = render(CONFIRM, title=f"Put job {shown['id']} back now?", text=text,
                     form=action_form(view, f"/jobs/{shown['id']}/run-now", "Put it back now",
                                      css="button danger", confirm_field="force"),
                     back=url(view.base, "/jobs/" + shown["id"]), back_label="Back to the job")
    return "Put back now", content


def confirm_retry_failed(view: View, job_type: Optional[str], count: int) -> Page:
    what = "failed jobs" if job_type is None else f"failed {job_type} jobs"
    text = render('<strong>{n}</strong> {what} go back to pending, due now, with fresh attempts '
                  '(their last error stays until they run).', n=f"{count:,}", what=what)
    form = action_form(view, "/actions/retry-failed", f"Retry {count:,} jobs", type=job_type) \
        if count else Markup("")
    content = render(CONFIRM, title=f"Retry all {what}?", text=text, form=form,
                     back=url(view.base, "/failures"), back_label="Back to the failures")
    return "Retry failed jobs", content


def confirm_bulk(view: View, action: str, ids: List[str]) -> Page:
    """The confirmation of a bulk action on the jobs ticked: the count, the ids, the button
    (whose form carries them again, with ``sure``)."""
    what = {"retry": "Retry", "cancel": "Cancel", "delete": "Delete"}[action]
    effect = {"retry": "The failed or cancelled ones go back to pending, due now.",
              "cancel": "The pending ones are cancelled.",
              "delete": "They are removed for good, but processing ones, which stay."}[action]
    hidden = join(render('<input type="hidden" name="id" value="{id}">', id=job_id)
                  for job_id in ids)
    form = render('<form class="action" method="post" action="{action}">'
                  '<input type="hidden" name="csrf_token" value="{token}">'
                  '<input type="hidden" name="action" value="{verb}">'
                  '<input type="hidden" name="sure" value="yes">{hidden}'
                  '<button type="submit" class="button{danger}">{label}</button></form>',
                  action=url(view.base, "/actions/bulk"), token=view.token, verb=action,
                  hidden=hidden, danger=" danger" if action != "retry" else "",
                  label=f"{what} {len(ids):,} jobs")
    text = render('<strong>{n}</strong> selected jobs: {ids}. {effect}', n=f"{len(ids):,}",
                  ids=", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""), effect=effect)
    content = render(CONFIRM, title=f"{what} {len(ids):,} selected jobs?", text=text, form=form,
                     back=url(view.base, "/jobs"), back_label="Back to the jobs")
    return f"{what} selected jobs", content


def confirm_retry_group(view: View, group: Optional[Dict[str, Any]], key: Dict[str, str]) -> Page:
    """The confirmation of retrying one failure group: exactly its jobs, as it is now."""
    count = 0 if group is None else group["count"]
    what = f"failed {key['type']} jobs"
    where = (f" raising {key['exception']}" + (f" at {key['frame']}" if key["frame"] else "")
             if key["exception"] else f" failing with “{key['error']}”")
    text = render('<strong>{n}</strong> {what}{where} go back to pending, due now, with fresh '
                  'attempts; failed jobs of the type with another error stay failed.',
                  n=f"{count:,}", what=what, where=where)
    form = action_form(view, "/actions/retry-group", f"Retry {count:,} jobs", **key) \
        if count else Markup("")
    content = render(CONFIRM, title=f"Retry these {what}?", text=text, form=form,
                     back=url(view.base, "/failures"), back_label="Back to the failures")
    return "Retry a failure group", content


def purge(view: View, older_than: str, seconds: Optional[float], statuses: Sequence[str],
          count: Optional[int], problem: str = "") -> Page:
    """The purge form, and once it is filled in, the dry run's count and the confirmation."""
    parts: List[Any] = [Markup("<h1>Purge finished jobs</h1>")]
    if problem:
        parts.append(render('<p class="warning">{problem}</p>', problem=problem))
    if count is not None:
        text = render('<strong>{n}</strong> {statuses} jobs last active more than {older} ago '
                      'would be removed from the file.', n=f"{count:,}", older=older_than,
                      statuses=" or ".join(statuses))
        form = action_form(view, "/actions/purge", f"Remove {count:,} jobs", css="button danger",
                           older_than=older_than, status=",".join(statuses)) if count else ""
        parts.append(render('<section class="panel confirm"><p class="dry-run">{text}</p>'
                            '<div class="row">{form}</div></section>', text=text, form=form))
    parts.append(purge_form(view, older_than, statuses or ("completed", "cancelled"),
                            heading="Count again" if count is not None else "Which jobs"))
    parts.append(render('<p class="hint">Removes {names} jobs whose later of created_at and '
                        'run_at is older than that; pending and processing jobs are never '
                        'removed. The count may change before you confirm, as workers run.</p>',
                        names=", ".join(FINISHED)))
    return "Purge", join(parts)


def message(title: str, text: str, back: Optional[str] = None) -> Page:
    link = render(' <a href="{href}">Back</a>', href=back) if back else ""
    return title, render('<h1>{title}</h1><p class="message">{text}{link}</p>', title=title,
                         text=text, link=link)
