"""The development Manager's worker API: the flows of docs/PROTOCOL.md §4 over real
HTTP."""
import socket
import time

import gevent
import pytest
import requests
from gevent import pywsgi

from fworker.devmanager import auth, common, server
from tests.support.client import UA, WorkerClient, basic
from tests.support.jobs import job, task
from tests.support.waiting import wait_until


def status_of(manager, task_id):
    return manager.task(task_id)["status"]


# Registration and sign-on

def test_registration_answers_the_worker_document(manager):
    client = WorkerClient(manager, task_types=["debug", "blender"], nickname="box", platform="darwin")
    response = client.register()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.text.endswith("}\n")
    doc = response.json()
    assert len(doc["_id"]) == 24 and int(doc["_id"], 16) >= 0
    assert doc["nickname"] == "box" and doc["platform"] == "darwin"
    stored = manager.worker(doc["_id"])
    assert stored["supported_task_types"] == ["debug", "blender"]
    assert stored["software"] == UA and stored["status"] == ""
    assert "secret_hash" not in stored and client.secret not in repr(stored)


def test_every_registration_creates_a_new_worker(manager):
    first, second = WorkerClient(manager), WorkerClient(manager)
    first.register(), second.register()
    assert first.id != second.id
    assert {w["id"] for w in manager.workers()} == {first.id, second.id}


def test_registration_reads_legacy_supported_job_types(manager):
    response = WorkerClient(manager).call("POST", "register-worker", auth=False, json={
        "secret": "x" * 64, "platform": "linux", "supported_job_types": ["old"], "nickname": "n"})
    assert response.status_code == 200
    assert manager.worker(response.json()["_id"])["supported_task_types"] == ["old"]


def test_sign_on_sets_starting_and_updates_nickname_and_task_types(manager):
    client = WorkerClient(manager)
    client.register()
    response = client.call("POST", "sign-on", json={"nickname": "renamed",
                                                    "supported_task_types": ["ffmpeg"]})
    assert response.status_code == 204 and response.content == b""
    stored = manager.worker(client.id)
    assert (stored["status"], stored["nickname"], stored["supported_task_types"]) == \
        ("starting", "renamed", ["ffmpeg"])
    assert client.call("POST", "sign-on", json={}).status_code == 204
    assert manager.worker(client.id)["nickname"] == "renamed"


# Asking for work

def test_task_json_is_the_protocol_shape(manager, client):
    ids = manager.submit_job(job(task("a"), task("b", parents=["a"])))
    response = client.ask()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json" and response.text.endswith("\n")
    doc = response.json()
    assert set(doc) == {"_id", "job", "manager", "project", "user", "name", "status", "priority",
                        "job_priority", "job_type", "task_type", "commands", "worker"}
    assert doc["_id"] == ids["task_ids"][0] and doc["job"] == ids["job_id"]
    assert doc["status"] == "active" and doc["name"] == "a" and doc["task_type"] == "debug"
    assert doc["priority"] == 50 and doc["job_priority"] == 50 and doc["job_type"] == "debug"
    assert doc["commands"] == [{"name": "echo", "settings": {"message": "hi from a"}}]
    assert len(doc["manager"]) == 24 and doc["project"] == "" and doc["user"] == ""
    assert manager.task(doc["_id"])["worker"] == client.id
    assert manager.worker(client.id)["status"] == "awake"
    client.update(doc["_id"], task_status="completed")
    child = client.ask().json()
    assert child["parents"] == [doc["_id"]]


def test_nothing_to_do_is_204(manager, client):
    response = client.ask()
    assert response.status_code == 204 and response.content == b""


def test_no_supported_task_types_is_406(manager):
    client = WorkerClient(manager, task_types=[]).join()
    manager.submit_job(job())
    response = client.ask()
    assert response.status_code == 406
    assert response.text == "You do not support any task types.\n"


@pytest.mark.parametrize("lazy", [False, True])
def test_pending_status_request_is_423_before_anything_else(manager, lazy):
    client = WorkerClient(manager, task_types=[]).join()  # would otherwise be a 406
    manager.request_status(client.id, "asleep", lazy=lazy)
    response = client.ask()
    assert response.status_code == 423
    assert response.json() == {"status_requested": "asleep"}
    assert response.headers["Content-Type"] == "application/json"


