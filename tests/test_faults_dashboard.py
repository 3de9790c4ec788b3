"""The dashboard under a hostile network: DNS rebinding, idle and half-sent connections, and a
port out of range.

A page of another site whose name resolves to 127.0.0.1 must not read the dashboard or post
its forms: a request whose Host header names no host of the dashboard is refused before the
queue is read. Connections that send nothing, or stop inside their headers, are dropped
after a few seconds, never hold more than a bounded number of descriptors, never spin the
server and never keep a real request from an answer, even under a 64-descriptor limit.
Every server here listens on 127.0.0.1 only.
"""

import http.client
import io
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from dbbasic_queue.cli import SUBCOMMANDS, main
from dbbasic_queue.dashboard import DashboardApp, mount
from dbbasic_queue.dashboard.server import serve
from support import ROOT, WAIT_SECONDS, wait_for
from test_dashboard import Client, seed

REBIND = "rebind.example"
HALF_SENT = b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # the headers never end


# --- 11. DNS rebinding ------------------------------------------------------------------------

@pytest.mark.parametrize("host", [
    REBIND, f"{REBIND}:8321", "127.0.0.1.rebind.example", "localhost.rebind.example:8321",
    "127.0.0.1:8321, rebind.example", "", "localhost:99999", "[::1", "127.0.0.1 x",
])
def test_a_request_naming_another_host_is_refused_before_the_queue_is_read(queue, host):
    seed(queue)
    app = DashboardApp(queue)
    queue.path.unlink()
    queue.path.mkdir()  # any read of the queue now fails: a refusal must come first

    reply = Client(app, "127.0.0.1", {"HTTP_HOST": host}).get("/jobs")

    assert reply.status == 400 and reply.headers["Content-Type"].startswith("text/plain")
    assert "--allowed-host" in reply.text and len(reply.text) < 300
    assert Client(app, "127.0.0.1", {"HTTP_HOST": "127.0.0.1"}).get("/jobs").status == 500


def test_a_rebinding_page_can_neither_read_the_payloads_nor_cancel_a_job(queue):
    ids = seed(queue)
    app = DashboardApp(queue)
    browser = Client(app)
    token = browser.token()
    attacker = Client(app, "127.0.0.1", {"HTTP_HOST": f"{REBIND}:8321",
                                         "HTTP_SEC_FETCH_SITE": "same-origin"})
    attacker.cookie = browser.cookie  # as if it had read a page and been given the cookie

    pages = [attacker.get(path) for path in ("/", "/jobs", f"/jobs/{ids['due']}", "/api/overview")]
    cancel = attacker.request("POST", f"/jobs/{ids['later']}/cancel", form={"csrf_token": token})

    assert [page.status for page in pages] == [400, 400, 400, 400]
    assert not any(b"cy@example.com" in page.body or b"account" in page.body for page in pages)
    assert cancel.status == 400 and queue.get_job(ids["later"])["status"] == "pending"
    assert browser.post(f"/jobs/{ids['later']}/cancel").status == 303  # its own page can


@pytest.mark.parametrize("host", [
    "localhost", "LOCALHOST:8321", "localhost.:8321", "127.0.0.1", "127.0.0.1:1", "[::1]:8321",
    "[0:0:0:0:0:0:0:1]", "localhost:",
])
def test_loopback_names_are_answered_in_any_case_with_any_port_and_a_trailing_dot(queue, host):
    assert Client(DashboardApp(queue), "127.0.0.1", {"HTTP_HOST": host}).get("/").status == 200


def test_allowed_hosts_add_names_and_domains_and_nothing_more(queue):
    app = DashboardApp(queue, allowed_hosts=["Jobs.Example.com", ".corp.example", "10.0.0.5"],
                       authorize=lambda environ: True)

    def status(host):
        return Client(app, "203.0.113.9", {"HTTP_HOST": host}).get("/").status
    assert [status(h) for h in ("jobs.example.com:443", "JOBS.EXAMPLE.COM.", "corp.example",
                                "a.b.corp.example", "10.0.0.5:8321", "localhost")] == [200] * 6
    assert [status(h) for h in ("example.com", "evilcorp.example", "jobs.example.com.evil",
                                "10.0.0.6", REBIND)] == [400] * 5


