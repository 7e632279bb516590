"""Workers: registration, authentication, presence and status changes.

Worker statuses: ``""`` after registration, ``starting`` after sign-on,
``awake`` once it asks for work (or acknowledges ``awake``), whatever it
acknowledges (``asleep``, ``testing``, ``error``...), ``offline`` after
sign-off, ``timeout`` when it went silent.

A worker that is ``awake``, ``starting`` or ``testing`` (the statuses in
which it should keep talking) and is silent for ``worker_timeout`` seconds
is marked ``timeout`` and its tasks are taken back.  A timed-out worker that
talks again is ``awake``.  Asleep workers are not timed out.

A status request is ``status_requested`` plus ``lazy_status_request``; it is
cleared when the worker acknowledges that same status.

Every request authenticates, so that path avoids SQLite (PERFORMANCE.md B5):
the Roster keeps each worker's row in memory and ``last_seen`` is written at
most once every LAST_SEEN_RESOLUTION seconds unless something else changed.
The row cache is only correct because every write to a worker row goes
through this class, which refreshes or drops the cached copy after writing.
"""
import copy
import hashlib
import hmac
import logging
import time
import typing

from . import auth, common
from .common import Row
from .dispatch import Dispatcher, DispatcherBase, worker_identifier
from .liveness import Liveness
from .store import Store, any_of

logger = logging.getLogger(__name__)

TIMEOUT_STATUSES = ["awake", "starting", "testing"]
# Statuses a worker keeps when it asks for work; any other becomes awake.
_KEPT_WHEN_ASKING = ("awake", "testing", "error")
# Seconds: last_seen is shown to humans and the dev API, to whom a second is
# nothing; timeouts use the Liveness clock, which hears every request.
LAST_SEEN_RESOLUTION = 1.0


class RosterBase:
    """What the rosters of both generations share: the store, the dispatcher that
    takes tasks back, when each worker was last heard of (``heard``), status
    requests and the views."""

    def __init__(self, store: Store, dispatcher: DispatcherBase, heard: Liveness,
                 clock: typing.Callable[[], float] = time.monotonic):
        self.store = store
        self.dispatcher = dispatcher
        self.heard = heard
        self._clock = clock
        # worker id -> (stored secret hash, SHA-256 of the last secret that
        # passed PBKDF2 against it), so that each request does not pay for
        # PBKDF2; a different stored hash never matches.  Memory only.
        self._verified: dict[str, tuple[str, bytes]] = {}
        # worker id -> monotonic time of its last last_seen write.
        self._last_seen_written: dict[str, float] = {}

    def _update(self, worker_id: str, **changes: typing.Any) -> None:
        """Write to a worker row (every write of the rules goes through here)."""
        self.store.update_worker(worker_id, **changes)

    def request_status(self, worker_id: str, status: str, lazy: bool = False) -> None:
        """Ask a worker to change status; "" withdraws the request."""
        with self.store.transaction():
            self.existing(worker_id)
            self._update(worker_id, status_requested=status,
                         lazy_status_request=bool(status) and lazy)
        logger.info("Requested status %r of worker %s (lazy=%s)", status, worker_id, lazy)

    def time_out_silent_workers(self, timeout: float) -> list[str]:
        """Apply the generation's worker timeout; the ids of the workers timed out."""
        raise NotImplementedError

    def forget(self, worker_id: str) -> None:
        """Remove a worker as the generation does."""
        raise NotImplementedError

    # Views

    def existing(self, worker_id: str) -> Row:
        return common.found(self.store.worker(worker_id), f"Worker {worker_id}")

    def worker_view(self, worker_id: str) -> Row:
        worker = self.existing(worker_id)
        view = {key: value for key, value in worker.items() if key not in ("secret_hash", "seq")}
        view["failures"] = len(self.store.failures(worker=worker_id))
        return view

    def workers_view(self) -> list[Row]:
        return [self.worker_view(worker["id"]) for worker in self.store.workers()]


