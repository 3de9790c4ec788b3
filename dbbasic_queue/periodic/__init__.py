"""Periodic jobs: cron expressions in a time zone (``cron.py``), schedules declared with
their handlers (``schedules.py``), the record of slots fired (``state.py``, the file
``queue.schedules.tsv``) and firing them once per slot under the queue's lock (``firing.py``)."""
