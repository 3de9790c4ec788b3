"""The README's snippets run as written: every ``bash`` and ``python`` block, in order, in one
temporary directory, with the installed package and its command line. A ``python`` block whose
first line names a file (``# workers/queue_worker.py``) is written there (and run with pytest
if it is a test file); ``text`` and ``crontab`` blocks are shown, not run. The first ``bash``
block, the two set-up commands, is what CI runs (test_published.py checks it)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from support import ROOT

BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"#\s*(\S+\.py)\b")


def readme_blocks():
    return [(kind, body) for kind, body in BLOCK.findall((ROOT / "README.md").read_text())]


def test_every_block_is_of_a_kind_the_runner_knows():
    kinds = {kind for kind, _ in readme_blocks()}
    assert kinds <= {"bash", "python", "text", "crontab"}, kinds


def test_every_bash_and_python_snippet_of_the_readme_runs(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("DBBASIC_QUEUE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    blocks = readme_blocks()
    first_bash = next(i for i, (kind, _) in enumerate(blocks) if kind == "bash")
    ran = 0
    for number, (kind, body) in enumerate(blocks):
        if kind not in ("bash", "python") or number == first_bash:
            continue
        named = FILE_LINE.match(body.splitlines()[0])
        if kind == "python" and named:
            target = tmp_path / named.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
            if not target.name.startswith("test_"):
                continue
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target)]
        elif kind == "python":
            command = [sys.executable, "-c", body]
        else:
            command = ["bash", "-euo", "pipefail", "-c", body]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"README block {number} ({kind}) failed:\n{body}\n" \
                                     f"{done.stdout}\n{done.stderr}"
        ran += 1
    assert ran >= 7  # the README has this many blocks to run: a parse that finds none fails
    assert (tmp_path / "data" / "queue.tsv").exists()


def test_the_readme_s_count_of_jobs_by_type_and_status_leaves_out_the_header(tmp_path):
    from dbbasic_queue import Queue
    command = next(line for line in (ROOT / "README.md").read_text().splitlines()
                   if "uniq -c" in line).split("#")[0]
    queue = Queue(tmp_path / "data" / "queue.tsv")
    for job_type in ("send_email", "send_email", "resize"):
        queue.enqueue(job_type, {})

    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        ["1", "resize", "pending"], ["2", "send_email", "pending"]]


RUN_FILE = re.compile(r"benchmarks/runs/\d{4}-\d{2}-\d{2}-[\w.-]+\.md")
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(?:µs|ms|MB|%|x\b|s\b)")


def test_the_figures_the_docs_quote_are_printed_in_the_benchmark_run_they_cite():
    # Every paragraph of the README and benchmarks/README.md that cites a recorded run
    # (benchmarks/runs/...) quotes only figures that run printed.
    cited = 0
    for doc in (ROOT / "README.md", ROOT / "benchmarks" / "README.md"):
        for paragraph in re.split(r"\n\s*\n|\n(?=- )", doc.read_text()):  # list items apart
            for name in set(RUN_FILE.findall(paragraph)):
                printed = set(re.findall(r"\d[\d,]*(?:\.\d+)?", (ROOT / name).read_text()))
                quoted = set(FIGURE.findall(paragraph))
                if not quoted:  # a paragraph that only points at the run
                    continue
                assert quoted <= printed, (str(doc.relative_to(ROOT)), name, sorted(quoted - printed))
                cited += 1
    assert cited >= 5  # the README's performance and threads lines, the benchmark page's
