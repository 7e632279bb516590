"""/health and /metrics, read from a live Stats object."""
import socket
import time

import gevent.pywsgi
import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import fworker
from fworker import config, metrics
from fworker.errors import ConfigError


@pytest.fixture
def stats():
    return metrics.Stats()


@pytest.fixture
def server(stats):
    srv = metrics.MetricsServer(stats, port=None).start()
    yield srv
    srv.stop()


def scrape(server, **kwargs):
    answer = requests.get(server.url + "metrics", timeout=5, **kwargs)
    assert answer.status_code == 200
    return answer


def families(server):
    return {f.name: f for f in text_string_to_metric_families(scrape(server).text)}


def value(fams, family, sample=None, **labels):
    for s in fams[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, sample, labels))


def test_health_is_the_json_snapshot(server, stats):
    first = requests.get(server.url + "health", timeout=5)
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
    body = first.json()
    assert body["ok"] is True and body["state"] == "starting" and body["task_id"] is None
    assert set(body) >= {"task_progress", "queue_depth", "tasks_completed", "tasks_failed", "tasks_returned",
                         "updates_sent", "updates_retried", "log_bytes_sent", "last_manager_contact"}
    stats.state, stats.task_id, stats.task_progress, stats.tasks_failed = "awake", "t-1", 42, 2
    body = requests.get(server.url + "health", timeout=5).json()
    assert (body["state"], body["task_id"], body["task_progress"], body["tasks_failed"]) == ("awake", "t-1", 42, 2)


def test_metrics_parse_and_have_the_right_types(server):
    fams = families(server)
    assert all(name.startswith("fworker_") for name in fams)
    for name in ("tasks_completed", "tasks_failed", "tasks_returned", "updates_sent", "updates_retried",
                 "log_bytes_sent"):
        assert fams[f"fworker_{name}"].type == "counter", name
    for name in ("task_running", "task_progress_percent", "queue_depth", "start_time_seconds"):
        assert fams[f"fworker_{name}"].type == "gauge", name
    # An info metric: a gauge of 1 with the version as a label, in the classic text format.
    assert value(fams, "fworker_build_info", version=fworker.__version__) == 1
    assert "fworker_last_manager_contact_timestamp_seconds" not in fams  # no contact yet
    assert scrape(server).headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_numbers_move_when_stats_change(server, stats):
    before = families(server)
    assert value(before, "fworker_tasks_completed", "fworker_tasks_completed_total") == 0
    assert value(before, "fworker_state", fworker_state="starting") == 1
    stats.state = "awake"
    stats.task_id, stats.task_progress = "t-9", 55
    stats.queue_depth = 17
    stats.tasks_completed += 3
    stats.updates_sent += 120
    stats.log_bytes_sent += 4096
    stats.last_manager_contact = contact = time.time()
    after = families(server)
    assert value(after, "fworker_tasks_completed", "fworker_tasks_completed_total") == 3
    assert value(after, "fworker_updates_sent", "fworker_updates_sent_total") == 120
    assert value(after, "fworker_log_bytes_sent", "fworker_log_bytes_sent_total") == 4096
    assert value(after, "fworker_queue_depth") == 17
    assert value(after, "fworker_task_progress_percent") == 55
    assert value(after, "fworker_task_running") == 1
    assert value(after, "fworker_state", fworker_state="awake") == 1
    assert value(after, "fworker_state", fworker_state="starting") == 0
    assert value(after, "fworker_last_manager_contact_timestamp_seconds") == pytest.approx(contact)


def test_an_unexpected_state_is_shown_not_hidden(server, stats):
    stats.state = "mystery"
    assert value(families(server), "fworker_state", fworker_state="mystery") == 1


def test_openmetrics_when_the_scraper_asks_for_it(server, stats):
    stats.tasks_returned = 4
    answer = scrape(server, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    fams = {f.name: f for f in parse_openmetrics(answer.text)}
    assert value(fams, "fworker_tasks_returned", "fworker_tasks_returned_total") == 4


def test_unknown_paths_and_methods(server):
    assert requests.get(server.url + "nope", timeout=5).status_code == 404
    assert requests.get(server.url, timeout=5).status_code == 404
    refused = requests.post(server.url + "metrics", timeout=5)
    assert refused.status_code == 405 and "GET" in refused.headers["Allow"]


def test_accepted_sockets_get_tcp_nodelay(stats, monkeypatch):
    seen = []
    original = gevent.pywsgi.WSGIServer.handle

    def recording(self, sock, address):
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return original(self, sock, address)

    monkeypatch.setattr(gevent.pywsgi.WSGIServer, "handle", recording)
    srv = metrics.MetricsServer(stats).start()
    try:
        requests.get(srv.url + "health", timeout=5).raise_for_status()
    finally:
        srv.stop()
    assert seen and all(seen)


def test_port_zero_means_off(stats):
    with pytest.raises(ValueError, match="off"):
        metrics.MetricsServer(stats, port=0)
    off = config.load(files=[])
    assert off.metrics_port == 0 and off.metrics_host == "127.0.0.1"
    assert metrics.from_settings(off, stats) is None


def test_from_settings_listens_where_configured(stats):
    with socket.socket() as probe:  # a port that is free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = metrics.from_settings(config.load(files=[], overrides={"metrics_port": port}), stats)
    try:
        assert srv.port == port and srv.url == f"http://127.0.0.1:{port}/"
        assert requests.get(srv.url + "health", timeout=5).json()["ok"] is True
    finally:
        srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "health", timeout=5)


def test_a_port_that_cannot_be_used_is_a_configuration_error(stats, server):
    taken = config.load(files=[], overrides={"metrics_port": server.port})
    with pytest.raises(ConfigError, match=f"metrics_port = {server.port}: cannot listen"):
        metrics.from_settings(taken, stats)
    # An impossible port never gets this far: loading refuses it, so --check-config does too.
    with pytest.raises(ConfigError, match="metrics_port = 70000: must be at most 65535"):
        config.load(files=[], overrides={"metrics_port": 70000})


def test_health_reads_followed_sources_and_says_why_it_is_not_ok(server, stats):
    depth, silent, age = [3], [0.5], [1.0]
    stats.follow(queue_depth=lambda: depth[0], manager_silent_seconds=lambda: silent[0],
                 oldest_update_age=lambda: age[0])
    stats.silence_limit = 10.0
    body = requests.get(server.url + "health", timeout=5).json()
    assert (body["ok"], body["problems"], body["queue_depth"]) == (True, [], 3)
    silent[0], age[0] = 11.0, 12.0
    body = requests.get(server.url + "health", timeout=5).json()
    assert body["ok"] is False and len(body["problems"]) == 2
    assert "has not answered for 11 s" in body["problems"][0] and "not draining: 3 update(s)" in body["problems"][1]
    assert value(families(server), "fworker_healthy") == 0
    with pytest.raises(ValueError, match="no attribute"):
        stats.follow(queue_dpeth=lambda: 0)
