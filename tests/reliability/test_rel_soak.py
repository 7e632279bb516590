"""The soak's run (``tests.support.soakrun``), once per Manager, with every hostile
task and every fault of its own: what ``python -m tests.reliability.soak`` does a
thousand times, so that its machinery and its checks stay true.  This is also the
end-to-end proof of case 11a: a task name with a line break and a forged log line,
through the real worker process, forges no line of its log."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import pytest

from tests.reliability import soak
from tests.support import relharness, soakrun

pytestmark = pytest.mark.slow  # real worker processes, half a minute each

OWN = ("trickle", "huge", "answer-401", "answer-302", "answer-418", "malformed-task", "double-start")


@pytest.mark.parametrize("protocol", relharness.PROTOCOLS)
def test_a_soak_run_with_every_hostile_case_passes_every_check(protocol, tmp_path):
    steps = [relharness.Step(after=3 + 4 * i, kind=kind, seconds=0.2) for i, kind in enumerate(OWN)]
    steps.append(relharness.Step(after=3 + 4 * len(OWN), kind="kill", seconds=0.2))
    run = soakrun.SoakRun(5, tmp_path, steps, tasks=1, lines=40, protocol=protocol, hostile=list(soakrun.TASKS))
    try:
        result = run.execute(deadline=120)
    finally:
        run.close()
    assert result.ok, "\n".join(result.problems + result.delivery.problems)
    assert all(result.faults[kind] >= 1 for kind in OWN), result.faults
    assert run.double_starts == [soakrun.LOCKED_EXIT]
    statuses = [run.manager.task(task_id)["status"] for task_id in run.task_ids[1:]]
    assert statuses == [soakrun.EXPECTED[kind] for kind in soakrun.TASKS]
    assert len(run.rss) == 2 and all(run.rss)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "w").glob("worker-*.log"))
    assert soakrun.FORGED in logs, "the forged text is in the log, escaped inside its line"


def test_the_figures_add_up_what_the_runs_say():
    base = {"long": False, "ok": True, "seconds": 60.0, "hostile": ["nul"], "produced": 10, "delivered": 10,
            "duplicates": 2, "lost": 0, "unsendable": 0, "orphans": 0, "longest_outage": 1.5, "worker_exit": 0,
            "hub_blocked_max": 0.01, "rss": [100, 110], "double_starts": [6], "problems": [], "tasks": 2}
    results = [dict(base, protocol="v2", faults={"drop": 2}), dict(base, protocol="v3", faults={"huge": 1}),
               dict(base, protocol="v3", faults={"huge": 2}, ok=False, lost=1, rss=[100, 130])]
    text = soak.figures(results)
    assert "| updates lost | 0 | 1 |" in text
    assert "| runs that passed every check | 1 | 1 |" in text
    assert "| `huge` | 0 | 3 |" in text and "| `task: nul` | 1 | 2 |" in text
    assert "| worker RSS at the end / at work, median (max) | 1.10 (1.10) | 1.20 (1.30) |" in text


def test_right_after_a_restart_the_soak_waits_for_the_restarted_worker(tmp_path):
    """A step may end with the worker restarted a moment ago (a kill late in the run):
    the end's /metrics and RSS, and a second worker on the same queue, wait until the
    restarted one has started.  Read at once they found nothing listening (a problem
    for a run that did nothing wrong, and a new process's RSS as the end's), and the
    second worker could take the queue's lock first and make the restarted one exit 6."""
    run = soakrun.SoakRun(7, tmp_path, [], tasks=1, lines=5, protocol="v2", hostile=[])
    try:
        run._kill_and_restart("kill", 0)
        run.before_stop()
        assert run.result.problems == []
        assert run.rss and run.rss[-1] > 30 * 2**20, "the RSS of a worker at work, not of a starting interpreter"
        run._kill_and_restart("kill", 0)
        run._double_start()
        assert run.double_starts == [soakrun.LOCKED_EXIT] and run.result.problems == []
        assert run.worker.proc.poll() is None, "the restarted worker kept its queue"
    finally:
        run.close()
