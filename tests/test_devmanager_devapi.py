"""The developer's side of the development Manager: job validation, the
/dev/ HTTP API, the HTML pages and the flamenco-dev-manager command."""
import json
import signal

import pytest
import requests

from fworker.devmanager import InvalidJob, NotFound, cli, jobs
from tests.support.client import WorkerClient
from tests.support.jobs import job, task
from tests.support.serving import serve_process


def dev(manager, method, path, **kwargs):
    return requests.request(method, manager.url + "dev/" + path, timeout=10,
                            headers={"Connection": "close"}, **kwargs)


# Job validation

def _with(changes, task_changes=None):
    doc = job(task("a"), task("b", parents=["a"]))
    doc.update(changes)
    if task_changes is not None:
        doc["tasks"][1].update(task_changes)
    return {key: value for key, value in doc.items() if value is not Ellipsis}


@pytest.mark.parametrize("doc, field", [
    (_with({"name": ...}), "name: missing"),
    (_with({"name": ""}), "name: must not be empty"),
    (_with({"job_type": 4}), "job_type: expected a string"),
    (_with({"priority": 5.5}), "priority: expected an integer"),
    (_with({"priority": True}), "priority: expected an integer"),
    (_with({"prority": 1}), "prority: unknown field"),
    (_with({"project": "nope"}), "project: must be"),
    (_with({"tasks": []}), "tasks: expected a non-empty array"),
    (_with({"tasks": {}}), "tasks: expected a non-empty array"),
    (_with({}, {"name": "a"}), "tasks[1].name: 'a' is already the name of tasks[0]"),
    (_with({}, {"task_type": None}), "tasks[1].task_type: expected a string"),
    (_with({}, {"parents": ["ghost"]}), "tasks[1].parents[0]: no task named 'ghost'"),
    (_with({}, {"parents": "a"}), "tasks[1].parents: expected an array"),
    (_with({}, {"parents": ["b"]}), "tasks: dependency cycle b -> b"),
    (_with({}, {"commands": None}), "tasks[1].commands: expected an array"),
    (_with({}, {"commands": [{"settings": {}}]}), "tasks[1].commands[0].name: missing"),
    (_with({}, {"commands": [{"name": "echo", "settings": []}]}),
     "tasks[1].commands[0].settings: expected an object"),
    (_with({}, {"commands": [{"name": "echo", "setings": {}}]}), "tasks[1].commands[0].setings"),
    (_with({}, {"extra": 1}), "tasks[1].extra: unknown field"),
])
def test_invalid_jobs_are_refused_naming_the_field(manager, doc, field):
    with pytest.raises(InvalidJob, match=None) as caught:
        manager.submit_job(doc)
    assert str(caught.value).startswith(field)
    response = dev(manager, "POST", "jobs", json=doc)
    assert response.status_code == 400
    assert response.text.startswith("Invalid job: " + field)
    assert manager.jobs() == [] and manager.tasks() == []


def test_longer_dependency_cycles_are_refused():
    doc = job(task("a", parents=["c"]), task("b", parents=["a"]), task("c", parents=["b"]))
    with pytest.raises(InvalidJob, match="dependency cycle a -> c -> b -> a"):
        jobs.validate_job(doc)


def test_defaults_are_filled_in():
    checked = jobs.validate_job({"name": "j", "job_type": "t", "tasks": [
        {"name": "a", "task_type": "debug", "commands": [{"name": "echo"}]}]})
    assert (checked["priority"], checked["project"], checked["user"]) == (50, "", "")
    assert checked["tasks"][0]["parents"] == [] and checked["tasks"][0]["priority"] == 50
    assert checked["tasks"][0]["commands"] == [{"name": "echo", "settings": {}}]


@pytest.mark.parametrize("statuses, expected", [
    (["queued", "queued"], "queued"), (["active", "queued"], "active"),
    (["completed", "queued"], "active"), (["completed", "completed"], "completed"),
    (["failed", "active"], "failed"), (["canceled", "completed"], "canceled"),
    (["cancel-requested", "queued"], "canceled"), (["soft-failed"], "queued")])
def test_job_status_comes_from_its_tasks(statuses, expected):
    assert jobs.job_status(statuses) == expected


def test_variables_are_replaced_for_the_workers_platform(make_manager):
    manager = make_manager(variables={"blender": {"linux": "/usr/bin/blender", "windows": "B.exe"},
                                      "out": {"all": "/render"}})
    manager.submit_job(job(task("a", commands=[{"name": "blender_render", "settings": {
        "exe": "{blender} -b", "output": "{out}/{unknown}", "frames": [1, "{out}"]}}])))
    delivered = WorkerClient(manager).join().ask().json()
    assert delivered["commands"][0]["settings"] == {
        "exe": "/usr/bin/blender -b", "output": "/render/{unknown}", "frames": [1, "{out}"]}


# The /dev/ HTTP API

def test_dev_api_round_trip(manager, client):
    response = dev(manager, "POST", "jobs", json=job(task("a"), task("b"), name="api"))
    assert response.status_code == 201
    ids = response.json()
    assert [j["id"] for j in dev(manager, "GET", "jobs").json()] == [ids["job_id"]]
    assert dev(manager, "GET", f"jobs/{ids['job_id']}").json()["status"] == "queued"
    listed = dev(manager, "GET", "tasks", params={"job": ids["job_id"]}).json()
    assert [t["id"] for t in listed] == ids["task_ids"]
    first = client.take()
    client.update(first, activity="working", log="a line")
    detail = dev(manager, "GET", f"tasks/{first}").json()
    assert detail["status"] == "active" and detail["log"] == "a line"
    assert detail["updates"] == [{"activity": "working", "log": "a line"}]
    assert dev(manager, "POST", f"tasks/{first}/cancel").json()["status"] == "cancel-requested"
    assert dev(manager, "POST", f"jobs/{ids['job_id']}/cancel").json()["status"] == "canceled"
    assert manager.task(ids["task_ids"][1])["status"] == "canceled"


