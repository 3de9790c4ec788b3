"""A job and its line in the queue file: the only code that knows the columns and the quoting.

One job is one line of tab-separated fields under the published header, quoted the way
dbbasic-tsv's csv writer quotes them (a field holding a double quote is wrapped in quotes,
its quotes doubled). ``parse_line`` is the one judgement of a line: every reader (the worker,
``get_job``, ``list``, ``stats``, the unique-key index) calls a line corrupt for the same
reasons: its fields and quoting, its status, its numbers (plain digits), its payload (a JSON
object), options (a JSON object of usable settings, or empty) and result (JSON, or empty),
each nested at most ``MAX_DEPTH`` levels. Its JSON values are written compactly, Unicode kept
as itself, and read back within that depth, which json's recursive decoder always handles.
"""

import functools
import json
import json.scanner
import math
import operator
import os
import re
import time
from itertools import accumulate, count
from json.encoder import c_make_encoder, encode_basestring  # c_make_encoder: None without C
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..errors import CorruptLineError
from ..log import logger


# --- JSON values (payload, result, options): written compactly with Unicode kept as itself,
# read back within a nesting depth that json's recursive decoder can always handle ---------

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
    if c_make_encoder is not None and type(value) is dict:
        # What _json_encoder.encode does for a dict, less its layers of Python calls (half
        # of an enqueue's JSON time): its C encoder, with a fresh circular-reference record.
        text = "".join(c_make_encoder(
            {}, _json_encoder.default, encode_basestring, None, _json_encoder.key_separator,
            _json_encoder.item_separator, False, False, False)(value, 0))
    else:
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
        logger().warning("job %s %s: its result is not JSON-serialisable (%s); stored as a string",
                       job_id, job_type, error)
    try:
        return to_json(str(result))
    except Exception:  # a str() that fails or recurses: the job completed all the same
        return to_json(f"<a {type(result).__name__} result that cannot be stored>")


# --- the line format ---------------------------------------------------------------------

PUBLISHED_COLUMNS = ("id", "type", "payload", "status", "created_at", "run_at", "attempts",
                     "error", "result")
COLUMNS = PUBLISHED_COLUMNS + ("options",)  # per-job settings as JSON; empty for most jobs
HEADER = ("\t".join(COLUMNS) + "\n").encode()
KNOWN_HEADERS = frozenset({"\t".join(PUBLISHED_COLUMNS).encode(), HEADER.rstrip(b"\n")})
# A job's statuses, as get_job returns them and the file's status field holds them.
PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = STATUSES = (
    "pending", "processing", "completed", "failed", "cancelled")
FINISHED = (COMPLETED, FAILED, CANCELLED)
ACTIVE = (PENDING, PROCESSING)  # a worker may claim it (a processing job whose worker died)
RETAINED = (COMPLETED, CANCELLED)  # retention drops these; failed jobs stay until purged
# The same as bytes, for the cheap peeks at a line's status field.
PENDING_WORD, PROCESSING_WORD = PENDING.encode(), PROCESSING.encode()
CLAIMABLE_WORDS = (PENDING_WORD, PROCESSING_WORD)
RETAINED_WORDS = tuple(status.encode() for status in RETAINED)
_INT_COLUMNS = ("created_at", "run_at", "attempts")
MAX_INT_DIGITS = 19  # an integer field is plain ASCII digits, fewer than 2**63 could need
_FIELD_COUNTS = (len(COLUMNS), len(PUBLISHED_COLUMNS))
_STATUS_WORDS = frozenset(status.encode() for status in STATUSES)
STATUS_OF_WORD = {status.encode(): status for status in STATUSES}  # b"pending" -> "pending"


