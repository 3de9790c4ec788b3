"""current_job(): a handler learns which job and which attempt it is running."""

from dbbasic_queue.worker.running import current_job


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


def test_handlers_in_threads_each_see_their_own_job(queue):
    # Given four jobs and a worker of two threads whose handlers wait for each other
    import threading
    both = threading.Barrier(2, timeout=30)
    seen = {}

    def record(payload):
        both.wait()  # two handlers are running at once here
        seen[payload["n"]] = current_job().id
        return None
    ids = {n: queue.enqueue("record", {"n": n}) for n in range(4)}

    # When they run
    queue.process_jobs({"record": record}, concurrency=2)

    # Then each handler saw its own job
    assert seen == ids
