"""A tiny HTML renderer that escapes by default, and the dashboard's page layout.

Everything shown comes from the queue file, which anyone who can enqueue writes, so every
value is escaped unless it is ``Markup`` (HTML this package built itself). Templates are
``str.format`` strings of this package only; every attribute in them is double-quoted, so an
escaped value can never leave its attribute. There is no inline script or style: the
Content-Security-Policy forbids both, and the page's code is in ``static/``.
"""

import html
import json
import re
from typing import Any, Iterable, Optional
from urllib.parse import quote, urlencode

from ..model.job import utc_text


class Markup(str):
    """A string of HTML built by this package: inserted as it is, not escaped again."""


def escape(value: Any) -> Markup:
    """``value`` as HTML text: ``<script>`` becomes ``&lt;script&gt;``, quotes are escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def render(template: str, **values: Any) -> Markup:
    """Fill ``{name}`` fields of ``template`` with ``values``, escaped unless Markup."""
    return Markup(template.format_map({name: escape(value) for name, value in values.items()}))


def join(fragments: Iterable[Any], separator: str = "") -> Markup:
    """Several fragments as one, each escaped unless Markup."""
    return Markup(separator.join(escape(fragment) for fragment in fragments))


def url(base: str, path: str = "/", **query: Any) -> str:
    """A link inside the dashboard: ``base`` (the mount point), a path, and a query string
    of the values that are not None or empty. Escaped when inserted, like any value."""
    target = quote(base + path, safe="/")
    pairs = [(key, value) for key, value in query.items() if value not in (None, "")]
    return target + ("?" + urlencode(pairs) if pairs else "")


def utc(timestamp: Optional[float]) -> str:
    """``2026-11-28 06:30:12`` (UTC), or a dash for no time."""
    if timestamp is None:
        return "-"
    return utc_text(timestamp)


def age(seconds: float) -> str:
    """A duration for people: ``45s``, ``12m``, ``3.5h``, ``2.0d``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def relative(timestamp: Optional[float], now: float) -> str:
    """``in 5m`` or ``3.5h ago``."""
    if timestamp is None:
        return ""
    return f"in {age(timestamp - now)}" if timestamp > now else f"{age(now - timestamp)} ago"


def when(timestamp: Optional[float], now: float) -> Markup:
    """A time cell: the UTC time, with how long ago or ahead on hover."""
    if timestamp is None:
        return Markup("-")
    return render('<time datetime="{iso}" title="{hint}">{text}</time>',
                  iso=utc_text(timestamp, "%Y-%m-%dT%H:%M:%SZ"),
                  hint=relative(timestamp, now), text=utc(timestamp))


def shorten(text: Optional[str], limit: int = 80) -> Markup:
    """``text`` cut to ``limit`` characters, the whole of it on hover."""
    if not text:
        return Markup("")
    short = text if len(text) <= limit else text[:limit - 1] + "\u2026"
    return render('<span class="short" title="{full}">{short}</span>', full=text, short=short)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any, indent: Optional[int] = None) -> str:
    """A JSON value for reading: its characters as they are, except a lone surrogate (which a
    payload's JSON may hold, ``"\\ud800"``, and a page cannot) as its ``\\u`` escape."""
    text = json.dumps(value, indent=indent, ensure_ascii=False,
                      separators=None if indent else (", ", ": "))
    return _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading (escaped when inserted, like any value)."""
    return json_text(value, indent=2)


def badge(status: str) -> Markup:
    return render('<span class="badge status-{status}">{status}</span>', status=status)


LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} \u00b7 dbbasic-queue</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/svg+xml" href="{icon}">
<script src="{js}" defer></script>
</head>
<body data-page="{page}" data-base="{base}" data-refresh="{refresh}">
<header class="top">
<a class="brand" href="{home}">dbbasic-queue</a>
<nav>{nav}</nav>
<span class="where" title="{where}">{where}</span>{mode}
</header>
<main>
{flash}
{content}
</main>
<footer>Times are UTC. {footer}</footer>
</body>
</html>
"""

NAV_ITEMS = (("overview", "/", "Overview"), ("jobs", "/jobs", "Jobs"),
             ("failures", "/failures", "Failures"), ("workers", "/workers", "Workers"))


def layout(*, base: str, page: str, title: str, content: Markup, where: str,
           read_only: bool, refresh: int, version: str, flash: Markup = Markup(""),
           listing: bool = True, footer: str = "") -> Markup:
    """A whole page: the top bar, the flash message, the content."""
    items = NAV_ITEMS if listing else NAV_ITEMS[:1]
    nav = join(render('<a href="{href}"{current}>{label}</a>', href=url(base, path),
                      label=label,
                      current=Markup(' aria-current="page"') if name == page else Markup(""))
               for name, path, label in items)
    mode = Markup(' <span class="mode">read-only</span>') if read_only else Markup("")
    return render(LAYOUT, title=title, css=url(base, "/static/dashboard.css", v=version),
                  icon=url(base, "/static/favicon.svg", v=version),
                  js=url(base, "/static/dashboard.js", v=version), page=page, base=url(base, ""),
                  refresh=refresh, home=url(base), nav=nav, where=where, mode=mode,
                  flash=flash, content=content, footer=footer)
