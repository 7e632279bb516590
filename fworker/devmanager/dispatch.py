"""Jobs and tasks: scheduling, what workers report, and developer actions.

Task statuses follow the real Manager: ``queued``, ``claimed-by-manager``
and ``soft-failed`` can be scheduled; ``active`` is assigned to a worker and
the only runnable status; ``completed``, ``failed`` and ``canceled`` are
final; ``cancel-requested`` waits for the worker to stop.

Ownership: ``worker`` is the worker that holds the task now (while it is
active or being cancelled); ``last_worker`` is the one it was last given to.
Re-queueing clears ``worker`` but keeps ``last_worker``, so that the late log
of a worker that gave a task back is still accepted (``204``, status
dropped).  A task whose ``last_worker`` is someone else (or nobody, after a
reassignment to nobody) is another worker's: ``409`` on update, and
``may_keep_running: false`` on may-i-run.

A ``failed`` report counts a failure for the worker: it is added to the
task's ``failed_by_workers`` and to the store's failure records (worker, job,
task type).  Nothing more: unlike the real Manager this one does not
blacklist workers or soft-fail tasks; a failed task stays failed.
"""
import logging
import typing

from . import common, jobs
from .common import Row
from .liveness import Liveness
from .store import Store

logger = logging.getLogger(__name__)

SCHEDULABLE = ["queued", "claimed-by-manager", "soft-failed"]
FINAL = ("completed", "failed", "canceled")

# The outcomes of a task update, which the worker API turns into 204/404/409.
ACCEPTED, UNKNOWN_TASK, OTHER_WORKERS = "accepted", "unknown", "other-workers"

_PROGRESS_FIELDS = ("activity", "task_progress_percentage", "current_command_idx",
                    "command_progress_percentage")


def worker_identifier(worker: Row) -> str:
    """How logs and failed_by_workers name a worker: address (nickname)."""
    if worker.get("nickname"):
        return f"{worker.get('address', '')} ({worker['nickname']})".strip()
    return str(worker.get("address") or worker["id"])


class JobFormat(typing.Protocol):
    """A generation's job format: its jobs module (jobs.py, v3/jobs.py)."""

    def validate_job(self, doc: typing.Any) -> Row:
        """The job with its defaults filled in; raises jobs.InvalidJob."""

    def build_rows(self, job: Row, created: str) -> tuple[Row, list[Row]]:
        """(job row, task rows) of a validated job."""


class DispatcherBase:
    """What the dispatchers of both generations share: submitting a job in their
    format, giving a worker a task whose parents are done, forgetting tasks and
    the views.  ``liveness`` holds when each active task was last heard of."""

    # The module of the generation's job format.
    job_format: typing.ClassVar[JobFormat]

    def __init__(self, store: Store, liveness: Liveness,
                 variables: dict[str, dict[str, str]] | None = None):
        self.store = store
        self.liveness = liveness
        self.variables = variables or {}

    # Jobs

    def submit_job(self, doc: typing.Any) -> Row:
        """Validate and queue a job; raises jobs.InvalidJob."""
        job = self.job_format.validate_job(doc)
        job_row, task_rows = self.job_format.build_rows(job, common.utc_timestamp())
        with self.store.transaction():
            self.store.add_job(job_row)
            for row in task_rows:
                self.store.add_task(row)
        logger.info("Job %s (%r) submitted with %d tasks", job_row["id"], job["name"],
                    len(task_rows))
        return {"job_id": job_row["id"], "task_ids": [row["id"] for row in task_rows]}

    # Scheduling

    def _parents_completed(self, task: Row) -> bool:
        # A parent that was forgotten no longer holds anything up.
        for parent_id in task["parents"]:
            parent = self.store.task(parent_id)
            if parent is not None and parent["status"] != "completed":
                return False
        return True

    def _give(self, task: Row, worker: Row) -> Row:
        changes = {"status": "active", "worker": worker["id"], **self._given(worker)}
        self.store.update_task(task["id"], **changes)
        self.liveness.heard(task["id"])
        logger.info("Assigned task %s to worker %s", task["id"], worker["id"])
        return dict(task, **changes)

    def _given(self, worker: Row) -> Row:
        """The generation's own fields of a task just given to worker."""
        raise NotImplementedError

    # Developer actions

    def cancel_task(self, task_id: str) -> str:
        """Cancel the task as the generation does; returns its new status."""
        raise NotImplementedError

    def reassign_task(self, task_id: str, other_worker_id: str = "") -> None:
        """Make the task another worker's, or nobody's ("") as the generation does."""
        raise NotImplementedError

    def cancel_job(self, job_id: str) -> None:
        with self.store.transaction():
            self.existing_job(job_id)
            for task in self.store.tasks(job=job_id):
                self.cancel_task(task["id"])

    def forget_task(self, task_id: str) -> None:
        with self.store.transaction():
            self.existing(task_id)
            self.store.delete_task(task_id)
        self.liveness.forget(task_id)

    def existing(self, task_id: str) -> Row:
        return common.found(self.store.task(task_id), f"Task {task_id}")

    def existing_job(self, job_id: str) -> Row:
        return common.found(self.store.job(job_id), f"Job {job_id}")

    # Views for the Python API, the dev API and the HTML pages

    def task_view(self, task_id: str) -> Row:
        raise NotImplementedError

    def tasks_view(self, job_id: str | None = None) -> list[Row]:
        filters = {"job": job_id} if job_id else {}
        return [self.task_view(task["id"]) for task in self.store.tasks(**filters)]

    def job_view(self, job_id: str) -> Row:
        raise NotImplementedError

    def jobs_view(self) -> list[Row]:
        return [self.job_view(job["id"]) for job in self.store.jobs()]


