"""Entry point of every child process the supervisor starts:
``python -m rdbss.actors.process ROLE NAME RUNTIME_DIR`` with ROLE core, connmgr or minirdr.
The effective configuration is read from RUNTIME_DIR/config.json (written by the supervisor,
mode 0600), so nothing secret is ever on a command line.

With ``--standby`` a mini-redirector process is a warm standby: it imports everything its kind
needs, then waits for a line on its standard input. ``go`` makes it read the configuration of
that moment and serve (the supervisor sends it when the running process dies, so a restart
costs no interpreter start-up and no imports); end of input makes it exit (not needed any
more, or the supervisor is gone)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from rdbss.actors.bus import CurveKeys, Endpoints, alive_file
from rdbss.actors.client_limits import FairIntake, UnreadAnswers
from rdbss.actors.connmgr import ConnectionManager
from rdbss.actors.core_server import CoreServer, TcpListen
from rdbss.actors.metrics import NullMetrics
from rdbss.actors.minirdr_host import MiniRdrHost
from rdbss.actors.peer import PeerBridge, run_peer
from rdbss.actors.zap import AllowList
from rdbss.config import Config
from rdbss.core.types import CONNMGR, CoreSettings
from rdbss.keys import load_public, load_secret
from rdbss.logs import setup_logging
from rdbss.minirdrs import load_kind
from rdbss.minirdrs.common.setup import setup_timeout_ms

log = logging.getLogger("rdbss.process")


def core_tcp(config: Config) -> TcpListen | None:
    """The core's tcp:// ports from the configuration (keys and allow-list), or None."""
    if not (config.peer_listen or config.client_listen):
        return None
    pair = load_secret(Path(config.secret_key))
    return TcpListen(
        keys=CurveKeys(pair.public, pair.secret),
        allow=AllowList(Path(config.authorized_keys)),
        peer=config.peer_listen,
        client=config.client_listen,
        client_grace_s=config.remote_client_grace,
    )


def node_endpoints(config: Config, runtime_dir: Path) -> Endpoints:
    """On a node, the bus is the core's tcp:// peer port, reached with this host's keys."""
    assert config.node is not None
    pair = load_secret(Path(config.secret_key))
    curve = CurveKeys(pair.public, pair.secret, server=load_public(config.node.core_key))
    return Endpoints(runtime_dir, client="", bus=config.node.core, curve=curve)


def run_core(config: Config, endpoints: Endpoints) -> int:
    settings = CoreSettings(
        provider_order=config.provider_order,
        construct_timeout_ms=setup_timeout_ms(config.connect_timeout),
        idle_timeout_s=config.idle_timeout,
        close_delay_s=config.close_delay,
        max_delayed_closes=config.max_delayed_closes,
        cache_bytes=int(config.cache_mib * (1 << 20)),
        write_behind_s=config.write_behind,
        dirty_bytes=int(config.dirty_mib * (1 << 20)),
        attr_cache_entries=config.attr_cache_entries,
        attr_max_age_s=config.attr_max_age,
        expected_peers=(CONNMGR, *(m.name for m in config.minirdrs)),
        max_inflight_per_client=config.max_client_requests,
    )
    metrics: NullMetrics | None = None
    if config.metrics_port:
        from rdbss.actors.metrics import PrometheusMetrics

        metrics = PrometheusMetrics(config.metrics_host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, metrics.port)
    intake = FairIntake(max_requests=config.max_client_requests)
    unread = UnreadAnswers(int(config.max_client_unread_mib * (1 << 20)))
    CoreServer(endpoints, settings, metrics, core_tcp(config), intake=intake, unread=unread).run()
    return 0


def run_connmgr(endpoints: Endpoints) -> int:
    bridge = PeerBridge(endpoints, ConnectionManager.registration(CONNMGR))
    bridge.alive_file = alive_file(endpoints.runtime_dir, CONNMGR)
    actor = ConnectionManager.start(bridge)
    bridge.handler = lambda msg, payload: actor.tell((msg, payload))
    return run_peer(bridge, on_stop=lambda: actor.stop(block=True, timeout=2.0))


