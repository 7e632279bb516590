"""What the bare clients of the benchmarks share: a registered worker's session.

Imported by the scripts beside it (run as ``python bench/children/NAME.py``,
so this folder is first on their path)."""
import secrets

import requests


def registered_session(url: str, nickname: str) -> requests.Session:
    """A keep-alive session of a newly registered worker (task type ``debug``)."""
    session = requests.Session()
    secret = secrets.token_hex(32)
    answer = session.post(url + "register-worker", json={
        "secret": secret, "platform": "linux", "supported_task_types": ["debug"], "nickname": nickname}, timeout=30)
    answer.raise_for_status()
    session.auth = (answer.json()["_id"], secret)
    return session
