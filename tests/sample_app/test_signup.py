"""The sample app's own tests, written as an app's would be, with dbbasic-queue's helpers."""

import pytest

import signup
from dbbasic_queue.testing import immediate, run_until_empty


@pytest.fixture(autouse=True)
def empty_outbox():
    signup.outbox.clear()
    signup.attempts.clear()


def test_a_welcome_email_is_sent_after_two_failures(queue_file):
    queue_file.handlers.update(signup.dbbasic_queue.handlers)
    job_id = queue_file.enqueue("send_welcome", {"to": "ann@slow.example"})
    start = queue_file.clock()
    assert run_until_empty(queue_file) == 3
    assert signup.outbox == ["ann@slow.example"]
    assert queue_file.get_job(job_id)["attempts"] == 3
    assert queue_file.clock() - start >= 180  # two backoffs passed on the fake clock


def test_a_handler_asking_to_retry_later_runs_later(queue_file):
    queue_file.handlers.update(signup.dbbasic_queue.handlers)
    queue_file.enqueue("send_welcome", {"to": "bob@limited.example"})
    start = queue_file.clock()
    run_until_empty(queue_file)
    assert signup.outbox == ["bob@limited.example"] and queue_file.clock() - start >= 600


def test_sign_up_sends_at_once_in_immediate_mode():
    with immediate():
        job_id = signup.sign_up("cat@example.com")
        assert signup.dbbasic_queue.get_job(job_id)["result"] == {"sent": "cat@example.com"}
    assert signup.outbox == ["cat@example.com"]


def test_immediate_mode_raises_the_handler_s_own_error():
    with immediate(), pytest.raises(ConnectionError):
        signup.sign_up("dan@slow.example")
