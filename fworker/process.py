"""One child process and its whole tree, from start to the death of its last descendant.

Render tools start helpers that may leave the process group (setsid) or outlive their
parent, so ``abort()`` stops (``fworker.proctree.stop``) the group *and* every descendant
that ``fworker.proctree.Descendants`` finds; while the child runs, a scan every
``track_interval`` remembers descendants that could later become impossible to find.
Inside a task (``fworker.containment``) the child starts in a cgroup of its own where the
system allows one: then every process it ever forks is found, scan or not.  Once the
tree has been stopped, its output is read for ``DRAIN`` seconds more at most: a process
that escaped every search and holds the pipe open does not keep the command running
(the task's end stops it).

A worker killed with SIGKILL runs none of that: see ``fworker.leftovers``.

gevent's SIGCHLD handler (libev) calls ``waitpid(-1)``: it reaps *every* child of the
worker, adopted orphans included.  Nothing here calls ``waitpid`` (that would steal exit
statuses from gevent's Popen): a pid may vanish at any moment; a zombie counts as gone.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import time
import typing
import uuid
from collections.abc import Callable

import gevent
import gevent.event
import gevent.lock
import gevent.subprocess
import psutil

from fworker import cgroups, childenv, containment, proctree
from fworker.lines import BatchSplitter, LineSplitter
from fworker.proctree import OWNER_VAR, PRCTL, TOKEN_VAR, Descendants, DieWithParent
from fworker.spool import Spool, grow_pipe

log = logging.getLogger(__name__)

_CHUNK = 65536  # handled at a time
# A child floods its output when this much waits in the spool (it printed faster
# than the worker handles output at full speed) and output still comes at least
# this fast (bytes a second, measured over windows of _FLOOD_HANDLE_EVERY).
_FLOOD_BACKLOG = 1024 * 1024
_FLOOD_RATE = 8 * 1024 * 1024
# Meanwhile one chunk is handled every _FLOOD_HANDLE_EVERY seconds (~3 MB/s, a
# few % of a core for the worker and as much for the Manager) and the pipe is
# emptied every _FLOOD_FILL_EVERY (at 100 MB/s a 1 MiB pipe is full in 10 ms).
_FLOOD_HANDLE_EVERY = 0.02
_FLOOD_FILL_EVERY = 0.005
_ON_ABORT = 4 * 1024 * 1024  # at most this much spooled output is still handled on abort
_CYCLE = 1e-6  # a timer that is due at once: one turn of the event loop
_GATHER = 0.002  # seconds to let trickling output gather before reading it
# Once the tree has been stopped, what is still in the pipe is read for at most this
# long: a process that holds the pipe open then could not be stopped, or was never found.
DRAIN = 0.5


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal 9 (SIGKILL)`` (Popen's negative return codes)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {-returncode} ({signal.Signals(-returncode).name})"
    except ValueError:
        return f"signal {-returncode}"


def _handle_some(spool: Spool, splitter: LineSplitter) -> None:
    """On abort: the first ``_ON_ABORT`` bytes of what was read but not handled go
    to the log, and a line saying how much more there was."""
    handled = 0
    while handled < _ON_ABORT:
        chunk = spool.get(min(_CHUNK, _ON_ABORT - handled))
        if not chunk:
            break
        splitter.feed(chunk)
        handled += len(chunk)
    if len(spool):
        splitter.feed(f"\nworker: {len(spool)} bytes of output read but not handled before the abort, "
                      f"dropped\n".encode())


class _Pace:
    """Whether a child floods its output, so that handling it should wait.

    A child that floods its output shares the machine's cores with the worker (and,
    on small machines, the Manager): every chunk handled meanwhile is CPU taken from
    it.  So while a backlog stands and output still pours in, handling slows to a
    trickle and only reading keeps up.  Handling runs at full speed again once the
    output slows down or ends, and from the moment the spool is full until it is
    half empty: the child waits then, and must not wait on a trickle.  Ordinary
    output never builds such a backlog."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = 0.0  # bytes a second read in the last whole window
        self._clock = clock
        self._bytes = 0
        self._since = clock()
        self._catching_up = False

    def read(self, size: int) -> None:
        """``size`` bytes were read from the child's output (0: none were waiting)."""
        self._bytes += size
        now = self._clock()
        if now - self._since >= _FLOOD_HANDLE_EVERY:
            self.rate = self._bytes / (now - self._since)
            self._bytes, self._since = 0, now

    def flooding(self, spool: Spool, eof: bool) -> bool:
        if spool.full():
            self._catching_up = True
        elif len(spool) <= spool.limit // 2:
            self._catching_up = False
        return (not eof and not self._catching_up and len(spool) > _FLOOD_BACKLOG
                and self.rate >= _FLOOD_RATE)


