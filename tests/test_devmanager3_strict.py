"""The Flamenco 3 development Manager as a strict judge: authentication (403),
validation naming the field (400), routing (404/405), previews (202/400/404/411/
413/429), 503 with Retry-After, the request log, the job format, the CLI."""
import signal

import pytest
import requests

from fworker.devmanager.jobs import InvalidJob
from fworker.devmanager.v3 import jobs
from fworker.devmanager.v3.schema import MAX_IMAGE_BYTES
from tests.support.client3 import API, V3Client, one_task_job
from tests.support.serving import serve_process

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 32


@pytest.fixture
def active_task(manager3, client3):
    manager3.submit_job(one_task_job())
    return client3.take()


# 403

def test_missing_credentials_are_403_and_break_the_document(manager3, client3):
    response = client3.call("POST", API + "task", auth=False)
    assert response.status_code == 403 and "message" in response.json()
    assert manager3.invalid_requests()[-1]["error"].startswith("Authorization")


@pytest.mark.parametrize("credentials", ["wrong-secret", "unknown-worker", "not-a-uuid"])
def test_wrong_or_unknown_credentials_are_403(manager3, client3, credentials):
    user, password = client3.uuid, client3.secret
    if credentials == "wrong-secret":
        password = "x" + password
    elif credentials == "unknown-worker":
        user = "5f0e7bb0-0000-4000-8000-000000000000"
    else:
        user = "nobody"
    response = requests.post(manager3.url + API + "task", auth=(user, password), timeout=10)
    assert response.status_code == 403
    assert response.json()["message"].startswith("security requirements failed")


def test_the_secret_is_stored_hashed(manager3, client3):
    row = manager3.store.worker(client3.uuid)
    assert client3.secret not in str(row) and row["secret_hash"].startswith("pbkdf2_sha256$")
    assert "secret_hash" not in manager3.worker(client3.uuid)


def test_a_forgotten_worker_gets_403(manager3, client3):
    manager3.forget_worker(client3.uuid)
    assert client3.ask().status_code == 403


# 400: validation names the field

@pytest.mark.parametrize("path,body,field", [
    ("register-worker", {"platform": "linux", "supported_task_types": [], "name": "w"}, "secret"),
    ("register-worker", {"secret": "s", "supported_task_types": [], "name": "w"}, "platform"),
    ("register-worker", {"secret": "s", "platform": "linux", "name": "w"}, "supported_task_types"),
    ("register-worker", {"secret": "s", "platform": "linux", "supported_task_types": []}, "name"),
    ("register-worker", {"secret": 1, "platform": "l", "supported_task_types": [], "name": "w"},
     "secret"),
    ("register-worker", {"secret": "s", "platform": "l", "supported_task_types": "misc",
                         "name": "w"}, "supported_task_types"),
    ("sign-on", {"name": "w", "supported_task_types": ["misc"]}, "software_version"),
    ("sign-on", {"name": "w", "supported_task_types": [None], "software_version": "1"},
     "supported_task_types[0]"),
    ("sign-on", {"name": "w", "supported_task_types": [], "software_version": "1",
                 "can_restart": "yes"}, "can_restart"),
    ("state-changed", {}, "status"),
    ("state-changed", {"status": "sleeping"}, "status"),
    ("state-changed", {"status": None}, "status"),
    ("task/{task}", {"taskStatus": "done"}, "taskStatus"),
    ("task/{task}", {"activity": 5}, "activity"),
    ("task/{task}", {"log": ["a"]}, "log"),
    ("task/{task}", {"steps_completed": 1.0}, "steps_completed"),
    ("task/{task}", {"steps_completed": "1"}, "steps_completed"),
    ("task/{task}", {"steps_completed": True}, "steps_completed"),
    ("task/{task}", [], ""),
])
def test_invalid_bodies_are_400_naming_the_field(manager3, client3, active_task, path, body, field):
    response = client3.call("POST", API + path.format(task=active_task), json=body,
                           auth=path != "register-worker")
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"request body has an error: {field}")
    logged = manager3.invalid_requests()[-1]
    assert logged["status"] == 400 and logged["error"].startswith(field)
    assert manager3.task_updates(active_task) == []


@pytest.mark.parametrize("headers,data", [
    ({}, b'{"status": "awake"}'),
    ({"Content-Type": "text/plain"}, b'{"status": "awake"}'),
    ({"Content-Type": "application/json"}, b""),
    ({"Content-Type": "application/json"}, b"{not json"),
])
def test_undeclared_content_type_and_missing_body_are_400(manager3, client3, headers, data):
    response = client3.call("POST", API + "state-changed", data=data, headers=headers)
    assert response.status_code == 400 and "message" in response.json()
    assert manager3.worker(client3.uuid)["status"] == "awake"


