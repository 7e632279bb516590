"""File-management commands: moving, copying, numbering and removing files.

Every path setting passes ``check_safe_path`` (in ``validate`` and again just
before ``execute`` acts, because earlier commands of the same task may have
re-pointed a symlink in between).  Everything that touches the file system
goes through ``ctx.blocking`` so a slow network share does not freeze the
worker's other greenlets.
"""
from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import time
import typing
import uuid

from fworker import statefiles
from fworker.commands import filecopy
from fworker.commands.base import Command, CommandSettings, register
from fworker.errors import CommandFailed, InvalidSettings

MTIME_FORMAT = "%Y-%m-%d_%H%M%S"


# --- Path safety ---------------------------------------------------------------


def _home_folders() -> set[str]:
    """The user's home folder as the environment and the password database
    know it; both, because $HOME may have been changed for the worker."""
    homes = {os.path.expanduser("~")}
    try:
        import pwd
    except ImportError:  # Windows: no password database, expanduser() is all there is
        pass
    else:
        try:
            homes.add(pwd.getpwuid(os.getuid()).pw_dir)
        except KeyError:  # a uid without a passwd entry (containers): $HOME is all we have
            pass
    # An empty or relative "home" would make the current folder protected by accident.
    return {h for h in homes if h and os.path.isabs(h)}


def _is_same_or_ancestor(path: str, other: str) -> bool:
    path, other = os.path.normcase(path), os.path.normcase(other)
    try:
        return os.path.commonpath([path, other]) == path
    except ValueError:  # different drives on Windows
        return False


def check_safe_path(command: str, setting: str, path: str) -> None:
    """Refuse paths no file command may ever act on: "." and "..", the file
    system root, the user's home folder and its ancestors, and anything that
    resolves to one of those (symlinks, trailing slashes, "/./", "/..").
    Raises InvalidSettings; reads the file system but never changes it."""

    def refuse(problem: str) -> InvalidSettings:
        return InvalidSettings(command, setting, f"{problem}; refusing to touch it")

    if not path.strip():
        raise InvalidSettings(command, setting, "must not be empty")
    if "\0" in path:
        raise InvalidSettings(command, setting, f"contains a NUL character: {path!r}")
    if all(part in (os.curdir, os.pardir) for part in os.path.normpath(path).split(os.sep)):
        raise refuse(f"is {path!r}, the current folder or one of its parents, not a real target")
    if os.path.normpath(path) == "~":
        raise refuse(f"is {path!r}: paths are used as given (no '~' expansion), so this is no real target")
    resolved = sorted({os.path.abspath(path), os.path.realpath(path)})
    for candidate in resolved:
        if os.path.dirname(candidate) == candidate:
            raise refuse(f"refers to the filesystem root ({path!r} resolves to {candidate!r})")
    protected = {p for home in _home_folders() for p in (os.path.abspath(home), os.path.realpath(home))}
    for home in sorted(protected):
        for candidate in resolved:
            if _is_same_or_ancestor(candidate, home):
                what = "is" if os.path.normcase(candidate) == os.path.normcase(home) else "contains"
                raise refuse(f"{what} the user's home folder {home!r} ({path!r} resolves to {candidate!r})")


# --- Blocking helpers (run in the thread pool) ------------------------------------


def _rename(src: str, dest: str) -> None:
    try:
        os.rename(src, dest)
    except OSError as ex:
        if ex.errno != errno.EXDEV:
            raise
        # rename() cannot cross file systems (local disk <-> share): copy, then delete.
        shutil.move(src, dest)


def _make_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)


def _highest_counter(folder: str, pattern: re.Pattern[str]) -> int:
    """The highest number captured by ``pattern`` among the names in
    ``folder``, 0 when none matches (or the folder does not exist yet)."""
    try:
        names = os.listdir(folder or os.curdir)
    except FileNotFoundError:
        return 0
    numbers = [int(m.group(1)) for m in map(pattern.fullmatch, names) if m]
    return max(numbers, default=0)