class OutputTimeout(Exception):
    """The child printed nothing for ``output_timeout`` seconds (a hung render);
    its tree has been stopped by the time the caller sees this."""


class ChildProcess:
    """Runs one program (an argument list, never a shell) in its own session, feeds its
    output (stdout and stderr together) to ``on_lines``, in order, the lines of each chunk
    handled in one call (one line is a batch of one), and can end its whole tree.
    ``output_timeout`` > 0: stop it when it prints nothing for that long (OutputTimeout).
    ``owner``: the owner mark its environment carries, for ``stop_leftovers``."""

    # Seconds between descendant scans while run() runs.  A scan walks only the worker's
    # tree (~0.6 ms of CPU): longer would only widen the window in which one escapes.
    track_interval = 1.0
    linger = 5.0  # seconds output may stay open after the child exited (_stop_leftovers)

    def __init__(self, args: list[str], *, on_lines: Callable[[list[str]], None],
                 cwd: str | None = None,
                 env: dict[str, str] | None = None, grace: float = 10.0,
                 logger: logging.Logger | None = None, max_line_bytes: int = 65536,
                 output_timeout: float = 0.0, owner: str | None = None,
                 spool_dir: str | None = None, task_child: bool = True):
        self.args = list(args)
        self._on_lines = on_lines
        self.spool_dir = spool_dir  # where output waiting to be handled may go (fworker.spool)
        # False: the worker's own helper (a preview conversion), not part of the running task:
        # outside its cgroup, and not stopped with it when the task ends.
        self._task_child = task_child
        self.output_timeout, self._owner = output_timeout, owner
        self.pid: int | None = None
        self._cwd, self._env = cwd, env
        self._grace, self._log, self._max_line_bytes = grace, logger or log, max_line_bytes
        self._token = uuid.uuid4().hex
        self._popen: gevent.subprocess.Popen[bytes] | None = None
        self._tree = Descendants(self._token)
        self._abort_lock = gevent.lock.Semaphore()
        self._aborted = False
        self._eof = gevent.event.Event()
        self._stopping_leftovers = False
        self._stopped = gevent.event.Event()  # the tree has been stopped: drain, then stop reading
        self._stopped_at = 0.0
        self._spool: Spool | None = None

    def start(self) -> None:
        with self._abort_lock:  # an abort() meanwhile waits for the pid, then kills it
            if self._popen is not None or self._aborted:
                raise RuntimeError(f"{self._name()}: already started or aborted")
            # No environment given: the cleaned one every child gets (no worker variables).
            env = childenv.environment() if self._env is None else dict(self._env)
            env[TOKEN_VAR] = self._token
            if self._owner:
                env[OWNER_VAR] = self._owner
            scope = containment.current() if self._task_child else None
            self._tree.cgroup = scope.child_cgroup() if scope is not None else None
            procs_file = self._tree.cgroup.procs_file if self._tree.cgroup is not None else None
            starting = gevent.spawn(
                gevent.subprocess.Popen, self.args, cwd=self._cwd, env=env, bufsize=0,
                start_new_session=True, stdin=gevent.subprocess.DEVNULL,
                preexec_fn=DieWithParent(procs_file) if PRCTL is not None else None,
                stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.STDOUT)
            try:
                starting.join()
            finally:
                # Popen waits for the exec cooperatively; if this greenlet is killed then,
                # the child exists all the same: finish the start so abort() can find it.
                starting.join()
                if starting.value is not None:  # None when Popen raised
                    self._started(starting.value)
            starting.get()  # Popen's own error, e.g. FileNotFoundError

    def _started(self, popen: gevent.subprocess.Popen[bytes]) -> None:
        self._popen, self.pid = popen, popen.pid
        if not self._task_child:
            containment.exclude(self.pid)
        grow_pipe(_output(popen).fileno())
        self._tree.started(self.pid)
        self._check_cgroup()
        self._log.debug("started %s: %s", self._name(), shlex.join(self.args))

    def _check_cgroup(self) -> None:
        """The child joins its cgroup before exec; if it could not, move it now (what
        it forked meanwhile is left to the scan and the task's adopted orphans).  A
        child that has already exited (``true``) is in no cgroup's list: nothing to move."""
        group = self._tree.cgroup
        leader = self._tree.leader
        if group is None or leader is None or group.contains(leader.pid) or not proctree.alive(leader):
            return
        try:
            cgroups.move(leader.pid, group.procs_file)
            self._log.warning("%s did not join %s before exec; moved it after", self._name(), group.path)
        except OSError as exc:
            if proctree.alive(leader):
                self._log.warning("%s runs outside its cgroup %s: %s", self._name(), group.path, exc)

    def run(self) -> int:
        """Run to the end; the return code, negative when killed by that signal."""
        helpers: list[gevent.Greenlet[..., None]] = []
        try:
            if self._popen is None:
                self.start()
            helpers = [gevent.spawn(self._track), gevent.spawn(self._stop_leftovers)]
            self._pump()
            returncode = self._child().wait()
        except BaseException:
            # Killed (GreenletExit: the task was aborted) or failed (on_lines raised):
            # the child's tree must not outlive this call.
            self.abort()
            raise
        finally:
            if self._stopping_leftovers:
                helpers[1].join()  # let its abort() finish rather than interrupt it
            gevent.killall(helpers)
            if self._popen is not None and self._popen.stdout is not None:
                self._popen.stdout.close()
        self._log.debug("%s ended with %s", self._name(), describe_exit(returncode))
        left = self.descendants()
        if left:  # detached helpers: they let go of the output, so they are only logged
            self._log.warning("%s ended, leaving pids %s running", self._name(), proctree.pids(left))
        return returncode

    def abort(self) -> None:
        """Stop the whole tree: SIGTERM, ``grace`` seconds, SIGKILL, check.  Idempotent;
        a concurrent call waits for the first to finish."""
        with self._abort_lock:
            if not self._aborted and self._popen is not None:
                self._stop_tree()
                self._stopped_at = time.monotonic()
                self._stopped.set()
            self._aborted = True

    @property
    def read_at(self) -> float | None:
        """When the output being handled was read from the child (wall clock, for
        log timestamps): during a backlog, handling comes seconds later."""
        return self._spool.read_at if self._spool is not None else None

    def descendants(self) -> list[psutil.Process]:
        """The child and all its descendants currently alive (zombies are gone)."""
        return self._tree.scan()

    def _child(self) -> gevent.subprocess.Popen[bytes]:
        """The child start() made: called only once it has."""
        if self._popen is None:
            raise RuntimeError(f"{self._name()}: not started")
        return self._popen

    def _name(self) -> str:
        return f"pid {self.pid} ({os.path.basename(self.args[0]) if self.args else '?'})"

    def _pump(self) -> None:
        splitter = BatchSplitter(self._on_lines, self._max_line_bytes)
        fd = _output(self._child()).fileno()  # non-blocking: gevent made it so
        spool = self._spool = Spool(directory=self.spool_dir)
        pace = _Pace()
        eof, read = False, 0
        try:
            while eof or not self._drained():  # after EOF, what is spooled is all handled
                # Empty the pipe before handling each chunk: handling costs far more
                # than reading, and a child must not wait on it (see fworker.spool).
                if not eof and not spool.full():
                    eof, read = self._fill(fd, spool, pace)
                chunk = spool.get(_CHUNK)
                if chunk:
                    splitter.feed(chunk)
                    if pace.flooding(spool, eof):
                        eof = self._only_read(fd, spool, pace)
                        continue
                    # Output trickling in: let it gather, or every line costs a wake-up,
                    # a read and a batch of its own.  Otherwise one turn of the event
                    # loop (gevent.sleep(0) would not: against a child that never
                    # pauses, timers and other I/O waited ~50-100 ms).
                    gathering = read < _CHUNK and not eof and not len(spool)
                    gevent.sleep(_GATHER if gathering else _CYCLE)
                elif eof:
                    break
                else:
                    self._wait_for_output(fd)
            if not eof:
                self._log.warning("%s: its tree was stopped, but its output is still held open "
                                  "%.1fs later; no longer reading it", self._name(), DRAIN)
                _handle_some(spool, splitter)
        except gevent.GreenletExit:
            _handle_some(spool, splitter)  # aborted: the last words may say why
            raise
        finally:
            spool.close()
        splitter.close()

    def _fill(self, fd: int, spool: Spool, pace: _Pace) -> tuple[bool, int]:
        eof, read = spool.fill(fd)
        pace.read(read)
        if eof:
            self._eof.set()  # the pipe is closed; what is spooled is handled next
        return eof, read

    def _only_read(self, fd: int, spool: Spool, pace: _Pace) -> bool:
        """Empty the pipe into the spool for ``_FLOOD_HANDLE_EVERY`` seconds (every
        ``_FLOOD_FILL_EVERY``, so the child never finds it full); True at its end."""
        for _ in range(round(_FLOOD_HANDLE_EVERY / _FLOOD_FILL_EVERY)):
            gevent.sleep(_FLOOD_FILL_EVERY)
            if spool.full():
                break
            eof, _ = self._fill(fd, spool, pace)
            if eof:
                return True
        return False

    def _drained(self) -> bool:
        """The tree was stopped ``DRAIN`` seconds ago: a process that still holds the
        pipe open must not keep the command running."""
        return self._stopped.is_set() and time.monotonic() >= self._stopped_at + DRAIN

    def _wait_for_output(self, fileno: int) -> None:
        """Wait until output can be read, the tree is stopped, or (once it is) the drain
        ends; OutputTimeout after ``output_timeout`` seconds of silence."""
        if self._stopped.is_set():
            _readable(fileno, max(0.0, self._stopped_at + DRAIN - time.monotonic()), None)
            return
        timeout = self.output_timeout if self.output_timeout > 0 else None
        if not _readable(fileno, timeout, self._stopped) and not self._stopped.is_set():
            raise OutputTimeout(f"{os.path.basename(self.args[0])} printed nothing for {self.output_timeout:g} s")

    def _track(self) -> None:
        # Remember descendants while they are findable: a grandchild whose parent dies
        # ends up under init (no subreaper), or under the worker in a session of its own
        # and without the token, where only its remembered pid finds it.
        while True:
            self.descendants()
            gevent.sleep(self.track_interval)

    def _stop_leftovers(self) -> None:
        # A descendant that inherited the output pipe keeps it open after the child
        # exited (`sh -c 'daemon & ...'`): run() would wait for it forever.
        self._child().wait()
        if not self._eof.wait(self.linger):
            self._stopping_leftovers = True
            self._log.warning("%s exited, but %.1fs later its descendants still hold its "
                              "output open: stopping them", self._name(), self.linger)
            self.abort()

    def _group(self, procs: list[psutil.Process]) -> int | None:
        """The child's process group id while it is certainly still ours: the child
        holds the pid, or one of ``procs`` is in the group (the id cannot be reused)."""
        pgid = self.pid
        if pgid is None or pgid == os.getpgrp():
            return None
        if self._tree.leader is not None and self._tree.leader.is_running():
            return pgid
        for proc in procs:
            try:
                if os.getpgid(proc.pid) == pgid:
                    return pgid
            except ProcessLookupError:
                continue
        return None

    def _stop_tree(self) -> None:
        procs = self.descendants()
        if not proctree.signal_all(procs, 0, self._group(procs), self._log) and not procs:
            return
        self._log.info("stopping %s: SIGTERM to group %d and pids %s, SIGKILL after %.1fs",
                       self._name(), self.pid, proctree.pids(procs), self._grace)
        group = self._tree.cgroup
        left = proctree.stop(self.descendants, self._grace, first=procs, group=self._group,
                             kill_all=group.kill if group is not None else None,
                             logger=self._log, name=self._name())
        if left:
            self._log.warning("%s: %s survived SIGKILL", self._name(), left)


def _readable(fileno: int, timeout: float | None, stopped: gevent.event.Event | None) -> bool:
    """Wait until ``fileno`` can be read (True), ``timeout`` passes or ``stopped`` is
    set (False)."""
    readable = gevent.event.Event()
    watcher = gevent.get_hub().loop.io(fileno, 1)  # 1: readable
    watcher.start(readable.set)
    try:
        gevent.wait([readable] if stopped is None else [readable, stopped], timeout=timeout, count=1)
    finally:
        watcher.stop()
        watcher.close()
    return readable.is_set()


def _output(popen: gevent.subprocess.Popen[bytes]) -> typing.IO[bytes]:
    """The child's output pipe: there is one, as every child starts with stdout=PIPE."""
    if popen.stdout is None:
        raise RuntimeError(f"pid {popen.pid} has no output pipe")
    return popen.stdout
