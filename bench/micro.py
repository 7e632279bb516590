"""Micro-benchmarks behind the proposed fixes in docs/PERFORMANCE.md: the cost
of what the worker does now in its hot paths vs. a cheaper way to do the same.

    python -m bench.micro            (about a minute; prints a table, writes bench/results/micro.json)

In-process, nothing of fworker changes: the "now" column calls fworker's own
code (or does exactly what it does); the "alternative" column is the
proposal.  Absolute numbers depend on the machine's load; the ratios are the
point.
"""
from __future__ import annotations

import fworker  # noqa: F401  (gevent's monkey patching first, as in the worker)

# isort: split

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import timeit

import requests
import urllib3

from bench import common

LINE = "0001234 " + "x" * 91
CHUNK = b"".join(f"{i:07d} {'x' * 91}\n".encode() for i in range(655))  # one 64 KiB read


def per_call_us(fn, number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def timestamps() -> list[dict]:
    from fworker.reporter import log_timestamp

    cache = [None, ""]

    def cached() -> str:  # the date and time formatted once per second
        now = time.time()
        second = int(now)
        if second != cache[0]:
            cache[0], cache[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{cache[1]}.{int((now - second) * 1e6):06d}Z"

    return [{"what": "log line timestamp", "now": per_call_us(log_timestamp, 100_000),
             "alternative": per_call_us(cached, 100_000), "unit": "us/line",
             "how": "reporter.log_timestamp() vs. 'YYYY-mm-ddTHH:MM:SS' cached per second + microseconds"}]


def splitting() -> list[dict]:
    from fworker.lines import LineSplitter
    from fworker.reporter import log_timestamp

    sink: list[str] = []

    def now() -> None:  # what _pump + handle + ctx.log + reporter.log_line do per line
        def log_line(line: str) -> None:
            sink.append(f"{log_timestamp()}: {line}")
        splitter = LineSplitter(log_line, 65536)
        splitter.feed(CHUNK)
        sink.clear()

    def batch() -> None:  # one decode, one split and one timestamp per chunk
        text = CHUNK.decode("utf-8", errors="replace")
        lines = re.split(r"\r\n|\r|\n", text)
        rest = lines.pop()  # noqa: F841  (kept for the next chunk)
        stamp = log_timestamp() + ": "
        sink.extend([stamp + line for line in lines])
        sink.clear()

    lines = CHUNK.count(b"\n")
    return [{"what": "64 KiB of output -> timestamped log lines", "now": per_call_us(now, 200) / lines,
             "alternative": per_call_us(batch, 200) / lines, "unit": "us/line",
             "how": "LineSplitter.feed + a call chain and a timestamp per line "
                    "vs. one decode/split/timestamp per chunk"}]


def queue_ops() -> list[dict]:
    from fworker.queue import UpdateQueue

    folder = tempfile.mkdtemp(prefix="fworker-micro-")
    queue = UpdateQueue(os.path.join(folder, "q.sqlite"))
    payload = {"activity": "starting echo", "current_command_idx": 0, "command_progress_percentage": 0}

    def queue_cycle() -> None:  # one update through the queue: push, head, delete
        queue.push("0" * 24, payload)
        items = queue.head(200)
        queue.delete([i.id for i in items])

    raw = sqlite3.connect(os.path.join(folder, "raw.sqlite"), isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("CREATE TABLE task_updates (id INTEGER PRIMARY KEY, task_id TEXT, payload TEXT, queued_at REAL)")

    def raw_cycle() -> None:
        with raw:
            raw.execute("BEGIN")
            raw.execute("INSERT INTO task_updates (task_id, payload, queued_at) VALUES (?, ?, ?)",
                        ("0" * 24, json.dumps(payload), time.time()))
        rows = raw.execute("SELECT id, task_id, payload FROM task_updates ORDER BY id LIMIT 200").fetchall()
        with raw:
            raw.execute("BEGIN")
            raw.execute(f"DELETE FROM task_updates WHERE id IN ({','.join('?' * len(rows))})", [r[0] for r in rows])

    result = [{"what": "one update through the SQLite queue (push, head, delete)",
               "now": per_call_us(queue_cycle, 300), "alternative": per_call_us(raw_cycle, 300), "unit": "us",
               "how": "UpdateQueue (sqlite3 since B3; dataset/SQLAlchemy before) vs. bare sqlite3, same PRAGMAs, "
                      "3 transactions"}]
    queue.close()
    raw.close()
    common.shutil.rmtree(folder, ignore_errors=True)
    return result


SERVER = """
import socket, sys
from gevent import monkey; monkey.patch_all()
from gevent import pywsgi
class S(pywsgi.WSGIServer):
    def handle(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, addr)
def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("204 No Content", [])
    return [b""]
server = S(("127.0.0.1", int(sys.argv[1])), app, log=None)
print("up", flush=True)
server.serve_forever()
"""


def http_clients() -> list[dict]:
    port = common.free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True,
                              preexec_fn=common._die_with_parent)
    server.stdout.readline()
    url = f"http://127.0.0.1:{port}/tasks/{'0' * 24}/update"
    body = {"activity": "starting echo", "current_command_idx": 0, "log": "x" * 100}
    try:
        def cpu_per_request(send, n=1000) -> float:
            send()
            t0 = time.process_time()
            for _ in range(n):
                send()
            return (time.process_time() - t0) / n * 1e6

        session = requests.Session()
        auth = ("0" * 24, "s" * 64)
        now = cpu_per_request(lambda: session.post(url, json=body, auth=auth, timeout=30, allow_redirects=False))
        quiet = requests.Session()
        quiet.trust_env = False  # no proxy/netrc look-ups in the environment on every request
        no_env = cpu_per_request(lambda: quiet.post(url, json=body, auth=auth, timeout=30, allow_redirects=False))
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4)
        headers = {**urllib3.make_headers(basic_auth=":".join(auth)), "Content-Type": "application/json"}
        direct = cpu_per_request(lambda: pool.request("POST", url, body=json.dumps(body).encode(), headers=headers))
    finally:
        server.kill()
        server.wait()
    return [
        {"what": "client CPU per POST (requests.Session, as Upstream does)", "now": now, "alternative": no_env,
         "unit": "us", "how": "requests.Session vs. the same with trust_env = False"},
        {"what": "client CPU per POST (requests vs urllib3)", "now": now, "alternative": direct, "unit": "us",
         "how": "requests.Session vs. urllib3.HTTPConnectionPool.request with prepared headers"},
    ]


def main() -> None:
    rows = timestamps() + splitting() + queue_ops() + http_clients()
    print(f"{'what':<62} {'now':>10} {'alt.':>10}  ratio")
    for row in rows:
        print(f"{row['what']:<62} {row['now']:>8.2f}{row['unit'][:2]:>2} {row['alternative']:>8.2f}{row['unit'][:2]:>2}"
              f"  {row['now'] / row['alternative']:.1f}x")
    common.save_standalone("micro", rows=rows)


if __name__ == "__main__":
    main()
