"""The development Manager is as strict as the real one: JSON typing (400),
authentication (401, 403), paths and methods (404, 405, 301), task ids."""
import base64
import time

import jwt
import pytest

from fworker.devmanager import DevManager, auth, roster as roster_module
from tests.support.client import WorkerClient, basic
from tests.support.jobs import job

REG_SECRET = "registration-secret-" + "k" * 44


@pytest.fixture
def running_task(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    return task_id


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One Manager, worker and active task for the many tests that only
    check refusals (which change nothing): (manager, worker, task_id)."""
    manager = DevManager(str(tmp_path_factory.mktemp("strict") / "dev.sqlite")).start()
    client = WorkerClient(manager).join()
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    yield manager, client, task_id
    manager.stop()


# 400: strict decoding

@pytest.mark.parametrize("body", [
    b'{"task_progress_percentage": 12.5}',
    b'{"task_progress_percentage": 12.0}',
    b'{"task_progress_percentage": "12"}',
    b'{"task_progress_percentage": true}',
    b'{"command_progress_percentage": false}',
    b'{"current_command_idx": 1e2}',
    b'{"task_progress_percentage": 101}',
    b'{"command_progress_percentage": -1}',
    b'{"current_command_idx": -1}',
    b'{"current_command_idx": 99999999999999999999}',
    b'{"task_status": "queued"}',
    b'{"task_status": 3}',
    b'{"activity": 5}',
    b'{"activity": null}',
    b'{"log": ["a", "b"]}',
    b'{"metrics": {"timing": {"render": "slow"}}}',
    b'{"metrics": []}',
    b'{"task_progress_percentage": NaN}',
    b'[]',
    b'null',
    b'"text"',
    b'{"log": "unterminated',
    b'\xff\xfe{}',
    b'',
    b'   ',
], ids=lambda body: body.decode("latin-1")[:40] or "empty")
def test_undecodable_updates_are_400_and_not_recorded(shared, body):
    manager, worker, task_id = shared
    response = worker.call("POST", f"tasks/{task_id}/update", data=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.text.startswith("Unable to decode JSON: ") and response.text.endswith("\n")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert manager.task_updates(task_id) == []


def test_error_message_names_the_field(shared):
    _manager, worker, task_id = shared
    response = worker.update(task_id, task_progress_percentage=12.5)
    assert "task_progress_percentage" in response.text and "integer" in response.text


def test_unknown_keys_are_ignored(manager, client, running_task):
    assert client.update(running_task, not_a_field={"x": 1}, log="ok").status_code == 204


@pytest.mark.parametrize("body", [
    {"secret": "s" * 64, "platform": "linux", "supported_task_types": "debug", "nickname": "n"},
    {"secret": "s" * 64, "platform": "linux", "supported_task_types": ["debug", 3], "nickname": "n"},
    {"secret": "s" * 64, "platform": 1, "supported_task_types": [], "nickname": "n"},
    {"platform": "linux", "supported_task_types": [], "nickname": "n"},
    {"secret": "", "platform": "linux", "supported_task_types": [], "nickname": "n"},
])
def test_bad_registrations_are_400(shared, body):
    manager = shared[0]
    response = WorkerClient(manager).call("POST", "register-worker", auth=False, json=body)
    assert response.status_code == 400 and response.text.startswith("Unable to decode JSON: ")
    assert len(manager.workers()) == 1


@pytest.mark.parametrize("path", ["register-worker", "sign-on", "output-produced"])
def test_an_empty_body_where_json_is_expected_is_400(shared, path):
    response = shared[1].call("POST", path, data=b"")
    assert response.status_code == 400 and response.text.startswith("Unable to decode JSON: ")


def test_sign_on_fields_are_typed(shared):
    worker = shared[1]
    assert worker.call("POST", "sign-on", json={"nickname": 7}).status_code == 400
    assert worker.call("POST", "sign-on", json={"supported_task_types": [None]}).status_code == 400


# 401: Basic authentication

@pytest.mark.parametrize("make_header", [
    lambda w: None,
    lambda w: basic(w.id, "wrong secret"),
    lambda w: basic("0" * 24, w.secret),
    lambda w: basic("not-an-id", w.secret),
    lambda w: "Basic !!!notbase64",
    lambda w: "Bearer " + w.secret,
    lambda w: "Basic " + base64.b64encode(w.id.encode()).decode(),
], ids=["none", "wrong-secret", "unknown-id", "malformed-id", "bad-base64", "bearer", "no-colon"])
@pytest.mark.parametrize("method, path", [("POST", "sign-on"), ("GET", "status-change")])
def test_authentication_failures_are_401(shared, make_header, method, path):
    worker = shared[1]
    header = make_header(worker)
    headers = {"Authorization": header} if header else {}
    response = worker.call(method, path, auth=False, json={}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Flamenco Manager"'
    assert response.text == "401 Unauthorized\n"


def test_the_secret_is_checked_after_a_successful_login_too(manager, client):
    assert client.call("POST", "task").status_code == 204  # caches this secret
    client.secret = "something else"
    assert client.call("POST", "task").status_code == 401


# The verified-secret and row caches never let a stale secret in

def test_a_removed_worker_is_refused_though_its_secret_was_cached(manager, client):
    assert client.call("GET", "status-change").status_code == 204  # cached
    manager.forget_worker(client.id)
    assert client.call("GET", "status-change").status_code == 401
    assert client.call("POST", "task").status_code == 401


def test_re_registration_credentials_do_not_mix(manager, client):
    """Registering again makes a new worker with a new id; the old one stays
    until removed (as with the real Manager), each with its own secret."""
    old_id, old_secret = client.id, client.secret
    assert client.call("GET", "status-change").status_code == 204  # cached
    client.secret = "a new secret " + "x" * 40
    assert client.register().status_code == 200 and client.id != old_id
    for worker_id, secret, code in ((old_id, client.secret, 401), (client.id, old_secret, 401),
                                    (client.id, client.secret, 204), (old_id, old_secret, 204)):
        response = client.call("GET", "status-change", auth=False,
                               headers={"Authorization": basic(worker_id, secret)})
        assert response.status_code == code, (worker_id == old_id, secret == old_secret)


def test_a_changed_secret_hash_is_checked_again(roster):
    """No endpoint changes a secret; should a row with another hash be read
    (here: stored behind the Roster's back, then any Roster write drops the
    cached row), the cached verification of the old secret does not apply."""
    roster, _ = roster
    worker_id = roster.register({"secret": "old" * 10}, "UA", "a")["id"]
    assert roster.authenticate(basic(worker_id, "old" * 10)) is not None  # cached
    roster.store.update_worker(worker_id, secret_hash=auth.hash_secret("new" * 10))
    roster.request_status(worker_id, "")
    assert roster.authenticate(basic(worker_id, "old" * 10)) is None
    assert roster.authenticate(basic(worker_id, "new" * 10))["id"] == worker_id


def test_a_worker_removed_while_its_secret_is_checked_is_refused(roster, monkeypatch):
    """PBKDF2 runs in a thread, so other requests (here: removing the worker) go on meanwhile."""
    roster, _ = roster
    worker_id = roster.register({"secret": "s" * 30}, "UA", "a")["id"]
    real = auth.verify_secret

    def slow_check(secret, stored):
        roster.forget(worker_id)
        return real(secret, stored)

    monkeypatch.setattr(roster_module.auth, "verify_secret", slow_check)
    assert roster.authenticate(basic(worker_id, "s" * 30)) is None
    monkeypatch.setattr(roster_module.auth, "verify_secret", real)
    assert roster.authenticate(basic(worker_id, "s" * 30)) is None


def test_status_changes_reach_the_next_request_of_a_cached_worker(manager, client):
    assert client.call("POST", "task").status_code == 204  # cached, awake
    manager.request_status(client.id, "asleep")
    assert client.call("POST", "task").status_code == 423
    assert client.call("POST", "ack-status-change/asleep").status_code == 204
    assert client.call("GET", "status-change").status_code == 204
    assert manager.worker(client.id)["status"] == "asleep"
    assert client.call("POST", "task").status_code == 204
    assert manager.worker(client.id)["status"] == "awake"


def test_auth_comes_before_task_id_checks(manager, client):
    client.secret = "wrong"
    assert client.call("GET", "may-i-run/abc").status_code == 401


# 403: the registration secret

def _token(secret=REG_SECRET, algorithm="HS256", **claims):
    now = int(time.time())
    payload = {"iat": now, "exp": now + 900}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm)


@pytest.fixture
def guarded(make_manager):
    return make_manager(registration_secret=REG_SECRET)


@pytest.mark.parametrize("header, message", [
    (None, "Missing Bearer token for registration"),
    ("Basic dXNlcjpwYXNz", "Missing Bearer token for registration"),
    ("Bearer ", "Missing Bearer token for registration"),
    ("Bearer not.a.jwt", "Invalid Bearer token for registration"),
    ("Bearer " + _token(secret="wrong-secret-" + "w" * 40), "Invalid Bearer token for registration"),
    ("Bearer " + _token(exp=None), "Invalid Bearer token for registration"),
    ("Bearer " + _token(exp=int(time.time()) - 10), "Invalid Bearer token for registration"),
    ("Bearer " + _token(iat=int(time.time()) + 3600), "Invalid Bearer token for registration"),
    ("Bearer " + jwt.encode({"exp": int(time.time()) + 900}, key=None, algorithm="none"),
     "Invalid Bearer token for registration"),
], ids=["missing", "basic", "empty", "garbage", "wrong-key", "no-exp", "expired", "future-iat",
        "alg-none"])
def test_registration_refusals_are_403(guarded, header, message):
    client = WorkerClient(guarded)
    response = client.register(headers={"Authorization": header} if header else {})
    assert response.status_code == 403
    assert response.text == message + "\n"
    assert guarded.workers() == []


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_registration_with_a_good_token(guarded, algorithm):
    client = WorkerClient(guarded)
    response = client.register(headers={"Authorization": "Bearer " + _token(algorithm=algorithm)})
    assert response.status_code == 200
    assert [w["id"] for w in guarded.workers()] == [client.id]


def test_registration_token_is_checked_before_the_body(guarded):
    response = WorkerClient(guarded).call("POST", "register-worker", auth=False, data=b"")
    assert response.status_code == 403


def test_without_a_registration_secret_registration_is_open(manager):
    assert WorkerClient(manager).register(headers={"Authorization": "Bearer junk"}).status_code == 200


# 404, 405, 301 and task ids in URLs

@pytest.mark.parametrize("method, path", [("GET", "nope"), ("POST", "tasks"), ("POST", "tasks/x/y/z"),
                                          ("GET", "nope/"), ("POST", "tasks/" + "a" * 24)])
def test_unknown_paths_are_404(shared, method, path):
    response = shared[1].call(method, path)
    assert response.status_code == 404 and response.text == "404 page not found\n"


@pytest.mark.parametrize("method, path", [("GET", "task"), ("GET", "sign-on"), ("POST", "status-change"),
                                          ("GET", "tasks/" + "a" * 24 + "/update"),
                                          ("PUT", "output-produced"), ("DELETE", "register-worker")])
def test_wrong_methods_are_405_with_an_empty_body(shared, method, path):
    response = shared[1].call(method, path)
    assert response.status_code == 405 and response.content == b""


@pytest.mark.parametrize("path, location", [("task/", "/task"), ("sign-on/", "/sign-on"),
                                            ("may-i-run/" + "a" * 24 + "/", "/may-i-run/" + "a" * 24)])
def test_trailing_slashes_redirect_to_the_canonical_path(shared, path, location):
    response = shared[1].call("POST" if "may" not in path else "GET", path)
    assert response.status_code == 301
    assert response.headers["Location"] == location


@pytest.mark.parametrize("method, path", [("POST", "tasks/{}/update"), ("POST", "tasks/{}/return"),
                                          ("GET", "may-i-run/{}")])
@pytest.mark.parametrize("bad_id", ["abc", "0" * 23, "0" * 25, "z" * 24])
def test_malformed_task_ids_are_404(shared, method, path, bad_id):
    response = shared[1].call(method, path.format(bad_id), json={})
    assert response.status_code == 404
    assert response.text == f"Invalid ObjectID used for task-id: {bad_id}\n"


def test_task_ids_in_urls_may_be_upper_case(manager, client, running_task):
    assert client.update(running_task.upper(), log="shouting").status_code == 204
    assert manager.task_log(running_task) == "shouting"


def test_json_answers_end_in_a_newline(manager, client, running_task):
    manager.request_status(client.id, "asleep", lazy=True)
    for method, path in [("GET", f"may-i-run/{running_task}"), ("GET", "status-change"),
                         ("POST", "task")]:
        response = client.call(method, path)
        assert response.headers["Content-Type"] == "application/json", path
        assert response.text.endswith("}\n"), path
