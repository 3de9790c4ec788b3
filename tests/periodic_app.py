"""An app module declaring periodic jobs, as the command-line tests load it with ``--handlers
periodic_app:queue``."""

from datetime import timedelta

from dbbasic_queue import Queue

queue = Queue()


@queue.periodic("0 3 * * *", timezone="Europe/Berlin")
def nightly_report(payload):
    return {"slot": payload["slot"]}


@queue.periodic(every=timedelta(minutes=10), catch_up="all")
def refresh_feeds(payload):
    return None
