"""The package's layers, as docs/architecture.md draws them: a module imports only modules of
its own layer or below, the imports have no circle, and nothing below the faces imports one.
Read from the source (ast), every import counted, deferred ones inside functions too."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dbbasic_queue"
LAYERS = [  # lowest first
    {"errors", "log", "hooks", "backend", "model"},
    {"storage"},
    {"periodic"},
    {"worker"},
    {"queue", "workflows", "testing", "pytest_plugin", "metrics", "__init__"},
    {"rq"},
    {"cli", "dashboard", "django", "family", "admin", "__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path):
    """The package's modules that the file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # imports for type checkers only are never run
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING":
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dbbasic_queue"):
                continue
            names = [f"{target}.{alias.name}" for alias in node.names]
            found = [n for n in names if n in modules] or [target]
            yield from found
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("dbbasic_queue"))


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for number, members in enumerate(LAYERS):
        if top in members:
            return number
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


# The package's root reaches up twice, both deferred to the call: default_queue() builds an
# RQQueue when DBBASIC_QUEUE_URL says so, and _read_tsv is dbbasic-email's name for a listing.
DEFERRED_AT_THE_ROOT = {("dbbasic_queue", "dbbasic_queue.rq.backend"),
                        ("dbbasic_queue", "dbbasic_queue.family.compat")}


def graph():
    return {module_name(path): set(imports_of(path)) - {module_name(path)}
            for path in PACKAGE.rglob("*.py")}


def test_every_module_imports_only_its_own_layer_and_below():
    upward = [(module, target) for module, targets in graph().items() for target in targets
              if layer_of(target) > layer_of(module)]
    assert set(upward) - DEFERRED_AT_THE_ROOT == set()


def test_nothing_below_the_faces_imports_a_face():
    into_faces = {(m, t) for m, ts in graph().items() for t in ts
                  if layer_of(m) < len(LAYERS) - 1 and layer_of(t) == len(LAYERS) - 1}
    assert into_faces - DEFERRED_AT_THE_ROOT == set()


def test_the_imports_have_no_circle():
    edges = graph()
    # the package itself is every submodule's parent: importing a submodule runs it, not a circle
    edges = {m: {t for t in ts if t != "dbbasic_queue"} for m, ts in edges.items()}
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_a_process_that_enqueues_and_looks_jobs_up_loads_neither_the_worker_nor_the_faces(
        tmp_path):
    # Given a fresh interpreter that imports the package, enqueues, looks up and cancels a job
    script = textwrap.dedent("""
        import json, sys
        import dbbasic_queue
        job_id = dbbasic_queue.enqueue("send_email", {"to": "ann"})
        assert dbbasic_queue.get_job(job_id)["status"] == "pending"
        assert dbbasic_queue.cancel_job(job_id) is True
        assert all(hasattr(dbbasic_queue, name) for name in dbbasic_queue.__all__)
        print(json.dumps(sorted(sys.modules)))
    """)
    loaded = set(json.loads(subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True,
        text=True, env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent))).stdout))
    # Then none of what only a worker, a schedule or a face needs is loaded
    ours = {name for name in loaded if name.startswith("dbbasic_queue.")}
    assert ours <= {f"dbbasic_queue.{name}" for name in (
        "backend", "errors", "hooks", "log", "queue", "model", "model.job", "model.checks",
        "model.options", "model.queues", "model.transitions", "storage", "storage.files",
        "storage.table", "storage.archive", "storage.history", "storage.edits",
        "storage.unique", "periodic")}, sorted(ours)
    # nor the standard library's heavier modules that only they use
    heavy = {"dataclasses", "inspect", "tempfile", "shutil", "secrets", "random", "socket",
             "datetime", "calendar", "csv", "signal", "ctypes", "argparse", "logging",
             "traceback"}
    assert not heavy & loaded, sorted(heavy & loaded)


def idle_run_modules(tmp_path, command_prefix=(), before=""):
    """The modules a fresh process holds after a cron run with nothing due."""
    script = before + textwrap.dedent("""
        import json, sys
        from dbbasic_queue import enqueue, process_jobs
        assert process_jobs({"send_email": lambda payload: None}) == 0
        print(json.dumps(sorted(sys.modules)))
    """)
    return set(json.loads(subprocess.run(
        [*command_prefix, sys.executable, "-c", script], cwd=tmp_path, check=True,
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    ).stdout))


def test_a_cron_run_with_nothing_due_loads_no_more_than_it_uses_unless_it_may_change_user(
        tmp_path):
    from dbbasic_queue.worker import may_change_user
    only_if_used = {"dataclasses", "inspect", "hashlib", "datetime", "calendar", "random",
                    "dbbasic_queue.periodic.firing"}
    # Given a process that cannot change user (as any but root; root without the capability)
    unable = ("setpriv", "--bounding-set", "-setuid,-setgid", "--inh-caps",
              "-setuid,-setgid") if may_change_user() else ()
    # Then a cron run with nothing due loads neither periodic firing, OpenSSL's hashes,
    # retry jitter, dates nor dataclasses
    loaded = idle_run_modules(tmp_path, unable)
    assert "dbbasic_queue.worker.run" in loaded
    assert not only_if_used & loaded, sorted(only_if_used & loaded)
    # while one that may change user loads them all once it imports the worker, before a
    # change of user could leave it unable to read them (the README's os.setuid case)
    if may_change_user():
        assert only_if_used - {"dataclasses", "inspect"} <= idle_run_modules(tmp_path)
