"""Exceptions, grouped by how the caller reacts to them.

- ``RetryLater``: a transient problem (network, 5xx, timeout); keep the work
  and try again after a backoff.
- ``TaskFailed``: the running task cannot succeed; report it ``failed``.
- ``Fatal``: the worker cannot work at all; exit with ``exit_code``.
"""


class FworkerError(Exception):
    """Base class of every error fworker raises on purpose."""


class RetryLater(FworkerError):
    """A transient failure: try again after a backoff.  ``retry_after``: the
    seconds the Manager asked for (503 with Retry-After), None if it did not."""

    def __init__(self, message: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# A Retry-After is honoured up to this long: the Manager takes a worker silent
# for a minute as gone, so no wait may come near that.
RETRY_AFTER_MAX = 30.0


def retry_after(ex: BaseException) -> float:
    """The wait the Manager asked for with ``ex`` (capped), else 0."""
    seconds = getattr(ex, "retry_after", None)
    return min(float(seconds), RETRY_AFTER_MAX) if seconds else 0.0


class TaskFailed(FworkerError):
    """The running task fails; the message becomes its activity."""


class InvalidSettings(TaskFailed):
    """A command's settings are wrong; names the command, setting and problem."""

    def __init__(self, command: str, setting: str, problem: str):
        self.command = command
        self.setting = setting
        self.problem = problem
        super().__init__(f"command {command!r}: setting {setting!r} {problem}")


class UnknownCommand(TaskFailed):
    """The task names a command this worker does not have."""


class CommandFailed(TaskFailed):
    """A command ran and did not succeed (exit code, signal, missing output)."""


class Fatal(FworkerError):
    """The worker cannot go on; ``exit_code`` is what the process exits with."""

    exit_code = 1


class ConfigError(Fatal):
    """The configuration cannot be used (bad file, key, type or value)."""

    exit_code = 2


class RegistrationRefused(Fatal):
    """The Manager refused to register this worker (bad registration secret)."""

    exit_code = 3


class DuplicateCommand(Fatal):
    """Two command classes claim the same name."""

    exit_code = 4


class AlreadyRunning(Fatal):
    """Another process holds this worker's state lock: the same worker (or one
    configured onto the same update queue) runs already."""

    exit_code = 6

    def __init__(self, lock_path: str, holder_pid: int | None, who: str = "this worker"):
        self.lock_path = lock_path
        self.holder_pid = holder_pid
        holder = f"process {holder_pid}" if holder_pid is not None else "another process (PID unknown)"
        super().__init__(
            f"another worker is running with the state of {who}: {holder} holds the lock file {lock_path}. "
            "Stop that one first, or give this one a task_update_queue_db of its own")
