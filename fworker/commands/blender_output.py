"""Understanding Blender's console output, one line at a time.

Pure code (no I/O; the activity throttle at the end takes its clock and
timer as arguments) so it can be tested on captured lines of every
Blender version the farm may run:

- 2.8x/2.9x Cycles: ``Fra:1 Mem:... | Time:... | Remaining:... | Mem:..., Peak:...
  | Scene, View Layer | Rendered 3/8 Tiles, Sample 16/16`` (or ``Path Tracing Tile 2/8,
  Sample 5/16``); EEVEE (every version): ``... | Rendering 3 / 64 samples``;
- 3.x/4.x Cycles: ``Fra:1 Mem:... | Time:... | Mem:..., Peak:... | Scene, ViewLayer |
  Sample 3/16`` (a second ``Mem:, Peak:`` pair, ``Remaining:`` only sometimes);
- 5.x: every message behind a logger prefix ``00:00.670  render           | ``, and the
  frame stats as ``Fra: 1 | ...`` (a space after the colon).

``BlenderOutput`` keeps the state of one Blender run (frames done, errors,
produced files) and turns each line into an ``Update`` that the command
reports.  Workbench prints no ``Fra:`` lines at all: its frames are counted by
their ``Saved:`` lines.  Movie output prints ``Append frame N`` instead.

Each frame rendered ends with a ``Time: 00:00.33 (Saving: ...)`` line (3.x and
4.x print it with a leading space), and each frame left alone because its file
exists with ``skipping existing frame "<path>"`` (``Skipping`` in newer
versions): both are a step of the render (``Update.step``), which Flamenco 3
counts.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import time
import typing

# "00:00.670  render           | " (Blender 5.x logger).  Anchored on the time
# stamp so a 3.x line, which starts with "Fra:" or a message, is never cut.
_LOG_PREFIX = re.compile(r"^\s*\d+:\d{2}(?:\.\d+)?\s+[\w.]+\s*\|\s?")
_FRAME = re.compile(r"\bFra:\s*(-?\d+)")
_SAMPLE = re.compile(r"\bSample\s+(\d+)\s*/\s*(\d+)")
_EEVEE = re.compile(r"\bRendering\s+(\d+)\s*/\s*(\d+)\s+samples")
_TILES_DONE = re.compile(r"\bRendered\s+(\d+)\s*/\s*(\d+)\s+Tiles")
_TILE_CURRENT = re.compile(r"\bPath Tracing Tile\s+(\d+)\s*/\s*(\d+)")
_SAVED = re.compile(r"\bSaved:\s*'(.*)'")  # greedy: a path may hold a quote
_PRODUCED = re.compile(r"^fworker: produced '(.*)'\s*$")  # our bundled scripts
_APPEND = re.compile(r"^Append frame\s+(-?\d+)")
# The end of a frame's render and save.  Anchored: stats lines carry "| Time:" too.
_FRAME_TIME = re.compile(r"^Time:\s*\d")
_SKIPPED = re.compile(r"^[sS]kipping existing frame\b")
_READ_BLEND = re.compile(r"^Read blend:\s*(.*)")
_WARNING = re.compile(r"^Warning:\s*(?:Unable to open\b|Path '.*' not found)")
_ERROR = re.compile(r"^(?:Error:|ERROR\b)")
# The last line of a Python traceback: "RuntimeError: ...", "bpy.types.Foo...Error: ..."
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): \S")
# What a line must start with for the anchored rules above to match it.
_SKIPPING = ("skipping existing frame", "Skipping existing frame")
_ERRORS = ("Error:", "ERROR")

STATS, SAVED, PRODUCED, APPEND, READ_BLEND, WARNING, ERROR, FRAME_TIME, SKIPPED, OTHER = (
    "stats", "saved", "produced", "append", "read_blend", "warning", "error", "frame_time", "skipped", "other")


class Line(typing.NamedTuple):
    """One parsed line.  ``fraction`` is how much of the current frame is done
    (None when the line does not say).  A named tuple rather than a frozen
    dataclass: made for every line of output, and half the cost to make."""

    kind: str
    message: str
    frame: int | None = None
    status: str = ""
    fraction: float | None = None
    path: str = ""


def strip_log_prefix(line: str) -> str:
    # The prefix starts with a time stamp, after spaces at most: most lines
    # ("Fra:...") are not even tried.
    first = line[:1]
    if first.isdigit() or first.isspace():  # a superset of what \d and \s match
        line = _LOG_PREFIX.sub("", line, count=1)
    return line.rstrip()


def frame_fraction(status: str) -> float | None:
    """How far the current frame is, from the last field of a stats line."""
    # Each search only where its words are in the text: most statuses have none.
    tiles = _TILES_DONE.search(status) if "Tiles" in status else None
    if tiles and int(tiles.group(2)):
        return int(tiles.group(1)) / int(tiles.group(2))
    sample = ((_SAMPLE.search(status) if "Sample" in status else None)
              or (_EEVEE.search(status) if "samples" in status else None))
    in_tile = 0.0
    if sample and int(sample.group(2)):
        in_tile = int(sample.group(1)) / int(sample.group(2))
    tile = _TILE_CURRENT.search(status) if "Path Tracing Tile" in status else None
    if tile and int(tile.group(2)):
        return (int(tile.group(1)) - 1 + in_tile) / int(tile.group(2))
    return in_tile if sample else None


def parse_line(line: str) -> Line:
    """The rules in their order; each regex only runs on a line holding the text
    it needs (a substring or a start), so that a line costs a few substring
    checks and at most the regexes that can match it."""
    text = strip_log_prefix(line).strip()
    if "Saved:" in text and (match := _SAVED.search(text)):
        return Line(SAVED, text, path=match.group(1))
    if text.startswith("fworker: ") and (match := _PRODUCED.match(text)):
        return Line(PRODUCED, text, path=match.group(1))
    if "Fra:" in text and (match := _FRAME.search(text)):
        status = text.rsplit("|", 1)[-1].strip() if "|" in text else ""
        return Line(STATS, text, frame=int(match.group(1)), status=status,
                    fraction=frame_fraction(status))
    return _parse_anchored(text)


def _parse_anchored(text: str) -> Line:
    """The kinds known by how the line starts (or, for an exception, ends its name)."""
    if text.startswith("Append frame") and (match := _APPEND.match(text)):
        return Line(APPEND, text, frame=int(match.group(1)))
    if text.startswith("Read blend:") and (match := _READ_BLEND.match(text)):
        return Line(READ_BLEND, text, path=match.group(1).strip().strip('"'))  # 4.x+ quotes it
    if text.startswith("Time:") and _FRAME_TIME.match(text):
        return Line(FRAME_TIME, text)
    if text.startswith(_SKIPPING) and _SKIPPED.match(text):
        return Line(SKIPPED, text)
    if text.startswith("Warning:") and _WARNING.match(text):
        return Line(WARNING, text)
    if ((text.startswith(_ERRORS) and _ERROR.match(text))
            or (("Error: " in text or "Exception: " in text) and _EXCEPTION.match(text))):
        return Line(ERROR, text)
    return Line(OTHER, text)


@dataclasses.dataclass
class Update:
    """What one line means for the reports.  ``phase`` names the timing phase
    that starts with this line ("" ends the previous one without a new one)."""

    activity: str | None = None
    sticky: bool = False  # a warning/error: progress chatter must not displace it
    percent: int | None = None  # only when it changed
    output: str | None = None
    phase: str | None = None
    step: bool = False  # a frame rendered or skipped: one step of the render


class BlenderOutput:
    """The state of one Blender run, fed line by line."""

    def __init__(self, frames_total: int | None = None, *, saved_is_output: bool = True):
        self.frames_total = frames_total
        self.saved_is_output = saved_is_output
        self.errors: list[str] = []
        self.outputs: list[str] = []
        self.saved_count = 0
        self.steps = 0  # frames rendered (a Time: line) or skipped as existing
        self._frames_done: set[int] = set()
        self._anonymous_done = 0  # Saved: lines with no Fra: before them (Workbench)
        self._frame: int | None = None
        self._fraction = 0.0
        self._percent = -1
        self._phase = "starting blender"

    @property
    def frames_done(self) -> int:
        return len(self._frames_done) + self._anonymous_done

    def feed(self, raw: str) -> Update:
        line = parse_line(raw)
        update = Update(phase=self._next_phase(line.kind))
        handler = self._HANDLERS.get(line.kind)
        if handler is not None:
            handler(self, line, update)
        update.percent = self._new_percent()
        return update

    def _next_phase(self, kind: str) -> str | None:
        if kind == READ_BLEND:
            new = "loading blendfile"
        elif kind in (STATS, SAVED, APPEND, PRODUCED, FRAME_TIME, SKIPPED):
            new = "rendering"
        else:
            new = "" if self._phase == "starting blender" else self._phase
        if new == self._phase:
            return None
        self._phase = new
        return new

    def _position(self) -> str:
        if not self.frames_total:
            return ""
        return f" ({min(self.frames_done + 1, self.frames_total)}/{self.frames_total})"

    def _on_stats(self, line: Line, update: Update) -> None:
        if self._frame is not None and line.frame != self._frame:
            self._frames_done.add(self._frame)  # the previous frame ended unsaved
            self._fraction = 0.0
        self._frame = line.frame
        if line.fraction is not None:
            self._fraction = line.fraction
        status = f": {line.status}" if line.status else ""
        update.activity = f"Blender: frame {line.frame}{self._position()}{status}"

    def _finish_frame(self, frame: int | None) -> None:
        if frame is None:
            self._anonymous_done += 1
        else:
            self._frames_done.add(frame)
        self._fraction = 0.0

    def _on_saved(self, line: Line, update: Update) -> None:
        self.saved_count += 1
        self._finish_frame(self._frame)
        self._frame = None
        update.activity = f"Blender saved {line.path}{self._done_of()}"
        if self.saved_is_output:
            self.outputs.append(line.path)
            update.output = line.path

    def _on_produced(self, line: Line, update: Update) -> None:
        self._finish_frame(None)
        self.outputs.append(line.path)
        update.output = line.path
        update.activity = f"Blender produced {line.path}{self._done_of()}"

    def _on_append(self, line: Line, update: Update) -> None:
        self.saved_count += 1  # a frame went into a movie file
        self._finish_frame(line.frame)
        self._frame = None
        update.activity = f"Blender: appended frame {line.frame} to the movie{self._done_of()}"

    def _on_frame_time(self, line: Line, update: Update) -> None:
        self.steps += 1
        update.step = True

    def _on_skipped(self, line: Line, update: Update) -> None:
        self.steps += 1
        update.step = True
        self._finish_frame(None)
        update.activity = f"Blender: {line.message}{self._done_of()}"

    def _on_read_blend(self, line: Line, update: Update) -> None:
        update.activity = f"Blender: loading {line.path}"

    def _on_warning(self, line: Line, update: Update) -> None:
        update.activity = f"Blender: {line.message}"
        update.sticky = True

    def _on_error(self, line: Line, update: Update) -> None:
        self.errors.append(line.message)
        update.activity = f"Blender: {line.message}"
        update.sticky = True

    # What each kind of line does to the state and the update (OTHER: nothing).
    _HANDLERS: typing.ClassVar[dict[str, typing.Callable[[BlenderOutput, Line, Update], None]]] = {
        STATS: _on_stats, SAVED: _on_saved, PRODUCED: _on_produced, APPEND: _on_append,
        READ_BLEND: _on_read_blend, WARNING: _on_warning, ERROR: _on_error,
        FRAME_TIME: _on_frame_time, SKIPPED: _on_skipped,
    }

    def _done_of(self) -> str:
        return f" ({self.frames_done}/{self.frames_total})" if self.frames_total else ""

    def _new_percent(self) -> int | None:
        if not self.frames_total:
            return None
        done = min(self.frames_total, self.frames_done + self._fraction)
        percent = int(100 * done / self.frames_total)
        if percent <= self._percent:  # never backwards, never repeated
            return None
        self._percent = percent
        return percent


# Blender's --render-frame syntax: "5", "1..10", "1,3,5..8"; "+N" counts from
# the scene's start frame and "-N" back from its end frame.
_FRAME_NUMBER = r"[+-]?\d+"
_FRAME_ITEM = re.compile(rf"^({_FRAME_NUMBER})(?:\.\.({_FRAME_NUMBER}))?$")


def parse_frames(spec: str) -> list[tuple[str, str]]:
    """The items of a frame spec as (first, last) strings; ValueError if
    malformed or a range runs backwards (Blender would ignore it)."""
    items = []
    for part in spec.replace(" ", "").split(","):
        match = _FRAME_ITEM.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a frame number or a range like 1..10")
        first, last = match.group(1), match.group(2) or match.group(1)
        if _anchor(first) == _anchor(last) and int(last) < int(first):
            raise ValueError(f"{part!r} runs backwards")
        items.append((first, last))
    return items


def count_frames(spec: str) -> int | None:
    """How many frames a spec renders; None when that depends on the scene's
    range (a range between a relative and an absolute frame)."""
    total = 0
    for first, last in parse_frames(spec):
        if _anchor(first) != _anchor(last):
            return None
        # Relative numbers are offsets from one anchor, so the difference holds
        # ("-3..-1" is the last three frames).
        total += int(last) - int(first) + 1
    return total


def _anchor(number: str) -> str:
    return number[0] if number[0] in "+-" else ""


class ActivityThrottle:
    """At most one activity per ``interval`` seconds, the first at once, and
    never starved: the latest held-back text goes out when the interval ends
    (through ``call_later(delay, fn) -> cancel``).  A sticky text (a warning)
    is not displaced by later plain ones before it was sent."""

    def __init__(self, send: typing.Callable[[str], None], interval: float, *,
                 clock: typing.Callable[[], float] = time.monotonic,
                 call_later: typing.Callable[..., typing.Callable[[], None]] | None = None):
        self._send = send
        self._interval = max(0.0, float(interval))
        self._clock = clock
        self._call_later = call_later or _gevent_call_later
        self._last_sent: float | None = None
        self._pending: tuple[str, bool] | None = None
        self._cancel_timer: typing.Callable[[], None] | None = None

    def submit(self, text: str, sticky: bool = False) -> None:
        if self._pending is not None and self._pending[1] and not sticky:
            return
        self._pending = (text, sticky)
        self._maybe_send()

    def close(self, flush: bool = False) -> None:
        """Stop the timer; with ``flush``, send what is still held back."""
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
        if flush and self._pending is not None:
            self._deliver(self._clock())

    def _maybe_send(self) -> None:
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self._interval:
            self.close()
            self._deliver(now)
        elif self._cancel_timer is None:
            delay = self._last_sent + self._interval - now
            self._cancel_timer = self._call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._cancel_timer = None
        if self._pending is not None:
            self._maybe_send()

    def _deliver(self, now: float) -> None:
        if self._pending is None:  # every caller saw one held back; nothing to send otherwise
            return
        text, _ = self._pending
        self._pending = None
        self._last_sent = now
        self._send(text)


def _gevent_call_later(delay: float, fn: typing.Callable[[], None]) -> typing.Callable[[], None]:
    import gevent  # here, so the parser above stays importable without it

    timer = gevent.spawn_later(delay, fn)
    return functools.partial(timer.kill, block=False)
