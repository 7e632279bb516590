"""Credentials only from the credentials file; warnings for config files others may
change, or read when they hold secrets (issue 15 case 11b, 11c)."""
import os
import subprocess
import sys

import pytest

from fworker import config, configsafety, credentials

SAVED_ID, SAVED_SECRET = "0123456789abcdef01234567", "saved-secret"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path, text, mode=0o600):
    path.write_text("[flamenco-worker]\n" + text)
    os.chmod(path, mode)
    return str(path)


def test_saved_credentials_win_over_a_c_files(home):
    credentials.save_credentials(SAVED_ID, SAVED_SECRET)
    extra = write(home / "extra.cfg", "worker_id = ffffffffffffffffffffffff\nworker_secret = stale\n")
    settings = config.load(extra)
    assert (settings.worker_id, settings.worker_secret) == (SAVED_ID, SAVED_SECRET)
    assert settings.sources["worker_secret"] == config.credentials_path()
    (warning,) = configsafety.warnings(settings)
    assert warning.startswith(f"{extra} holds worker_id and worker_secret: credentials belong in "
                              f"{config.credentials_path()} only")
    assert "stale" not in warning and SAVED_SECRET not in warning


def test_without_saved_credentials_a_c_files_are_used_and_warned_about(home):
    extra = write(home / "extra.cfg", "worker_id = ffffffffffffffffffffffff\nworker_secret = given\n")
    settings = config.load(extra)
    assert (settings.worker_id, settings.worker_secret) == ("f" * 24, "given")
    assert len(configsafety.warnings(settings)) == 1


def test_others_may_write_or_read_secrets(home):
    shared = write(home / "shared.cfg", "nickname = n\n", mode=0o664)
    secret = write(home / "secret.cfg", "worker_registration_secret = psk\n", mode=0o644)
    private = write(home / "private.cfg", "worker_registration_secret = psk\n", mode=0o600)
    readable = write(home / "readable.cfg", "nickname = n\n", mode=0o644)
    found = configsafety.warnings(config.load(files=[shared, secret, private, readable]))
    assert found == [
        (f"{shared} may be changed by other users (mode 0664): they could send this worker and its secrets "
        f"elsewhere; chmod go-w {shared}"),
        (f"{secret} holds worker_registration_secret and may be read by other users (mode 0644); "
        f"chmod 600 {secret}"),
    ]


def test_check_config_prints_the_warnings(home):
    extra = write(home / "extra.cfg", "worker_secret = hush-hush\nworker_id = w\n", mode=0o666)
    out = subprocess.run([sys.executable, "-m", "fworker", "-c", extra, "--check-config"], capture_output=True,
                         text=True, timeout=60, cwd=home, env=dict(os.environ, HOME=str(home)))
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and "hush-hush" not in out.stdout + out.stderr


def test_the_warnings_come_from_what_load_read_not_from_reading_the_files_again(home):
    secret = write(home / "secret.cfg", "worker_registration_secret = psk\n", mode=0o644)
    settings = config.load(files=[secret])
    assert settings.file_settings[secret] == {"worker_registration_secret"}
    with open(secret, "w") as f:  # a file no parser could read now: the warning still stands
        f.write("[unclosed\n")
    (warning,) = configsafety.warnings(settings)
    assert warning.startswith(f"{secret} holds worker_registration_secret and may be read by other users")


def test_a_secret_in_the_instances_own_section_is_warned_about_too(home):
    shared = home / "shared.cfg"
    shared.write_text("[flamenco-worker]\nnickname = n\n\n[flamenco-worker@gpu0]\nworker_registration_secret = psk\n")
    os.chmod(shared, 0o644)
    assert configsafety.warnings(config.load(files=[str(shared)])) == []  # the default instance reads none
    (warning,) = configsafety.warnings(config.load(files=[str(shared)], instance="gpu0"))
    assert f"{shared} holds worker_registration_secret" in warning


def test_a_named_instance_does_not_ask_to_remove_the_default_instances_credentials(home):
    """Every instance reads ~/.flamenco-worker.cfg, where the default instance keeps its
    credentials (never used by a named one): they are where they belong."""
    path = credentials.save_credentials(SAVED_ID, SAVED_SECRET)
    settings = config.load(instance="gpu0")
    assert settings.files == (path,) and settings.worker_id == ""
    assert configsafety.warnings(settings) == []
    os.chmod(path, 0o644)  # readable by others: still worth a warning, whichever instance reads it
    (warning,) = configsafety.warnings(settings)
    assert warning.startswith(f"{path} holds worker_secret and may be read by other users")
