"""The protocol pieces on their own, in this process with fake Managers:
the may-i-run poller, the output throttle, the state machine and its
acknowledgements, status requests, the registration token, idle pacing."""
import itertools
import logging
import time

import gevent
import jwt
import pytest

from fworker import config, registration
from fworker.errors import RetryLater
from fworker.states import State, StateMachine
from fworker.statuschange import StatusChanges
from fworker.taskwatch import MayIRunPoller, OutputThrottle
from fworker.upstream import Answer
from fworker.worker import IDLE_MAX, Worker
from tests.support.waiting import wait_until

TASK = "c" * 24


def json_answer(body, status=200):
    return Answer(status, body, repr(body))


class ScriptedUpstream:
    """Answers may-i-run from a script; an exception in it is raised."""

    def __init__(self, script):
        self.script = list(script)
        self.asked = 0

    def may_i_run(self, task_id):
        self.asked += 1
        step = self.script.pop(0) if self.script else json_answer({"may_keep_running": True})
        if isinstance(step, Exception):
            raise step
        return step


def test_may_i_run_poller_survives_bad_answers_and_stops_once(caplog):
    upstream = ScriptedUpstream([
        RetryLater("Manager not reachable"),
        Answer(200, "{not json", "{not json"),
        json_answer({"may_keep_running": "no"}),
        Answer(404, None, "Invalid ObjectID used for task-id"),
        ValueError("a bug somewhere"),  # not a protocol problem: the greenlet dies
        json_answer({"may_keep_running": True, "status_requested": "asleep"}),
        json_answer({"may_keep_running": False, "reason": "task is cancel-requested", "status_requested": "asleep"}),
    ])
    stops, lazy = [], []
    poller = MayIRunPoller(upstream, TASK, 0.005, lambda *args: stops.append(args), lazy.append).start()
    try:
        wait_until(lambda: stops, timeout=5, what="the stop")
        # After the stop the poller's loop ends by itself: it asks no more.
        wait_until(lambda: poller._greenlet.dead, timeout=5, what="the poller ended")
    finally:
        poller.kill()
    assert stops == [("the Manager says stop: task is cancel-requested", "asleep")]
    assert upstream.asked == 7, "it asked after every bad answer, and not after the stop"
    assert poller.restarts == 1
    assert lazy == ["asleep"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("may-i-run for task" in m for m in warnings) == 4
    assert any("crashed" in m and "a bug somewhere" in m for m in warnings)


class OutputManager:
    """Records /output-produced calls; each takes ``delay`` seconds."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls = []

    def output_produced(self, task_id, paths):
        self.calls.append((time.monotonic(), list(paths)))
        gevent.sleep(self.delay)
        return Answer(204, None, "")


def test_output_throttle_limits_calls_keeps_newest_and_never_blocks():
    upstream = OutputManager(delay=0.2)
    throttle = OutputThrottle(upstream, interval=0.1)
    paths = [f"/render/frame_{i:03d}.png" for i in range(60)]
    slowest_add = 0.0
    for path in paths:
        started = time.monotonic()
        throttle.add([path])
        slowest_add = max(slowest_add, time.monotonic() - started)
        gevent.sleep(0.005)
    wait_until(lambda: upstream.calls and upstream.calls[-1][1][-1] == paths[-1], timeout=5,
               what="the newest path sent")
    # Timing is the behaviour: add() only notes the paths, a greenlet sends (a send takes 0.2 s).
    assert slowest_add < upstream.delay / 2, "add() only notes the paths; a greenlet sends"
    times = [t for t, _ in upstream.calls]
    assert 2 <= len(times) < len(paths) / 3
    assert all(b - a >= 0.1 * 0.95 for a, b in itertools.pairwise(times))  # 5%: timer resolution
    assert all(0 < len(sent) <= OutputThrottle.KEEP for _, sent in upstream.calls)
    sent = [p for _, batch in upstream.calls for p in batch]
    assert sent == sorted(sent), "newest last, never an older path after a newer one"


def test_output_throttle_sends_paths_that_arrive_during_a_send():
    upstream = OutputManager(delay=0.1)
    throttle = OutputThrottle(upstream, interval=0.05)
    throttle.add(["/r/1.png"])
    wait_until(lambda: upstream.calls, timeout=5, what="the first call")
    throttle.add(["/r/2.png"])  # the first call is still on its way
    wait_until(lambda: len(upstream.calls) >= 2, timeout=5, what="the second call")
    assert [batch for _, batch in upstream.calls] == [["/r/1.png"], ["/r/2.png"]]


def test_output_throttle_reports_a_repeated_path_as_newest():
    throttle = OutputThrottle(OutputManager(), interval=10)
    throttle._last_sent = time.monotonic()  # a report just went out: these wait
    throttle.add(["/r/a.png", "/r/b.png"])
    throttle.add(["/r/a.png"])
    assert throttle._paths == ["/r/b.png", "/r/a.png"]
    throttle.flush()
    assert throttle.sent_calls == 1


class AckRecorder:
    def __init__(self, works=True):
        self.works = works
        self.acks = []

    def __call__(self, status):
        self.acks.append(status)
        return self.works


def test_state_machine_acknowledges_each_change_once():
    ack = AckRecorder()
    changes = []
    machine = StateMachine(ack, lambda old, new: changes.append((old, new)))
    assert machine.change(State.AWAKE, "started")
    assert not machine.change(State.AWAKE, "again")  # already there, and the Manager knows
    assert machine.change(State.ERROR, "check failed")
    assert machine.change(State.ASLEEP, "requested")
    assert not machine.change(State.ASLEEP, "requested again", asked=True)  # asked: ack again
    assert machine.change(State.SHUTDOWN, "bye")
    assert not machine.change(State.AWAKE, "too late")  # nothing leaves shutdown
    assert ack.acks == ["awake", "error", "asleep", "asleep"]
    assert changes == [(State.STARTING, State.AWAKE), (State.AWAKE, State.ERROR),
                       (State.ERROR, State.ASLEEP), (State.ASLEEP, State.SHUTDOWN)]


def test_state_machine_acknowledges_again_after_a_failed_ack():
    ack = AckRecorder(works=False)
    machine = StateMachine(ack)
    machine.change(State.ASLEEP, "signal")
    assert machine.acknowledged is None
    ack.works = True
    machine.catch_up()
    machine.catch_up()
    assert ack.acks == ["asleep", "asleep"] and machine.acknowledged is State.ASLEEP


class StatusManager:
    def __init__(self):
        self.acks = []

    def ack_status_change(self, status):
        self.acks.append(status)
        return Answer(204, None, "")


@pytest.mark.parametrize("requested, state, acks", [
    ("asleep", State.ASLEEP, ["asleep"]),
    ("error", State.ASLEEP, ["asleep"]),
    ("testing", State.ASLEEP, ["asleep"]),
    ("reboot", State.ASLEEP, ["asleep"]),
    ("awake", State.AWAKE, ["awake"]),  # already awake, but asked: acknowledged again
    ("shutdown", State.SHUTDOWN, []),
])
def test_status_requests(requested, state, acks):
    upstream, shutdowns = StatusManager(), []
    status = StatusChanges(upstream, on_shutdown=shutdowns.append)
    status.machine.state = State.AWAKE
    assert status.apply(requested, "Manager")
    assert status.machine.state is state
    assert upstream.acks == acks
    assert len(shutdowns) == (requested == "shutdown")


@pytest.mark.parametrize("requested", [None, 42, "", ["asleep"]])
def test_malformed_status_requests_change_nothing(requested):
    upstream = StatusManager()
    status = StatusChanges(upstream, on_shutdown=lambda reason: pytest.fail("no shutdown"))
    status.machine.state = State.AWAKE
    assert not status.apply(requested, "Manager")
    assert status.machine.state is State.AWAKE and upstream.acks == []


def test_registration_token_is_a_short_lived_hs256_jwt():
    secret = "a-shared-registration-secret-of-32+-bytes"
    token = registration.registration_token(secret)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert abs(claims["iat"] - time.time()) < 5
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, secret.upper(), algorithms=["HS256"])


def test_idle_worker_asks_within_the_managers_timeout_with_jitter(tmp_path):
    settings = config.load(files=[], overrides={"manager_url": "http://127.0.0.1:9/", "fetch_task_interval": 600,
                                                "task_update_queue_db": str(tmp_path / "q.sqlite")})
    worker = Worker(settings, credentials_path=None)
    try:
        delays = [worker._idle_delay() for _ in range(200)]
    finally:
        worker.queue.close()
    assert max(delays) <= IDLE_MAX * 1.2 < 60 / 2
    assert min(delays) >= IDLE_MAX * 0.8
    assert max(delays) - min(delays) > IDLE_MAX * 0.1, "jittered, not in lock-step"
