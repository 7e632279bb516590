"""The settings table, config files, and the credentials file."""
import dataclasses
import os
import re
import stat
import subprocess
import sys
import typing

import pytest

from fworker import config, credentials, settingsdoc
from fworker.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_sample_config_matches_the_settings_table():
    with open(os.path.join(REPO, "etc", "flamenco-worker.cfg"), encoding="utf-8") as f:
        assert f.read() == settingsdoc.sample_config(), \
            "regenerate: python -m fworker.settingsdoc > etc/flamenco-worker.cfg"


def test_sample_config_with_every_line_uncommented_loads_as_the_defaults(tmp_path):
    lines = []
    for line in settingsdoc.sample_config().splitlines():
        match = re.match(r"# (\w+) =", line)
        lines.append(line[2:] if match and match.group(1) in config.BY_NAME else line)
    path = write(tmp_path / "all.cfg", "\n".join(lines))
    loaded = config.load(files=[path])
    defaults = config.load(files=[])
    for s in config.SETTINGS:
        assert getattr(loaded, s.name) == getattr(defaults, s.name), s.name
        assert loaded.sources[s.name] == path


def test_files_override_in_order_and_missing_files_are_skipped(tmp_path):
    a = write(tmp_path / "a.cfg", "[flamenco-worker]\nhttp_timeout = 5\nnickname = first\n")
    b = write(tmp_path / "b.cfg", "[flamenco-worker]\nnickname = second\njob_types = a b  c\n")
    s = config.load(files=[a, str(tmp_path / "missing.cfg"), b])
    assert s.http_timeout == 5.0 and s.sources["http_timeout"] == a
    assert s.nickname == "second" and s.sources["nickname"] == b
    assert s.task_types == ("a", "b", "c")
    assert s.files == (a, b)


def test_extra_file_comes_last_and_must_exist(tmp_path):
    a = write(tmp_path / "a.cfg", "[flamenco-worker]\nnickname = first\n")
    c = write(tmp_path / "c.cfg", "[flamenco-worker]\nnickname = extra\n")
    assert config.load(c, files=[a]).nickname == "extra"
    with pytest.raises(ConfigError, match="not found"):
        config.load(str(tmp_path / "nope.cfg"), files=[])


@pytest.mark.parametrize("text, message", [
    ("[flamenco-worker]\nhttp_timeout = soon\n", "http_timeout = 'soon': must be a number"),
    ("[flamenco-worker]\npush_log_max_lines = 1.5\n", "push_log_max_lines = '1.5': must be a whole number"),
    ("[flamenco-worker]\nhttp_timeout = -1\n", "must be at least"),
    ("[flamenco-worker]\nfrobnicate = 1\n", "unknown key 'frobnicate'"),
    ("[elsewhere]\nnickname = x\n", "unknown section [elsewhere]"),
    ("nickname = x\n", "outside section"),
    ("[flamenco-worker]\nmanager_url = ftp://x/\n", "must be an http:// or https:// URL"),
    ("[flamenco-worker]\nmanager_url = not a url\n", "must be an http:// or https:// URL"),
    ("[flamenco-worker]\nmanager_url = http://x:99999/\n", "bad port"),
    ("[flamenco-worker]\nnickname = a, b\n", "unquoted comma"),
    ("[flamenco-worker]\nnickname = a\nnickname = b\n", "cannot be parsed"),
    ("[flamenco-worker\nnickname = a\n", "cannot be parsed"),
    ("[flamenco-worker]\nbackoff_initial = 10\nbackoff_max = 1\n", "backoff_max"),
    ("[flamenco-worker]\nbackoff_max = 45\n", "backoff_max = '45': must be at most 30"),
])
def test_bad_files_name_the_file_key_and_value(tmp_path, text, message):
    path = write(tmp_path / "bad.cfg", text)
    with pytest.raises(ConfigError) as info:
        config.load(files=[path])
    assert message in str(info.value)
    assert path in str(info.value)


