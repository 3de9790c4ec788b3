"""Payload values JSON cannot hold, kept as tagged JSON so the queue file stays plain text.

``push`` (see ``compat.py``) promises that the dict it is given comes back from ``pop`` equal
and of the same types. JSON holds dicts with str keys, lists, str, int, float, bool and
None; ``bytes`` (an uploaded file in dbbasic-web) is written as ``{"__bytes__": "<base64>"}``.
A dict of the caller's that looks like a tag (one key, ``__bytes__`` or ``__dict__``) is
wrapped as ``{"__dict__": {...}}``, so it never reads back as bytes. Anything else (a tuple,
which would come back a list; a set; a datetime; a key that is not a str) is refused with a
TypeError naming where it is, before anything is written.
"""

import base64
import math
from typing import Any

BYTES_TAG = "__bytes__"
DICT_TAG = "__dict__"
_TAGS = (BYTES_TAG, DICT_TAG)
_PLAIN = (str, int, bool, type(None))
_CARRIED = "dict (str keys), list, str, int, float, bool, None and bytes"


def pack(value: Any, where: str = "payload") -> Any:
    """``value`` as JSON-ready data, bytes tagged; TypeError for a value it cannot carry."""
    if type(value) in _PLAIN:
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot hold; use a finite number "
                            f"or None")
        return value
    if type(value) is bytes:
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if type(value) is list:
        return [pack(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if type(value) is dict:
        packed = {}
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{where} has the key {key!r} ({type(key).__name__}); only str "
                                f"keys come back as they were: use str keys")
            packed[key] = pack(item, f"{where}[{key!r}]")
        return {DICT_TAG: packed} if len(packed) == 1 and next(iter(packed)) in _TAGS else packed
    raise TypeError(f"{where} is a {type(value).__name__}, which the queue cannot carry and give "
                    f"back as it was; use only {_CARRIED}")


def unpack(value: Any) -> Any:
    """The value ``pack`` was given, from what it returned (after a JSON round trip).
    Raises ValueError for a tag whose content is broken (a hand-edited line)."""
    if type(value) is list:
        return [unpack(item) for item in value]
    if type(value) is not dict:
        return value
    if len(value) == 1:
        (key, content), = value.items()
        if key == BYTES_TAG:
            if type(content) is not str:
                raise ValueError(f"a {BYTES_TAG} tag must hold base64 text, not "
                                 f"{type(content).__name__}")
            try:
                return base64.b64decode(content.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError) as error:
                raise ValueError(f"a {BYTES_TAG} tag holds broken base64 ({error})") from None
        if key == DICT_TAG:
            if type(content) is not dict:
                raise ValueError(f"a {DICT_TAG} tag must hold an object, not "
                                 f"{type(content).__name__}")
            return {name: unpack(item) for name, item in content.items()}
    return {name: unpack(item) for name, item in value.items()}
