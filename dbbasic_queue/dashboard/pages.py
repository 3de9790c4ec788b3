"""The listing pages: the overview, the jobs, the failures, and the page for a backend that
cannot list its jobs. Each returns (title, content); ``app`` puts it in the layout.

Every value from the queue goes through ``render``/``escape`` (see ``templates``); the
overview's figures are refreshed by ``static/dashboard.js`` from the JSON endpoint, which
sets text, never HTML.
"""

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..model.job import FINISHED, STATUSES
from .templates import Markup, age, badge, join, json_text, relative, render, shorten, url, utc, when

Page = Tuple[str, Markup]


class View(NamedTuple):
    """What every page needs besides its data."""
    base: str  # where the dashboard is mounted (SCRIPT_NAME)
    now: float
    read_only: bool
    offers: frozenset  # the verbs shown: cancel, retry, run_now, purge, listing
    token: str  # the CSRF token for this browser's forms
    max_attempts: int  # the worker's, for jobs without their own

    def can(self, verb: str) -> bool:
        return not self.read_only and verb in self.offers


def action_form(view: View, path: str, label: str, css: str = "", confirm_field: str = "",
                **fields: Any) -> Markup:
    """A POST form with the CSRF token: the only way the dashboard changes anything."""
    hidden = join(render('<input type="hidden" name="{name}" value="{value}">', name=name,
                         value=value) for name, value in fields.items() if value is not None)
    check = render('<label class="check"><input type="checkbox" name="{name}" value="yes" '
                   'required> I understand</label>', name=confirm_field) if confirm_field else ""
    return render('<form class="action" method="post" action="{action}">'
                  '<input type="hidden" name="csrf_token" value="{token}">{hidden}{check}'
                  '<button type="submit" class="{css}">{label}</button></form>',
                  action=url(view.base, path), token=view.token, hidden=hidden, check=check,
                  css=css or "button", label=label)


def attempts_of_max(view: View, job: Dict[str, Any]) -> Markup:
    """``2 of 3``: the attempts a job has had, and, while it may run again, of how many."""
    options = job.get("options") or {}
    own = options.get("max_attempts") if isinstance(options, dict) else None
    if not own and job["status"] in ("completed", "failed", "cancelled"):
        return render('<span title="attempts it had">{attempts}</span>', attempts=job["attempts"])
    hint = ("this job's own max_attempts" if own else
            f"the worker's max_attempts ({view.max_attempts} unless it runs with another)")
    return render('<span title="{hint}">{attempts} of {max}</span>', hint=hint,
                  attempts=job["attempts"], max=own or view.max_attempts)


# --- overview -------------------------------------------------------------------------------

def overview(view: View, figures: Dict[str, Any]) -> Page:
    cards = join(render('<a class="card status-{status}" href="{href}"><span class="count" '
                        'data-field="status.{status}">{count}</span><span class="label">'
                        '{status}</span></a>', status=status,
                        count=f"{figures['by_status'][status]:,}",
                        href=url(view.base, "/jobs", status=status))
                 for status in STATUSES)
    latency = figures["latency_seconds"]
    corrupt = figures["corrupt_lines"]
    warning = render('<p class="warning" data-field="corrupt"{hidden}>{text}</p>',
                     text=corrupt_text(corrupt), hidden=Markup("" if corrupt else " hidden"))
    paused = figures.get("paused", [])
    notices = [f"Paused: {entry['kind']} {entry['name']} since {utc(entry['paused_at'])} UTC "
               f"(dbbasic-queue resume{' --type' if entry['kind'] == 'type' else ''} "
               f"{entry['name']})" for entry in paused]
    notices += [f"Waiting for a worker with a handler: {counts['jobs']:,} {job_type}, oldest "
                f"{age(max(0.0, figures['now'] - counts['oldest_run_at']))}"
                for job_type, counts in figures.get("waiting_for_handler", {}).items()]
    warning = join([warning] + [render('<p class="warning">{text}</p>', text=text)
                                for text in notices])
    paused_types = {entry["name"] for entry in paused if entry["kind"] == "type"}
    content = render(OVERVIEW, cards=cards, warning=warning,
                     latency="no job waiting" if latency is None else age(latency),
                     completed=f"{figures['completed_24h']:,}", failed=f"{figures['failed_24h']:,}",
                     by_type=by_type_rows(view, figures["by_type"], paused_types),
                     pause_head=Markup("<th>Workers</th>" if view.can("pause") else ""),
                     queues=queue_panel(view, figures.get("queues", {}), paused),
                     next_runs=next_run_rows(view, figures["next_runs"]),
                     periodic=periodic_rows(view, figures.get("schedules", [])),
                     purge=purge_form(view) if view.can("purge") else "",
                     jobs=f"{figures['jobs']:,}",
                     chart=chart_panel(figures, url(view.base, "/api/overview")))
    return "Overview", content


