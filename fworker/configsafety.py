"""Warnings about configuration files that put the worker's secrets at risk
(issue 15 case 11b, 11c), for the operator at start and in ``--check-config``.

- Credentials (``worker_id``, ``worker_secret``) belong to the credentials file
  (``fworker.statefiles``): the worker writes them there after registering.
  Found in another file they are used only while the credentials file has
  none (``config.load`` gives the saved ones precedence), and warned about:
  before, a ``-c`` file's stale pair overrode the saved one and every start
  registered a new worker.  The default instance's credentials file, which
  every instance reads, holds that instance's: not warned about for another.
- A file others may write can point the worker at another Manager, or make it
  run other task types: warned about whatever it holds.  A file holding a
  secret (``worker_secret``, ``worker_registration_secret``) that others may
  read gives the secret away: warned about too.
"""
from __future__ import annotations

import os
import stat
import typing

from fworker import config, statefiles

SECRETS = tuple(s.name for s in config.SETTINGS if s.secret)


def warnings(settings: config.Settings, credentials_file: str | None = None) -> list[str]:
    """One sentence per problem of the files ``settings`` were read from
    (what each gives, as ``config.load`` read it: no file is parsed again)."""
    credentials_file = os.path.abspath(credentials_file or statefiles.credentials_path(settings.instance))
    # Every instance reads the default one's credentials file (config.default_files);
    # the credentials in it are that instance's, in their place, never a named one's.
    theirs = {credentials_file, os.path.abspath(statefiles.credentials_path())}
    found = []
    for path in settings.files:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # it was read a moment ago; a file changing meanwhile is not this check's business
        found += _file_warnings(path, settings.file_settings.get(path, frozenset()), mode, credentials_file,
                                misplaced=os.path.abspath(path) not in theirs)
    return found


def _file_warnings(path: str, given: typing.AbstractSet[str], mode: int, credentials_file: str, *,
                   misplaced: bool) -> list[str]:
    found = []
    keys = [name for name in config.CREDENTIALS if name in given]
    if keys and misplaced:
        found.append(f"{path} holds {' and '.join(keys)}: credentials belong in {credentials_file} only, "
                     "where the worker saves them after registering; the saved ones are used when there are "
                     "any. Remove them from this file")
    secrets = [name for name in SECRETS if name in given]
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        found.append(f"{path} may be changed by other users (mode {stat.S_IMODE(mode):04o}): they could send "
                     f"this worker and its secrets elsewhere; chmod go-w {path}")
    if secrets and mode & (stat.S_IRGRP | stat.S_IROTH):
        found.append(f"{path} holds {' and '.join(secrets)} and may be read by other users "
                     f"(mode {stat.S_IMODE(mode):04o}); chmod 600 {path}")
    return found
