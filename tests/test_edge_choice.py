"""The edge is chosen once (fworker.edge.detect.EdgeChoice): never before the Manager's
generation is known, never twice, and every part speaks through that one choice.
In-process workers against the development Managers over 127.0.0.1."""
import functools
import math
import socket

import gevent
import pytest

from fworker import discovery, wiring
from fworker.edge import detect
from fworker.edge.v2 import V2Edge
from fworker.edge.v3 import V3Edge
from fworker.errors import RetryLater
from fworker.upstream import Upstream
from tests.support.faults import FaultProxy
from tests.support.waiting import wait_until
from tests.support.workers import build_worker

V2_ID, V2_SECRET = "a" * 24, "s" * 64  # 2.x credentials, as an old config file holds them


@pytest.fixture
def proxy(make_manager3):
    p = FaultProxy(make_manager3().url).up()
    yield p
    p.down()


def test_a_shutdown_during_detection_signs_off_nothing(proxy, tmp_path):
    """A Flamenco 3 Manager behind a proxy that answers 503 to /api/v3/version: the
    worker (auto, with 2.x credentials in its settings) is still asking when SIGTERM
    comes.  No edge was chosen, nothing signed on: nothing is signed off, and above
    all not with the 2.x credentials at a 2.x path."""
    proxy.answer("GET", r"^/api/v3/version$", 503, {"message": "starting"})
    worker = build_worker(tmp_path, proxy.url, worker_id=V2_ID, worker_secret=V2_SECRET, backoff_initial="0.05")
    starting = gevent.spawn(worker.start)
    try:
        wait_until(lambda: len(proxy.log) >= 2, what="the worker asking the version again")
        assert not worker.choice.chosen and worker.upstream.worker_id == ""
        worker.request_shutdown("received SIGTERM")
        starting.get(timeout=10)
    finally:
        starting.kill()
        worker.shutdown()
    assert {(method, path) for method, path, _ in proxy.log} == {("GET", "/api/v3/version")}, proxy.log


def test_after_detection_the_chosen_edge_signs_off_with_its_own_credentials(proxy, tmp_path):
    """The same worker once the Manager answers: it speaks api/v3 only, with the Flamenco 3
    credentials it registered; the 2.x ones are never sent."""
    worker = build_worker(tmp_path, proxy.url, worker_id=V2_ID, worker_secret=V2_SECRET)
    worker.start()
    assert worker.edge.dialect == "v3" and worker.upstream.worker_id != V2_ID
    assert worker.flusher.upstream is worker.status.upstream is worker.output.upstream is worker.choice
    with pytest.raises(RuntimeError, match="chosen once"):
        worker.choice.choose(detect.make_edge("v2", worker.upstream, worker.settings, None))
    worker.request_shutdown("received SIGTERM")
    worker.shutdown()
    paths = [path for _, path, _ in proxy.log]
    assert paths[-1] == "/api/v3/worker/sign-off"
    assert all(path.startswith("/api/v3/") for path in paths), paths


def test_a_manager_found_by_discovery_is_asked_its_version_once(make_manager3, tmp_path, monkeypatch, udp):
    """SSDP on loopback announces a Flamenco 3 Manager: discovery asks /api/v3/version to
    confirm it, and the worker takes that answer instead of asking again at start."""
    manager = make_manager3()

    def answer(sock):
        _data, sender = sock.recvfrom(65536)
        sock.sendto(f"HTTP/1.1 200 OK\r\nST: urn:flamenco:manager:0\r\nLOCATION: {manager.url}\r\n\r\n".encode(),
                    sender)

    monkeypatch.setattr(wiring.discovery, "discover", functools.partial(discovery.discover, target=udp.getsockname()))
    responder = gevent.spawn(answer, udp)
    worker = build_worker(tmp_path, "", discovery_timeout="10")
    responder.get(timeout=5)
    try:
        assert worker.choice.chosen and worker.edge.dialect == "v3"
        worker.start()
        assert worker.stats.manager_protocol == "v3" and worker.stats.manager_version
    finally:
        worker.request_shutdown("end of test")
        worker.shutdown()
    operations = [r["operation"] for r in manager.requests]
    assert operations.count("getVersion") == 1, operations
    assert operations[1:3] == ["registerWorker", "signOn"]


