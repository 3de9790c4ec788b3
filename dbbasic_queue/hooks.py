"""Hooks: the app's own code at each step of a job's life, on every backend.

A hook is any object with some of these methods, each taking one ``JobEvent``; register it
with ``dbbasic_queue.add_hooks(hook)`` (and ``remove_hooks``):

- ``on_enqueue``: a job was added (``enqueue``; ``enqueue_after`` at commit; a periodic
  schedule's firing), in the process that added it, once the job is written. Not for an
  enqueue whose ``unique_key`` found a twin (no job was added);
- ``on_start``: a worker is about to call the job's handler, in the thread that will;
- ``on_success``: the handler returned (``event.result``);
- ``on_failure``: an attempt failed (``event.error``, ``event.exception``): a raise, a time
  limit, no handler, or a stop (``Queue.stop``, always final); ``event.final`` says whether
  that was the job's last attempt;
- ``on_retry``: the job will run again at ``event.run_at``: after a failed attempt that was
  not its last (just after ``on_failure``), or because its handler raised ``Retry``.

The same hooks run on the TSV queue and on Redis, in cron runs, loop workers and Django's
worker alike: register them where the handlers are defined, so every worker that imports
the handlers has them. Hooks run in the order added. A hook that raises (SystemExit too) is
logged with its traceback and changes nothing: the job's outcome is its handler's, and the
other hooks still run; only KeyboardInterrupt goes through, as Ctrl-C would anywhere. With
no hook registered, a step costs one check of an empty list.
"""

from typing import Any, List, NamedTuple, Optional

from .log import logger

STEPS = ("on_enqueue", "on_start", "on_success", "on_failure", "on_retry")

registered: List[Any] = []  # the hooks, in the order added


class JobEvent(NamedTuple):
    """One step of a job's life, as a hook sees it. ``attempt`` counts from 1 (0 at
    enqueue); ``duration`` is the handler's, in seconds (None before it ran)."""

    step: str
    id: str
    type: str
    queue: str = "default"
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 0
    payload: Optional[dict] = None
    result: Any = None
    error: Optional[str] = None
    exception: Optional[BaseException] = None
    final: bool = False
    run_at: Optional[float] = None
    duration: Optional[float] = None


def add_hooks(hook: Any) -> Any:
    """Call ``hook``'s ``on_*`` methods at each step of every job (see the module
    docstring); returns ``hook``. Raises TypeError for an object with none of them."""
    if not any(callable(getattr(hook, step, None)) for step in STEPS):
        raise TypeError(f"a hook needs at least one of the methods {', '.join(STEPS)}; "
                        f"{hook!r} has none")
    if not any(known is hook for known in registered):
        registered.append(hook)
    return hook


def remove_hooks(hook: Any) -> bool:
    """Stop calling ``hook``; False if it was not registered."""
    for index, known in enumerate(registered):
        if known is hook:
            del registered[index]
            return True
    return False


def call(event: JobEvent) -> None:
    """Run every registered hook's method for ``event.step``; a hook's exception is logged,
    never raised. Callers check ``registered`` first, so no event is built for no hook."""
    for hook in list(registered):
        method = getattr(hook, event.step, None)
        if method is None:
            continue
        try:
            method(event)
        except KeyboardInterrupt:  # Ctrl-C: the worker stops as it would anywhere else
            raise
        except BaseException:  # SystemExit, GeneratorExit too: a hook never ends the job
            logger().exception("hook %r raised in %s for job %s %s; the job goes on as if "
                               "it had not", hook, event.step, event.id, event.type)
