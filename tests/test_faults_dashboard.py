"""The dashboard under hostile input: a port out of range."""

import pytest

from dbbasic_queue.cli import SUBCOMMANDS, main
from dbbasic_queue.dashboard import DashboardApp
from dbbasic_queue.dashboard.server import serve


# --- 15. A port out of range ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["70000", "65536", "-1", "80.5", "http"])
def test_a_port_out_of_range_is_a_mistake_in_the_command_exit_2(queue, capsys, value):
    code = main(["--file", str(queue.path), "dashboard", "--port", value])
    err = capsys.readouterr().err

    assert code == 2 and "--port" in err and "corrupt" not in err and err.count("\n") == 1


def test_serve_refuses_a_port_out_of_range_with_value_error(queue):
    for port in (70000, -1, True, "8321"):
        with pytest.raises(ValueError, match="0 to 65535"):
            serve(DashboardApp(queue), "127.0.0.1", port)


def test_an_overflow_from_a_command_is_not_called_a_corrupt_line(queue, capsys, monkeypatch):
    def overflowing(queue, args):
        raise OverflowError("Python int too large to convert to C int")
    monkeypatch.setitem(SUBCOMMANDS, "stats", overflowing)

    code = main(["--file", str(queue.path), "stats"])
    err = capsys.readouterr().err

    assert code == 2 and "corrupt" not in err and "out of range" in err
