"""fworker.statefiles names every file of a worker's state; fworker.statelock
keeps a second process away from them."""
import os
import stat
import subprocess

import pytest

from fworker import config, instance, leftovers, statefiles
from fworker.errors import AlreadyRunning, ConfigError
from fworker.statefiles import DEFAULT_INSTANCE, Protocol, StateFiles
from fworker.statelock import StateLock


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def settings(**values):
    return config.load(files=[], overrides=values)


def test_the_default_instance_keeps_the_names_existing_installations_use(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = StateFiles.of(settings())
    assert files.instance == DEFAULT_INSTANCE
    assert files.credentials_v2 == str(home / ".flamenco-worker.cfg") == config.credentials_path()
    assert files.credentials(Protocol.V2) == files.credentials_v2
    assert files.credentials(Protocol.V3) == str(home / ".flamenco-worker-v3.cfg")
    assert files.queue == str(tmp_path / "flamenco-worker.db")
    assert files.lock == str(tmp_path / "flamenco-worker.db.lock")
    assert files.spool_dir == str(tmp_path)
    assert files.owner_mark == files.queue == leftovers.owner_mark("flamenco-worker.db")
    assert (files.log_file, files.task_log_folder) == ("", "")
    assert config.default_files() == [str(tmp_path / "flamenco-worker.cfg"), files.credentials_v2]


def test_the_v3_credentials_go_with_the_2x_file_of_the_instance_or_beside_a_programs_file(home, tmp_path):
    for name in (DEFAULT_INSTANCE, "gpu0"):
        v2 = statefiles.credentials_path(name, Protocol.V2)
        assert statefiles.credentials_beside(v2, name) == StateFiles.of(settings(), name).credentials_v3
    own = str(tmp_path / "w" / "credentials.cfg")
    assert statefiles.credentials_beside(own, "gpu0") == str(tmp_path / "w" / "credentials-v3.cfg")
    elsewhere = str(tmp_path / ".flamenco-worker.cfg")  # the home folder's name, not in the home folder
    assert statefiles.credentials_beside(elsewhere) == str(tmp_path / ".flamenco-worker-v3.cfg")


def test_the_settings_table_and_the_names_agree_on_the_defaults():
    assert config.BY_NAME["task_update_queue_db"].default == statefiles.QUEUE_FILE
    assert config.BY_NAME["log_file"].default == statefiles.LOG_FILE
    assert config.BY_NAME["task_log_folder"].default == statefiles.TASK_LOG_FOLDER


def test_a_named_instance_gets_its_own_files_unless_its_own_section_names_one(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "worker.cfg"
    cfg.write_text("[flamenco-worker]\nlog_file = w.log\n\n"
                   "[flamenco-worker@gpu1]\ntask_update_queue_db = flamenco-worker.db\n"
                   "task_log_folder = /srv/fw/tasks\n")
    gpu0, files0 = instance.settle(config.load(str(cfg), instance="gpu0"))
    assert files0.credentials_v2 == str(home / ".flamenco-worker@gpu0.cfg")
    assert files0.credentials_v3 == str(home / ".flamenco-worker-v3@gpu0.cfg")
    assert files0.queue == gpu0.task_update_queue_db == str(tmp_path / "flamenco-worker@gpu0.db")  # default
    assert files0.lock == str(tmp_path / "flamenco-worker@gpu0.db.lock")
    assert files0.log_file == gpu0.log_file == str(tmp_path / "w@gpu0.log")  # shared section
    default = StateFiles.of(settings())
    assert not set(files0.paths()) & set(default.paths()), "two instances share no file"
    # A path in the instance's own section is used as written, even the default's name.
    gpu1, files1 = instance.settle(config.load(str(cfg), instance="gpu1"))
    assert files1.queue == gpu1.task_update_queue_db == str(tmp_path / "flamenco-worker.db") == default.queue
    assert files1.task_log_folder == "/srv/fw/tasks" and files1.log_file == str(tmp_path / "w@gpu1.log")
    # The files of settled settings are the same again: nothing is renamed twice.
    assert StateFiles.of(gpu0, "gpu0") == files0 and StateFiles.of(gpu1, "gpu1") == files1


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "-x", "x" * 64, "gpu 0", "é"])
def test_an_instance_name_that_could_name_another_path_is_refused(name):
    with pytest.raises(ConfigError, match="instance name"):
        statefiles.for_instance("/x/queue.db", name)


def test_paths_lists_the_queue_side_files_and_leaves_out_what_is_off(home, tmp_path):
    files = StateFiles.of(settings(task_update_queue_db=str(tmp_path / "q.db")))
    assert files.paths() == [files.credentials_v2, files.credentials_v3, str(tmp_path / "q.db"),
                             *(str(tmp_path / f"q.db{s}") for s in ("-wal", "-shm", "-journal")),
                             str(tmp_path / "q.db.lock")]
    assert set(files.named()) >= {"update queue", "lock", "credentials (Manager 3.x)", "log file"}


def test_the_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    path = tmp_path / "sub" / "q.db.lock"
    first = StateLock(str(path)).acquire()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(AlreadyRunning) as refused:
        StateLock(str(path)).acquire()
    assert refused.value.holder_pid == os.getpid() and refused.value.exit_code == 6
    assert str(path) in str(refused.value) and f"process {os.getpid()}" in str(refused.value)
    first.release()
    StateLock(str(path)).acquire().release()
    assert path.exists(), "the lock file stays: deleting it would let two processes lock two files"


def test_a_child_started_while_the_lock_is_held_does_not_keep_it(tmp_path):
    path = str(tmp_path / "q.db.lock")
    lock = StateLock(path).acquire()
    child = subprocess.Popen(["sleep", "30"], close_fds=False)  # even when told to inherit descriptors
    try:
        lock.release()
        StateLock(path).acquire().release()
    finally:
        child.kill()
        child.wait()


def test_a_holder_that_has_not_written_its_pid_yet_is_named_as_unknown(tmp_path):
    path = tmp_path / "q.db.lock"
    lock = StateLock(str(path)).acquire()
    path.write_text("")
    with pytest.raises(AlreadyRunning, match=r"PID unknown"):
        StateLock(str(path)).acquire()
    lock.release()