def status_without_host(app, protocol):
    """The status of a GET / from this machine that carries no Host header at all."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "SCRIPT_NAME": "",
               "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "dashboard.internal",
               "SERVER_PORT": "8321", "SERVER_PROTOCOL": protocol, "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO()}
    answer = []
    b"".join(app(environ, lambda status, headers: answer.append(status)))
    return int(answer[0].split()[0])


def test_without_a_host_header_only_http_1_0_is_answered(queue):
    app = DashboardApp(queue)

    assert status_without_host(app, "HTTP/1.0") == 200  # no browser sends it: none to rebind
    assert status_without_host(app, "HTTP/1.1") == 400  # RFC 9112: Host is required


def test_mounted_in_a_host_app_the_dashboard_checks_the_host_too(queue):
    seed(queue)

    def host_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the host app"]
    site = mount(host_app, "/admin/jobs", DashboardApp(queue, allowed_hosts=["www.example.com"]))

    assert Client(site, "127.0.0.1", {"HTTP_HOST": REBIND}).get("/admin/jobs/jobs").status == 400
    assert Client(site, "127.0.0.1", {"HTTP_HOST": "www.example.com"}).get(
        "/admin/jobs/jobs").status == 200
    assert Client(site, "127.0.0.1", {"HTTP_HOST": REBIND}).get("/elsewhere").body == (
        b"the host app")  # the rest of the site is its own business


@pytest.mark.parametrize("names, error", [
    ("example.com", TypeError), (["example.com:8321"], ValueError), (["a b"], ValueError),
    ([".10.0.0.5"], ValueError), ([""], ValueError),
])
def test_a_malformed_allowed_host_is_refused_at_once(queue, names, error):
    with pytest.raises(error, match="list of names|not a host name"):
        DashboardApp(queue, allowed_hosts=names)


def start(queue, *args, rlimit_nofile=None, command=None):
    """The dashboard as a process (``dbbasic-queue dashboard --port 0 ARGS``, or ``command``,
    which prints its port as its first line); (process, what it said, port)."""
    if command is None:
        command = ["-m", "dbbasic_queue", "--file", str(queue.path), "dashboard", "--port", "0",
                   *args]

    def limit():
        if rlimit_nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit_nofile, rlimit_nofile))
    process = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, preexec_fn=limit,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
    said, deadline = b"", time.monotonic() + WAIT_SECONDS
    ready_line = re.compile(rb"(?s)^(\d+)\n|http://\S+:(\d+)/.*Ctrl-C")
    while not ready_line.search(said):
        ready, _, _ = select.select([process.stdout], [], [], max(0, deadline - time.monotonic()))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            process.wait()
            pytest.fail(f"the dashboard exited or said nothing: {said!r}")
        said += chunk
    match = ready_line.search(said)
    return process, said.decode(), int(match.group(1) or match.group(2))


def end(process):
    if process.poll() is None:
        process.kill()
    process.wait(timeout=WAIT_SECONDS)
    process.stdout.close()


def status_of(port, host, path="/", address="127.0.0.1", timeout=10):
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_command_answers_to_loopback_its_own_address_and_allowed_hosts_only(queue):
    seed(queue)
    process, said, port = start(queue, "--host", "127.0.0.2", "--allowed-host", "jobs.internal")
    try:
        assert "Host names localhost, 127.0.0.1, [::1], 127.0.0.2, jobs.internal" in said
        allowed = [status_of(port, host, address="127.0.0.2") for host in (
            f"127.0.0.2:{port}", f"localhost:{port}", "jobs.internal", f"JOBS.internal.:{port}")]
        refused = [status_of(port, host, address="127.0.0.2") for host in (
            f"{REBIND}:{port}", "127.0.0.3", "internal")]
        assert allowed == [200] * 4 and refused == [400] * 3
    finally:
        end(process)


@pytest.mark.parametrize("host, names", [
    ("0.0.0.0", ["jobs.internal"]), ("::", ["jobs.internal"]), ("[::]", ["jobs.internal"]),
    ("10.0.0.5", ["jobs.internal", "10.0.0.5"]), ("fe80::1", ["jobs.internal", "fe80::1"]),
])
def test_listening_on_every_address_adds_no_name_but_a_given_address_is_one(queue, host, names):
    from dbbasic_queue.dashboard.server import served_names
    assert served_names(host, ["jobs.internal"]) == names
    app = DashboardApp(queue, allowed_hosts=served_names(host, ["jobs.internal"]))

    assert Client(app, "127.0.0.1", {"HTTP_HOST": "0.0.0.0:8321"}).get("/").status == 400
    assert Client(app, "127.0.0.1", {"HTTP_HOST": "jobs.internal:8321"}).get("/").status == 200


# --- 12. Idle and half-sent connections -----------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """The user and system CPU time process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_idle(port, count):
    """Up to ``count`` connections to 127.0.0.1:port, one after another, every other one
    stopping inside its headers, the rest sending nothing. Once one is not taken within
    2 s (the server no longer accepts, its backlog is full) the rest are not opened."""
    sockets = []
    for n in range(count):
        connection = socket.socket()
        connection.settimeout(2)
        try:
            connection.connect(("127.0.0.1", port))
            if n % 2:
                connection.sendall(HALF_SENT)
        except OSError:
            connection.close()
            break
        sockets.append(connection)
    return sockets


def close_all(sockets):
    for connection in sockets:
        connection.close()


def answered_within(port, seconds):
    """The status of a real request, retried until it has one; fails after ``seconds``."""
    deadline = time.monotonic() + seconds

    def attempt():
        try:
            left = max(0.1, deadline - time.monotonic())
            return status_of(port, "127.0.0.1", "/jobs", timeout=left)
        except (OSError, http.client.HTTPException):
            return None
    return wait_for(attempt, seconds, "a real request to be answered")