def _out_of_way_name(path: str, separator: str = "~", width: int = 0) -> str:
    """``<path>-<mtime>``, or ``<path>-<mtime>~N`` when that is taken (Flamenco
    3 writes ``-NNN``: ``separator`` "-", ``width`` 3)."""
    mtime = os.lstat(path).st_mtime  # lstat: a dangling symlink must move too
    stamped = f"{path}-{time.strftime(MTIME_FORMAT, time.localtime(mtime))}"
    if not os.path.lexists(stamped):
        return stamped
    folder, name = os.path.split(stamped)
    highest = _highest_counter(folder, re.compile(re.escape(name + separator) + r"(\d+)"))
    return f"{stamped}{separator}{highest + 1:0{width}d}"


def _part_name(dest: str) -> str:
    """A temporary name beside ``dest`` for its content while it is copied."""
    folder, name = os.path.split(dest)
    return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.fworker-part")


def _mode_and_replace(src: str, tmp: str, dest: str) -> OSError | None:
    """Give the complete copy ``tmp`` the mode of ``src`` and rename it over
    ``dest``, so nobody ever sees a half-written ``dest``.  Returns the
    mode-copy error (network shares often refuse chmod), which is not fatal."""
    mode_error = None
    try:
        shutil.copymode(src, tmp)
    except OSError as ex:
        mode_error = ex
    os.replace(tmp, dest)
    return mode_error


def _remove(path: str, tree: bool) -> None:
    # A symlink is removed itself, never what it points to.
    if tree and os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _write_text(path: str, contents: str) -> None:
    # newline="": write the contents exactly as sent, no platform newline translation.
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(contents)


def _strip_trailing_seps(path: str) -> str:
    """``/a/b/`` names the same thing as ``/a/b``; without the slash its
    name and folder can be split off (root is refused before this)."""
    stripped = path.rstrip("/" + os.sep)
    return stripped or path


# --- Commands -------------------------------------------------------------------------


class FileCommand(Command):
    """Base of the file commands: path validation, the execute-time safety
    re-check, and OS errors turned into a failure naming the command."""

    path_keys: typing.ClassVar[tuple[str, ...]] = ()
    # How move_aside numbers a name already taken: separator and digits.
    aside_counter: typing.ClassVar[tuple[str, int]] = ("~", 0)

    def require_path(self, settings: CommandSettings, key: str, *, file_name: bool = False) -> str:
        path = self.require_str(settings, key)
        check_safe_path(self.name, key, path)
        self.refuse_own_state(key, path)
        if file_name and not os.path.basename(path):
            raise self._invalid(key, f"must end in a file name, not a separator: {path!r}")
        return path

    def refuse_own_state(self, key: str, path: str) -> None:
        """A task must not touch the worker's own state: its queue, credentials,
        lock, log (fworker.statefiles), nor a folder holding one of them."""
        owned = statefiles.StateFiles.of(self.ctx.settings, self.ctx.settings.instance).owns(path)
        if owned is not None:
            raise self._invalid(key, f"{path!r} is or holds this worker's own {owned}; refusing to touch it")

    def refuse_same(self, settings: CommandSettings, a: str, b: str) -> None:
        if os.path.normcase(os.path.abspath(settings[a])) == os.path.normcase(os.path.abspath(settings[b])):
            raise self._invalid(b, f"is the same path as {a!r}: {settings[b]!r}")

    def execute(self, settings: CommandSettings) -> None:
        for key in self.path_keys:
            self.ctx.blocking(check_safe_path, self.name, key, settings[key])
            self.ctx.blocking(self.refuse_own_state, key, settings[key])
        try:
            self.run(settings)
        except OSError as ex:
            raise CommandFailed(f"{self.name} failed: {ex}") from ex

    def run(self, settings: CommandSettings) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        # lexists: a dangling symlink is still something to move or remove.
        return self.ctx.blocking(os.path.lexists, path)

    def move_aside(self, path: str) -> str:
        """Rename the existing ``path`` to its mtime-stamped name and return that."""
        new_path = self.ctx.blocking(_out_of_way_name, path, *self.aside_counter)
        self.ctx.log(f"Moving {path!r} out of the way: renaming it to {new_path!r}")
        self.ctx.blocking(_rename, path, new_path)
        return new_path


