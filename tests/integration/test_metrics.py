"""The Prometheus endpoint of a real daemon: request counters and latency histograms by routine,
mini-redirector and status, connection and handle gauges."""

from __future__ import annotations

import re
import time

import httpx
import pytest

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
        value(text, r'rdbss_request_seconds_count\{minirdr="local",routine="MRxLowIOSubmit"\}') >= 6
    )
    assert value(text, r'rdbss_connections\{condition="GOOD"\}') == 1
    assert value(text, r"rdbss_open_handles") == 2
    assert value(text, r'rdbss_buffering\{what="collapsed_opens"\}') == 1
    assert value(text, r'rdbss_peers_up\{role="minirdr"\}') == 1
