"""Handlers that the command-line tests load with ``--handlers jobs_for_cli:handlers``.

Each call appends payload["key"] to the file named by $RUNS_LOG, then sleeps payload["sleep"].
"""

import os
import time


def send_email(payload):
    with open(os.environ["RUNS_LOG"], "a") as log:
        log.write(f"{payload['key']}\n")
    time.sleep(payload.get("sleep", 0))
    return {"sent": payload["key"]}


def fail(payload):
    raise RuntimeError(f"cannot reach {payload.get('host', 'smtp')}")


handlers = {"send_email": send_email, "fail": fail}


class Registry:
    """An object with a ``handlers`` dict, as a handler registry would have."""

    handlers = handlers


registry = Registry()


def report_until_stopped(payload):
    """Report progress every 20 ms until asked to stop (or payload["steps"] steps)."""
    from dbbasic_queue.worker.running import current_job
    job = current_job()
    steps = payload.get("steps", 3000)
    for step in range(steps):
        job.progress(step / steps, note=f"{step} of {steps}")
        if job.stop_requested:
            return {"stopped_at": step}
        time.sleep(0.02)
    return {"done": steps}


stoppable = {"report_until_stopped": report_until_stopped}  # --handlers jobs_for_cli:stoppable
