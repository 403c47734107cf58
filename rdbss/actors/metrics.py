"""Metrics of the core. ``NullMetrics`` costs nothing (the default, and what unit tests use);
``PrometheusMetrics`` exports them on http://HOST:PORT/metrics with prometheus_client:

- ``rdbss_requests_total{routine,minirdr,status}`` and ``rdbss_request_seconds{routine,minirdr}``
  (a histogram) for every request the core sent to a mini-redirector (or the connection manager),
  timeouts and requests failed by a dead peer included;
- ``rdbss_peer_down_total{peer,reason}``: processes that died, went silent or restarted;
- gauges refreshed every second: ``rdbss_connections{condition}``, ``rdbss_open_handles``,
  ``rdbss_pending_requests``, ``rdbss_peers_up{role}``, and ``rdbss_buffering{what}``: open
  collapsing, delayed closes, the read cache and write-behind (the ``buffering`` counts of
  ``rdbss status``; the running totals among them only grow).
Updates come from the core's socket thread; prometheus_client's types are thread-safe for the
HTTP thread that reads them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

StatusSource = Callable[[], dict[str, Any]]


class NullMetrics:
    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None:
        pass

    def peer_down(self, peer: str, reason: str) -> None:
        pass

    def snapshot(self, status: StatusSource) -> None:
        pass  # metrics off: the core's status is not even built


class PrometheusMetrics(NullMetrics):
    def __init__(self, host: str, port: int) -> None:
        import prometheus_client as prom

        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "rdbss_requests",
            "Requests completed by routine, mini-redirector and NTSTATUS",
            ["routine", "minirdr", "status"],
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "rdbss_request_seconds",
            "Time from forwarding a request to its completion",
            ["routine", "minirdr"],
            registry=self.registry,
            buckets=(
                0.0001,
                0.00025,
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
            ),
        )
        self.downs = prom.Counter(
            "rdbss_peer_down",
            "Processes that died, went silent or were restarted",
            ["peer", "reason"],
            registry=self.registry,
        )
        self.connections = prom.Gauge(
            "rdbss_connections", "NetRoots by condition", ["condition"], registry=self.registry
        )
        self.handles = prom.Gauge("rdbss_open_handles", "Open handles", registry=self.registry)
        self.pending = prom.Gauge(
            "rdbss_pending_requests", "Requests under way", registry=self.registry
        )
        self.peers = prom.Gauge(
            "rdbss_peers_up", "Registered processes by role", ["role"], registry=self.registry
        )
        self.buffering = prom.Gauge(
            "rdbss_buffering",
            "Open collapsing, delayed closes, read cache and write-behind",
            ["what"],
            registry=self.registry,
        )
        self.server, self.thread = prom.start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None:
        self.requests.labels(routine, minirdr, status).inc()
        self.latency.labels(routine, minirdr).observe(seconds)

    def peer_down(self, peer: str, reason: str) -> None:
        self.downs.labels(peer, reason).inc()

    def snapshot(self, source: StatusSource) -> None:
        status = source()
        by_condition = Counter(c["condition"] for c in status["connections"])
        for condition in ("IN_TRANSITION", "GOOD", "BAD"):
            self.connections.labels(condition).set(by_condition.get(condition, 0))
        self.handles.set(status["handles"])
        self.pending.set(status["pending"])
        roles = Counter(p["role"] for p in status["peers"])
        for role in ("minirdr", "connmgr"):
            self.peers.labels(role).set(roles.get(role, 0))
        for what, value in status.get("buffering", {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.buffering.labels(what).set(value)

    def close(self) -> None:
        self.server.shutdown()
