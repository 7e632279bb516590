"""The Flamenco 3 development Manager over real HTTP, driven as a worker drives
it: the life cycle, states and their acknowledgement, re-delivery, updates and
their refusals, may-i-run, timeouts.  The client is tests/support/client3.py."""
import pytest
import requests

from fworker.devmanager.v3 import jobs
from fworker.devmanager.v3.validate import validate
from tests.support.client3 import API, V3Client, assert_all_valid, one_task_job
from tests.support.waiting import wait_until

# The life cycle

def test_version_answers_as_a_v3_manager(manager3):
    response = requests.get(manager3.url + "api/v3/version", timeout=10)
    assert response.status_code == 200
    validate(response.json(), "FlamencoVersion")
    assert response.json()["shortversion"] == "3.9"


def test_whole_life_cycle(manager3):
    client = V3Client(manager3, task_types=["misc", "blender"])
    registered = client.register().json()
    assert registered["status"] == "" and registered["supported_task_types"] == ["misc", "blender"]
    assert manager3.worker(client.uuid)["status"] == ""
    assert client.sign_on(can_restart=True).json() == {"status_requested": "awake"}
    assert manager3.worker(client.uuid)["status"] == "starting"
    assert manager3.worker(client.uuid)["can_restart"] is True
    assert client.state_changed("awake").status_code == 204
    assert client.ask().status_code == 204  # nothing queued yet
    task_id = manager3.submit_job(one_task_job(jobs.echo("hi"), jobs.sleep(1)))["task_ids"][0]
    assigned = client.ask().json()
    assert assigned["uuid"] == task_id and assigned["status"] == "active"
    assert assigned["steps_total"] == 2 and assigned["steps_completed"] == 0
    assert [c["name"] for c in assigned["commands"]] == ["echo", "sleep"]
    assert client.update(task_id, taskStatus="active", activity="echo").status_code == 204
    assert client.may_i_run(task_id) == {"mayKeepRunning": True, "reason": "",
                                         "statusChangeRequested": False}
    assert client.update(task_id, log="echo: \"hi\"\n", steps_completed=1).status_code == 204
    assert client.update(task_id, taskStatus="completed").status_code == 204
    task = manager3.task(task_id)
    assert (task["status"], task["steps_completed"], task["activity"]) == ("completed", 2, "echo")
    assert manager3.job(task["job"])["status"] == "completed"
    assert client.sign_off().status_code == 204
    assert manager3.worker(client.uuid)["status"] == "offline"
    assert manager3.acks == [(client.uuid, "awake")]
    assert_all_valid(manager3)


def test_starting_until_acknowledged(manager3):
    client = V3Client(manager3)
    client.register()
    client.sign_on()
    manager3.submit_job(one_task_job())
    response = client.ask()
    assert response.status_code == 409
    assert "starting" in response.json()["message"]
    client.state_changed("awake")
    assert client.ask().status_code == 200


def test_sign_off_remembers_awake_and_the_next_start_is_asked_for_it(manager3, client3):
    assert client3.sign_off().status_code == 204
    assert manager3.worker(client3.uuid)["status_requested"] == "awake"
    assert client3.sign_on().json() == {"status_requested": "awake"}
    response = client3.ask()
    assert response.status_code == 423 and response.json() == {"status_requested": "awake"}
    assert client3.state_changed("awake").status_code == 204
    assert manager3.worker(client3.uuid)["status_requested"] == ""
    assert client3.ask().status_code == 204


def test_requested_state_is_423_then_state_then_acknowledged(manager3, client3):
    assert client3.state().status_code == 204
    manager3.request_status(client3.uuid, "asleep")
    response = client3.ask()
    assert response.status_code == 423 and response.json() == {"status_requested": "asleep"}
    assert client3.state().json() == {"status_requested": "asleep"}
    client3.state_changed("asleep")
    assert client3.state().status_code == 204
    assert client3.ask().status_code == 409  # asleep: not allowed to work
    assert manager3.worker(client3.uuid)["status"] == "asleep"


def test_acknowledging_another_state_keeps_the_request(manager3, client3):
    manager3.request_status(client3.uuid, "offline")
    client3.state_changed("asleep")
    assert manager3.worker(client3.uuid)["status_requested"] == "offline"
    assert client3.state().json() == {"status_requested": "offline"}