@register
class MoveOutOfWay(FileCommand):
    name = "move_out_of_way"
    path_keys = ("src",)

    def validate(self, settings: CommandSettings) -> CommandSettings:
        return {"src": self.require_path(settings, "src")}

    def run(self, settings: CommandSettings) -> None:
        src = _strip_trailing_seps(settings["src"])
        if not self.exists(src):
            self.ctx.log(f"{src!r} does not exist, nothing to move out of the way")
            return
        self.ctx.activity(f"moving {src} out of the way")
        self.move_aside(src)


@register
class MoveToFinal(FileCommand):
    name = "move_to_final"
    path_keys = ("src", "dest")

    def validate(self, settings: CommandSettings) -> CommandSettings:
        checked = {"src": self.require_path(settings, "src"), "dest": self.require_path(settings, "dest")}
        self.refuse_same(checked, "src", "dest")
        return checked

    def run(self, settings: CommandSettings) -> None:
        src, dest = _strip_trailing_seps(settings["src"]), _strip_trailing_seps(settings["dest"])
        if not self.exists(src):
            self.ctx.log(f"{src!r} does not exist, nothing to move to {dest!r}")
            return
        self.ctx.activity(f"moving {src} to {dest}")
        if self.exists(dest):
            self.move_aside(dest)
        self.ctx.blocking(_make_parent, dest)
        self.ctx.log(f"Moving {src!r} to {dest!r}")
        self.ctx.blocking(_rename, src, dest)


@register
class CopyFile(FileCommand):
    name = "copy_file"
    path_keys = ("src", "dest")

    def validate(self, settings: CommandSettings) -> CommandSettings:
        checked = {"src": self.require_path(settings, "src"),
                   "dest": self.require_path(settings, "dest", file_name=True)}
        self.refuse_same(checked, "src", "dest")
        return checked

    def run(self, settings: CommandSettings) -> None:
        src, dest = settings["src"], settings["dest"]
        if not self.ctx.blocking(os.path.exists, src):
            raise CommandFailed(f"{self.name}: source file {src!r} does not exist")
        if self.ctx.blocking(os.path.isdir, src):
            raise CommandFailed(f"{self.name}: source {src!r} is a folder; copy_file copies single files")
        if self.ctx.blocking(os.path.isdir, dest):
            raise CommandFailed(f"{self.name}: destination {dest!r} is a folder; give the path of the file to write")
        self.ctx.activity(f"copying {src} to {dest}")
        verb = "replacing" if self.exists(dest) else "creating"
        self.ctx.log(f"Copying {src!r} to {dest!r} ({verb} it)")
        self.ctx.blocking(_make_parent, dest)
        # The content goes to a temporary name, one chunk at a time: a stopped task
        # stops the copy, and a failed or stopped one leaves no part behind.
        tmp = _part_name(dest)
        mode_error = filecopy.copy_content(src, tmp, then=functools.partial(_mode_and_replace, src, tmp, dest),
                                           stop_wait=max(1.0, self.ctx.settings.abort_grace_period))
        if mode_error is not None:
            self.ctx.log(f"Could not copy the file mode of {src!r} to {dest!r} (the content was copied): {mode_error}")
        self.ctx.output_produced(dest)