def chart_panel(figures: Dict[str, Any], api: str) -> Markup:
    """The throughput charts where the backend counts what its workers finish (per minute
    over the last hour, per hour over the last days); else the 24-hour chart of the jobs by
    their last attempt. Drawn, and redrawn at each refresh, by the page's script."""
    throughput = figures.get("throughput")
    if throughput is None:
        return render(LAST_24_HOURS, api=api, completed=f"{figures['completed_24h']:,}",
                      failed=f"{figures['failed_24h']:,}")
    minutes, hours = throughput["minutes"], throughput["hours"]
    last_day = {outcome: sum(hours[outcome][-24:]) for outcome in OUTCOMES}
    return render(THROUGHPUT, api=api, days=f"{len(hours['starts']) // 24}", **{
        f"{span}_{outcome}": f"{counts:,}" for span, totals in (
            ("hour", {outcome: sum(minutes[outcome]) for outcome in OUTCOMES}),
            ("day", last_day)) for outcome, counts in totals.items()})


OUTCOMES = ("completed", "failed", "retried")

LAST_24_HOURS = """<section class="panel">
<h2>Last 24 hours</h2>
<p class="legend"><span class="key completed"></span> completed <strong data-field="completed_24h">{completed}</strong>
<span class="key failed"></span> failed for good <strong data-field="failed_24h">{failed}</strong>
<span class="hint">per hour, by the start of the job's last attempt</span></p>
<div id="chart" class="chart" data-api="{api}"><p class="hint">The chart is drawn by the page's script.</p></div>
</section>"""

THROUGHPUT = """<section class="panel throughput">
<h2>Throughput</h2>
<p class="legend"><span class="key completed"></span> completed
<span class="key failed"></span> failed for good
<span class="key retried"></span> failed, to be retried
<span class="hint">as the workers count them, live</span></p>
<h3>Last hour, per minute: <strong data-field="throughput.hour.completed">{hour_completed}</strong> completed, <strong data-field="throughput.hour.failed">{hour_failed}</strong> failed, <strong data-field="throughput.hour.retried">{hour_retried}</strong> retried</h3>
<div id="chart" class="chart" data-api="{api}" data-series="minutes"><p class="hint">The chart is drawn by the page's script.</p></div>
<h3>Last {days} days, per hour; the last 24 hours: <strong data-field="throughput.day.completed">{day_completed}</strong> completed, <strong data-field="throughput.day.failed">{day_failed}</strong> failed, <strong data-field="throughput.day.retried">{day_retried}</strong> retried</h3>
<div id="chart-hours" class="chart" data-series="hours"><p class="hint">The chart is drawn by the page's script.</p></div>
</section>"""


def corrupt_text(count: int) -> str:
    return (f"{count:,} corrupt lines in the file, left as they are: see the worker's log, "
            f"fix or remove them by hand.")


OVERVIEW = """<h1>Overview</h1>
{warning}
<section class="cards">{cards}
<div class="card latency"><span class="count" data-field="latency">{latency}</span><span class="label">latency: the oldest due job's wait</span></div>
</section>
{chart}
<div class="columns">
<section class="panel"><h2>By type</h2>
<table class="grid" id="by-type"><thead><tr><th>Type</th><th>pending</th><th>processing</th><th>completed</th><th>failed</th><th>cancelled</th>{pause_head}</tr></thead>
<tbody>{by_type}</tbody></table></section>
<section class="panel"><h2>Next scheduled runs</h2>
<table class="grid" id="next-runs"><thead><tr><th>Job</th><th>Type</th><th>Runs at (UTC)</th></tr></thead>
<tbody>{next_runs}</tbody></table>
<p class="hint">Jobs waiting for their run_at or a retry.</p></section>
</div>
{queues}
<section class="panel"><h2>Periodic jobs</h2>
<table class="grid" id="periodic"><thead><tr><th>Schedule</th><th>When</th><th>Last fired (UTC)</th><th>Next slot (UTC)</th></tr></thead>
<tbody>{periodic}</tbody></table></section>
{purge}
<p class="updated"><span data-field="jobs">{jobs}</span> jobs in all. <span data-field="updated">Refreshes every few seconds.</span></p>
"""


