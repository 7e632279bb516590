"""Bad input from every side: the Task JSON, command output, the configuration, the
Manager's answers.  A clear error; the worker stays up, or exits with a clear message
when it cannot work at all; nothing queued is lost."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import signal
import sqlite3

import pytest

from fworker.queue import UpdateQueue
from fworker.rows import decode_payload
from fworker.task import BadTask, parse_task
from tests.support.faults import FaultProxy
from tests.support.jobs import echo, exec_cmd, job, one_task_job, sleep, task
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

TASK_ID = "0123456789abcdef01234567"
GOOD = {"_id": TASK_ID, "job": "1" * 24, "manager": "2" * 24, "project": "", "user": "", "name": "t",
        "status": "active", "priority": 50, "job_priority": 50, "job_type": "debug", "task_type": "debug",
        "commands": [{"name": "echo", "settings": {"message": "hi"}}], "_etag": "x", "log": "", "activity": "",
        "parents": [], "worker": "w", "failed_by_workers": [], "metrics": {"timing": {}}}
USED = {"_id", "name", "job", "task_type", "commands"}  # the fields the worker reads
WRONG = [12, 1.5, True, None, [], {}, "x" * 100_000, [None], {"a": [1]}]


@pytest.mark.parametrize("field", sorted(GOOD))
def test_every_task_field_wrong_or_missing_is_refused_clearly_or_ignored(field):
    for value in [*WRONG, "MISSING"]:
        body = {k: v for k, v in GOOD.items() if k != field}
        if value != "MISSING":
            body[field] = value
        try:
            task = parse_task(body)
        except BadTask as ex:
            assert field in USED, f"{field}={value!r} refused although the worker does not use it: {ex}"
            message = str(ex)
            assert (repr(field) in message or "_id" in message or "commands[0]" in message), message
            assert len(message) < 500, "the message quotes no huge value"
            assert (ex.task_id == TASK_ID) == (field != "_id")
        else:
            assert task.id == TASK_ID
            if field in ("name", "job", "task_type") and value in (None, "MISSING"):
                assert getattr(task, field) == ""
            if field == "commands":
                assert value in (None, [], "MISSING") and task.commands == ()


@pytest.mark.parametrize("commands, message", [
    ([None], "commands[0] must be an object"),
    ([{"settings": {}}], "commands[0] has no command name"),
    ([{"name": 12}], "commands[0] has no command name"),
    ([{"name": "echo", "settings": [1]}], "commands[0] (echo): 'settings' must be an object"),
    ("echo", "'commands' must be a list"),
])
def test_malformed_commands_name_the_place(commands, message):
    with pytest.raises(BadTask) as info:
        parse_task(dict(GOOD, commands=commands))
    assert message in str(info.value) and info.value.task_id == TASK_ID


@pytest.mark.slow
def test_malformed_tasks_fail_clearly_and_the_worker_goes_on(manager, worker_process):
    """Rewritten by the proxy as the Manager hands them out, in this order."""
    huge = "h" * 5_000_000
    tasks = [("bad-name", [echo("x")]), ("unknown", [echo("x")]), ("null", [echo("x")]),
             ("no-id", [echo("after no id")]), ("huge", [echo(huge[:10]), {"name": "echo", "settings": {
                 "message": "big settings", "unused": huge}}])]
    ids = manager.submit_job(job(*(task(name, commands) for name, commands in tasks)))["task_ids"]
    proxy = FaultProxy(manager.url).up()
    try:
        proxy.rewrite("POST", r"^/task$", lambda t: dict(t, name=12))
        proxy.rewrite("POST", r"^/task$", lambda t: dict(t, commands=[{"name": "no-such-command"}]))
        proxy.rewrite("POST", r"^/task$", lambda t: dict(t, commands=None))
        proxy.rewrite("POST", r"^/task$", lambda t: {k: v for k, v in t.items() if k != "_id"})
        w = worker_process(proxy.url)
        wait_until(lambda: manager.task(ids[-1])["status"] == "completed", timeout=60)
        assert [manager.task(t)["status"] for t in ids] == ["failed", "failed", "completed", "completed",
                                                             "completed"]
        assert "field 'name' must be a string, not int" in manager.task(ids[0])["activity"]
        assert manager.task(ids[1])["activity"] == "unknown command 'no-such-command'"
        assert "the Manager sent a malformed task: task has no valid _id" in w.output
        assert "after no id" in manager.task_log(ids[3]), "handed over again, then run"
        assert "big settings" in manager.task_log(ids[4])
        assert w.proc.poll() is None
    finally:
        proxy.down()


@pytest.mark.slow
def test_invalid_utf8_and_megabyte_lines_from_a_child(manager, worker_process):
    code = ("import sys\n"
            "out = sys.stdout.buffer\n"
            "out.write(b'caf\\xc3\\xa9 \\xff\\xfe bad\\n')\n"
            "out.write(b'L' * 3_000_000 + b'\\n')\n"
            "out.write(b'after\\n')\n")
    task_id = manager.submit_job(one_task_job(exec_cmd(code)))["task_ids"][0]
    w = worker_process(manager.url)
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=60)
    log = manager.task_log(task_id)
    assert "café \ufffd\ufffd bad" in log
    pieces = [line.split(": ", 1)[1] for line in log.splitlines() if ": LLLL" in line]
    assert "".join(pieces) == "L" * 3_000_000 and max(map(len, pieces)) <= 65536
    assert log.index("bad") < log.index("LLLL") < log.index("after")
    assert w.proc.poll() is None


ENDPOINTS = [r"^/register-worker$", r"^/task$", r"/update$", r"^/may-i-run/", r"^/ack-status-change/",
             r"^/sign-on$", r"^/sign-off$"]


@pytest.mark.slow
def test_a_manager_answering_html_empty_garbage_and_wrong_shapes_everywhere(manager, worker_process, tmp_path):
    def submit(i):
        return manager.submit_job(job(task(f"t{i}", [sleep(0.5), echo(f"task {i}")]), name=f"j{i}"))["task_ids"]

    ids = submit(0)
    proxy = FaultProxy(manager.url).up()
    try:
        for path in ENDPOINTS:
            for kind in ("html500", "empty", "garbage", "wrongshape"):
                proxy.inject(kind, path)
        root = tmp_path / "w"
        w = worker_process(proxy.url, root=root)
        wait_until(lambda: manager.task(ids[0])["status"] == "completed", timeout=60)
        w.send(signal.SIGTERM)  # signs off through the bad answers: it cannot insist, it says so
        assert w.wait() == 0
        w2 = worker_process(proxy.url, root=root)  # credentials kept: signs on through them
        ids += submit(1)
        wait_until(lambda: manager.task(ids[1])["status"] == "completed", timeout=60)
        assert w2.proc.poll() is None
        # Retried until they work, so every fault on them was met:
        retried = (r"^/register-worker$", r"^/task$", r"/update$", r"^/sign-on$")
        assert not [r for r in proxy.rules if r.times and r.path.pattern in retried]
        assert {x.path.split("/")[1] for x in proxy.exchanges if x.fault} >= {
            "register-worker", "task", "tasks", "may-i-run", "sign-on", "sign-off"}
        assert "Traceback" not in w.output + w2.output
    finally:
        proxy.down()


def queue_rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, task_id, payload, log FROM task_updates ORDER BY id").fetchall()


@pytest.mark.slow  # five runs of the worker process
@pytest.mark.parametrize("text, message", [
    (b'output_produced_interval = "soon"\n', b"output_produced_interval = 'soon': must be a number"),
    (b"frobnicate = 1\n", b"unknown key 'frobnicate'"),
    (b"nickname = caf\xe9\n", b"not valid UTF-8"),
    (b"manager_url = not a url at all\n", b"must be an http:// or https:// URL"),
    (b"task_timeout = -5\n", b"task_timeout = '-5': must be at least 0"),
    (b"tls_verify = perhaps\n", b"tls_verify = 'perhaps': must be true or false"),
])
def test_bad_configuration_exits_2_naming_it_and_keeps_the_queue(manager, tmp_path, text, message):
    root = tmp_path / "w"
    root.mkdir()
    w = WorkerProcess(root, manager.url)
    q = UpdateQueue(str(w.queue_db))
    q.push(TASK_ID, {"log": "queued before", "activity": "ünïcode"})
    q.close()
    before = queue_rows(w.queue_db)
    key = text.split(b"=")[0].strip()
    lines = [line for line in w.config.read_bytes().splitlines(keepends=True) if not line.startswith(key + b" ")]
    w.config.write_bytes(b"".join(lines) + text)
    w.start()
    try:
        assert w.wait(timeout=30) == 2
    finally:
        w.stop()
    out = w.stderr_path.read_bytes()
    assert message in out and str(w.config).encode() in out and b"Traceback" not in out
    assert queue_rows(w.queue_db) == before
    assert decode_payload(*before[0][2:]) == {"log": "queued before", "activity": "ünïcode"}
