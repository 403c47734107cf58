"""Entry point of every child process the supervisor starts:
``python -m rdbss.actors.process ROLE NAME RUNTIME_DIR`` with ROLE core, connmgr or minirdr.
The effective configuration is read from RUNTIME_DIR/config.json (written by the supervisor,
mode 0600), so nothing secret is ever on a command line."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from pathlib import Path

from rdbss.actors.bus import Endpoints
from rdbss.actors.connmgr import ConnectionManager
from rdbss.actors.core import CONNMGR, CoreSettings
from rdbss.actors.core_server import CoreServer
from rdbss.actors.metrics import NullMetrics
from rdbss.actors.minirdr_host import MiniRdrHost
from rdbss.actors.peer import PeerBridge, run_peer
from rdbss.config import Config
from rdbss.logs import setup_logging
from rdbss.minirdrs import load_kind

log = logging.getLogger("rdbss.process")


def run_core(config: Config, endpoints: Endpoints) -> None:
    settings = CoreSettings(
        provider_order=config.provider_order,
        construct_timeout_ms=int(config.connect_timeout * 1000) + 5_000,
        idle_timeout_s=config.idle_timeout,
    )
    metrics: NullMetrics | None = None
    if config.metrics_port:
        from rdbss.actors.metrics import PrometheusMetrics

        metrics = PrometheusMetrics(config.metrics_host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, metrics.port)
    CoreServer(endpoints, settings, metrics).run()


def run_connmgr(endpoints: Endpoints) -> None:
    bridge = PeerBridge(endpoints, ConnectionManager.registration(CONNMGR))
    actor = ConnectionManager.start(bridge)
    bridge.handler = lambda msg, payload: actor.tell((msg, payload))
    run_peer(bridge, on_stop=lambda: actor.stop(block=True, timeout=2.0))


def raise_open_file_limit() -> None:
    """Every open handle may hold a descriptor in its mini-redirector: allow as many as the
    hard limit does (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d: %s", soft, exc)


def run_minirdr(config: Config, name: str, endpoints: Endpoints) -> None:
    raise_open_file_limit()
    entry = config.minirdr(name)
    minirdr = load_kind(entry.kind)(name, entry.options)
    bridge = PeerBridge(endpoints, MiniRdrHost.registration(name, minirdr))
    host = MiniRdrHost(bridge, minirdr)
    run_peer(bridge, on_stop=host.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rdbss-process")
    parser.add_argument("role", choices=["core", "connmgr", "minirdr"])
    parser.add_argument("name")
    parser.add_argument("runtime_dir", type=Path)
    args = parser.parse_args(argv)
    config = Config.from_json((args.runtime_dir / "config.json").read_text())
    setup_logging(args.name, config.log_level)
    endpoints = Endpoints.in_dir(args.runtime_dir)
    try:
        if args.role == "core":
            run_core(config, endpoints)
        elif args.role == "connmgr":
            run_connmgr(endpoints)
        else:
            run_minirdr(config, args.name, endpoints)
    except Exception:
        log.exception("%s %s failed", args.role, args.name)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
