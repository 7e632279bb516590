"""Workers of the Flamenco 3 development Manager: registration, Basic auth,
sign-on and -off, states and their acknowledgement, and the worker timeout.

The rules copy the real Manager's:

- registration creates a worker with status ``""``; sign-on makes it
  ``starting`` and answers the state to enter: the pending request, else
  ``awake``.  It stays ``starting`` until it acknowledges a state with
  ``state-changed``;
- ``state-changed`` sets the status, and clears a pending request unless the
  worker changed to another state than the one requested.  Leaving ``awake``
  re-queues the worker's active task;
- sign-off makes the worker ``offline``, clears a request for ``offline`` or
  ``restart``, remembers ``awake``/``asleep`` as a request for the next start,
  and re-queues its active task;
- a worker in any status but ``error`` and ``offline`` that is silent for
  ``worker_timeout`` seconds goes to ``error`` (request cleared) and its active
  task is re-queued.  It stays ``error`` when it talks again, until it says
  otherwise.
"""
import hashlib
import hmac
import logging
import time
import typing
import uuid

from .. import auth, common
from ..common import Row
from ..liveness import Liveness
from ..roster import RosterBase
from .dispatch import Dispatcher
from .store import V3Store

logger = logging.getLogger(__name__)

_REMEMBERED = ("awake", "asleep")
_CLEARED_BY_SIGN_OFF = ("offline", "restart")
NO_TIMEOUT = ("error", "offline")
# Seconds between writes of last_seen (shown to humans; timeouts use Liveness).
LAST_SEEN_RESOLUTION = 1.0


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


class Roster(RosterBase):
    store: V3Store
    dispatcher: Dispatcher

    def __init__(self, store: V3Store, dispatcher: Dispatcher, heard: Liveness,
                 clock: typing.Callable[[], float] = time.monotonic):
        super().__init__(store, dispatcher, heard, clock)

    def register(self, body: Row, address: str) -> Row:
        worker = {
            "id": str(uuid.uuid4()), "secret_hash": auth.hash_secret(body["secret"]),
            "name": body["name"], "platform": body["platform"],
            "supported_task_types": list(body["supported_task_types"]), "status": "",
            "status_requested": "", "lazy_status_request": False, "can_restart": 0,
            "address": address, "software": "", "registered": common.utc_timestamp(),
            "last_seen": common.utc_timestamp(), "signed_off": 0,
        }
        self.store.add_worker(worker)
        logger.info("Registered worker %s (%r, %s)", worker["id"], worker["name"],
                    worker["platform"])
        return worker

    def authenticate(self, authorization: str) -> Row | None:
        """The worker whose uuid and secret are in a Basic header, or None."""
        credentials = auth.parse_basic(authorization)
        if credentials is None or not is_uuid(credentials[0]):
            return None
        worker = self.store.worker(credentials[0].lower())
        if worker is None:
            return None
        digest = hashlib.sha256(credentials[1].encode("utf-8")).digest()
        known = self._verified.get(worker["id"])
        if known is not None and known[0] == worker["secret_hash"] \
                and hmac.compare_digest(known[1], digest):
            return worker
        if not auth.verify_secret(credentials[1], worker["secret_hash"]):
            logger.warning("Wrong secret for worker %s", worker["id"])
            return None
        self._verified[worker["id"]] = (worker["secret_hash"], digest)
        return self.store.worker(worker["id"])

    def seen(self, worker: Row, address: str) -> None:
        self.heard.heard(worker["id"])
        now = self._clock()
        written = self._last_seen_written.get(worker["id"])
        if written is None or now - written >= LAST_SEEN_RESOLUTION or worker["address"] != address:
            self.store.update_worker(worker["id"], last_seen=common.utc_timestamp(),
                                     address=address)
            self._last_seen_written[worker["id"]] = now

    def sign_on(self, worker: Row, body: Row) -> str:
        """Record the sign-on; returns the state the worker is to enter."""
        types = [name.strip().lower() for name in body["supported_task_types"]]
        self.store.update_worker(worker["id"], status="starting", name=body["name"],
                                 software=body["software_version"], supported_task_types=types,
                                 can_restart=int(bool(body.get("can_restart", False))))
        initial: str = worker["status_requested"] or "awake"
        logger.info("Worker %s signed on; initial state %s", worker["id"], initial)
        return initial

    def sign_off(self, worker: Row) -> list[str]:
        changes: Row = {"status": "offline",
                                          "signed_off": (worker["signed_off"] or 0) + 1}
        requested = worker["status_requested"]
        if requested in _CLEARED_BY_SIGN_OFF:
            requested = ""
            changes.update(status_requested="", lazy_status_request=False)
        if not requested and worker["status"] in _REMEMBERED:
            changes.update(status_requested=worker["status"], lazy_status_request=False)
        with self.store.transaction():
            self.store.update_worker(worker["id"], **changes)
            released = self.dispatcher.requeue_tasks_of(worker["id"], "worker signed off")
        logger.info("Worker %s signed off; re-queued %d tasks", worker["id"], len(released))
        return released

    def state_changed(self, worker: Row, status: str) -> None:
        changes: Row = {"status": status}
        requested = worker["status_requested"]
        if requested and requested != status:
            logger.warning("Worker %s changed to %s, but %s is requested", worker["id"],
                           status, requested)
        else:
            changes.update(status_requested="", lazy_status_request=False)
        with self.store.transaction():
            self.store.update_worker(worker["id"], **changes)
            self.store.add_ack(worker["id"], status)
            if worker["status"] == "awake" and status != "awake":
                self.dispatcher.requeue_tasks_of(
                    worker["id"], f"worker {worker['name']} changed status to '{status}'")

    def time_out_silent_workers(self, timeout: float) -> list[str]:
        with self.store.transaction():
            candidates = [w["id"] for w in self.store.workers() if w["status"] not in NO_TIMEOUT]
            silent = self.heard.expired(candidates, timeout)
            for worker_id in silent:
                self.store.update_worker(worker_id, status="error", status_requested="",
                                         lazy_status_request=False)
                self.dispatcher.requeue_tasks_of(worker_id, "worker timed out")
                self.heard.forget(worker_id)
                logger.warning("Worker %s timed out (silent for more than %g s)",
                               worker_id, timeout)
        return silent

    def forget(self, worker_id: str) -> None:
        """Remove a worker: its task is re-queued; its next request is a 403."""
        with self.store.transaction():
            self.existing(worker_id)
            self.dispatcher.requeue_tasks_of(worker_id, "its worker was removed")
            self.store.delete_worker(worker_id)
        self._verified.pop(worker_id, None)
        self.heard.forget(worker_id)

    def worker_view(self, worker_id: str) -> Row:
        view = super().worker_view(worker_id)
        view["can_restart"] = bool(view["can_restart"])
        return view

    @staticmethod
    def registered_worker(worker: Row) -> Row:
        """The RegisteredWorker answer; ``supported_task_types`` as the Manager
        rebuilds it from its comma-joined column."""
        return {"uuid": worker["id"], "name": worker["name"], "address": worker["address"],
                "status": worker["status"], "platform": worker["platform"],
                "software": worker["software"],
                "supported_task_types": ",".join(worker["supported_task_types"]).split(",")}