class Job(NamedTuple):
    """One line of the queue file. ``payload``, ``result`` and ``options`` hold their JSON
    text as stored (``options`` is empty in lines written before that column existed).
    A NamedTuple: immutable and small (a worker holds thousands), and cheap to import."""

    id: str
    type: str
    payload: str
    status: str
    created_at: int
    run_at: int
    attempts: int
    error: str
    result: str
    options: str

    def to_line(self) -> bytes:
        return job_line(self.id, self.type, self.payload, self.status, self.created_at,
                        self.run_at, self.attempts, self.error, self.result, self.options)

    def evolve(self, **changes) -> "Job":
        """A copy with some fields changed (NamedTuple._replace, by position: faster)."""
        values = list(self)
        for name, value in changes.items():
            values[_FIELD_INDEX[name]] = value
        return Job._make(values)


_FIELD_INDEX = {name: index for index, name in enumerate(COLUMNS)}


def job_line(id: str, type: str, payload: str, status: str, created_at: int, run_at: int,
             attempts: int, error: str = "", result: str = "", options: str = "") -> bytes:
    """One job as one file line, quoted the way dbbasic-tsv's csv writer quotes it."""
    return (f"{quote_field(id)}\t{quote_field(type)}\t{quote_field(payload)}\t{status}\t{created_at}\t"
            f"{run_at}\t{attempts}\t{quote_field(error)}\t{quote_field(result)}\t{quote_field(options)}\n"
            ).encode("utf-8")


def quote_field(field: str) -> str:
    """A field as dbbasic-tsv's csv writer quotes it (csv.QUOTE_MINIMAL): quoted if it holds
    the quote character. Tabs and line breaks never reach here (``one_line`` removes them),
    so a plain split reads most lines; every file beside the queue quotes this way."""
    if '"' in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def one_line(text: str) -> str:
    """``text`` with tabs and line breaks turned into spaces, so it fits in one field."""
    return " ".join(text.replace("\t", " ").splitlines()) if text else ""


def unquote_field(field: str) -> Optional[str]:
    """A field as quote_field wrote it, read back; None if its quoting is broken."""
    if '"' not in field:
        return field
    inner = field[1:-1]
    if len(field) < 2 or field[0] != '"' or field[-1] != '"' or '"' in inner.replace('""', ""):
        return None
    return inner.replace('""', '"')


def parse_line(line: bytes) -> Job:
    """Read one file line; raise CorruptLineError saying what is wrong with it."""
    try:
        text = line.decode("utf-8").rstrip("\n").rstrip("\r")
    except UnicodeDecodeError:
        raise CorruptLineError("it is not valid UTF-8") from None
    fields = [unquote_field(field) for field in text.split("\t")]
    if len(fields) not in _FIELD_COUNTS or None in fields:
        # A field quoted around a tab (as dbbasic-tsv's update() may write) needs the csv module.
        import csv
        try:
            fields = next(csv.reader([text], delimiter="\t", strict=True))
        except (csv.Error, StopIteration) as error:
            raise CorruptLineError(f"its quoting is broken ({error})") from None
        if len(fields) not in _FIELD_COUNTS:
            raise CorruptLineError(f"it has {len(fields)} fields, not {len(COLUMNS)} "
                                   f"(or {len(PUBLISHED_COLUMNS)}, without options)")
    row = dict(zip(COLUMNS, fields))
    row.setdefault("options", "")
    if not row["id"]:
        raise CorruptLineError("its id is empty")
    if row["status"] not in STATUSES:
        raise CorruptLineError(f"its status {row['status']!r} is not one of {', '.join(STATUSES)}")
    for name in _INT_COLUMNS:
        value = row[name]
        if not (value.isascii() and value.isdigit() and len(value) <= MAX_INT_DIGITS):
            raise CorruptLineError(f"its {name} {value[:40]!r} is not a whole number of at most "
                                   f"{MAX_INT_DIGITS} digits")
        row[name] = int(value)
    _check_json_fields(row["payload"], row["options"], row["result"])
    return Job(**row)


