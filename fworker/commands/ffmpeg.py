"""FFmpeg commands: frames to video, concatenation, muxing, audio encoding.

Every run goes through ``FFmpegRun``: ``-nostdin`` (FFmpeg would otherwise
read the terminal for its interactive keys) and ``-progress pipe:1`` for
machine-readable progress, which ``ffmpeg_output`` turns into throttled
activity and a percentage.  The ``-progress`` lines stay out of the task log;
FFmpeg's own messages go in, and the last ones explain a failure.
"""
from __future__ import annotations

import collections
import decimal
import glob
import logging
import os
import sys
import tempfile

from fworker.commands.base import Command, CommandContext, CommandSettings, register
from fworker.commands.blender_output import ActivityThrottle
from fworker.commands.ffmpeg_output import FFmpegOutput
from fworker.errors import CommandFailed

log = logging.getLogger(__name__)

COMMON_ARGS = ["-nostdin", "-hide_banner", "-progress", "pipe:1"]
# FFmpeg's glob input needs glob(3), which Windows lacks: there the worker
# writes a concat index file instead (a module flag, so tests can cover both).
USE_GLOB = sys.platform != "win32"


class FFmpegRun:
    """One FFmpeg process, its output understood and reported."""

    def __init__(self, cmd: Command, frames_total: int | None = None):
        self.ctx = cmd.ctx
        self.name = cmd.name
        self.output = FFmpegOutput(frames_total)
        self._throttle = ActivityThrottle(self.ctx.activity, self.ctx.settings.activity_interval)
        self._tail: collections.deque[str] = collections.deque(maxlen=3)

    def run(self, ffmpeg_cmd: list[str], args: list[str], activity: str) -> None:
        self._throttle.submit(activity)
        ok = False
        try:
            self.ctx.run_process([*ffmpeg_cmd, *COMMON_ARGS, *args], on_line=self._on_line, log_lines=False)
            ok = True
        except CommandFailed as ex:
            said = " | ".join(line[:300] for line in self._tail)  # FFmpeg's last words say why
            message = f"command {self.name!r}: {ex}" + (f"; FFmpeg said: {said}" if said else "")
            raise CommandFailed(message) from ex
        finally:
            self._throttle.close(flush=ok)
        self.ctx.progress(100)

    def _on_line(self, line: str) -> None:
        update = self.output.feed(line)
        if not update.is_progress:
            self.ctx.log(line)
            if line.strip() and not line.startswith(("frame=", "size=")):  # not a stats line
                self._tail.append(line.strip())
        if update.percent is not None:
            self.ctx.progress(update.percent)
        if update.activity is not None:
            self._throttle.submit(update.activity)


