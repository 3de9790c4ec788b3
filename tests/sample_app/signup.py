"""A sample app: signing up queues a welcome email; the worker's handlers send it."""

import dbbasic_queue
from dbbasic_queue import Retry

outbox = []  # stands for the SMTP server
attempts = {}


def sign_up(email: str) -> str:
    return dbbasic_queue.enqueue("send_welcome", {"to": email})


@dbbasic_queue.handler("send_welcome")
def send_welcome(payload):
    attempts[payload["to"]] = attempts.get(payload["to"], 0) + 1
    if payload["to"].endswith("@slow.example") and attempts[payload["to"]] < 3:
        raise ConnectionError("SMTP server busy")  # fails twice, then works
    if payload["to"].endswith("@limited.example") and attempts[payload["to"]] == 1:
        raise Retry(delay=600)
    outbox.append(payload["to"])
    return {"sent": payload["to"]}
