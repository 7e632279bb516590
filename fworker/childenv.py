"""The environment every child process of the worker starts with.

A child (a render, an encode, an ``exec``) gets the worker's environment with
three kinds of change:

- removed: ``LD_LIBRARY_PATH`` (the worker's own libraries must not replace
  Blender's), every variable of the worker's own namespace (``FWORKER_*``,
  ``FLAMENCO_WORKER_*``: a service manager may hand the worker secrets that
  way) and every variable whose value contains one of the worker's secrets
  (its ``worker_secret``, the registration key): a render's log must never
  be able to print them;
- added: the ``child_env`` setting, ``NAME=value`` pairs separated by
  spaces (quoted as a shell would, without any expansion), so that each
  instance of the worker gives its children their own device, e.g.
  ``CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=8``;
- added last: what one command needs for itself.

The marks the worker uses to find a child's processes again
(``fworker.proctree``) are set after all of this, by ``fworker.process``.
"""
from __future__ import annotations

import os
import re
import shlex
import typing

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Variables of the worker itself, never passed on.
OWN_PREFIXES = ("FWORKER_", "FLAMENCO_WORKER_")
DROPPED = frozenset({"LD_LIBRARY_PATH"})


def parse(text: str) -> dict[str, str]:
    """``child_env`` as a mapping; ``ValueError`` naming the entry that is wrong."""
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as ex:
        raise ValueError(f"cannot be split into NAME=value pairs ({ex})") from None
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"{word!r} is not NAME=value")
        if not ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name "
                             "(letters, digits and '_', not starting with a digit)")
        if name.startswith(OWN_PREFIXES):
            raise ValueError(f"{name!r} is in the worker's own namespace ({', '.join(OWN_PREFIXES)}), "
                             "which is never passed to children")
        if "\0" in value:
            raise ValueError(f"the value of {name} contains a NUL character")
        pairs[name] = value
    return pairs


def environment(added: typing.Mapping[str, str] | None = None, secrets: typing.Iterable[str] = (),
                extra: typing.Mapping[str, str] | None = None,
                base: typing.Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one child: ``base`` (default: this process's) cleaned
    as the module's docstring says, then ``added`` (``child_env`` parsed:
    ``Settings.child_environment``), then ``extra``."""
    hidden = [secret for secret in secrets if secret]
    env = {name: value for name, value in (os.environ if base is None else base).items()
           if name not in DROPPED and not name.startswith(OWN_PREFIXES)
           and not any(secret in value for secret in hidden)}
    if added:
        env.update(added)
    if extra:
        env.update(extra)
    return env


def describe(pairs: typing.Mapping[str, str]) -> str:
    """For ``--check-config`` and the banner: what every child gets added
    (``Settings.child_environment``)."""
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in pairs.items()) or "nothing added"
