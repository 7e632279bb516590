"""Worker authentication: secret hashing, HTTP Basic and the registration JWT.

The Go Manager keeps a bcrypt hash of each worker's secret.  We use PBKDF2
from the standard library (no extra dependency) with a per-worker salt; the
stored form is ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``.

PBKDF2 runs in gevent's thread pool: ``hashlib.pbkdf2_hmac`` releases the
GIL, so the hub goes on serving other requests during its ~15 ms instead of
stalling them all (50 workers coming back after a restart used to cost
~0.75 s of blocked hub, PERFORMANCE.md B6).
"""
import base64
import binascii
import hashlib
import hmac
import logging
import os
import typing

import gevent
import gevent.lock
import jwt

logger = logging.getLogger(__name__)

_T = typing.TypeVar("_T")

_SCHEME = "pbkdf2_sha256"
# About 10 ms per hash here: enough for a development Manager, and the
# Roster caches successful checks so that each request does not pay it.
_ITERATIONS = 50_000

MISSING_BEARER = "Missing Bearer token for registration"
INVALID_BEARER = "Invalid Bearer token for registration"
JWT_ALGORITHMS = ["HS256", "HS384", "HS512"]


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# PBKDF2 computations at once: one CPU is left to the hub's thread.  With all
# of the pool's 10 threads hashing on 2 CPUs, 19 workers authenticating at
# once delayed a known worker's requests by up to ~140 ms; with 1, ~12 ms,
# and the 19 were done as soon.
_HASHING = gevent.lock.BoundedSemaphore(max(1, _usable_cpus() - 1))


def _off_the_hub(func: typing.Callable[..., _T], *args: object) -> _T:
    """func(*args) in this thread's hub's pool; only the calling greenlet waits.

    Works outside a server too (the main greenlet waits on the hub, which
    gevent creates on demand); the hub greenlet itself must not block, so
    there func runs inline.
    """
    hub = gevent.get_hub()
    if gevent.getcurrent() is hub:
        return func(*args)
    with _HASHING:
        result: _T = hub.threadpool.apply(func, args)
        return result


def _pbkdf2(secret: str, salt: bytes, rounds: int) -> bytes:
    return _off_the_hub(hashlib.pbkdf2_hmac, "sha256", secret.encode("utf-8"), salt, rounds)


def hash_secret(secret: str) -> str:
    salt = os.urandom(16)
    digest = _pbkdf2(secret, salt, _ITERATIONS)
    return f"{_SCHEME}${_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        salt, expected, rounds = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex), int(iterations)
    except ValueError:
        logger.error("Unreadable secret hash in the database (scheme %r)", stored.split("$")[0])
        return False
    if scheme != _SCHEME:
        logger.error("Unknown secret hash scheme %r in the database", scheme)
        return False
    return hmac.compare_digest(_pbkdf2(secret, salt, rounds), expected)


def parse_basic(header: str) -> tuple[str, str] | None:
    """(username, password) from an ``Authorization: Basic ...`` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def check_registration_token(header: str, registration_secret: str) -> str | None:
    """None when the header carries a valid registration JWT, else the 403 message.

    The token must be signed with the shared secret (HS256/384/512), carry an
    ``exp`` claim that has not passed, and an ``iat`` (when present) that is
    not in the future.
    """
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return MISSING_BEARER
    try:
        jwt.decode(token.strip(), registration_secret, algorithms=JWT_ALGORITHMS,
                   options={"require": ["exp"]})
    except jwt.InvalidTokenError as ex:
        logger.warning("Rejected a registration token: %s", ex)
        return INVALID_BEARER
    return None
