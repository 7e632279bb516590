"""Text safe to show: what others control, escaped; what is secret, masked.

A Manager (or whoever controls one) decides task names, ids, activities and
answer bodies; an operator's URL may carry a password.  Both end up in the
worker's own log and output.  ``printable`` escapes the characters that would
let such text forge a log line (newlines) or drive a terminal (escape
sequences); ``mask_url`` hides a URL's password.  The worker's log formatter
(``fworker.logsetup``) applies ``printable`` to every argument of every log
call, so a call site cannot forget it; ``Trusted`` marks the rare argument the
worker composed itself over several lines (the start-up banner).
"""
from __future__ import annotations

import re
import typing
import urllib.parse

# C0 controls but the tab, DEL, C1 controls, and Unicode's own line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``...)."""
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode("ascii")), text)


class Trusted(str):
    """Text the worker composed itself, shown as it is (newlines included)."""


class _Escaped:
    """A log argument shown escaped, whichever of %s and %r formats it."""

    __slots__ = ("value",)

    def __init__(self, value: object):
        self.value = value

    def __str__(self) -> str:
        return printable(str(self.value))

    def __repr__(self) -> str:
        return printable(repr(self.value))


def _escaped(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, Trusted, _Escaped)):
        return value  # numbers keep working with %d and %f
    if isinstance(value, str):
        return printable(value)
    return _Escaped(value)


def escaped_args(args: typing.Any) -> typing.Any:
    """A log record's ``args`` with every argument escaped."""
    if isinstance(args, tuple):
        return tuple(_escaped(arg) for arg in args)
    if isinstance(args, typing.Mapping):
        return {key: _escaped(value) for key, value in args.items()}
    return args


def mask_url(url: str) -> str:
    """``url`` with its password, if it has one, replaced by ``*****``."""
    try:
        parts = urllib.parse.urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # not a URL one can take apart: show none of what might be a secret in it
        return "(a URL that cannot be parsed; not shown)" if "@" in url else url
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:*****@{host}" + (f":{port}" if port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
