"""The handlers a worker runs, loaded from ``--handlers package.module:name``.

The three ways it goes wrong get three different messages: a module that is not there (advice
on the directory and PYTHONPATH), a module that is there and raises while importing (its own
error and traceback: advice on the path would be wrong), and a name the module does not define.
"""

import importlib
import os
import sys
import traceback
from typing import Any, Mapping

from .args import UsageError


def load_handlers(spec: str) -> Mapping[str, Any]:
    """Import ``package.module:name``: a dict of handlers, or an object with ``.handlers``.
    A module that is not found gets advice on the path; one that raises while importing,
    its own error and traceback (UsageError.details)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--handlers {spec!r} must look like package.module:name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app's own modules
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:
        missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(f"--handlers: cannot import {module_name!r}: there is no module "
                             f"{missing!r} here; run from the app's directory or fix "
                             f"PYTHONPATH") from None
        raise UsageError(f"--handlers: importing {module_name!r} raised {type(error).__name__}: "
                         f"{error} (traceback above); fix the module",
                         details=_import_traceback(error)) from error
    if not hasattr(module, name):
        raise UsageError(f"--handlers: module {module_name!r} has no attribute {name!r}; define "
                         f"{name} = {{'job_type': function, ...}} at the module's top level "
                         f"(not under if __name__ == '__main__')")
    found = getattr(module, name)
    handlers = getattr(found, "handlers", found)
    if not isinstance(handlers, Mapping):
        raise UsageError(f"--handlers: {spec} is a {type(found).__name__}, not a dict of job "
                         f"type -> function (nor an object with a .handlers dict)")
    return handlers


def _import_traceback(error: BaseException) -> str:
    """The traceback of an error raised while importing, without importlib's own frames."""
    machinery = ("<frozen importlib", os.path.dirname(importlib.__file__) + os.sep)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith(machinery) and frame.filename != __file__]
    return ("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
            + "".join(traceback.format_exception_only(type(error), error)))
