"""``from dbbasic.queue import Queue`` in a real install, both kinds, each in a fresh virtual
environment with dbbasic-tsv (slow: it builds and installs the package from a copy of this
checkout).

The ``dbbasic`` package is dbbasic-tsv's (its ``dbbasic/__init__.py``); this project ships one
file in it, ``dbbasic/queue.py``, and no ``__init__.py``. A wheel install puts that file beside
dbbasic-tsv's; setuptools' editable install maps ``dbbasic`` to this checkout's ``dbbasic/`` in
its import finder, which Python asks for ``dbbasic.queue`` once dbbasic-tsv's directory does
not have it. Neither replaces nor shadows a file of dbbasic-tsv's.
"""

import base64
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

TIMEOUT = 600

CHECK = """
import json, sys
import dbbasic, dbbasic.queue, dbbasic.tsv
from dbbasic.queue import Queue
queue = Queue("_data/jobs.tsv")
queue.push({"task": "process_upload", "args": {"filename": "a.png", "data": b"\\x00\\xff"}})
print(json.dumps({"dbbasic": dbbasic.__file__, "queue": dbbasic.queue.__file__,
                  "tsv": dbbasic.tsv.__file__, "popped": repr(queue.pop()),
                  "again": repr(queue.pop())}))
"""


def pip(python: Path, *args) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def venv(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True,
                   timeout=TIMEOUT)
    return directory / "bin" / "python"


def checkout_copy(destination: Path) -> Path:
    """The files of this checkout git knows of (not .venv, build/ or *.egg-info), so
    building and installing never writes into the checkout itself."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True,
                           timeout=TIMEOUT).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def check(python: Path, cwd: Path) -> dict:
    done = subprocess.run([str(python), "-c", CHECK], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def site_packages(python: Path) -> Path:
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())


def record(site: Path, distribution: str) -> dict:
    """A distribution's installed files and their sha256, from its RECORD."""
    [info] = site.glob(f"{distribution}-*.dist-info")
    with open(info / "RECORD", newline="") as file:
        return {path: digest for path, digest, _ in csv.reader(file)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def app(tmp_path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    return app


def test_a_wheel_install_adds_dbbasic_queue_beside_dbbasic_tsvs_files_and_replaces_none(
        tmp_path, app):
    source = checkout_copy(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "wheels"), str(source)], check=True, timeout=TIMEOUT)
    [wheel] = (tmp_path / "wheels").glob("dbbasic_queue-*.whl")
    python = venv(tmp_path / "venv")

    pip(python, "install", "-q", str(wheel))  # and dbbasic-tsv, its dependency

    site = site_packages(python)
    ours, theirs = record(site, "dbbasic_queue"), record(site, "dbbasic_tsv")
    assert sorted(path for path in ours if path.startswith("dbbasic/")) == [
        f"dbbasic/__pycache__/queue.{sys.implementation.cache_tag}.pyc", "dbbasic/queue.py"]
    for path, digest in theirs.items():  # every file of dbbasic-tsv's is as it shipped
        if path.startswith("dbbasic/") and digest:
            assert sha256(site / path) == digest, path
    result = check(python, app)
    assert result["dbbasic"] == str(site / "dbbasic" / "__init__.py")
    assert result["queue"] == str(site / "dbbasic" / "queue.py")
    assert result["popped"] == repr({"task": "process_upload",
                                     "args": {"filename": "a.png", "data": b"\x00\xff"}})
    assert result["again"] == "None"


def test_dbbasic_admin_discovers_the_queue_in_a_wheel_install(tmp_path, app):
    source = checkout_copy(tmp_path / "source")
    python = venv(tmp_path / "venv")
    pip(python, "install", "-q", str(source))
    pip(python, "install", "-q", "--no-deps", "dbbasic-admin==0.1.1")

    done = subprocess.run([str(python), "-c", "from dbbasic_admin.admin import build_nav; "
                           "print([i for i in build_nav() if 'badge' in i])"], cwd=app,
                          capture_output=True, text=True, timeout=TIMEOUT)

    assert done.stdout == ("[{'icon': '⏰', 'label': 'Jobs', 'href': '/admin/jobs', "
                           "'order': 90, 'badge': 0}]\n"), done.stderr


def test_uninstalling_the_queue_leaves_dbbasic_tsv_whole(tmp_path, app):
    source = checkout_copy(tmp_path / "source")
    python = venv(tmp_path / "venv")
    pip(python, "install", "-q", str(source))

    pip(python, "uninstall", "-q", "-y", "dbbasic-queue")

    site = site_packages(python)
    assert not (site / "dbbasic" / "queue.py").exists()
    for path, digest in record(site, "dbbasic_tsv").items():
        if path.startswith("dbbasic/") and digest:
            assert sha256(site / path) == digest, path
    subprocess.run([str(python), "-c", "from dbbasic.tsv import TSV"], cwd=app, check=True,
                   timeout=TIMEOUT)


def test_the_readmes_editable_install_imports_dbbasic_queue_from_the_checkout(tmp_path, app):
    source = checkout_copy(tmp_path / "source")
    python = venv(tmp_path / "venv")

    pip(python, "install", "-q", "-e", str(source))

    site = site_packages(python)
    assert not (site / "dbbasic" / "queue.py").exists()  # nothing of ours in dbbasic-tsv's
    result = check(python, app)
    assert result["dbbasic"] == str(site / "dbbasic" / "__init__.py")
    assert result["queue"] == str(source / "dbbasic" / "queue.py")
    assert result["popped"] == repr({"task": "process_upload",
                                     "args": {"filename": "a.png", "data": b"\x00\xff"}})
