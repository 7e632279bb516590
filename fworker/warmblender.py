"""A Blender that keeps its .blend loaded between render tasks (the "warm" Blender).

One per worker at most.  It is started like a fresh render (the same program, options
and file) but with ``blender_scripts/warm_control.py`` in place of the render arguments,
and talks over its stdin (requests, one JSON line each) and stdout (Blender's own output,
then one reply line that starts with a random token: see the script).  Its output goes to
the task using it, line by line, exactly as a fresh Blender's would.

It belongs to the worker, not to a task: it is registered here as a *resident*
(``is_resident``: pid and create time, the process itself only, not what it starts), and
the sweeps that stop what a task left running leave residents alone: the leftovers sweep
(``fworker.leftovers``) asks ``is_resident``, and a task's containment
(``fworker.containment.exclude``) is told when it starts.  Nothing else escapes through
that: a process the warm Blender starts is stopped with it after the task.  It still
carries the worker's owner mark, so a worker killed with SIGKILL leaves nothing that its
next start does not find.

Bounds (``Limits``): stopped after ``max_tasks`` tasks, when its memory grows past
``max_rss_mb`` after a task, when idle for ``idle_timeout``, and by ``stop_all()`` (the
worker going asleep or shutting down).  Killing the greenlet that waits for it (abort,
may-i-run "no", a task timeout, shutdown), an output timeout, or any surprise in the
conversation stops its whole tree: the next task starts a fresh one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import typing
import uuid

import gevent
import gevent.socket
import gevent.subprocess
import psutil

from fworker import containment, proctree
from fworker.lines import BatchSplitter
from fworker.proctree import OWNER_VAR, PRCTL, DieWithParent

log = logging.getLogger(__name__)

CONTROL_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "commands", "blender_scripts",
                              "warm_control.py")
TOKEN_ENV = "FWORKER_WARM_TOKEN"
_READ = 65536

# The residents: pid -> create_time.  Only the warm Blender process itself is here.
_residents: dict[int, float] = {}
_current: WarmBlender | None = None


def is_resident(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a process the worker keeps between tasks (a warm Blender),
    which a sweep of a task's leftovers must not stop.  Its children are not."""
    created = _residents.get(proc.pid)
    if created is None:
        return False
    try:
        return proc.create_time() == created
    except psutil.Error:
        return False


def resident_pids() -> set[int]:
    return set(_residents)


class WarmFailed(Exception):
    """The warm Blender died or said something unexpected; it has been stopped."""