def test_the_active_task_is_delivered_again(manager, client):
    manager.submit_job(job(task("a"), task("b")))
    first = client.take()
    assert client.take() == first
    assert [t["status"] for t in manager.tasks()] == ["active", "queued"]


def test_scheduling_order_is_job_priority_then_priority_then_age(manager):
    low_job = manager.submit_job(job(task("low-job"), priority=10))["task_ids"]
    old, new, top = manager.submit_job(job(task("old"), task("new"), task("top", priority=90),
                                      priority=60))["task_ids"]
    order = []
    client = WorkerClient(manager).join()
    for _ in range(4):
        order.append(client.take())
        client.update(order[-1], task_status="completed")
    assert order == [top, old, new, low_job[0]]


def test_only_supported_task_types_and_completed_parents(manager):
    render, encode = manager.submit_job(job(task("render", task_type="blender"),
                                       task("encode", task_type="ffmpeg", parents=["render"])))["task_ids"]
    encoder = WorkerClient(manager, task_types=["ffmpeg"]).join()
    assert encoder.ask().status_code == 204  # its only task waits for its parent
    renderer = WorkerClient(manager, task_types=["blender"]).join()
    assert renderer.take() == render
    renderer.update(render, task_status="failed")
    assert encoder.ask().status_code == 204  # a failed parent holds it back too
    manager.store.update_task(render, status="completed")
    assert encoder.take() == encode


def test_concurrent_workers_never_share_a_task(manager):
    manager.submit_job(job(*[task(f"t{i}") for i in range(8)]))
    clients = [WorkerClient(manager).join() for _ in range(8)]
    jobs = [gevent.spawn(client.take) for client in clients]
    gevent.joinall(jobs, raise_error=True)
    taken = [g.value for g in jobs]
    assert len(set(taken)) == 8
    assert {manager.task(t)["worker"] for t in taken} == {c.id for c in clients}
    assert manager.store.db.connections == {}  # every greenlet's connection was released


# Task updates

