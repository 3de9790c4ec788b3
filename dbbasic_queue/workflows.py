"""``Batch``: jobs gathered, then written in one append with the job that runs once they have
all ended. Made by ``Queue.batch``; the waiting and the counting are model/dependencies.py's.

The batch's id is its ``on_complete`` job's, known from the start, so a web page can show it
before the first job runs. Every member's options name that job in ``then``; the job itself
waits with the counts of its members ended, by status, and is due when they add up to the
batch's size: exactly once, since each end is counted in the rewrite that records it.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from .model.job import new_job_id


class Batch:
    """A batch being gathered (see Queue.batch). ``enqueue`` adds a job and returns the id
    it will have; the jobs are written at the end of the ``with`` block (nothing if it
    raises), or by ``write()``. ``id`` is the on_complete job's id (None without one);
    ``ids`` the members', in order."""

    def __init__(self, write: Callable[..., None], on_complete, options: Dict[str, Any]) -> None:
        if on_complete is not None and not (isinstance(on_complete, tuple)
                                            and len(on_complete) in (2, 3)):
            raise TypeError(f"on_complete takes (job_type, payload) or (job_type, payload, "
                            f"{{options}}), not {on_complete!r}")
        if "run_at" in options:
            raise TypeError("a batch's run_at goes with each job: batch.enqueue(type, payload, "
                            "run_at=...)")
        self._write, self.on_complete, self.options = write, on_complete, dict(options)
        self.id: Optional[str] = None if on_complete is None else new_job_id()
        self.members: List[Tuple[str, str, Any, Optional[float], Dict[str, Any]]] = []
        self.written = False

    @property
    def ids(self) -> List[str]:
        return [member[0] for member in self.members]

    def enqueue(self, job_type: str, payload: dict, run_at: Optional[float] = None,
                **options) -> str:
        """Add a job to the batch (written with the rest); its options over the batch's."""
        if self.written:
            raise RuntimeError("this batch is written already: start a new one")
        job_id = new_job_id()
        self.members.append((job_id, job_type, payload, run_at,
                             {**self.options, **options} if options else self.options))
        return job_id

    def write(self) -> None:
        """Write the batch's jobs and its on_complete job in one append. Every job is
        checked first: one bad job raises TypeError or ValueError, naming its place, and
        none is written."""
        if self.written:
            raise RuntimeError("this batch is written already")
        self._write(self.members, self.on_complete, self.id)
        self.written = True

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None and not self.written:
            self.write()

    def __repr__(self) -> str:
        return f"Batch({self.id}, {len(self.members)} jobs{', written' if self.written else ''})"
