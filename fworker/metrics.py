"""What the worker is doing, for operators: ``/health`` (JSON) and
``/metrics`` (Prometheus text format), off unless ``metrics_port`` is set.

The worker updates the plain attributes of one ``Stats`` object as it goes;
nothing here holds its own counters, so a scrape always shows the same
numbers as ``/health``.  The Prometheus text is produced by the official
``prometheus_client`` from a private registry (the global one would also
carry whatever else the process registered, and tests would share it), with
a collector that reads ``Stats`` on each scrape.  The HTTP server is gevent's
pywsgi, not prometheus_client's thread-based one.
"""
from __future__ import annotations

import json
import logging
import socket
import time
import typing

import gevent.pool
import gevent.pywsgi
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, StateSetMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from fworker.errors import ConfigError

if typing.TYPE_CHECKING:
    from fworker.config import Settings
from fworker.states import State
from fworker.version import __version__

log = logging.getLogger(__name__)

# A scrape or health check holds a connection only briefly; this bounds what
# a misbehaving client can make the worker keep open.
MAX_CONNECTIONS = 20

COUNTERS = (
    ("tasks_completed", "Tasks this worker completed."),
    ("tasks_failed", "Tasks this worker reported as failed."),
    ("tasks_returned", "Tasks given back to the Manager without a verdict (aborted, shutdown)."),
    ("updates_sent", "Task updates the Manager accepted."),
    ("updates_retried", "Attempts to send a task update that will be retried."),
    ("log_bytes_sent", "Bytes of task log sent to the Manager."),
)


class Stats:
    """The worker's live numbers.  The worker assigns and increments the
    attributes directly; what has a source of its own (the queue's length,
    the time of the Manager's last answer) is read from it on every
    ``snapshot()`` instead (``follow``), so ``/health`` never shows a number
    that was true at the last delivery only.  ``last_manager_contact`` is
    ``time.time()`` of the Manager's last answer below 500, or None before the
    first."""

    def __init__(self) -> None:
        self.state: str = State.STARTING.value
        self.task_id: str | None = None
        self.task_progress: int = 0
        self.queue_depth: int = 0
        self.oldest_update_age: float | None = None  # seconds the oldest queued update has waited
        self.tasks_completed: int = 0
        self.tasks_failed: int = 0
        self.tasks_returned: int = 0
        self.updates_sent: int = 0
        self.updates_retried: int = 0
        self.log_bytes_sent: int = 0
        self.last_manager_contact: float | None = None
        self.manager_silent_seconds: float = 0.0  # since the last answer (or the start, before one)
        self.hub_blocked_max_seconds: float = 0.0  # set by fworker.hubmonitor
        self.hub_blocked_own_max_seconds: float = 0.0  # the same, without waits for a CPU
        self.started_at: float = time.time()
        # The Manager's generation ("v2" or "v3") and version, once known.
        self.manager_protocol: str = ""
        self.manager_version: str = ""
        # Health: the Manager silent, or the oldest queued update waiting, for
        # longer than this is not ok.  0: never judged (a Stats of its own).
        self.silence_limit: float = 0.0
        self._sources: dict[str, typing.Callable[[], typing.Any]] = {}

    def follow(self, **sources: typing.Callable[[], typing.Any]) -> None:
        """Read each named attribute from its source on every snapshot."""
        unknown = sorted(name for name in sources if name.startswith("_") or not hasattr(self, name))
        if unknown:
            raise ValueError(f"Stats has no attribute(s) {', '.join(unknown)}")
        self._sources.update(sources)

    def delivered(self, task_id: str, payload: dict[str, typing.Any], count: int, *,
                  queue_depth: int, retries: int) -> None:
        """The Manager accepted ``count`` queued updates of ``task_id``, sent as ``payload``."""
        self.updates_sent += count
        self.updates_retried = retries
        self.log_bytes_sent += len(payload.get("log", "").encode("utf-8"))
        self.last_manager_contact = time.time()  # wall clock: shown to people
        self.queue_depth = queue_depth
        if "task_progress_percentage" in payload and task_id == self.task_id:
            self.task_progress = payload["task_progress_percentage"]

    def snapshot(self) -> dict[str, typing.Any]:
        """A JSON-ready copy of every attribute, the followed ones read now."""
        for name, source in self._sources.items():
            setattr(self, name, source())
        values = {name: value for name, value in vars(self).items() if not name.startswith("_")}
        # The state may be a State enum; JSON and labels want its plain value.
        values["state"] = str(getattr(self.state, "value", self.state))
        return values

    def health(self) -> dict[str, typing.Any]:
        """The snapshot with ``ok`` and, when not ok, ``problems`` saying why."""
        snap = self.snapshot()
        problems = []
        limit = snap["silence_limit"]
        if limit > 0 and snap["manager_silent_seconds"] > limit:
            problems.append(f"the Manager has not answered for {snap['manager_silent_seconds']:.0f} s "
                            f"(more than {limit:g} s)")
        age = snap["oldest_update_age"]
        if limit > 0 and snap["queue_depth"] and age is not None and age > limit:
            problems.append(f"the update queue is not draining: {snap['queue_depth']} update(s), "
                            f"the oldest waiting for {age:.0f} s (more than {limit:g} s)")
        return dict(snap, ok=not problems, problems=problems)


