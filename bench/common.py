"""What every benchmark needs: the Manager and worker processes, samplers,
statistics, and the record of the machine a result was measured on.

The benchmark process itself never imports ``fworker`` (that would
monkey-patch it with gevent): it drives separate processes with plain
``subprocess``, threads and ``requests``, and reads the Manager's SQLite file
read-only to see progress.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing

import psutil
import requests

from tests.support import waiting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

_PR_SET_PDEATHSIG = 1

# Where the measured fworker comes from: the work tree (default), or a clean
# snapshot of a commit (``python -m bench --commit REV``, see use_commit()).
SOURCE = {"path": ROOT, "commit": None}


def use_commit(rev: str) -> str:
    """Measure the fworker package of commit ``rev`` (extracted with git
    archive into a temporary folder) instead of the work tree."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    folder = tempfile.mkdtemp(prefix=f"fworker-bench-src-{commit}-")
    archive = subprocess.run(["git", "archive", commit, "fworker"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    SOURCE.update(path=folder, commit=commit)
    import atexit
    atexit.register(shutil.rmtree, folder, True)
    return commit


def child_env(**extra: str) -> dict:
    """The environment of every Manager and worker process: the measured
    fworker first on the path, then this checkout (for ``bench``)."""
    env = dict(os.environ, **extra)
    env.pop("PYTHONUNBUFFERED", None)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([SOURCE["path"], ROOT]))
    return env


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if the benchmark process dies, so
    nothing outlives an interrupted run."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def save_standalone(name: str, **result: typing.Any) -> None:
    """bench/results/NAME.json for a benchmark run on its own (not by ``python -m bench``):
    ``result`` with when and where it was measured."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(ROOT, "bench", "results", f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump({"measured_at": stamp, **result, "machine": machine()}, f, indent=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Polling the Manager's database less often than tests do: the harness shares the CPU.
wait_until = functools.partial(waiting.wait_until, interval=0.05)


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (seconds) that fall in any one window of that length."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, p in 0..100."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Workdir:
    """A temporary folder for one benchmark run, removed afterwards unless
    FWORKER_BENCH_KEEP=1."""

    def __init__(self, name: str):
        self.path = tempfile.mkdtemp(prefix=f"fworker-bench-{name}-")

    def sub(self, *parts: str) -> str:
        path = os.path.join(self.path, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def cleanup(self) -> None:
        if os.environ.get("FWORKER_BENCH_KEEP") != "1":
            shutil.rmtree(self.path, ignore_errors=True)


def py_spy(output: str) -> list[str]:
    """The command prefix that runs a program under py-spy (250 Hz, idle
    frames included, collapsed stacks: see bench/profsummary.py)."""
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(PY), "py-spy")
    if not os.path.exists(exe):
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return [exe, "record", "--rate", "250", "--format", "raw", "--idle", "-o", output, "--"]


# The development Manager, as a separate process with a trace.

class Manager:
    def __init__(self, workdir: str, port: int | None = None, worker_timeout: float = 60.0,
                 profile: str | None = None, protocol: str = "v2"):
        """``protocol``: ``v2`` (the Flamenco 2.x development Manager) or ``v3``
        (the Flamenco 3 one; its jobs in its own format, fworker/devmanager/v3/jobs.py)."""
        self.profile = profile
        self.protocol = protocol
        self.workdir = workdir
        self.db = os.path.join(workdir, "manager.sqlite")
        self.trace_path = os.path.join(workdir, "manager-trace.jsonl")
        self.port = port or free_port()
        self.worker_timeout = worker_timeout
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self._log = None

    def start(self) -> Manager:
        self._log = open(os.path.join(self.workdir, "manager.log"), "ab")  # noqa: SIM115  (kept open by the object; its close() closes it)
        args = [PY, "-m", "bench.tracemanager", "--db", self.db, "--port", str(self.port),
                "--trace", self.trace_path, "--worker-timeout", str(self.worker_timeout)]
        if self.protocol == "v3":
            args.append("--v3")
        if self.profile:
            args = py_spy(self.profile) + args
        self.session = requests.Session()
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, env=child_env(), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        wait_until(self._answers, 30, "the Manager to answer")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the Manager exited with {self.proc.returncode}; see {self.workdir}/manager.log")
        try:
            return self.session.get(self.url + "dev/jobs", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            target = self.proc
            if self.profile:  # stop the Manager, not py-spy: py-spy then writes its profile
                kids = psutil.Process(self.proc.pid).children()
                target = kids[0] if kids else self.proc
            target.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.session.close()

    def submit(self, job: dict) -> dict:
        resp = self.session.post(self.url + "dev/jobs", json=job, timeout=120)
        if resp.status_code != 201:
            raise RuntimeError(f"job refused: {resp.status_code} {resp.text}")
        return resp.json()

    # Read-only looks into the Manager's database (WAL: never blocks it).

    @contextlib.contextmanager
    def _db(self):
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            yield db
        finally:
            db.close()

    def query(self, sql: str, *args) -> list[tuple]:
        with self._db() as db:
            return db.execute(sql, args).fetchall()

    def status_counts(self, job_id: str | None = None) -> dict[str, int]:
        if job_id is None:
            rows = self.query("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        else:
            rows = self.query("SELECT status, COUNT(*) FROM tasks WHERE job = ? GROUP BY status", job_id)
        return dict(rows)

    def done(self, job_id: str, total: int) -> bool:
        counts = self.status_counts(job_id)
        finished = sum(counts.get(s, 0) for s in ("completed", "failed", "canceled"))
        if counts.get("failed"):
            raise RuntimeError(f"tasks failed: {counts}")
        return finished >= total

    def workers_awake(self) -> int:
        return self.query("SELECT COUNT(*) FROM workers WHERE status = 'awake'")[0][0]

    def trace(self) -> list[list]:
        rows = []
        if os.path.exists(self.trace_path):
            with open(self.trace_path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        return rows


# Jobs of the Flamenco 3 development Manager, in its format (fworker/devmanager/v3/jobs.py),
# written out here: importing fworker would monkey-patch this process (its Sampler thread).

def v3_command(name: str, total_step_count: int = 0, **parameters: typing.Any) -> dict:
    return {"name": name, "parameters": parameters, "total_step_count": total_step_count}


def v3_job(name: str, tasks: list[tuple[str, str, list[dict]]]) -> dict:
    """A job of (task name, task type, commands)."""
    return {"name": name, "job_type": "bench", "priority": 50, "tasks": [
        {"name": task, "task_type": task_type, "commands": commands} for task, task_type, commands in tasks]}


# Worker processes.

class WorkerProc:
    """``python -m fworker -c worker.cfg`` (or ``bench.workerlaunch`` when
    ``events``) with its own HOME, configuration file and queue."""

    def __init__(self, root: str, manager_url: str, settings: dict, *, name: str = "bench-worker",
                 events: bool = False, profile: str | None = None):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.home = os.path.join(root, "home")
        os.makedirs(self.home, exist_ok=True)
        self.config = os.path.join(root, "worker.cfg")
        self.queue_db = os.path.join(root, "queue.sqlite")
        self.events_path = os.path.join(root, "events.jsonl") if events else None
        self.profile = profile
        values = {"manager_url": manager_url, "task_update_queue_db": self.queue_db, "nickname": name,
                  **{k: str(v) for k, v in settings.items()}}
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("[flamenco-worker]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items()))
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None
        self._log = None

    def start(self) -> WorkerProc:
        env = child_env(HOME=self.home)
        module = "bench.workerlaunch" if self.events_path else "fworker"
        if self.events_path:
            env["FWORKER_BENCH_EVENTS"] = self.events_path
        args = [PY, "-m", module, "-c", self.config]
        if self.profile:
            args = py_spy(self.profile) + args
        self._log = open(os.path.join(self.root, "worker.log"), "ab")  # noqa: SIM115  (kept open by the object; its close() closes it)
        self.proc = subprocess.Popen(args, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.ps = psutil.Process(self.proc.pid)
        if self.profile:  # measure the worker, not py-spy
            self.ps = wait_until(self._profiled_child, 20, "the profiled worker to start")
        return self

    def _profiled_child(self):
        kids = self.ps.children()
        return kids[0] if kids else None

    @property
    def pid(self) -> int:
        return self.ps.pid

    def signal(self, sig: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.ps.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown: flush, sign off), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def queued(self) -> int:
        try:
            db = sqlite3.connect(f"file:{self.queue_db}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT COUNT(*) FROM task_updates").fetchone()[0]
            finally:
                db.close()
        except sqlite3.OperationalError:
            return 0

    def events(self) -> list[list]:
        if not self.events_path or not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def log_text(self) -> str:
        with open(os.path.join(self.root, "worker.log"), encoding="utf-8", errors="replace") as f:
            return f.read()


# Sampling a process's memory and CPU from outside.

@contextlib.contextmanager
def manager_and_worker(manager_dir: str, worker_dir: str, settings: dict, *, events: bool = False,
                       manager_profile: str | None = None, worker_profile: str | None = None,
                       protocol: str = "v2") -> typing.Iterator[tuple[Manager, WorkerProc]]:
    """A development Manager and one worker, awake (signed on and asking for
    tasks); both stopped on the way out, whatever happened.  Their traces,
    events and logs can still be read afterwards.  ``protocol``: which
    development Manager (v2 or v3); the worker is told to speak it."""
    manager = Manager(manager_dir, profile=manager_profile, protocol=protocol)
    if protocol == "v3":
        settings = {**settings, "manager_protocol": protocol}
    worker = WorkerProc(worker_dir, manager.url, settings, events=events, profile=worker_profile)
    try:
        manager.start()
        worker.start()
        wait_until(lambda: manager.workers_awake() >= 1, 60, "the worker to be awake")
        yield manager, worker
    finally:
        worker.stop()
        manager.stop()


class Sampler:
    """Samples RSS of a process (``tree``: summed with all its descendants') every
    ``interval`` seconds in a thread; ``peak`` and ``series`` afterwards."""

    def __init__(self, ps: psutil.Process, interval: float = 0.05, *, tree: bool = False):
        self.ps = ps
        self.interval = interval
        self.tree = tree
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.series.append((time.monotonic(), self._rss()))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def _rss(self) -> int:
        total = self.ps.memory_info().rss  # the process itself gone: the sampling ends
        for proc in self.ps.children(recursive=True) if self.tree else ():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue  # a descendant that just ended
        return total

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.series), default=0)

    def at(self, t: float) -> int | None:
        """The sample closest to monotonic time ``t``."""
        if not self.series:
            return None
        return min(self.series, key=lambda s: abs(s[0] - t))[1]


class LoadMeter:
    """How much CPU processes other than this benchmark (and its children)
    used while it ran: other engineers' test runs on a shared machine make
    every figure slower, and the results should say so."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.ours0 = time.monotonic(), self._busy(), self._ours()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq

    @staticmethod
    def _ours() -> float:
        me = psutil.Process()
        total = sum(me.cpu_times()[:4])  # user, system, and of waited-for children
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        busy, ours = self._busy() - self.busy0, self._ours() - self.ours0
        other = max(0.0, busy - ours)
        return {"wall_s": round(wall, 1), "machine_busy_percent": round(100 * busy / (wall * os.cpu_count()), 1),
                "other_cpu_percent": round(100 * other / (wall * os.cpu_count()), 1),
                "loadavg_1min_end": os.getloadavg()[0]}


def cpu_seconds(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return times.user + times.system


def peak_rss(pid: int) -> int:
    """VmHWM: the kernel's own peak resident set size of ``pid``, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def mb(n: float | None) -> float | None:
    return None if n is None else round(n / 1e6, 1)


# What a result was measured on.

def machine() -> dict:
    def version(pkg: str) -> str:
        try:
            from importlib import metadata
            return metadata.version(pkg)
        except Exception:  # noqa: BLE001  (a version is only a label in the report)
            return "?"

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "gevent": version("gevent"), "requests": version("requests"), "dataset": version("dataset"),
        "sqlalchemy": version("SQLAlchemy"),
        "fworker": (f"commit {SOURCE['commit']}" if SOURCE["commit"] else
                    f"work tree at {git('rev-parse', '--short', 'HEAD')}"
                    + (" + uncommitted changes" if git("status", "--porcelain", "--", "fworker") else "")),
    }


def trace_rows(trace: list[list], kind: str) -> list[list]:
    return [row for row in trace if row[0] == kind]