def raise_open_file_limit() -> None:
    """Every open handle may hold a descriptor in its mini-redirector: allow as many as the
    hard limit does (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d: %s", soft, exc)


def run_minirdr(config: Config, name: str, endpoints: Endpoints) -> int:
    raise_open_file_limit()
    entry = config.minirdr(name)
    minirdr = load_kind(entry.kind)(name, entry.options)
    bridge = PeerBridge(endpoints, MiniRdrHost.registration(name, minirdr, entry.caching))
    bridge.alive_file = alive_file(endpoints.runtime_dir, name)
    host = MiniRdrHost(bridge, minirdr)
    return run_peer(bridge, on_stop=host.stop)


def profiled(role: str, name: str, run: Callable[[], int]) -> int:
    """``$RDBSS_PROFILE=DIR``: run under cProfile and leave DIR/ROLE-NAME-PID.prof when the
    process ends (a developer's tool: where a request's CPU goes, per process). The clock is
    the thread's CPU time: time spent waiting in a poll or preempted is not counted."""
    where = os.environ.get("RDBSS_PROFILE")
    if not where:
        return run()
    import cProfile
    import time

    profile = cProfile.Profile(time.thread_time_ns, 1e-9)
    try:
        return profile.runcall(run)
    finally:
        out = Path(where) / f"{role}-{name}-{os.getpid()}.prof"
        profile.dump_stats(str(out))
        log.info("profile written to %s", out)


#: set by the supervisor for its children: its pid (see ``die_with_supervisor``)
SUPERVISOR_PID_ENV = "RDBSS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def die_with_supervisor() -> bool:
    """A child stops (SIGTERM: the same clean stop as ``rdbss daemon stop``) when the supervisor
    that started it is gone, killed or out of memory, instead of serving on unsupervised beside
    the children of the next daemon. False when the supervisor is gone already (between its
    fork and here): then do not start at all."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("cannot ask to stop with the supervisor: errno %d", ctypes.get_errno())
    return str(os.getppid()) == expected


#: glibc's malloc in the daemon's processes, which move megabyte buffers (a compound's packed
#: read data, 1 MiB reads, ZeroMQ's message buffers): an allocation below MALLOC_MMAP_BELOW
#: comes from the heap, and up to MALLOC_KEEP_FREE of free heap stays mapped. glibc's default
#: trims the heap at twice the largest buffer freed so far, so those buffers would be unmapped
#: and faulted in again page by page, which costs the core CPU on every compound read. The
#: cost: each process may keep up to MALLOC_KEEP_FREE of freed memory. MALLOC_MMAP_BELOW must
#: stay above the 4 MiB pieces of large reads and writes (and their headers): at exactly 4 MiB,
#: every SFTP write piece is a fresh mmap again.
MALLOC_MMAP_BELOW = 16 << 20
MALLOC_KEEP_FREE = 32 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc() -> bool:
    """Apply MALLOC_MMAP_BELOW and MALLOC_KEEP_FREE through glibc's mallopt. False (nothing
    changed) without glibc, or when the environment tunes malloc itself."""
    if any(key in os.environ for key in _MALLOC_ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_BELOW)
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_KEEP_FREE)
    )


STANDBY_GO = "go"


def stand_by(runtime_dir: Path, name: str) -> bool:
    """A warm standby (see the module docstring): import the mini-redirector's kind, then
    wait. True when told to serve."""
    try:
        load_kind(Config.from_json((runtime_dir / "config.json").read_text()).minirdr(name).kind)
    except Exception as exc:  # serving reads the configuration again and says what is wrong
        log.warning("standby %s could not warm up: %s", name, exc)
    return sys.stdin.readline().strip() == STANDBY_GO


def main(argv: list[str] | None = None) -> int:
    if not die_with_supervisor():
        return 0
    tune_malloc()
    parser = argparse.ArgumentParser(prog="rdbss-process")
    parser.add_argument("role", choices=["core", "connmgr", "minirdr"])
    parser.add_argument("name")
    parser.add_argument("runtime_dir", type=Path)
    parser.add_argument("--standby", action="store_true", help="wait for 'go' on stdin")
    args = parser.parse_args(argv)
    if args.standby and not stand_by(args.runtime_dir, args.name):
        return 0
    config = Config.from_json((args.runtime_dir / "config.json").read_text())
    setup_logging(args.name, config)
    try:
        if config.node is not None:
            endpoints = node_endpoints(config, args.runtime_dir)
        else:
            endpoints = Endpoints.in_dir(args.runtime_dir)
        if args.role == "core":
            return profiled("core", args.name, lambda: run_core(config, endpoints))
        if args.role == "connmgr":
            return profiled("connmgr", args.name, lambda: run_connmgr(endpoints))
        return profiled("minirdr", args.name, lambda: run_minirdr(config, args.name, endpoints))
    except Exception:
        log.exception("%s %s failed", args.role, args.name)
        return 1


if __name__ == "__main__":
    sys.exit(main())