def test_a_candidate_that_cannot_answer_is_asked_again_at_start():
    """Discovery keeps only a definite answer: an unreachable candidate is left to start()."""
    answers: dict = {}
    settings = wiring.config.load(files=[], overrides={"http_timeout": "1"})
    assert wiring.confirm_candidate(settings, "http://127.0.0.1:9/", answers)  # auto: taken as it is
    assert answers == {}
    with pytest.raises(RetryLater):
        detect.ask_version(Upstream("http://127.0.0.1:9/", timeout=1))


def test_the_may_i_run_bound_is_the_edges(tmp_path):
    upstream = Upstream("http://127.0.0.1:9/", timeout=1)
    settings = wiring.config.load(files=[], overrides={"manager_url": upstream.manager_url})
    assert V2Edge(upstream, settings, None).may_i_run_max == math.inf
    assert V3Edge(upstream, settings, None).may_i_run_max == 10.0
    assert detect.NotChosen(upstream).may_i_run_max == math.inf


def test_before_the_choice_nothing_is_asked(tmp_path):
    """Parts built before the choice (the flusher, the status changes) get RetryLater,
    which they already treat as "the Manager is away": they never send anything."""
    choice = detect.EdgeChoice(Upstream("http://127.0.0.1:9/", timeout=1))
    for call in (choice.fetch_task, choice.sign_off, choice.status_change,
                 lambda: choice.send_update("t", {"log": "x"}), lambda: choice.establish(False)):
        with pytest.raises(RetryLater, match="not known yet"):
            call()
    assert not choice.chosen and choice.dialect == "" and choice.task_types() == []
    choice.close()  # nothing started, nothing to stop


def test_the_2x_edge_alone_leaves_steps_out():
    """The runner counts steps whatever the Manager; a 2.x Manager has no place for
    them: an update of steps only is not sent (the Manager here could not be reached)."""
    upstream = Upstream("http://127.0.0.1:9/", timeout=1)
    edge = V2Edge(upstream, wiring.config.load(files=[], overrides={"manager_url": upstream.manager_url}), None)
    assert edge.send_update("t", {"steps_completed": 3}).status == 204
    with pytest.raises(RetryLater):
        edge.send_update("t", {"steps_completed": 3, "log": "a line"})


def test_a_start_that_fails_before_the_flusher_runs_does_not_wait_for_it(tmp_path):
    """manager_protocol forces the edge, chosen at once; start() then fails before the
    flusher is started (the metrics port is taken).  Updates of an earlier run are
    queued: shutdown() must not wait shutdown_flush_timeout for a flusher that never
    ran, and they stay queued."""
    from fworker.errors import ConfigError
    from fworker.queue import UpdateQueue

    queue = UpdateQueue(str(tmp_path / "queue.sqlite"))
    queue.push("0123456789abcdef01234567", {"activity": "from the last run"})
    queue.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        worker = build_worker(tmp_path, "http://127.0.0.1:9/", manager_protocol="v2", metrics_host="127.0.0.1",
                              metrics_port=str(taken.getsockname()[1]), shutdown_flush_timeout="600")
        assert worker.choice.chosen
        # A bound where the timing is the behaviour: 600 s would be the wait; 60 s is the margin.
        with gevent.Timeout(60, AssertionError("shutdown() waited for a flusher that never ran")), \
                pytest.raises(ConfigError, match="cannot listen"):
            worker.run()
    reopened = UpdateQueue(str(tmp_path / "queue.sqlite"))
    try:
        assert len(reopened) == 1
    finally:
        reopened.close()
