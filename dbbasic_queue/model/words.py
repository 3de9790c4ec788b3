"""How the queue words counts and durations in its messages (logs, errors, command output):
plain text, apart from the terminal's escaping in ``cli/display.py``."""

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LARGEST = 10 ** 12  # a count or a number of seconds beyond any use (about 31,700 years)


def plural(count: int, noun: str, many: str = "") -> str:
    """``1 job``, ``2 jobs`` (``many``: the plural, if not noun + s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {many or noun + 's'}"


def duration_text(seconds: float) -> str:
    """A duration in its largest whole unit: ``7d``, ``36h``, ``90m``, ``45s``, ``0.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:g}s"


def age(seconds: float) -> str:
    """``3.2d``, ``5.0h``, ``12.5m`` or ``4.1s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def seconds_in(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h``, ``7d`` or a plain number of seconds, as people
    type them (the command line, the dashboard's forms); ValueError says what is wrong."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use 30s, 10m, 2h or 7d")
    seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds > LARGEST:
        raise ValueError(f"{text[:20]!r}... is too long: at most {LARGEST} s")
    return seconds