def test_sign_off_clears_an_offline_request_and_requeues_the_task(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    manager3.request_status(client3.uuid, "offline")
    client3.sign_off()
    # The offline request is done with; the state it left (awake) is asked for next time.
    assert manager3.worker(client3.uuid)["status_requested"] == "awake"
    task = manager3.task(task_id)
    assert task["status"] == "queued" and "signed off" in task["activity"]
    assert task["worker"] == client3.uuid  # the last worker is kept, as the Manager keeps it


def test_leaving_awake_requeues_the_active_task(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    client3.update(task_id, steps_completed=1)
    client3.state_changed("asleep")
    task = manager3.task(task_id)
    assert (task["status"], task["steps_completed"]) == ("queued", 0)
    assert "changed status to 'asleep'" in task["activity"]


def test_the_assigned_task_is_delivered_again_after_a_restart(manager3, client3):
    first = manager3.submit_job(one_task_job())["task_ids"][0]
    manager3.submit_job(one_task_job(name="second"))
    assert client3.take() == first
    # The worker crashed: no sign-off.  It starts again and asks for work.
    client3.sign_on()
    client3.state_changed("awake")
    assert client3.take() == first
    assert manager3.task(first)["status"] == "active"


def test_there_is_no_way_to_give_a_task_back(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    response = client3.call("POST", f"{API}task/{task_id}/return")
    assert response.status_code == 404
    assert client3.take() == task_id  # asking again hands the same task over
    assert [row["valid"] for row in manager3.invalid_requests()] == [False]


# Task updates

def test_log_is_appended_and_every_update_recorded(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    for line in ("one\n", "two\n", "pid=1 > three\n"):
        assert client3.update(task_id, log=line).status_code == 204
    assert manager3.task_log(task_id) == "one\ntwo\npid=1 > three\n"
    assert [body["log"] for body in manager3.task_updates(task_id)] == ["one\n", "two\n",
                                                                  "pid=1 > three\n"]


def test_soft_failed_is_refused(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    response = client3.update(task_id, taskStatus="soft-failed")
    assert response.status_code == 400
    assert response.json()["code"] == 400 and "soft-failed" in response.json()["message"]
    assert manager3.task(task_id)["status"] == "active" and manager3.task_updates(task_id) == []


@pytest.mark.parametrize("steps", [-1, 3])
def test_steps_completed_never_above_steps_total(manager3, client3, steps):
    task_id = manager3.submit_job(one_task_job(jobs.echo("a"), jobs.echo("b")))["task_ids"][0]
    client3.take()
    response = client3.update(task_id, steps_completed=steps)
    assert response.status_code == 400 and "steps_completed" in response.json()["message"]
    assert client3.update(task_id, steps_completed=2).status_code == 204
    assert manager3.task(task_id)["steps_completed"] == 2


def test_failed_counts_against_the_worker_which_does_not_get_the_task_again(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    assert client3.update(task_id, taskStatus="failed", activity="Failed: no").status_code == 204
    assert manager3.task(task_id)["status"] == "failed"
    assert manager3.worker(client3.uuid)["failures"] == 1
    assert manager3.task(task_id)["failed_by_workers"] == [client3.uuid]


def test_update_of_a_task_assigned_elsewhere_is_409(manager3, client3):
    other = V3Client(manager3, name="other").join()
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    manager3.reassign_task(task_id, other.uuid)
    response = client3.update(task_id, taskStatus="completed")
    assert response.status_code == 409 and response.json()["code"] == 409
    assert client3.may_i_run(task_id)["mayKeepRunning"] is False
    assert other.take() == task_id
    assert other.update(task_id, taskStatus="completed").status_code == 204


def test_update_of_a_never_assigned_task_is_409(manager3, client3):
    task_id = manager3.submit_job(one_task_job(name="x"))["task_ids"][0]
    assert client3.update(task_id, log="hello\n").status_code == 409


def test_update_of_a_deleted_job_is_404(manager3, client3):
    submitted = manager3.submit_job(one_task_job())
    task_id = submitted["task_ids"][0]
    client3.take()
    manager3.delete_job(submitted["job_id"])
    response = client3.update(task_id, taskStatus="completed")
    assert response.status_code == 404 and response.json()["code"] == 404
    assert client3.may_i_run(task_id) == {"mayKeepRunning": False, "reason": "Task not found",
                                         "statusChangeRequested": False}


def test_task_id_that_is_not_a_uuid_is_400(client3):
    response = client3.update("not-a-uuid", log="x")
    assert response.status_code == 400 and response.json()["message"] == "task ID not valid"
    assert client3.call("GET", f"{API}task/123/may-i-run").status_code == 400


# may-i-run

def test_may_i_run_says_no_for_an_immediate_status_request(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    manager3.request_status(client3.uuid, "asleep", lazy=True)
    assert client3.may_i_run(task_id)["mayKeepRunning"] is True
    manager3.request_status(client3.uuid, "asleep")
    assert client3.may_i_run(task_id) == {"mayKeepRunning": False,
                                         "reason": "worker status change requested",
                                         "statusChangeRequested": True}
    assert client3.ask().json() == {"status_requested": "asleep"}


def test_may_i_run_says_no_for_a_canceled_task(manager3, client3):
    task_id = manager3.submit_job(one_task_job())["task_ids"][0]
    client3.take()
    manager3.cancel_task(task_id)
    answer = client3.may_i_run(task_id)
    assert answer["mayKeepRunning"] is False and "canceled" in answer["reason"]


# Timeouts

def test_silent_worker_goes_to_error_and_its_task_is_requeued(make_manager3):
    manager = make_manager3(worker_timeout=0.3)
    client = V3Client(manager).join()
    task_id = manager.submit_job(one_task_job())["task_ids"][0]
    client.take()
    wait_until(lambda: manager.worker(client.uuid)["status"] == "error", 10,
               "the silent worker to be put in error")
    assert manager.task(task_id)["status"] == "queued"
    assert "timed out" in manager.task(task_id)["activity"]
    assert client.ask().status_code == 409  # still error when it talks again
    client.state_changed("awake")
    assert client.take() == task_id


def test_untouched_task_fails(make_manager3):
    manager = make_manager3(task_timeout=0.3)
    client = V3Client(manager).join()
    task_id = manager.submit_job(one_task_job())["task_ids"][0]
    client.take()
    wait_until(lambda: manager.task(task_id)["status"] == "failed", 10, "the task to time out")