def test_undeclared_fields_are_ignored(manager3, client3, active_task):
    assert client3.update(active_task, log="x\n", task_progress_percentage=5).status_code == 204
    assert manager3.invalid_requests() == []


def test_unknown_paths_and_methods(manager3, client3):
    assert client3.call("GET", "api/v3/worker/nope").status_code == 404
    response = client3.call("GET", API + "task")
    assert response.status_code == 405 and response.json() == {"message": "Method Not Allowed"}
    assert len(manager3.invalid_requests()) == 2


# Previews

def test_preview_is_accepted_and_recorded(manager3, client3, active_task):
    assert client3.preview(active_task, PNG).status_code == 202
    assert client3.preview(active_task, JPEG, "image/jpeg").status_code == 202
    received = manager3.previews_received()
    assert [(p["mime"], p["size"], p["image_ok"]) for p in received] == [
        ("image/png", len(PNG), True), ("image/jpeg", len(JPEG), True)]
    image = requests.get(f"{manager3.url}dev/jobs/{received[0]['job']}/last-rendered", timeout=10)
    assert image.content == JPEG and image.headers["Content-Type"] == "image/jpeg"


def test_preview_that_is_not_the_declared_format_is_flagged(manager3, client3, active_task):
    assert client3.preview(active_task, JPEG, "image/png").status_code == 202
    assert manager3.previews_received()[0]["image_ok"] is False


def test_preview_of_another_type_is_400(manager3, client3, active_task):
    response = client3.preview(active_task, b"GIF89a...", "image/gif")
    assert response.status_code == 400 and "Content-Type" in response.json()["message"]


def test_preview_without_content_length_is_411(manager3, client3, active_task):
    response = client3.preview(active_task, iter([PNG]))  # a generator: sent chunked
    assert response.status_code == 411 and response.json()["code"] == 411


def test_preview_over_25_mib_is_413(manager3, client3, active_task):
    response = client3.preview(active_task, PNG + b"\0" * (MAX_IMAGE_BYTES + 1 - len(PNG)))
    assert response.status_code == 413
    assert client3.preview(active_task, PNG + b"\0" * (MAX_IMAGE_BYTES - len(PNG))).status_code == 202


def test_preview_of_an_unknown_task_is_404(client3):
    assert client3.preview("5f0e7bb0-0000-4000-8000-000000000000", PNG).status_code == 404


def test_too_many_previews_at_once_are_429(make_manager3):
    # Each image holds its place far longer than the test: the queue stays full.
    manager = make_manager3(preview_delay=600)
    client = V3Client(manager).join()
    manager.submit_job(one_task_job())
    task_id = client.take()
    assert [client.preview(task_id, PNG).status_code for _ in range(4)] == [202, 202, 202, 429]
    assert len(manager.previews_received()) == 3


# 503

def test_injected_busy_answers_503_with_retry_after(manager3, client3):
    manager3.inject_busy(count=2, path="/api/v3/worker/task", retry_after=3)
    for _ in range(2):
        response = client3.ask()
        assert response.status_code == 503 and response.headers["Retry-After"] == "3"
        assert response.json() == {"code": 503, "message": "too busy, try again later"}
    assert client3.state().status_code == 204  # another path: not affected
    assert client3.ask().status_code == 204


def test_busy_can_be_injected_over_the_dev_api(manager3, client3):
    response = requests.post(manager3.url + "dev/faults", json={"count": 1}, timeout=10)
    assert response.status_code == 201
    assert client3.state().status_code == 503
    assert client3.state().status_code == 204


# The developer API

def test_dev_requests_lists_every_api_request_with_its_validation(manager3, client3):
    client3.call("POST", API + "state-changed", json={"status": "nope"})
    rows = requests.get(manager3.url + "dev/requests", timeout=10).json()
    assert [row["operation"] for row in rows] == ["registerWorker", "signOn",
                                                  "workerStateChanged", "workerStateChanged"]
    assert [row["valid"] for row in rows] == [True, True, True, False]
    invalid = requests.get(manager3.url + "dev/requests?invalid=1", timeout=10).json()
    assert len(invalid) == 1 and invalid[0]["error"].startswith("status: 'nope'")


