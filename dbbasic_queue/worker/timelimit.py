"""Time limits for handlers: a handler still running after its limit is interrupted by JobTimeout.

In the main thread the limit is SIGALRM, which also interrupts a handler blocked in
``time.sleep`` or a socket read. In other threads (a worker with ``concurrency`` > 1) a
watchdog thread raises JobTimeout inside the handler's thread at its next Python instruction,
so a handler blocked in one C call is interrupted only when that call returns.

Either way the verdict is exact: a handler that returned is never reported as timed out,
however close the alarm came. The handler's return value is stored by C code (``list.extend``
over ``map``), where no Python-level signal handler or asynchronous exception can run, so
"it returned" is known whenever a late JobTimeout arrives.
"""

import heapq
import itertools
import signal
import sys
import threading
from typing import Any, Callable, List, Optional


class JobTimeout(BaseException):
    """Raised inside a handler that ran past its timeout. A BaseException, so that a
    handler's own ``except Exception`` does not swallow it."""


def call_with_time_limit(function: Callable[[Any], Any], argument: Any,
                         seconds: Optional[float], watchdog: Optional["Watchdog"] = None) -> Any:
    """``function(argument)``, interrupted with JobTimeout after ``seconds`` (None: no limit).

    From the main thread it uses SIGALRM; from another thread it needs a ``watchdog``.
    """
    if not seconds:
        return function(argument)
    if threading.current_thread() is threading.main_thread():
        return _call_with_alarm(function, argument, seconds)
    if watchdog is None:
        raise RuntimeError("a time limit outside the main thread needs a Watchdog")
    return watchdog.call(function, argument, seconds)


def _call_with_alarm(function, argument, seconds: float):
    returned: List[Any] = []
    here = sys._getframe()

    def on_alarm(signum, frame):
        # Raise only inside the handler's own frames: an alarm handled here, in this frame,
        # came after the handler returned or raised, and is ignored.
        if frame is not here:
            raise JobTimeout(f"timed out after {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        returned.extend(map(function, (argument,)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # A handler that is not a function (SIG_DFL) drops an alarm still pending here.
        signal.signal(signal.SIGALRM, previous)
    return returned[0]


class _Deadline:
    __slots__ = ("thread_id", "done", "seconds")

    def __init__(self, thread_id: int, seconds: float) -> None:
        self.thread_id, self.seconds, self.done = thread_id, seconds, False


class Watchdog:
    """One thread that interrupts handlers in other threads when their time is up.

    ``monotonic`` is the clock it reads; ``call`` arms a deadline, runs the function and
    disarms it, clearing an interruption that arrived too late to matter.
    """

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic
        # A plain Lock, never a Condition: an interruption raised while the handler's
        # thread waits for this lock lands as that thread returns from acquiring it, and
        # only a lock whose acquiring is one C call is then released by its with-block
        # (a Condition's __enter__ is Python code, where it would land holding the lock).
        self.lock = threading.Lock()
        self.woken = threading.Event()  # the watching thread looks again
        self.deadlines: list = []  # heap of (when, sequence number, _Deadline)
        self.numbers = itertools.count()
        self.closed = False
        self.thread = threading.Thread(target=self._watch, name="dbbasic-queue-watchdog",
                                       daemon=True)
        self.thread.start()

    def call(self, function, argument, seconds: float):
        returned: List[Any] = []
        deadline = _Deadline(threading.get_ident(), seconds)
        with self.lock:
            heapq.heappush(self.deadlines, (self.monotonic() + seconds, next(self.numbers), deadline))
        self.woken.set()
        try:
            try:
                returned.extend(map(function, (argument,)))
            finally:
                self._disarm(deadline)
        except JobTimeout:
            self._disarm(deadline)  # it may have landed inside the first disarm
            if not returned:
                raise
        return returned[0]

    def _disarm(self, deadline: _Deadline) -> None:
        with self.lock:
            deadline.done = True
            _raise_in_thread(deadline.thread_id, None)  # clears one still pending

    def _watch(self) -> None:
        while True:
            with self.lock:
                if self.closed:
                    return
                now = self.monotonic()
                while self.deadlines and (self.deadlines[0][2].done or self.deadlines[0][0] <= now):
                    _, _, deadline = heapq.heappop(self.deadlines)
                    if not deadline.done:
                        deadline.done = True
                        _raise_in_thread(deadline.thread_id, JobTimeout(
                            f"timed out after {deadline.seconds:g} s"))
                wait = None if not self.deadlines else min(0.05, max(0.0, self.deadlines[0][0] - now))
            self.woken.wait(wait)
            self.woken.clear()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.woken.set()
        self.thread.join()


def interrupt(thread_id: int, error: Optional[BaseException]) -> None:
    """Make ``error`` raise in the thread at its next Python instruction (None: cancel one
    still pending): a stop request's interruption (see control.py)."""
    _raise_in_thread(thread_id, error)


def _raise_in_thread(thread_id: int, error: Optional[BaseException]) -> None:
    """Make ``error`` raise in the thread at its next Python instruction (None: cancel)."""
    import ctypes  # here: only a worker with threads and a time limit needs it (about 1 MB)
    exception = ctypes.py_object(type(error)) if error is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exception)
