"""Benchmark dbbasic-queue against its peers and against the floor of the disk and Python.

    python benchmarks/bench.py           # the full run, about 11 minutes
    python benchmarks/bench.py --quick   # a smoke run with small sizes
    python benchmarks/bench.py --only history,concurrency   # some sections (main, history,
                                                            # concurrency, busy, startup), in
                                                            # full or --quick

Peers: the published dbbasic-queue 1.0.0, huey's SqliteHuey (default, and fsync=False) and
litequeue (SQLite; in the main table),
each installed by this script into a temporary directory with ``pip install --target`` and
run in its own subprocess and working directory (``python -S``, so neither our package nor
site-packages can shadow it). Every measurement runs in a fresh child process that prints
one JSON line; this process only installs, orchestrates and prints the tables.

Sections: ``main``, the peers table; ``history``, a worker run and ``get_job`` with hundreds of
thousands of finished jobs kept (bytes written from ``/proc/self/io``); ``concurrency``, jobs
whose handler sleeps 20 ms, run N at a time by our worker and by huey's thread workers;
``busy``, a whole cron run with the last hour's finished jobs kept, and the bytes a worker
writes per job it runs, ours and huey's alternately.
"""

import fcntl
import json
import os
import resource
import sys
import time
from pathlib import Path

# Only what a measuring child needs is imported here, so a worker's peak RSS is its own.

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "runs"  # every full run's tables, by date and sections
PEERS = {"v1": "dbbasic-queue==1.0.0", "huey": "huey==3.5.4", "litequeue": "litequeue==0.9"}
PAYLOAD = {"to": "user@example.com", "subject": "Welcome", "body": "Thanks for signing up!"}
FULL = dict(prefill=(0, 10_000, 100_000), process=(1_000, 10_000, 100_000), samples=3000,
            v1_process=(500, 1000), rss=100_000, load=10_000, pickups=40, idle_seconds=5,
            repeats=3, rq_process=1_000,
            kept=(0, 100_000, 500_000), due=(10, 10_000), lookup_kept=500_000, lookups=300,
            lookup_seconds=10, sleepy={1: 1_000, 4: 10_000, 16: 10_000}, limited=1_000,
            busy_kept=(200_000,), busy_due=(0, 10), busy_pending=(10_000, 100_000),
            startups=21, bulk=10_000)
QUICK = dict(prefill=(0, 1_000), process=(200, 1_000), samples=300,
             v1_process=(50, 100), rss=1_000, load=1_000, pickups=3, idle_seconds=0.5, repeats=1,
             rq_process=100,
             kept=(0, 2_000), due=(10, 200), lookup_kept=2_000, lookups=20, lookup_seconds=1,
             sleepy={1: 10, 4: 40, 16: 160}, limited=160,
             busy_kept=(2_000,), busy_due=(0, 10), busy_pending=(1_000,), startups=3, bulk=1_000)
LITEQUEUE_MOST = 10_000  # litequeue's processing: 0.5 ms a job at 1,000, 1.4 ms at 10,000
SECTIONS = ("main", "history", "concurrency", "busy", "startup")
SLEEP_SECONDS = 0.02  # the concurrency rows' handler: a network call's wait, roughly
COLUMNS = ("id", "type", "payload", "status", "created_at", "run_at", "attempts", "error",
           "result", "options")  # the file's published header (README: The file)
DAY = 86400
LAST_HOUR = 3300  # "the last hour": 55 minutes, so no job reaches the hour during a run
BUSY_SUBJECTS = ("ours", "huey-nofsync", "huey")  # in the busy section, each once per repeat


# --- the subjects, as seen from inside a child process ------------------------------------

def noop(payload=None):
    return None


class Ours:
    def __init__(self, durable=False):
        from dbbasic_queue import Queue
        self.queue = Queue("data/queue.tsv", durable=durable)

    def enqueue(self):
        self.queue.enqueue("send_email", PAYLOAD)

    def enqueue_for_tomorrow(self):
        """An enqueue the worker under load will not run, so it finishes its 10,000."""
        self.queue.enqueue("send_email", PAYLOAD, run_at=time.time() + 86400)

    def process(self):
        return self.queue.process_jobs({"send_email": noop})


class OursWithQueues(Ours):
    """Jobs spread over 3 queues and 5 priorities, 1 in 50 of two types that are paused; the
    worker serves the queues by weight (the claim's costliest mode: a look before each claim)."""

    PAUSED = ("export_csv", "rebuild_index")

    def __init__(self, durable=False):
        super().__init__(durable)
        self.count = 0

    def enqueue(self):
        n, self.count = self.count, self.count + 1
        job_type = self.PAUSED[n % 2] if n % 50 == 49 else "send_email"
        self.queue.enqueue(job_type, PAYLOAD, queue=("default", "emails", "reports")[n % 3],
                           priority=(n % 5) * 10 - 20)

    def process(self):
        for job_type in self.PAUSED:
            self.queue.pause(job_type=job_type)
        return self.queue.process_jobs({"send_email": noop, **{t: noop for t in self.PAUSED}},
                                       queues={"default": 3, "emails": 2, "reports": 1})


class LimitedOurs(Ours):
    """Jobs spread over 50 concurrency keys, a limit of 2 each."""

    def __init__(self, durable=False):
        super().__init__(durable)
        self.count = 0

    def enqueue(self):
        self.count += 1
        self.queue.enqueue("send_email", PAYLOAD, concurrency_key=f"customer:{self.count % 50}",
                           concurrency_limit=2)


class BatchedOurs(Ours):
    """The jobs enqueued are one batch, with an on_complete job (written by ``flush``); the
    worker runs them and then the callback."""

    def __init__(self, durable=False):
        super().__init__(durable)
        self.batch = self.queue.batch(on_complete=("album_ready", {"album": 1}))

    def enqueue(self):
        self.batch.enqueue("send_email", PAYLOAD)

    def flush(self):
        self.batch.write()

    def process(self):
        ran = self.queue.process_jobs({"send_email": noop, "album_ready": noop})
        return ran - 1  # the callback, counted apart: the benchmark checks the jobs it ran


class ChainedOurs(Ours):
    """The jobs enqueued are chains of 3 (each written by one chain() call)."""

    def __init__(self, durable=False):
        super().__init__(durable)
        self.steps = []

    def enqueue(self):
        self.steps.append(("send_email", PAYLOAD))
        if len(self.steps) == 3:
            self.flush()

    def flush(self):
        if self.steps:
            self.queue.chain(*self.steps)
        self.steps = []


class OnRedis:
    """Our RQ backend, on the redis-server this benchmark started (one queue per directory)."""

    def __init__(self, durable=False):
        from dbbasic_queue.rq.backend import RQQueue
        self.queue = RQQueue(os.environ["BENCH_REDIS_URL"], name=os.path.basename(os.getcwd()))

    def enqueue(self):
        self.queue.enqueue("send_email", PAYLOAD)

    def process(self):
        self.queue.process_jobs({"send_email": noop})


class Original:
    """dbbasic-queue 1.0.0: no lock, and its worker rereads and rewrites the file per job."""

    def __init__(self, durable=False):
        import dbbasic_queue
        assert dbbasic_queue.__version__ == "1.0.0", dbbasic_queue.__file__
        self.module = dbbasic_queue

    def enqueue(self):
        self.module.enqueue("send_email", PAYLOAD)

    def process(self):
        self.module.process_jobs({"send_email": noop})


class Huey:
    def __init__(self, durable=True):
        from huey import SqliteHuey
        self.huey = SqliteHuey(filename="huey.db", **({} if durable else {"fsync": False}))
        self.task = self.huey.task(name="send_email")(noop)

    def enqueue(self):
        self.task(PAYLOAD)

    def process(self):
        """Dequeue and execute until the queue is empty, as a consumer's worker does (without
        its polling); returns how many tasks ran."""
        ran = 0
        while True:
            task = self.huey.dequeue()
            if task is None:
                return ran
            self.huey.execute(task)
            ran += 1


class LiteQueuePeer:
    """litequeue 0.9 with its defaults (SQLite, WAL, synchronous=NORMAL): a worker pops a
    message (locking it), runs the handler, and marks it done."""

    def __init__(self, durable=False):
        from litequeue import LiteQueue
        self.queue = LiteQueue("litequeue.db")

    def enqueue(self):
        self.queue.put(json.dumps(PAYLOAD))

    def process(self):
        ran = 0
        while True:
            message = self.queue.pop()
            if message is None:
                return ran
            noop(json.loads(message.data))
            self.queue.done(message.message_id)
            ran += 1


