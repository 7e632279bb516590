"""The service files in init/: the init.d script for real, the others parsed."""
import getpass
import os
import plistlib
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

import psutil
import pytest

from fworker import config
from tests.support.waiting import wait_until
from tests.support.workers import FAST

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = os.path.join(REPO, "init", "flamenco-worker.init")
UNIT = os.path.join(REPO, "init", "flamenco-worker.service")
TEMPLATE = os.path.join(REPO, "init", "flamenco-worker@.service")
PLIST = os.path.join(REPO, "init", "org.blender.flamenco-worker.plist")
WORKER_BIN = os.path.join(os.path.dirname(sys.executable), "flamenco-worker")
# What a clean stop may take at the default settings: the service files must wait longer.
CLEAN_STOP = config.BY_NAME["abort_grace_period"].default + config.BY_NAME["shutdown_flush_timeout"].default


def require_tool(name):
    """The tool's path; in CI a missing tool is a failure, elsewhere a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, and CI must run this test")
        pytest.skip(f"{name} is not installed")
    return path


# The init.d script.

def test_init_script_is_valid_posix_sh():
    result = subprocess.run(["sh", "-n", INIT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(INIT, os.X_OK)
    with open(INIT, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("#!/bin/sh\n")
    header = text.split("### BEGIN INIT INFO", 1)[1].split("### END INIT INFO", 1)[0]
    for key in ("Provides:", "Required-Start:", "Required-Stop:", "Default-Start:", "Default-Stop:",
                "Short-Description:"):
        assert f"# {key}" in header, key


def test_init_script_passes_shellcheck():
    result = subprocess.run([require_tool("shellcheck"), "--shell=sh", INIT], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def init_env(tmp_path):
    """Environment for running the init script unprivileged, all paths in tmp_path."""
    for folder in ("home", "work", "run", "log"):
        (tmp_path / folder).mkdir()
    cfg = tmp_path / "worker.cfg"
    cfg.write_text("[flamenco-worker]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWORKER_")}
    env.update(HOME=str(tmp_path / "home"), FWORKER_BIN=WORKER_BIN, FWORKER_CONFIG=str(cfg),
               FWORKER_USER=getpass.getuser(), FWORKER_WORKDIR=str(tmp_path / "work"),
               FWORKER_PIDFILE=str(tmp_path / "run" / "fw.pid"), FWORKER_LOG=str(tmp_path / "log" / "fw.log"),
               FWORKER_DEFAULTS=str(tmp_path / "no-defaults-file"), FWORKER_ARGS="-v", FWORKER_STOP_TIMEOUT="30")
    return env


def init(action, env, timeout=90):
    return subprocess.run(["sh", INIT, action], env=env, capture_output=True, text=True, timeout=timeout)


def write_worker_config(env, **values):
    lines = ["[flamenco-worker]"] + [f'{k} = "{v}"' for k, v in values.items()]
    with open(env["FWORKER_CONFIG"], "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def live(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_init_script_starts_reports_and_stops_a_real_worker(init_env, manager):
    write_worker_config(init_env, manager_url=manager.url, nickname="init-d-worker",
                        task_update_queue_db=os.path.join(init_env["FWORKER_WORKDIR"], "queue.sqlite"), **FAST)
    pidfile = init_env["FWORKER_PIDFILE"]
    started = init("start", init_env)
    pid = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        with open(pidfile) as f:
            pid = int(f.read().strip())
        assert live(pid) and WORKER_BIN in " ".join(psutil.Process(pid).cmdline())
        wait_until(lambda: any(p in ("/register-worker", "/sign-on") and s < 300
                                     for _m, p, s in manager.requests_log), timeout=30)
        wait_until(lambda: ("POST", "/task", 204) in manager.requests_log, timeout=30)
        status = init("status", init_env)
        assert status.returncode == 0 and f"pid {pid}" in status.stdout, status.stdout
        assert init("start", init_env).returncode == 0  # already running: fine, nothing new
        with open(pidfile) as f:
            assert int(f.read()) == pid

        stopped = init("stop", init_env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not live(pid)
        assert not os.path.exists(pidfile)
        assert ("POST", "/sign-off", 204) in manager.requests_log
        assert "did not stop" not in stopped.stderr  # stopped by the first SIGTERM, cleanly
        assert init("status", init_env).returncode == 3
    finally:
        if pid is not None and live(pid):
            psutil.Process(pid).kill()
    with open(init_env["FWORKER_LOG"], encoding="utf-8", errors="replace") as f:
        assert "signed off" in f.read()


def test_status_without_a_pid_file_is_3(init_env):
    result = init("status", init_env)
    assert result.returncode == 3 and "not running" in result.stdout


def test_a_dead_pid_file_is_reported_then_removed(init_env):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pidfile = init_env["FWORKER_PIDFILE"]
    with open(pidfile, "w") as f:
        f.write(f"{child.pid}\n")
    assert init("status", init_env).returncode == 1
    assert init("stop", init_env).returncode == 0
    assert not os.path.exists(pidfile)
    assert init("status", init_env).returncode == 3


def test_a_recycled_pid_is_not_mistaken_for_the_worker(init_env):
    # A live process that is not the worker must neither count as running nor be killed.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with open(init_env["FWORKER_PIDFILE"], "w") as f:
            f.write(f"{other.pid}\n")
        assert init("status", init_env).returncode == 1
        assert init("stop", init_env).returncode == 0
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("missing, code", [("FWORKER_BIN", 5), ("FWORKER_CONFIG", 6)])
def test_start_refuses_without_program_or_configuration(init_env, tmp_path, missing, code):
    init_env[missing] = str(tmp_path / "does-not-exist")
    result = init("start", init_env)
    assert result.returncode == code, result.stdout + result.stderr
    assert not os.path.exists(init_env["FWORKER_PIDFILE"])


@pytest.mark.slow
def test_a_worker_that_exits_at_once_is_a_failed_start(init_env):
    write_worker_config(init_env, no_such_key="1")  # the worker exits 2: bad configuration
    result = init("start", init_env)
    assert result.returncode == 1
    assert "failed to start" in result.stderr and "no_such_key" in result.stderr
    assert not os.path.exists(init_env["FWORKER_PIDFILE"])


def test_unknown_action_prints_usage(init_env):
    result = init("frobnicate", init_env)
    assert result.returncode == 2 and "usage:" in result.stderr


# systemd.

def parse_unit(path):
    """{section: {key: [values]}}; systemd allows repeated keys, so lists."""
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, sep, value = line.partition("=")
            assert sep and current is not None, f"not a key=value line in a section: {raw!r}"
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(text):
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", text)
    assert match, f"unexpected time span {text!r}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_unit_keys():
    unit = parse_unit(UNIT)
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > CLEAN_STOP
    assert service["User"] == "flamenco" and service["Group"] == "flamenco"
    assert service["WorkingDirectory"].startswith("/")
    assert service["ExecStart"] == "/usr/local/bin/flamenco-worker -c /etc/flamenco-worker.cfg"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("unit, verified", [(UNIT, "flamenco-worker.service"),
                                             (TEMPLATE, "flamenco-worker@gpu0.service")])
def test_systemd_analyze_verify(tmp_path, unit, verified):
    tool = require_tool("systemd-analyze")
    with open(unit, encoding="utf-8") as f:
        text = f.read()
    # verify checks that ExecStart exists: point it at the installed worker.  A template is
    # verified as one of its instances, which systemd loads from the template beside it.
    installed = tmp_path / os.path.basename(unit)
    installed.write_text(text.replace("/usr/local/bin/flamenco-worker", WORKER_BIN))
    result = subprocess.run([tool, "verify", str(tmp_path / verified)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flamenco-worker" not in result.stderr, result.stderr  # no warnings about the unit


def test_systemd_template_runs_the_instance_it_is_started_as():
    unit = parse_unit(TEMPLATE)
    plain = parse_unit(UNIT)
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["ExecStart"] == "/usr/local/bin/flamenco-worker -c /etc/flamenco-worker.cfg --instance %i"
    assert "%i" in unit["Unit"]["Description"][-1]
    assert "6" in service["RestartPreventExitStatus"].split()  # the instance runs already: no restart loop
    # Everything else as the plain unit: stopping, restarting, the user.
    for key in ("Type", "User", "Group", "WorkingDirectory", "KillMode", "KillSignal", "TimeoutStopSec",
                "Restart", "NoNewPrivileges"):
        assert service[key] == plain["Service"][key][-1], key
    assert unit["Install"] == plain["Install"]


# launchd.

def test_launchd_plist():
    with open(PLIST, "rb") as f:
        job = plistlib.load(f)
    assert job["Label"] == "org.blender.flamenco-worker"
    assert job["ProgramArguments"] == ["/usr/local/bin/flamenco-worker", "-c", "/usr/local/etc/flamenco-worker.cfg"]
    assert job["RunAtLoad"] is True and job["KeepAlive"]
    assert job["UserName"] == "flamenco"
    assert job["ExitTimeOut"] > CLEAN_STOP
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert job[key].startswith("/usr/local/var/log/")


def test_launchd_plist_after_a_sample_install_names_an_existing_program(tmp_path):
    with open(PLIST, "rb") as f:
        job = plistlib.load(f)
    job["ProgramArguments"][0] = WORKER_BIN  # as an installer would, for where the program really is
    installed = tmp_path / os.path.basename(PLIST)
    with open(installed, "wb") as f:
        plistlib.dump(job, f)
    with open(installed, "rb") as f:
        program = plistlib.load(f)["ProgramArguments"][0]
    assert os.path.isfile(program) and os.access(program, os.X_OK)


def test_launchd_plist_per_instance_as_init_readme_installs_it():
    with open(PLIST, "rb") as f:
        job = plistlib.load(f)
    assert job["EnvironmentVariables"] == {"FLAMENCO_WORKER_INSTANCE": ""}  # the default instance
    with open(os.path.join(REPO, "init", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    # The README's plutil lines, applied as plutil would.
    for key, value in re.findall(r"plutil -replace (\S+) -string (\S+) ", readme):
        *parents, last = key.split(".")
        target = job
        for parent in parents:
            target = target[parent]
        target[last] = value
    assert job["Label"] == "org.blender.flamenco-worker.gpu0"
    assert job["EnvironmentVariables"]["FLAMENCO_WORKER_INSTANCE"] == "gpu0"
    assert job["StandardOutPath"] == job["StandardErrorPath"] == "/usr/local/var/log/flamenco-worker@gpu0.log"
    plistlib.loads(plistlib.dumps(job))  # still a valid plist


def test_init_script_takes_the_instance_from_its_name_or_the_environment(init_env, tmp_path):
    named = tmp_path / "flamenco-worker@gpu1"
    named.symlink_to(INIT)
    result = subprocess.run(["sh", str(named), "status"], env=init_env, capture_output=True, text=True)
    assert result.returncode == 3 and "flamenco-worker@gpu1 is not running" in result.stdout
    init_env["FWORKER_INSTANCE"] = "cpu"
    assert "flamenco-worker@cpu is not running" in init("status", init_env).stdout
    init_env["FWORKER_INSTANCE"] = "../x"
    bad = init("status", init_env)
    assert bad.returncode == 2 and "instance name '../x'" in bad.stderr


@pytest.mark.slow
def test_init_script_starts_and_stops_an_instance(init_env, manager):
    queue = os.path.join(init_env["FWORKER_WORKDIR"], "queue.sqlite")
    write_worker_config(init_env, manager_url=manager.url, task_update_queue_db=queue, **FAST)
    init_env["FWORKER_INSTANCE"] = "gpu0"
    started = init("start", init_env)
    pid = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        with open(init_env["FWORKER_PIDFILE"]) as f:
            pid = int(f.read().strip())
        assert psutil.Process(pid).cmdline()[-3:] == ["--instance", "gpu0", "-v"]
        wait_until(lambda: ("POST", "/task", 204) in manager.requests_log, timeout=30)
        assert os.path.exists(os.path.join(init_env["FWORKER_WORKDIR"], "queue@gpu0.sqlite"))
        assert not os.path.exists(queue)
        assert os.path.exists(os.path.join(init_env["HOME"], ".flamenco-worker@gpu0.cfg"))
        assert init("status", init_env).returncode == 0
        init_env["FWORKER_INSTANCE"] = "gpu1"  # the same PID file, another instance: not its worker
        assert init("status", init_env).returncode == 1
        init_env["FWORKER_INSTANCE"] = "gpu0"
        assert init("stop", init_env).returncode == 0
        assert not live(pid)
    finally:
        if pid is not None and live(pid):
            psutil.Process(pid).kill()


STUB_WORKER = """#!/bin/sh
# Stands in for the worker: says who and where it runs, then waits for SIGTERM.
echo "running as $(id -un) in $(pwd) with $*"
trap 'echo "stub got SIGTERM"; exit 0' TERM
while :; do sleep 1; done
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches users")
def test_as_root_the_worker_runs_as_the_dedicated_user(init_env):
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run as")
    # A folder 'nobody' can reach (pytest's tmp_path is private to root).
    shared = tempfile.mkdtemp(prefix="fworker-init-")
    pid = None
    try:
        os.chmod(shared, 0o755)
        stub = os.path.join(shared, "flamenco-worker")
        with open(stub, "w") as f:
            f.write(STUB_WORKER)
        os.chmod(stub, 0o755)
        init_env.update(FWORKER_USER="nobody", FWORKER_BIN=stub, FWORKER_WORKDIR=shared,
                        FWORKER_LOG=os.path.join(shared, "log", "worker.log"))
        started = init("start", init_env)
        assert started.returncode == 0, started.stdout + started.stderr
        with open(init_env["FWORKER_PIDFILE"]) as f:
            pid = int(f.read())
        assert psutil.Process(pid).username() == "nobody"
        assert os.stat(init_env["FWORKER_PIDFILE"]).st_uid == 0  # the daemon cannot rewrite its PID file
        assert init("status", init_env).returncode == 0
        assert init("stop", init_env).returncode == 0
        assert not live(pid)
        with open(init_env["FWORKER_LOG"]) as f:
            log = f.read()
        assert f"running as nobody in {shared} with -c {init_env['FWORKER_CONFIG']} -v" in log
        assert "stub got SIGTERM" in log
    finally:
        if pid is not None and live(pid):
            psutil.Process(pid).kill()
        shutil.rmtree(shared)
