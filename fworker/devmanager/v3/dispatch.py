"""Jobs and tasks of the Flamenco 3 development Manager: scheduling,
re-delivery, task updates, may-i-run, re-queueing and the task timeout.

As in the real Manager, a task's ``worker`` is the last worker it was given
to and is kept when the task is re-queued: that worker's late updates are
still accepted; anyone else's are ``409``.  ``queued`` and ``soft-failed``
tasks can be scheduled, only ``active`` ones run.  There is no way for a
worker to give a task back: a worker asking again gets its active task again.
"""
import logging
import typing

from .. import common
from ..common import Row
from ..dispatch import DispatcherBase, JobFormat
from ..jobs import job_status
from . import jobs
from .store import V3Store

logger = logging.getLogger(__name__)

SCHEDULABLE = ["queued", "soft-failed"]
ACCEPTED, UNKNOWN_TASK, NOT_YOURS, REFUSED = "accepted", "unknown", "not-yours", "refused"


class Dispatcher(DispatcherBase):
    store: V3Store
    job_format: typing.ClassVar[JobFormat] = jobs

    # Scheduling

    def assign(self, worker: Row) -> Row | None:
        """The worker's active task again, else the best schedulable one, now
        active and its; None when there is none."""
        with self.store.transaction():
            mine = self.store.tasks(status="active", worker=worker["id"])
            if mine:
                logger.info("Re-delivering active task %s to worker %s", mine[0]["id"],
                            worker["id"])
                return mine[0]
            failed_here = {row["task"] for row in self.store.failures(worker=worker["id"])}
            for task in self.store.tasks_by_priority(SCHEDULABLE, worker["supported_task_types"]):
                if task["id"] not in failed_here and self._parents_completed(task):
                    return self._give(task, worker)
        return None

    def _given(self, worker: Row) -> Row:
        return {"last_touched": common.utc_timestamp()}

    def assigned_task(self, task: Row, worker: Row) -> Row:
        """The AssignedTask answer, variables replaced for the worker's platform."""
        answer = {key: task[key] for key in ("job", "name", "status", "priority", "job_priority",
                                             "job_type", "task_type", "steps_completed",
                                             "steps_total")}
        answer["uuid"] = task["id"]
        answer["commands"] = jobs.replace_variables(task["commands"], self.variables,
                                                    worker["platform"])
        return answer

    # Task updates

    def apply_update(self, worker: Row, task_id: str, body: Row) -> tuple[str, str]:
        """Record a validated TaskUpdate; (outcome, message) with outcome one of
        ACCEPTED, UNKNOWN_TASK (404), NOT_YOURS (409), REFUSED (400)."""
        with self.store.transaction():
            task = self.store.task(task_id)
            if task is None:
                return UNKNOWN_TASK, f"task {task_id} not found"
            if task["worker"] != worker["id"]:
                whose = "any worker" if not task["worker"] else "you"
                return NOT_YOURS, f"task {task_id} is not assigned to {whose}"
            status = body.get("taskStatus")
            if status == "soft-failed":
                return REFUSED, "task status soft-failed not allowed to be sent by Worker"
            steps = body.get("steps_completed")
            if steps is not None and not 0 <= steps <= task["steps_total"]:
                return REFUSED, (f"steps_completed: {steps} is out of range "
                                 f"0..{task['steps_total']} (steps_total)")
            self.store.add_task_update(task_id, worker["id"], body)
            changes: Row = {"last_touched": common.utc_timestamp()}
            if "activity" in body:
                changes["activity"] = body["activity"]
            if steps is not None:
                changes["steps_completed"] = steps
            if status is not None and status != task["status"]:
                changes.update(self._status_change(task, worker, status))
            self.store.update_task(task_id, **changes)
            if changes.get("status", task["status"]) == "active":
                self.liveness.heard(task_id)
        return ACCEPTED, ""

    def _status_change(self, task: Row, worker: Row, status: str) -> Row:
        changes: Row = {"status": status}
        if status == "completed":
            changes["steps_completed"] = task["steps_total"]
        elif status == "queued":
            changes["steps_completed"] = 0
        elif status == "failed":
            self.store.add_failure(worker["id"], task)
            changes["failed_by_workers"] = task["failed_by_workers"] + [worker["id"]]
        if status != "active":
            self.liveness.forget(task["id"])
        logger.info("Task %s: %s -> %s (worker %s)", task["id"], task["status"], status,
                    worker["id"])
        return changes

    def may_keep_running(self, worker: Row, task_id: str) -> Row:
        """The MayKeepRunning answer, checked in the real Manager's order."""
        with self.store.transaction():
            task = self.store.task(task_id)
            if task is None:
                return _may(False, "Task not found")
            if worker["status_requested"] and not worker["lazy_status_request"]:
                return _may(False, "worker status change requested", True)
            if task["worker"] != worker["id"]:
                return _may(False, "task not assigned to this worker")
            if task["status"] != "active":
                return _may(False, f'task is in non-runnable status "{task["status"]}"')
            self.store.update_task(task_id, last_touched=common.utc_timestamp())
            self.liveness.heard(task_id)
        return _may(True, "")

    def requeue_tasks_of(self, worker_id: str, reason: str) -> list[str]:
        """Put the worker's active tasks back in the queue; their ids."""
        with self.store.transaction():
            held = self.store.tasks(status="active", worker=worker_id)
            for task in held:
                self.store.update_task(task["id"], status="queued", steps_completed=0,
                                       activity=f"Task was queued by Manager because {reason}")
                self.liveness.forget(task["id"])
                logger.info("Task %s re-queued: %s", task["id"], reason)
        return [task["id"] for task in held]

    def fail_untouched_tasks(self, timeout: float) -> list[str]:
        with self.store.transaction():
            active = {task["id"]: task for task in self.store.tasks(status="active")}
            silent = self.liveness.expired(active, timeout)
            for task_id in silent:
                self.store.update_task(task_id, status="failed",
                                       activity=f"Task timed out: untouched for {timeout:g} s")
                self.liveness.forget(task_id)
                logger.warning("Task %s failed: untouched for %g s", task_id, timeout)
        return silent

    # Developer actions

    def cancel_task(self, task_id: str) -> str:
        """Queued, soft-failed or active -> canceled; its worker learns it from may-i-run."""
        with self.store.transaction():
            task = self.existing(task_id)
            if task["status"] in SCHEDULABLE + ["active"]:
                self.store.update_task(task_id, status="canceled", activity="Canceled")
                self.liveness.forget(task_id)
                return "canceled"
            status: str = task["status"]
            return status

    def reassign_task(self, task_id: str, other_worker_id: str = "") -> None:
        """Make the task another worker's (active for it) or nobody's (queued):
        the old worker then gets 409 on updates and "no" from may-i-run."""
        with self.store.transaction():
            task = self.existing(task_id)
            status = "active" if other_worker_id else "queued"
            self.store.update_task(task_id, worker=other_worker_id, status=status)
            if other_worker_id:
                self.liveness.heard(task_id)
            else:
                self.liveness.forget(task_id)
        logger.info("Task %s (%s) reassigned to %r", task_id, task["status"], other_worker_id)

    def delete_job(self, job_id: str) -> None:
        """Delete a job and its tasks: updates of them are then 404."""
        with self.store.transaction():
            self.existing_job(job_id)
            for task in self.store.tasks(job=job_id):
                self.liveness.forget(task["id"])
            self.store.delete_job(job_id)

    # Views

    def task_view(self, task_id: str) -> Row:
        view = {key: value for key, value in self.existing(task_id).items() if key != "seq"}
        view["log"] = self.store.task_log(task_id)
        return view

    def job_view(self, job_id: str) -> Row:
        job = self.existing_job(job_id)
        tasks = self.store.tasks(job=job_id)
        view = {key: value for key, value in job.items() if key != "seq"}
        view.update(status=job_status(task["status"] for task in tasks),
                    task_ids=[task["id"] for task in tasks])
        return view


def _may(keep_running: bool, reason: str, status_change: bool = False) -> Row:
    return {"mayKeepRunning": keep_running, "reason": reason,
            "statusChangeRequested": status_change}