class FFmpegCommand(Command):
    """Shared validation helpers."""

    needs = ("ffmpeg",)

    def ffmpeg(self, settings: CommandSettings) -> list[str]:
        return self.require_cmdline(settings, "ffmpeg_cmd", default="ffmpeg")

    def require_existing(self, settings: CommandSettings, key: str) -> None:
        """For execute(): a missing input is a settings problem, named as such."""
        if not self.ctx.blocking(os.path.isfile, settings[key]):
            raise self._invalid(key, f"names a file that does not exist: {settings[key]!r}")

    def matching_files(self, settings: CommandSettings, key: str) -> list[str]:
        files = sorted(self.ctx.blocking(glob.glob, settings[key]))
        if not files:
            raise CommandFailed(f"command {self.name!r}: no files match {key} {settings[key]!r}")
        return files

    def make_output_folder(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        self.ctx.blocking(os.makedirs, folder, 0o777, True)


def rate_text(fps: float) -> str:
    """A frame rate as FFmpeg's ``-r`` reads it: ``24``, ``23.976``; never in
    exponent notation, which FFmpeg would not take."""
    if float(fps).is_integer():
        return str(int(fps))
    return format(decimal.Decimal(repr(float(fps))), "f")


def concat_quote(path: str) -> str:
    """A path for a ``file`` line of FFmpeg's concat demuxer: in single quotes,
    where a quote itself is written as '\\'' (close, escaped quote, reopen)."""
    if "\n" in path or "\r" in path:
        raise CommandFailed(f"a file name with a line break cannot go into a concat index: {path!r}")
    return "'" + path.replace("'", "'\\''") + "'"


def write_concat_index(ctx: CommandContext, folder: str, files: list[str], duration: float | None = None) -> str:
    """Write the index into ``folder`` under a unique name (two workers may
    share the folder) and log its content; returns its path."""
    lines = ["ffconcat version 1.0"]
    for path in files:
        lines.append("file " + concat_quote(os.path.abspath(path)))
        if duration is not None:
            lines.append(f"duration {duration!r}")
    text = "\n".join(lines) + "\n"

    def write() -> str:
        fd, index = tempfile.mkstemp(prefix=".ffmpeg-concat-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return index

    index = ctx.blocking(write)
    ctx.log(f"concat index {index}:")
    for line in lines:
        ctx.log(f"    {line}")
    return index


def remove_quietly(ctx: CommandContext, path: str) -> None:
    try:
        ctx.blocking(os.unlink, path)
    except FileNotFoundError:
        pass  # already gone, which is all we wanted
    except OSError as ex:  # a leftover index is untidy, not a reason to fail the encode
        log.warning("cannot remove %s: %s", path, ex)
        ctx.log(f"could not remove {path}: {ex}")


@register
class CreateVideo(FFmpegCommand):
    name = "create_video"

    def validate(self, settings: CommandSettings) -> CommandSettings:
        fps = self.require_number(settings, "fps")
        if fps <= 0:
            raise self._invalid("fps", f"must be above 0, not {fps!r}")
        return {"input_files": self.require_str(settings, "input_files"),
                "output_file": self.require_str(settings, "output_file"),
                "fps": fps, "ffmpeg_cmd": self.ffmpeg(settings)}

    def execute(self, settings: CommandSettings) -> None:
        files = self.matching_files(settings, "input_files")
        self.make_output_folder(settings["output_file"])
        fps = settings["fps"]
        rate = rate_text(fps)
        index = None
        if not USE_GLOB:
            index = write_concat_index(self.ctx, os.path.dirname(files[0]), files, 1.0 / fps)
            source = ["-f", "concat", "-safe", "0", "-i", index]
        else:
            source = ["-pattern_type", "glob", "-i", settings["input_files"]]
        args = ["-r", rate, *source, "-c:v", "h264", "-crf", "20", "-g", "18",
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p",
                "-y", "-bf", "0", settings["output_file"]]
        try:
            FFmpegRun(self, frames_total=len(files)).run(
                settings["ffmpeg_cmd"], args, f"encoding {len(files)} images to {settings['output_file']}")
        finally:
            if index is not None:
                remove_quietly(self.ctx, index)
        self.ctx.output_produced(settings["output_file"])


@register
class ConcatenateVideos(FFmpegCommand):
    name = "concatenate_videos"

    def validate(self, settings: CommandSettings) -> CommandSettings:
        return {"input_files": self.require_str(settings, "input_files"),
                "output_file": self.require_str(settings, "output_file"),
                "ffmpeg_cmd": self.ffmpeg(settings)}

    def execute(self, settings: CommandSettings) -> None:
        files = self.matching_files(settings, "input_files")
        self.make_output_folder(settings["output_file"])
        index = write_concat_index(self.ctx, os.path.dirname(os.path.abspath(files[0])), files)
        args = ["-f", "concat", "-safe", "0", "-i", index, "-c", "copy", "-y", settings["output_file"]]
        # The index is removed after failures too: its content is in the task log.
        try:
            FFmpegRun(self).run(settings["ffmpeg_cmd"], args,
                                f"concatenating {len(files)} videos to {settings['output_file']}")
        finally:
            remove_quietly(self.ctx, index)
        self.ctx.output_produced(settings["output_file"])


@register
class MuxAudio(FFmpegCommand):
    name = "mux_audio"

    def validate(self, settings: CommandSettings) -> CommandSettings:
        return {key: self.require_str(settings, key) for key in ("audio_file", "video_file", "output_file")} | {
            "ffmpeg_cmd": self.ffmpeg(settings)}

    def execute(self, settings: CommandSettings) -> None:
        self.require_existing(settings, "video_file")
        self.require_existing(settings, "audio_file")
        self.make_output_folder(settings["output_file"])
        args = ["-i", settings["audio_file"], "-i", settings["video_file"],
                "-c", "copy", "-y", settings["output_file"]]
        FFmpegRun(self).run(settings["ffmpeg_cmd"], args, f"muxing audio into {settings['output_file']}")
        self.ctx.output_produced(settings["output_file"])


@register
class EncodeAudio(FFmpegCommand):
    name = "encode_audio"

    def validate(self, settings: CommandSettings) -> CommandSettings:
        bitrate = settings.get("bitrate")
        if isinstance(bitrate, int) and not isinstance(bitrate, bool):
            bitrate = str(bitrate)  # bits per second as a number
        return {"input_file": self.require_str(settings, "input_file"),
                "codec": self.require_str(settings, "codec"),
                "bitrate": self.require_str({"bitrate": bitrate} if "bitrate" in settings else {}, "bitrate"),
                "output_file": self.require_str(settings, "output_file"),
                "ffmpeg_cmd": self.ffmpeg(settings)}

    def execute(self, settings: CommandSettings) -> None:
        self.require_existing(settings, "input_file")
        self.make_output_folder(settings["output_file"])
        args = ["-i", settings["input_file"], "-c:a", settings["codec"], "-b:a", settings["bitrate"],
                "-y", settings["output_file"]]
        FFmpegRun(self).run(settings["ffmpeg_cmd"], args, f"encoding {settings['input_file']} "
                            f"as {settings['codec']} {settings['bitrate']}")
        self.ctx.output_produced(settings["output_file"])
