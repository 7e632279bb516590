"""Flamenco 3's render and encode commands: ``blender-render`` and
``frames-to-video`` (parameters as a Flamenco 3 Manager sends them;
docs/COMMANDS.md §8 describes them).

A Flamenco 3 job type builds the whole command line itself, so these commands
put it together in the order Flamenco 3 defines and add nothing of their own to
Blender's; what they share with the 2.x commands is everything around the
child process: ``BlenderRun`` (one Blender output parser for 2.8x to 5.x:
activity, ``Saved:`` images as produced output, a step per frame rendered or
skipped, Blender's error lines in the failure) and ``FFmpegRun`` (``-nostdin``,
machine-readable progress, FFmpeg's last words in the failure).
"""
from __future__ import annotations

import glob
import math
import os
import typing

from fworker import blenderargs, cmdline
from fworker.commands import blender_warm, ffmpeg
from fworker.commands.base import Command, register
from fworker.commands.blender import BlenderRun, make_folder_for, wait_for_file
from fworker.commands.blender_output import count_frames
from fworker.errors import CommandFailed


def _arg_text(value: object) -> str | None:
    """An argument list item as text: a string, or a number as a Flamenco 3
    worker writes it (``24``, ``23.976``: job types put the frame rate in
    ``args`` as a number); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


class ToolCommand3(Command):
    """Validation of the parameters Flamenco 3's tool commands share."""

    dialects = ("v3",)

    def program(self, settings: dict[str, typing.Any]) -> str:
        """``exe``: the plain name of the tool the command ``needs`` (``blender``,
        ``ffmpeg``) means the one this worker uses, as a Flamenco 3 worker ships
        or finds its own (``fworker.tools``); anything else runs as given."""
        exe = self.require_str(settings, "exe", allow_empty=False)
        if "\0" in exe:
            raise self._invalid("exe", f"contains a NUL character: {cmdline.shown(exe)}")
        return self.require_program("exe", exe)

    def exe_args(self, settings: dict[str, typing.Any]) -> list[str]:
        """``exeArgs``: one string, split as a shell would split it (absent: none)."""
        return self.split_setting("exeArgs", self.optional_str(settings, "exeArgs", "") or "")

    def string_list(self, settings: dict[str, typing.Any], key: str) -> list[str]:
        """``argsBefore``/``args``: a list of strings (numbers written as text); absent: none."""
        value = settings.get(key, [])
        if not isinstance(value, list):
            raise self._invalid(key, f"must be a list of strings, not {type(value).__name__} "
                                     f"{cmdline.shown(repr(value))}")
        args = []
        for index, item in enumerate(value):
            text = _arg_text(item)
            if text is None:
                raise self._invalid(key, f"item {index} must be a string or a number, not "
                                         f"{type(item).__name__} {cmdline.shown(repr(item))}")
            args.append(text)
        problem = cmdline.check_args(args)
        if problem:
            raise self._invalid(key, problem)
        return args


def frames_requested(args: list[str]) -> int | None:
    """How many frames a Blender command line renders (``-f``/``--render-frame``
    values), when that can be told without the scene; None otherwise."""
    total = 0
    for index, arg in enumerate(args):
        if arg in ("-a", "--render-anim"):
            return None
        if arg in ("-f", "--render-frame") and index + 1 < len(args):
            try:
                count = count_frames(args[index + 1])
            except ValueError:
                return None
            if count is None:
                return None
            total += count
    return total or None


@register
class BlenderRender3(ToolCommand3):
    name = "blender-render"
    needs = ("blender",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        blendfile = settings.get("blendfile")
        if not isinstance(blendfile, str):
            raise self._invalid("blendfile", 'is required, a string (an empty one, "", leaves the blend file '
                                             f'out), not {cmdline.shown(repr(blendfile))}')
        return {"exe": self.program(settings), "exeArgs": self.exe_args(settings),
                "argsBefore": self.string_list(settings, "argsBefore"), "blendfile": blendfile,
                "args": self.string_list(settings, "args")}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        blendfile = settings["blendfile"]
        if blendfile:
            wait_for_file(self, "blendfile", blendfile)
        args = [settings["exe"], *settings["exeArgs"], *settings["argsBefore"],
                *([blendfile] if blendfile else []), *settings["args"]]
        args = blenderargs.apply(args, self.ctx.settings)  # this instance's --threads, --cycles-device, ...
        run = BlenderRun(self, frames_total=frames_requested(args), on_step=self._step)
        warm = blender_warm.runner_for(self.ctx, args) if blendfile else None  # the scene may stay loaded
        run.run(args, f"starting Blender on {blendfile}" if blendfile else "starting Blender", warm)
        self.ctx.progress(100)

    def _step(self) -> None:
        # One frame rendered or skipped: one of this command's steps.
        self.ctx.step_completed()


@register
class FramesToVideo(ToolCommand3):
    name = "frames-to-video"
    needs = ("ffmpeg",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        fps = self.require_number(settings, "fps")
        if not math.isfinite(fps) or fps <= 0:
            raise self._invalid("fps", f"must be a frame rate above 0, not {fps!r}")
        return {"exe": self.program(settings), "exeArgs": self.exe_args(settings), "fps": fps,
                "inputGlob": self.require_str(settings, "inputGlob", allow_empty=False),
                "outputFile": self.require_str(settings, "outputFile", allow_empty=False),
                "argsBefore": self.string_list(settings, "argsBefore"),
                "args": self.string_list(settings, "args")}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        rate, pattern, output = ffmpeg.rate_text(settings["fps"]), settings["inputGlob"], settings["outputFile"]
        # Python's glob is not FFmpeg's (no braces): the count only drives the
        # progress, and FFmpeg says itself when nothing matches.
        files = sorted(self.ctx.blocking(glob.glob, pattern))
        index = None
        if ffmpeg.USE_GLOB:
            source = ["-r", rate, "-pattern_type", "glob", "-i", pattern]
        else:
            if not files:
                raise CommandFailed(f"command {self.name!r}: no files match inputGlob {pattern!r}")
            index = ffmpeg.write_concat_index(self.ctx, os.path.dirname(files[0]), files, 1.0 / settings["fps"])
            source = ["-f", "concat", "-safe", "0", "-i", index]
        make_folder_for(self.ctx, os.path.abspath(output))
        args = [*settings["argsBefore"], *source, *settings["args"], "-r", rate, output]
        what = f"{len(files)} images" if files else pattern
        try:
            ffmpeg.FFmpegRun(self, frames_total=len(files) or None).run(
                [settings["exe"], *settings["exeArgs"]], args, f"encoding {what} to {output}")
        finally:
            if index is not None:
                ffmpeg.remove_quietly(self.ctx, index)

