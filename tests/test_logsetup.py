"""The worker's log destination, rotation, reopening, task log files, banner."""
import logging
import os
import re
import stat

import pytest

import fworker
from fworker import config, logsetup
from fworker.errors import ConfigError

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|DEBUG|WARNING) +[\w.]+: ")


@pytest.fixture(autouse=True)
def restore_logging():
    """configure() replaces the root logger's handlers: put pytest's back."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level, logging.getLogger("fworker").level
    yield
    if logsetup._file_handler is not None:
        logsetup._file_handler.close()
        logsetup._file_handler = None
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("fworker").setLevel(saved[2])


def settings(**overrides):
    return config.load(files=[], overrides=overrides)


def test_stderr_by_default_with_time_level_and_name(capsys):
    logsetup.configure(settings(), verbose=False, debug=False)
    logging.getLogger("fworker.something").info("life-cycle message")
    logging.getLogger("urllib3").info("library chatter")
    err = capsys.readouterr().err
    assert "life-cycle message" in err and "library chatter" not in err
    assert LINE.match(err), err
    assert " INFO     fworker.something: life-cycle message" in err
    logsetup.reopen()  # no file configured: nothing to do, and no error


def test_log_file_and_debug_level(tmp_path, capsys):
    path = tmp_path / "worker.log"
    logsetup.configure(settings(log_file=str(path)), verbose=False, debug=True)
    logging.getLogger("somelib").debug("debug detail")
    logging.getLogger("fworker.x").info("to the file")
    text = path.read_text(encoding="utf-8")
    assert "debug detail" in text and "to the file" in text
    assert all(LINE.match(line) for line in text.splitlines()), text
    assert "to the file" not in capsys.readouterr().err


def test_unopenable_log_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="log_file"):
        logsetup.configure(settings(log_file=str(tmp_path / "missing-folder" / "w.log")), False, False)


def test_size_rotation_keeps_backup_count_files(tmp_path):
    path = tmp_path / "worker.log"
    logsetup.configure(settings(log_file=str(path), log_max_bytes=2000, log_backup_count=2), True, False)
    log = logging.getLogger("fworker.rotation")
    for i in range(200):
        log.info("line %03d %s", i, "x" * 40)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["worker.log", "worker.log.1", "worker.log.2"]
    assert all(os.path.getsize(tmp_path / n) <= 2000 for n in names)
    assert "line 199" in path.read_text()
    assert "line 000" not in "".join((tmp_path / n).read_text() for n in names)


@pytest.mark.parametrize("max_bytes", [0, 10485760])
def test_reopen_after_logrotate_moved_the_file(tmp_path, max_bytes):
    path = tmp_path / "worker.log"
    logsetup.configure(settings(log_file=str(path), log_max_bytes=max_bytes), True, False)
    log = logging.getLogger("fworker.rotate")
    log.info("before the move")
    os.rename(path, tmp_path / "worker.log.1")  # what logrotate does
    logsetup.reopen()  # what SIGHUP does
    log.info("after the move")
    assert "after the move" in path.read_text()
    moved = (tmp_path / "worker.log.1").read_text()
    assert "before the move" in moved and "after the move" not in moved


def test_without_rotation_a_moved_file_is_noticed_even_without_sighup(tmp_path):
    path = tmp_path / "worker.log"
    logsetup.configure(settings(log_file=str(path), log_max_bytes=0), True, False)
    log = logging.getLogger("fworker.watch")
    log.info("first")
    os.rename(path, tmp_path / "old.log")
    log.info("second")
    assert path.read_text().count("second") == 1
    assert "second" not in (tmp_path / "old.log").read_text()


def test_configure_twice_closes_the_previous_file(tmp_path):
    logsetup.configure(settings(log_file=str(tmp_path / "a.log")), True, False)
    first = logsetup._file_handler
    logsetup.configure(settings(log_file=str(tmp_path / "b.log")), True, False)
    assert first.stream is None  # closed
    logging.getLogger("fworker.t").info("only in b")
    assert "only in b" in (tmp_path / "b.log").read_text()
    assert "only in b" not in (tmp_path / "a.log").read_text()


# Task log files.

def test_task_logs_are_off_without_a_folder(tmp_path):
    handle = logsetup.TaskLogFiles("", 5).open("t1")
    handle.write_lines(["ignored"])
    handle.close()
    assert handle.path is None
    assert list(tmp_path.iterdir()) == []


def test_task_log_appends_utf8_lines_in_a_private_folder(tmp_path):
    folder = tmp_path / "logs" / "tasks"
    files = logsetup.TaskLogFiles(str(folder), 10)
    handle = files.open("abc-123")
    handle.write_lines(["2026-01-01T00:00:00Z: first", "2026-01-01T00:00:01Z: Fra:1 · ünïcode\n"])
    handle.close()
    handle.close()  # twice is harmless
    again = files.open("abc-123")
    again.write_lines(["2026-01-01T00:00:02Z: run two"])
    again.close()
    path = folder / "task-abc-123.txt"
    assert path.read_text(encoding="utf-8") == (
        "2026-01-01T00:00:00Z: first\n2026-01-01T00:00:01Z: Fra:1 · ünïcode\n2026-01-01T00:00:02Z: run two\n")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_task_id_cannot_name_a_file_outside_the_folder(tmp_path):
    files = logsetup.TaskLogFiles(str(tmp_path / "tasks"), 10)
    handle = files.open("../../etc/passwd")
    handle.close()
    assert os.path.dirname(handle.path) == str(tmp_path / "tasks")
    assert os.listdir(tmp_path / "tasks") == ["task-.._.._etc_passwd.txt"]


def test_retention_deletes_the_oldest_task_logs_and_nothing_else(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for i in range(5):
        old = folder / f"task-old{i}.txt"
        old.write_text("x")
        os.utime(old, (1000 + i, 1000 + i))  # old0 is the oldest
    strangers = ["notes.txt", "task-x.log", "mytask-1.txt", "task-.txt.bak"]
    for name in strangers:
        (folder / name).write_text("keep me")
        os.utime(folder / name, (1, 1))  # older than every task log
    (folder / "task-dir.txt").mkdir()
    os.utime(folder / "task-dir.txt", (1, 1))
    files = logsetup.TaskLogFiles(str(folder), 3)
    files.open("new").close()
    left = sorted(os.listdir(folder))
    assert left == sorted(strangers + ["task-dir.txt", "task-new.txt", "task-old3.txt", "task-old4.txt"])


def test_reopening_an_old_task_log_keeps_it(tmp_path):
    folder = tmp_path / "tasks"
    files = logsetup.TaskLogFiles(str(folder), 2)
    for name, when in (("a", 100), ("b", 200)):
        files.open(name).close()
        os.utime(folder / f"task-{name}.txt", (when, when))
    files.open("a").close()  # a runs again: it is now the newest
    files.open("c").close()
    assert sorted(os.listdir(folder)) == ["task-a.txt", "task-c.txt"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_write_error_is_logged_once_and_does_not_raise(caplog):
    handle = logsetup.TaskLog("/dev/full")
    with caplog.at_level(logging.WARNING, logger="fworker.logsetup"):
        handle.write_lines(["x" * 10000])
        handle.write_lines(["more"])
    handle.close()
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1


# The start-up banner.

def test_banner_names_the_essentials_and_no_secret():
    s = settings(manager_url="http://farm:pa55word@manager.local:8080/", nickname="node-7",
                 task_types="blender-render debug", worker_secret="s3cr3t-worker",
                 worker_registration_secret="s3cr3t-registration", metrics_port=9101,
                 task_log_folder="/var/log/fw-tasks")
    text = logsetup.banner(s, fworker.__version__, "worker-uuid-1", "/var/lib/fw/queue.db")
    for expected in (fworker.__version__, "manager.local:8080", "worker-uuid-1", "node-7",
                     "blender-render debug", "/var/lib/fw/queue.db", "http://127.0.0.1:9101/metrics",
                     "/var/log/fw-tasks"):
        assert expected in text, (expected, text)
    for secret in ("pa55word", "s3cr3t-worker", "s3cr3t-registration"):
        assert secret not in text
    assert 5 <= len(text.splitlines()) <= 12


def test_banner_before_registration():
    text = logsetup.banner(settings(manager_url="http://m:1/"), "1.2.3", None, "q.db")
    assert "not registered yet" in text and "metrics:" in text and "off" in text
