"""Flamenco 3's file commands (move-directory, copy-file, make-directory) on real
files, and the copy that stops with its task (issue 15 case 3), which 2.x's copy_file
shares."""
import os
import time

import gevent
import gevent.monkey
import pytest

from fworker import config
from fworker.commands import base, filecopy, files
from fworker.errors import CommandFailed, InvalidSettings
from tests.support.waiting import wait_until

FAST = config.defaults().replace(activity_interval=0.0, abort_grace_period=5.0)


@pytest.fixture
def run3(run_command):
    def run(name, settings, settings_obj=FAST):
        return run_command(name, settings, settings_obj, dialect="v3")
    return run


def stamp_of(path):
    return time.strftime(files.MTIME_FORMAT, time.localtime(os.lstat(path).st_mtime))


def test_the_commands_are_v3_only():
    import fworker.commands  # noqa: F401  (registration)

    for name in ("move-directory", "copy-file", "make-directory"):
        assert base.lookup(name, "v3").dialects == ("v3",)
        with pytest.raises(Exception, match="unknown command"):
            base.lookup(name, "v2")


# --- make-directory ---------------------------------------------------------------------


def test_make_directory_with_parents_and_again(run3, recorder, tmp_path):
    path = tmp_path / "a ü" / "b" / "c"
    run3("make-directory", {"path": str(path)})
    assert path.is_dir()
    run3("make-directory", {"path": str(path)})  # already there: fine, as mkdir -p
    assert path.is_dir()
    assert recorder.log == [f"make-directory: creating directory {str(path)!r}"] * 2


def test_make_directory_over_a_file_fails(run3, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CommandFailed) as err:
        run3("make-directory", {"path": str(tmp_path / "f")})
    assert "make-directory failed" in str(err.value) and "exists" in str(err.value)


# --- move-directory ---------------------------------------------------------------------


def test_move_directory(run3, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "frame.png").write_bytes(b"png")
    run3("move-directory", {"src": str(tmp_path / "src"), "dest": str(tmp_path / "dest")})
    assert not (tmp_path / "src").exists()
    assert (tmp_path / "dest" / "frame.png").read_bytes() == b"png"


def test_move_directory_moves_an_existing_dest_aside_by_its_mtime(run3, recorder, tmp_path):
    dest = tmp_path / "final"
    for n in range(3):  # the third run finds dest-<stamp> and dest-<stamp>-001 taken
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "n").write_text(str(n))
        if dest.exists():
            os.utime(dest, (1_700_000_000, 1_700_000_000))  # the same stamp every time
        run3("move-directory", {"src": str(tmp_path / "src"), "dest": str(dest)})
    stamp = time.strftime(files.MTIME_FORMAT, time.localtime(1_700_000_000))
    assert sorted(os.listdir(tmp_path)) == ["final", f"final-{stamp}", f"final-{stamp}-001"]
    assert (dest / "n").read_text() == "2"
    assert (tmp_path / f"final-{stamp}" / "n").read_text() == "0"
    assert (tmp_path / f"final-{stamp}-001" / "n").read_text() == "1"
    assert f"move-directory: moving {str(tmp_path / 'src')!r} to {str(dest)!r}" in recorder.log


def test_move_directory_without_src_fails_and_touches_nothing(run3, tmp_path):
    (tmp_path / "dest").mkdir()
    with pytest.raises(CommandFailed) as err:
        run3("move-directory", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "dest")})
    assert "does not exist" in str(err.value) and "move-directory" in str(err.value)
    assert os.listdir(tmp_path) == ["dest"]


def test_move_directory_does_not_make_dests_folder(run3, tmp_path):
    # As Flamenco 3's worker: a plain rename, which needs dest's folder to exist.
    (tmp_path / "src").mkdir()
    with pytest.raises(CommandFailed) as err:
        run3("move-directory", {"src": str(tmp_path / "src"), "dest": str(tmp_path / "no" / "dest")})
    assert "No such file or directory" in str(err.value)
    assert (tmp_path / "src").is_dir()


