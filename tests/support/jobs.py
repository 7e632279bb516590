"""The one builder of jobs for the development Manager (format: fworker/devmanager/jobs.py),
their tasks and commands, and the little Python programs tests run as tasks."""
from __future__ import annotations

import shlex
import sys

PY = sys.executable

# Prints numbered lines ("count 0", "count 1", ...) every 10 ms until it has printed
# argv[1] of them or the file argv[2] exists, so a test decides when it ends; argv[3]
# characters of padding make each line longer.  Further arguments only mark the process.
COUNTER = ("import os, sys, time\n"
           "n, stop, pad = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
           "i = 0\n"
           "while i < n and not os.path.exists(stop):\n"
           "    print('count', i, *(['p' * pad] if pad else []), flush=True)\n"
           "    i += 1\n"
           "    time.sleep(0.01)\n")

# A child that starts a grandchild deaf to SIGTERM (so a grace period and SIGKILL are
# needed to stop the tree), prints "pids <grandchild>", and waits.
TREE = ("import signal, subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print('pids', g.pid, flush=True)\n"
        "time.sleep(600)\n")

# A child that prints a numbered line every 20 ms, so updates keep flowing.
CHATTY = ("import time\n"
          "for i in range(100000):\n"
          "    print('line', i, flush=True)\n"
          "    time.sleep(0.02)\n")


def python_cmd(code: str, *args: str) -> str:
    """The command line running ``code`` in this Python (what an exec command's ``cmd`` holds)."""
    return shlex.join([PY, "-c", code, *args])


def exec_cmd(code: str, *args: str) -> dict:
    return {"name": "exec", "settings": {"cmd": python_cmd(code, *args)}}


def echo(message) -> dict:
    return {"name": "echo", "settings": {"message": message}}


def sleep(seconds: float) -> dict:
    return {"name": "sleep", "settings": {"time_in_seconds": seconds}}


def counter(n: int, stop="/nonexistent/stop", pad: int = 0, marker: str | None = None) -> dict:
    """An exec command running COUNTER."""
    return exec_cmd(COUNTER, str(n), str(stop), str(pad), *([marker] if marker else []))


def counted(log: str) -> list[int]:
    """The numbers of the COUNTER lines in a task log, in order."""
    return [int(line.split(": count ", 1)[1].split(" ")[0]) for line in log.splitlines() if ": count " in line]


def task(name: str = "t0", commands: list[dict] | None = None, *, task_type: str = "debug", priority: int = 50,
         parents=()) -> dict:
    """A task; without commands, one echo naming the task."""
    return {"name": name, "task_type": task_type, "priority": priority, "parents": list(parents),
            "commands": commands if commands is not None else [echo(f"hi from {name}")]}


def job(*tasks: dict, name: str = "job", priority: int = 50, job_type: str = "debug") -> dict:
    """A job of ``tasks`` (one default task without them)."""
    return {"name": name, "job_type": job_type, "priority": priority, "tasks": list(tasks) or [task()]}


def one_task_job(*commands: dict, task_type: str = "debug", name: str = "job") -> dict:
    return job(task("t0", list(commands), task_type=task_type), name=name)


def submit(manager, *commands: dict, **kwargs) -> tuple[str, str]:
    """Submit a one-task job of ``commands``: (job id, task id)."""
    ids = manager.submit_job(one_task_job(*commands, **kwargs))
    return ids["job_id"], ids["task_ids"][0]
