"""The Prometheus endpoint of a real daemon: request counters and latency histograms by routine,
mini-redirector and status, connection and handle gauges; an exposition that follows the
Prometheus naming rules (promtool check metrics when installed, else the same rules checked over
prometheus_client's parser), bounded labels, and every metric documented in docs/metrics.md."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from rdbss.actors.metrics import DOWN_REASONS
from tests.daemon import running_daemon
from tests.servers.fixtures import free_port


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def value(text: str, pattern: str) -> float:
    match = re.search(pattern + r" ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"no sample matching {pattern!r}"
    return float(match.group(1))


def test_metrics_count_requests_statuses_and_connections() -> None:
    port = free_port()
    with running_daemon(metrics_port=port) as d, d.client() as c:
        c.write_bytes(d.share + r"\m.txt", b"metrics")
        for _ in range(5):
            c.read_bytes(d.share + r"\m.txt")
        with pytest.raises(FileNotFoundError):
            c.stat(d.share + r"\missing")
        h = c.create(d.share + r"\m.txt")
        h2 = c.create(d.share + r"\m.txt")  # collapses onto h's server open
        deadline = time.monotonic() + 10
        while True:  # gauges are refreshed every second
            text = scrape(port)
            if "rdbss_open_handles 2.0" in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        c.close_handle(h2.fobx)
        c.close_handle(h.fobx)
    ok = r'rdbss_requests_total\{minirdr="local",routine="MRxCreate",status="STATUS_SUCCESS"\}'
    assert value(text, ok) >= 7
    missing = (  # a stat is a query open (MRxQueryOpen), not a create and a close
        r'rdbss_requests_total\{minirdr="local",routine="MRxQueryOpen",'
        r'status="STATUS_OBJECT_NAME_NOT_FOUND"\}'
    )
    assert value(text, missing) == 1
    assert (
        value(
            text,
            r'rdbss_request_duration_seconds_count\{minirdr="local",routine="MRxLowIOSubmit"\}',
        )
        >= 6
    )
    assert value(text, r'rdbss_connections\{condition="GOOD"\}') == 1
    assert value(text, r"rdbss_open_handles") == 2
    assert value(text, r"rdbss_collapsed_opens_total") == 1
    assert value(text, r'rdbss_peers_up\{role="minirdr"\}') == 1


METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_exposition_follows_the_naming_rules_and_is_documented() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    with running_daemon(metrics_port=port) as d, d.client() as c:
        c.write_bytes(d.share + r"\n.txt", b"x")
        c.read_bytes(d.share + r"\n.txt")
        local_pid = d.child_pid("local")
        os.kill(local_pid, signal.SIGKILL)  # a peer down, with its reason label
        deadline = time.monotonic() + 15
        while "rdbss_peer_down_total{" not in (text := scrape(port)):
            assert time.monotonic() < deadline, "no rdbss_peer_down_total sample"
            time.sleep(0.2)
    if shutil.which("promtool"):
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    documented = METRICS_DOC.read_text()
    families = [f for f in text_string_to_metric_families(text) if f.name.startswith("rdbss_")]
    assert len(families) >= 15
    for family in families:
        assert re.fullmatch(r"rdbss_[a-z][a-z0-9_]*", family.name), family.name
        assert family.documentation, f"{family.name} has no HELP"
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}`" in documented, f"{shown} is not documented in docs/metrics.md"
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
        for sample in family.samples:
            labels = sample.labels
            assert set(labels) <= {
                "routine",
                "minirdr",
                "status",
                "peer",
                "reason",
                "role",
                "condition",
                "le",
            }, (family.name, labels)
            if "reason" in labels:
                assert labels["reason"] in {*DOWN_REASONS, "other"}, labels
            if "status" in labels:
                assert re.fullmatch(r"STATUS_[A-Z0-9_]+|unknown", labels["status"]), labels
    names = {f.name for f in families}
    assert "rdbss_buffering" not in names  # split into counters and gauges
    assert {"rdbss_read_cache_hits", "rdbss_read_cache_bytes", "rdbss_peer_down"} <= names
