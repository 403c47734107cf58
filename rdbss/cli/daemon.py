"""``rdbss daemon ...`` and ``rdbss status``: run, start, stop, reload the daemon and show its
state.

Each daemon subcommand is one ``cmd_*`` function and one entry in ``SUBCOMMANDS`` (its name,
one-line purpose, example and a function adding its own options); ``add_parsers`` builds the
``daemon`` parsers from that table. A new subcommand (e.g. ``check-config FILE``) is a new
function here and a new ``Subcommand`` row; the options of one (e.g. ``--log-format`` for
``run``) are added by the function given as its row's ``options``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbss.cli.context import client_of, config_of
from rdbss.cli.output import EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_OK, emit
from rdbss.cli.subparsers import add_command
from rdbss.config import Config, ConfigError
from rdbss.wire.status import status_name


def _make_share_folders(config: Config) -> None:
    """The embedded default's share folders exist before the daemon serves them."""
    if config.source is None:
        for m in config.minirdrs:
            for folder in m.options.get("shares", {}).values():
                Path(folder).expanduser().mkdir(parents=True, exist_ok=True)


def _serving_config(args: argparse.Namespace) -> Config:
    config = config_of(args)
    if not config.minirdrs:
        raise ConfigError("this configuration only uses a daemon elsewhere ([client])")
    if getattr(args, "log_format", None):
        config.log_format = args.log_format  # passed on to every process (config.json)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from rdbss.actors.supervisor import AlreadyRunning, Supervisor
    from rdbss.logs import setup_logging

    config = _serving_config(args)
    setup_logging("supervisor", config)
    _make_share_folders(config)
    try:
        return Supervisor(config).run()
    except AlreadyRunning as exc:
        message = str(exc)
        emit(args, {"running": True, "message": message}, lambda: f"rdbss: {message}")
        return EXIT_ERROR


