"""A Reporter that keeps everything a command reports, in order."""
from __future__ import annotations


class RecordingReporter:
    def __init__(self):
        self.events: list[tuple[str, object]] = []
        self.log_times: list[float | None] = []  # the ``at`` of each log line

    def log_lines(self, lines, at=None):
        self.events.extend(("log", line) for line in lines)
        self.log_times.extend(at for _ in lines)

    def activity(self, text):
        self.events.append(("activity", text))

    def command_progress(self, percent):
        self.events.append(("progress", percent))

    def output_produced(self, paths):
        self.events.append(("output", list(paths)))

    def timing(self, phase, seconds):
        self.events.append(("timing", (phase, seconds)))

    def steps_completed(self, count):
        self.events.append(("steps", count))

    def of(self, kind):
        return [value for k, value in self.events if k == kind]

    @property
    def log(self):
        return self.of("log")
