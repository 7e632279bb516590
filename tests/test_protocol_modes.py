"""Single and test mode, the registration secret, pre-task checks and
produced-output reports.  The real worker process against the development
Manager."""
import itertools
import signal

import pytest

from fworker.devmanager import DevManager
from tests.support.client import count, iso_seconds, requests_after, worker_id
from tests.support.jobs import echo, exec_cmd, submit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


ECHO = echo("hello")


@pytest.mark.parametrize("command, code, status", [(ECHO, 0, "completed"),
                                                   (exec_cmd("raise SystemExit(1)"), 5, "failed")])
def test_single_mode_exits_after_one_task(manager, worker_process, command, code, status):
    _, task_id = submit(manager, command)
    _, second = submit(manager, ECHO, name="second")
    w = worker_process(manager.url, args=["--single"])
    assert w.wait(timeout=30) == code
    assert manager.task(task_id)["status"] == status
    assert manager.task(second)["status"] == "queued", "one task only"
    assert ("POST", "/sign-off", 204) in manager.requests_log


def test_test_mode_acks_testing_and_takes_only_test_renders(manager, worker_process):
    _, debug_task = submit(manager, ECHO)
    _, test_task = submit(manager, ECHO, task_type="test-blender-render", name="test")
    w = worker_process(manager.url, args=["--test"])
    wid = worker_id(manager)
    wait_until(lambda: manager.task(test_task)["status"] == "completed", timeout=30)
    assert (wid, "testing") in manager.acks
    assert manager.worker(wid)["supported_task_types"] == ["test-blender-render"]
    wait_until(lambda: count(manager, "POST", "/task") >= 3)
    assert manager.task(debug_task)["status"] == "queued"
    assert manager.worker(wid)["status"] == "testing"
    w.send(signal.SIGTERM)
    assert w.wait() == 0


SHARED = "open-sesame-0123456789-abcdefghijk"  # 32+ bytes, as HS256 keys should be


@pytest.mark.parametrize("secret, refusal", [(SHARED, None),
                                             (SHARED.upper(), "is not the one the Manager has"),
                                             ("", "requires a registration secret")],
                         ids=["right", "wrong", "missing"])
def test_registration_secret(tmp_path, worker_process, secret, refusal):
    m = DevManager(str(tmp_path / "m.sqlite"), registration_secret=SHARED).start()
    try:
        w = worker_process(m.url, {"worker_registration_secret": secret} if secret else {})
        if refusal is None:
            wait_until(lambda: ("POST", "/task", 204) in m.requests_log, timeout=20)
            assert len(m.workers()) == 1
            w.send(signal.SIGTERM)
            assert w.wait() == 0
        else:
            assert w.wait(timeout=20) == 3
            assert refusal in w.output and "refused to register" in w.output
            assert "Traceback" not in w.output
            assert m.workers() == [] and ("POST", "/register-worker", 403) in m.requests_log
        assert SHARED not in w.output and SHARED.upper() not in w.output, "a secret is never logged"
    finally:
        m.stop()


def start_with_checks(worker_process, tmp_path, manager, checks, **settings):
    root = tmp_path / "w"
    (root / "home").mkdir(parents=True)
    lines = "\n".join(f"{key} = {path}" for key, path in checks.items())
    (root / "home" / ".flamenco-worker.cfg").write_text(f"[pre_task_check]\n{lines}\n")
    return worker_process(manager.url, {"pre_task_check_interval": "0.2", **settings}, root=root)


def test_failing_pre_task_check_means_error_until_it_passes(manager, worker_process, tmp_path):
    out = tmp_path / "renders"  # missing for now (tests run as root: permissions prove nothing)
    w = start_with_checks(worker_process, tmp_path, manager, {"write.renders": out})
    wid = worker_id(manager)
    wait_until(lambda: (wid, "error") in manager.acks, timeout=20)
    error_ack = ("POST", "/ack-status-change/error", 204)
    # In error the worker still talks to the Manager, but asks for no work.
    wait_until(lambda: len(requests_after(manager, error_ack, "GET", "/status-change")) >= 3)
    assert not requests_after(manager, error_ack, "POST", "/task")
    assert f"{out} does not exist" in w.output
    out.mkdir()
    wait_until(lambda: (wid, "awake") in manager.acks[manager.acks.index((wid, "error")):], timeout=10)
    _, task_id = submit(manager, ECHO)
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=20)
    assert manager.worker(wid)["status"] == "awake"


def test_a_worker_in_error_still_hears_a_shutdown_request(manager, worker_process, tmp_path):
    w = start_with_checks(worker_process, tmp_path, manager, {"read.share": tmp_path / "no-share"},
                          pre_task_check_interval="60")
    wid = worker_id(manager)
    wait_until(lambda: (wid, "error") in manager.acks, timeout=20)
    manager.request_status(wid, "shutdown")
    assert w.wait(timeout=20) == 0
    assert ("POST", "/sign-off", 204) in manager.requests_log
    assert (wid, "shutdown") not in manager.acks


def test_output_produced_is_throttled_and_keeps_the_newest(manager, worker_process, tmp_path):
    src = tmp_path / "frame.png"
    src.write_bytes(b"\x89PNG not really")
    dests = [str(tmp_path / "out" / f"frame_{i:03d}.png") for i in range(24)]
    commands = []
    for dest in dests:
        commands += [{"name": "copy_file", "settings": {"src": str(src), "dest": dest}},
                     {"name": "sleep", "settings": {"time_in_seconds": 0.04}}]
    _, task_id = submit(manager, *commands)
    interval = 0.3
    w = worker_process(manager.url, {"output_produced_interval": str(interval)})
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
    # The newest path is reported soon after, while the worker keeps running.
    wait_until(lambda: manager.output_produced() and manager.output_produced()[-1][-1] == dests[-1])
    assert w.proc.poll() is None
    calls = manager.output_produced()
    assert 2 <= len(calls) < len(dests)
    assert all(0 < len(paths) <= 10 and set(paths) <= set(dests) for paths in calls)
    rows = manager.store.outputs()
    gaps = [iso_seconds(b["received"]) - iso_seconds(a["received"]) for a, b in itertools.pairwise(rows)]
    assert min(gaps) >= interval * 0.8, gaps