class Roster(RosterBase):
    """Owns the worker rules; the Dispatcher takes back tasks when needed."""

    dispatcher: Dispatcher

    def __init__(self, store: Store, dispatcher: Dispatcher, heard: Liveness,
                 registration_secret: str | None = None,
                 clock: typing.Callable[[], float] = time.monotonic):
        super().__init__(store, dispatcher, heard, clock)
        self.registration_secret = registration_secret
        # worker id -> its row as stored, so that each request does not read it.
        self._rows: dict[str, Row] = {}
        # Bumped by every write that drops a cached row: a read that saw it
        # change meanwhile does not cache what it read (see _row).
        self._writes = 0

    # Registration and authentication

    def check_registration(self, authorization: str) -> str | None:
        """None when registration may go ahead, else the 403 message."""
        if not self.registration_secret:
            return None
        return auth.check_registration_token(authorization, self.registration_secret)

    def register(self, fields: Row, user_agent: str, address: str) -> Row:
        task_types = fields.get("supported_task_types") or fields.get("supported_job_types") or []
        worker = {
            "id": common.new_id(), "secret_hash": auth.hash_secret(fields["secret"]),
            "nickname": fields.get("nickname", ""), "platform": fields.get("platform", ""),
            "supported_task_types": task_types, "status": "", "status_requested": "",
            "lazy_status_request": False, "address": address, "software": user_agent,
            "registered": common.utc_timestamp(), "last_seen": common.utc_timestamp(),
            "signed_off": 0,
        }
        self.store.add_worker(worker)
        self._last_seen_written[worker["id"]] = self._clock()
        logger.info("Registered worker %s (%r, %s, %s)", worker["id"], worker["nickname"],
                    worker["platform"], ", ".join(task_types))
        return worker

    def authenticate(self, authorization: str) -> Row | None:
        """The worker whose id and secret are in a Basic header, or None."""
        credentials = auth.parse_basic(authorization)
        if credentials is None or not common.is_object_id(credentials[0]):
            return None
        worker = self._row(credentials[0].lower())
        if worker is None:
            return None
        digest = hashlib.sha256(credentials[1].encode("utf-8")).digest()
        known = self._verified.get(worker["id"])
        if (known is not None and known[0] == worker["secret_hash"]
                and hmac.compare_digest(known[1], digest)):
            return worker
        return self._verify(worker, credentials[1], digest)

    def _verify(self, worker: Row, secret: str, digest: bytes) -> Row | None:
        """The slow check, PBKDF2; other greenlets run while it does."""
        if not auth.verify_secret(secret, worker["secret_hash"]):
            logger.warning("Wrong secret for worker %s", worker["id"])
            return None
        # Meanwhile the worker may have been removed or changed: what was
        # verified must still be what is stored.
        current = self._row(worker["id"])
        if current is None or current["secret_hash"] != worker["secret_hash"]:
            logger.warning("Worker %s changed while its secret was checked", worker["id"])
            return None
        self._verified[worker["id"]] = (worker["secret_hash"], digest)
        return current

    def _row(self, worker_id: str) -> Row | None:
        """A copy of the worker's row, from memory when possible."""
        row = self._rows.get(worker_id)
        if row is None:
            writes = self._writes
            row = self.store.worker(worker_id)
            if row is None:
                return None
            # Waiting for the Store's lock lets other greenlets run: one of
            # them may have written this row after we read it.
            if writes == self._writes:
                self._rows[worker_id] = row
        # A copy, so that a caller changing what it got cannot change the cache.
        return copy.deepcopy(row)

    def _update(self, worker_id: str, **changes: typing.Any) -> None:
        """Write to a worker row and drop its cached copy.  Dropping rather
        than updating it stays right when an enclosing transaction rolls back."""
        self.store.update_worker(worker_id, **changes)
        self._drop_cached(worker_id)

    def _drop_cached(self, worker_id: str) -> None:
        self._rows.pop(worker_id, None)
        self._writes += 1

    # Presence

    def seen(self, worker: Row, user_agent: str, address: str) -> Row:
        """Note an authenticated request; returns the updated worker.

        The row is written only when something changed or last_seen is
        LAST_SEEN_RESOLUTION old: one commit per request was ~8 % of the
        Manager's time.
        """
        changes = {key: value for key, value in (("software", user_agent), ("address", address))
                   if worker[key] != value}
        if worker["status"] == "timeout":
            changes["status"] = "awake"
            logger.info("Worker %s is back after a timeout", worker["id"])
        now = self._clock()
        written = self._last_seen_written.get(worker["id"])
        if changes or written is None or now - written >= LAST_SEEN_RESOLUTION:
            changes["last_seen"] = common.utc_timestamp()
            self.store.update_worker(worker["id"], **changes)
            self._last_seen_written[worker["id"]] = now
            # Only the fields just written: a cached row is otherwise as
            # stored (any other write since would have dropped it), and a
            # read under way does not cache what it read before this write.
            self._writes += 1
            cached = self._rows.get(worker["id"])
            if cached is not None:
                cached.update(changes)
        self.heard.heard(worker["id"])
        return dict(worker, **changes)

    def sign_on(self, worker: Row, fields: Row) -> None:
        changes: Row = {"status": "starting"}
        if fields.get("nickname"):
            changes["nickname"] = fields["nickname"]
        if fields.get("supported_task_types"):
            changes["supported_task_types"] = fields["supported_task_types"]
        self._update(worker["id"], **changes)
        logger.info("Worker %s signed on", worker["id"])

    def sign_off(self, worker: Row) -> None:
        with self.store.transaction():
            released = self.dispatcher.release_tasks_of(
                worker["id"], f"Re-queued after worker {worker_identifier(worker)} signed off")
            count = self.existing(worker["id"])["signed_off"] or 0
            self._update(worker["id"], status="offline", signed_off=count + 1)
        self.heard.forget(worker["id"])
        logger.info("Worker %s signed off; re-queued %d tasks", worker["id"], len(released))

    def asking_for_work(self, worker: Row) -> None:
        """A worker that asks for a task is awake, unless testing or in error."""
        if worker["status"] not in _KEPT_WHEN_ASKING:
            self._update(worker["id"], status="awake")

    def time_out_silent_workers(self, timeout: float) -> list[str]:
        with self.store.transaction():
            talking = {worker["id"]: worker for worker in self.store.workers(status=any_of(TIMEOUT_STATUSES))}
            silent = self.heard.expired(talking, timeout)
            for worker_id in silent:
                self._update(worker_id, status="timeout")
                self.dispatcher.release_tasks_of(
                    worker_id, f"Re-queued after worker {worker_identifier(talking[worker_id])} "
                               f"timed out")
                logger.warning("Worker %s timed out (silent for more than %g s)",
                               worker_id, timeout)
        return silent

    # Status changes

    def acknowledge(self, worker: Row, status: str) -> None:
        changes: Row = {"status": status}
        if worker["status_requested"] == status:
            changes.update(status_requested="", lazy_status_request=False)
        else:
            logger.info("Worker %s acknowledged %r; the pending request is %r", worker["id"],
                        status, worker["status_requested"])
        with self.store.transaction():
            self._update(worker["id"], **changes)
            self.store.add_ack(worker["id"], status)

    def record_output(self, worker: Row, paths: list[str]) -> None:
        # 2.x reports name no task: the worker's running task is the one that made them.
        running = self.store.tasks(status="active", worker=worker["id"])
        self.store.add_output(worker["id"], paths, running[0]["id"] if running else None)

    def forget(self, worker_id: str) -> None:
        """Remove a worker: its tasks are taken back and its next request is a 401."""
        with self.store.transaction():
            self.existing(worker_id)
            self.dispatcher.release_tasks_of(worker_id, "Re-queued: its worker was removed")
            self.store.delete_worker(worker_id)
            self._drop_cached(worker_id)
        self._verified.pop(worker_id, None)
        self._last_seen_written.pop(worker_id, None)
        self.heard.forget(worker_id)
        logger.info("Forgot worker %s", worker_id)

    @staticmethod
    def registration_doc(worker: Row) -> Row:
        """The Worker document answered to POST /register-worker."""
        return {"_id": worker["id"], "nickname": worker["nickname"],
                "address": worker["address"], "status": worker["status"],
                "platform": worker["platform"],
                "supported_task_types": worker["supported_task_types"],
                "software": worker["software"], "status_requested": worker["status_requested"]}
