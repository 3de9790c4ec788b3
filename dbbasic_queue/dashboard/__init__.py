"""A web dashboard of a queue: counts, a 24-hour chart, jobs, failures, and actions.

``DashboardApp(backend)`` is a WSGI application (mount it with ``mount(app, "/admin/jobs",
dashboard)``); ``dbbasic-queue dashboard`` serves it with wsgiref (``server.py``, its bounds
on slow and idle clients in ``connections.py``; the Host check, auth and CSRF in
``security.py``). Standard library only: the HTML is escaped by ``templates``, the page's
script and style are files in ``static/``, nothing is loaded from the network.
"""

from .app import DashboardApp, mount

__all__ = ["DashboardApp", "mount"]