def test_updates_are_recorded_and_applied(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    bodies = [{"task_status": "active", "activity": "starting echo", "log": "2024-01-01T00:00:00Z: one"},
              {"current_command_idx": 0, "command_progress_percentage": 50, "task_progress_percentage": 40,
               "log": "2024-01-01T00:00:01Z: two\n2024-01-01T00:00:02Z: three", "extra": [1]},
              {"metrics": {"timing": {"echo": 0.25}}}]
    for body in bodies:
        assert client.update(task_id, **body).status_code == 204
    stored = manager.task(task_id)
    assert stored["status"] == "active" and stored["activity"] == "starting echo"
    assert (stored["task_progress_percentage"], stored["command_progress_percentage"]) == (40, 50)
    assert stored["metrics"] == {"timing": {"echo": 0.25}} and stored["last_ping"]
    assert manager.task_updates(task_id) == bodies  # as received, unknown keys included
    rows = list(manager.store.db["task_updates"].find(task=task_id, order_by="seq"))
    assert [row["log"] for row in rows] == [body.get("log") for body in bodies]
    assert not any('"log"' in row["body"] for row in rows)  # stored once, in its own column
    assert manager.task_log(task_id) == stored["log"] == (
        "2024-01-01T00:00:00Z: one\n2024-01-01T00:00:01Z: two\n2024-01-01T00:00:02Z: three")
    assert client.update(task_id, task_status="completed", activity="Task completed").status_code == 204
    assert status_of(manager, task_id) == "completed"


def test_update_of_a_task_no_longer_active_keeps_only_the_log(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    assert client.give_back(task_id).status_code == 204
    response = client.update(task_id, task_status="completed", activity="late", log="late line")
    assert response.status_code == 204
    stored = manager.task(task_id)
    assert stored["status"] == "queued" and stored["activity"] != "late"
    assert stored["log"] == "late line"
    assert manager.task_updates(task_id)[-1]["task_status"] == "completed"


def test_update_of_an_unknown_task_is_404(manager, client):
    unknown = "0123456789abcdef01234567"
    response = client.update(unknown, log="x")
    assert response.status_code == 404
    assert response.text == f"Task {unknown} is unknown.\n"


def test_update_of_another_workers_task_is_409(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    other = WorkerClient(manager).join()
    other.take()
    response = client.update(task_id, log="not mine")
    assert response.status_code == 409
    assert response.text == f"Task {task_id} is assigned to another worker.\n"
    assert manager.task_updates(task_id) == []


@pytest.mark.parametrize("new_owner", ["", "f" * 24])
def test_reassigned_task_is_409_for_the_old_worker(manager, client, new_owner):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.reassign_task(task_id, new_owner)
    assert client.update(task_id, log="x").status_code == 409
    answer = client.may_i_run(task_id)
    assert answer["may_keep_running"] is False and "another worker" in answer["reason"]
    assert manager.task(task_id)["worker"] == new_owner
    assert status_of(manager, task_id) == ("active" if new_owner else "queued")


def test_failed_update_counts_a_failure_for_the_worker(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    assert client.update(task_id, task_status="failed", activity="exit code 1").status_code == 204
    stored = manager.task(task_id)
    assert stored["status"] == "failed" and stored["activity"] == "exit code 1"
    assert [entry["id"] for entry in stored["failed_by_workers"]] == [client.id]
    assert manager.worker(client.id)["failures"] == 1
    assert manager.store.failures()[0]["task_type"] == "debug"


# Giving tasks back

def test_return_requeues_an_owned_active_task(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    response = client.give_back(task_id)
    assert response.status_code == 204
    stored = manager.task(task_id)
    assert stored["status"] == "queued" and stored["worker"] == ""
    other = WorkerClient(manager).join()
    assert other.take() == task_id


def test_return_of_someone_elses_task_changes_nothing(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    other = WorkerClient(manager).join()
    other.take()
    assert client.give_back(task_id).status_code == 204
    assert manager.task(task_id)["worker"] == other.id and status_of(manager, task_id) == "active"


def test_return_of_an_unknown_task_is_404_with_empty_body(manager, client):
    response = client.give_back("0123456789abcdef01234567")
    assert response.status_code == 404 and response.content == b""


def test_sign_off_requeues_active_tasks_and_marks_offline(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    response = client.call("POST", "sign-off")
    assert response.status_code == 204
    assert status_of(manager, task_id) == "queued" and manager.task(task_id)["worker"] == ""
    stored = manager.worker(client.id)
    assert stored["status"] == "offline" and stored["signed_off"] == 1
    assert ("POST", "/sign-off", 204) in manager.requests_log


# may-i-run

def test_may_i_run_yes_pings_the_task(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.store.update_task(task_id, last_ping="")
    assert client.may_i_run(task_id) == {"may_keep_running": True}
    assert manager.task(task_id)["last_ping"]


def test_may_i_run_checks_in_the_protocol_order(manager, client):
    mine, others = manager.submit_job(job(task("mine"), task("others")))["task_ids"]
    client.take()
    other = WorkerClient(manager).join()
    other.take()
    manager.cancel_task(others)
    manager.request_status(client.id, "asleep")
    unknown = "0" * 24
    # Each answer names the first rule that applies, and the request rides along.
    assert client.may_i_run(unknown) == {"may_keep_running": False, "status_requested": "asleep",
                                         "reason": f"task {unknown} is unknown"}
    answer = client.may_i_run(others)  # another's AND cancel-requested
    assert "reassigned to another worker" in answer["reason"]
    manager.cancel_task(mine)  # not active AND a status request pending
    assert "cancel-requested, not active" in client.may_i_run(mine)["reason"]


@pytest.mark.parametrize("requested, lazy, allowed", [
    ("asleep", False, False), ("shutdown", False, False), ("asleep", True, True),
    ("shutdown", True, True), ("awake", False, True)])
def test_may_i_run_with_a_status_request(manager, client, requested, lazy, allowed):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.request_status(client.id, requested, lazy=lazy)
    answer = client.may_i_run(task_id)
    assert answer["may_keep_running"] is allowed
    assert answer["status_requested"] == requested
    assert ("reason" in answer) is not allowed


# Status changes

def test_status_change_polling_and_acknowledgement(manager, client):
    response = client.call("GET", "status-change")
    assert response.status_code == 204 and response.content == b""
    manager.request_status(client.id, "asleep", lazy=True)
    assert manager.worker(client.id)["lazy_status_request"] is True
    response = client.call("GET", "status-change")
    assert response.status_code == 200 and response.json() == {"status_requested": "asleep"}
    assert client.call("POST", "ack-status-change/asleep").status_code == 204
    stored = manager.worker(client.id)
    assert (stored["status"], stored["status_requested"], stored["lazy_status_request"]) == \
        ("asleep", "", False)
    assert manager.acks == [(client.id, "asleep")]
    assert client.call("GET", "status-change").status_code == 204


def test_acknowledging_another_status_keeps_the_request(manager, client):
    manager.request_status(client.id, "shutdown")
    assert client.call("POST", "ack-status-change/testing").status_code == 204
    stored = manager.worker(client.id)
    assert stored["status"] == "testing" and stored["status_requested"] == "shutdown"


# Produced output

def test_output_produced(manager, client):
    paths = ["/render/frame_0001.png", "/render/frame_0002.png"]
    assert client.call("POST", "output-produced", json={"paths": paths}).status_code == 204
    assert manager.output_produced() == [paths] and manager.output_produced(client.id) == [paths]
    assert manager.output_produced("f" * 24) == []
    for body in ({"paths": []}, {}):
        assert client.call("POST", "output-produced", json=body).status_code == 422
    assert client.call("POST", "output-produced", json={"paths": "/x"}).status_code == 400


# Cancelling

def test_cancelling_an_active_task(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    assert manager.cancel_task(task_id) == "cancel-requested"
    assert client.may_i_run(task_id)["may_keep_running"] is False
    assert client.update(task_id, task_status="failed", log="killed").status_code == 204
    assert status_of(manager, task_id) == "canceled" and manager.task_log(task_id) == "killed"
    assert manager.worker(client.id)["failures"] == 0  # a cancellation is not a failure


def test_returning_a_cancel_requested_task_cancels_it(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.cancel_task(task_id)
    client.give_back(task_id)
    assert status_of(manager, task_id) == "canceled"


def test_cancelling_a_job(manager, client):
    ids = manager.submit_job(job(task("a"), task("b")))
    client.take()
    manager.cancel_job(ids["job_id"])
    assert [status_of(manager, t) for t in ids["task_ids"]] == ["cancel-requested", "canceled"]
    assert manager.job(ids["job_id"])["status"] == "canceled"
    assert client.update(ids["task_ids"][0], task_status="completed").status_code == 204
    assert status_of(manager, ids["task_ids"][0]) == "cancel-requested"  # only failed/canceled end it
    client.update(ids["task_ids"][0], task_status="canceled")
    assert status_of(manager, ids["task_ids"][0]) == "canceled"


# Timeouts

def test_silent_awake_worker_times_out_and_loses_its_task(make_manager):
    manager = make_manager(worker_timeout=0.3)
    task_id = manager.submit_job(job())["task_ids"][0]
    silent = WorkerClient(manager).join()
    silent.take()
    sleeper = WorkerClient(manager).join()
    assert sleeper.call("POST", "ack-status-change/asleep").status_code == 204
    wait_until(lambda: manager.worker(silent.id)["status"] == "timeout", timeout=5)
    assert status_of(manager, task_id) == "queued" and manager.task(task_id)["worker"] == ""
    assert manager.worker(sleeper.id)["status"] == "asleep"  # asleep workers are not timed out
    assert silent.ask().status_code == 200  # talking again: awake, and the task is back
    assert manager.worker(silent.id)["status"] == "awake"


def test_unpinged_task_fails(make_manager):
    manager = make_manager(task_ping_timeout=0.3)
    task_id = manager.submit_job(job())["task_ids"][0]
    client = WorkerClient(manager).join()
    client.take()
    wait_until(lambda: status_of(manager, task_id) == "failed", timeout=5)
    assert "timed out" in manager.task(task_id)["activity"]


def test_pings_keep_a_task_alive(make_manager):
    manager = make_manager(task_ping_timeout=0.2)
    task_id = manager.submit_job(job())["task_ids"][0]
    client = WorkerClient(manager).join()
    client.take()
    until = time.monotonic() + 0.6  # three timeouts' worth of pinging every 50 ms

    def pinged_long_enough():
        assert client.may_i_run(task_id)["may_keep_running"] is True
        return time.monotonic() > until

    wait_until(pinged_long_enough, timeout=5, interval=0.05)
    assert status_of(manager, task_id) == "active"


# Forgetting

def test_a_forgotten_worker_gets_401_and_its_task_back_in_the_queue(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.forget_worker(client.id)
    response = client.call("POST", "sign-on", json={})
    assert response.status_code == 401
    assert status_of(manager, task_id) == "queued"
    assert client.register().status_code == 200 and client.take() == task_id


def test_a_forgotten_task_is_404(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    manager.forget_task(task_id)
    assert client.update(task_id, log="x").status_code == 404
    assert client.may_i_run(task_id)["may_keep_running"] is False


# Persistence and performance

def test_state_survives_a_restart(make_manager):
    first = make_manager("same.sqlite")
    task_id = first.submit_job(job())["task_ids"][0]
    client = WorkerClient(first).join()
    client.take()
    client.update(task_id, log="before restart")
    manager_id = first.store.manager_id
    first.stop()
    second = make_manager("same.sqlite")
    client.manager = second
    assert client.take() == task_id  # same credentials, same active task
    assert second.task_log(task_id) == "before restart"
    assert second.store.manager_id == manager_id
    assert second.worker(client.id)["nickname"] == "tester"


def test_a_stopped_manager_does_not_answer(manager, client):
    session = requests.Session()
    assert session.get(manager.url, timeout=5).status_code == 200
    manager.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(manager.url, timeout=5)


def test_every_connection_has_tcp_nodelay(monkeypatch):
    """Without it each keep-alive request waits ~40 ms for a delayed ACK (FIELD-NOTES)."""
    options = []
    handle = pywsgi.WSGIServer.handle

    def recording_handle(self, sock, address):
        options.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return handle(self, sock, address)

    monkeypatch.setattr(pywsgi.WSGIServer, "handle", recording_handle)

    def app(environ, start_response):
        start_response("204 No Content", [])
        return [b""]

    srv = server.make_server("127.0.0.1", 0, app)
    srv.start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/"
        with requests.Session() as session:  # one keep-alive connection, then a new one
            assert session.get(url, timeout=5).status_code == 204
            assert session.get(url, timeout=5).status_code == 204
        assert requests.get(url, timeout=5).status_code == 204
    finally:
        srv.stop()
    assert len(options) == 2 and all(options)


# Presence: last_seen is written at most once a second (PERFORMANCE.md B5)

def count_worker_writes(monkeypatch, store):
    """The fields of each write to a worker row, from now on."""
    writes = []
    real = store.update_worker

    def update_worker(worker_id, **fields):
        writes.append(fields)
        real(worker_id, **fields)

    monkeypatch.setattr(store, "update_worker", update_worker)
    return writes


def test_last_seen_is_written_when_a_second_old_or_something_changed(roster, monkeypatch):
    roster, clock = roster
    worker_id = roster.register({"secret": "s" * 20, "supported_task_types": ["debug"]}, UA, "10.0.0.1")["id"]
    writes = count_worker_writes(monkeypatch, roster.store)

    def request(user_agent=UA, address="10.0.0.1"):
        worker = roster.authenticate(basic(worker_id, "s" * 20))
        return roster.seen(worker, user_agent, address)

    for _ in range(5):
        request()
    clock[0] += 0.9
    request()
    assert writes == []  # registration has just written last_seen
    before = common.utc_timestamp()
    clock[0] += 0.1
    request()
    assert [set(w) for w in writes] == [{"last_seen"}]
    assert roster.store.worker(worker_id)["last_seen"] >= before
    assert request(user_agent="Flamenco-Worker/2")["software"] == "Flamenco-Worker/2"
    assert request(user_agent="Flamenco-Worker/2", address="10.0.0.2")["address"] == "10.0.0.2"
    assert [set(w) for w in writes[1:]] == [{"software", "last_seen"}, {"address", "last_seen"}]
    stored = roster.store.worker(worker_id)
    assert (stored["software"], stored["address"]) == ("Flamenco-Worker/2", "10.0.0.2")
    request(user_agent="Flamenco-Worker/2", address="10.0.0.2")
    assert len(writes) == 3


def test_a_timed_out_worker_is_awake_at_its_next_request_even_within_the_second(roster):
    roster, clock = roster
    worker_id = roster.register({"secret": "s" * 20, "supported_task_types": ["debug"]}, UA, "a")["id"]
    header = basic(worker_id, "s" * 20)
    roster.sign_on(roster.seen(roster.authenticate(header), UA, "a"), {})
    clock[0] += 10
    assert roster.time_out_silent_workers(5) == [worker_id]
    worker = roster.authenticate(header)
    assert worker["status"] == "timeout"  # the cached row was dropped by the write
    assert roster.seen(worker, UA, "a")["status"] == "awake"
    assert roster.store.worker(worker_id)["status"] == "awake"
    assert roster.authenticate(header)["status"] == "awake"


def test_last_seen_shown_by_the_manager_is_at_most_a_second_old(roster, monkeypatch):
    """Requests every 0.4 s (on the Roster's clock): the stored last_seen is never
    more than a second behind the latest request."""
    roster, clock = roster
    worker_id = roster.register({"secret": "s" * 20, "supported_task_types": ["debug"]}, UA, "a")["id"]
    writes = count_worker_writes(monkeypatch, roster.store)
    written_at = [clock[0]]  # registration wrote it
    for _ in range(10):
        clock[0] += 0.4
        before = len(writes)
        roster.seen(roster.authenticate(basic(worker_id, "s" * 20)), UA, "a")
        if len(writes) > before:
            assert "last_seen" in writes[-1]
            written_at.append(clock[0])
        assert clock[0] - written_at[-1] <= 1.0
    assert len(written_at) >= 3  # written now and then, not on every request


def test_every_request_is_heard_for_timeouts(roster):
    """The throttle is on the stored wall-clock time only, not on liveness."""
    roster, clock = roster
    worker_id = roster.register({"secret": "s" * 20, "supported_task_types": ["debug"]}, UA, "a")["id"]
    header = basic(worker_id, "s" * 20)
    roster.sign_on(roster.seen(roster.authenticate(header), UA, "a"), {})
    for _ in range(10):
        clock[0] += 0.6  # never 5 s silent, though last_seen is written every other time
        roster.seen(roster.authenticate(header), UA, "a")
        assert roster.time_out_silent_workers(5) == []
    clock[0] += 5.1
    assert roster.time_out_silent_workers(5) == [worker_id]


# PBKDF2 runs in gevent's thread pool (PERFORMANCE.md B6)

def test_secrets_are_checked_without_blocking_other_greenlets():
    stored = auth.hash_secret("secret")
    assert auth.verify_secret("secret", stored) and not auth.verify_secret("other", stored)
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.001)

    tick = gevent.spawn(ticker)
    wait_until(lambda: ticks, 5, "the ticker running")
    started = time.monotonic()
    checks = [gevent.spawn(auth.verify_secret, "secret", stored) for _ in range(4)]
    gevent.joinall(checks, raise_error=True)
    ended = time.monotonic()
    tick.kill()
    assert all(check.value for check in checks)
    during = [t for t in ticks if started < t < ended]
    assert len(during) >= 3, f"{len(during)} ticks in {1000 * (ended - started):.0f} ms of checks"


def test_secrets_can_be_checked_in_the_hub_itself():
    stored = auth.hash_secret("secret")
    results = []
    gevent.get_hub().loop.run_callback(lambda: results.append(auth.verify_secret("secret", stored)))
    wait_until(lambda: results, 5, "the check run from the hub")
    assert results == [True]