SUBJECTS = {
    "ours": lambda: Ours(), "ours-durable": lambda: Ours(durable=True),
    "v1": lambda: Original(), "huey": lambda: Huey(), "huey-nofsync": lambda: Huey(durable=False),
    "rq": lambda: OnRedis(), "ours-queues": lambda: OursWithQueues(),
    "ours-limited": lambda: LimitedOurs(), "litequeue": lambda: LiteQueuePeer(),
    "ours-batch": lambda: BatchedOurs(), "ours-chains": lambda: ChainedOurs(),
}
FAST_PREFILL = {"ours-durable": "ours", "huey": "huey-nofsync"}  # same file, faster writer


# --- what a child process measures ----------------------------------------------------------

def child(measure, subject, arg, extra):
    if measure == "prefill":
        make = SUBJECTS[FAST_PREFILL.get(subject, subject)]()
        for _ in range(int(arg)):
            make.enqueue()
        if hasattr(make, "flush"):  # a batch, a chain: written whole
            make.flush()
        return {}
    if measure == "enqueue":
        return latencies(SUBJECTS[subject]().enqueue, int(arg))
    if measure == "process":
        return process_run(subject, int(arg) if arg else None, Path(extra) if extra else None)
    if measure == "enqueue-under-load":
        enqueue, started, done = SUBJECTS[subject]().enqueue_for_tomorrow, Path(arg), Path(extra)
        Path(arg + ".ready").touch()  # the parent starts the worker only now
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        samples = []
        while not samples or (not done.exists() and time.monotonic() < deadline):
            before = time.perf_counter()
            enqueue()
            samples.append(time.perf_counter() - before)
            time.sleep(0.0005)
        return summary(samples)
    if measure == "floor":
        return FLOORS[subject](int(arg))
    if measure == "enqueue-unique":
        return unique_enqueues(int(arg))
    if measure == "enqueue-many":
        return enqueue_many(int(arg))
    if measure == "enqueue-batch":
        return enqueue_many(int(arg), as_batch=True)
    if measure == "durable-vs-floor":
        return durable_versus_floor(int(arg))
    if measure == "loop-worker":
        return loop_worker(Path(arg), float(extra))
    if measure == "pickup-enqueue":
        return pickup_enqueue(int(arg), Path(extra))
    if measure == "history-prefill":
        return write_history(int(arg), extra)
    if measure == "huey-results":
        return huey_results(int(arg))
    if measure == "process-io":
        return process_with_io(int(arg))
    if measure == "get-job":
        count, seconds = extra.split("/")
        return lookups(arg, int(count), float(seconds))
    if measure == "capabilities":
        return capabilities()
    if measure == "sleepy":
        return SLEEPY[subject](int(arg), int(extra))
    raise SystemExit(f"unknown measure {measure!r}")


def enqueue_many(jobs, rounds=5, as_batch=False):
    """Ours: the median time of one enqueue_many of ``jobs`` jobs (or, ``as_batch``, of a
    batch of them with an on_complete job, from its making to its write), in a file that
    holds the earlier rounds' jobs."""
    import statistics
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")
    batch = [("send_email", dict(PAYLOAD, n=n)) for n in range(jobs)]
    queue.enqueue_many(batch[:10])  # the file and the kept descriptors exist
    times = []
    for _ in range(rounds):
        before = time.perf_counter()
        if as_batch:
            with queue.batch(on_complete=("album_ready", {"album": 1})) as written:
                for job_type, payload in batch:
                    written.enqueue(job_type, payload)
        else:
            queue.enqueue_many(batch)
        times.append(time.perf_counter() - before)
    return {"seconds": statistics.median(times)}