def _check_json_fields(payload: str, options: str, result: str) -> None:
    """The JSON of a line: a payload that is a JSON object; options empty or a JSON object
    of the known settings; a result empty or any JSON. Each nests at most MAX_DEPTH deep."""
    if not payload:
        raise CorruptLineError("its payload is empty; a payload is a JSON object, at least {}")
    if not isinstance(_decoded("payload", payload), dict):
        raise CorruptLineError("its payload is not a JSON object")
    if options:
        checked_options(options)
    if result:
        _decoded("result", result)


@functools.lru_cache(maxsize=1024)
def checked_options(text: str) -> Dict[str, Any]:
    """A line's non-empty options field decoded and checked (CorruptLineError if it is not a
    JSON object of usable settings). Kept for the last texts seen, since a queue's lines
    repeat a few (one per queue and priority): the dict returned is shared, never change it."""
    decoded = _decoded("options", text)
    if not isinstance(decoded, dict):
        raise CorruptLineError("its options are not a JSON object")
    _check_options(decoded)
    return decoded


def _decoded(name: str, text: str) -> Any:
    if not nests_within(text):
        raise CorruptLineError(f"its {name} nests deeper than {MAX_DEPTH} levels")
    try:
        return json_value(text)
    except (ValueError, RecursionError) as error:
        raise CorruptLineError(f"its {name} is not valid JSON ({error})") from None


QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}\Z")  # see queues.py
RATE_LIMIT = re.compile(r"\s*[1-9]\d{0,5}\s*/\s*(?:[1-9]\d{0,5})?\s*[smhd]\s*\Z")  # see queues.py


def _check_options(options: Dict[str, Any]) -> None:
    # Unknown keys are left to newer versions; a known key with a value the worker cannot
    # use would make it fail or loop, so the line is corrupt.
    key = options.get("unique_key")
    if key is not None and not (isinstance(key, str) and key):
        raise CorruptLineError(f"its unique_key {key!r} is not a non-empty string")
    attempts = options.get("max_attempts")
    if attempts is not None and not (type(attempts) is int and attempts >= 1):
        raise CorruptLineError(f"its max_attempts {attempts!r} is not a whole number of 1 or more")
    timeout = options.get("timeout")
    if timeout is not None and not (type(timeout) in (int, float) and timeout > 0
                                    and math.isfinite(timeout)):
        raise CorruptLineError(f"its timeout {timeout!r} is not a number of seconds above 0")
    worker = options.get("worker")
    if worker is not None and not isinstance(worker, str):
        raise CorruptLineError(f"its worker {worker!r} is not a string")
    queue = options.get("queue")
    if queue is not None and not (isinstance(queue, str) and QUEUE_NAME.match(queue)):
        raise CorruptLineError(f"its queue {queue!r} is not a queue name (letters, digits, "
                               f"'_', '.', ':', '-')")
    priority = options.get("priority")
    if priority is not None and not (type(priority) is int and -100 <= priority <= 100):
        raise CorruptLineError(f"its priority {priority!r} is not a whole number from -100 to 100")
    key = options.get("concurrency_key")
    if key is not None and not (isinstance(key, str) and key):
        raise CorruptLineError(f"its concurrency_key {key!r} is not a non-empty string")
    rate = options.get("rate_limit")
    if rate is not None and not (isinstance(rate, str) and RATE_LIMIT.match(rate)):
        raise CorruptLineError(f"its rate_limit {rate!r} is not a rate such as '100/m'")
    limit = options.get("concurrency_limit")
    if limit is not None and not (type(limit) is int and 1 <= limit <= 1000):
        raise CorruptLineError(f"its concurrency_limit {limit!r} is not a whole number from 1 to 1000")
    for name in ("then", "after"):  # see dependencies.py
        ids = options.get(name)
        if ids is not None and not (isinstance(ids, list) and all(
                isinstance(job_id, str) and job_id for job_id in ids)):
            raise CorruptLineError(f"its {name} {str(ids)[:80]!r} is not a list of job ids")
    counts = options.get("batch")
    if counts is not None and not (isinstance(counts, dict) and all(
            type(counts.get(name)) is int and counts[name] >= 0
            for name in ("size", "completed", "failed", "cancelled"))):
        raise CorruptLineError(f"its batch {str(counts)[:80]!r} is not the counts of a batch "
                               f"(size, completed, failed, cancelled)")