OVERSIZED = """import sys
from dbbasic_queue import Queue
from dbbasic_queue.dashboard import DashboardApp
from dbbasic_queue.dashboard.connections import Limits
from dbbasic_queue.dashboard.server import serve
server = serve(DashboardApp(Queue(sys.argv[1])), "127.0.0.1", 0, Limits(max_connections=1000))
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.mark.parametrize("server", ["the command", "more connections than descriptors"])
def test_idle_connections_under_64_descriptors_neither_spin_the_server_nor_starve_a_request(
        queue, server):
    seed(queue)
    command = None if server == "the command" else ["-c", OVERSIZED, str(queue.path)]
    process, _, port = start(queue, rlimit_nofile=64, command=command)
    idle = []
    try:
        idle = open_idle(port, 80)
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(2)  # a window to measure the CPU the server spends meanwhile, not a wait
        spent = cpu_seconds(process.pid) - before
        window = time.monotonic() - started
        status = answered_within(port, 15)

        assert spent < 0.25 * window, f"{spent:.2f} s of CPU in {window:.2f} s with idle clients"
        assert status == 200
    finally:
        close_all(idle)
        end(process)


def test_a_connection_stopping_inside_its_headers_is_dropped_within_seconds(queue):
    process, _, port = start(queue)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
            connection.sendall(HALF_SENT)
            started = time.monotonic()
            try:
                rest = connection.recv(1024)
            except ConnectionResetError:
                rest = b""
            assert rest == b"" and time.monotonic() - started < 10
    finally:
        end(process)


def test_a_client_trickling_its_headers_is_dropped_at_the_deadline_not_per_byte(queue):
    from dbbasic_queue.dashboard.connections import Limits
    server = serve(DashboardApp(queue), "127.0.0.1", 0, Limits(header_seconds=0.5))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
            connection.sendall(HALF_SENT)
            started, dropped = time.monotonic(), False
            while time.monotonic() - started < 5 and not dropped:
                try:
                    connection.sendall(b"x")  # a byte every 0.1 s: each read is quick
                    dropped = bool(select.select([connection], [], [], 0.1)[0])
                except OSError:
                    dropped = True
            assert dropped and time.monotonic() - started < 3
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT_SECONDS)


def test_beyond_its_connections_a_newcomer_displaces_the_oldest_idle_one(queue):
    from dbbasic_queue.dashboard.connections import Limits
    server = serve(DashboardApp(queue), "127.0.0.1", 0, Limits(max_connections=3))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idle = []
    try:
        for _ in range(3):
            idle.append(socket.create_connection(("127.0.0.1", server.server_port), timeout=10))
            wait_for(lambda: server.connections.count == len(idle), what="the connection counted")

        assert status_of(server.server_port, "127.0.0.1") == 200
        assert idle[0].recv(1) == b""  # the oldest was dropped for it
        assert server.connections.count <= 3
    finally:
        close_all(idle)
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT_SECONDS)


def test_headers_cut_short_by_the_client_closing_are_not_answered(queue):
    server = serve(DashboardApp(queue), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as cut:
            cut.sendall(HALF_SENT)
            cut.shutdown(socket.SHUT_WR)  # as a dropped connection's reader sees it

            assert cut.recv(1024) == b""  # no page was made for it
        assert status_of(server.server_port, "127.0.0.1") == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT_SECONDS)


def test_sigterm_stops_the_command_at_once_despite_idle_connections(queue):
    process, _, port = start(queue)
    idle = []
    try:
        idle = open_idle(port, 10)
        assert answered_within(port, 10) == 200  # every idle one is accepted before it
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_SECONDS) == 0
        assert time.monotonic() - started < 3
    finally:
        close_all(idle)
        end(process)


# --- 15. A port out of range ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["70000", "65536", "-1", "80.5", "http"])
def test_a_port_out_of_range_is_a_mistake_in_the_command_exit_2(queue, capsys, value):
    code = main(["--file", str(queue.path), "dashboard", "--port", value])
    err = capsys.readouterr().err

    assert code == 2 and "--port" in err and "corrupt" not in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["a b", "jobs.internal:8321", "", "é.example"])
def test_a_malformed_allowed_host_is_a_mistake_in_the_command_exit_2(queue, capsys, name):
    code = main(["--file", str(queue.path), "dashboard", "--allowed-host", name])
    err = capsys.readouterr().err

    assert code == 2 and "--allowed-host" in err and "not a host name" in err


def test_serve_refuses_a_port_out_of_range_with_value_error(queue):
    for port in (70000, -1, True, "8321"):
        with pytest.raises(ValueError, match="0 to 65535"):
            serve(DashboardApp(queue), "127.0.0.1", port)


def test_an_overflow_from_a_command_is_not_called_a_corrupt_line(queue, capsys, monkeypatch):
    def overflowing(queue, args):
        raise OverflowError("Python int too large to convert to C int")
    monkeypatch.setitem(SUBCOMMANDS, "stats", overflowing)
    queue.path.parent.mkdir(parents=True, exist_ok=True)  # else: no such directory, exit 4

    code = main(["--file", str(queue.path), "stats"])
    err = capsys.readouterr().err

    assert code == 2 and "corrupt" not in err and "out of range" in err