def process_run(subject, expected=None, started_flag=None):
    """One worker run in a fresh process, as cron starts one: the time from before the
    library's import to the end of the run (``cron_seconds``) and of the run alone
    (``seconds``), the bytes the process read and wrote from before the import to the end
    (/proc/self/io, all its threads), and its peak RSS. ``started_flag`` is touched once the
    worker is built (the loaded enqueuer waits for it); with ``expected``, the run must run
    exactly that many jobs, or the benchmark stops."""
    io_before, launched = proc_io(), time.perf_counter()
    make = SUBJECTS[subject]()
    if started_flag:
        started_flag.touch()
    started = time.perf_counter()
    ran = make.process()
    ended = time.perf_counter()
    io_after = proc_io()
    if expected is not None and ran != expected:
        raise SystemExit(f"the {subject} run ran {ran} jobs, not the {expected} due")
    return dict(io_counted(io_before, io_after), seconds=ended - started,
                cron_seconds=ended - launched,
                max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def unique_enqueues(count):
    """Enqueues with a unique key: in a row (each reads only the lines added since the last),
    and the first one after a worker's rewrite (which reads the whole file again)."""
    import itertools
    ours = Ours()
    keys = itertools.count()
    steady = latencies(lambda: ours.queue.enqueue("send_email", PAYLOAD, unique_key=f"k{next(keys)}"),
                       count)
    after_rewrite = []
    for _ in range(5):
        ours.queue.process_jobs({"send_email": noop}, max_jobs=1)
        after_rewrite.append(timed(lambda: ours.queue.enqueue("send_email", PAYLOAD,
                                                              unique_key=f"k{next(keys)}")))
    return dict(steady, after_rewrite_ms=sorted(after_rewrite)[2] * 1000)


def durable_versus_floor(count):
    """Durable enqueues and fsynced floor appends, alternating in one process, so drift in
    the disk's fsync time hits both alike."""
    ours, floor = Ours(durable=True), floor_append_call(fsync=True)
    ours.enqueue()
    floor()
    pairs = [(timed(ours.enqueue), timed(floor)) for _ in range(count)]
    return {"ours": summary([a for a, _ in pairs]), "floor": summary([b for _, b in pairs])}


def timed(call):
    before = time.perf_counter()
    call()
    return time.perf_counter() - before


def loop_worker(pickups: Path, idle_seconds: float):
    """A long-running worker: first idle (its CPU use is measured), then running pings whose
    pickup latency (enqueue to handler start) it records, until SIGTERM."""
    import threading
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")

    def ping(payload):
        with open(pickups, "a") as log:
            log.write(f"{time.time() - payload['sent']}\n")
    stop = threading.Event()
    threading.Timer(idle_seconds, stop.set).start()
    cpu, wall = time.process_time(), time.monotonic()
    queue.work({"ping": ping}, stop=stop, handle_signals=False)
    idle = {"idle_cpu_percent": 100 * (time.process_time() - cpu) / (time.monotonic() - wall)}
    Path(str(pickups) + ".idle").write_text(json.dumps(idle))
    queue.work({"ping": ping})  # until SIGTERM
    return idle


def pickup_enqueue(count, pickups: Path):
    """Enqueue ``count`` pings at random moments and wait for the worker to record them."""
    import random
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")
    for _ in range(count):
        time.sleep(random.uniform(0.2, 0.4))
        queue.enqueue("ping", {"sent": time.time()})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = pickups.read_text().split() if pickups.exists() else []
        if len(seen) >= count:
            return summary([float(x) for x in seen])
        time.sleep(0.05)
    raise SystemExit("the loop worker did not run the pings")


def write_history(count, spread):
    """Write ``count`` completed welcome-email jobs into data/queue.tsv, each line as the
    queue writes it (README: The file), in a second or two: enqueueing and running 500,000
    jobs would take a minute and could not date them in the past. The file is created as
    the queue creates it (dbbasic-tsv's table), so this is a file as 1.1 leaves it, and a
    worker of any later storage design takes it over on its first run.

    ``spread`` "days-ago": all finished 3 to 4 days ago, history no run should need to read;
    "week": evenly over the last 6.9 days, the newest a minute ago (a week of retention), with
    the ids of jobs finished in the last 55 minutes and of the oldest saved to ids.json;
    "last-hour": evenly over the last 55 minutes, the newest now (a busy hour's jobs, which
    the live file keeps for an hour).
    """
    import random
    if not count:
        return {"file_mb": 0.0}
    from dbbasic.tsv import TSV  # how the queue creates its file
    TSV("queue", list(COLUMNS), data_dir=Path("data"))
    now = int(time.time())
    first, last = {"week": (now - int(6.9 * DAY), now - 60), "last-hour": (now - LAST_HOUR, now),
                   "days-ago": (now - 4 * DAY, now - 3 * DAY)}[spread]
    payload = '"' + json.dumps(PAYLOAD).replace('"', '""') + '"'
    step = (last - first) / max(1, count - 1)
    random_bits = random.Random(count).getrandbits
    recent, oldest = [], None
    with open("data/queue.tsv", "ab") as out:
        for start in range(0, count, 50_000):
            lines = []
            for n in range(start, min(count, start + 50_000)):
                job_id, finished = f"{random_bits(64):016x}", first + int(n * step)
                lines.append(f'{job_id}\tsend_email\t{payload}\tcompleted\t{finished}\t'
                             f'{finished}\t1\t\t"{{""sent_at"": {finished}.2}}"\t\n')
                if oldest is None:
                    oldest = job_id
                if finished >= now - LAST_HOUR:
                    recent.append(job_id)
            out.write("".join(lines).encode())
    if spread == "week":
        random.Random(0).shuffle(recent)
        Path("ids.json").write_text(json.dumps({"recent": recent, "oldest": oldest}))
    return {"file_mb": os.path.getsize("data/queue.tsv") / 1e6}


def huey_results(count):
    """``count`` finished tasks' results in SqliteHuey's result store, as huey keeps them
    (it keeps a result until it is read): one row of its ``kv`` table per task, keyed by a
    uuid4 as huey's task ids are, holding the pickled result its serializer writes (the
    ``{"sent_at": ...}`` our lines keep), put with huey's own ``put_data`` statement, all in
    one transaction: executing 200,000 tasks takes a minute with fsync and leaves the same
    rows (its task table empty again)."""
    import uuid
    from huey import SqliteHuey
    huey = SqliteHuey(filename="huey.db", fsync=False)
    first, step = time.time() - LAST_HOUR, LAST_HOUR / max(1, count - 1)
    rows = [(huey.storage.name, str(uuid.uuid4()),
             huey.serializer.serialize({"sent_at": first + n * step})) for n in range(count)]
    with huey.storage.db(commit=True) as cursor:
        cursor.executemany("insert or replace into kv (queue, key, value) values (?, ?, ?)", rows)
    huey.storage.close()  # the last connection's close checkpoints the WAL into huey.db
    return {"db_mb": sum(path.stat().st_size for path in Path(".").glob("huey.db*")) / 1e6}


def proc_io():
    """This process's I/O counters: rchar and wchar count the bytes of every read and write
    call (page cache or not); write_bytes the bytes it sent towards the disk (pages it
    dirtied), cancelled_write_bytes those of files deleted before they were written back."""
    with open("/proc/self/io") as counters:
        return {name: int(value) for name, value in
                (line.split(":") for line in counters if line.strip())}


def io_counted(before, after):
    """What a process read and wrote between two ``proc_io()`` readings."""
    return {key: after[key] - before[key]
            for key in ("rchar", "wchar", "write_bytes", "cancelled_write_bytes")}


def queue_files():
    """The sizes of data/queue.tsv and of every file in the queue's directory, in MB."""
    sizes = {path.name: path.stat().st_size for path in Path("data").rglob("*") if path.is_file()}
    return {"live_mb": sizes.get("queue.tsv", 0) / 1e6, "dir_mb": sum(sizes.values()) / 1e6,
            "dir_files": len(sizes)}


def process_with_io(expected):
    """One ``process_jobs`` run over the queue as it is: wall time, the bytes it wrote and
    read (from /proc/self/io, before and after; the keeper thread's included), peak RSS, and
    the queue's files before and after. It must run exactly the ``expected`` due jobs."""
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")
    files_before = queue_files()
    before, started = proc_io(), time.perf_counter()
    ran = queue.process_jobs({"send_email": noop})
    seconds = time.perf_counter() - started
    after = proc_io()
    if ran != expected:
        raise SystemExit(f"the run ran {ran} jobs, not the {expected} due")
    return dict(io_counted(before, after), seconds=seconds,
                max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                live_mb_before=files_before["live_mb"], **queue_files())


def lookups(which, count, seconds):
    """``get_job`` in one process, as a web app asks for a job's result: ``count`` lookups of
    different jobs finished in the last hour ("recent"), of the oldest kept job again and
    again ("oldest"), or of ids no job has ("missing"); stopped early once ``seconds`` have
    passed (after at least 5). Every lookup must find its completed job, or none."""
    import random
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")
    ids = json.loads(Path("ids.json").read_text())
    targets = {"recent": lambda: ids["recent"][:count], "oldest": lambda: [ids["oldest"]] * count,
               "missing": lambda: [f"{random.getrandbits(64):016x}" for _ in range(count)]}[which]()
    deadline, samples = time.monotonic() + seconds, []
    for job_id in targets:
        before = time.perf_counter()
        job = queue.get_job(job_id)
        samples.append(time.perf_counter() - before)
        if (job is not None) if which == "missing" else (
                job is None or job["status"] != "completed" or job["id"] != job_id):
            raise SystemExit(f"get_job({job_id!r}) gave {job!r}")
        if len(samples) >= 5 and time.monotonic() > deadline:
            break
    return dict(summary(samples), first_ms=samples[0] * 1000, distinct=len(set(targets[:len(samples)])))


def capabilities():
    """What this dbbasic_queue can be measured doing: ``concurrency``, whether process_jobs
    takes the keyword; ``rq``, None if the RQ backend imports (the ``rq`` extra is
    installed), else why not."""
    import inspect
    from dbbasic_queue import Queue
    try:
        import dbbasic_queue.rq.backend  # noqa: F401
        rq = None
    except ImportError as error:
        rq = f"the rq extra is not installed ({error})"
    return {"concurrency": "concurrency" in inspect.signature(Queue.process_jobs).parameters,
            "rq": rq}


def sleepy_handler(payload):
    time.sleep(SLEEP_SECONDS)


def sleepy_ours(concurrency, jobs):
    """One ``process_jobs`` run over ``jobs`` due jobs whose handler sleeps 20 ms, with
    ``concurrency=N`` (concurrency 1 without the keyword if this version has none)."""
    from dbbasic_queue import Queue
    keyword = {"concurrency": concurrency} if capabilities()["concurrency"] else {}
    if not keyword and concurrency != 1:
        raise SystemExit("this dbbasic_queue has no concurrency keyword")
    queue = Queue("data/queue.tsv")
    started = time.perf_counter()
    ran = queue.process_jobs({"send_email": sleepy_handler}, **keyword)
    seconds = time.perf_counter() - started
    if ran != jobs:
        raise SystemExit(f"the run ran {ran} jobs, not {jobs}")
    return {"seconds": seconds}


def sleepy_limited(concurrency, jobs):
    """As sleepy_ours, over jobs whose concurrency_key is one of 50 customers, at most 2 at
    once each (the prefill is ours; this run re-keys nothing: see LimitedOurs)."""
    from dbbasic_queue import Queue
    queue = Queue("data/queue.tsv")
    started = time.perf_counter()
    ran = queue.process_jobs({"send_email": sleepy_handler}, concurrency=concurrency)
    seconds = time.perf_counter() - started
    if ran != jobs:
        raise SystemExit(f"the run ran {ran} jobs, not {jobs}")
    return {"seconds": seconds}


def sleepy_huey(concurrency, jobs):
    """huey's consumer with ``concurrency`` thread workers (``huey_consumer -w N -k thread``,
    its other settings at their defaults) over ``jobs`` queued tasks whose function sleeps
    20 ms: wall time from the consumer's start to the end of the last task."""
    import threading
    from huey import SqliteHuey
    huey = SqliteHuey(filename="huey.db", fsync=False)
    lock, ended, last_done = threading.Lock(), [], threading.Event()

    def sleepy(payload):
        sleepy_handler(payload)
        with lock:
            ended.append(time.perf_counter())
            if len(ended) == jobs:
                last_done.set()
    huey.task(name="send_email")(sleepy)
    consumer = huey.create_consumer(workers=concurrency, worker_type="thread")
    started = time.perf_counter()
    consumer.start()
    finished = last_done.wait(timeout=jobs * SLEEP_SECONDS / concurrency * 3 + 60)
    consumer.stop(graceful=True)
    if not finished:
        raise SystemExit(f"huey ran {len(ended)} of {jobs} tasks in time")
    return {"seconds": ended[-1] - started}


SLEEPY = {"ours": sleepy_ours, "huey-nofsync": sleepy_huey, "ours-limited": sleepy_limited}


def latencies(call, count):
    for _ in range(min(200, count)):  # warm up
        call()
    samples = []
    for _ in range(count):
        before = time.perf_counter()
        call()
        samples.append(time.perf_counter() - before)
    return summary(samples)


def summary(samples):
    import statistics
    samples = sorted(samples)
    return {"p50_us": statistics.median(samples) * 1e6,
            "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6,
            "count": len(samples)}


def floor_append(count, fsync=False):
    return latencies(floor_append_call(fsync), count)


def floor_append_call(fsync=False):
    """A locked append of one line: flock, open, write, (fsync,) close. The line has the
    size and shape of a real job line (a quoted payload, ten-digit times): fsync costs more
    for longer lines, which cross the disk's blocks more often."""
    Path("floor").mkdir(exist_ok=True)
    now, quoted = int(time.time()), json.dumps(PAYLOAD).replace('"', '""')
    line = f'0123456789abcdef\tsend_email\t"{quoted}"\tpending\t{now}\t{now}\t0\t\t\n'.encode()

    def append():
        lock = os.open("floor/queue.lock", os.O_RDONLY | os.O_CREAT, 0o666)
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open("floor/queue.tsv", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(fd, line)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.close(lock)
    return append


def floor_rewrite(lines):
    """Parse and rewrite an N-line file with the csv module, as a whole-file rewrite must."""
    import csv
    row = ["0123456789abcdef", "send_email", json.dumps(PAYLOAD), "pending", "1", "1", "0", "", ""]
    with open("floor.tsv", "w", newline="") as file:
        csv.writer(file, delimiter="\t").writerows([row] * lines)
    started = time.perf_counter()
    with open("floor.tsv", newline="") as source, open("floor.tmp", "w", newline="") as out:
        csv.writer(out, delimiter="\t").writerows(csv.reader(source, delimiter="\t"))
        out.flush()
        os.fsync(out.fileno())
    os.replace("floor.tmp", "floor.tsv")
    return {"seconds": time.perf_counter() - started}


FLOORS = {"append": floor_append, "append-fsync": lambda n: floor_append(n, fsync=True),
          "rewrite": floor_rewrite}


# --- what a fresh process pays: python -c scripts, timed whole by the parent ----------------

STARTUP_SCRIPTS = {
    "ours": {"import": "import dbbasic_queue",
             "enqueue": "from dbbasic_queue import enqueue\nenqueue('send_email', PAYLOAD)",
             "idle run": "from dbbasic_queue import process_jobs\n"
                         "process_jobs({'send_email': lambda payload: None})"},
    "v1": {"import": "import dbbasic_queue",
           "enqueue": "from dbbasic_queue import enqueue\nenqueue('send_email', PAYLOAD)",
           "idle run": "from dbbasic_queue import process_jobs\n"
                       "process_jobs({'send_email': lambda payload: None})"},
    "huey": {"import": "import huey",
             "enqueue": "from huey import SqliteHuey\nhuey = SqliteHuey(filename='huey.db')\n"
                        "huey.task(name='send_email')(lambda payload: None)(PAYLOAD)",
             # a one-shot consumer's run: dequeue until empty (here, at once)
             "idle run": "from huey import SqliteHuey\nhuey = SqliteHuey(filename='huey.db')\n"
                         "huey.task(name='send_email')(lambda payload: None)\n"
                         "task = huey.dequeue()\nwhile task is not None:\n"
                         "    huey.execute(task)\n    task = huey.dequeue()"},
}
# Printed by every script, after its work: how many modules the process holds.
STARTUP_EPILOGUE = "\nimport sys\nprint(len(sys.modules))"


# --- the parent: install peers, run children, print the table --------------------------------

class Runner:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.peer_paths = {}

    def install_peers(self, names=tuple(PEERS)):
        for name in names:
            requirement = PEERS[name]
            target = self.workdir / f"peer-{name}"
            import subprocess
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", "--no-deps", "--target", str(target),
                            requirement], check=True, stdout=subprocess.DEVNULL)
            self.peer_paths[name] = target

    def run(self, measure, subject, arg="", extra="", cwd=None, wait=True):
        peer = {"v1": "v1", "huey": "huey", "huey-nofsync": "huey",
                "litequeue": "litequeue"}.get(subject)
        env = dict(os.environ, PYTHONPATH=str(self.peer_paths[peer] if peer else ROOT))
        command = [sys.executable, *(["-S"] if peer else []), str(Path(__file__).resolve()),
                   "--child", measure, subject, str(arg), str(extra)]
        import subprocess
        child_process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
        return self.result(child_process) if wait else child_process

    @staticmethod
    def result(child_process):
        out, _ = child_process.communicate(timeout=1800)
        if child_process.returncode:
            raise SystemExit(f"a benchmark child failed: {child_process.args}")
        return json.loads(out.strip().splitlines()[-1])

    def startup(self, what, subject, cwd, may_change_user=False):
        """One ``python -S -c`` of STARTUP_SCRIPTS (``subject`` None: a bare interpreter):
        its wall time and the modules it ended with. Every subject runs with ``-S`` and only
        its own code on the path (ours: the checkout and dbbasic-tsv), and writes bytecode
        caches as an installed package has them; and, unless ``may_change_user``, without
        the capability to change user, as a cron job of any user but root runs (a root
        bench drops it with setpriv: ours loads the whole worker in a process that has it)."""
        import subprocess
        if subject is None:
            script, path = "pass" + STARTUP_EPILOGUE, ""
        else:
            script = (f"PAYLOAD = {PAYLOAD!r}\n" + STARTUP_SCRIPTS[subject][what] +
                      STARTUP_EPILOGUE)
            path = str(self.peer_paths[subject]) if subject in PEERS else os.pathsep.join(
                (str(ROOT), self.tsv_path()))
        env = {name: value for name, value in os.environ.items()
               if name not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env["PYTHONPATH"] = path
        prefix = [] if may_change_user else self.unable_to_change_user()
        before = time.perf_counter()
        out = subprocess.run([*prefix, sys.executable, "-S", "-c", script], cwd=cwd, env=env,
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        return time.perf_counter() - before, int(out.split()[-1])

    @staticmethod
    def unable_to_change_user():
        """The command prefix that runs a child without CAP_SETUID and CAP_SETGID (none if
        this process lacks them already)."""
        import shutil
        with open("/proc/self/status") as status:
            effective = next(int(line.split()[1], 16) for line in status
                             if line.startswith("CapEff:"))
        if not effective & 0xc0:
            return []
        if shutil.which("setpriv") is None:
            raise SystemExit("the startup section needs setpriv (util-linux) when run as root")
        return ["setpriv", "--bounding-set", "-setuid,-setgid", "--inh-caps", "-setuid,-setgid"]

    @staticmethod
    def tsv_path():
        """Where dbbasic-tsv (dbbasic/tsv.py) is installed: site-packages, used without the site
        module."""
        import importlib.util
        return str(Path(importlib.util.find_spec("dbbasic.tsv").origin).parent.parent)

    def fresh_dir(self):
        import tempfile
        return Path(tempfile.mkdtemp(dir=self.workdir))

    def prefill(self, subject, jobs, cwd):
        self.run("prefill", subject, jobs, cwd=cwd)
        os.sync()  # so the kernel's writeback of the prefill does not land in the measurement

    def enqueue(self, subject, prefill, samples, repeats):
        """Median p50 and p99 of ``repeats`` runs, each in a fresh child on the same file."""
        import statistics
        cwd = self.fresh_dir()
        self.prefill(subject, prefill, cwd)
        runs = [self.run("enqueue", subject, samples, cwd=cwd) for _ in range(repeats)]
        return {key: statistics.median(run[key] for run in runs) for key in ("p50_us", "p99_us")}

    def pickup(self, pickups, idle_seconds):
        import signal
        cwd = self.fresh_dir()
        log = cwd / "pickups.log"
        worker = self.run("loop-worker", "ours", log, idle_seconds, cwd=cwd, wait=False)
        idle_file = Path(str(log) + ".idle")
        deadline = time.monotonic() + idle_seconds + 60
        while not idle_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        latency = self.run("pickup-enqueue", "ours", pickups, log, cwd=cwd)
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
        return dict(latency, **json.loads(idle_file.read_text()))

    def process(self, subject, jobs, repeats=1):
        """Median time and peak RSS of ``repeats`` fresh worker runs over ``jobs`` due jobs."""
        import statistics
        runs = []
        for _ in range(repeats):
            cwd = self.fresh_dir()
            self.prefill(subject, jobs, cwd)
            runs.append(self.run("process", subject, cwd=cwd))
        return {key: statistics.median(run[key] for run in runs) for key in ("seconds", "max_rss_mb")}

    def under_load(self, subject, jobs):
        """Enqueue latency while a fresh worker runs ``jobs`` jobs: the enqueuer is built
        before the worker starts, and enqueues from the worker's start to its end (at least
        once, if the worker ends before it wakes)."""
        cwd = self.fresh_dir()
        self.prefill(subject, jobs, cwd)
        started, done = cwd / "started", cwd / "done"
        enqueuer = self.run("enqueue-under-load", subject, started, done, cwd=cwd, wait=False)
        ready, deadline = Path(str(started) + ".ready"), time.monotonic() + 60
        while not ready.exists() and enqueuer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        worker = self.result(self.run("process", subject, extra=started, cwd=cwd, wait=False))
        done.touch()
        return dict(self.result(enqueuer), worker_seconds=worker["seconds"])

    def history(self, kept, due, repeats):
        """Medians of ``repeats`` builds, each: ``kept`` jobs finished 3-4 days ago written
        into a fresh file; one run with nothing due, which takes the file over (the first run
        on an upgraded file, whatever the storage does with history then); ``due`` jobs
        enqueued; the measured run. Returns (measured run, first run or None)."""
        import shutil
        runs, firsts = [], []
        for _ in range(repeats):
            cwd = self.fresh_dir()
            self.run("history-prefill", "ours", kept, "days-ago", cwd=cwd)
            os.sync()
            if kept:
                firsts.append(self.run("process-io", "ours", 0, cwd=cwd))
            self.prefill("ours", due, cwd)
            runs.append(self.run("process-io", "ours", due, cwd=cwd))
            shutil.rmtree(cwd)
        return medians(runs), (medians(firsts) if firsts else None)

    def lookup(self, kept, count, seconds):
        """get_job among ``kept`` jobs finished over the last week, after the run that takes
        the file over: jobs finished in the last hour, and the oldest kept."""
        cwd = self.fresh_dir()
        self.run("history-prefill", "ours", kept, "week", cwd=cwd)
        os.sync()
        first = self.run("process-io", "ours", 0, cwd=cwd)
        os.sync()
        found = {which: self.run("get-job", "ours", which, f"{number}/{seconds}", cwd=cwd)
                 for which, number in (("recent", count), ("oldest", max(5, count // 10)),
                                       ("missing", max(5, count // 10)))}
        return dict(found, first_run=first)

    def sleepy(self, subject, concurrency, jobs):
        cwd = self.fresh_dir()
        self.prefill(subject, jobs, cwd)
        return self.run("sleepy", subject, concurrency, jobs, cwd=cwd)

    def busy_hour(self, kept, due, repeats):
        """Medians of ``repeats`` rounds, each building and measuring every subject once
        (``interleaved``). Returns {"ours": the first run on the file, "ours-second": the run
        after it, "huey-nofsync": ..., "huey": ...}."""
        runs = {}
        for subject in interleaved(repeats):
            for row, run in self.cron_runs(subject, kept, due).items():
                runs.setdefault(row, []).append(run)
        return {row: medians(found) for row, found in runs.items()}

    def cron_runs(self, subject, kept, due):
        """A fresh queue holding ``kept`` jobs finished in the last hour, then ``due`` jobs
        enqueued, then the measured cron run (``process`` child: from before the import).
        Ours: the kept jobs written straight into data/queue.tsv, and no run before the
        measured one, which is the first on that file; then ``due`` more and a second run,
        after whatever the first did with the file. Huey: the kept results put into its
        result store (``huey_results``)."""
        import shutil
        cwd = self.fresh_dir()
        if subject == "ours":
            self.run("history-prefill", "ours", kept, "last-hour", cwd=cwd)
            self.prefill("ours", due, cwd)
            first = self.run("process", "ours", due, cwd=cwd)
            self.prefill("ours", due, cwd)
            found = {"ours": first, "ours-second": self.run("process", "ours", due, cwd=cwd)}
        else:
            self.run("huey-results", subject, kept, cwd=cwd)
            self.prefill(subject, due, cwd)
            found = {subject: self.run("process", subject, due, cwd=cwd)}
        shutil.rmtree(cwd)
        return found

    def written_per_job(self, jobs, repeats):
        """Medians of ``repeats`` rounds, each: for every subject (``interleaved``), ``jobs``
        pending jobs enqueued in a fresh directory, then one worker run over all of them
        (``process`` child, with its /proc/self/io counts)."""
        import shutil
        runs = {}
        for subject in interleaved(repeats):
            cwd = self.fresh_dir()
            self.prefill(subject, jobs, cwd)
            runs.setdefault(subject, []).append(self.run("process", subject, jobs, cwd=cwd))
            shutil.rmtree(cwd)
        return {subject: medians(found) for subject, found in runs.items()}


def interleaved(repeats):
    """The busy section's subjects, each once a round for ``repeats`` rounds, the order
    turned by one each round: drift in the machine's load hits them all alike."""
    for repeat in range(repeats):
        turn = repeat % len(BUSY_SUBJECTS)
        yield from BUSY_SUBJECTS[turn:] + BUSY_SUBJECTS[:turn]


def medians(runs):
    import statistics
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def measure_all(runner, sizes, log, sections):
    figures = {}
    if "main" in sections:
        measure_main(runner, sizes, log, figures)
    if "history" in sections:
        measure_history(runner, sizes, log, figures)
    if "concurrency" in sections:
        measure_concurrency(runner, sizes, log, figures)
    if "busy" in sections:
        measure_busy(runner, sizes, log, figures)
    if "startup" in sections:
        measure_startup(runner, sizes, log, figures)
    return figures


def measure_startup(runner, sizes, log, figures):
    """Each script of each subject ``startups`` times, the subjects in turn within each
    round; the first round warms the bytecode caches and the disk cache and is not counted.
    Medians; the import's time and modules are over a bare interpreter's from the same run."""
    import statistics
    subjects = ("ours", "v1", "huey")
    log(f"startup: import, one enqueue, an idle cron run; {', '.join(subjects)} in turn "
        f"({sizes['startups']} rounds)")
    cwds = {subject: runner.fresh_dir() for subject in subjects}
    samples = {}
    can = bool(runner.unable_to_change_user())
    for round_number in range(sizes["startups"] + 1):
        for what, subject in [("bare", None)] + [(what, subject) for subject in subjects
                                                 for what in STARTUP_SCRIPTS[subject]]:
            sample = runner.startup(what, subject, cwds.get(subject) or runner.workdir)
            if round_number:
                samples.setdefault((what, subject), []).append(sample)
        if can:  # ours in a process that may change user: the worker loads everything first
            sample = runner.startup("idle run", "ours", cwds["ours"], may_change_user=True)
            if round_number:
                samples.setdefault(("idle run, may change user", "ours"), []).append(sample)
    for key, runs in samples.items():
        figures[("startup",) + key] = (statistics.median(seconds for seconds, _ in runs),
                                       statistics.median(modules for _, modules in runs))


def measure_history(runner, sizes, log, figures):
    for kept in sizes["kept"]:
        for due in sizes["due"]:
            log(f"history: {due} due jobs with {kept} finished jobs kept ({sizes['repeats']} runs)")
            figures[("history", kept, due)] = runner.history(kept, due, sizes["repeats"])
    log(f"history: get_job among {sizes['lookup_kept']} finished jobs kept over a week")
    figures["lookup"] = runner.lookup(sizes["lookup_kept"], sizes["lookups"], sizes["lookup_seconds"])


def measure_concurrency(runner, sizes, log, figures):
    can = runner.run("capabilities", "ours", cwd=runner.fresh_dir())["concurrency"]
    for concurrency, jobs in sorted(sizes["sleepy"].items()):
        for subject in ("ours", "huey-nofsync"):
            if subject == "ours" and concurrency > 1 and not can:
                log(f"concurrency {concurrency}: ours has no concurrency keyword yet")
                continue
            log(f"concurrency {concurrency}: {jobs} jobs of 20 ms with {subject}")
            figures[("sleepy", subject, concurrency)] = runner.sleepy(subject, concurrency, jobs)
    if can:
        limited = sizes["limited"]
        log(f"concurrency 16: {limited} jobs of 20 ms over 50 keys, at most 2 at once each")
        figures["sleepy-limited"] = runner.sleepy("ours-limited", 16, limited)


def measure_busy(runner, sizes, log, figures):
    for kept in sizes["busy_kept"]:
        for due in sizes["busy_due"]:
            log(f"busy: a cron run with {kept} jobs finished in the last hour and {due} due, "
                f"ours and huey alternately ({sizes['repeats']} rounds)")
            figures[("busy", kept, due)] = runner.busy_hour(kept, due, sizes["repeats"])
    for jobs in sizes["busy_pending"]:
        log(f"busy: bytes written per job, one run over {jobs} pending jobs, ours and huey "
            f"alternately ({sizes['repeats']} rounds)")
        figures[("written", jobs)] = runner.written_per_job(jobs, sizes["repeats"])


def measure_main(runner, sizes, log, figures):
    for subject in ("ours", "ours-durable", "v1", "huey-nofsync", "huey", "litequeue"):
        for prefill in sizes["prefill"]:
            if subject.endswith("durable") or subject == "huey":
                if prefill not in (0, sizes["prefill"][-1]):
                    continue
            log(f"enqueue {subject} with {prefill} jobs in the file")
            figures[("enqueue", subject, prefill)] = runner.enqueue(
                subject, prefill, sizes["samples"], sizes["repeats"])
    for subject in ("ours", "huey-nofsync", "huey", "litequeue"):
        # huey default: 40 s a run; litequeue: its pop slows with the done messages it keeps
        repeats = 1 if subject in ("huey", "litequeue") else sizes["repeats"]
        for jobs in sizes["process"]:
            if subject == "litequeue" and jobs > LITEQUEUE_MOST:
                continue
            log(f"process {jobs} jobs with {subject} ({repeats} runs)")
            figures[("process", subject, jobs)] = runner.process(subject, jobs, repeats)
    log(f"enqueue_many of {sizes['bulk']:,} jobs")
    figures["enqueue-many"] = runner.run("enqueue-many", "ours", sizes["bulk"],
                                         cwd=runner.fresh_dir())
    log(f"a batch of {sizes['bulk']:,} jobs: its enqueue, and its run against plain jobs'")
    figures["enqueue-batch"] = runner.run("enqueue-batch", "ours", sizes["bulk"],
                                          cwd=runner.fresh_dir())
    for subject in ("ours", "ours-batch"):
        figures[("workflow", subject)] = runner.process(subject, sizes["bulk"],
                                                        sizes["repeats"])
    chained = 3 * (sizes["bulk"] // 10)
    log(f"{chained // 3:,} chains of 3 against {chained:,} plain jobs")
    for subject in ("ours", "ours-chains"):
        figures[("chains", subject)] = runner.process(subject, chained, sizes["repeats"])
    log("enqueue and process with queues, priorities and paused types")
    figures[("enqueue", "ours-queues", 0)] = runner.enqueue("ours-queues", 0, sizes["samples"],
                                                            sizes["repeats"])
    biggest = sizes["process"][-1]
    figures[("process", "ours-queues", biggest)] = runner.process("ours-queues", biggest,
                                                                  sizes["repeats"])
    for jobs in sizes["v1_process"]:
        log(f"process {jobs} jobs with 1.0.0 (capped: its worker is quadratic)")
        figures[("process", "v1", jobs)] = runner.process("v1", jobs)
    log("floor")
    cwd = runner.fresh_dir()
    figures["floor-append"] = runner.run("floor", "append", sizes["samples"], cwd=cwd)
    figures["floor-append-fsync"] = runner.run("floor", "append-fsync", min(sizes["samples"], 500), cwd=cwd)
    for prefill in (0, sizes["prefill"][-1]):
        log(f"enqueue with a unique key, {prefill} jobs in the file")
        cwd = runner.fresh_dir()
        runner.prefill("ours", prefill, cwd)
        figures[("unique", prefill)] = runner.run("enqueue-unique", "ours", sizes["samples"], cwd=cwd)
    log("durable enqueue against the fsync floor, interleaved")
    figures["durable-vs-floor"] = runner.run("durable-vs-floor", "ours", min(sizes["samples"], 500),
                                             cwd=runner.fresh_dir())
    for jobs in sizes["process"]:
        figures[("floor-rewrite", jobs)] = runner.run("floor", "rewrite", jobs, cwd=runner.fresh_dir())
    log(f"enqueue under load: ours while a worker runs {sizes['load']} jobs")
    figures["under-load"] = runner.under_load("ours", sizes["load"])
    log("pickup latency and idle CPU of a long-running worker")
    figures["pickup"] = runner.pickup(sizes["pickups"], sizes["idle_seconds"])
    missing = runner.run("capabilities", "ours", cwd=runner.fresh_dir())["rq"]
    with local_redis(runner.fresh_dir(), start=missing is None) as url:
        if missing or not url:
            figures["rq-skipped"] = missing or "redis-server is not installed"
            log(f"the RQ backend rows are skipped: {figures['rq-skipped']}")
        else:
            os.environ["BENCH_REDIS_URL"] = url
            log("the RQ backend, on a local redis-server")
            figures["rq-enqueue"] = runner.enqueue("rq", 0, sizes["samples"], 1)
            figures["rq-process"] = runner.process("rq", sizes["rq_process"])


def local_redis(directory, start=True):
    """A redis-server on a free local port for the RQ rows, once it accepts connections
    (None if not installed, or not to be started)."""
    import contextlib
    import shutil
    import socket
    import subprocess

    @contextlib.contextmanager
    def server():
        if not start or shutil.which("redis-server") is None:
            yield None
            return
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--dir", str(directory), "--save", "", "--appendonly", "no"],
                                   stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"redis-server did not start on port {port}")
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)
    return server()


def extrapolate_quadratic(points, n):
    """Fit t = a*n + b*n**2 through two measured (n, t) points and evaluate it at n."""
    (n1, t1), (n2, t2) = points
    b = (t2 / n2 - t1 / n1) / (n2 - n1)
    a = t1 / n1 - b * n1
    return a * n + b * n * n


def table(figures, sizes):
    rows = ["| figure | ours | 1.0.0 | huey fsync=False | huey default | floor | ours / floor |",
            "|---|---|---|---|---|---|---|"]
    litequeue = {}  # row index -> its litequeue cell (the others get a dash), see the end

    def cell(value, fmt="{:.1f}"):
        return "—" if value is None else fmt.format(value)

    def ratio(ours, floor):
        return "—" if not ours or not floor else f"{ours / floor:.2f}x"

    for prefill in sizes["prefill"]:
        def p(subject, key):
            found = figures.get(("enqueue", subject, prefill))
            return found and found[key]
        for key in ("p50_us", "p99_us"):
            litequeue[len(rows)] = cell(p("litequeue", key))
            rows.append(f"| enqueue {key[:3]} µs, {prefill:,} jobs in file | {cell(p('ours', key))} | "
                        f"{cell(p('v1', key))} | {cell(p('huey-nofsync', key))} | "
                        f"{cell(p('huey', key))} | {cell(figures['floor-append'][key])} | "
                        f"{ratio(p('ours', key), figures['floor-append'][key])} |")
    fsync_floor = figures["floor-append-fsync"]["p50_us"]
    for prefill in (0, sizes["prefill"][-1]):
        durable = figures[("enqueue", "ours-durable", prefill)]["p50_us"]
        huey = figures[("enqueue", "huey", prefill)]["p50_us"]
        rows.append(f"| enqueue p50 µs with fsync, {prefill:,} jobs in file | {cell(durable)} | — | — | "
                    f"{cell(huey)} | {cell(fsync_floor)} | {ratio(durable, fsync_floor)} |")
    for prefill in (0, sizes["prefill"][-1]):
        unique = figures[("unique", prefill)]
        rows.append(f"| enqueue p50 / p99 µs with a unique key, {prefill:,} jobs in file "
                    f"(first after a worker's rewrite: {unique['after_rewrite_ms']:.1f} ms) | "
                    f"{unique['p50_us']:.1f} / {unique['p99_us']:.1f} | — | — | — | — | — |")
    paired = figures["durable-vs-floor"]
    rows.append(f"| enqueue p50 µs with fsync, alternating with the floor in one process | "
                f"{cell(paired['ours']['p50_us'])} | — | — | — | {cell(paired['floor']['p50_us'])} | "
                f"{ratio(paired['ours']['p50_us'], paired['floor']['p50_us'])} |")
    capped = []
    for jobs in sizes["process"]:
        def per_job(subject):
            found = figures.get(("process", subject, jobs))
            return found and found["seconds"] / jobs * 1e6
        original = per_job("v1")
        if original is None:
            points = [(n, figures[("process", "v1", n)]["seconds"]) for n in sizes["v1_process"]]
            original = extrapolate_quadratic(points, jobs) / jobs * 1e6
            capped.append(jobs)
        floor = figures[("floor-rewrite", jobs)]["seconds"]
        ours_total = figures[("process", "ours", jobs)]["seconds"]
        litequeue[len(rows)] = cell(per_job("litequeue"))
        rows.append(f"| processing µs/job, {jobs:,} jobs (ours: {ours_total:.2f} s) | "
                    f"{cell(per_job('ours'))} | {cell(original, '{:,.0f}')}"
                    f"{' (extrapolated)' if jobs in capped else ''} | {cell(per_job('huey-nofsync'))} | "
                    f"{cell(per_job('huey'))} | csv rewrite of the file: {floor * 1000:.0f} ms | "
                    f"{ours_total / floor:.1f} rewrites |")
    bulk = figures["enqueue-many"]["seconds"]
    single = figures[("enqueue", "ours", 0)]["p50_us"]
    rows.append(f"| enqueue_many of {sizes['bulk']:,} jobs, ms (one enqueue each, at the p50: "
                f"{single * sizes['bulk'] / 1000:.0f} ms) | {bulk * 1000:.1f} "
                f"({bulk / sizes['bulk'] * 1e6:.1f} µs/job) | — | — | — | — | — |")
    if "enqueue-batch" in figures:
        jobs, chained = sizes["bulk"], 3 * (sizes["bulk"] // 10)
        batch = figures["enqueue-batch"]["seconds"]
        rows.append(f"| a batch of {jobs:,} jobs with an on_complete job, enqueue ms "
                    f"(enqueue_many: {bulk * 1000:.1f}) | {batch * 1000:.1f} | — | — | — | — | — |")
        plain, batched = (figures[("workflow", name)]["seconds"] / jobs * 1e6
                          for name in ("ours", "ours-batch"))
        rows.append(f"| a batch of {jobs:,} and its callback run, µs/job (plain jobs: "
                    f"{plain:.1f}, {batched / plain:.2f}x) | {batched:.1f} | — | — | — | — | — |")
        plain, chains = (figures[("chains", name)]["seconds"] / chained * 1e6
                         for name in ("ours", "ours-chains"))
        rows.append(f"| {chained // 3:,} chains of 3 run, µs/job (plain jobs: {plain:.1f}, "
                    f"{chains / plain:.2f}x) | {chains:.1f} | — | — | — | — | — |")
    queued = figures[("enqueue", "ours-queues", 0)]
    rows.append(f"| enqueue p50 / p99 µs with queue= and priority=, 0 jobs in file | "
                f"{cell(queued['p50_us'])} / {cell(queued['p99_us'])} | — | — | — | — | — |")
    biggest = sizes["process"][-1]
    spread = figures[("process", "ours-queues", biggest)]["seconds"] / biggest * 1e6
    rows.append(f"| processing µs/job, {biggest:,} jobs in 3 weighted queues, 5 priorities, 2% of "
                f"2 paused types (ours alone: {spread / (figures[('process', 'ours', biggest)]['seconds'] / biggest * 1e6):.2f}x) | "
                f"{cell(spread)} | — | — | — | — | — |")
    rss = figures[("process", "ours", sizes["rss"])]["max_rss_mb"]
    huey_rss = figures[("process", "huey-nofsync", sizes["rss"])]["max_rss_mb"]
    rows.append(f"| worker peak RSS MB, {sizes['rss']:,} jobs | {rss:.1f} | — | {huey_rss:.1f} | "
                f"{figures[('process', 'huey', sizes['rss'])]['max_rss_mb']:.1f} | — | — |")
    load = figures["under-load"]
    rows.append(f"| enqueue p99 µs while a worker runs {sizes['load']:,} jobs "
                f"({load['count']} enqueues in {load['worker_seconds']:.1f} s) | {load['p99_us']:.0f} | "
                f"— | — | — | — | — |")
    pickup = figures["pickup"]
    rows.append(f"| pickup ms, enqueue to handler start, loop worker (p50 / p99) | "
                f"{pickup['p50_us'] / 1000:.0f} / {pickup['p99_us'] / 1000:.0f} | 60,000 at worst (cron) | "
                f"— | — | — | — |")
    rows.append(f"| idle loop worker, % of a core | {pickup['idle_cpu_percent']:.2f} | 0 (cron) | "
                f"— | — | — | — |")
    if "rq-enqueue" in figures:
        rq_enqueue, rq_process = figures["rq-enqueue"], figures["rq-process"]
        rows.append(f"| RQ backend on a local Redis: enqueue p50 / p99 µs | "
                    f"{rq_enqueue['p50_us']:.0f} / {rq_enqueue['p99_us']:.0f} | — | — | — | — | — |")
        rows.append(f"| RQ backend on a local Redis: processing µs/job, {sizes['rq_process']:,} jobs | "
                    f"{rq_process['seconds'] / sizes['rq_process'] * 1e6:,.0f} | — | — | — | — | — |")
    notes = [f"1.0.0 processing was measured at {', '.join(map(str, sizes['v1_process']))} jobs only "
             f"(its worker is quadratic); the figures at {', '.join(f'{n:,}' for n in capped)} jobs "
             f"are extrapolated from those with t = a*n + b*n^2."] if capped else []
    if "rq-skipped" in figures:
        notes.append(f"The RQ backend rows are skipped: {figures['rq-skipped']}.")
    if any(jobs > LITEQUEUE_MOST for jobs in sizes["process"]):
        notes.append(f"litequeue processing runs once, at {LITEQUEUE_MOST:,} jobs at most: its "
                     f"time per job grows with the done messages it keeps.")
    rows[1] += "---|"
    for index, row in enumerate(rows):  # the litequeue column, after huey default's
        if index != 1:
            cells = row.split(" | ")
            added = "litequeue" if index == 0 else litequeue.get(index, "—")
            rows[index] = " | ".join(cells[:5] + [added] + cells[5:])
    return "\n".join(rows), notes


def megabytes(count):
    mb = count / 1e6
    return f"{mb:.2f}" if mb < 10 else f"{mb:,.0f}"


def history_tables(figures, sizes):
    """A worker run with finished jobs kept (and the first run that takes such a file over),
    and get_job among a week of finished jobs."""
    rows = ["| finished jobs kept | due jobs | queue.tsv before the run, MB | run time, s | "
            "µs/job | written, MB: wchar / write_bytes / cancelled_write_bytes | read, MB: rchar | "
            "peak RSS, MB | after the run, MB: queue.tsv / queue directory (files) |",
            "|---|---|---|---|---|---|---|---|---|"]

    def row(kept, due, run):
        """One run's row; ``due`` 0 is the first run on a file, with nothing due."""
        due_cell = f"{due:,}" if due else "none: the first run on an upgraded file"
        per_job = f"{run['seconds'] / due * 1e6:,.0f}" if due else "—"
        written = " / ".join(megabytes(run[key]) for key in
                             ("wchar", "write_bytes", "cancelled_write_bytes"))
        return (f"| {kept} | {due_cell} | {run['live_mb_before']:.1f} | {run['seconds']:.3f} | "
                f"{per_job} | {written} | {megabytes(run['rchar'])} | {run['max_rss_mb']:.1f} | "
                f"{run['live_mb']:.1f} / {run['dir_mb']:.1f} ({run['dir_files']:.0f}) |")
    for kept in sizes["kept"]:
        label = f"{kept:,}" + (" (finished 3-4 days ago)" if kept else "")
        for due in sizes["due"]:
            run, first = figures[("history", kept, due)]
            if first and due == sizes["due"][0]:
                rows.append(row(label, 0, first))
            rows.append(row(label, due, run))
    lookup, kept = figures["lookup"], sizes["lookup_kept"]
    rows.append(row(f"{kept:,} (finished over the last 7 days: the get_job file below)", 0,
                    lookup["first_run"]))
    rows += ["", f"| get_job among {kept:,} finished jobs kept, finished over the last 7 days | "
                 f"p50, ms | p99, ms | first lookup in a fresh process, ms | lookups (different ids) |",
             "|---|---|---|---|---|"]
    for which, label in (("recent", "a job finished in the last hour (a different one each time)"),
                         ("oldest", "the oldest kept job (the same one each time)"),
                         ("missing", "an id no job has (a different one each time): None")):
        found = lookup[which]
        rows.append(f"| {label} | {found['p50_us'] / 1000:,.2f} | {found['p99_us'] / 1000:,.2f} | "
                    f"{found['first_ms']:,.2f} | {found['count']} ({found['distinct']}) |")
    return "\n".join(rows)


def concurrency_table(figures, sizes):
    rows = ["| jobs whose handler sleeps 20 ms | concurrency | ours, s | "
            "huey fsync=False, thread workers, s | ideal: jobs × 20 ms / concurrency, s | "
            "ours / huey |",
            "|---|---|---|---|---|---|"]
    most = max(sizes["sleepy"].values())
    for concurrency, jobs in sorted(sizes["sleepy"].items()):
        ours = figures.get(("sleepy", "ours", concurrency))
        huey = figures[("sleepy", "huey-nofsync", concurrency)]
        scaled = (f" (not {most:,}: at this concurrency that takes "
                  f"{most * SLEEP_SECONDS / concurrency:.0f}+ s)" if jobs < most else "")
        rows.append(f"| {jobs:,}{scaled} | {concurrency} | "
                    f"{'—' if ours is None else format(ours['seconds'], '.2f')} | "
                    f"{huey['seconds']:.2f} | {jobs * SLEEP_SECONDS / concurrency:.2f} | "
                    f"{'—' if ours is None else format(ours['seconds'] / huey['seconds'], '.2f') + 'x'} |")
    limited = figures.get("sleepy-limited")
    if limited is not None:
        ideal = sizes["limited"] * SLEEP_SECONDS / 16
        rows.append(f"| {sizes['limited']:,}, each with one of 50 concurrency keys, limit 2 | 16 | "
                    f"{limited['seconds']:.2f} | — | {ideal:.2f} | {ideal / limited['seconds']:.2f} "
                    f"of the ideal |")
    return "\n".join(rows)


BUSY_LABELS = {"ours": "ours, first run on the file", "ours-second": "ours, second run",
               "ours-pending": "ours", "huey-nofsync": "huey fsync=False", "huey": "huey default"}


def written(run, shown):
    """A run's wchar / write_bytes / cancelled_write_bytes, each as ``shown`` formats it."""
    return " / ".join(shown(run[key]) for key in ("wchar", "write_bytes", "cancelled_write_bytes"))


def times(ours, theirs):
    """ours / theirs as "1.23x" ("—" when theirs is zero)."""
    if not theirs:
        return "—"
    ratio = ours / theirs
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"


def busy_tables(figures, sizes):
    """A whole cron run with a busy hour's finished jobs kept, and the bytes a worker writes
    per job it runs: ours and huey's, measured alternately."""
    rows = ["| finished in the last hour | due | subject | run time, ms | "
            "written, MB: wchar / write_bytes / cancelled_write_bytes | read, MB: rchar | "
            "peak RSS, MB | "
            "run time, ours / huey fsync=False; / huey default | "
            "written (wchar), ours / huey fsync=False; / huey default |",
            "|---|---|---|---|---|---|---|---|---|"]
    for kept in sizes["busy_kept"]:
        for due in sizes["busy_due"]:
            found = figures[("busy", kept, due)]
            for row in ("ours", "ours-second", "huey-nofsync", "huey"):
                run = found[row]
                ratios = ["; ".join(times(run[key], found[huey][key]) for huey in ("huey-nofsync", "huey"))
                          if row.startswith("ours") else "—" for key in ("cron_seconds", "wchar")]
                rows.append(f"| {kept:,} | {due:,} | {BUSY_LABELS[row]} | {run['cron_seconds'] * 1000:,.0f} | "
                            f"{written(run, megabytes)} | {megabytes(run['rchar'])} | "
                            f"{run['max_rss_mb']:.1f} | {' | '.join(ratios)} |")
    rows += ["", "| pending jobs, one worker run over all | subject | "
                 "written per job, bytes: wchar / write_bytes / cancelled_write_bytes | µs/job | "
                 "run time, s | "
                 "ours / huey fsync=False: wchar per job; µs/job |",
             "|---|---|---|---|---|---|"]
    for jobs in sizes["busy_pending"]:
        found = figures[("written", jobs)]
        for subject in BUSY_SUBJECTS:
            run, nofsync = found[subject], found["huey-nofsync"]
            ratio = (f"{times(run['wchar'], nofsync['wchar'])}; {times(run['seconds'], nofsync['seconds'])}"
                     if subject == "ours" else "—")
            per_job = written(run, lambda count: f"{count / jobs:,.0f}")
            rows.append(f"| {jobs:,} | {BUSY_LABELS.get(subject + '-pending', BUSY_LABELS[subject])} | "
                        f"{per_job} | {run['seconds'] / jobs * 1e6:,.1f} | {run['seconds']:.2f} | "
                        f"{ratio} |")
    return "\n".join(rows)


def startup_table(figures):
    bare_seconds, bare_modules = figures[("startup", "bare", None)]
    names = {"ours": "ours", "v1": "dbbasic-queue 1.0.0", "huey": "huey SqliteHuey"}
    rows = [f"| a fresh `python -S -c` (a bare one: {bare_seconds * 1000:.1f} ms, "
            f"{bare_modules} modules) | import, ms over a bare one | modules over a bare one | "
            f"enqueue one job, whole process, ms | a cron run with nothing due, whole process, "
            f"ms |", "|---|---|---|---|---|"]
    for subject in ("ours", "v1", "huey"):
        imported, modules = figures[("startup", "import", subject)]
        enqueued, _ = figures[("startup", "enqueue", subject)]
        idle, _ = figures[("startup", "idle run", subject)]
        rows.append(f"| {names[subject]} | {(imported - bare_seconds) * 1000:.1f} | "
                    f"{modules - bare_modules} | {enqueued * 1000:.1f} | {idle * 1000:.1f} |")
    ours, v1, huey = (figures[("startup", what, subject)][0] for what, subject in
                      (("enqueue", "ours"), ("enqueue", "v1"), ("idle run", "huey")))
    rows.append(f"\nOurs against 1.0.0, a whole process enqueueing one job: {ours / v1:.2f}x; "
                f"our idle cron run against huey's: "
                f"{figures[('startup', 'idle run', 'ours')][0] / huey:.2f}x.")
    rows.append("Every process ran without the capability to change user, as a cron job of any "
                "user but root does.")
    root = figures.get(("startup", "idle run, may change user", "ours"))
    if root is not None:
        rows.append(f"Our idle cron run in a process that may change user (root), which loads "
                    f"the whole worker before it runs: {root[0] * 1000:.1f} ms, "
                    f"{root[1] - bare_modules} modules over a bare one.")
    return "\n".join(rows)


def machine():
    import platform
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:6])))
        return
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args()
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        parser.error(f"--only takes sections among {', '.join(SECTIONS)}, not {args.only!r}")
    sizes = QUICK if args.quick else FULL
    started, load_before = time.monotonic(), os.getloadavg()[0]

    def log(message):
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="dbbasic-queue-bench-") as workdir:
        runner = Runner(Path(workdir))
        log("installing the peers")
        runner.install_peers([name for name, needed_by in (("v1", {"main", "startup"}),
                                                           ("huey", {"main", "concurrency", "busy",
                                                                     "startup"}),
                                                           ("litequeue", {"main"}))
                              if needed_by & set(sections)])
        figures = measure_all(runner, sizes, log, sections)
    printed = [f"Machine: {machine()}, load average {load_before:.2f} at the start and "
               f"{os.getloadavg()[0]:.2f} at the end; enqueue, processing, history and busy figures "
               f"are medians of {sizes['repeats']} runs (huey default and 1.0.0 processing, get_job and "
               f"the 20 ms handlers: one run); {'quick run' if args.quick else 'full run'} of "
               f"{', '.join(sections)} in {time.monotonic() - started:.0f} s, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."]
    if "main" in sections:
        rows, notes = table(figures, sizes)
        printed += [rows, *notes]
    if "history" in sections:
        printed.append(history_tables(figures, sizes))
    if "concurrency" in sections:
        printed.append(concurrency_table(figures, sizes))
    if "busy" in sections:
        printed.append(busy_tables(figures, sizes))
    if "startup" in sections:
        printed.append(startup_table(figures))
    output = "\n\n".join(printed) + "\n"
    print(output, end="")
    if not args.quick:  # the record the docs quote from (tests/test_readme.py checks they do)
        record = RUNS / f"{time.strftime('%Y-%m-%d', time.gmtime())}-{'-'.join(sections)}.md"
        if record.exists():  # a run the docs may cite: never overwritten, a later one is timed
            record = record.with_name(f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-"
                                      f"{'-'.join(sections)}.md")
        record.parent.mkdir(exist_ok=True)
        record.write_text(output)
        log(f"recorded in {record.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
