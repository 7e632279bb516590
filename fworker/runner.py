"""Runs one task's commands, in order, in its own greenlet.

The worker kills the runner greenlet with an ``Abort`` to stop a task (a
shutdown, or the Manager taking the task back); since ``Abort`` is a
``GreenletExit`` it passes through commands' ``except Exception`` blocks,
and every child process the command started is killed with its whole tree
on the way out.

Limits (``task_timeout``, and ``task_log_max_bytes`` in the reporter) raise
``LimitExceeded`` inside the runner greenlet; the task fails with an activity
naming the limit.  The task timer is a ``gevent.Timeout`` of this greenlet,
cancelled before the final report, so it can never interrupt that report.
"""
from __future__ import annotations

import enum
import logging
import typing

import gevent

from fworker import config, containment, leftovers
from fworker.commands import base as commands
from fworker.errors import TaskFailed
from fworker.events import EventBus
from fworker.queue import UpdateQueue
from fworker.reporter import LimitExceeded, LocalLog, TaskReporter, one_line
from fworker.task import Task, unannounced_type

log = logging.getLogger(__name__)

# A failure reason may quote a huge setting; the log gets this much of it.
MAX_REASON = 10_000


class Outcome(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    # Stopped without a verdict: the task goes back to the Manager.
    RETURNED = "returned"


class Abort(gevent.GreenletExit):
    """Stop the task now.  ``give_back``: return it to the Manager without
    judging it (it was cancelled or reassigned, or the worker goes to sleep);
    otherwise report it failed with ``reason`` (the worker shuts down)."""

    def __init__(self, reason: str, *, give_back: bool):
        super().__init__(reason)
        self.reason = reason
        self.give_back = give_back


class TaskRunner:
    def __init__(self, task: Task, queue: UpdateQueue, settings: config.Settings,
                 on_output: typing.Callable[[list[str]], None] | None = None,
                 events: EventBus | None = None, local_log: LocalLog | None = None,
                 dialect: str = "v2", announced: typing.Sequence[str] | None = None):
        self.task = task
        # Commands are looked up in the catalogue of the Manager's generation.
        self.dialect = dialect
        # The task types the worker announced: a task of another type fails before
        # any command runs (a Flamenco 3 Manager cannot be handed a task back; a 2.x
        # one would hand it out again).  None: not checked.
        self.announced = announced
        self.settings = settings
        self.events = events or EventBus()
        self.logger = logging.getLogger("fworker.task").getChild(task.short_id)
        self.reporter = TaskReporter(task.id, queue, settings, command_count=len(task.commands),
                                     task_logger=self.logger, on_output=on_output, local_log=local_log,
                                     steps_total=task.steps_total)
        self.current_command: str | None = None

    def run(self) -> Outcome:
        reporter = self.reporter
        reporter.start()
        try:
            reporter.push_now({"task_status": "active", "activity": f"task {self.task.name or self.task.id} started"})
            self._run_commands()
        except Abort as ex:
            return self._aborted(ex)
        except LimitExceeded as ex:
            return self._finish(Outcome.FAILED, ex.reason)
        except TaskFailed as ex:
            return self._finish(Outcome.FAILED, str(ex))
        except Exception as ex:  # a bug in a command must not take the worker down
            self.logger.exception("command %s crashed", self.current_command)
            return self._finish(Outcome.FAILED, f"internal error in command {self.current_command}: {ex!r}")
        finally:
            reporter.stop()
        return self._finish(Outcome.COMPLETED, "Task completed")

    def _run_commands(self) -> None:
        limit = self.settings.task_timeout
        timer = None
        if limit > 0:
            timer = gevent.Timeout(limit, LimitExceeded(f"task_timeout: the task ran longer than {limit:g} s"))
            timer.start()
        try:
            self._stop_leftovers()
            # Everything the task starts is stopped when it ends, however it ends.
            queue_db = self.settings.task_update_queue_db
            with containment.TaskScope(self.task.short_id, grace=self.settings.abort_grace_period, logger=self.logger,
                                       owner=leftovers.owner_mark(queue_db) if queue_db else None):
                for index, (cmd, settings) in enumerate(self._prepare()):
                    self._run_command(index, cmd, settings)
                    if not self.task.commands[index].total_step_count:
                        # A command without steps of its own is one step (the edge
                        # leaves steps out for a Manager that has no place for them).
                        self.reporter.steps_completed(1)
        finally:
            if timer is not None:
                timer.close()

    def _stop_leftovers(self) -> None:
        """Nothing of an earlier task may run beside this one: what a SIGKILLed
        worker left behind (this task may be the same one, handed over again)."""
        queue_db = self.settings.task_update_queue_db
        if queue_db:
            for problem in leftovers.stop_leftovers(leftovers.owner_mark(queue_db)):
                self.logger.error("%s", problem)
                self.reporter.worker_line(f"worker: {problem}")

    def _prepare(self) -> list[tuple[commands.Command, dict[str, typing.Any]]]:
        """Look up and validate every command before running any, so a typo in
        the last command does not waste a render in the first."""
        refused = None if self.announced is None else unannounced_type(self.task, self.announced)
        if refused is not None:
            raise TaskFailed(refused)
        prepared = []
        for index, spec in enumerate(self.task.commands):
            cls = commands.lookup(spec.name, self.dialect)
            cmd = cls(commands.CommandContext(self.reporter, self.logger, self.settings))
            try:
                prepared.append((cmd, cmd.validate(spec.settings)))
            except TaskFailed as ex:
                raise TaskFailed(f"commands[{index}]: {ex}") from None
        return prepared

    def _run_command(self, index: int, cmd: commands.Command, settings: dict[str, typing.Any]) -> None:
        self.current_command = cmd.name
        self.logger.info("starting command %d/%d: %s", index + 1, len(self.task.commands), cmd.name)
        self.reporter.command_started(index, cmd.name)
        self.events.emit("command_started", task_id=self.task.id, index=index, name=cmd.name)
        cmd.execute(settings)
        self.reporter.command_finished(index, cmd.name)
        self.events.emit("command_finished", task_id=self.task.id, index=index, name=cmd.name)
        self.logger.info("finished command %s", cmd.name)

    def _aborted(self, ex: Abort) -> Outcome:
        if ex.give_back:
            self.logger.warning("task stopped: %s", ex.reason)
            self.reporter.worker_line(f"task stopped by the worker: {ex.reason}")
            self.reporter.flush_log()
            return Outcome.RETURNED
        return self._finish(Outcome.FAILED, ex.reason)

    def _finish(self, outcome: Outcome, activity: str) -> Outcome:
        if outcome is Outcome.FAILED:
            self.logger.error("task failed: %s", one_line(activity))
            self.reporter.worker_line(f"task failed: {one_line(activity, MAX_REASON)}")
        else:
            self.logger.info("task completed")
        self.reporter.stop()
        self.reporter.push_now(self.reporter.final_payload(outcome.value, activity))
        return outcome