def peek_listing(line: bytes) -> Optional[Tuple[str, str, int, int]]:
    """(type, status, created_at, run_at) of a plainly written line that parse_line reads as a
    job, cheaply, or None when only parse_line can tell (quotes in the first fields, quoting
    around tabs, anything it may call corrupt): the same judgement without building a Job,
    for listings that count every line but show a few (the dashboard, ``stats``)."""
    fields = line.rstrip(b"\n").rstrip(b"\r").split(b"\t")
    if len(fields) not in _FIELD_COUNTS or not fields[0] or b'"' in fields[0] + fields[1]:
        return None
    status = STATUS_OF_WORD.get(fields[3])
    created, run_at, attempts = fields[4], fields[5], fields[6]
    if (status is None or not (created.isdigit() and run_at.isdigit() and attempts.isdigit())
            or max(len(created), len(run_at), len(attempts)) > MAX_INT_DIGITS):
        return None
    # Fields 3 to 6 hold no quote (a status word, digits); the others are read unquoted.
    payload, result = _unquoted(fields[2]), _unquoted(fields[8])
    options = _unquoted(fields[9]) if len(fields) > 9 else b""
    if payload is None or result is None or options is None or _unquoted(fields[7]) is None:
        return None
    try:
        line.decode("utf-8")
        _check_json_fields(payload.decode("utf-8"), options.decode("utf-8"),
                           result.decode("utf-8"))
    except (UnicodeDecodeError, CorruptLineError):
        return None
    return fields[1].decode("utf-8"), status, int(created), int(run_at)


def _unquoted(field: bytes) -> Optional[bytes]:
    """A field's bytes with its quoting undone, or None if it is not quoted as the file
    quotes (whole field in quotes, every quote inside doubled): only parse_line can tell."""
    if b'"' not in field:
        return field
    if len(field) < 2 or field[0] != 34 or field[-1] != 34:
        return None
    inner = field[1:-1]
    text = inner.replace(b'""', b'"')
    return text if 2 * text.count(b'"') == inner.count(b'"') else None


_fresh_ids: List[str] = []  # drawn ahead: one system call per 64 ids


def new_job_id() -> str:
    """A random id of 16 hex digits, as secrets.token_hex(8) makes them. Drawn 64 at a time
    from os.urandom; a forked child throws away the ones its parent drew (so the two never
    hand out the same), as Python's fork hooks let it."""
    try:
        return _fresh_ids.pop()
    except IndexError:
        drawn = os.urandom(512).hex()
        _fresh_ids.extend(drawn[start:start + 16] for start in range(16, 1024, 16))
        return drawn[:16]


os.register_at_fork(after_in_child=_fresh_ids.clear)


def line_id(line: bytes) -> bytes:
    """The id field of a line, as bytes, without parsing the rest (for the claim loop)."""
    return line[:line.find(b"\t")]


def peek_status_and_run_at(line: bytes) -> Optional[Tuple[bytes, int, bytes]]:
    """(status, run_at, created_at) of a plainly written line, cheaply, or None when the line
    needs a full parse (quoting around tabs, a corrupt line). For the claim loop, which looks
    at every line but parses only the ones it takes."""
    fields = line.split(b"\t", 7)
    if (len(fields) != 8 or fields[3] not in _STATUS_WORDS or not fields[5].isdigit()
            or len(fields[5]) > MAX_INT_DIGITS):
        return None
    return fields[3], int(fields[5]), fields[4]


