"""The queue's own failures. Caller mistakes raise the built-in TypeError and ValueError."""


class QueueError(Exception):
    """Base class for failures of the queue itself (its file, not the caller's arguments)."""


class CorruptLineError(QueueError):
    """A line of the queue file cannot be read as a job; the message says why.

    The queue never rewrites or deletes such a line: fix or remove it by hand.
    """


class UnsupportedError(QueueError):
    """A verb or option this backend cannot honour; the message names the backend and what
    to do instead."""