def test_bad_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.cfg"
    path.write_bytes("[flamenco-worker]\nnickname = caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        config.load(files=[str(path)])


def test_secret_values_are_masked_in_errors_and_listings(tmp_path):
    path = write(tmp_path / "s.cfg", '[flamenco-worker]\nworker_secret = "abc, def"\nworker_id = w\n')
    s = config.load(files=[path])
    assert s.masked()["worker_secret"] == "*****"
    bad = write(tmp_path / "b.cfg", "[flamenco-worker]\nworker_secret = abc, def\n")
    with pytest.raises(ConfigError) as info:
        config.load(files=[bad])
    assert "abc" not in str(info.value)


def test_urls_get_a_trailing_slash_and_quoted_values_keep_commas(tmp_path):
    path = write(tmp_path / "u.cfg", '[flamenco-worker]\nmanager_url = "http://m:8080/x?a=1,2"\n')
    assert config.load(files=[path]).manager_url == "http://m:8080/x?a=1,2/"
    path = write(tmp_path / "v.cfg", "[flamenco-worker]\nmanager_url = http://m:8080\n")
    assert config.load(files=[path]).manager_url == "http://m:8080/"


def test_save_credentials_keeps_other_content_and_is_private(tmp_path):
    path = tmp_path / "creds.cfg"
    path.write_text("# my comment\n[flamenco-worker]\n# about the url\nmanager_url = http://m/\n\n[other]\nx = 1\n")
    os.chmod(path, 0o644)
    credentials.save_credentials("0123456789abcdef01234567", "s3cret", str(path))
    text = path.read_text()
    assert "# my comment" in text and "# about the url" in text and "[other]" in text
    assert "worker_id = 0123456789abcdef01234567" in text and "worker_secret = s3cret" in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["creds.cfg"], "no temporary file left behind"


def test_save_credentials_creates_a_new_file_0600(tmp_path):
    path = tmp_path / "new.cfg"
    credentials.save_credentials("0123456789abcdef01234567", "s3cret", str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    s = config.load(files=[str(path)])
    assert (s.worker_id, s.worker_secret) == ("0123456789abcdef01234567", "s3cret")


def test_importing_fworker_monkey_patches_before_anything_else():
    code = ("import fworker, socket, threading, gevent.monkey;"
            "assert gevent.monkey.is_module_patched('socket');"
            "assert gevent.monkey.is_module_patched('threading');"
            "import fworker.cli;"
            "print('ok')")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_console_entry_imports_fworker_first():
    # The CLI module and __main__ must import fworker (and so patch) first.
    for rel in ("fworker/cli.py", "fworker/__main__.py"):
        with open(os.path.join(REPO, rel), encoding="utf-8") as f:
            code = [line for line in f if line.startswith(("import ", "from "))]
        first = next(line for line in code if "__future__" not in line)
        assert first.startswith("import fworker"), rel


def test_readme_documents_every_setting():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    missing = [s.name for s in config.SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"README.md does not mention: {missing}"


def run_check_config(tmp_path, text):
    cfg = tmp_path / "check.cfg"
    cfg.write_text(text)
    out = subprocess.run([sys.executable, "-m", "fworker", "-c", str(cfg), "--check-config"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
    return cfg, out


def test_check_config_prints_effective_settings_with_their_source(tmp_path):
    cfg, out = run_check_config(tmp_path, "[flamenco-worker]\nhttp_timeout = 7\nworker_secret = hush-hush\n")
    assert out.returncode == 0, out.stderr
    assert f"http_timeout = 7    # from {cfg}" in out.stdout
    assert "backoff_max = 15    # from default" in out.stdout
    assert "worker_secret = *****" in out.stdout and "hush-hush" not in out.stdout + out.stderr


def test_check_config_fails_on_a_bad_file(tmp_path):
    _cfg, out = run_check_config(tmp_path, "[flamenco-worker]\nmay_i_run_interval = often\n")
    assert out.returncode == 2
    assert "may_i_run_interval" in out.stderr and "often" in out.stderr and "Traceback" not in out.stderr


FLOAT_SETTINGS = [s.name for s in config.SETTINGS if s.type == "float"]


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_no_float_setting_accepts_nan_or_infinity(tmp_path, name, value):
    # nan compares false with everything: fetch_task_interval = nan stopped
    # fetching for good, http_timeout = inf removed the timeout.
    path = write(tmp_path / "f.cfg", f"[flamenco-worker]\n{name} = {value}\n")
    with pytest.raises(ConfigError, match=f"{name} = '{value}': must be a finite number") as info:
        config.load(files=[path])
    assert path in str(info.value)
    with pytest.raises(ConfigError, match=f"{name} = nan: must be a finite number"):
        config.load(files=[], overrides={name: float("nan")})


@pytest.mark.parametrize("port", ["65536", "99999"])
def test_check_config_refuses_a_metrics_port_the_run_would_refuse(tmp_path, port):
    _cfg, out = run_check_config(tmp_path, f"[flamenco-worker]\nmetrics_port = {port}\n")
    assert out.returncode == 2, out.stdout
    assert f"metrics_port = '{port}': must be at most 65535" in out.stderr and "Traceback" not in out.stderr


def test_the_highest_metrics_port_is_accepted(tmp_path):
    path = write(tmp_path / "m.cfg", "[flamenco-worker]\nmetrics_port = 65535\n")
    assert config.load(files=[path]).metrics_port == 65535


def test_settings_fields_match_the_table_name_by_name_and_type_by_type():
    python_type = {"str": str, "url": str, "int": int, "float": float, "bool": bool, "list": tuple[str, ...]}
    hints = typing.get_type_hints(config.Settings)
    fields = [f.name for f in dataclasses.fields(config.Settings)][:len(config.SETTINGS)]
    assert fields == [s.name for s in config.SETTINGS], "Settings' fields: one per SETTINGS entry, in order"
    for s in config.SETTINGS:
        assert hints[s.name] == python_type[s.type], s.name
        assert dataclasses.fields(config.Settings)[fields.index(s.name)].default is dataclasses.MISSING, \
            f"{s.name}: its default belongs in SETTINGS only"
    defaults = config.defaults()
    for s in config.SETTINGS:
        assert getattr(defaults, s.name) == config.convert(s, s.default, "default"), s.name
        assert isinstance(getattr(defaults, s.name), python_type[s.type] if s.type != "list" else tuple), s.name


def test_settings_cannot_be_changed_and_replace_gives_a_new_checked_value(tmp_path):
    path = write(tmp_path / "r.cfg", "[flamenco-worker]\nnickname = kept\n[pre_task_check]\nread.x = /tmp\n")
    settings = config.load(files=[path])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.task_types = ("other",)
    with pytest.raises(TypeError):
        settings.sources["nickname"] = "elsewhere"
    changed = settings.replace(task_types=["test-blender-render"], http_timeout="3")
    assert changed.task_types == ("test-blender-render",) and changed.http_timeout == 3.0
    assert changed.sources["task_types"] == "override" and changed.sources["nickname"] == path
    assert (changed.nickname, changed.files, dict(changed.pre_task_checks)) == ("kept", (path,), {"read.x": "/tmp"})
    assert settings.task_types == config.defaults().task_types and settings.sources["task_types"] == "default"
    with pytest.raises(ConfigError, match="http_timeout = nan: must be a finite number"):
        settings.replace(http_timeout=float("nan"))
    with pytest.raises(ConfigError, match=r"task_types .* is empty"):
        settings.replace(task_types=[])
    with pytest.raises(ConfigError, match=r"unknown setting.*no_such"):
        settings.replace(no_such=1)


def test_the_command_line_works_with_docstrings_stripped(tmp_path):
    # Some deployments run with optimisation on (python -OO): no docstrings.
    for args, expected in ((["--version"], "flamenco-worker "), (["--help"], "130 a second SIGINT/SIGTERM"),
                           (["--check-config"], "http_timeout = 30    # from default")):
        out = subprocess.run([sys.executable, "-OO", "-m", "fworker", *args], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
        assert out.returncode == 0, (args, out.stderr)
        assert expected in out.stdout, args