class Dispatcher(DispatcherBase):
    """Owns the job and task rules; every change runs in one store transaction."""

    job_format: typing.ClassVar[JobFormat] = jobs

    # Scheduling

    def assign(self, worker: Row) -> Row | None:
        """The task this worker should run: its active one again, or the best
        schedulable one, now assigned to it; None when there is none."""
        with self.store.transaction():
            already_active = self.store.tasks(status="active", worker=worker["id"])
            if already_active:
                logger.info("Re-delivering active task %s to worker %s",
                            already_active[0]["id"], worker["id"])
                return already_active[0]
            for task in self.store.tasks_by_priority(SCHEDULABLE, worker["supported_task_types"]):
                if self._parents_completed(task):
                    return self._give(task, worker)
        return None

    def _given(self, worker: Row) -> Row:
        return {"last_worker": worker["id"], "last_ping": common.utc_timestamp(),
                "task_progress_percentage": 0, "current_command_idx": 0,
                "command_progress_percentage": 0}

    def task_json(self, task: Row, worker: Row) -> Row:
        """The Task document a worker receives from POST /task."""
        doc = {"_id": task["id"], "job": task["job"], "manager": self.store.manager_id}
        doc.update({key: task[key] for key in ("project", "user", "name", "status", "priority",
                                               "job_priority", "job_type", "task_type")})
        doc["commands"] = jobs.replace_variables(task["commands"], self.variables,
                                                 worker["platform"])
        # The Go Manager puts the worker's nickname here, not its id.
        doc["worker"] = worker["nickname"]
        for key in ("parents", "activity", "failed_by_workers"):
            if task[key]:
                doc[key] = task[key]
        return doc

    # What workers report

    def apply_update(self, worker: Row, task_id: str, body: Row, fields: Row) -> str:
        """Record an update; returns ACCEPTED, UNKNOWN_TASK or OTHER_WORKERS."""
        with self.store.transaction():
            task = self.store.task(task_id)
            if task is None:
                return UNKNOWN_TASK
            if task["last_worker"] != worker["id"]:
                return OTHER_WORKERS
            self.store.add_task_update(task_id, worker["id"], body)
            if task["status"] == "active":
                self._apply_to_active(task, worker, fields)
            elif task["status"] == "cancel-requested" and \
                    fields.get("task_status") in ("failed", "canceled"):
                self._set_status(task, "canceled", "Canceled by worker on request")
            elif "task_status" in fields or "activity" in fields:
                logger.info("Task %s is %s: dropped status/activity of an update from worker %s",
                            task_id, task["status"], worker["id"])
        return ACCEPTED

    def _apply_to_active(self, task: Row, worker: Row, fields: Row) -> None:
        changes = {key: fields[key] for key in _PROGRESS_FIELDS if key in fields}
        changes["last_ping"] = common.utc_timestamp()
        if "metrics" in fields:
            changes["metrics"] = _merge_metrics(task["metrics"] or {}, fields["metrics"])
        status = fields.get("task_status", "active")
        if status != "active":
            changes["status"] = status
            self.liveness.forget(task["id"])
            logger.info("Task %s is now %s (worker %s)", task["id"], status, worker["id"])
            if status == "failed":
                changes["failed_by_workers"] = self._count_failure(task, worker)
        else:
            self.liveness.heard(task["id"])
        self.store.update_task(task["id"], **changes)

    def _count_failure(self, task: Row, worker: Row) -> list[Row]:
        self.store.add_failure(worker["id"], task)
        failed_by = [entry for entry in task["failed_by_workers"] if entry["id"] != worker["id"]]
        return failed_by + [{"id": worker["id"], "identifier": worker_identifier(worker)}]

    def give_back(self, worker: Row, task_id: str) -> bool:
        """POST /tasks/{id}/return; False when the task is unknown."""
        with self.store.transaction():
            task = self.store.task(task_id)
            if task is None:
                return False
            if task["worker"] == worker["id"]:
                self._release(task, f"Returned by worker {worker_identifier(worker)}")
        return True

    def may_keep_running(self, worker: Row, task_id: str) -> Row:
        """The may-i-run answer, checking in the Manager's order."""
        requested = worker["status_requested"]
        with self.store.transaction():
            task = self.store.task(task_id)
            if task is None:
                reason = f"task {task_id} is unknown"
            elif task["last_worker"] != worker["id"]:
                reason = f"task {task_id} was reassigned to another worker"
            elif task["status"] != "active":
                reason = f"task {task_id} is {task['status']}, not active"
            elif requested and requested != "awake" and not worker["lazy_status_request"]:
                reason = f"worker status change to {requested} requested"
            else:
                reason = ""
                self.store.update_task(task_id, last_ping=common.utc_timestamp())
                self.liveness.heard(task_id)
        answer: Row = {"may_keep_running": not reason}
        if reason:
            answer["reason"] = reason
        if requested:
            answer["status_requested"] = requested
        return answer

    def release_tasks_of(self, worker_id: str, why: str) -> list[str]:
        """Take back every task a worker holds: active ones are re-queued,
        cancel-requested ones become canceled.  Returns their ids."""
        with self.store.transaction():
            held = self.store.tasks(worker=worker_id, status=["active", "cancel-requested"])
            for task in held:
                self._release(task, why)
        return [task["id"] for task in held]

    def _release(self, task: Row, why: str) -> None:
        if task["status"] == "active":
            self.store.update_task(task["id"], status="queued", worker="", activity=why)
            logger.info("Task %s re-queued: %s", task["id"], why)
        elif task["status"] == "cancel-requested":
            self._set_status(task, "canceled", why)
        self.liveness.forget(task["id"])

    def _set_status(self, task: Row, status: str, activity: str) -> None:
        self.store.update_task(task["id"], status=status, activity=activity)
        logger.info("Task %s is now %s: %s", task["id"], status, activity)

    # Timeouts

    def fail_silent_tasks(self, timeout: float) -> list[str]:
        """Fail active tasks that have had no ping for more than timeout seconds."""
        with self.store.transaction():
            active = {task["id"]: task for task in self.store.tasks(status="active")}
            silent = self.liveness.expired(active, timeout)
            for task_id in silent:
                task = active[task_id]
                changes: Row = {"status": "failed",
                           "activity": f"Task timed out: no ping from its worker for {timeout:g} s"}
                worker = self.store.worker(task["worker"])
                if worker is not None:
                    changes["failed_by_workers"] = self._count_failure(task, worker)
                self.store.update_task(task_id, **changes)
                self.liveness.forget(task_id)
                logger.warning("Task %s failed: %s", task_id, changes["activity"])
        return silent

    # Developer actions

    def cancel_task(self, task_id: str) -> str:
        """Active -> cancel-requested, schedulable -> canceled; returns the new status."""
        with self.store.transaction():
            task = self.existing(task_id)
            if task["status"] == "active":
                self._set_status(task, "cancel-requested", "Cancel requested")
                return "cancel-requested"
            if task["status"] in SCHEDULABLE:
                self._set_status(task, "canceled", "Canceled before it ran")
                return "canceled"
            status: str = task["status"]
            return status

    def reassign_task(self, task_id: str, other_worker_id: str = "") -> None:
        """Make the task someone else's (or nobody's): its old worker gets 409.

        To another worker: a schedulable task becomes active for it (it gets
        it on its next POST /task).  To nobody: an active task is re-queued.
        """
        with self.store.transaction():
            task = self.existing(task_id)
            changes: Row = {"last_worker": other_worker_id}
            if not other_worker_id:
                self._release(task, "Reassigned to nobody")
            elif task["status"] not in FINAL:
                changes["worker"] = other_worker_id
                if task["status"] in SCHEDULABLE:
                    changes["status"] = "active"
                self.liveness.heard(task_id)
            self.store.update_task(task_id, **changes)
        logger.info("Task %s reassigned to %r", task_id, other_worker_id)

    # Views for the Python API, the dev API and the HTML pages

    def task_view(self, task_id: str) -> Row:
        task = self.existing(task_id)
        view = {key: value for key, value in task.items() if key != "seq"}
        view.update({"_id": task["id"], "manager": self.store.manager_id,
                     "log": self.store.task_log(task_id)})
        return view

    def job_view(self, job_id: str) -> Row:
        job = self.existing_job(job_id)
        tasks = self.store.tasks(job=job_id)
        view = {key: value for key, value in job.items() if key != "seq"}
        view.update({"_id": job_id, "status": jobs.job_status(task["status"] for task in tasks),
                     "task_ids": [task["id"] for task in tasks]})
        return view


def _merge_metrics(old: Row, new: Row) -> Row:
    """New metrics over old ones; timing phases accumulate by name."""
    merged = dict(old, **{key: value for key, value in new.items() if key != "timing"})
    if "timing" in new:
        merged["timing"] = dict(old.get("timing", {}), **new["timing"])
    return merged