def peek_unique_key(line: bytes) -> Optional[str]:
    """The ``unique_key`` of a line that looks like a pending or processing job, from a cheap
    look; None for any other line. For the unique-key index, which reads every line after a
    rewrite and judges a line with parse_line only when its key is asked for."""
    if b"unique_key" not in line:
        return None
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != len(COLUMNS):  # quoting around a tab, or not a job: the full reading
        try:
            job = parse_line(line)
        except CorruptLineError:
            return None
        if job.status not in ACTIVE:
            return None
        text = job.options
    elif fields[3] not in CLAIMABLE_WORDS:
        return None
    else:
        try:
            text = unquote_field(fields[9].decode("utf-8"))
        except UnicodeDecodeError:
            return None
    try:
        options = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    key = options.get("unique_key") if isinstance(options, dict) else None
    return key if isinstance(key, str) else None


def job_with_id_prefix(job_id: str) -> Optional[bytes]:
    """The bytes every line of job ``job_id`` starts with, or None for an id no line can have."""
    if not isinstance(job_id, str) or not job_id or any(c in job_id for c in '\t\r\n"'):
        return None
    try:
        return job_id.encode("utf-8") + b"\t"
    except UnicodeEncodeError:
        return None


def same_job(line: bytes, other: bytes) -> bool:
    """Whether two lines hold the same job in the same state, however each was written (a
    line rewritten by dbbasic-tsv ends in CRLF and may quote fields differently)."""
    if line == other:
        return True
    try:
        return parse_line(line) == parse_line(other)
    except CorruptLineError:
        return False


def reads(line: bytes) -> bool:
    """Whether a line parses as a job."""
    try:
        parse_line(line)
        return True
    except CorruptLineError:
        return False


MAX_ERROR_CHARS = 2000  # of an error kept in a job's line (and logged); tracebacks keep more
_CUT_MARK = " characters in all; cut, the rest is in the traceback file)"


def error_text(error: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``Type: message`` on one line, for the ``error`` field, at most ``limit`` characters.

    Never raises: an exception whose ``__str__`` raises or returns no string is described
    by its ``repr``, or failing that by its class, so its attempt is still recorded. A
    message longer than ``limit`` (an HTML error page in a ValueError) is cut, saying so: the
    line is copied by every rewrite, and the traceback file keeps more of it.
    """
    text = one_line(f"{type(error).__name__}: {_message(error)}")
    if len(text) > limit:
        text = f"{text[:max(0, limit - 80)]}… ({len(text):,}{_CUT_MARK}"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_cut(text: str) -> bool:
    """Whether ``text`` is an error text that ``error_text`` cut."""
    return text.endswith(_CUT_MARK)


def _message(error: BaseException) -> str:
    for describe in (str, repr):
        try:
            text = describe(error)
        except BaseException as failure:  # a broken __str__ must not lose the attempt
            text = f"<{describe.__name__}() raised {type(failure).__name__}>"
            continue
        if isinstance(text, str):
            return text
        text = f"<{describe.__name__}() returned {type(text).__name__}, not a string>"
    return text


def as_dict(job: Job) -> Dict[str, Any]:
    """The published get_job shape. Raises ValueError if the JSON in the line is broken."""
    return {"id": job.id, "type": job.type,
            "payload": json_value(job.payload) if job.payload else {},
            "status": job.status, "created_at": job.created_at, "run_at": job.run_at,
            "attempts": job.attempts, "error": job.error or None,
            "result": json_value(job.result) if job.result else None}


def utc_text(timestamp: float, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A time in UTC, for people (``form`` as in time.strftime). Enqueue refuses times after
    the year 9999, but a line edited by hand may hold one: it reads ``after 9999-12-31``."""
    try:
        moment = time.gmtime(timestamp)
    except (OverflowError, OSError, ValueError):  # beyond what the platform's time_t holds
        moment = None
    if moment is None or moment.tm_year > 9999:
        return "after 9999-12-31" if timestamp > 0 else "before 1970-01-01"
    return time.strftime(form, moment)


def corrupt_message(path, number: int, error: Exception) -> str:
    """How every reader reports a corrupt line: where it is, why, and what to do."""
    return f"{path}, line {number}: a corrupt line ({error}); fix or remove it by hand"
