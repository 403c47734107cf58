"""A fault-isolation experiment end to end against a real server: the main load on a WebDAV share
(wsgidav through a FaultProxy that black-holes the connection for 0.8 s), a control load on a
local share served by another mini-redirector process. The report must show the outage in its
100 ms bins, the open-loop latency that counts the stall, the recovery, zero control errors and
nothing lost; report.html must render in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.backend_webdav import write_password_file
from tests.reliability.experiment_runs import run_experiment
from tests.servers.fixtures import WebDavServer, require_or_skip

CHROMIUM_TIMEOUT_S = 60.0
BLACKHOLE_AT, BLACKHOLE_S = 1.2, 0.8

EXPERIMENT = """
[experiment]
name = "dav-blackhole"

[setup.daemon]
request_timeout = 5.0

[[setup.proxy]]
name = "dav"
target = "127.0.0.1:{port}"

[[setup.minirdr]]
name = "webdav"
kind = "webdav"
timeout = 5.0
[setup.minirdr.servers.davtest]
url = "http://{{proxy.dav.host}}:{{proxy.dav.port}}/"
username = "{user}"
password_file = "{password_file}"

[[setup.minirdr]]
name = "ctl"
kind = "local"
server = "ctl"
[setup.minirdr.shares]
data = "{{tmp}}/ctl"

[load]
root = '\\\\davtest\\share\\exp'
model = "open"
rate = 16
clients = 4
duration_s = 4
seed = 5
mix = {{ stat = 0.3, read = 0.5, write = 0.2 }}
[load.files]
count = 6
size = 2048

[[control]]
name = "ctl"
root = '\\\\ctl\\data\\exp'
rate = 60
duration_s = 4
seed = 6
mix = {{ stat = 0.3, read = 0.5, write = 0.2 }}

[[fault]]
t = {at}
action = "proxy"
proxy = "dav"
settings = {{ blackhole = true }}
duration_s = {duration}
"""


@pytest.fixture(scope="module")
def dav_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("isolation")
    with WebDavServer(base / "dav") as server:
        (server.root_dir / "share").mkdir()
        path = base / "dav.toml"
        path.write_text(
            EXPERIMENT.format(
                port=server.port,
                user=server.user,
                password_file=write_password_file(base / "pw", server.password),
                at=BLACKHOLE_AT,
                duration=BLACKHOLE_S,
            )
        )
        out = base / "out"
        proc = run_experiment(path, out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield out, json.loads((out / "report.json").read_text())


def test_the_fault_window_is_visible_in_the_bins(dav_run: tuple[Path, dict[str, Any]]) -> None:
    _, report = dav_run
    main = report["loads"][0]
    [window] = report["windows"]
    assert window["start"] == pytest.approx(BLACKHOLE_AT, abs=0.3)
    assert window["end"] - window["start"] == pytest.approx(BLACKHOLE_S, abs=0.2)
    inside = [b for b in main["bins"] if window["start"] + 0.1 <= b["t"] < window["end"] - 0.1]
    before = [b for b in main["bins"] if 0.3 <= b["t"] < window["start"] - 0.1]
    assert len(inside) >= 4 and all(b["ok"] == 0 for b in inside), inside
    assert sum(b["ok"] for b in before) >= 8
    # open loop: an operation queued behind the black hole counts from its slot
    assert main["isolation"]["inside"]["max_ms"] >= 0.6 * BLACKHOLE_S * 1000
    assert main["isolation"]["outside"]["p50_ms"] < 200


def test_the_control_share_saw_no_errors(dav_run: tuple[Path, dict[str, Any]]) -> None:
    _, report = dav_run
    control = report["loads"][1]
    assert control["name"] == "ctl" and control["role"] == "control"
    assert control["fail"] == control["info"] == 0
    assert control["isolation"]["inside"]["errors"] == 0
    assert control["isolation"]["inside"]["ops"] >= 20  # it did run during the outage
    assert control["isolation"]["outside"]["errors"] == 0
    assert report["blast_radius"][0].startswith("ctl: 0 errors in ")


def test_recovery_figures_are_present_and_plausible(dav_run: tuple[Path, dict[str, Any]]) -> None:
    _, report = dav_run
    [recovery] = report["recoveries"]
    assert recovery["fault_end"] == pytest.approx(BLACKHOLE_AT + BLACKHOLE_S, abs=0.3)
    assert 0 <= recovery["first_success_s"] < 1.0
    assert recovery["back_to_90_s"] is not None and 0 <= recovery["back_to_90_s"] < 3.0
    assert recovery["baseline_ops_s"] == pytest.approx(16, rel=0.4)


def test_nothing_acknowledged_was_lost(dav_run: tuple[Path, dict[str, Any]]) -> None:
    _, report = dav_run
    assert report["verdict"] == "OK"
    for load in report["loads"]:
        integrity = load["integrity"]
        assert integrity["lost"] == 0 and integrity["corrupted"] == 0, integrity
        assert integrity["acknowledged"] > 5


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def test_the_html_report_renders_in_headless_chromium(
    dav_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = dav_run
    chromium = _chromium()
    require_or_skip([] if chromium else ["chromium"], "headless Chromium")
    assert chromium is not None
    shot = tmp_path / "shot.png"
    # an empty environment proxy-wise and no network: the report must not need one
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1100,1800",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
        env=env,
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    flat = pixels.reshape(-1, pixels.shape[-1])[:, :3]
    not_white = (flat < 0.95).any(axis=1).mean()
    colors = {tuple(p) for p in flat[::5].tolist()}
    assert not_white > 0.05, "the screenshot is (nearly) blank"
    assert len(colors) > 100  # figures, not just text
