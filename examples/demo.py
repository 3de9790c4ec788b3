"""The README's demo: enqueue a few jobs, run the worker once, show the queue file."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from dbbasic_queue import cancel_job, enqueue, get_job, process_jobs

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def send_email(payload):
    return {"sent_at": int(time.time()), "to": payload["to"]}


def resize_video(payload):
    raise RuntimeError(f"ffmpeg not found while resizing {payload['file']}")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)  # the queue lives in ./data/queue.tsv
    welcome = enqueue("send_email", {"to": "user@example.com", "subject": "Welcome",
                                     "body": "Thanks for signing up!"})
    video = enqueue("resize_video", {"file": "holiday.mp4"})
    later = enqueue("send_email", {"to": "user@example.com", "subject": "Tips"},
                    run_at=time.time() + 3600)
    cancelled = enqueue("send_email", {"to": "old@example.com", "subject": "Oops"})
    cancel_job(cancelled)

    process_jobs({"send_email": send_email, "resize_video": resize_video})

    for job_id in (welcome, video, later, cancelled):
        job = get_job(job_id)
        print(f"{job_id}  {job['type']:<13} {job['status']:<10} attempts={job['attempts']} "
              f"error={job['error']!r} result={job['result']!r}")
    print("\n$ cat data/queue.tsv")
    sys.stdout.flush()
    subprocess.run(["cat", "data/queue.tsv"], check=True)