class OutputSilence(WarmFailed):
    """Nothing printed for the output timeout; it has been stopped."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_tasks: int = 20
    max_rss_mb: float = 0.0  # 0: no limit
    idle_timeout: float = 300.0
    grace: float = 10.0  # SIGTERM to SIGKILL


@dataclasses.dataclass(frozen=True)
class Key:
    """What must be equal for a task to use a warm Blender: how it was started."""
    argv: tuple[str, ...]  # program and launch options, without the task's own
    filepath: str  # absolute


LineSink = typing.Callable[[list[str]], None]
# One line of the conversation, either way: a JSON object.
Message = dict[str, typing.Any]
# A file as it was when loaded: path, size, mtime (ns), inode; only the path when missing.
FileStamp = tuple[str, int, int, int] | tuple[str, None]


def current() -> WarmBlender | None:
    return _current if _current is not None and _current.running() else None


def stop_all(reason: str) -> None:
    """Stop the warm Blender, if there is one (the worker sleeps, shuts down...)."""
    if _current is not None:
        _current.stop(reason)


class WarmBlender:
    def __init__(self, key: Key, launch: list[str], limits: Limits, *, env: dict[str, str] | None = None,
                 owner: str | None = None, logger: logging.Logger = log):
        self.key, self.launch, self.limits = key, list(launch), limits
        # The environment of any child of the worker (fworker.childenv): the caller's.
        self._env = dict(os.environ if env is None else env)
        self.tasks = 0
        self.dependencies: list[str] = []
        self.fingerprint: tuple[FileStamp, ...] = ()  # of the file and its dependencies, when loaded
        self.unsafe = ""
        self.pid: int | None = None
        self._owner, self._log = owner, logger
        self._token = uuid.uuid4().hex
        self._popen: gevent.subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None
        self._idle: gevent.Greenlet[..., typing.Any] | None = None
        self._splitter: BatchSplitter | None = None
        self._replies: list[Message] = []
        self._sink: LineSink = self._debug_lines

    # Life cycle

    def start(self, sink: LineSink, output_timeout: float = 0.0) -> Message:
        """Start Blender and wait for the loaded file; its output goes to ``sink``."""
        global _current  # noqa: PLW0603  (the one warm Blender of this worker process)
        if _current is not None and _current is not self:
            _current.stop("another warm Blender starts")
        _current = self
        env = dict(self._env)
        env[TOKEN_ENV] = self._token
        if self._owner:
            env[OWNER_VAR] = self._owner
        try:
            self._popen = gevent.subprocess.Popen(
                self.launch, env=env, bufsize=0, start_new_session=True,
                stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.STDOUT,
                preexec_fn=DieWithParent() if PRCTL is not None else None)
        except BaseException:
            _current = None
            raise
        self.pid = self._popen.pid
        try:
            self._ps = psutil.Process(self.pid)
            _residents[self.pid] = self._ps.create_time()
        except psutil.Error:
            pass  # gone already: the first read says so
        # Not the running task's, though it starts while one runs: the task's end leaves it.
        containment.exclude(self.pid)
        self._splitter = BatchSplitter(self._on_lines, 65536)
        self._log.info("started warm Blender pid %s for %s", self.pid, self.key.filepath)
        ready = self._exchange(None, sink, output_timeout)
        if ready.get("kind") != "ready":
            self.stop("unexpected first reply")
            raise WarmFailed(f"warm Blender's first reply was {ready!r}")
        self.dependencies = list(ready.get("dependencies") or [])
        self.unsafe = str(ready.get("unsafe") or "")
        return ready

    def render(self, request: Message, sink: LineSink, output_timeout: float = 0.0) -> Message:
        """Send one task's request, its output to ``sink``; Blender's reply."""
        self._cancel_idle()
        reply = self._exchange(request, sink, output_timeout)
        if reply.get("kind") not in ("done", "declined"):
            self.stop(f"it replied {reply.get('kind')!r}: {reply.get('why', '')}")
            raise WarmFailed(f"the warm Blender failed: {reply.get('why') or reply!r}")
        if reply["kind"] == "done":
            self.tasks += 1
        return reply

    def after_task(self) -> None:
        """Between tasks: stop when a bound is reached, else wait idle."""
        if not self.running():
            return
        left = self._descendants()
        if left:  # only Blender itself is exempt: what it started ends with the task
            self.stop(f"it left processes running after the task: pids {proctree.pids(left)}")
        elif self.unsafe:
            self.stop(f"the file cannot be kept loaded: {self.unsafe}")
        elif self.tasks >= self.limits.max_tasks:
            self.stop(f"it rendered {self.tasks} tasks (warm_blender_max_tasks)")
        elif self.limits.max_rss_mb and (rss := self.rss_mb()) > self.limits.max_rss_mb:
            self.stop(f"it uses {rss:.0f} MB (warm_blender_max_memory_mb "
                      f"{self.limits.max_rss_mb:g})")
        elif self.limits.idle_timeout > 0:
            self._idle = gevent.spawn_later(self.limits.idle_timeout, self.stop, "idle")

    def running(self) -> bool:
        # psutil sees a zombie before gevent has reaped it (and poll() says so).
        return (self._popen is not None and self._popen.poll() is None
                and self._ps is not None and proctree.alive(self._ps))

    def rss_mb(self) -> float:
        try:
            return self._ps.memory_info().rss / 1e6 if self._ps is not None else 0.0
        except psutil.Error:
            return 0.0

    def stop(self, reason: str) -> None:
        """Stop its whole tree (SIGTERM, grace, SIGKILL).  Idempotent."""
        global _current  # noqa: PLW0603  (the one warm Blender of this worker process)
        if _current is self:
            _current = None
        self._cancel_idle()
        if self.pid is not None:
            _residents.pop(self.pid, None)
        if self._popen is None:
            return
        popen, self._popen = self._popen, None
        if popen.poll() is None:
            self._log.info("stopping warm Blender pid %s: %s", self.pid, reason)
            proctree.stop(self._members, self.limits.grace, group=self._group, logger=self._log,
                          name=f"warm Blender pid {self.pid}")
        else:
            self._log.info("warm Blender pid %s is gone (%s): %s", self.pid, popen.returncode, reason)
        try:
            popen.wait(timeout=proctree.KILL_TIMEOUT)
        except gevent.subprocess.TimeoutExpired:
            self._log.warning("warm Blender pid %s survived SIGKILL", self.pid)
        for stream in (popen.stdin, popen.stdout):
            if stream is None:  # both are pipes; this only tells mypy
                continue
            try:
                stream.close()
            except OSError:
                continue  # a broken pipe on the last flush: nothing to say to it anyway

    # The conversation

    def _exchange(self, request: Message | None, sink: LineSink, output_timeout: float) -> Message:
        """Send ``request`` (None: only listen), read output until the reply.  Anything
        that interrupts this (a kill of the caller, a timeout) stops Blender."""
        self._sink = sink
        try:
            if request is not None:
                self._send(request)
            while not self._replies:
                self._read_some(output_timeout)
            return self._replies.pop(0)
        except BaseException:
            self.stop("interrupted during a task")
            raise
        finally:
            self._sink = self._debug_lines

    def _send(self, request: Message) -> None:
        stdin = self._popen.stdin if self._popen is not None else None
        if stdin is None:
            raise WarmFailed("the warm Blender has been stopped")
        data = (json.dumps(request) + "\n").encode()
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, OSError) as ex:
            raise WarmFailed(f"the warm Blender is gone ({ex})") from None

    def _read_some(self, output_timeout: float) -> None:
        popen, splitter = self._popen, self._splitter
        if popen is None or popen.stdout is None or splitter is None:
            raise WarmFailed("the warm Blender has been stopped")
        fd = popen.stdout.fileno()
        if output_timeout > 0:
            gevent.socket.wait_read(fd, timeout=output_timeout, timeout_exc=OutputSilence(
                f"the warm Blender printed nothing for {output_timeout:g} s"))
        else:
            gevent.socket.wait_read(fd)
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return
        if not data:
            splitter.close()
            code = popen.wait()
            raise WarmFailed(f"the warm Blender exited ({_exit_text(code)})")
        splitter.feed(data)

    def _on_lines(self, lines: list[str]) -> None:
        prefix = self._token + " "
        out: list[str] = []
        for line in lines:
            if line.startswith(prefix):
                if out:
                    self._sink(out)
                    out = []
                try:
                    self._replies.append(json.loads(line[len(prefix):]))
                except ValueError:
                    self._replies.append({"kind": "garbled", "why": line[:200]})
            else:
                out.append(line)
        if out:
            self._sink(out)

    def _debug_lines(self, lines: list[str]) -> None:
        for line in lines:
            self._log.debug("warm Blender pid %s: %s", self.pid, line)

    # The /proc children files, not psutil's children(recursive=True): that reads the
    # parent of every process on the machine, and stop() asks every polling round.
    def _descendants(self) -> list[psutil.Process]:
        return [proc for proc in self._members() if proc is not self._ps]

    def _members(self) -> list[psutil.Process]:
        if self._ps is None or not proctree.alive(self._ps):
            return []
        return proctree.subtrees([self._ps])

    def _group(self, procs: list[psutil.Process]) -> int | None:
        return self.pid if self._ps is not None and proctree.alive(self._ps) else None

    def _cancel_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and idle is not gevent.getcurrent():
            idle.kill(block=False)


def _exit_text(code: int) -> str:
    return f"exit code {code}" if code >= 0 else f"signal {-code}"
