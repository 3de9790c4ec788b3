"""The worker of the README, runnable: handlers at module level, so the same file serves cron,
``dbbasic-queue work --handlers`` and the systemd unit beside it.

    * * * * * cd /app && python3 workers/queue_worker.py >> /var/log/queue.log 2>&1
    dbbasic-queue work --loop --handlers workers.queue_worker:handlers
"""

import logging
import time

from dbbasic_queue import process_jobs


def send_email_handler(payload):
    """Send email via SMTP (here: pretend to)."""
    logging.getLogger("app").info("sending %r to %s", payload["subject"], payload["to"])
    return {"sent_at": time.time()}


handlers = {
    "send_email": send_email_handler,
}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # max_seconds: a run ends before the next cron run starts (overlap is safe, but needless).
    process_jobs(handlers, max_attempts=3, max_seconds=55)
