"""/health and /metrics read live state (issue 15 case 10): the queue's length from
the queue, the Manager's last answer from every answered request (an idle worker's
204s and status polls included), and ok false while the Manager stays silent or the
queue does not drain.  A real worker process; the Manager goes away and comes back
through the fault proxy (connections refused meanwhile, as with a stopped Manager)."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import pytest
import requests

from tests.support.faults import FaultProxy
from tests.support.jobs import counter, submit
from tests.support.waiting import wait_until
from tests.support.workers import free_port

pytestmark = pytest.mark.slow  # a real worker process, a Manager outage of seconds


@pytest.fixture
def proxy(manager):
    p = FaultProxy(manager.url).up()
    yield p
    p.down()


def health(port):
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()


def test_health_follows_the_manager_and_the_queue(manager, proxy, worker_process, tmp_path):
    port = free_port()
    # http_timeout 1 s: the silence limit is 2 * (0.3 + 1) = 2.6 s with these settings.
    w = worker_process(proxy.url, {"metrics_port": str(port), "http_timeout": "1"})
    first = wait_until(lambda: _try(health, port), 30, what="the worker's /health")
    first = wait_until(lambda: (h := health(port))["last_manager_contact"] and h, 30, what="a first answer")
    assert first["ok"] is True and first["problems"] == []
    # Idle: only 204s and no update delivered, yet the contact moves.
    wait_until(lambda: health(port)["last_manager_contact"] > first["last_manager_contact"], 10,
               what="the idle worker's contact time to move")

    stop = tmp_path / "stop"
    _, task_id = submit(manager, counter(100_000, stop))
    wait_until(lambda: manager.task(task_id)["status"] == "active", 30, what="the task to run")
    proxy.down()
    down = wait_until(lambda: (h := health(port))["queue_depth"] >= 20 and not h["ok"] and h, 30,
                      what=lambda: f"20 queued updates and ok false, got {health(port)}")
    assert any("has not answered" in p for p in down["problems"]), down["problems"]
    contact = down["last_manager_contact"]
    wait_until(lambda: any("not draining" in p for p in health(port)["problems"]), 30,
               what="the queue's oldest update to be reported")
    stop.write_text("")
    proxy.up()
    back = wait_until(lambda: (h := health(port))["ok"] and h["queue_depth"] == 0 and h, 60,
                      what=lambda: f"ok again with an empty queue, got {health(port)}")
    assert back["last_manager_contact"] > contact and back["oldest_update_age"] is None
    wait_until(lambda: manager.task(task_id)["status"] == "completed", 30, what="the task to complete")
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "fworker_healthy 1.0" in text and "fworker_queue_depth 0.0" in text
    assert w.proc.poll() is None


def _try(fn, *args):
    try:
        return fn(*args)
    except requests.ConnectionError:
        return None
