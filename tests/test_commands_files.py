"""File-management commands, against real files in tmp_path.

Tests that aim a command at the real filesystem root or the real home folder
only call ``validate`` (which never touches the disk), so a broken safety
check fails the test instead of destroying anything.
"""
import hashlib
import logging
import os
import shutil
import stat
import time

import gevent
import pytest
from gevent import monkey

from fworker.commands import base, filecopy
from fworker.errors import CommandFailed, InvalidSettings

FIXED_MTIME = 1528813845  # 2018-06-12 in every time zone


def stamp(mtime):
    """The name suffix move_out_of_way derives from an mtime (local time)."""
    return time.strftime("%Y-%m-%d_%H%M%S", time.localtime(mtime))


def make_file(path, content=b"data", mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def listing(folder):
    return sorted(os.listdir(folder))


@pytest.fixture(autouse=True)
def local_time_is_not_utc():
    """Run in UTC+05:30 so that a name built from UTC instead of local time
    cannot pass (a POSIX TZ string: needs no time zone database)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XST-05:30"
    time.tzset()
    assert time.localtime(FIXED_MTIME).tm_hour != time.gmtime(FIXED_MTIME).tm_hour
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture
def make_command(recorder):
    import fworker.commands  # noqa: F401  (registration)

    def make(name):
        return base.lookup(name)(base.CommandContext(recorder, logging.getLogger("test." + name)))

    return make


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    home = tmp_path / "home" / "renderer"
    make_file(home / "precious.txt", b"keep me")
    monkeypatch.setenv("HOME", str(home))
    return home


# --- move_out_of_way ------------------------------------------------------------------


def test_move_out_of_way_renames_file_with_its_mtime(tmp_path, run_command):
    src = make_file(tmp_path / "render.exr", b"frame", mtime=FIXED_MTIME)
    rec = run_command("move_out_of_way", {"src": str(src)})
    expected = tmp_path / f"render.exr-{stamp(FIXED_MTIME)}"
    assert listing(tmp_path) == [expected.name]
    assert expected.read_bytes() == b"frame"
    assert any(str(src) in line and str(expected) in line for line in rec.log)


def test_move_out_of_way_renames_folder_given_with_trailing_slash(tmp_path, run_command):
    folder = tmp_path / "frames"
    make_file(folder / "0001.png")
    os.utime(folder, (FIXED_MTIME, FIXED_MTIME))
    run_command("move_out_of_way", {"src": str(folder) + "/"})
    moved = tmp_path / f"frames-{stamp(FIXED_MTIME)}"
    assert listing(tmp_path) == [moved.name]
    assert (moved / "0001.png").read_bytes() == b"data"


def test_move_out_of_way_adds_tilde_counter_when_name_taken(tmp_path, run_command):
    src = make_file(tmp_path / "out", mtime=FIXED_MTIME)
    taken = make_file(tmp_path / f"out-{stamp(FIXED_MTIME)}", b"older")
    run_command("move_out_of_way", {"src": str(src)})
    assert taken.read_bytes() == b"older"
    assert (tmp_path / f"{taken.name}~1").read_bytes() == b"data"
    assert not src.exists()


def test_move_out_of_way_counter_is_one_above_highest_existing(tmp_path, run_command):
    src = make_file(tmp_path / "out", b"newest", mtime=FIXED_MTIME)
    name = f"out-{stamp(FIXED_MTIME)}"
    for suffix in ("", "~1", "~3", "~12", "~x", "~2.bak"):
        make_file(tmp_path / f"{name}{suffix}")
    run_command("move_out_of_way", {"src": str(src)})
    assert (tmp_path / f"{name}~13").read_bytes() == b"newest"
    assert not (tmp_path / f"{name}~2").exists()


def test_move_out_of_way_missing_src_is_logged_not_an_error(tmp_path, run_command):
    rec = run_command("move_out_of_way", {"src": str(tmp_path / "nope")})
    assert listing(tmp_path) == []
    assert any("does not exist" in line and "nope" in line for line in rec.log)


def test_move_out_of_way_unicode_and_spaces(tmp_path, run_command):
    src = make_file(tmp_path / "rendér ☃ final" / "shot 01.exr", mtime=FIXED_MTIME)
    run_command("move_out_of_way", {"src": str(src)})
    assert listing(src.parent) == [f"shot 01.exr-{stamp(FIXED_MTIME)}"]


# --- move_to_final ----------------------------------------------------------------------


def test_move_to_final_renames_src_to_dest(tmp_path, run_command):
    src = make_file(tmp_path / "render__intermediate" / "0001.exr", b"px")
    dest = tmp_path / "render"
    rec = run_command("move_to_final", {"src": str(src.parent), "dest": str(dest)})
    assert (dest / "0001.exr").read_bytes() == b"px"
    assert listing(tmp_path) == ["render"]
    assert any(str(src.parent) in line and str(dest) in line for line in rec.log)


def test_move_to_final_moves_existing_dest_out_of_the_way(tmp_path, run_command):
    src = make_file(tmp_path / "new" / "0001.exr", b"new")
    dest = tmp_path / "final"
    make_file(dest / "0001.exr", b"old")
    os.utime(dest, (FIXED_MTIME, FIXED_MTIME))
    run_command("move_to_final", {"src": str(src.parent), "dest": str(dest)})
    old = tmp_path / f"final-{stamp(FIXED_MTIME)}"
    assert listing(tmp_path) == sorted(["final", old.name])
    assert (dest / "0001.exr").read_bytes() == b"new"
    assert (old / "0001.exr").read_bytes() == b"old"


def test_move_to_final_missing_src_leaves_dest_alone(tmp_path, run_command):
    dest = make_file(tmp_path / "final.mkv", b"keep")
    rec = run_command("move_to_final", {"src": str(tmp_path / "gone.mkv"), "dest": str(dest)})
    assert listing(tmp_path) == ["final.mkv"]
    assert dest.read_bytes() == b"keep"
    assert any("does not exist" in line for line in rec.log)


def test_move_to_final_creates_dest_folder(tmp_path, run_command):
    src = make_file(tmp_path / "a.mkv")
    dest = tmp_path / "déjà vu" / "b.mkv"
    run_command("move_to_final", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == b"data"
    assert not src.exists()


def test_move_to_final_refuses_same_src_and_dest(tmp_path, run_command):
    src = make_file(tmp_path / "a.mkv")
    with pytest.raises(InvalidSettings) as err:
        run_command("move_to_final", {"src": str(src), "dest": str(tmp_path / "." / "a.mkv")})
    assert err.value.setting == "dest"
    assert src.read_bytes() == b"data"


# --- copy_file ----------------------------------------------------------------------------


def test_copy_file_copies_content_and_mode_and_reports_output(tmp_path, run_command):
    src = make_file(tmp_path / "in" / "tex ☃.png", b"\x89PNG pixels")
    src.chmod(0o751)
    dest = tmp_path / "out" / "deeper" / "tex ☃.png"
    rec = run_command("copy_file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == b"\x89PNG pixels"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o751
    assert rec.of("output") == [[str(dest)]]
    assert listing(dest.parent) == [dest.name]  # no temporary file left behind
    assert any(str(src) in line and str(dest) in line for line in rec.log)


def test_copy_file_replaces_existing_dest(tmp_path, run_command):
    src = make_file(tmp_path / "new.txt", b"new")
    dest = make_file(tmp_path / "old.txt", b"old and longer")
    run_command("copy_file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == b"new"
    assert listing(tmp_path) == ["new.txt", "old.txt"]


def test_copy_file_missing_src_fails(tmp_path, run_command):
    with pytest.raises(CommandFailed, match="does not exist"):
        run_command("copy_file", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "out" / "x")})
    assert listing(tmp_path) == []


def test_copy_file_refuses_folder_src(tmp_path, run_command):
    (tmp_path / "dir").mkdir()
    with pytest.raises(CommandFailed, match="folder"):
        run_command("copy_file", {"src": str(tmp_path / "dir"), "dest": str(tmp_path / "x")})
    assert not (tmp_path / "x").exists()


def test_copy_file_refuses_existing_folder_as_dest(tmp_path, run_command):
    src = make_file(tmp_path / "a.txt")
    inside = make_file(tmp_path / "dir" / "inside.txt", b"keep")
    with pytest.raises(CommandFailed, match="folder"):
        run_command("copy_file", {"src": str(src), "dest": str(inside.parent)})
    assert listing(inside.parent) == ["inside.txt"]


def test_copy_file_mode_error_is_only_logged(tmp_path, run_command, monkeypatch):
    def refuse_chmod(src, dst, **kwargs):
        raise PermissionError(1, "Operation not permitted", dst)

    monkeypatch.setattr(shutil, "copymode", refuse_chmod)
    src = make_file(tmp_path / "a.txt", b"content")
    dest = tmp_path / "share" / "a.txt"
    rec = run_command("copy_file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == b"content"
    assert any("mode" in line and "not permitted" in line for line in rec.log)
    assert rec.of("output") == [[str(dest)]]


def test_copy_file_content_error_keeps_old_dest_and_cleans_up(tmp_path, run_command, monkeypatch):
    def half_copy(fd, data):
        os.write(fd, b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filecopy, "_write_all", half_copy)
    src = make_file(tmp_path / "a.txt", b"new content")
    dest = make_file(tmp_path / "out" / "a.txt", b"old")
    with pytest.raises(CommandFailed, match="No space left"):
        run_command("copy_file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == b"old"
    assert listing(dest.parent) == ["a.txt"]


def test_copy_file_does_not_freeze_other_greenlets(tmp_path, run_command, monkeypatch):
    """While a 50 MB copy runs, a ticker greenlet keeps ticking.  The copy's
    thread waits (on a real OS lock, with a generous timeout) until it has
    seen the ticker tick several times: if the copy ran in the hub's thread,
    the ticker could not tick, the wait would time out and the test fail."""
    src = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    with open(src, "wb") as f:
        for _ in range(50):
            f.write(chunk)
    ticks = [0]
    copy_started_at = []
    # A real OS lock, not gevent's: waiting on it blocks the thread for real.
    ticked_during_copy = monkey.get_original("_thread", "allocate_lock")()
    ticked_during_copy.acquire()

    def ticker():
        while True:
            ticks[0] += 1
            if copy_started_at and ticks[0] == copy_started_at[0] + 5:
                ticked_during_copy.release()
            gevent.sleep(0.001)

    real_write = filecopy._write_all
    seen = []

    def watched_write(fd, data):
        real_write(fd, data)
        if not copy_started_at:  # the first chunk, in the copying thread
            copy_started_at.append(ticks[0])
            seen.append(ticked_during_copy.acquire(timeout=10))

    monkeypatch.setattr(filecopy, "_write_all", watched_write)
    ticking = gevent.spawn(ticker)
    try:
        run_command("copy_file", {"src": str(src), "dest": str(tmp_path / "copy.bin")})
    finally:
        ticking.kill()
    assert seen == [True], "the ticker greenlet was frozen while the file was copied"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "copy.bin").read_bytes()).hexdigest() == digest


# --- remove_tree / remove_file ---------------------------------------------------------


def test_remove_tree_removes_folder_tree(tmp_path, run_command):
    make_file(tmp_path / "job" / "a" / "b" / "c.exr")
    make_file(tmp_path / "job" / "ü n i.txt")
    make_file(tmp_path / "keep.txt")
    rec = run_command("remove_tree", {"path": str(tmp_path / "job")})
    assert listing(tmp_path) == ["keep.txt"]
    assert any("Removing" in line and str(tmp_path / "job") in line for line in rec.log)


def test_remove_tree_removes_a_file(tmp_path, run_command):
    make_file(tmp_path / "single.txt")
    run_command("remove_tree", {"path": str(tmp_path / "single.txt")})
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["remove_tree", "remove_file"])
def test_removal_of_missing_path_is_fine(tmp_path, run_command, name):
    rec = run_command(name, {"path": str(tmp_path / "never existed")})
    assert any("does not exist" in line for line in rec.log)


@pytest.mark.parametrize("name", ["remove_tree", "remove_file"])
def test_removal_of_symlink_removes_only_the_link(tmp_path, run_command, name):
    target = make_file(tmp_path / "target" / "inside.txt").parent
    link = tmp_path / "link"
    link.symlink_to(target)
    run_command(name, {"path": str(link)})
    assert not os.path.lexists(link)
    assert (target / "inside.txt").read_bytes() == b"data"


def test_remove_file_removes_file(tmp_path, run_command):
    make_file(tmp_path / "a b ☃.txt")
    make_file(tmp_path / "other.txt")
    run_command("remove_file", {"path": str(tmp_path / "a b ☃.txt")})
    assert listing(tmp_path) == ["other.txt"]


def test_remove_file_refuses_folder(tmp_path, run_command):
    inside = make_file(tmp_path / "dir" / "inside.txt")
    with pytest.raises(CommandFailed, match="use remove_tree"):
        run_command("remove_file", {"path": str(inside.parent)})
    assert inside.exists()


# --- move_with_counter -----------------------------------------------------------------


@pytest.mark.parametrize(
    "dest_name, existing, expected",
    [
        ("2018_06_12-spring.mkv", ["2018_06_12_001-spring.mkv", "2018_06_12_004-spring.mkv"],
         "2018_06_12_005-spring.mkv"),
        ("2018_06_12-spring.mkv", [], "2018_06_12_001-spring.mkv"),
        ("shot.mkv", [], "shot_001.mkv"),
        ("shot.mkv", ["shot_002.mkv", "shot_009.mov", "shot_07.mkv", "shot.mkv"], "shot_003.mkv"),
        ("2018_12_31__for review.mkv", ["2018_12_31_041__for review.mkv"], "2018_12_31_042__for review.mkv"),
        ("édition spéciale.mkv", ["édition spéciale_998.mkv", "édition spéciale_999.mkv"], "édition spéciale_1000.mkv"),
    ],
)
def test_move_with_counter_numbers_one_above_highest(tmp_path, run_command, dest_name, existing, expected):
    out = tmp_path / "out"
    for name in existing:
        make_file(out / name, b"existing")
    src = make_file(tmp_path / "render.mkv", b"video")
    rec = run_command("move_with_counter", {"src": str(src), "dest": str(out / dest_name)})
    assert (out / expected).read_bytes() == b"video"
    assert listing(out) == sorted(existing + [expected])
    assert not src.exists()
    assert rec.of("output") == [[str(out / expected)]]


def test_move_with_counter_missing_src_fails(tmp_path, run_command):
    with pytest.raises(CommandFailed, match="does not exist"):
        run_command("move_with_counter", {"src": str(tmp_path / "nope.mkv"), "dest": str(tmp_path / "o.mkv")})
    assert listing(tmp_path) == []


# --- create_python_file -----------------------------------------------------------------


def test_create_python_file_creates_folder_and_logs_contents(tmp_path, run_command):
    path = tmp_path / "scripts ☃" / "setup.py"
    contents = "import bpy\nprint('héllo ☃')\n"
    rec = run_command("create_python_file", {"filepath": str(path), "contents": contents})
    assert path.read_bytes() == contents.encode("utf-8")
    assert any(line.startswith("Creating") and str(path) in line for line in rec.log)
    assert "print('héllo ☃')" in rec.log


def test_create_python_file_overwrites(tmp_path, run_command):
    path = make_file(tmp_path / "x.py", b"old = True\n")
    rec = run_command("create_python_file", {"filepath": str(path), "contents": "new = True\n"})
    assert path.read_text(encoding="utf-8") == "new = True\n"
    assert any(line.startswith("Overwriting") for line in rec.log)
    assert not any(line.startswith("Creating") for line in rec.log)


def test_create_python_file_with_empty_contents(tmp_path, run_command):
    path = tmp_path / "empty.py"
    rec = run_command("create_python_file", {"filepath": str(path), "contents": ""})
    assert path.read_bytes() == b""
    assert any(line.startswith("Creating") for line in rec.log)


def test_create_python_file_requires_py_suffix(tmp_path, run_command):
    with pytest.raises(InvalidSettings, match=r"\.py") as err:
        run_command("create_python_file", {"filepath": str(tmp_path / "x.txt"), "contents": ""})
    assert (err.value.command, err.value.setting) == ("create_python_file", "filepath")
    assert listing(tmp_path) == []


# --- settings validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, settings, setting, problem",
    [
        ("move_out_of_way", {"src": 42}, "src", "must be a string"),
        ("move_to_final", {"src": "/tmp/a"}, "dest", "is required"),
        ("move_to_final", {"src": "/tmp/a", "dest": None}, "dest", "is required"),
        ("copy_file", {"src": "/tmp/a", "dest": ["/tmp/b"]}, "dest", "must be a string"),
        ("copy_file", {"dest": "/tmp/b"}, "src", "is required"),
        ("copy_file", {"src": "/tmp/a", "dest": "/tmp/out/"}, "dest", "file name"),
        ("remove_tree", {}, "path", "is required"),
        ("remove_file", {"path": 3}, "path", "must be a string"),
        ("move_with_counter", {"src": "/tmp/a", "dest": 7}, "dest", "must be a string"),
        ("create_python_file", {"filepath": "/tmp/a.py"}, "contents", "is required"),
        ("create_python_file", {"filepath": "/tmp/a.py", "contents": 1}, "contents", "must be a string"),
        ("create_python_file", {"filepath": "/tmp/a.py", "contents": "\udc80"}, "contents", "UTF-8"),
    ],
)
def test_invalid_settings_name_command_and_setting(make_command, name, settings, setting, problem):
    with pytest.raises(InvalidSettings) as err:
        make_command(name).validate(settings)
    assert (err.value.command, err.value.setting) == (name, setting)
    assert problem in str(err.value)
    assert repr(name) in str(err.value) and repr(setting) in str(err.value)


# --- path safety ---------------------------------------------------------------------------

PATH_SETTINGS = [
    ("move_out_of_way", "src"),
    ("move_to_final", "src"),
    ("move_to_final", "dest"),
    ("copy_file", "src"),
    ("copy_file", "dest"),
    ("remove_tree", "path"),
    ("remove_file", "path"),
    ("move_with_counter", "src"),
    ("move_with_counter", "dest"),
    ("create_python_file", "filepath"),
]


def settings_with(name, key, value, tmp_path):
    """Harmless values for every path setting of ``name``, ``key`` set to ``value``."""
    harmless = {"src": str(tmp_path / "a.py"), "dest": str(tmp_path / "b.py"), "path": str(tmp_path / "c.py"),
                "filepath": str(tmp_path / "d.py"), "contents": ""}
    keys = {"move_out_of_way": ["src"], "move_to_final": ["src", "dest"], "copy_file": ["src", "dest"],
            "remove_tree": ["path"], "remove_file": ["path"], "move_with_counter": ["src", "dest"],
            "create_python_file": ["filepath", "contents"]}[name]
    settings = {k: harmless[k] for k in keys}
    settings[key] = value
    return settings


@pytest.fixture
def dangerous_paths(tmp_path):
    """Paths that name the root, the real home folder, the current folder or
    its parents, directly or through symlinks and redundant separators."""
    real_home = os.path.expanduser("~")
    (tmp_path / "to_root").symlink_to("/")
    (tmp_path / "to_home").symlink_to(real_home)
    to_root, to_home = str(tmp_path / "to_root"), str(tmp_path / "to_home")
    return [
        "/", "//", "/./", "/tmp/..", "/tmp/../", to_root, to_root + "/", to_root + "/tmp/..",
        real_home, real_home + "/", real_home + "/./", os.path.realpath(real_home), to_home,
        "~", "~/", ".", "./", "..", "../..", "x/..",
    ]


@pytest.mark.parametrize("name, key", PATH_SETTINGS)
def test_every_command_refuses_dangerous_paths(tmp_path, make_command, dangerous_paths, name, key):
    for path in dangerous_paths:
        with pytest.raises(InvalidSettings, match="refusing") as err:
            make_command(name).validate(settings_with(name, key, path, tmp_path))
        assert (err.value.command, err.value.setting) == (name, key), path


def test_root_refusal_message_is_clear(make_command):
    with pytest.raises(InvalidSettings) as err:
        make_command("remove_tree").validate({"path": "/"})
    assert str(err.value) == ("command 'remove_tree': setting 'path' refers to the filesystem root "
                              "('/' resolves to '/'); refusing to touch it")


def test_remove_tree_of_home_is_refused_and_home_survives(tmp_path, run_command, fake_home):
    for path in (str(fake_home), str(fake_home) + "/", str(fake_home / "." / ".." / fake_home.name),
                 str(fake_home.parent)):
        with pytest.raises(InvalidSettings, match="home folder") as err:
            run_command("remove_tree", {"path": path})
        assert err.value.setting == "path"
    assert (fake_home / "precious.txt").read_bytes() == b"keep me"


def test_remove_file_of_root_is_refused(run_command):
    # remove_file could not harm "/" even if the check were broken: it refuses folders.
    with pytest.raises(InvalidSettings, match="filesystem root"):
        run_command("remove_file", {"path": "/"})


def test_paths_are_rechecked_when_executed(tmp_path, make_command, fake_home):
    # Validation may run before earlier commands of the task re-point a symlink.
    (tmp_path / "target").mkdir()
    link = tmp_path / "output"
    link.symlink_to(tmp_path / "target")
    cmd = make_command("move_out_of_way")
    settings = cmd.validate({"src": str(link) + "/"})
    link.unlink()
    link.symlink_to(fake_home)
    with pytest.raises(InvalidSettings, match="home folder"):
        cmd.execute(settings)
    assert listing(fake_home) == ["precious.txt"]
    assert os.path.islink(link)


def test_tilde_is_not_expanded(tmp_path, run_command, fake_home, monkeypatch):
    # "~/x" is a folder literally named "~" under the current folder, not the home folder.
    monkeypatch.chdir(tmp_path)
    make_file(tmp_path / "~" / "x.txt")
    run_command("remove_file", {"path": "~/x.txt"})
    assert listing(tmp_path / "~") == []
    assert listing(fake_home) == ["precious.txt"]


@pytest.mark.parametrize("name, key", PATH_SETTINGS)
@pytest.mark.parametrize("empty", ["", "   "])
def test_every_command_refuses_empty_paths(tmp_path, make_command, name, key, empty):
    with pytest.raises(InvalidSettings, match="must not be empty") as err:
        make_command(name).validate(settings_with(name, key, empty, tmp_path))
    assert err.value.setting == key
