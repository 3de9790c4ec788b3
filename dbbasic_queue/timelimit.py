"""Time limits for handlers: ``time_limit(seconds)`` interrupts a hung handler with JobTimeout."""

import contextlib
import signal
import threading
from typing import Optional


class JobTimeout(BaseException):
    """Raised inside a handler that ran past its timeout. A BaseException, so that a
    handler's own ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def time_limit(seconds: Optional[float]):
    """Interrupt the code inside after ``seconds`` by raising JobTimeout, with SIGALRM.

    Works for Python code in the main thread; C code that does not return to the
    interpreter (a blocking call in an extension that ignores signals) is interrupted only
    when it returns. Elsewhere (another thread, or no limit) it does nothing.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise JobTimeout(f"timed out after {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
