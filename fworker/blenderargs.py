"""The extra Blender arguments of this worker instance, put where Blender reads them.

Blender handles its command line in order: an option such as ``--threads``
only applies to a render started after it, i.e. before the first frame
argument (``-f``/``--render-frame``, ``-a``, and ``-s``/``-e``/``-j``, which
come last in Flamenco 3's stock job).  Everything after ``--`` is left to
Python and to Cycles, which reads ``--cycles-device`` there.

Four settings make up the two lists:

- ``blender_threads`` (0: Blender's default) -> ``--threads N`` *before*;
- ``blender_args_before``: more arguments before the frame arguments;
- ``blender_cycles_device`` (e.g. CUDA, OPTIX, HIP, ONEAPI, METAL, CPU,
  ``CUDA+CPU``) -> ``--cycles-device DEVICE`` *after* ``--``;
- ``blender_args_after``: more arguments after ``--``.

``BlenderArgs.of(settings)`` parses them, once per settings value
(``Settings.blender_args`` keeps it); its ``apply(argv)`` is the one way to
add them to a render's command line, for both Manager protocols; the
kept-loaded Blender reads ``threads``, ``cycles_device`` and the two lists
from the same value.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import typing

# Arguments that start work on frames: ours go before the first of them.
FRAME_ARGS = frozenset({"-f", "--render-frame", "-a", "--render-anim", "-s", "--frame-start",
                        "-e", "--frame-end", "-j", "--frame-jump"})
END_OF_BLENDER_ARGS = "--"
_DEVICE = re.compile(r"[A-Za-z]+(\+CPU)?\Z", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class BlenderArgs:
    threads: int = 0  # 0: Blender's default
    cycles_device: str = ""  # empty: the device the .blend file asks for
    before: tuple[str, ...] = ()  # blender_args_before as given
    after: tuple[str, ...] = ()  # blender_args_after as given

    @classmethod
    def of(cls, settings: typing.Any) -> BlenderArgs:
        """From the worker's settings; ``ValueError`` naming the setting that is wrong."""
        return cls.parse(settings.blender_threads, settings.blender_cycles_device,
                         settings.blender_args_before, settings.blender_args_after)

    @classmethod
    def parse(cls, threads: int, cycles_device: str, before: str, after: str) -> BlenderArgs:
        device = cycles_device.strip().upper()
        if device and not _DEVICE.match(device):
            raise ValueError(f"blender_cycles_device = {cycles_device!r}: not a Cycles device name "
                             "like CUDA, OPTIX, HIP, ONEAPI, METAL, CPU or CUDA+CPU")
        before_words = _split("blender_args_before", before)
        if END_OF_BLENDER_ARGS in before_words:
            raise ValueError(f"blender_args_before = {before!r}: must not contain '--', which ends "
                             "Blender's own arguments (put those in blender_args_after)")
        return cls(threads, device, tuple(before_words), tuple(_split("blender_args_after", after)))

    @property
    def before_frames(self) -> list[str]:
        """Everything that goes before the first frame argument."""
        return (["--threads", str(self.threads)] if self.threads else []) + list(self.before)

    @property
    def after_dashes(self) -> list[str]:
        """Everything that goes after ``--``."""
        return (["--cycles-device", self.cycles_device] if self.cycles_device else []) + list(self.after)

    def __bool__(self) -> bool:
        return bool(self.before_frames or self.after_dashes)

    def apply(self, argv: typing.Sequence[str]) -> list[str]:
        """``argv`` (a Blender command line, program first) with this
        instance's arguments added: *before* in front of the first frame
        argument (or of ``--``, or at the end), *after* at the very end, behind
        a ``--`` (added when ``argv`` has none)."""
        args = list(argv)
        end = args.index(END_OF_BLENDER_ARGS) if END_OF_BLENDER_ARGS in args else len(args)
        at = next((i for i in range(1, end) if args[i] in FRAME_ARGS), end)
        args[at:at] = self.before_frames
        after = self.after_dashes
        if after:
            if END_OF_BLENDER_ARGS not in args:
                args.append(END_OF_BLENDER_ARGS)
            args += after
        return args

    def describe(self) -> str:
        """For ``--check-config``: the two lists, or that there are none."""
        if not self:
            return "none added"
        return (f"before the frame arguments: {shlex.join(self.before_frames) or '-'}; "
                f"after '--': {shlex.join(self.after_dashes) or '-'}")


def apply(argv: typing.Sequence[str], settings: typing.Any) -> list[str]:
    """``settings.blender_args.apply(argv)`` (parsed when the settings were
    loaded): what every render command calls."""
    args: BlenderArgs = settings.blender_args
    return args.apply(argv)


def _split(name: str, text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError as ex:
        raise ValueError(f"{name} = {text!r}: cannot be split into arguments ({ex})") from None