class _RemoveCommand(FileCommand):
    path_keys = ("path",)
    tree: typing.ClassVar[bool] = False

    def validate(self, settings: CommandSettings) -> CommandSettings:
        return {"path": self.require_path(settings, "path")}

    def run(self, settings: CommandSettings) -> None:
        path = settings["path"]
        if not self.exists(path):
            self.ctx.log(f"{path!r} does not exist, nothing to remove")
            return
        is_link = self.ctx.blocking(os.path.islink, path)
        is_folder = not is_link and self.ctx.blocking(os.path.isdir, path)
        if is_folder and not self.tree:
            raise CommandFailed(f"{self.name}: {path!r} is a folder; use remove_tree to remove folders")
        what = "symlink" if is_link else "folder tree" if is_folder else "file"
        self.ctx.activity(f"removing {path}")
        self.ctx.log(f"Removing {what} {path!r}")
        self.ctx.blocking(_remove, path, self.tree)


@register
class RemoveTree(_RemoveCommand):
    name = "remove_tree"
    tree = True


@register
class RemoveFile(_RemoveCommand):
    name = "remove_file"
    tree = False


# A leading run of digits and underscores ("2018_06_12-spring.mkv"), ending at
# its last digit so separating underscores stay with the rest of the name.
_DATE_PREFIX = re.compile(r"([0-9_]*[0-9])(.*)", re.DOTALL)


def _counter_parts(name: str) -> tuple[str, str]:
    """Split a file name where the counter goes: after a leading digit run,
    otherwise between stem and extension."""
    match = _DATE_PREFIX.fullmatch(name)
    if match:
        return match.group(1), match.group(2)
    return os.path.splitext(name)


def _numbered_path(dest: str) -> str:
    """``dest`` with a 3-digit counter one above the highest existing one."""
    folder, name = os.path.split(dest)
    head, tail = _counter_parts(name)
    pattern = re.compile(re.escape(head) + r"_(\d{3,})" + re.escape(tail), re.DOTALL)
    number = _highest_counter(folder, pattern) + 1
    return os.path.join(folder, f"{head}_{number:03d}{tail}")


@register
class MoveWithCounter(FileCommand):
    name = "move_with_counter"
    path_keys = ("src", "dest")

    def validate(self, settings: CommandSettings) -> CommandSettings:
        return {"src": self.require_path(settings, "src"), "dest": self.require_path(settings, "dest", file_name=True)}

    def run(self, settings: CommandSettings) -> None:
        src = _strip_trailing_seps(settings["src"])
        if not self.exists(src):
            raise CommandFailed(f"{self.name}: source {src!r} does not exist, unable to move it")
        self.ctx.blocking(_make_parent, settings["dest"])
        dest = self.ctx.blocking(_numbered_path, settings["dest"])
        self.ctx.activity(f"moving {src} to {dest}")
        self.ctx.log(f"Moving {src!r} to {dest!r}")
        self.ctx.blocking(_rename, src, dest)
        self.ctx.output_produced(dest)


@register
class CreatePythonFile(FileCommand):
    name = "create_python_file"
    path_keys = ("filepath",)

    def validate(self, settings: CommandSettings) -> CommandSettings:
        filepath = self.require_path(settings, "filepath", file_name=True)
        if not filepath.endswith(".py"):
            raise self._invalid("filepath", f"must end in '.py': {filepath!r}")
        contents = self.require_str(settings, "contents", allow_empty=True)
        try:
            contents.encode("utf-8")
        except UnicodeEncodeError as ex:
            raise self._invalid("contents", f"cannot be written as UTF-8: {ex}") from None
        return {"filepath": filepath, "contents": contents}

    def run(self, settings: CommandSettings) -> None:
        filepath, contents = settings["filepath"], settings["contents"]
        if self.ctx.blocking(os.path.isdir, filepath):
            raise CommandFailed(f"{self.name}: {filepath!r} is a folder, cannot write a Python file there")
        verb = "Overwriting" if self.exists(filepath) else "Creating"
        if contents:
            self.ctx.log(f"{verb} {filepath!r} with these contents:")
            for line in contents.splitlines():
                self.ctx.log(line)
        else:
            self.ctx.log(f"{verb} {filepath!r} (empty)")
        self.ctx.activity(f"writing {filepath}")
        self.ctx.blocking(_make_parent, filepath)
        self.ctx.blocking(_write_text, filepath, contents)
