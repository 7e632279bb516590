"""Flamenco 3's file-management commands: ``move-directory``, ``copy-file``,
``make-directory`` (parameters as a Flamenco 3 Manager sends them; docs/COMMANDS.md
§8 describes them).

They share the 2.x file commands' machinery (``fworker.commands.files``): the
same path safety check, done when validating and again just before acting,
file-system work in the thread pool, and operating-system errors failing the
command by name.  A copy goes through ``fworker.commands.filecopy``, so
stopping the task stops it.  Moves only rename, as Flamenco 3's own worker
does: a move across file systems would be a copy no one could stop.
"""
from __future__ import annotations

import errno
import os
import stat
import typing

from fworker.commands import filecopy
from fworker.commands.base import register
from fworker.commands.files import FileCommand, _make_parent, _strip_trailing_seps
from fworker.errors import CommandFailed


class FileCommand3(FileCommand):
    dialects = ("v3",)
    # An existing destination moves aside as <dest>-YYYY-MM-DD_HHMMSS, then -001, -002...
    aside_counter = ("-", 3)


def _rename_in_place(name: str, src: str, dest: str) -> None:
    try:
        os.rename(src, dest)
    except OSError as ex:
        if ex.errno == errno.EXDEV:
            raise CommandFailed(f"{name}: {src!r} and {dest!r} are on different file systems; "
                                f"{name} only renames (as Flamenco 3's worker does), it does not copy") from None
        raise


@register
class MoveDirectory(FileCommand3):
    name = "move-directory"
    path_keys = ("src", "dest")

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        checked = {"src": self.require_path(settings, "src"), "dest": self.require_path(settings, "dest")}
        self.refuse_same(checked, "src", "dest")
        return checked

    def run(self, settings: dict[str, typing.Any]) -> None:
        src, dest = _strip_trailing_seps(settings["src"]), _strip_trailing_seps(settings["dest"])
        if not self.exists(src):
            raise CommandFailed(f"{self.name}: src {src!r} does not exist, nothing moved")
        self.ctx.activity(f"moving {src} to {dest}")
        if self.exists(dest):
            self.move_aside(dest)
        self.ctx.log(f"{self.name}: moving {src!r} to {dest!r}")
        self.ctx.blocking(_rename_in_place, self.name, src, dest)


@register
class CopyFile3(FileCommand3):
    name = "copy-file"
    path_keys = ("src", "dest")

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        checked = {"src": self.require_path(settings, "src"),
                   "dest": self.require_path(settings, "dest", file_name=True)}
        for key in ("src", "dest"):
            if not os.path.isabs(checked[key]):
                raise self._invalid(key, f"must be an absolute path, not {checked[key]!r}")
        self.refuse_same(checked, "src", "dest")
        return checked

    def run(self, settings: dict[str, typing.Any]) -> None:
        src, dest = settings["src"], settings["dest"]
        try:
            mode = self.ctx.blocking(os.stat, src).st_mode
        except FileNotFoundError:
            raise CommandFailed(f"{self.name}: src {src!r} does not exist, nothing copied") from None
        if not stat.S_ISREG(mode):  # checked again on the open file; this one is before any folder is made
            raise CommandFailed(f"{self.name}: src {src!r} is {filecopy.describe(mode)}; "
                                f"only regular files are copied, nothing copied")
        if self.exists(dest):
            raise CommandFailed(f"{self.name}: dest {dest!r} already exists; {self.name} never overwrites, "
                                f"nothing copied")
        self.ctx.activity(f"copying {src} to {dest}")
        self.ctx.log(f"{self.name}: copying {src!r} to {dest!r}")
        self.ctx.blocking(_make_parent, dest)
        worker = self.ctx.settings
        filecopy.copy_content(src, dest, on_progress=lambda state: self._progress(dest, state),
                              interval=max(1.0, worker.activity_interval),
                              stop_wait=max(1.0, worker.abort_grace_period))
        self.ctx.progress(100)
        self.ctx.log(f"{self.name}: copied {src!r} to {dest!r}")

    def _progress(self, dest: str, state: filecopy.Copying) -> None:
        if state.size:
            percent = min(100, int(100 * state.copied / state.size))
            self.ctx.progress(percent)
            self.ctx.activity(f"copying to {dest}: {percent} % of {state.size / 1e6:.1f} MB")


@register
class MakeDirectory(FileCommand3):
    name = "make-directory"

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        path = self.require_str(settings, "path", allow_empty=False)
        if "\0" in path:
            raise self._invalid("path", f"contains a NUL character: {path!r}")
        return {"path": path}

    def run(self, settings: dict[str, typing.Any]) -> None:
        # Creating folders destroys nothing: no path safety check (an existing
        # folder, even the home folder, is simply there already).
        path = settings["path"]
        self.ctx.log(f"{self.name}: creating directory {path!r}")
        self.ctx.blocking(os.makedirs, path, 0o775, True)
