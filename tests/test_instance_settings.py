"""Named instances' settings and state files, the child environment, the Blender
arguments: fworker.instance, fworker.childenv, fworker.blenderargs and their parts of
fworker.config and fworker.cli."""
import os
import stat

import pytest

from fworker import childenv, cli, config, credentials, instance, statefiles
from fworker.blenderargs import BlenderArgs
from fworker.errors import AlreadyRunning, ConfigError
from fworker.queue import UpdateQueue

SHARED = """\
[flamenco-worker]
manager_url = http://shared:8080/
nickname = shared
worker_id = default-id
worker_secret = default-secret
task_update_queue_db = {root}/queue.db
log_file = {root}/worker.log
child_env = OMP_NUM_THREADS=4

[flamenco-worker@gpu0]
nickname = node-gpu0
child_env = CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=2
blender_threads = 2
blender_cycles_device = optix

[flamenco-worker@gpu1]
nickname = node-gpu1
task_update_queue_db = {root}/gpu1-own.db
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def cfg(tmp_path, home):
    path = tmp_path / "worker.cfg"
    path.write_text(SHARED.format(root=tmp_path))
    return path


def test_an_instance_section_overrides_the_shared_one_for_that_instance_only(cfg):
    gpu0 = config.load(str(cfg), instance="gpu0")
    assert gpu0.instance == "gpu0"
    assert gpu0.nickname == "node-gpu0" and gpu0.manager_url == "http://shared:8080/"
    assert gpu0.child_env == "CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=2"
    assert gpu0.sources["nickname"] == f"{cfg} [flamenco-worker@gpu0]"
    default = config.load(str(cfg))
    assert default.nickname == "shared" and default.instance == "" and default.blender_threads == 0
    assert config.load(str(cfg), instance="gpu1").child_env == "OMP_NUM_THREADS=4"


def test_an_instance_never_takes_the_shared_credentials_and_reads_its_own_file(cfg, home):
    gpu0 = config.load(str(cfg), instance="gpu0")
    assert gpu0.worker_id == "" and gpu0.worker_secret == ""  # the default instance's, not its own
    assert config.load(str(cfg)).worker_id == "default-id"
    own = statefiles.credentials_path("gpu0")
    assert own == str(home / ".flamenco-worker@gpu0.cfg")
    credentials.save_credentials("gpu0-id", "gpu0-secret", own)
    assert stat.S_IMODE(os.stat(own).st_mode) == 0o600
    gpu0 = config.load(str(cfg), instance="gpu0")
    assert (gpu0.worker_id, gpu0.worker_secret) == ("gpu0-id", "gpu0-secret")
    assert config.load(str(cfg)).worker_id == "default-id"


@pytest.mark.parametrize("section", ["flamenco-worker@", "flamenco-worker@../x", "flamenco-worker@a b"])
def test_a_bad_instance_section_is_named(tmp_path, home, section):
    path = tmp_path / "bad.cfg"
    path.write_text(f"[{section}]\nnickname = x\n")
    with pytest.raises(ConfigError, match=r"section \[" + section.replace(".", r"\.")):
        config.load(str(path), instance="gpu0")


def test_an_unknown_key_in_an_instance_section_is_named(tmp_path, home):
    path = tmp_path / "bad.cfg"
    path.write_text("[flamenco-worker@gpu0]\nno_such = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'no_such' in \[flamenco-worker@gpu0\]"):
        config.load(str(path))


@pytest.mark.parametrize("flag, env, expected", [
    ("gpu0", "cpu", "gpu0"), (None, "cpu", "cpu"), (None, "", ""), (None, None, ""), (" gpu1 ", None, "gpu1")])
def test_the_instance_comes_from_the_flag_then_the_environment(flag, env, expected):
    environ = {} if env is None else {instance.ENV_VAR: env}
    assert instance.chosen(flag, environ) == expected


@pytest.mark.parametrize("name", ["../etc", "a/b", "-x", "x" * 64, "gpu 0"])
def test_bad_instance_names_are_refused(name):
    with pytest.raises(ConfigError, match="instance name"):
        instance.chosen(name, {})


def test_every_state_file_is_the_instances_own(cfg, tmp_path, home):
    gpu0, files0 = instance.settle(config.load(str(cfg), instance="gpu0"))
    gpu1, files1 = instance.settle(config.load(str(cfg), instance="gpu1"))
    default, files = instance.settle(config.load(str(cfg)))
    assert gpu0.task_update_queue_db == str(tmp_path / "queue@gpu0.db")  # shared path: renamed
    assert gpu1.task_update_queue_db == str(tmp_path / "gpu1-own.db")  # its own section: as given
    assert default.task_update_queue_db == str(tmp_path / "queue.db")
    assert gpu0.log_file == str(tmp_path / "worker@gpu0.log")
    assert files0.credentials_v2 == str(home / ".flamenco-worker@gpu0.cfg")
    assert files0.credentials_v3 == str(home / ".flamenco-worker-v3@gpu0.cfg")
    every = [set(f.named().values()) - {"", str(tmp_path)} for f in (files0, files1, files)]
    assert not (every[0] & every[1]) and not (every[0] & every[2]) and not (every[1] & every[2])
    assert gpu0.effective_nickname() == "node-gpu0"
    assert config.load(files=[], instance="cpu").effective_nickname().endswith("@cpu")


def test_two_instances_on_one_queue_are_refused_naming_the_instance(tmp_path):
    shared = str(tmp_path / "one.db")
    first = UpdateQueue(shared)
    try:
        with pytest.raises(AlreadyRunning) as caught:
            UpdateQueue(shared)
        refused = instance.refusal(caught.value, "gpu1")
        assert "instance 'gpu1'" in str(refused) and refused.exit_code == 6
        assert shared + ".lock" in str(refused)
    finally:
        first.close()


def test_check_config_shows_instance_files_children_and_blender_arguments(cfg, capsys, monkeypatch):
    monkeypatch.setenv(instance.ENV_VAR, "gpu0")
    assert cli.main(["-c", str(cfg), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "instance: gpu0" in out
    assert "update queue: " + str(cfg.parent / "queue@gpu0.db") in out
    assert "child environment: CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=2" in out
    assert "blender render arguments: before the frame arguments: --threads 2; after '--': --cycles-device OPTIX" in out
    assert "default-secret" not in out


def test_a_bad_instance_on_the_command_line_is_exit_2(cfg, capsys):
    assert cli.main(["-c", str(cfg), "--instance", "../up", "--check-config"]) == 2
    assert "instance name '../up'" in capsys.readouterr().err


# The child environment.

def test_child_env_is_parsed_as_name_value_pairs():
    assert childenv.parse("") == {}
    assert childenv.parse("CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=8") == {
        "CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "8"}
    assert childenv.parse("HIP_VISIBLE_DEVICES= NOTE='a b=c' X=$HOME") == {
        "HIP_VISIBLE_DEVICES": "", "NOTE": "a b=c", "X": "$HOME"}  # no expansion


@pytest.mark.parametrize("text, problem", [
    ("CUDA", "is not NAME=value"), ("1CUDA=0", "not a valid environment variable name"),
    ("A-B=1", "not a valid environment variable name"), ("FWORKER_X=1", "worker's own namespace"),
    ("FLAMENCO_WORKER_INSTANCE=x", "worker's own namespace"), ("A='open", "cannot be split")])
def test_bad_child_env_is_a_configuration_error_naming_the_entry(tmp_path, home, text, problem):
    path = tmp_path / "bad.cfg"
    path.write_text(f'[flamenco-worker]\nchild_env = "{text}"\n')
    with pytest.raises(ConfigError, match=problem) as caught:
        config.load(str(path))
    assert "child_env" in str(caught.value) and str(path) in str(caught.value)


def test_a_childs_environment_has_child_env_and_nothing_of_the_workers_own():
    base = {"PATH": "/bin", "LD_LIBRARY_PATH": "/venv/lib", "FWORKER_TOKEN": "t", "FLAMENCO_WORKER_KEY": "k",
            "API_KEY": "prefix-hunter2-suffix", "CUDA_VISIBLE_DEVICES": "0,1"}
    added = childenv.parse("CUDA_VISIBLE_DEVICES=1 OMP_NUM_THREADS=8")
    env = childenv.environment(added, ["hunter2"], {"EXTRA": "1"}, base)
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "OMP_NUM_THREADS": "8", "EXTRA": "1"}


def test_child_env_and_the_blender_arguments_are_parsed_once_when_the_settings_are_checked(monkeypatch):
    from fworker import blenderargs
    from fworker.commands.base import child_environment

    settings = config.load(files=[], overrides={"child_env": "CUDA_VISIBLE_DEVICES=1", "blender_threads": "2"})
    changed = settings.replace(child_env="HIP_VISIBLE_DEVICES=0")
    assert dict(changed.child_environment) == {"HIP_VISIBLE_DEVICES": "0"}  # its own value, not the cached one

    def parsed_again(*_args):
        raise AssertionError("parsed again at a child's start")

    monkeypatch.setattr(childenv, "parse", parsed_again)
    monkeypatch.setattr(BlenderArgs, "parse", parsed_again)
    assert child_environment({"EXTRA": "1"}, settings)["CUDA_VISIBLE_DEVICES"] == "1"
    assert blenderargs.apply(["blender", "-b", "f.blend", "-f", "1"], settings)[3:5] == ["--threads", "2"]
    assert settings.child_environment is settings.child_environment
    with pytest.raises(TypeError):
        settings.child_environment["X"] = "1"  # shared by every child: read-only


def test_replace_with_a_bad_child_env_or_blender_argument_is_a_configuration_error():
    settings = config.defaults()
    with pytest.raises(ConfigError, match=r"child_env \(from override\): 'CUDA' is not NAME=value"):
        settings.replace(child_env="CUDA")
    with pytest.raises(ConfigError, match="blender_args_after"):
        settings.replace(blender_args_after="'open")


# The Blender arguments.

def args(threads=0, device="", before="", after=""):
    return BlenderArgs.parse(threads, device, before, after)


def test_blender_arguments_go_before_the_frames_and_after_the_dashes():
    stock3 = ["blender", "-b", "--enable-autoexec", "/f.blend", "--render-output", "/o/####",
              "--render-format", "PNG", "--render-frame", "1..3"]
    result = args(8, "cuda", "--debug-cycles", "--verbose-x 'a b'").apply(stock3)
    assert result == ["blender", "-b", "--enable-autoexec", "/f.blend", "--render-output", "/o/####",
                      "--render-format", "PNG", "--threads", "8", "--debug-cycles", "--render-frame", "1..3",
                      "--", "--cycles-device", "CUDA", "--verbose-x", "a b"]
    anim = args(4).apply(["blender", "-b", "f.blend", "-s", "1", "-e", "5", "-a"])
    assert anim == ["blender", "-b", "f.blend", "--threads", "4", "-s", "1", "-e", "5", "-a"]
    resumable = args(2, "HIP").apply(
        ["blender", "-b", "f.blend", "-f", "1", "--", "--cycles-resumable-num-chunks", "4"])
    assert resumable == ["blender", "-b", "f.blend", "--threads", "2", "-f", "1", "--",
                         "--cycles-resumable-num-chunks", "4", "--cycles-device", "HIP"]
    assert args().apply(["blender", "-b", "x.blend"]) == ["blender", "-b", "x.blend"]
    # No frame argument: before the dashes; a frame argument after '--' is not Blender's.
    assert args(3).apply(["b", "x.blend", "--", "-f"]) == ["b", "x.blend", "--threads", "3", "--", "-f"]


@pytest.mark.parametrize("setting, value, problem", [
    ("blender_cycles_device", "CU DA", "not a Cycles device"),
    ("blender_args_before", "-x -- y", "must not contain '--'"),
    ("blender_args_after", "'open", "cannot be split"), ("blender_threads", "-1", "at least 0")])
def test_bad_blender_arguments_are_configuration_errors(tmp_path, home, setting, value, problem):
    path = tmp_path / "bad.cfg"
    path.write_text(f'[flamenco-worker]\n{setting} = "{value}"\n')
    with pytest.raises(ConfigError, match=problem) as caught:
        config.load(str(path))
    assert setting in str(caught.value)


FAKE_BLENDER = """import json, os, sys
print("ARGV " + json.dumps(sys.argv[1:]), flush=True)
print("ENV " + json.dumps({k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "SECRETIVE")}), flush=True)
print("Saved: '/tmp/frame.png'", flush=True)
"""


def test_the_2x_blender_render_command_gets_the_instances_arguments_and_environment(
        run_command, tmp_path, monkeypatch):
    import json
    import shlex
    import sys

    script = tmp_path / "fake_blender.py"
    script.write_text(FAKE_BLENDER)
    blend = tmp_path / "scene.blend"
    blend.write_bytes(b"BLENDER")
    monkeypatch.setenv("SECRETIVE", "abc-the-registration-key")
    settings = config.load(files=[], overrides={
        "blender_threads": "3", "blender_cycles_device": "CUDA", "child_env": "CUDA_VISIBLE_DEVICES=1",
        "worker_registration_secret": "the-registration-key"})
    recorder = run_command("blender_render", {
        "blender_cmd": shlex.join([sys.executable, str(script)]), "filepath": str(blend),
        "frames": "1", "render_output": str(tmp_path / "out" / "####")}, settings)
    argv = json.loads(next(line for line in recorder.log if line.startswith("ARGV "))[5:])
    frame = argv.index("--render-frame")
    assert argv[frame - 2:frame] == ["--threads", "3"]
    assert argv[-3:] == ["--", "--cycles-device", "CUDA"]
    env = json.loads(next(line for line in recorder.log if line.startswith("ENV "))[4:])
    assert env == {"CUDA_VISIBLE_DEVICES": "1", "SECRETIVE": None}


def test_v3_credentials_of_an_instance_are_where_statefiles_names_them(home):
    from fworker.edge.v3 import credentials_file

    assert credentials_file(statefiles.credentials_path("gpu0"), "gpu0") == str(home / ".flamenco-worker-v3@gpu0.cfg")
    assert credentials_file(statefiles.credentials_path()) == str(home / ".flamenco-worker-v3.cfg")
    assert credentials_file("/tmp/x/credentials.cfg", "gpu0") == "/tmp/x/credentials-v3.cfg"  # a chosen file


def test_the_v3_blender_render_command_gets_the_instances_arguments(run_command, tmp_path):
    import json
    import sys

    script = tmp_path / "fake_blender.py"
    script.write_text(FAKE_BLENDER)
    blend = tmp_path / "scene.blend"
    blend.write_bytes(b"BLENDER")
    settings = config.load(files=[], overrides={"blender_threads": "6", "blender_args_after": "--x 1",
                                                "blender_cycles_device": "HIP"})
    # Flamenco 3's stock render: the frame arguments come last.
    recorder = run_command("blender-render", {
        "exe": sys.executable, "exeArgs": str(script), "argsBefore": [], "blendfile": str(blend),
        "args": ["--render-output", str(tmp_path / "out" / "####"), "--render-format", "PNG",
                 "--render-frame", "1"]}, settings, dialect="v3")
    argv = json.loads(next(line for line in recorder.log if line.startswith("ARGV "))[5:])
    assert argv[-10:] == ["PNG", "--threads", "6", "--render-frame", "1", "--", "--cycles-device", "HIP", "--x", "1"]
