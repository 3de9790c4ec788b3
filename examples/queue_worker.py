"""The cron worker of the README: run it every minute from the app's directory.

    * * * * * cd /app && python3 workers/queue_worker.py >> /var/log/queue.log 2>&1
"""

import logging
import time

from dbbasic_queue import process_jobs


def send_email_handler(payload):
    """Send email via SMTP (here: pretend to)."""
    logging.getLogger("app").info("sending %r to %s", payload["subject"], payload["to"])
    return {"sent_at": time.time()}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    handlers = {
        "send_email": send_email_handler,
    }
    # max_seconds: a run ends before the next cron run starts (overlap is safe, but needless).
    process_jobs(handlers, max_attempts=3, max_seconds=55)
