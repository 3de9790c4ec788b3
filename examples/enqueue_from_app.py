"""Enqueueing from app code: what a signup view does instead of sending mail inline."""

import time

from dbbasic_queue import enqueue, get_job


def on_signup(email: str) -> str:
    """Queue the welcome email now and a follow-up for tomorrow; return the first job's id."""
    job_id = enqueue("send_email", {
        "to": email,
        "subject": "Welcome",
        "body": "Thanks for signing up!",
    })
    enqueue("send_email", {"to": email, "subject": "How is it going?", "body": "..."},
            run_at=time.time() + 24 * 3600)
    return job_id


if __name__ == "__main__":
    job_id = on_signup("user@example.com")
    print(job_id, get_job(job_id)["status"])
