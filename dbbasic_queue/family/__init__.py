"""The names the other dbbasic packages call, as they are published: ``compat.py`` (with
``tagged.py``) is ``from dbbasic.queue import Queue`` (dbbasic-web's push and pop), and
``commands.py`` is the ``dbbasic queue:*`` commands dbbasic-cli lists (``cli.COMMANDS``).
``dbbasic_queue.admin`` (dbbasic-admin's ADMIN_CONFIG) stays at the package's root, where
dbbasic-admin imports it."""
