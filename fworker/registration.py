"""Getting credentials: register, persist, sign on (docs/PROTOCOL.md §2, §4.1)."""
from __future__ import annotations

import logging
import secrets
import string
import time

import jwt

from fworker import config, credentials
from fworker.errors import Fatal, RegistrationRefused, RetryLater
from fworker.upstream import Upstream

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 15 * 60
_ALPHABET = string.ascii_letters + string.digits


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(64))


def registration_token(shared_secret: str) -> str:
    now = int(time.time())  # wall clock: the Manager checks iat/exp against its own
    return jwt.encode({"iat": now, "exp": now + TOKEN_LIFETIME}, shared_secret, algorithm="HS256")


class Registrar:
    """Holds the worker's identity and knows how to (re)establish it.  The
    identity starts as the settings' worker_id/worker_secret and changes on
    registration; the settings themselves never change."""

    def __init__(self, upstream: Upstream, settings: config.Settings, credentials_path: str | None):
        self.upstream = upstream
        self.settings = settings
        self.credentials_path = credentials_path
        self.task_types: list[str] = list(settings.task_types)
        self.nickname = settings.effective_nickname()
        self.worker_id = settings.worker_id
        self._secret = settings.worker_secret
        if self.has_credentials:
            # Known from the start: the flusher may send queued updates while
            # the sign-on is still on its way, and must not send them anonymously.
            upstream.set_credentials(self.worker_id, self._secret)

    @property
    def has_credentials(self) -> bool:
        return bool(self.worker_id and self._secret)

    def register(self) -> None:
        secret = new_secret()
        token = None
        if self.settings.worker_registration_secret:
            token = registration_token(self.settings.worker_registration_secret)
        answer = self.upstream.register(secret, self.task_types, self.nickname, token)
        if answer.status == 403:
            hint = ("worker_registration_secret is not the one the Manager has"
                    if token else "the Manager requires a registration secret: set worker_registration_secret")
            raise RegistrationRefused(
                f"the Manager at {self.upstream.manager_url} refused to register this worker "
                f"({answer.status} {answer.text.strip()[:200]}): {hint}")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise RetryLater(f"registration: unexpected answer {answer.status} {answer.text.strip()[:200]!r}")
        worker_id = answer.body.get("_id")
        if not isinstance(worker_id, str) or not worker_id:
            raise RetryLater(f"registration: the Manager's answer has no worker _id: {answer.text.strip()[:200]!r}")
        self.upstream.set_credentials(worker_id, secret)
        self.worker_id, self._secret = worker_id, secret
        if self.credentials_path is not None:
            path = credentials.save_credentials(worker_id, secret, self.credentials_path)
            log.info("registered as worker %s; credentials stored in %s", worker_id, path)
        else:
            log.info("registered as worker %s (credentials not stored)", worker_id)

    def sign_on(self) -> None:
        """Sign on with stored credentials; a 401 means the Manager forgot us:
        register once more, then sign on."""
        self.upstream.set_credentials(self.worker_id, self._secret)
        answer = self.upstream.sign_on(self.task_types, self.nickname)
        if answer.status == 401:
            log.warning("the Manager does not know worker %s any more; registering again", self.worker_id)
            self.register()
            answer = self.upstream.sign_on(self.task_types, self.nickname)
        if answer.status == 401:
            raise Fatal("sign-on refused (401) right after a fresh registration; is this the right Manager?")
        if answer.status != 204:
            raise RetryLater(f"sign-on: unexpected answer {answer.status} {answer.text.strip()[:200]!r}")
        log.info("signed on to %s as worker %s (%s)", self.upstream.manager_url, self.worker_id, self.nickname)

    def establish(self, reregister: bool) -> None:
        if reregister or not self.has_credentials:
            self.register()
        else:
            self.sign_on()
