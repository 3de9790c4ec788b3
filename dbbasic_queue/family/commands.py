"""The ``dbbasic`` command's queue commands (dbbasic-cli): ``dbbasic queue:stats`` and the rest.

dbbasic-cli 1.0.0 imports ``dbbasic_queue.cli``, whose ``COMMANDS`` is ``queue_commands(main)``,
lists each command with its function's first docstring line in ``dbbasic help``, and calls
it with the words after the command name. Each runs ``dbbasic-queue`` itself: the same
output, and, since dbbasic-cli ignores return values, a failure leaves with dbbasic-queue's
exit code (SystemExit). ``dbbasic queue:list --status failed --file data/jobs.tsv`` is
``dbbasic-queue list --status failed --file data/jobs.tsv``.
"""

from typing import Callable, Dict, List, Optional

Main = Callable[[Optional[List[str]]], int]


def _command(main: Main, subcommand: str, summary: str) -> Callable[[List[str]], None]:
    def command(args: List[str]) -> None:
        code = main([subcommand, *args])
        if code:
            raise SystemExit(code)

    command.__name__ = command.__qualname__ = f"queue_{subcommand}_command"
    command.__doc__ = summary
    return command


def queue_commands(main: Main) -> Dict[str, Callable[[List[str]], None]]:
    """dbbasic-cli's command name -> function(args: list[str]), as dbbasic-cli 1.0.0 looks
    for, each running ``main`` (the ``dbbasic-queue`` command) with its subcommand."""
    return {
        "queue:worker": _command(main, "work",
                           "Run queued jobs with your handlers: queue:worker --handlers "
                           "app.jobs:handlers [--loop]"),
        "queue:stats": _command(main, "stats",
                           "Show the queue's counts by status and type, latency and next run"),
        "queue:list": _command(main, "list",
                           "List jobs, newest first (--status, --type, --limit, --json)"),
        "queue:show": _command(main, "show",
                           "Show one job in full: queue:show ID"),
        "queue:enqueue": _command(main, "enqueue",
                           "Queue a job and print its id: queue:enqueue TYPE '{\"json\": 1}'"),
        "queue:cancel": _command(main, "cancel",
                           "Cancel a pending job: queue:cancel ID"),
        "queue:retry": _command(main, "retry",
                           "Put failed or cancelled jobs back, due now: queue:retry ID | "
                           "--failed"),
        "queue:run-now": _command(main, "run-now",
                           "Make waiting jobs due now: queue:run-now ID | --type TYPE | --all"),
        "queue:purge": _command(main, "purge",
                           "Remove old finished jobs: queue:purge --older-than 7d"),
        "queue:migrate": _command(main, "migrate",
                           "Move pending jobs into Redis (RQ): queue:migrate --to "
                           "redis://localhost:6379/0"),
        "queue:schedules": _command(main, "schedules",
                           "List the periodic jobs: last fired and next slot (--handlers "
                           "app.jobs:queue, --json)"),
        "queue:dashboard": _command(main, "dashboard",
                           "Serve a web page of the queue on http://127.0.0.1:8321"),
    }
