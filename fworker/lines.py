"""A child's output, bytes in, lines out.

A line ends with \\n, \\r\\n or a lone \\r (progress lines rewrite themselves with
\\r).  Bytes that are not UTF-8 become U+FFFD.  A line longer than ``limit`` bytes
comes out in pieces, never cut inside a character: memory stays bounded whatever
the child prints.
"""
from __future__ import annotations

import re
from collections.abc import Callable

_EOL = re.compile(rb"\r\n|\r|\n")
_EOL_TEXT = re.compile(r"\r\n|\r|\n")
# A character is at most this many bytes in UTF-8 (U+FFFD, for a bad byte, is 3).
_MAX_CHAR_BYTES = 4


class LineSplitter:
    """Feeds ``emit`` one line at a time.  The careful path: every rule is here."""

    def __init__(self, emit: Callable[[str], None], limit: int):
        self._emit = emit
        self._limit = max(limit, _MAX_CHAR_BYTES)  # room for a whole UTF-8 character
        self._rest = b""
        self._cut = False  # the current line was already partly emitted

    def feed(self, data: bytes) -> None:
        buf, start = self._rest + data, 0
        for match in _EOL.finditer(buf):
            if match.end() == len(buf) and match.group() == b"\r":
                break  # the \n of a \r\n may come with the next chunk
            self._line_end(buf[start:match.start()])
            start = match.end()
        # A held trailing \r stays in the rest: a piece is always shorter than the rest.
        self._rest = self._send_pieces(buf[start:])

    def close(self) -> None:
        """End of output: deliver what is left, terminated or not."""
        rest, self._rest = self._rest, b""
        if rest:
            self._line_end(rest.removesuffix(b"\r"))

    def _send_pieces(self, data: bytes) -> bytes:
        """Send pieces of ``data`` while it is longer than the limit; return the rest."""
        while len(data) > self._limit:
            cut = self._limit
            while cut > self._limit - 3 and data[cut] & 0xC0 == 0x80:
                cut -= 1  # not inside a UTF-8 character: it would become two U+FFFD
            self._send(data[:cut])
            self._cut, data = True, data[cut:]
        return data

    def _line_end(self, content: bytes) -> None:
        content = self._send_pieces(content)
        if content or not self._cut:  # after a cut right at the end, nothing is left
            self._send(content)
        self._cut = False

    def _send(self, raw: bytes) -> None:
        self._emit(raw.decode("utf-8", errors="replace"))


class BatchSplitter(LineSplitter):
    """The same lines in the same order as ``LineSplitter``, but all the complete
    lines of a chunk go to ``emit_lines`` in one call, decoded and split in one pass
    each: per-line calls, decodes and regex matches were most of the worker's CPU on
    chatty output.  Decoding the lines together gives what decoding them one by one
    gives, as no UTF-8 sequence contains a \\r or \\n byte.  Lines that need cutting
    into pieces take ``LineSplitter``'s path; they are rare."""

    def __init__(self, emit_lines: Callable[[list[str]], None], limit: int):
        self._batch: list[str] = []
        super().__init__(self._batch.append, limit)
        self._emit_lines = emit_lines

    def feed(self, data: bytes) -> None:
        buf = self._rest + data
        # A trailing \r is held back: the \n of a \r\n may come with the next chunk.
        scan = buf[:-1] if buf.endswith(b"\r") else buf
        end = max(scan.rfind(b"\n"), scan.rfind(b"\r"))  # the last line end
        lines = self._split(scan[:end + 1]) if end >= 0 and not self._cut else None
        if lines is None:
            super().feed(data)  # self._rest is untouched so far
        else:
            self._batch.extend(lines)
            self._rest = self._send_pieces(buf[end + 1:])
        self._deliver()

    def _split(self, terminated: bytes) -> list[str] | None:
        """The lines of ``terminated`` (which ends with a line end); None when one is
        longer than the limit and must come in pieces."""
        text = terminated.decode("utf-8", errors="replace")
        lines = _EOL_TEXT.split(text) if "\r" in text else text.split("\n")
        lines.pop()  # the empty string after the last line end
        if len(terminated) <= self._limit or max(map(len, lines)) * _MAX_CHAR_BYTES <= self._limit:
            return lines
        # Maybe too long in bytes: count exactly (U+FFFD may stand for fewer
        # bytes than its own three, so this may send a line to the careful
        # path that did not need it: the same lines come out either way).
        if any(len(line.encode()) > self._limit for line in lines if len(line) * _MAX_CHAR_BYTES > self._limit):
            return None
        return lines

    def close(self) -> None:
        super().close()
        self._deliver()

    def _deliver(self) -> None:
        if self._batch:
            lines = self._batch.copy()
            self._batch.clear()  # in place: _send appends to this very list
            self._emit_lines(lines)