def by_type_rows(view: View, by_type: Dict[str, Dict[str, int]],
                 paused_types: frozenset = frozenset()) -> Markup:
    if not by_type:
        return Markup('<tr><td colspan="7" class="empty">No jobs yet.</td></tr>')
    return join(render('<tr><th><a href="{href}">{type}</a></th>{cells}{pause}</tr>', type=job_type,
                       href=url(view.base, "/jobs", type=job_type),
                       cells=join(render('<td class="num"><a href="{href}">{n}</a></td>',
                                         n=f"{counts[status]:,}",
                                         href=url(view.base, "/jobs", type=job_type, status=status))
                                  for status in STATUSES),
                       pause=pause_cell(view, "type", job_type, job_type in paused_types))
                for job_type, counts in by_type.items())


def pause_cell(view: View, kind: str, name: str, paused: bool) -> Markup:
    """The cell with the Pause (or Resume) button of a queue or a job type, if offered."""
    if not view.can("pause"):
        return Markup("")
    state = render('<span class="badge status-cancelled">paused</span>') if paused else ""
    return render('<td>{state}{form}</td>', state=state, form=action_form(
        view, "/actions/resume" if paused else "/actions/pause", "Resume" if paused else "Pause",
        "button", kind=kind, name=name))


def queue_panel(view: View, queues: Dict[str, Dict[str, int]], paused: List[Dict[str, Any]]) -> Markup:
    """The queues with jobs to run or running, and the paused ones, each with its button."""
    paused_queues = {entry["name"] for entry in paused if entry["kind"] == "queue"}
    names = sorted(set(queues) | paused_queues)
    if not names:
        return Markup("")
    rows = join(render('<tr><th>{name}</th><td class="num">{pending}</td>'
                       '<td class="num">{processing}</td>{pause}</tr>', name=name,
                       pending=f"{queues.get(name, {}).get('pending', 0):,}",
                       processing=f"{queues.get(name, {}).get('processing', 0):,}",
                       pause=pause_cell(view, "queue", name, name in paused_queues))
                for name in names)
    head = Markup("<th>Workers</th>" if view.can("pause") else "")
    return render('<section class="panel"><h2>Queues</h2><table class="grid" id="queues">'
                  '<thead><tr><th>Queue</th><th>pending</th><th>processing</th>{head}</tr>'
                  '</thead><tbody>{rows}</tbody></table><p class="hint">A paused queue or '
                  'type keeps its jobs pending; every worker skips them from its next claim '
                  'until it is resumed.</p></section>', head=head, rows=rows)


def next_run_rows(view: View, runs: List[Dict[str, Any]]) -> Markup:
    if not runs:
        return Markup('<tr><td colspan="3" class="empty">Nothing scheduled.</td></tr>')
    return join(render('<tr><td><a class="id" href="{href}">{id}</a></td><td>{type}</td>'
                       '<td><time>{when}</time><span class="when">{relative}</span></td></tr>',
                       href=url(view.base, "/jobs/" + run["id"]), id=run["id"], type=run["type"],
                       when=utc(run["run_at"]), relative=relative(run["run_at"], view.now))
                for run in runs)


def periodic_rows(view: View, schedules: List[Dict[str, Any]]) -> Markup:
    if not schedules:
        return Markup('<tr><td colspan="4" class="empty">No periodic jobs have fired here '
                      '(see @queue.periodic).</td></tr>')
    return join(render('<tr><td>{name}</td><td><code>{when}</code></td><td>{last}</td>'
                       '<td><time>{next}</time><span class="when">{relative}</span></td></tr>',
                       name=row["schedule"], when=row["when"],
                       last="never" if row["last_slot"] is None else utc(row["last_slot"]),
                       next="-" if row["next_slot"] is None else utc(row["next_slot"]),
                       relative="" if row["next_slot"] is None else relative(row["next_slot"], view.now))
                for row in schedules)


