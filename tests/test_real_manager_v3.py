"""Opt-in: the worker's Flamenco 3 life cycle against a real Flamenco 3 Manager.

    FWORKER_REAL_MANAGER_V3_URL=http://manager:8080/ .venv/bin/python -m pytest tests/test_real_manager_v3.py

The worker (in this process, its files in a temporary folder) registers, signs on,
acknowledges the state the Manager asks for, asks for a task once (204, or a task it
then hands back by signing off: the Manager re-queues a signed-off worker's task) and
signs off, through a recording proxy.  Each request is checked against the OpenAPI
document that Manager serves at ``/api/v3/openapi3.json``, and each answer's status
against the statuses it declares.  The worker announces only the task type
``FWORKER_REAL_MANAGER_V3_TASK_TYPES`` names (default ``fworker-opt-in-test``, which no
real job has: the Manager answers 204 and nothing of the farm's work is touched).  It
stays in the Manager's worker list afterwards (offline), named ``fworker-opt-in-test``.

Without the URL the real-Manager test is skipped, saying so.  The same life cycle runs
in every test run against the v3 development Manager, with a document written from the
project's schemas (``fworker/devmanager/v3/schema.py``), so the test itself cannot rot.
"""
import os

import pytest
import requests

from fworker.devmanager.v3 import jobs, schema
from tests.support.faults import FaultProxy
from tests.support.openapi import REF, Document
from tests.support.workers import build_worker

URL_VARIABLE = "FWORKER_REAL_MANAGER_V3_URL"
TASK_TYPES_VARIABLE = "FWORKER_REAL_MANAGER_V3_TASK_TYPES"
DOCUMENT_PATH = "api/v3/openapi3.json"
LIFE_CYCLE = ["registerWorker", "signOn", "workerStateChanged", "scheduleTask", "signOff"]


def run_life_cycle(manager_url: str, document: Document, root, task_types: str) -> list:
    """The life cycle through a recording proxy; the proxy's exchanges."""
    proxy = FaultProxy(manager_url, client_timeout=30).up()
    try:
        worker = build_worker(root, proxy.url, manager_protocol="v3", task_types=task_types,
                              nickname="fworker-opt-in-test", http_timeout="30")
        worker.start()
        try:
            assert worker.edge.dialect == "v3"
            answer = worker.edge.fetch_task()
            assert answer.status in (200, 204), f"asking for a task: {answer.status} {answer.text[:500]}"
            if answer.status == 200:
                worker.edge.parse_task(answer.body)  # a task the worker can read, handed back at sign-off
        finally:
            worker.request_shutdown("end of the opt-in test")
            worker.shutdown()
        return list(proxy.exchanges)
    finally:
        proxy.down()


def check(document: Document, exchanges: list) -> None:
    assert exchanges, "no request went through the proxy"
    problems = [problem for x in exchanges
                for problem in document.problems(x.method, x.path, x.body, x.client_status)]
    assert problems == [], "\n".join(problems)
    names = [document.operation(x.method, x.path).name for x in exchanges]
    steps = [name for name in names if name in LIFE_CYCLE]
    assert steps[:3] == LIFE_CYCLE[:3] and steps[-1] == "signOff" and "scheduleTask" in steps, names


@pytest.mark.skipif(not os.environ.get(URL_VARIABLE),
                    reason=f"no real Flamenco 3 Manager: set {URL_VARIABLE} to its URL to run this test")
@pytest.mark.slow
def test_life_cycle_against_the_real_manager(tmp_path):
    url = os.environ[URL_VARIABLE].rstrip("/") + "/"
    served = requests.get(url + DOCUMENT_PATH, timeout=30)
    assert served.status_code == 200, f"{url}{DOCUMENT_PATH}: {served.status_code}"
    document = Document(served.json())
    task_types = os.environ.get(TASK_TYPES_VARIABLE, "fworker-opt-in-test")
    check(document, run_life_cycle(url, document, tmp_path, task_types))


# --- the same against the development Manager, with the project's schemas ---------------


