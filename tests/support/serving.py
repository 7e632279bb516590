"""The development Manager's command line server (``flamenco-dev-manager serve``) as a
subprocess, for the tests of that command of both generations."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import gevent


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """Run ``python -m fworker.devmanager.cli serve ARGS`` and yield (the process, the
    line it prints once serving, the URL that line names); the process is killed at
    the end if it still runs, whatever the outcome."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fworker.devmanager.cli", "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        with gevent.Timeout(30):
            line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line + proc.stderr.read()
        yield proc, line, line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
