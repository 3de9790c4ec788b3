"""The JSON values of a job (payload, result, options): written compactly with Unicode kept as
itself, read back within a nesting depth that json's recursive decoder can always handle.
"""

import json
import json.scanner
import logging
import operator
import re
from itertools import accumulate, count
from typing import Any

logger = logging.getLogger("dbbasic_queue")

MAX_DEPTH = 200  # JSON in a line nests at most this deep; json's decoder fails near 1,000


_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def json_value(text: str) -> Any:
    """``json.loads(text)``, in a third of its time for the compact JSON of a line: the
    decoder's scanner is called directly, and json.loads itself decides any text it does not
    take whole (surrounding spaces, errors), so the verdict is always json.loads's."""
    try:
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass
    return json.loads(text)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPEN_TWO_CLOSE_ZERO = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nests_within(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests at most ``limit`` arrays and objects deep, found
    without recursion (a text too deep for ``json.loads`` is answered too).

    Almost every text is decided by a bound in C speed: each level takes two characters,
    and opens one bracket. Only a text with more brackets than ``limit`` is walked: strings
    removed, then the depth after each bracket is (2 per opening one) - (brackets so far).
    """
    if len(text) <= 2 * limit or text.count("[") + text.count("{") <= limit:
        return True
    brackets = _JSON_STRING.sub(b"", text.encode("utf-8", "surrogatepass"))
    steps = brackets.translate(_OPEN_TWO_CLOSE_ZERO, _NOT_BRACKETS)
    return max(map(operator.sub, accumulate(steps), count(1)), default=0) <= limit


_json_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # unicode stays readable


def to_json(value) -> str:
    """Compact JSON, Unicode kept as itself; raises TypeError or ValueError as json does."""
    text = _json_encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escaped JSON reads back the same
            text = json.dumps(value, allow_nan=False)
    return text


def result_json(result, job_id: str, job_type: str) -> str:
    """The ``result`` field for a handler's return value: its JSON, or, for a value JSON cannot
    hold, its ``str()`` (the handler did its work; a warning says what was kept)."""
    if result is None:
        return ""
    try:
        text = to_json(result)
        if nests_within(text):
            return text
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
    except (TypeError, ValueError, RecursionError) as error:
        logger.warning("job %s %s: its result is not JSON-serialisable (%s); stored as a string",
                       job_id, job_type, error)
    try:
        return to_json(str(result))
    except Exception:  # a str() that fails or recurses: the job completed all the same
        return to_json(f"<a {type(result).__name__} result that cannot be stored>")