def document_from_project_schemas() -> dict:
    """An OpenAPI document written from fworker/devmanager/v3/schema.py, in the shape
    the real Manager serves (references under components/schemas)."""
    def refs(node):
        if isinstance(node, list):
            return [refs(item) for item in node]
        if isinstance(node, dict):
            return {key: (REF + value if key == "$ref" else refs(value)) for key, value in node.items()}
        return node

    paths: dict = {}
    for name, op in schema.OPERATIONS.items():
        spec = {"operationId": name, "responses": {str(code): {} for code in schema.RESPONSES[name]}}
        if "body" in op:
            spec["requestBody"] = {"required": True, "content": {
                media: {"schema": {"$ref": REF + op["body"]}} for media in op["types"]}}
        paths.setdefault(op["path"], {})[op["method"].lower()] = spec
    for item in paths.values():
        for spec in item.values():
            spec["responses"].update({"401": {}, "403": {}})  # the security scheme's answers
    return {"openapi": "3.0.0", "paths": paths, "components": {"schemas": refs(schema.SCHEMAS)}}


@pytest.mark.parametrize("queued", [False, True], ids=["no-task", "a-task"])
def test_life_cycle_against_the_development_manager(make_manager3, tmp_path, queued):
    manager = make_manager3()
    if queued:
        task_id = manager.submit_job(jobs.job("j", [jobs.task("t", [jobs.echo("hi")])]))["task_ids"][0]
    document = Document(document_from_project_schemas())
    exchanges = run_life_cycle(manager.url, document, tmp_path, "misc")
    check(document, exchanges)
    fetched = [x.client_status for x in exchanges if x.method == "POST" and x.path == "/api/v3/worker/task"]
    assert fetched == [200 if queued else 204]
    if queued:
        assert manager.task(task_id)["status"] == "queued", "signing off handed the task back"
    assert manager.invalid_requests() == []


def test_the_document_check_finds_what_is_wrong():
    document = Document(document_from_project_schemas())
    register = "/api/v3/worker/register-worker"
    good = {"secret": "s", "platform": "linux", "supported_task_types": ["misc"], "name": "n"}
    assert document.problems("POST", register, good, 200) == []
    assert "supported_task_types[0]: expected a string" in document.problems(
        "POST", register, {**good, "supported_task_types": [1]}, 200)[0]
    assert "name: required but missing" in document.problems(
        "POST", register, {k: v for k, v in good.items() if k != "name"}, 200)[0]
    assert "required but missing" in document.problems("POST", register, None, 200)[0]
    assert "does not declare" in document.problems("POST", register, good, 418)[0]
    assert "no such operation" in document.problems("POST", "/api/v3/worker/give-back", None, 200)[0]
    update = "/api/v3/worker/task/0b5e2b2c-8bd3-4b3f-9e43-2f6a0a9c3f21"
    assert document.problems("POST", update, {"taskStatus": "completed"}, 204) == []
    assert "taskStatus" in document.problems("POST", update, {"taskStatus": "done"}, 204)[0]


def test_all_of_and_references_are_read_as_the_real_document_writes_them():
    document = Document({"paths": {"/x/{id}": {"post": {"operationId": "x", "responses": {"default": {}},
                                                         "requestBody": {"content": {"application/json": {
                                                             "schema": {"$ref": REF + "Child"}}}}}}},
                         "components": {"schemas": {
                             "Base": {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
                             "Child": {"allOf": [{"$ref": REF + "Base"}, {
                                 "type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}}]},
                         }}})
    assert document.problems("POST", "/x/1", {"a": "x", "b": 2}, 500) == []
    assert "a: required but missing" in document.problems("POST", "/x/1", {"b": 2}, 200)[0]
    assert "b: expected an integer" in document.problems("POST", "/x/1", {"a": "x", "b": "2"}, 200)[0]
    with pytest.raises(ValueError, match="unsupported schema reference"):
        Document({"components": {"schemas": {"X": {"$ref": "other.json#/X"}}}})