def cmd_start(args: argparse.Namespace) -> int:
    from rdbss.actors.supervisor import AlreadyRunning, start_detached

    config = _serving_config(args)
    _make_share_folders(config)
    try:
        started = start_detached(Path(args.config) if args.config else None, config)
    except AlreadyRunning as exc:
        message = str(exc)
        emit(args, {"running": True, "message": message}, lambda: f"rdbss: {message}")
        return EXIT_OK
    emit(
        args,
        {"running": True, "pid": started, "runtime_dir": str(config.runtime_dir)},
        lambda: f"rdbss daemon started (pid {started}, runtime dir {config.runtime_dir})",
    )
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from rdbss.actors.supervisor import stop_daemon

    config = config_of(args)
    stopped = stop_daemon(config.runtime_dir, timeout=args.timeout)
    emit(
        args,
        {"stopped": stopped},
        lambda: (
            "rdbss daemon is not running"
            if stopped is None
            else f"rdbss daemon stopped (pid {stopped})"
        ),
    )
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """SIGHUP, then the supervisor's answer: what it applied, or why it refused the file
    (a ConfigError: exit 2, the running configuration stays)."""
    from rdbss.actors.supervisor import read_pid, reload_daemon

    config = config_of(args)
    pid = read_pid(config.runtime_dir)
    if pid is None or pid <= 0:
        emit(args, {"running": False}, lambda: "rdbss daemon is not running")
        return EXIT_NOT_RUNNING
    applied, message = reload_daemon(config.runtime_dir, pid, timeout=args.timeout)
    if not applied:
        raise ConfigError(message)
    emit(
        args,
        {"running": True, "pid": pid, "applied": message},
        lambda: f"rdbss daemon (pid {pid}) reloaded: {message}",
    )
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a configuration file as ``daemon run`` would, starting nothing."""
    from rdbss.config import check_config

    chosen = args.file or args.config
    summary = check_config(Path(chosen) if chosen else None)
    emit(args, {"ok": True, "message": summary}, lambda: summary)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from rdbss.actors.supervisor import read_pid
    from rdbss.client import remote_daemon

    config = config_of(args)
    remote = remote_daemon(config)
    if remote is not None:  # a daemon on another host: what its core says
        with client_of(args) as client:
            status = client.status()
        status.update(running=True, pid=None, processes=[])
        emit(args, status, lambda: f"rdbss daemon at {remote.connect}\n" + render_status(status))
        return EXIT_OK
    pid = read_pid(config.runtime_dir)
    if pid is None:
        emit(args, {"running": False}, lambda: "rdbss daemon is not running")
        return EXIT_NOT_RUNNING
    if config.node is not None:
        return _node_status(args, config, pid)
    with client_of(args) as client:
        status = client.status()
    status.update(running=True, pid=pid)
    try:
        sup = json.loads((config.runtime_dir / "supervisor.json").read_text())
        status["processes"] = sup["children"]
    except (OSError, ValueError, KeyError):
        status["processes"] = []
    emit(args, status, lambda: render_status(status))
    return EXIT_OK


def _node_status(args: argparse.Namespace, config: Any, pid: int) -> int:
    """A node has no core: its status is its processes and whether each reaches the core."""
    try:
        sup = json.loads((config.runtime_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        sup = {"children": []}
    status = {"running": True, "pid": pid, "node": config.node.core, "processes": sup["children"]}

    def text() -> str:
        lines = [f"rdbss node pid {pid}, core {config.node.core}", ""]
        lines.append(f"{'PROCESS':<12} {'PID':>7} {'STATE':<10} {'CORE':<12} RESTARTS")
        for p in status["processes"]:
            core = {True: "connected", False: "unreachable", None: "-"}[p.get("connected")]
            lines.append(
                f"{p['name']:<12} {p['pid'] or '-':>7} {p['state']:<10} {core:<12} {p['restarts']}"
            )
        return "\n".join(lines)

    emit(args, status, text)
    return EXIT_OK


def render_status(s: dict[str, Any]) -> str:
    lines = [
        f"rdbss daemon pid {s['pid'] or '-'}: {s['handles']} open handles, "
        f"{s['pending']} pending, {s['completed']} completed"
    ]
    lines.append("")
    restarts = {p["name"]: p["restarts"] for p in s.get("processes", [])}
    lines.append(
        f"{'PROCESS':<12} {'ROLE':<8} {'KIND':<8} {'PID':>7} {'UP(s)':>9} {'REQS':>8} "
        f"{'RESTARTS':>8} HOST"
    )
    for p in s["peers"]:
        lines.append(
            f"{p['name']:<12} {p['role']:<8} {p['kind']:<8} {p['pid']:>7} "
            f"{p['up_s']:>9.1f} {p['requests']:>8} {restarts.get(p['name'], 0):>8} "
            f"{p.get('host') or 'local'}"
        )
    down = [p for p in s.get("processes", []) if p["state"] != "running"]
    for p in down:
        lines.append(
            f"{p['name']:<12} {p['role']:<8} {'-':<8} {'-':>7} {p['state'].upper():>9} "
            f"restarts={p['restarts']} {p['last_exit']}"
        )
    lines.append("")
    lines.append(f"{'CONNECTION':<32} {'STATE':<14} {'MINIRDR':<10} STATUS")
    for c in s["connections"]:
        lines.append(
            f"{c['name']:<32} {c['condition']:<14} {c['minirdr'] or '-':<10} "
            f"{status_name(c['status'])}"
        )
    b = s.get("buffering")
    if b:
        lines.append("")
        lines.append(
            f"BUFFERING  collapsed opens {b['collapsed_opens']}, delayed closes "
            f"{b['delayed_now']} now ({b['delayed_reused']} re-used, {b['delayed_closed']} "
            f"closed; delay {b['close_delay_s']:g} s), read cache "
            f"{b['cache_bytes'] / (1 << 20):.1f}/{b['cache_limit'] / (1 << 20):.0f} MiB, "
            f"{b['cache_hits']} hits, {b['cache_misses']} misses; read leases on "
            f"{b.get('leased_files', 0)} files ({b.get('lease_grants', 0)} granted, "
            f"{b.get('lease_breaks', 0)} breaks)"
        )
        if "attr_entries" in b:
            lines.append(
                f"ATTRIBUTES {b['attr_entries']} files kept, {b['attr_hits']} hits, "
                f"{b['attr_misses']} misses, {b['attr_invalidations']} dropped"
            )
        for f in b["files"][:10]:
            delayed = f" delayed {f['delayed_close_s'][0]:g}s" if f["delayed_close_s"] else ""
            lines.append(
                f"  {f['name']:<40} {f['handles']:>3} handles {f['srv_opens']:>2} opens"
                f"{delayed} {','.join(f['state']) or '-'}"
            )
    if s.get("recent_errors"):
        lines.append("")
        lines.append("RECENT ERRORS")
        for e in s["recent_errors"][-5:]:
            lines.append(
                f"  {e['age_s']:>8.1f}s ago {status_name(e['status'])} "
                f"{e['routine']}: {e['message']}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- parsers
def _no_options(parser: argparse.ArgumentParser) -> None:
    pass


def _log_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=["logfmt", "json"],
        help="log line format (default: the config's log_format, else logfmt)",
    )


def _file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="the file (default: --config or the default)")


@dataclass(frozen=True)
class Subcommand:
    name: str
    purpose: str  # one line, shown in `rdbss daemon --help`
    example: str  # shown in `rdbss daemon NAME --help`
    func: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None] = _no_options


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "start",
        "start the daemon in the background",
        "rdbss daemon start",
        cmd_start,
        _log_format_option,
    ),
    Subcommand(
        "run",
        "run the daemon in the foreground (systemd, containers)",
        "rdbss daemon run --log-format json",
        cmd_run,
        _log_format_option,
    ),
    Subcommand(
        "stop", "stop the daemon; in-flight requests finish first", "rdbss daemon stop", cmd_stop
    ),
    Subcommand(
        "status",
        "processes, connections and handles (exit 3: not running)",
        "rdbss daemon status --json",
        cmd_status,
    ),
    Subcommand(
        "reload",
        "re-read the configuration file; exit 2 when it is refused (nothing changes)",
        "rdbss daemon reload",
        cmd_reload,
    ),
    Subcommand(
        "check-config",
        "validate a configuration file without starting anything (exit 0 or 2)",
        "rdbss daemon check-config /etc/rdbss/config.toml",
        cmd_check_config,
        _file_option,
    ),
]


def add_parsers(sub: Any) -> None:
    """``rdbss daemon SUBCOMMAND`` and its ``rdbss status`` shortcut, on ``sub`` (the main
    parser's subparsers)."""
    daemon = add_command(
        sub,
        "daemon",
        "run or manage the daemon",
        ["rdbss daemon start", "rdbss daemon status --json"],
    )
    actions = daemon.add_subparsers(dest="action", required=True, metavar="SUBCOMMAND")
    for s in SUBCOMMANDS:
        s.options(add_command(actions, s.name, s.purpose, [s.example], s.func))
    p = add_command(
        sub, "status", "the daemon's processes, connections and handles", ["rdbss status"]
    )
    p.set_defaults(func=cmd_status)
