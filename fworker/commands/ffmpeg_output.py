"""Understanding FFmpeg's output, one line at a time (pure, no I/O).

FFmpeg runs with ``-progress pipe:1``: every half second it writes a block of
``key=value`` lines to stdout, ending with ``progress=continue`` (or
``progress=end``).  Those blocks are machine-readable in every version, unlike
the ``frame=  12 fps=...`` stats line on stderr, which stays in the task log
for people.  ``out_time_ms`` is really microseconds (like ``out_time_us``).
The inputs' ``Duration: 00:01:02.50, start: ...`` lines give the length a
percentage can be computed against when the frame count is not known.
"""
from __future__ import annotations

import dataclasses
import re

_PROGRESS_KEYS = {"frame", "fps", "bitrate", "total_size", "out_time_us", "out_time_ms",
                  "out_time", "dup_frames", "drop_frames", "speed", "progress"}
_KEY_VALUE = re.compile(r"^([a-z0-9_]+)=(.*)$")
_STREAM_Q = re.compile(r"^stream_\d+_\d+_q$")
_DURATION = re.compile(r"^\s*Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def progress_key(line: str) -> tuple[str, str] | None:
    """(key, value) when ``line`` belongs to a ``-progress`` block.  The stats
    line also starts with ``frame=`` but its value is not a bare number."""
    match = _KEY_VALUE.match(line.strip())
    if not match:
        return None
    key, value = match.group(1), match.group(2).strip()
    if key not in _PROGRESS_KEYS and not _STREAM_Q.match(key):
        return None
    if key == "frame" and not value.isdigit():
        return None
    return key, value


def parse_duration(line: str) -> float | None:
    """Seconds from an input's ``Duration:`` line (None for ``N/A`` or others)."""
    match = _DURATION.match(line)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@dataclasses.dataclass
class Update:
    activity: str | None = None
    percent: int | None = None  # only when it changed
    is_progress: bool = False  # a -progress line: keep it out of the task log


class FFmpegOutput:
    """The state of one FFmpeg run.  With ``frames_total`` the percentage is
    frames done / frames_total, else output time / the longest input."""

    def __init__(self, frames_total: int | None = None):
        self.frames_total = frames_total
        self.duration: float | None = None
        self._block: dict[str, str] = {}
        self._percent = -1

    def feed(self, line: str) -> Update:
        pair = progress_key(line)
        if pair is None:
            seconds = parse_duration(line)
            if seconds is not None and seconds > 0:
                self.duration = max(self.duration or 0.0, seconds)
            return Update()
        key, value = pair
        self._block[key] = value
        if key != "progress":
            return Update(is_progress=True)
        block, self._block = self._block, {}
        return self._summarise(block)

    def _summarise(self, block: dict[str, str]) -> Update:
        frame = int(block["frame"]) if block.get("frame", "").isdigit() else None
        seconds = _out_seconds(block)
        parts = []
        if frame is not None:
            parts.append(f"frame {frame}" + (f"/{self.frames_total}" if self.frames_total else ""))
        if seconds is not None:
            parts.append(clock(seconds) + (f" of {clock(self.duration)}" if self.duration else ""))
        speed = block.get("speed", "")
        if speed and speed != "N/A" and not speed.startswith("0x"):
            parts.append(f"speed {speed}")
        done = block.get("progress") == "end"
        activity = "FFmpeg: " + (", ".join(parts) or "working") + (" (finishing)" if done else "")
        return Update(activity=activity, percent=self._new_percent(frame, seconds), is_progress=True)

    def _new_percent(self, frame: int | None, seconds: float | None) -> int | None:
        if self.frames_total and frame is not None:
            fraction = frame / self.frames_total
        elif self.duration and seconds is not None:
            fraction = seconds / self.duration
        else:
            return None
        percent = int(100 * min(1.0, max(0.0, fraction)))
        if percent <= self._percent:
            return None
        self._percent = percent
        return percent


def _out_seconds(block: dict[str, str]) -> float | None:
    for key in ("out_time_us", "out_time_ms"):  # both microseconds
        value = block.get(key, "")
        if value.lstrip("-").isdigit():
            micro = int(value)
            return micro / 1e6 if micro >= 0 else None  # negative before the first packet
    return None
