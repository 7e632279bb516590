"""A Manager that answers quickly but never as the protocol says must not make the
worker ask at full speed: the backoff grows until a request succeeds at the protocol
level (a valid task, 204, a well-formed 423), whatever HTTP answer came back.  Before,
any answer reset it: a 401 on /task with a 204 on sign-on looped with no wait at all,
3xx/4xx and malformed tasks at the initial delay, a 50 MB answer was downloaded on
every try.  Real worker processes, the development Manager behind the fault proxy."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import time

import pytest

from tests.support.faults import FaultProxy
from tests.support.jobs import echo, submit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # real worker processes, a window of seconds each

INITIAL, MAXIMUM = 0.05, 1.0
SETTINGS = {"backoff_initial": str(INITIAL), "backoff_max": str(MAXIMUM), "fetch_task_interval": "0.1"}
WINDOW = 4.0  # seconds of hostile answers counted, from the first one
HUGE = 50 * 1000 * 1000


def expected_requests(window: float, initial: float, maximum: float) -> float:
    """How many attempts fit in ``window`` on average: each wait is drawn between 1/20
    of its ceiling and the ceiling, which doubles from ``initial`` up to ``maximum``."""
    count, elapsed, ceiling = 1, 0.0, initial
    while True:
        elapsed += ceiling * (1 + 1 / 20) / 2
        if elapsed > window:
            return count
        count, ceiling = count + 1, min(maximum, ceiling * 2)


# Twice the average (about 11 here) plus two: the sum of a dozen jittered waits falls
# below half its mean essentially never.  Resetting on every answer made it 150-400.
MOST = 2 * expected_requests(WINDOW, INITIAL, MAXIMUM) + 2

CASES = {
    "401-on-task": ((401, b"Unauthorized\n", "text/plain"), "refused this worker's credentials (401)"),
    "302": ((302, b"", "text/html"), "Manager answered 302"),
    "418": ((418, b"I'm a teapot\n", "text/plain"), "Manager answered 418"),
    "malformed-task": ((200, b'["not", "a", "task"]\n', "application/json"),
                       "the Manager sent a malformed task: task is not a JSON object but list"),
    "50MB-body": ((200, b" " * HUGE, "application/json"),
                  f"announces {HUGE} bytes, more than the 16 MiB this worker reads; not read"),
}


@pytest.fixture
def proxy(manager):
    p = FaultProxy(manager.url).up()
    yield p
    p.down()


def in_window(proxy, path, start):
    return [x for x in proxy.exchanges if x.path == path and start <= x.started <= start + WINDOW]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_manager_answering_wrongly_is_asked_less_and_less_often(manager, proxy, worker_process, case):
    (status, body, content_type), message = CASES[case]
    proxy.answer("POST", r"^/task$", status, body, content_type=content_type)
    w = worker_process(proxy.url, SETTINGS)
    first = wait_until(lambda: next((x for x in proxy.exchanges if x.path == "/task"), None), 30,
                       what="the first request for a task")
    # The window is the measurement: the rate of requests over it is the behaviour.
    wait_until(lambda: time.monotonic() > first.started + WINDOW, WINDOW + 5, what="the end of the window")
    fetches = len(in_window(proxy, "/task", first.started))
    sign_ons = len(in_window(proxy, "/sign-on", first.started))
    assert 2 <= fetches <= MOST, f"{fetches} requests for a task in {WINDOW:g} s (at most {MOST})"
    if case == "401-on-task":
        assert 1 <= sign_ons <= fetches, "signs on again after each 401, no more often"
    else:
        assert sign_ons == 0
    assert message in w.output
    # Once the Manager answers properly again, the worker works at once.
    proxy.clear()
    _, task_id = submit(manager, echo("back to work"))
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=60)
    assert w.proc.poll() is None


def test_a_malformed_status_change_answer_while_asleep_backs_off(manager, proxy, worker_process):
    """The asleep worker's poll: a 200 without a status request is no success either."""
    proxy.answer("POST", r"^/task$", 423, {"status_requested": "asleep"})
    proxy.answer(None, r"^/ack-status-change/", 204, b"")
    proxy.answer("GET", r"^/status-change$", 200, {"unexpected": True})
    w = worker_process(proxy.url, SETTINGS)
    first = wait_until(lambda: next((x for x in proxy.exchanges if x.path == "/status-change"), None), 30,
                       what="the first status-change poll")
    wait_until(lambda: time.monotonic() > first.started + WINDOW, WINDOW + 5, what="the end of the window")
    polls = len(in_window(proxy, "/status-change", first.started))
    assert 2 <= polls <= MOST, f"{polls} polls in {WINDOW:g} s (at most {MOST})"
    assert "sent a malformed status request None" in w.output
    assert w.proc.poll() is None


def test_updates_refused_with_an_unexpected_answer_are_retried_less_and_less_often(manager, proxy,
                                                                                   worker_process):
    """The flusher's backoff, too, only starts over when an update is taken (204)."""
    proxy.answer("POST", r"/update$", 418, b"I'm a teapot\n")
    _, task_id = submit(manager, echo("kept until delivered"))
    w = worker_process(proxy.url, SETTINGS)
    first = wait_until(lambda: next((x for x in proxy.exchanges if x.path.endswith("/update")), None), 30,
                       what="the first update")
    wait_until(lambda: time.monotonic() > first.started + WINDOW, WINDOW + 5, what="the end of the window")
    sent = [x for x in proxy.updates() if first.started <= x.started <= first.started + WINDOW]
    assert 2 <= len(sent) <= MOST, f"{len(sent)} update requests in {WINDOW:g} s (at most {MOST})"
    assert "unexpected answer 418" in w.output
    proxy.clear()  # nothing was lost meanwhile
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=60)
    assert "kept until delivered" in manager.task_log(task_id)