class StatsCollector(Collector):
    """Turns one ``Stats`` into metric families, freshly on every scrape."""

    def __init__(self, stats: Stats):
        self.stats = stats

    def collect(self) -> typing.Iterator[typing.Any]:
        health = self.stats.health()
        snap = health
        yield InfoMetricFamily("fworker_build", "Version of this worker.", value={"version": __version__})
        yield InfoMetricFamily("fworker_manager", "The Manager's protocol (v2, v3) and version.",
                               value={"protocol": snap.get("manager_protocol", ""),
                                      "version": snap.get("manager_version", "")})
        yield _state_set(snap["state"])
        for name, help_text in COUNTERS:
            yield CounterMetricFamily(f"fworker_{name}", help_text, value=snap[name])
        yield GaugeMetricFamily("fworker_task_running", "1 while a task runs, else 0.",
                                value=int(snap["task_id"] is not None))
        yield GaugeMetricFamily("fworker_task_progress_percent", "Progress of the running task.",
                                value=snap["task_progress"])
        yield GaugeMetricFamily("fworker_queue_depth", "Task updates waiting in the local queue.",
                                value=snap["queue_depth"])
        yield GaugeMetricFamily("fworker_healthy", "1 when /health says ok, else 0.", value=int(health["ok"]))
        yield GaugeMetricFamily("fworker_manager_silent_seconds",
                                "Seconds since the Manager last answered (since the start, before it first did).",
                                value=snap["manager_silent_seconds"])
        yield GaugeMetricFamily("fworker_start_time_seconds", "When the worker started (Unix time).",
                                value=snap["started_at"])
        yield GaugeMetricFamily("fworker_hub_blocked_max_seconds",
                                "The longest time the event loop was blocked (nothing else could run).",
                                value=snap["hub_blocked_max_seconds"])
        yield GaugeMetricFamily("fworker_hub_blocked_own_max_seconds",
                                "The longest part of a block of the event loop that was the worker's own: the time "
                                "its thread was runnable but waiting for a CPU (the machine ran something else) "
                                "left out. Where the kernel does not report that wait (Linux schedstat), the same "
                                "as fworker_hub_blocked_max_seconds.",
                                value=snap["hub_blocked_own_max_seconds"])
        if snap["last_manager_contact"] is not None:
            # A timestamp rather than an age: alert on time() - this in PromQL.
            yield GaugeMetricFamily("fworker_last_manager_contact_timestamp_seconds",
                                    "When the Manager last answered (Unix time).",
                                    value=snap["last_manager_contact"])


def _state_set(current: str) -> StateSetMetricFamily:
    known = [s.value for s in State]
    if current not in known:
        known.append(current)  # show an unexpected state rather than hide it
    return StateSetMetricFamily("fworker_state", "The worker's state.", value={s: s == current for s in known})


class _NoDelayServer(gevent.pywsgi.WSGIServer):
    def handle(self, sock: socket.socket, address: typing.Any) -> None:
        # Nagle + delayed ACK make small keep-alive answers take ~44 ms
        # (FIELD-NOTES); scrapers keep connections alive.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as ex:
            log.debug("cannot set TCP_NODELAY for %s: %s", address, ex)
        super().handle(sock, address)


class MetricsServer:
    """``/health`` and ``/metrics`` for ``stats`` on ``host``:``port``.

    ``port=None`` lets the system pick a free port (tests; read ``.port``
    after ``start()``).  ``port=0`` is refused: in the configuration 0 means
    "off", so the caller must not start a server then (see ``from_settings``).
    """

    def __init__(self, stats: Stats, host: str = "127.0.0.1", port: int | None = None):
        if port == 0:
            raise ValueError("metrics port 0 means 'off'; pass None for a free port")
        self.stats = stats
        self.host = host
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(stats))
        # The access log goes to DEBUG: a scrape every 15 s is not news.
        access_log = gevent.pywsgi.LoggingLogAdapter(log, logging.DEBUG)
        self._server = _NoDelayServer((host, port or 0), self._app, spawn=gevent.pool.Pool(MAX_CONNECTIONS),
                                      log=access_log, error_log=log)

    def start(self) -> MetricsServer:
        self._server.start()
        log.info("metrics on %smetrics and %shealth", self.url, self.url)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        # The pool ends idle keep-alive handlers too, so the port is free after.
        self._server.stop(timeout=timeout)

    @property
    def port(self) -> int:
        port = self._server.server_port
        if port is None:
            raise RuntimeError("the metrics server has no port before start()")
        return port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _app(self, environ: dict[str, typing.Any], start_response: typing.Callable[..., typing.Any]) -> list[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path not in ("/health", "/metrics"):
            return _respond(start_response, "404 Not Found", "text/plain; charset=utf-8", b"not found\n")
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", "text/plain; charset=utf-8",
                            b"use GET\n", [("Allow", "GET, HEAD")])
        if path == "/health":
            body = json.dumps(self.stats.health(), sort_keys=True).encode() + b"\n"
            content_type = "application/json"
        else:
            # Negotiated like prometheus_client's own servers: the classic text
            # format unless the scraper asks for OpenMetrics.
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            body = encoder(self.registry)
        return _respond(start_response, "200 OK", content_type, b"" if method == "HEAD" else body)


def _respond(start_response: typing.Callable[..., typing.Any], status: str, content_type: str, body: bytes,
             extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(extra or [])])
    return [body]


def from_settings(settings: Settings, stats: Stats) -> MetricsServer | None:
    """A started server when ``metrics_port`` is set, None when it is 0 (off;
    the settings table keeps the port within 0-65535, so ``--check-config``
    refuses what this would).  A port that cannot be listened on is a
    configuration error: an operator who asked for metrics would rather know
    at once than find a gap later."""
    host, port = settings.metrics_host, settings.metrics_port
    if not port:
        return None
    try:
        return MetricsServer(stats, host, port).start()
    except OSError as ex:
        raise ConfigError(f"metrics_host = {host!r}, metrics_port = {port}: cannot listen: "
                          f"{ex.strerror or ex}") from None
