"""A request to the Manager is bounded as a whole: one deadline for connect, send,
headers and body, and a largest answer it reads.  Against real slow and oversized
answers on 127.0.0.1 (tests/support/slowmanager.py)."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import json
import signal
import time

import gevent
import pytest

from fworker.errors import RetryLater
from fworker.upstream import MAX_ANSWER_BYTES, Upstream
from tests.support.slowmanager import SlowManager, chunked
from tests.support.waiting import wait_until

# 50 MB: what a hostile Manager sent on every request, more than three times the limit.
HUGE = 50 * 1000 * 1000


@pytest.fixture
def slow():
    started = []

    def make(**kwargs):
        server = SlowManager(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def test_a_trickling_answer_ends_at_the_deadline_not_at_a_read_timeout(slow):
    """A byte every 0.1 s keeps every read well inside its timeout; before the deadline
    per request, this request never ended (the server trickles for ever)."""
    server = slow(interval=0.1)
    upstream = Upstream(server.url, timeout=1.0)
    started = time.monotonic()
    with (gevent.Timeout(60, AssertionError("the request was not bounded by its deadline")),
          pytest.raises(RetryLater, match=r"POST task: no complete answer from the Manager within 1 s")):
        upstream.fetch_task()
    # Timing is the behaviour here: a 1 s deadline.  The margin is wide (a loaded
    # machine); without the deadline this would be "never".
    assert time.monotonic() - started < 15
    # The half-read connection is closed, not returned to the pool for the next request.
    wait_until(lambda: server.closed_by_client == 1, 10, what="the server to see the connection closed")
    server.trickled = 0  # the next answer arrives at once, on a new connection
    assert upstream.fetch_task().status == 204
    assert len(server.requests) == 2


def test_a_slow_but_steady_answer_within_the_deadline_is_read(slow):
    server = slow(head=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n",
                  body=b'{"ok": "yes"}', interval=0.01, trickled=40)
    answer = Upstream(server.url, timeout=30).fetch_task()
    assert (answer.status, answer.body) == (200, {"ok": "yes"})


def test_the_last_requests_of_a_stopping_worker_have_a_shorter_deadline(slow, monkeypatch):
    """A stopping worker does not wait the full http_timeout for a silent Manager."""
    monkeypatch.setattr("fworker.upstream.BRIEF_DEADLINE", 0.5)
    server = slow(interval=0.1)
    upstream = Upstream(server.url, timeout=120)
    upstream.set_credentials("w" * 24, "secret")
    with gevent.Timeout(60, AssertionError("not bounded by their own deadline")):
        with pytest.raises(RetryLater, match=r"POST sign-off: no complete answer .* within 0.5 s"):
            upstream.sign_off()
        with pytest.raises(RetryLater, match=r"POST output-produced: no complete answer .* within 0.5 s"):
            upstream.output_produced(["/render/0001.png"])


def test_an_answer_announcing_too_many_bytes_is_refused_unread(slow):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % HUGE
    server = slow(head=head, body=b"[" + b" " * (HUGE - 2) + b"]", trickled=0)
    with pytest.raises(RetryLater, match=rf"announces {HUGE} bytes, more than the 16 MiB this worker reads"):
        Upstream(server.url, timeout=30).fetch_task()
    wait_until(lambda: server.closed_by_client == 1, 10, what="the server to see the connection closed")
    # What the socket buffers took before the client closed, never the whole answer.
    assert server.sent < HUGE / 2


def test_an_answer_without_a_length_is_read_only_up_to_the_limit(slow):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = slow(head=head, body=chunked(b"[" + b"1," * (HUGE // 2) + b"1]"), trickled=0)
    with pytest.raises(RetryLater, match=r"answer \(200\) is longer than the 16 MiB this worker reads"):
        Upstream(server.url, timeout=30).fetch_task()
    wait_until(lambda: server.closed_by_client == 1, 10, what="the server to see the connection closed")
    assert server.sent < HUGE / 2


def test_a_large_task_below_the_limit_is_read(slow):
    """Tasks with big settings exist: several MB of JSON are fine."""
    task = json.dumps({"_id": "0" * 24, "settings": "s" * (MAX_ANSWER_BYTES - 1000)}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(task)
    server = slow(head=head, body=task, trickled=0)
    answer = Upstream(server.url, timeout=60).fetch_task()
    assert answer.status == 200 and len(answer.body["settings"]) == MAX_ANSWER_BYTES - 1000


@pytest.mark.slow  # the real worker process, and a sign-off that waits out its deadline
@pytest.mark.parametrize("credentials", [False, True], ids=["registering", "signing-on"])
def test_sigterm_does_not_wait_for_a_trickling_manager(slow, worker_process, credentials):
    """Before, a Manager trickling a byte a second held SIGTERM for over a minute: every
    read got its byte in time.  Now the request in flight is dropped at once, and the
    sign-off at the end has a deadline of its own."""
    server = slow(interval=0.1)
    settings = {"http_timeout": "600",  # the per-request deadline, too: only SIGTERM can end this
                "manager_protocol": "v2"}  # 2.x's requests from the first (auto asks /api/v3/version first)
    if credentials:
        settings.update(worker_id="a" * 24, worker_secret="s" * 64)
    worker = worker_process(server.url, settings)
    wait_until(lambda: server.requests, 30, what="the worker's first request")
    worker.send(signal.SIGTERM)
    # 600 s per request is what the worker would wait without the interruption; the
    # bound leaves room for a loaded machine and, with credentials, the 10 s sign-off.
    assert worker.wait(timeout=60) == 0, worker.output
    first = "POST /register-worker" if not credentials else "POST /sign-on"
    assert server.requests[0].startswith(first.encode())
    if credentials:
        assert server.requests[-1].startswith(b"POST /sign-off"), server.requests
        assert "could not sign off" in worker.output and "within 10 s" in worker.output
    else:
        assert len(server.requests) == 1, "no sign-off without credentials"
