"""Storing the credentials a Manager gave this worker: written into their file
(fworker.statefiles names it), the rest of that file kept, atomically and 0600."""
from __future__ import annotations

import os

import configobj

from fworker import config, statefiles
from fworker.errors import ConfigError


def save_credentials(worker_id: str, secret: str, path: str | None = None) -> str:
    """Write worker_id and worker_secret into ``path`` (default
    ~/.flamenco-worker.cfg), keeping everything else in it, comments
    included.  The new file is created 0600 and atomically renamed over the
    old one, so the secret is never world-readable, not even for an instant."""
    path = path or statefiles.credentials_path()
    try:
        cfg = configobj.ConfigObj(path, encoding="utf-8", interpolation=False, indent_type="")
    except (configobj.ConfigObjError, UnicodeDecodeError) as ex:
        raise ConfigError(f"configuration file {path}: cannot be parsed to store credentials: {ex}") from None
    if config.SECTION not in cfg:
        cfg[config.SECTION] = {}
    cfg[config.SECTION]["worker_id"] = worker_id
    cfg[config.SECTION]["worker_secret"] = secret
    cfg.filename = None
    lines = [line if isinstance(line, bytes) else line.encode("utf-8") for line in cfg.write()]
    _atomic_write(path, b"\n".join(lines) + b"\n")
    return path


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
