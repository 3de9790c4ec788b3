"""current_job(): a handler learns which job and which attempt it is running."""

from dbbasic_queue.running import current_job


def test_a_handler_knows_its_job_and_attempt_and_nothing_outside_one(queue, clock):
    # Given a job that fails once, then succeeds
    seen = []

    def flaky(payload):
        job = current_job()
        seen.append((job.id, job.type, job.created_at, job.attempt, job.max_attempts))
        if job.attempt == 1:
            raise RuntimeError("first try fails")
        return {"ok": True}
    job_id = queue.enqueue("flaky", {"n": 1})
    created_at = queue.get_job(job_id)["created_at"]

    # When it runs twice (the second time after its retry delay)
    queue.process_jobs({"flaky": flaky}, max_attempts=4)
    clock.advance(3600)
    queue.process_jobs({"flaky": flaky}, max_attempts=4)

    # Then each call saw its own attempt, and outside a handler there is no current job
    assert seen == [(job_id, "flaky", created_at, 1, 4), (job_id, "flaky", created_at, 2, 4)]
    assert queue.get_job(job_id)["status"] == "completed"
    assert current_job() is None