def test_dev_api_workers(manager, client):
    assert [w["id"] for w in dev(manager, "GET", "workers").json()] == [client.id]
    response = dev(manager, "POST", f"workers/{client.id}/status", json={"status": "asleep", "lazy": True})
    assert response.status_code == 200 and response.json()["status_requested"] == "asleep"
    assert manager.worker(client.id)["lazy_status_request"] is True
    assert dev(manager, "POST", f"workers/{client.id}/status", json={"status": 1}).status_code == 400
    assert dev(manager, "POST", f"workers/{client.id}/status", json={}).status_code == 400
    assert dev(manager, "GET", f"workers/{client.id}").json()["nickname"] == "tester"
    assert dev(manager, "DELETE", f"workers/{client.id}").status_code == 204
    assert manager.workers() == []
    assert client.ask().status_code == 401


def test_dev_api_reassign(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    other = WorkerClient(manager).join()
    response = dev(manager, "POST", f"tasks/{task_id}/reassign", json={"worker": other.id})
    assert response.status_code == 200 and response.json()["worker"] == other.id
    assert other.take() == task_id and client.update(task_id, log="x").status_code == 409
    assert dev(manager, "POST", f"tasks/{task_id}/reassign").json()["status"] == "queued"


@pytest.mark.parametrize("method, path", [
    ("GET", "jobs/" + "0" * 24), ("POST", "jobs/" + "0" * 24 + "/cancel"),
    ("GET", "tasks/" + "0" * 24), ("POST", "tasks/" + "0" * 24 + "/cancel"),
    ("POST", "tasks/" + "0" * 24 + "/reassign"), ("GET", "workers/" + "0" * 24),
    ("DELETE", "workers/" + "0" * 24)])
def test_dev_api_unknown_ids_are_404(manager, method, path):
    response = dev(manager, method, path)
    assert response.status_code == 404 and "is unknown" in response.text


def test_python_api_unknown_ids_raise_not_found(manager):
    for call in (manager.task, manager.job, manager.worker,
                 manager.cancel_task, manager.forget_task, manager.forget_worker):
        with pytest.raises(NotFound):
            call("0" * 24)
    with pytest.raises(NotFound):
        manager.request_status("0" * 24, "asleep")


def test_a_bad_job_body_is_400(manager):
    response = dev(manager, "POST", "jobs", data=b"{not json")
    assert response.status_code == 400 and response.text.startswith("Unable to decode JSON")


# HTML pages

def test_overview_page_lists_everything_escaped(manager, client):
    ids = manager.submit_job(job(task("<b>bold</b>"), name="<script>alert(1)</script>"))
    client.take()
    client.update(ids["task_ids"][0], activity="a & b")
    response = requests.get(manager.url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "a &amp; b" in page
    assert client.id in page and f'/dev/view/tasks/{ids["task_ids"][0]}' in page


def test_task_page_shows_updates_and_log(manager, client):
    task_id = manager.submit_job(job())["task_ids"][0]
    client.take()
    client.update(task_id, log="<img src=x onerror=alert(1)>", activity="rendering")
    response = requests.get(manager.url + f"dev/view/tasks/{task_id}", timeout=10)
    assert response.status_code == 200
    assert "<img" not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert "rendering" in response.text
    assert requests.get(manager.url + "dev/view/tasks/" + "0" * 24, timeout=10).status_code == 404


# The command line

def test_cli_submit_and_status(manager, tmp_path, capsys):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job(task("a"), task("b"), name="from-cli")))
    assert cli.main(["submit", str(job_file), "--url", manager.url]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "job" and out[1] == manager.jobs()[0]["id"]
    assert out[3::2] == [t["id"] for t in manager.tasks()]
    assert cli.main(["status", "--url", manager.url]) == 0
    status = capsys.readouterr().out
    assert "Jobs (1)" in status and "from-cli" in status and "Tasks (2)" in status


def test_cli_submit_reports_refusals(manager, tmp_path, capsys):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"name": "x"}))
    assert cli.main(["submit", str(job_file), "--url", manager.url]) == 1
    assert "job_type: missing" in capsys.readouterr().err
    job_file.write_text("{oops")
    assert cli.main(["submit", str(job_file), "--url", manager.url]) == 1
    assert cli.main(["status", "--url", "http://127.0.0.1:9/"]) == 1


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["submit", "--help"],
                                  ["status", "--help"]])
def test_cli_help(args, capsys):
    with pytest.raises(SystemExit) as exiting:
        cli.main(args)
    assert exiting.value.code == 0
    assert "usage: flamenco-dev-manager" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_serve_runs_until_sigterm(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s" * 64 + "\n")
    with serve_process("--db", str(tmp_path / "m.sqlite"), "--port", "0",
                       "--registration-secret-file", str(secret_file)) as (proc, _, url):
        response = requests.post(url + "register-worker", json={"secret": "x"}, timeout=10)
        assert response.status_code == 403  # the secret file was read
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
