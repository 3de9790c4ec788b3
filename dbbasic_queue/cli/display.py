"""Text for a terminal: job fields shown, never obeyed, and times that always print.

Job types, payloads and error texts come from users and from the file (an error often quotes
user input). A terminal acts on control characters (ESC sequences retitle the window, clear
the screen, fake a prompt; C1 codes do the same in one byte) and bidi overrides reorder what
is shown. ``safe`` writes them as escapes (``\\x1b``), ``safe_json`` as JSON escapes, which
read back exactly; ``SafeFormatter`` does it for log lines.
"""

import json
import logging
import time
import unicodedata
from typing import Any

from ..model.job import utc_text
from ..model.words import age

_BIDI_CONTROLS = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})


def _acts_on_terminal(char: str) -> bool:
    category = unicodedata.category(char)
    return (category in ("Cc", "Cs", "Zl", "Zp") or
            (category == "Cf" and unicodedata.bidirectional(char) in _BIDI_CONTROLS))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: Any, keep: str = "") -> str:
    """``str(text)`` with every character a terminal would act on (C0 and C1 controls, DEL,
    line and paragraph separators, bidi overrides, lone surrogates) written as an escape;
    the characters in ``keep`` (say a line break) stay."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_escape(c) if c not in keep and _acts_on_terminal(c) else c for c in text)


def safe_json(value: Any, **dumps) -> str:
    """``json.dumps(value, ensure_ascii=False, **dumps)`` with the characters JSON leaves
    raw that a terminal acts on written as ``\\uXXXX``: the same value for a JSON reader."""
    text = json.dumps(value, ensure_ascii=False, **dumps)
    if text.isprintable():
        return text
    # Outside strings json.dumps writes only ASCII punctuation, digits, letters and the
    # whitespace of indent=, so every character escaped here is inside a string.
    return "".join(f"\\u{ord(c):04x}" if c not in "\n " and _acts_on_terminal(c) else c
                   for c in text)


class SafeFormatter(logging.Formatter):
    """A log formatter whose lines show job types and error texts escaped (tracebacks keep
    their line breaks)."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record), keep="\n")


def utc(timestamp: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC; ``after 9999-12-31`` for a time written by hand past
    the last one enqueue takes (see job.utc_text)."""
    return utc_text(timestamp)


def when(timestamp: float) -> str:
    """A future time, in UTC and as a delay from now."""
    return f"{utc(timestamp)} UTC, in {age(max(0.0, timestamp - time.time()))}"


def size(count: float) -> str:
    """A size in bytes, as B, KB, MB or GB."""
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"



def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis if it was cut."""
    return text if len(text) <= width else text[:width - 1] + "\u2026"
