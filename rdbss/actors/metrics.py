"""Metrics of the core. ``NullMetrics`` costs nothing (the default, and what unit tests use);
``PrometheusMetrics`` exports them on http://HOST:PORT/metrics with prometheus_client.

Names follow the Prometheus conventions: counters end in ``_total``, durations are histograms
in seconds, sizes are in bytes. Every label has a bounded set of values: routines and NTSTATUS
names come from fixed tables (an NTSTATUS without a name counts as ``unknown``), mini-redirector
and peer names from the configuration, and a peer's end is one of :data:`DOWN_REASONS`.
docs/metrics.md lists every metric. Counters that the core keeps itself (open collapsing,
delayed closes, the read cache, write-behind) are exported from its status by a collector, so
they are true counters; its current sizes are gauges.

Updates come from the core's socket thread; prometheus_client's types are thread-safe for the
HTTP thread that reads them, and the collector swaps its snapshot in one assignment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from rdbss.wire.status import NtStatus

StatusSource = Callable[[], dict[str, Any]]

#: the values of rdbss_peer_down_total's reason label, and the words that pick each
DOWN_REASONS: dict[str, tuple[str, ...]] = {
    "exited": ("exited", "went away"),
    "silent": ("heartbeat", "answering"),
    "restarted": ("registered again", "restarted"),
    "unreachable": ("unreachable",),
    "stopping": ("stopping",),
    "reloaded": ("reload",),
}

#: the core's own counters (its status "buffering") -> (metric name, help)
BUFFERING_COUNTERS: dict[str, tuple[str, str]] = {
    "collapsed_opens": ("rdbss_collapsed_opens", "Opens collapsed onto an existing server open"),
    "delayed_closes": ("rdbss_delayed_closes", "Server opens whose close was delayed"),
    "delayed_reused": ("rdbss_delayed_close_reuses", "Delayed-close server opens used again"),
    "delayed_closed": ("rdbss_delayed_close_expiries", "Delayed-close server opens closed"),
    "buffering_changes": ("rdbss_buffering_changes", "Changes of a file's buffering state"),
    "deferred_writes": ("rdbss_deferred_writes", "Writes deferred by write-behind"),
    "write_behind_errors": ("rdbss_write_behind_errors", "Deferred writes that failed"),
    "cache_hits": ("rdbss_read_cache_hits", "Reads answered from the read cache"),
    "cache_misses": ("rdbss_read_cache_misses", "Reads the read cache could not answer"),
    "lease_grants": ("rdbss_lease_grants", "Read leases granted to clients"),
    "lease_breaks": ("rdbss_lease_breaks", "Breaks of read leases (epoch bumps)"),
    "lease_refused": ("rdbss_lease_refused", "Read leases asked for and not granted"),
    "attr_hits": ("rdbss_attr_cache_hits", "Stats answered from the attribute cache"),
    "attr_misses": ("rdbss_attr_cache_misses", "Stats the attribute cache could not answer"),
}

#: the core's current sizes (its status "buffering") -> (metric name, help)
BUFFERING_GAUGES: dict[str, tuple[str, str]] = {
    "delayed_now": ("rdbss_delayed_close_srv_opens", "Server opens waiting for a delayed close"),
    "cache_bytes": ("rdbss_read_cache_bytes", "Bytes in the read cache"),
    "cache_limit": ("rdbss_read_cache_limit_bytes", "Size limit of the read cache"),
    "dirty_bytes": ("rdbss_write_behind_dirty_bytes", "Deferred bytes not yet written"),
    "leased_files": ("rdbss_leased_files", "Files with a slot in the read lease table"),
    "attr_entries": ("rdbss_attr_cache_entries", "Files whose attributes the core keeps"),
}

_KNOWN_STATUS = frozenset(NtStatus.__members__)


def down_reason(text: str) -> str:
    """The bounded label for a peer's end, from the core's free-text reason."""
    lowered = text.lower()
    for reason, words in DOWN_REASONS.items():
        if any(word in lowered for word in words):
            return reason
    return "other"


def status_label(name: str) -> str:
    """An NTSTATUS name as a label: the named ones as they are, any other ``unknown``."""
    return name if name in _KNOWN_STATUS else "unknown"


class NullMetrics:
    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None:
        pass

    def peer_down(self, peer: str, reason: str) -> None:
        pass

    def snapshot(self, status: StatusSource) -> None:
        pass  # metrics off: the core's status is not even built


class _BufferingCollector:
    """Exports the counters and sizes the core keeps itself, from its latest status."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        latest = self.latest
        for key, (name, text) in BUFFERING_COUNTERS.items():
            yield CounterMetricFamily(name, text, value=float(latest.get(key, 0)))
        for key, (name, text) in BUFFERING_GAUGES.items():
            yield GaugeMetricFamily(name, text, value=float(latest.get(key, 0)))


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
            "rdbss_request_duration_seconds",
            "Time from forwarding a request to a mini-redirector to its completion",
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
            "Processes that died, went silent or were restarted, by reason",
            ["peer", "reason"],
            registry=self.registry,
        )
        self.connections = prom.Gauge(
            "rdbss_connections", "NetRoots by condition", ["condition"], registry=self.registry
        )
        self.handles = prom.Gauge("rdbss_open_handles", "Open handles", registry=self.registry)
        self.pending = prom.Gauge(
            "rdbss_pending_requests",
            "Requests forwarded and not yet completed",
            registry=self.registry,
        )
        self.peers = prom.Gauge(
            "rdbss_peers_up", "Registered processes by role", ["role"], registry=self.registry
        )
        prom.disable_created_metrics()  # type: ignore[no-untyped-call]  # one family a metric
        self.buffering = _BufferingCollector()
        self.registry.register(self.buffering)
        self.server, self.thread = prom.start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None:
        self.requests.labels(routine, minirdr, status_label(status)).inc()
        self.latency.labels(routine, minirdr).observe(seconds)

    def peer_down(self, peer: str, reason: str) -> None:
        self.downs.labels(peer, down_reason(reason)).inc()

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
        self.buffering.latest = dict(status.get("buffering", {}))

    def close(self) -> None:
        self.server.shutdown()