def test_move_directory_across_file_systems_is_refused(run3, tmp_path):
    other = "/dev/shm"
    if not os.path.isdir(other) or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system other than the temporary folder's")
    src = tmp_path / "src"
    src.mkdir()
    dest = os.path.join(other, f"fworker-test-{os.getpid()}-{time.monotonic_ns()}")
    with pytest.raises(CommandFailed) as err:
        run3("move-directory", {"src": str(src), "dest": dest})
    assert "different file systems" in str(err.value)
    assert src.is_dir() and not os.path.exists(dest)


# --- copy-file --------------------------------------------------------------------------


def test_copy_file_in_many_chunks_with_parents(run3, recorder, tmp_path):
    src = tmp_path / "in.bin"
    data = os.urandom(filecopy.CHUNK * 2 + 12345)
    src.write_bytes(data)
    dest = tmp_path / "new ü" / "deeper" / "out.bin"
    run3("copy-file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == data
    assert recorder.log[-1] == f"copy-file: copied {str(src)!r} to {str(dest)!r}"
    assert recorder.of("progress")[-1] == 100


def test_copy_file_follows_a_symlinked_source(run3, tmp_path):
    (tmp_path / "real").write_text("content")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    run3("copy-file", {"src": str(tmp_path / "link"), "dest": str(tmp_path / "copy")})
    assert (tmp_path / "copy").read_text() == "content" and not (tmp_path / "copy").is_symlink()


@pytest.mark.parametrize("existing", ["file", "dangling symlink", "folder"])
def test_copy_file_never_overwrites(run3, tmp_path, existing):
    (tmp_path / "src").write_text("new")
    dest = tmp_path / "dest"
    if existing == "file":
        dest.write_text("old")
    elif existing == "folder":
        dest.mkdir()
    else:
        dest.symlink_to(tmp_path / "nowhere")
    with pytest.raises(CommandFailed) as err:
        run3("copy-file", {"src": str(tmp_path / "src"), "dest": str(dest)})
    assert "already exists" in str(err.value) and "nothing copied" in str(err.value)
    assert not (tmp_path / "nowhere").exists()
    if existing == "file":
        assert dest.read_text() == "old"


def test_copy_file_missing_or_folder_source(run3, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run3("copy-file", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "out" / "x")})
    assert "does not exist" in str(err.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(CommandFailed) as err:
        run3("copy-file", {"src": str(tmp_path / "folder"), "dest": str(tmp_path / "out" / "x")})
    assert "is a folder" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["folder"]  # no parent folder made for nothing


# The copy commands of both dialects: (name, dialect).
COPIES = [("copy-file", "v3"), ("copy_file", "v2")]


@pytest.mark.parametrize("name, dialect", COPIES)
@pytest.mark.parametrize("kind", ["FIFO", "device"])
def test_copy_file_refuses_fifos_and_devices_without_blocking(run_command, tmp_path, kind, name, dialect):
    if kind == "FIFO":
        src = str(tmp_path / "fifo")
        os.mkfifo(src)  # no writer: opening it to read would block
    else:
        src = "/dev/urandom"  # endless: a copy would fill the disk
    # The timeout: a blocked open or an endless copy fails here.
    with gevent.Timeout(30), pytest.raises(CommandFailed) as err:
        run_command(name, {"src": src, "dest": str(tmp_path / "out" / "copy")}, FAST, dialect=dialect)
    assert f"is a {kind}" in str(err.value) and "only regular files" in str(err.value)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("kind", ["FIFO", "device"])
def test_copy_content_checks_the_opened_file_itself(tmp_path, kind):
    # The check on the open file: what the path names may change after a stat().
    src = str(tmp_path / "fifo") if kind == "FIFO" else "/dev/zero"
    if kind == "FIFO":
        os.mkfifo(src)
    with gevent.Timeout(30), pytest.raises(filecopy.NotARegularFile, match=f"is a {kind}"):
        filecopy.copy_content(src, str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("settings, setting", [
    ({"dest": "/tmp/x"}, "src"),
    ({"src": "/tmp/x"}, "dest"),
    ({"src": "", "dest": "/tmp/x"}, "src"),
    ({"src": "relative/file", "dest": "/tmp/x"}, "src"),
    ({"src": "/tmp/x", "dest": "relative/file"}, "dest"),
    ({"src": "/tmp/x", "dest": "/tmp/out/"}, "dest"),
    ({"src": "/tmp/x", "dest": "/tmp/x"}, "dest"),
    ({"src": 3, "dest": "/tmp/x"}, "src"),
    ({"src": "/", "dest": "/tmp/x"}, "src"),
])
def test_copy_file_validation(run3, settings, setting):
    with pytest.raises(InvalidSettings) as err:
        run3("copy-file", settings)
    assert (err.value.command, err.value.setting) == ("copy-file", setting)


@pytest.mark.parametrize("name, settings, setting", [
    ("move-directory", {"dest": "/tmp/x"}, "src"),
    ("move-directory", {"src": "/tmp/x"}, "dest"),
    ("move-directory", {"src": "/tmp/x", "dest": "/tmp/x/"}, "dest"),
    ("move-directory", {"src": "/tmp/x", "dest": os.path.expanduser("~")}, "dest"),
    ("move-directory", {"src": "/", "dest": "/tmp/x"}, "src"),
    ("make-directory", {}, "path"),
    ("make-directory", {"path": ""}, "path"),
    ("make-directory", {"path": ["/tmp"]}, "path"),
    ("make-directory", {"path": "/tmp/a\0b"}, "path"),
])
def test_validation_names_command_and_parameter(run3, name, settings, setting):
    with pytest.raises(InvalidSettings) as err:
        run3(name, settings)
    assert (err.value.command, err.value.setting) == (name, setting)
    assert name in str(err.value) and setting in str(err.value)


# --- stopping a copy --------------------------------------------------------------------


class SlowShare:
    """The copy's chunk writer, slowed down as a network share would be, and
    watched: how many writes are under way and when the last one ended."""

    def __init__(self, real):
        self.real = real
        self.in_flight = 0
        self.writes = 0
        self.last_end = 0.0

    def __call__(self, fd, data):
        self.in_flight += 1
        try:
            gevent.monkey.get_original("time", "sleep")(0.02)  # a real thread: block it
            self.real(fd, data)
        finally:
            self.writes += 1
            self.last_end = time.monotonic()
            self.in_flight -= 1


@pytest.mark.parametrize("name, dialect", COPIES)
def test_stopping_the_task_stops_the_copy_and_removes_the_partial_file(
        run_command, recorder, tmp_path, monkeypatch, name, dialect):
    monkeypatch.setattr(filecopy, "CHUNK", 64 * 1024)
    share = SlowShare(filecopy._write_all)
    monkeypatch.setattr(filecopy, "_write_all", share)
    src, dest = tmp_path / "big.bin", tmp_path / "out" / "big.bin"
    src.write_bytes(os.urandom(256 * 64 * 1024))  # 256 chunks: ~5 s at 20 ms each
    runner = gevent.spawn(run_command, name, {"src": str(src), "dest": str(dest)}, FAST, dialect=dialect)
    wait_until(lambda: share.writes >= 3, 30, "the copy to be under way")
    runner.kill(block=True, timeout=30)
    stopped = time.monotonic()
    assert runner.dead and isinstance(runner.value, gevent.GreenletExit)
    assert share.in_flight == 0 and share.last_end <= stopped  # nothing writes after the task ended
    assert share.writes < 256
    assert not dest.exists() and os.listdir(tmp_path / "out") == []
    assert not any("copied" in line for line in recorder.log) and recorder.of("output") == []


def test_a_failing_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    calls = []

    def fail_on_third(fd, data):
        calls.append(len(data))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        os.write(fd, data)

    monkeypatch.setattr(filecopy, "CHUNK", 1024)
    monkeypatch.setattr(filecopy, "_write_all", fail_on_third)
    (tmp_path / "src").write_bytes(b"x" * 10_000)
    with pytest.raises(OSError, match="No space left"):
        filecopy.copy_content(str(tmp_path / "src"), str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()