def test_dev_api_drives_jobs_workers_and_pages(manager3, client3):
    submitted = requests.post(manager3.url + "dev/jobs", json=one_task_job(), timeout=10)
    assert submitted.status_code == 201
    task_id = submitted.json()["task_ids"][0]
    response = requests.post(f"{manager3.url}dev/workers/{client3.uuid}/status",
                             json={"status": "asleep", "lazy": True}, timeout=10)
    assert response.json()["status_requested"] == "asleep"
    assert response.json()["lazy_status_request"] is True
    assert requests.get(f"{manager3.url}dev/tasks/{task_id}", timeout=10).json()["status"] == "queued"
    assert requests.post(f"{manager3.url}dev/tasks/{task_id}/cancel", timeout=10).json()["status"] \
        == "canceled"
    assert requests.delete(f"{manager3.url}dev/jobs/{submitted.json()['job_id']}",
                           timeout=10).status_code == 204
    assert requests.get(f"{manager3.url}dev/tasks/{task_id}", timeout=10).status_code == 404
    page = requests.get(manager3.url, timeout=10)
    assert page.status_code == 200 and client3.uuid in page.text


def test_variables_are_replaced_in_parameters(make_manager3):
    manager = make_manager3(variables={"blender": {"linux": "/opt/blender", "all": "blender"}})
    client = V3Client(manager, task_types=["blender"]).join()
    manager.submit_job(one_task_job(
        jobs.blender_render("{blender}/x.blend", exe="{blender}/blender", args=["-o", "{blender}"]),
        task_type="blender"))
    parameters = client.ask().json()["commands"][0]["parameters"]
    assert parameters["exe"] == "/opt/blender/blender"
    assert parameters["blendfile"] == "/opt/blender/x.blend"
    assert parameters["args"] == ["-o", "/opt/blender"]


# The job format and builders

def test_builders_use_flamenco_3_names():
    assert jobs.blender_render("a.blend", ["-f", "1"], total_step_count=1) == {
        "name": "blender-render", "total_step_count": 1,
        "parameters": {"exe": "blender", "exeArgs": "", "argsBefore": [], "blendfile": "a.blend",
                       "args": ["-f", "1"]}}
    assert jobs.frames_to_video("/r/*.png", "/r/v.mp4", 24)["parameters"] == {
        "exe": "ffmpeg", "exeArgs": "", "fps": 24, "inputGlob": "/r/*.png",
        "outputFile": "/r/v.mp4", "argsBefore": [], "args": []}
    assert jobs.exec_command("/bin/true", ["a"])["parameters"] == {"exe": "/bin/true",
                                                                   "args": ["a"]}
    assert jobs.sleep(2)["parameters"] == {"duration_in_seconds": 2}
    assert jobs.echo("m")["parameters"] == {"message": "m"}
    assert jobs.move_directory("/a", "/b")["parameters"] == {"src": "/a", "dest": "/b"}
    assert jobs.copy_file("/a", "/b")["name"] == "copy-file"
    assert jobs.make_directory("/a")["parameters"] == {"path": "/a"}


def test_steps_total_counts_a_command_without_steps_as_one(manager3):
    task_id = manager3.submit_job(one_task_job(
        jobs.blender_render("a.blend", total_step_count=5), jobs.echo("x")))["task_ids"][0]
    assert manager3.task(task_id)["steps_total"] == 6


@pytest.mark.parametrize("mutate,words", [
    (lambda j: j["tasks"][0]["commands"][0].update(settings={}), "tasks[0].commands[0].settings"),
    (lambda j: j["tasks"][0]["commands"][0].update(total_step_count=-1),
     "tasks[0].commands[0].total_step_count"),
    (lambda j: j["tasks"][0].update(parents=["ghost"]), "tasks[0].parents[0]"),
    (lambda j: j.update(tasks=[]), "tasks"),
])
def test_invalid_jobs_name_the_field(manager3, mutate, words):
    job = one_task_job()
    mutate(job)
    with pytest.raises(InvalidJob) as caught:
        manager3.submit_job(job)
    assert str(caught.value).startswith(words)


def test_parents_hold_a_task_back_until_completed(manager3, client3):
    job = jobs.job("j", [jobs.task("a", [jobs.echo("a")]),
                         jobs.task("b", [jobs.echo("b")], parents=["a"], priority=99)])
    first, second = manager3.submit_job(job)["task_ids"]
    assert client3.take() == first
    client3.update(first, taskStatus="completed")
    assert client3.take() == second


# The CLI

def test_cli_serve_v3_runs_until_sigterm(tmp_path):
    with serve_process("--v3", "--db", str(tmp_path / "m.sqlite"), "--port", "0",
                       "--worker-timeout", "5") as (proc, line, url):
        assert "Flamenco 3 (api/v3)" in line, line
        assert requests.get(url + "api/v3/version", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
