"""Splitting a command line setting into arguments, in linear time.

``split(text)`` gives exactly what ``shlex.split(text)`` gives (POSIX mode, no
comments), and raises ``ValueError`` with the same message for the same
mistakes ("No closing quotation", "No escaped character").  ``shlex`` builds
each argument one character at a time by string concatenation, which is
quadratic: one 1 MB argument took ~30 s, in the event loop, and a worker
frozen that long answers nothing, SIGTERM included.  Here regular
expressions consume whole runs of characters, and each argument is joined
once.

The rules (those of ``shlex``, which differ from a shell's in places):
- arguments are separated by space, tab, CR and LF only;
- a backslash outside quotes makes the next character literal (a newline too);
- inside single quotes every character is literal;
- inside double quotes a backslash escapes only ``"`` and ``\\``; before any
  other character it stays, with that character;
- quotes join the argument around them; ``''`` alone is an empty argument.

``MAX_TEXT`` bounds what a caller should split at all (``fworker.commands.base``
refuses longer settings before splitting, and splits those over
``INLINE_TEXT`` outside the event loop), and ``check_args`` checks the result
against what the system can ``exec`` (``split_for_exec`` does both).
"""
from __future__ import annotations

import os
import re

# A command line setting longer than this is refused before it is split.
# Linux refuses an argument list over ARG_MAX (usually 2 MiB, environment
# included) anyway; 1 MiB leaves room for the environment and the arguments a
# command adds.  Splitting this much of the worst input takes tens of ms.
MAX_TEXT = 1024 * 1024

# Linux's MAX_ARG_STRLEN: exec refuses any single argument longer than 32
# pages (128 KiB, its terminating NUL included) with E2BIG.
MAX_ARG_BYTES = 32 * 4096 - 1

# What exec allows for all arguments and the environment together.
ARG_MAX = os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else 2 * 1024 * 1024
_POINTER = 8

# Up to this long, a text is split in the event loop: at worst (tiny
# arguments, ~1 µs each) that takes a few ms.  Longer ones go to gevent's
# thread pool, so that no task can hold up the loop.
INLINE_TEXT = 16 * 1024

# One argument, as written: runs of plain characters, quoted strings and
# escaped characters, with no separator between them.  Possessive (++, *+):
# nothing backtracks, so no input can make a match slow.
_ARG = r"""(?:[^ \t\r\n'"\\]++|'[^']*+'|"(?:[^"\\]++|\\.)*+"|\\.)++"""
# Every argument, or else a character no argument can start with: a quote
# that is never closed, or a backslash at the very end.
_ARGS = re.compile(rf"""({_ARG})|([^ \t\r\n])""", re.S)
# The longest start of a text made of arguments and separators only.
_READABLE = re.compile(rf"""(?:[ \t\r\n]++|{_ARG})*+""", re.S)
# The pieces of one argument, to decode one that has quotes or escapes.
_PIECE = re.compile(r"""([^'"\\]++)|'([^']*+)'|"((?:[^"\\]++|\\.)*+)"|\\(.)""", re.S)
# A double-quoted string that is not closed: its escapes, up to the end.
_OPEN_DOUBLE = re.compile(r""""(?:[^"\\]++|\\.)*+""", re.S)
# Inside double quotes only these two may be escaped.
_DOUBLE_ESCAPE = re.compile(r'\\([\\"])')


def split(text: str) -> list[str]:
    """``shlex.split(text)``, in time linear in ``len(text)``; ``ValueError``
    for an unterminated quote or a trailing backslash, as ``shlex`` raises."""
    found = _ARGS.findall(text)  # the scanning is all done by the regex engine
    if not found:
        return []
    raws, unreadable = zip(*found, strict=True)
    if any(unreadable):
        raise ValueError(_problem(text, _match_end(_READABLE, text, 0)))
    if not _special(text):
        return list(raws)
    return [_decode(raw) if _special(raw) else raw for raw in raws]


def _special(raw: str) -> bool:
    return "'" in raw or '"' in raw or "\\" in raw


def _decode(raw: str) -> str:
    """One argument's value: quotes removed, escapes resolved."""
    parts = []
    for plain, single, double, escaped in _PIECE.findall(raw):
        if plain or single:
            parts.append(plain or single)
        elif escaped:
            parts.append(escaped)
        elif double:
            parts.append(_DOUBLE_ESCAPE.sub(_unescape, double) if "\\" in double else double)
    return "".join(parts)


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern``, which matches the empty string too, stops matching ``text`` from ``pos``."""
    found = pattern.match(text, pos)
    return pos if found is None else found.end()


def _unescape(match: re.Match[str]) -> str:
    return str(match.group(1))


def _problem(text: str, pos: int) -> str:
    """What ``shlex`` says about the text that could not be read from ``pos``:
    a quote that is never closed, or a backslash at the very end."""
    char = text[pos]
    if char == '"':
        return "No closing quotation" if _match_end(_OPEN_DOUBLE, text, pos) == len(text) else "No escaped character"
    if char == "'":
        return "No closing quotation"
    return "No escaped character"  # a backslash with nothing after it


class ExecLimit(ValueError):
    """Arguments the system would refuse to ``exec``."""


def split_for_exec(text: str) -> list[str]:
    """``split(text)``, checked by ``check_args``: ``ExecLimit`` (a
    ``ValueError``) says what the system would refuse."""
    args = split(text)
    problem = check_args(args)
    if problem:
        raise ExecLimit(problem)
    return args


def check_args(args: list[str]) -> str | None:
    """Why the system would refuse to ``exec`` these arguments, or None: one
    that cannot be encoded, or has a NUL (no C string can hold it), one longer
    than ``MAX_ARG_BYTES``, or all of them beyond ``ARG_MAX``."""
    with_nul = next((index for index, arg in enumerate(args) if "\0" in arg), None)
    if with_nul is not None:
        return f"has an argument (number {with_nul + 1}) with a NUL character: {shown(args[with_nul])}"
    try:
        sizes = [len(arg) if arg.isascii() else len(os.fsencode(arg)) for arg in args]
    except UnicodeEncodeError as ex:
        bad = next(index for index, arg in enumerate(args) if not _encodable(arg))
        return f"has an argument (number {bad + 1}) the system cannot be given ({ex.reason}): {shown(args[bad])}"
    longest = max(sizes, default=0)
    if longest > MAX_ARG_BYTES:
        return (f"has an argument (number {sizes.index(longest) + 1}) of {longest} bytes; "
                f"the system allows {MAX_ARG_BYTES}")
    # The kernel counts each string's terminating NUL and its pointer too.
    total = sum(sizes) + len(sizes) * (1 + _POINTER)
    if total > ARG_MAX:
        return f"has {len(args)} arguments taking {total} bytes; the system allows {ARG_MAX} for all of them"
    return None


def _encodable(arg: str) -> bool:
    try:
        os.fsencode(arg)
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str, limit: int = 200) -> str:
    """``repr(text)``, cut to about ``limit`` characters: a message quoting a
    setting must stay readable when the setting is megabytes long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
