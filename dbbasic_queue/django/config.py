"""The backend's ``OPTIONS``: read and checked in one place, so ``check()`` reports exactly
what would otherwise fail at the first enqueue or in the worker."""

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from ..backend import (DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PATH,
                       DEFAULT_RETENTION_SECONDS)

KNOWN = ("PATH", "DURABLE", "MAX_ATTEMPTS", "LEASE_SECONDS", "TIMEOUT", "RETENTION_SECONDS")


@dataclass(frozen=True)
class Settings:
    """A TaskBackend's settings, from its ``OPTIONS``."""

    path: Path
    durable: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    timeout: Optional[float] = None
    retention_seconds: Optional[float] = DEFAULT_RETENTION_SECONDS


def read_options(options: Any) -> Tuple[Optional[Settings], List[str], List[str]]:
    """(settings or None, errors, warnings) for a backend's ``OPTIONS``; each message says
    what is wrong and how to fix it."""
    if not isinstance(options, Mapping):
        return None, [f"OPTIONS must be a dict, not {type(options).__name__}"], []
    errors: List[str] = []
    warnings: List[str] = []
    unknown = sorted(str(key) for key in options if key not in KNOWN)
    if unknown:
        errors.append(f"unknown OPTIONS {', '.join(unknown)}; the options are {', '.join(KNOWN)}")
    path = options.get("PATH", DEFAULT_PATH)
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".tsv"):
        errors.append(f"OPTIONS['PATH'] must be the queue file's path, ending in .tsv "
                      f"(such as BASE_DIR / 'data' / 'tasks.tsv'), not {path!r}")
    elif not os.path.isabs(path):
        warnings.append(f"OPTIONS['PATH'] {str(path)!r} is relative to the current directory, "
                        f"which may differ between the web server and the worker, so they "
                        f"would use two files; use an absolute path such as "
                        f"BASE_DIR / 'data' / 'tasks.tsv'")
    durable = options.get("DURABLE", False)
    if not isinstance(durable, bool):
        errors.append(f"OPTIONS['DURABLE'] must be True or False, not {durable!r}")
    values = {}
    for key, default, integer, optional in (
            ("MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, True, False),
            ("LEASE_SECONDS", DEFAULT_LEASE_SECONDS, False, False),
            ("TIMEOUT", None, False, True),
            ("RETENTION_SECONDS", DEFAULT_RETENTION_SECONDS, False, True)):
        value = options.get(key, default)
        if value is None and optional:
            values[key] = None
            continue
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not (
                math.isfinite(value) and value > 0):
            what = "a whole number" if integer else "a number of seconds"
            errors.append(f"OPTIONS['{key}'] must be {what} greater than 0"
                          f"{' or None' if optional else ''}, not {value!r}")
        values[key] = value
    if errors:
        return None, errors, warnings
    return Settings(Path(os.path.abspath(path)), durable, values["MAX_ATTEMPTS"],
                    values["LEASE_SECONDS"], values["TIMEOUT"],
                    values["RETENTION_SECONDS"]), errors, warnings
