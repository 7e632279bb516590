"""The fault-injecting Manager does what it says, and the delivery check catches what
it must: a lost update, a reordering, a duplicate without a lost response."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split


import types

import gevent
import pytest
import requests

from tests.support import relcheck, relharness
from tests.support.faults import KINDS, FaultProxy
from tests.support.jobs import counter, one_task_job
from tests.support.journal import queued
from tests.support.relharness import Step
from tests.support.waiting import wait_until

# --- the proxy, kind by kind --------------------------------------------------------


@pytest.fixture
def proxy(manager):
    p = FaultProxy(manager.url, slow_delay=0.6).up()
    yield p
    p.down()


def register(url, timeout=5.0):
    body = {"secret": "s" * 64, "platform": "linux", "supported_task_types": ["debug"], "nickname": "n"}
    return requests.post(url + "register-worker", json=body, timeout=timeout)


def test_unfaulted_requests_are_forwarded_and_recorded(proxy, manager):
    answer = register(proxy.url)
    assert answer.status_code == 200 and answer.json()["_id"]
    x = proxy.exchanges[0]
    assert (x.method, x.path, x.manager_status, x.client_status, x.fault, x.response_lost) == \
        ("POST", "/register-worker", 200, 200, None, False)
    assert x.body["nickname"] == "n" and len(manager.workers()) == 1


@pytest.mark.parametrize("kind, status, text", [
    ("html500", 500, "<html>"), ("garbage", 200, "{not json"), ("empty", 200, ""), ("wrongshape", 200, '["not"'),
])
def test_answers_that_are_not_forwarded(proxy, manager, kind, status, text):
    proxy.inject(kind, r"^/register-worker$")
    answer = register(proxy.url)
    assert answer.status_code == status and text in answer.content.decode(errors="replace")
    assert manager.workers() == [], "not forwarded"
    assert proxy.injected[kind] == 1 and proxy.exchanges[0].fault == kind
    assert register(proxy.url).status_code == 200, "only the next matching request"


def test_reset_closes_the_connection_before_forwarding(proxy, manager):
    proxy.inject("reset", r"^/register-worker$")
    with pytest.raises(requests.ConnectionError):
        register(proxy.url)
    assert manager.workers() == [] and proxy.exchanges[0].client_status is None


def test_drop_applies_the_request_and_loses_the_answer(proxy, manager):
    proxy.inject("drop", r"^/register-worker$")
    with pytest.raises(requests.ConnectionError):
        register(proxy.url)
    assert len(manager.workers()) == 1
    x = proxy.exchanges[0]
    assert x.manager_status == 200 and x.client_status is None and x.response_lost


def test_slow_applies_the_request_and_answers_after_the_client_gave_up(proxy, manager):
    proxy.inject("slow", r"^/register-worker$")
    with pytest.raises(requests.Timeout):  # the client's own timeout, not the late answer
        register(proxy.url, timeout=0.3)
    assert len(manager.workers()) == 1 and proxy.exchanges[0].response_lost


def test_an_answer_the_client_gave_up_waiting_for_counts_as_lost(proxy, manager):
    # No fault: the answer is merely late (a slow rewrite), and the client closed the connection.
    proxy.rewrite("POST", r"^/register-worker$", lambda answer: (gevent.sleep(0.5), answer)[1])
    with pytest.raises(requests.Timeout):
        register(proxy.url, timeout=0.2)
    wait_until(lambda: proxy.exchanges[0].client_status, timeout=5, what="the late answer")
    assert proxy.exchanges[0].fault is None and proxy.exchanges[0].response_lost
    assert len(manager.workers()) == 1


def test_down_refuses_connections_and_closes_idle_keep_alive_ones(proxy):
    session = requests.Session()
    assert session.get(proxy.url + "status-change", timeout=5).status_code == 401  # a kept-alive connection
    proxy.down()
    with pytest.raises(requests.ConnectionError):
        session.get(proxy.url + "status-change", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url + "status-change", timeout=5)
    proxy.up()
    assert session.get(proxy.url + "status-change", timeout=5).status_code == 401
    assert proxy.injected["refuse"] == 1 and len(proxy.outages) == 1


def test_a_request_being_served_when_the_proxy_goes_down_still_gets_its_answer(proxy, manager):
    proxy.inject("slow", r"^/register-worker$", delay=0.3)
    call = gevent.spawn(register, proxy.url)
    wait_until(lambda: proxy.exchanges, timeout=5, what="the request arrived")
    proxy.down()
    assert call.get(timeout=5).status_code == 200
    assert len(manager.workers()) == 1 and proxy.exchanges[0].client_status == 200


def test_outage_comes_back_by_itself_and_refuse_is_not_a_request_fault(proxy):
    proxy.outage(0.2).join(timeout=5)
    assert requests.get(proxy.url + "status-change", timeout=5).status_code == 401
    start, end = proxy.outages[0]
    assert 0.2 <= end - start < 1
    assert "refuse" in KINDS
    with pytest.raises(ValueError):
        proxy.inject("refuse")


# --- the delivery check -------------------------------------------------------------

T1, T2 = "a" * 24, "b" * 24
PRODUCED = [(T1, {"task_status": "active"}), (T1, {"log": "1"}), (T1, {"log": "2"}),
            (T1, {"activity": "x", "log": "3"}), (T2, {"log": "4"})]


def req(index, task, body, lost=False, generation=0):
    return relcheck.Request(index, task, body, lost, generation)


def test_check_accepts_coalesced_requests_in_order():
    applied = [req(0, T1, {"task_status": "active", "log": "1\n2"}), req(1, T1, {"log": "3", "activity": "x"}),
               req(2, T2, {"log": "4"})]
    d = relcheck.check(PRODUCED, applied)
    assert (d.delivered, d.duplicates, d.lost, d.problems) == (5, 0, 0, [])


def test_check_accepts_newest_wins_coalescing_and_ambiguous_runs():
    produced = [(T1, {"task_status": "active", "activity": "a"}), (T1, {"activity": "x", "log": "1"}),
                (T1, {"activity": "x"}), (T1, {"task_status": "completed", "activity": "done"})]
    whole = [req(0, T1, {"task_status": "completed", "activity": "done", "log": "1"})]
    assert relcheck.check(produced, whole).delivered == 4
    # {"activity": "x"} alone matches a run of one or of two: the checker must
    # not settle on the longer one when the next request needs the shorter.
    split = [req(0, T1, {"task_status": "active", "activity": "x", "log": "1"}), req(1, T1, {"activity": "x"}),
             req(2, T1, {"task_status": "completed", "activity": "done"})]
    d = relcheck.check(produced, split)
    assert (d.delivered, d.duplicates, d.problems) == (4, 0, [])
    after_final = produced + [(T1, {"log": "late"})]
    d = relcheck.check(after_final, [req(0, T1, {"task_status": "completed", "activity": "done", "log": "1\nlate"})])
    assert d.problems


def test_check_counts_a_lost_update():
    d = relcheck.check(PRODUCED, [req(0, T1, {"task_status": "active", "log": "1\n2"})])
    assert d.lost == 2 and d.delivered == 3


def test_check_catches_a_reordering():
    applied = [req(0, T1, {"task_status": "active"}), req(1, T1, {"log": "2"}), req(2, T1, {"log": "1"})]
    d = relcheck.check(PRODUCED, applied)
    assert d.problems and "request #1" in d.problems[0]


def test_check_v3_compares_the_taskupdate_the_edge_sends():
    produced = [(T1, {"task_status": "active", "activity": "a", "task_progress_percentage": 0}),
                (T1, {"metrics": {"timing": {"x": 1.0}}}),  # nothing a TaskUpdate carries
                (T1, {"log": "1"}), (T1, {"log": "2", "steps_completed": 1}),
                (T1, {"task_status": "completed", "activity": "done", "steps_completed": 2})]
    applied = [req(0, T1, {"taskStatus": "active", "activity": "a", "log": "1\n2\n", "steps_completed": 1}),
               req(1, T1, {"taskStatus": "completed", "activity": "done", "steps_completed": 2})]
    d = relcheck.check(produced, applied, relcheck.encode_v3)
    assert (d.produced, d.unsendable, d.delivered, d.lost, d.problems) == (4, 1, 4, 0, [])
    # The 2.x body of the same run is not what a v3 edge sends, and a log without
    # its final line break would run into the next batch's first line.
    as_v2 = [req(0, T1, {"task_status": "active", "activity": "a", "log": "1\n2", "steps_completed": 1})]
    assert relcheck.check(produced, as_v2, relcheck.encode_v3).problems
    unended = [req(0, T1, {"taskStatus": "active", "activity": "a", "log": "1\n2", "steps_completed": 1})]
    assert relcheck.check(produced, unended, relcheck.encode_v3).problems
    assert "soft-failed" not in str(relcheck.encode_v3({"task_status": "soft-failed", "log": "x"}))


def test_the_managers_records_may_swap_only_requests_in_flight_together():
    def sent(body, at, answered):
        return types.SimpleNamespace(body=body, forwarded_at=at, answered_at=answered)

    a, b = sent({"log": "1"}, 0.0, 5.0), sent({"log": "1\n2"}, 1.0, 2.0)  # a still at the Manager when b went
    assert relcheck.records_problem([a.body, b.body], [a, b]) == ""
    assert relcheck.records_problem([b.body, a.body], [a, b]) == ""
    answered_first = sent({"log": "1"}, 0.0, 0.5)
    assert "before one forwarded earlier" in relcheck.records_problem([b.body, a.body], [answered_first, b])
    assert "did not forward" in relcheck.records_problem([{"log": "x"}], [a])
    assert "did not record" in relcheck.records_problem([a.body], [a, b])


def test_check_allows_a_repeat_only_after_a_lost_response_or_a_restart():
    first = {"task_status": "active", "log": "1"}
    extended = {"task_status": "active", "log": "1\n2"}
    for lost, generation, allowed in ((True, 0, True), (False, 1, True), (False, 0, False)):
        applied = [req(0, T1, first, lost=lost), req(1, T1, extended, generation=generation)]
        d = relcheck.check(PRODUCED, applied)
        assert (not d.problems) is allowed, (lost, generation)
        if allowed:
            assert d.duplicates == 2 and d.delivered == 3


# --- every kind, once, against the real worker --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", relharness.PROTOCOLS)
def test_every_request_fault_on_the_update_path_with_the_real_worker(protocol, tmp_path):
    kinds = [k for k in KINDS if k != "refuse"]
    steps = [Step(after=4 + 3 * i, kind=kind, path=relharness.UPDATES) for i, kind in enumerate(kinds)]
    steps.append(Step(after=4 + 3 * len(kinds), kind="refuse", seconds=0.5))
    result = relharness.run(7, tmp_path, steps=steps, protocol=protocol)
    assert not result.problems, "\n".join(result.problems)
    assert not result.delivery.problems and result.delivery.lost == 0
    assert all(result.faults[kind] >= 1 for kind in KINDS), result.faults
    assert result.delivery.duplicates >= 1, "slow and drop make the Manager see an update twice"


# --- re-authentication ---------------------------------------------------------------


@pytest.mark.slow
def test_a_401_on_updates_makes_the_worker_sign_on_again(manager, worker_process, tmp_path):
    """The Manager forgot this worker while its updates waited: the flusher gets 401s,
    and the worker must sign on (register) again instead of retrying them forever."""
    stop = tmp_path / "stop"
    manager.submit_job(one_task_job(counter(10**9, stop)))
    proxy = FaultProxy(manager.url).up()
    try:
        w = worker_process(proxy.url)
        wait_until(lambda: manager.workers() and manager.tasks()[0]["status"] == "active", timeout=30)
        proxy.down()
        w.wait_for_output("cannot send task updates")
        manager.forget_worker(manager.workers()[0]["id"])
        stop.touch()
        proxy.up()
        wait_until(lambda: w.output.count("registered as worker") == 2, timeout=5,
                              what="a new registration")
        wait_until(lambda: queued(w.queue_db) == 0, timeout=5, what="the queue drained")
    finally:
        proxy.down()