def purge_form(view: View, older_than: str = "7d",
               statuses: Sequence[str] = ("completed", "cancelled"),
               heading: str = "Purge finished jobs") -> Markup:
    boxes = join(render('<label class="check"><input type="checkbox" name="status" value="{s}"'
                        '{checked}> {s}</label>', s=status,
                        checked=Markup(" checked") if status in statuses else "")
                 for status in FINISHED)
    return render('<section class="panel"><h2>{heading}</h2>'
                  '<form class="inline" method="get" action="{action}">'
                  '<label>older than <input name="older_than" value="{older}" size="6" '
                  'required></label> {boxes} <button type="submit" class="button">Count them '
                  'first</button></form><p class="hint">30s, 10m, 2h, 7d. Nothing is removed '
                  'before you confirm the count.</p></section>',
                  action=url(view.base, "/actions/purge"), older=older_than, boxes=boxes,
                  heading=heading)


# --- jobs -----------------------------------------------------------------------------------

class Filters(NamedTuple):
    status: Optional[str]
    type: Optional[str]
    search: Optional[str]
    page: int
    tab: Optional[str] = None  # scheduled or retries (see reading.TABS)


def jobs(view: View, filters: Filters, rows: List[Any], total: int, per_page: int,
         types: Optional[List[str]], retry_count: Optional[int]) -> Page:
    options = join(render('<option value="{s}"{selected}>{s}</option>', s=status,
                          selected=Markup(" selected") if status == filters.status else "")
                   for status in STATUSES)
    type_field = type_menu(filters.type, types)
    last_page = max(1, -(-total // per_page))
    pager = join([
        render('<a href="{href}">&larr; Newer</a>', href=url(
            view.base, "/jobs", status=filters.status, type=filters.type, q=filters.search,
            tab=filters.tab, page=filters.page - 1)) if filters.page > 1 else "",
        render('<span>Page {page} of {last}</span>', page=f"{filters.page:,}",
               last=f"{last_page:,}"),
        render('<a href="{href}">Older &rarr;</a>', href=url(
            view.base, "/jobs", status=filters.status, type=filters.type, q=filters.search,
            tab=filters.tab, page=filters.page + 1)) if filters.page < last_page else ""], " ")
    tabs = join(render('<a href="{href}"{current}>{label}</a>',
                       href=url(view.base, "/jobs", tab=name, type=filters.type), label=label,
                       current=Markup(' aria-current="page"') if name == filters.tab else "")
                for name, label in ((None, "All"), ("scheduled", "Scheduled"),
                                    ("retries", "Retries")))
    bulk = ""
    if retry_count and view.can("retry"):
        bulk = render('<p><a class="button" href="{href}">Retry all {n} failed {type} '
                      'jobs&hellip;</a></p>', n=f"{retry_count:,}", type=filters.type,
                      href=url(view.base, "/actions/retry-failed", type=filters.type))
    body = join(job_row(view, row) for row in rows) or Markup(
        '<tr><td colspan="9" class="empty">No job matches.</td></tr>')
    verbs = [verb for verb, offer in (("retry", "retry"), ("cancel", "cancel"),
                                      ("delete", "delete")) if view.can(offer)]
    selection = ""
    if verbs and not view.read_only and rows:
        selection = render(
            '<form id="bulk" class="filters bulk" method="post" action="{action}">'
            '<input type="hidden" name="csrf_token" value="{token}"><label>With the selected '
            'jobs <select name="action">{choices}</select></label> <button type="submit" '
            'class="button">Apply&hellip;</button></form>', action=url(view.base, "/actions/bulk"),
            token=view.token, choices=join(render('<option value="{v}">{v}</option>', v=verb)
                                           for verb in verbs))
    tab_field = render('<input type="hidden" name="tab" value="{tab}">', tab=filters.tab) \
        if filters.tab else ""
    content = render(JOBS, action=url(view.base, "/jobs"), options=options, tabs=tabs,
                     tab_field=tab_field,
                     type_field=type_field, search=filters.search or "",
                     clear=url(view.base, "/jobs"), total=f"{total:,}",
                     noun="job matches" if total == 1 else "jobs match", bulk=bulk,
                     body=body, pager=pager, selection=selection)
    return "Jobs", content


JOBS = """<h1>Jobs</h1>
<nav class="tabs">{tabs}</nav>
<form class="filters" method="get" action="{action}">{tab_field}
<label>Status <select name="status"><option value="">any</option>{options}</select></label>
{type_field}
<label class="grow">Search <input type="search" name="q" value="{search}" placeholder="text in the payload, error or id"></label>
<button type="submit" class="button">Filter</button> <a href="{clear}">Clear</a>
</form>
<p class="summary"><span id="jobs-count"><strong>{total}</strong> {noun}, newest first.</span> <label class="check refresh"><input type="checkbox" id="auto-refresh" checked> refresh every few seconds, keeping what is ticked</label></p>
{bulk}
{selection}
<div class="scroll"><table class="grid jobs"><thead><tr><th><span class="visually-hidden">Select</span></th><th>ID</th><th>Type</th><th>Status</th><th>Attempts</th><th>Created</th>
<th title="when it is due (pending), when its lease ends (processing), when its last attempt began (finished)">Run at</th><th>Payload</th><th>Last error</th></tr></thead>
<tbody>{body}</tbody></table></div>
<nav class="pager">{pager}</nav>
"""


def type_menu(current: Optional[str], types: Optional[List[str]]) -> Markup:
    """The Type filter: a menu of the types the queue holds (and the one filtered by, if it
    holds none now), or a text field where the types are not known."""
    if types is None:
        return render('<label>Type <input name="type" value="{type}" autocomplete="off">'
                      '</label>', type=current or "")
    names = sorted(set(types) | ({current} if current else set()))
    options = join(render('<option value="{t}"{selected}>{t}</option>', t=name,
                          selected=Markup(" selected") if name == current else "")
                   for name in names)
    return render('<label>Type <select name="type"><option value="">any</option>{options}'
                  '</select></label>', options=options)


PAYLOAD_SHOWN = 60  # characters of a payload's JSON in the jobs' list; the job's page has it all


def payload_preview(payload: Any) -> Markup:
    """A job's payload as one line of compact JSON, cut short, the start of it on hover."""
    text = json_text(payload)
    return render('<code title="{hint}">{short}</code>', hint=text[:500],
                  short=text if len(text) <= PAYLOAD_SHOWN else text[:PAYLOAD_SHOWN - 1] + "\u2026")


def job_row(view: View, row: Any) -> Markup:
    if isinstance(row, str):  # a corrupt line's message
        return render('<tr class="corrupt"><td colspan="9">{message}</td></tr>', message=row)
    return render('<tr><td><input type="checkbox" name="id" value="{id}" form="bulk" '
                  'aria-label="select {id}"></td>'
                  '<td><a class="id" href="{href}">{id}</a></td><td class="type">{type}</td>'
                  '<td>{status}</td><td>{attempts}</td><td>{created}</td><td>{run_at}</td>'
                  '<td class="payload">{payload}</td><td class="error">{error}</td></tr>',
                  href=url(view.base, "/jobs/" + row["id"]), id=row["id"], type=row["type"],
                  status=badge(row["status"]), attempts=attempts_of_max(view, row),
                  created=when(row["created_at"], view.now), run_at=when(row["run_at"], view.now),
                  payload=payload_preview(row["payload"]), error=shorten(row["error"], 70))


# --- failures -------------------------------------------------------------------------------

MESSAGES_SHOWN = 5  # of a failure group's distinct messages, the most frequent


def group_key(group: Dict[str, Any]) -> Dict[str, str]:
    """A failure group's key as the fields of its retry link and form."""
    return {"type": group["type"], "exception": group["exception"], "frame": group["frame"],
            "error": group["error"]}


def failures(view: View, groups: List[Dict[str, Any]]) -> Page:
    def messages(group):
        shown = [render('<li>{message} <span class="hint">&times;{n}</span></li>',
                        message=shorten(message, 110) or Markup('<span class="hint">no '
                                                                'message</span>'),
                        n=f"{count:,}") for message, count in group["messages"][:MESSAGES_SHOWN]]
        more = len(group["messages"]) - MESSAGES_SHOWN
        if more > 0:
            shown.append(render('<li class="hint">and {n} more messages</li>', n=f"{more:,}"))
        return render('<ul class="messages">{items}</ul>', items=join(shown))
    rows = join(render('<tr><td class="type"><a href="{type_href}">{type}</a></td>'
                       '<td class="error">{exception}<div class="hint">{frame}</div></td>'
                       '<td class="error">{messages}</td><td class="num">{count}</td>'
                       '<td><a href="{latest_href}">{latest}</a></td><td>{retry}</td></tr>',
                       type=group["type"], count=f"{group['count']:,}",
                       type_href=url(view.base, "/jobs", status="failed", type=group["type"]),
                       exception=group["exception"] or Markup('<span class="hint">no traceback '
                                                              'kept</span>'),
                       frame=group["frame"], messages=messages(group),
                       latest=when(group["latest_at"], view.now),
                       latest_href=url(view.base, "/jobs/" + group["latest_id"]),
                       retry=render('<a class="retry-group" href="{href}">Retry these '
                                    '{n}&hellip;</a>', n=f"{group['count']:,}",
                                    href=url(view.base, "/actions/retry-group",
                                             **group_key(group))) if view.can("retry") else "")
                for group in groups)
    content = render('<h1>Failures</h1><p class="summary">Jobs that failed for good, grouped by '
                     'type, exception and the line that raised it, most frequent first; the '
                     'messages of a group are listed in it.</p><div class="scroll"><table class="grid failures">'
                     '<thead><tr><th>Type</th><th>Exception</th><th>Messages</th><th>Jobs</th>'
                     '<th>Latest</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>',
                     rows=rows or Markup('<tr><td colspan="6" class="empty">No failed jobs.'
                                         '</td></tr>'))
    return "Failures", content


# --- workers --------------------------------------------------------------------------------

def workers(view: View, listed: Optional[List[Dict[str, Any]]]) -> Page:
    """The worker registry (storage/workers.py): each worker's state, last sighting, interval,
    jobs in hand and counts; None where the backend keeps none."""
    if listed is None:
        return "Workers", render('<h1>Workers</h1><p>This backend keeps no worker registry: '
                                 'its own tools list its workers (<code>rq info</code> on '
                                 'Redis).</p>')
    rows = join(render('<tr class="{state}"><td class="id">{name}</td><td>{kind}</td>'
                       '<td>{badge}</td><td>{seen}</td><td class="num">{every}</td>'
                       '<td class="num">{in_hand}</td><td class="num">{completed}</td>'
                       '<td class="num">{failed}</td><td class="num">{retried}</td>'
                       '<td class="type">{serves}</td></tr>',
                       state=f"worker-{worker['state']}", name=worker["worker"],
                       kind=worker["kind"], badge=badge(worker["state"]),
                       seen=when(worker["last_seen"], view.now),
                       every=f"{worker['interval']} s" if worker["interval"] else "-",
                       in_hand=f"{worker['in_hand']:,}", completed=f"{worker['completed']:,}",
                       failed=f"{worker['failed']:,}", retried=f"{worker['retried']:,}",
                       serves=shorten(worker["serves"], 80))
                for worker in listed)
    late = sum(worker["state"] != "alive" for worker in listed)
    summary = (render('<p class="summary problem"><strong>{n}</strong> of {total} not seen '
                      'within twice their interval, or gone: is cron, or the loop worker, '
                      'still running?</p>', n=f"{late:,}", total=f"{len(listed):,}")
               if late else render('<p class="summary">Every worker seen within twice its '
                                   'interval.</p>') if listed else "")
    content = render('<h1>Workers</h1>{summary}<div class="scroll"><table class="grid workers"><thead><tr>'
                     '<th>Worker</th><th>Kind</th><th>State</th><th>Last seen</th>'
                     '<th>Every</th><th>In hand</th><th>Completed</th><th>Failed</th>'
                     '<th>Retried</th><th>Serves</th></tr></thead><tbody>{rows}</tbody></table></div>',
                     summary=summary, rows=rows or Markup(
                         '<tr><td colspan="10" class="empty">No worker seen yet: a run writes '
                         'its line when it ends.</td></tr>'))
    return "Workers", content


def no_listing(view: View, describe: str) -> Page:
    content = render('<h1>Jobs on {where}</h1><p>This backend does not list its jobs, so there '
                     'are no counts or listings here; look a job up by its id.</p>'
                     '<form class="filters" method="get" action="{action}"><label class="grow">'
                     'Job id <input name="id" required></label><button type="submit" '
                     'class="button">Show</button></form>', where=describe,
                     action=url(view.base, "/lookup"))
    return "Overview", content
