"""Ctrl-C in a worker that loops over process_jobs (dbbasic-email's ``email:worker``) ends it
with KeyboardInterrupt, wherever it lands, and loses no job."""

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.storage.table import Bookmark


def test_ctrl_c_right_after_a_bookmark_is_closed_stays_a_keyboard_interrupt(tmp_path,
                                                                           monkeypatch):
    # Given a run that rewrites the file several times (so it replaces its bookmark), and a
    # SIGINT landing just after the old bookmark's descriptor is closed (found with a real
    # process: the run's last rewrite then used the closed descriptor, and the
    # KeyboardInterrupt became "OSError: [Errno 9] Bad file descriptor")
    queue = Queue(tmp_path / "data" / "queue.tsv")
    ids = [queue.enqueue("send_email", {"n": n}) for n in range(300)]
    close = Bookmark.close
    interrupted = []

    def close_then_ctrl_c(bookmark):
        close(bookmark)
        if not interrupted:
            interrupted.append(bookmark.fd)
            raise KeyboardInterrupt
    monkeypatch.setattr(Bookmark, "close", close_then_ctrl_c)

    with pytest.raises(KeyboardInterrupt):
        queue.process_jobs({"send_email": lambda payload: None})

    assert interrupted
    monkeypatch.undo()
    queue.process_jobs({"send_email": lambda payload: None})
    assert {queue.get_job(job_id)["status"] for job_id in ids} == {"completed"}
