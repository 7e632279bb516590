"""Blender commands: rendering, merging progressive renders, audio mixdown,
EXR sequences to JPEG previews.

Every Blender run goes through ``BlenderRun``: its output is parsed by
``blender_output`` into progress, throttled activity, produced files, timing
phases and remembered error lines (which end up in the failure message, since
Blender's exit code alone says little).  The non-render commands run small
scripts shipped in ``blender_scripts/``.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import time
import typing

from fworker import blenderargs
from fworker.commands import blender_warm
from fworker.commands.base import Command, CommandContext, register
from fworker.commands.blender_output import ActivityThrottle, BlenderOutput, count_frames, parse_frames
from fworker.errors import CommandFailed

log = logging.getLogger(__name__)

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_scripts")
PYTHON_EXIT_CODE = 42  # what --python-exit-code makes Blender exit with on a script error
FORMATS = {"OPEN_EXR": "EXR", "OPEN_EXR_MULTILAYER": "MULTILAYER"}  # Blender's -F spells them so
# A command's settings, validated: strings, numbers, command lines, by key.
Settings = dict[str, typing.Any]


class BlenderRun:
    """One Blender process, its output understood and reported.  ``on_step``
    is called for each frame rendered or skipped (Flamenco 3 counts them)."""

    def __init__(self, cmd: Command, *, frames_total: int | None = None, saved_is_output: bool = True,
                 on_step: typing.Callable[[], None] | None = None):
        self.ctx = ctx = cmd.ctx
        self.name = cmd.name
        self._on_step = on_step
        self.output = BlenderOutput(frames_total, saved_is_output=saved_is_output)
        self._throttle = ActivityThrottle(ctx.activity, ctx.settings.activity_interval)
        self._phase: str | None = None
        self._phase_start = 0.0

    def run(self, args: list[str], activity: str, runner: typing.Callable[..., int] | None = None) -> BlenderOutput:
        """``runner``: instead of ``ctx.run_process`` (the warm Blender's, same arguments)."""
        self._throttle.submit(activity)
        self._enter("starting blender")
        ok = False
        try:
            (runner or self.ctx.run_process)(args, on_line=self._on_line)
            ok = True
        except CommandFailed as ex:
            raise CommandFailed(self._explain(str(ex), args)) from ex
        finally:
            self._throttle.close(flush=ok)
            self._enter(None)
        return self.output

    def require_output(self, what: str) -> None:
        """Blender exits 0 for some failures: no produced file means one."""
        if self.output.saved_count or self.output.outputs:
            return
        message = f"command {self.name!r}: Blender exited normally but saved nothing, although {what}"
        raise CommandFailed(self._with_errors(message))

    def _on_line(self, line: str) -> None:
        update = self.output.feed(line)
        if update.phase is not None:
            self._enter(update.phase or None)
        if update.percent is not None:
            self.ctx.progress(update.percent)
        if update.output is not None:
            self.ctx.output_produced(update.output)
        if update.activity is not None:
            self._throttle.submit(update.activity, update.sticky)
        if update.step and self._on_step is not None:
            self._on_step()

    def _enter(self, phase: str | None) -> None:
        now = time.monotonic()
        if self._phase is not None:
            self.ctx.timing(self._phase, now - self._phase_start)
        self._phase, self._phase_start = phase, now

    def _explain(self, failure: str, args: list[str]) -> str:
        if f"code {PYTHON_EXIT_CODE}" in failure and "--python-exit-code" in args:
            failure += " (a Python script raised an exception)"
        return self._with_errors(f"command {self.name!r}: {failure}")

    def _with_errors(self, message: str) -> str:
        errors = list(dict.fromkeys(self.output.errors))[-3:]  # de-duplicated, the last few
        if not errors:
            return message
        return message + "; Blender said: " + " | ".join(e[:300] for e in errors)


def wait_for_file(cmd: Command, setting: str, path: str) -> None:
    """A .blend on a network share may not be visible yet: look again for a
    bounded time (without blocking other greenlets), then fail clearly."""
    ctx = cmd.ctx
    limit = ctx.settings.blender_filepath_wait
    deadline = time.monotonic() + limit
    waiting = False
    while not ctx.blocking(os.path.exists, path):
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandFailed(f"command {cmd.name!r}: {setting} {path!r} does not exist "
                                f"(waited {limit:g} s for it to appear)")
        if not waiting:
            waiting = True
            log.info("%s: %s %s does not exist yet, waiting up to %.1f s", cmd.name, setting, path, limit)
            ctx.log(f"{path} does not exist (yet); waiting up to {limit:g} s for it")
            ctx.activity(f"waiting for {path} to appear")
        ctx.sleep(min(0.5, left))
    if not ctx.blocking(os.path.isfile, path):
        raise CommandFailed(f"command {cmd.name!r}: {setting} {path!r} is not a file")


def make_folder_for(ctx: CommandContext, path: str) -> None:
    folder = os.path.dirname(path)
    if folder:
        ctx.blocking(os.makedirs, folder, 0o777, True)


def script_args(blender_cmd: list[str], script: str, blendfile: str | None, args: list[str],
                autoexec: bool = False) -> list[str]:
    """A headless Blender run of one of our scripts; options as --name=value so
    that a value starting with '-' cannot pass for an option."""
    cmd = [*blender_cmd]
    if autoexec:
        cmd.append("--enable-autoexec")
    cmd += ["--background", "--factory-startup", "-noaudio"]
    if blendfile is not None:
        cmd.append(blendfile)
    return cmd + ["--python-exit-code", str(PYTHON_EXIT_CODE),
                  "--python", os.path.join(SCRIPTS, script), "--", *args]


def frame_path(pattern: str, frame: int) -> str:
    """Replace the last run of '#' (as Blender does) by the zero-padded frame."""
    runs = list(re.finditer(r"#+", pattern))
    last = runs[-1]
    return pattern[:last.start()] + str(frame).zfill(len(last.group())) + pattern[last.end():]


@register
class BlenderRender(Command):
    name = "blender_render"
    needs = ("blender",)

    def validate(self, settings: Settings) -> Settings:
        frames = settings.get("frames")
        if isinstance(frames, int) and not isinstance(frames, bool):
            frames = str(frames)  # a single frame may come as a number
        valid: Settings = {
            "blender_cmd": self.require_cmdline(settings, "blender_cmd"),
            "filepath": self.require_str(settings, "filepath"),
            "render_output": self.optional_str(settings, "render_output", None, allow_empty=False),
            "frames": self.optional_str({"frames": frames}, "frames", None, allow_empty=False),
            "format": self.optional_str(settings, "format", None, allow_empty=False),
            "python_expr": self.optional_str(settings, "python_expr", None),
        }
        if valid["frames"] is not None:
            try:
                parse_frames(valid["frames"])
            except ValueError as ex:
                raise self._invalid("frames", f"is not a frame list like '1..10' or '1,3,5': {ex}") from None
        if valid["format"] is not None and not re.fullmatch(r"\w+", valid["format"]):
            raise self._invalid("format", f"is not an image format name like 'PNG': {valid['format']!r}")
        return valid

    def execute(self, settings: Settings) -> None:
        filepath = settings["filepath"]
        wait_for_file(self, "filepath", filepath)
        args = [*settings["blender_cmd"], "--enable-autoexec", "-noaudio", "--background", filepath]
        args += self._overrides(filepath)
        if settings["python_expr"]:
            args += ["--python-expr", settings["python_expr"]]
        if settings["render_output"]:
            args += ["--render-output", settings["render_output"]]
            make_folder_for(self.ctx, self._resolve(settings["render_output"], filepath))
        if settings["format"]:
            args += ["--render-format", FORMATS.get(settings["format"], settings["format"])]
        frames = settings["frames"]
        if frames is not None:  # after -o and -F: Blender handles its arguments in order
            args += ["--render-frame", frames]
        args += self.extra_args(settings)
        args = blenderargs.apply(args, self.ctx.settings)  # this instance's --threads, --cycles-device, ...
        run = BlenderRun(self, frames_total=count_frames(frames) if frames else None)
        # Only this command's own command line: subclasses add arguments of their own.
        warm = blender_warm.runner_for(self.ctx, args) if type(self) is BlenderRender else None
        run.run(args, f"starting Blender on {filepath}", warm)
        if frames is not None:
            run.require_output(f"frames {frames} were requested")
        self.ctx.progress(100)

    def extra_args(self, settings: Settings) -> list[str]:
        """Arguments after '--', for the render scripts (none here)."""
        return []

    def _overrides(self, filepath: str) -> list[str]:
        base = filepath[:-len(".blend")] if filepath.endswith(".blend") else os.path.splitext(filepath)[0]
        overrides = base + "-overrides.py"
        if not self.ctx.blocking(os.path.isfile, overrides):
            return []
        content = self.ctx.blocking(_read_text, overrides)
        self.ctx.log(f"Using overrides file {overrides}:")
        for line in content.splitlines():
            self.ctx.log(f"    {line}")
        return ["--python-exit-code", str(PYTHON_EXIT_CODE), "--python", overrides]

    @staticmethod
    def _resolve(render_output: str, filepath: str) -> str:
        if render_output.startswith("//"):  # Blender: relative to the .blend file
            return os.path.join(os.path.dirname(os.path.abspath(filepath)), render_output[2:])
        return render_output


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


@register
class BlenderRenderProgressive(BlenderRender):
    name = "blender_render_progressive"

    def validate(self, settings: Settings) -> Settings:
        if "cycles_chunk" in settings:
            raise self._invalid("cycles_chunk", "is obsolete and no longer supported: progressive renders "
                                "are given as cycles_num_chunks, cycles_chunk_start and cycles_chunk_end")
        valid = super().validate(settings)
        for key in ("cycles_num_chunks", "cycles_chunk_start", "cycles_chunk_end"):
            valid[key] = self.require_int(settings, key, minimum=1)
        if valid["cycles_chunk_end"] < valid["cycles_chunk_start"]:
            raise self._invalid("cycles_chunk_end", f"must not be below cycles_chunk_start "
                                f"({valid['cycles_chunk_end']} < {valid['cycles_chunk_start']})")
        if valid["cycles_chunk_end"] > valid["cycles_num_chunks"]:
            raise self._invalid("cycles_chunk_end", f"must not exceed cycles_num_chunks "
                                f"({valid['cycles_chunk_end']} > {valid['cycles_num_chunks']})")
        return valid

    def extra_args(self, settings: Settings) -> list[str]:
        return ["--", "--cycles-resumable-num-chunks", str(settings["cycles_num_chunks"]),
                "--cycles-resumable-start-chunk", str(settings["cycles_chunk_start"]),
                "--cycles-resumable-end-chunk", str(settings["cycles_chunk_end"])]


@register
class MergeProgressiveRenders(Command):
    name = "merge_progressive_renders"
    needs = ("blender",)
    sequence = False

    def validate(self, settings: Settings) -> Settings:
        valid: Settings = {"blender_cmd": self.require_cmdline(settings, "blender_cmd")}
        for key in ("input1", "input2", "output"):
            valid[key] = self.require_str(settings, key)
            if self.sequence and "#" not in valid[key]:
                raise self._invalid(key, f"must contain '#' for the frame number: {valid[key]!r}")
        for key in ("weight1", "weight2"):
            valid[key] = self.require_int(settings, key, minimum=0)
        if valid["weight1"] + valid["weight2"] == 0:
            raise self._invalid("weight2", "and weight1 are both 0: there is nothing to average")
        return valid

    def inputs(self, settings: Settings) -> list[tuple[str, str]]:
        return [("input1", settings["input1"]), ("input2", settings["input2"])]

    def execute(self, settings: Settings) -> None:
        inputs = self.inputs(settings)
        # One trip to the thread pool for the whole list (a sequence may be long).
        missing = self.ctx.blocking(
            lambda: [f"{key} {path!r}" for key, path in inputs if not os.path.isfile(path)])
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise CommandFailed(f"command {self.name!r}: input files do not exist: "
                                f"{', '.join(missing[:5])}{more}")
        make_folder_for(self.ctx, os.path.abspath(settings["output"]))
        args = [f"--input1={settings['input1']}", f"--input2={settings['input2']}",
                f"--output={settings['output']}", f"--weight1={settings['weight1']}",
                f"--weight2={settings['weight2']}", *self.frame_args(settings)]
        expected = len(inputs) // 2
        run = BlenderRun(self, frames_total=expected, saved_is_output=False)
        output = run.run(script_args(settings["blender_cmd"], "merge_exr.py", None, args),
                         f"merging {settings['input1']} and {settings['input2']}")
        if len(output.outputs) != expected:
            raise CommandFailed(f"command {self.name!r}: expected {expected} merged images, "
                                f"Blender produced {len(output.outputs)}")
        self.ctx.progress(100)

    def frame_args(self, settings: Settings) -> list[str]:
        return []


@register
class MergeProgressiveRenderSequence(MergeProgressiveRenders):
    name = "merge_progressive_render_sequence"
    sequence = True

    def validate(self, settings: Settings) -> Settings:
        valid = super().validate(settings)
        valid["frame_start"] = self.require_int(settings, "frame_start")
        valid["frame_end"] = self.require_int(settings, "frame_end")
        if valid["frame_end"] < valid["frame_start"]:
            raise self._invalid("frame_end", f"must not be below frame_start "
                                f"({valid['frame_end']} < {valid['frame_start']})")
        return valid

    def inputs(self, settings: Settings) -> list[tuple[str, str]]:
        frames = range(settings["frame_start"], settings["frame_end"] + 1)
        return [(key, frame_path(settings[key], frame)) for frame in frames for key in ("input1", "input2")]

    def frame_args(self, settings: Settings) -> list[str]:
        return [f"--frame-start={settings['frame_start']}", f"--frame-end={settings['frame_end']}"]


@register
class BlenderRenderAudio(Command):
    name = "blender_render_audio"
    needs = ("blender",)

    def validate(self, settings: Settings) -> Settings:
        valid: Settings = {
            "blender_cmd": self.require_cmdline(settings, "blender_cmd"),
            "filepath": self.require_str(settings, "filepath"),
            "render_output": self.require_str(settings, "render_output"),
            "frame_start": self.optional_int(settings, "frame_start", None),
            "frame_end": self.optional_int(settings, "frame_end", None),
        }
        start, end = valid["frame_start"], valid["frame_end"]
        if start is not None and end is not None and end < start:
            raise self._invalid("frame_end", f"must not be below frame_start ({end} < {start})")
        return valid

    def execute(self, settings: Settings) -> None:
        wait_for_file(self, "filepath", settings["filepath"])
        output = settings["render_output"]
        make_folder_for(self.ctx, os.path.abspath(output))
        args = [f"--output={output}"]
        for key in ("frame_start", "frame_end"):
            if settings[key] is not None:
                args.append(f"--{key.replace('_', '-')}={settings[key]}")
        # Autoexec as for rendering: drivers may animate volumes.
        cmd = script_args(settings["blender_cmd"], "audio_mixdown.py", settings["filepath"], args, autoexec=True)
        run = BlenderRun(self, frames_total=1, saved_is_output=False)
        run.run(cmd, f"mixing down the audio of {settings['filepath']}")
        run.require_output(f"the audio mixdown to {output} was requested")
        self.ctx.progress(100)


@register
class ExrSequenceToJpeg(Command):
    name = "exr_sequence_to_jpeg"
    needs = ("blender",)

    def validate(self, settings: Settings) -> Settings:
        given = [key for key in ("exr_glob", "exr_directory") if settings.get(key) is not None]
        if len(given) != 1:
            raise self._invalid("exr_glob", "or the legacy exr_directory must be given, exactly one of them "
                                f"(got {' and '.join(given) or 'neither'})")
        value = self.require_str(settings, given[0])
        exr_glob = value if given[0] == "exr_glob" else os.path.join(glob.escape(value), "*.exr")
        pattern = typing.cast(str, self.optional_str(settings, "output_pattern", "preview-######.jpg",
                                                     allow_empty=False))  # never None: it has a default
        if "#" not in pattern or "/" in pattern or os.sep in pattern:
            raise self._invalid("output_pattern", f"must be a file name with '#' for the frame number, "
                                f"like 'preview-######.jpg', not {pattern!r}")
        return {"blender_cmd": self.require_cmdline(settings, "blender_cmd"),
                "filepath": self.require_str(settings, "filepath"),
                "exr_glob": exr_glob, "output_pattern": pattern}

    def execute(self, settings: Settings) -> None:
        wait_for_file(self, "filepath", settings["filepath"])
        files = self.ctx.blocking(glob.glob, settings["exr_glob"])
        if not files:
            raise CommandFailed(f"command {self.name!r}: no files match {settings['exr_glob']!r}")
        args = [f"--exr-glob={settings['exr_glob']}", f"--output-pattern={settings['output_pattern']}",
                "--quality=90"]
        cmd = script_args(settings["blender_cmd"], "exr_to_jpeg.py", settings["filepath"], args)
        run = BlenderRun(self, frames_total=len(files))
        output = run.run(cmd, f"converting {len(files)} EXR images to JPEG")
        if output.saved_count != len(files):
            raise CommandFailed(f"command {self.name!r}: {len(files)} EXR images, but Blender saved "
                                f"{output.saved_count} JPEG images")
        self.ctx.progress(100)
