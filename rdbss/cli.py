"""The ``rdbss`` command: run and manage the daemon, and use shares through it.

Remote paths are UNC names: ``//local/data/dir/file`` or ``'\\\\local\\data\\dir\\file'``.
Errors print the NTSTATUS name and a readable message, and exit with status 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdbss.config import ConfigError, load_config
from rdbss.wire.status import NtStatusError, status_name

CHUNK = 4 << 20


def _out(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        rendered = text()
        if rendered:
            print(rendered)


def _join(base: str, name: str) -> str:
    sep = "/" if "/" in base and "\\" not in base else "\\"
    return base.rstrip("/\\") + sep + name


def _config(args: argparse.Namespace) -> Any:
    return load_config(Path(args.config) if args.config else None)


def _client(args: argparse.Namespace) -> Any:
    from rdbss.client import Client

    return Client(config=_config(args), timeout=args.timeout)


def _fmt_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------- daemon
def cmd_daemon(args: argparse.Namespace) -> int:
    from rdbss.actors.supervisor import AlreadyRunning, Supervisor, read_pid, start_detached
    from rdbss.actors.supervisor import stop_daemon as stop

    config = _config(args)
    if args.action in ("run", "start") and not config.minirdrs:
        raise ConfigError("this configuration only uses a daemon elsewhere ([client])")
    if args.action == "run":
        from rdbss.logs import setup_logging

        setup_logging("supervisor", config.log_level)
        if config.source is None:
            for m in config.minirdrs:
                for folder in m.options.get("shares", {}).values():
                    Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
        try:
            return Supervisor(config).run()
        except AlreadyRunning as exc:
            print(f"rdbss: {exc}", file=sys.stderr)
            return 1
    if args.action == "start":
        if config.source is None:
            for m in config.minirdrs:
                for folder in m.options.get("shares", {}).values():
                    Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
        try:
            started = start_detached(Path(args.config) if args.config else None, config)
        except AlreadyRunning as exc:
            print(f"rdbss: {exc}")
            return 0
        print(f"rdbss daemon started (pid {started}, runtime dir {config.runtime_dir})")
        return 0
    if args.action == "reload":
        pid = read_pid(config.runtime_dir)
        if pid is None or pid <= 0:
            print("rdbss daemon is not running")
            return 3
        os.kill(pid, signal.SIGHUP)
        print(f"rdbss daemon (pid {pid}) is re-reading its configuration")
        return 0
    if args.action == "stop":
        stopped = stop(config.runtime_dir, timeout=args.timeout)
        print(
            "rdbss daemon is not running"
            if stopped is None
            else f"rdbss daemon stopped (pid {stopped})"
        )
        return 0
    # status
    from rdbss.client import remote_daemon

    remote = remote_daemon(config)
    if remote is not None:  # a daemon on another host: what its core says
        with _client(args) as client:
            status = client.status()
        status["running"] = True
        status["pid"] = None
        status["processes"] = []
        _out(args, status, lambda: f"rdbss daemon at {remote.connect}\n" + _render_status(status))
        return 0
    pid = read_pid(config.runtime_dir)
    if pid is None:
        _out(args, {"running": False}, lambda: "rdbss daemon is not running")
        return 3
    if config.node is not None:
        return _node_status(args, config, pid)
    with _client(args) as client:
        status = client.status()
    status["running"] = True
    status["pid"] = pid
    try:
        sup = json.loads((config.runtime_dir / "supervisor.json").read_text())
        status["processes"] = sup["children"]
    except (OSError, ValueError, KeyError):
        status["processes"] = []
    _out(args, status, lambda: _render_status(status))
    return 0


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

    _out(args, status, text)
    return 0


def _render_status(s: dict[str, Any]) -> str:
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
            f"{b['cache_hits']} hits, {b['cache_misses']} misses"
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


# ---------------------------------------------------------------------------- files
def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.stat(args.path)
        entries = list(client.scandir(args.path, args.pattern)) if info.is_dir else [info]
    data = [
        {"name": e.name, "size": e.size, "dir": e.is_dir, "mtime": e.last_write_time}
        for e in entries
    ]
    if args.long:

        def text() -> str:
            return "\n".join(
                f"{'d' if e.is_dir else '-'} {e.size:>12} {_fmt_time(e.last_write_time)} "
                f"{e.name}{'/' if e.is_dir else ''}"
                for e in entries
            )
    else:

        def text() -> str:
            return "\n".join(f"{e.name}{'/' if e.is_dir else ''}" for e in entries)

    _out(args, data, text)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for path in args.paths:
            with client.open(path, "rb", buffering=0) as f:
                while chunk := f.read(CHUNK):
                    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return 0


def _progress(enabled: bool, name: str, total: int | None) -> Callable[[int], None]:
    start = time.monotonic()
    last = [0.0]

    def update(done: int) -> None:
        if not enabled:
            return
        now = time.monotonic()
        if now - last[0] < 0.2 and (total is None or done < total):
            return
        last[0] = now
        rate = done / max(now - start, 1e-6) / (1 << 20)
        pct = f"{100 * done / total:5.1f}% " if total else ""
        sys.stderr.write(f"\r{name}: {pct}{done / (1 << 20):.1f} MiB {rate:.1f} MiB/s")
        if total is not None and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return update


def cmd_put(args: argparse.Namespace) -> int:
    src = Path(args.local)
    dest = args.remote
    with _client(args) as client:
        try:
            if client.stat(dest).is_dir:
                dest = _join(dest, src.name)
        except FileNotFoundError:
            pass
        total = src.stat().st_size
        show = _progress(sys.stderr.isatty() and not args.quiet, src.name, total)
        done = 0
        with open(src, "rb") as f, client.open(dest, "wb", buffering=0) as out:
            while chunk := f.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    n = out.write(view)
                    view = view[n:]
                    done += n
                show(done)
    _out(args, {"remote": dest, "bytes": done}, lambda: "")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    dest = (
        Path(args.local) if args.local else Path(args.remote.replace("\\", "/").rsplit("/", 1)[-1])
    )
    with _client(args) as client:
        info = client.stat(args.remote)
        if dest.is_dir():
            dest = dest / info.name.replace("\\", "/").rsplit("/", 1)[-1]
        show = _progress(sys.stderr.isatty() and not args.quiet, dest.name, info.size)
        done = 0
        tmp = dest.with_name(f".{dest.name}.rdbss-part")
        with client.open(args.remote, "rb", buffering=0) as f, open(tmp, "wb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                show(done)
        os.replace(tmp, dest)
    _out(args, {"local": str(dest), "bytes": done}, lambda: "")
    return 0


def _is_remote(path: str) -> bool:
    return path.startswith(("//", "\\\\"))


def cmd_cp(args: argparse.Namespace) -> int:
    """Copy files or trees between local folders and shares, in any direction."""
    src, dst = args.src, args.dst
    copied = [0, 0]  # files, bytes
    with _client(args) as client:

        def is_dir(path: str) -> bool:
            if _is_remote(path):
                try:
                    return bool(client.stat(path).is_dir)
                except FileNotFoundError:
                    return False
            return Path(path).is_dir()

        def entries(path: str) -> list[tuple[str, bool]]:
            if _is_remote(path):
                return [(e.name, e.is_dir) for e in client.scandir(path)]
            return [(p.name, p.is_dir()) for p in sorted(Path(path).iterdir())]

        def mkdir(path: str) -> None:
            if _is_remote(path):
                client.mkdir(path, parents=True, exist_ok=True)
            else:
                Path(path).mkdir(parents=True, exist_ok=True)

        def size(path: str) -> int:
            return int(client.stat(path).size) if _is_remote(path) else Path(path).stat().st_size

        def open_(path: str, mode: str) -> Any:
            return client.open(path, mode, buffering=0) if _is_remote(path) else open(path, mode)

        def copy_file(a: str, b: str) -> None:
            total = size(a)
            show = _progress(sys.stderr.isatty() and not args.quiet, a.rsplit("/", 1)[-1], total)
            done = 0
            with open_(a, "rb") as fin, open_(b, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        n = fout.write(view)
                        view = view[n:]
                    done += len(chunk)
                    show(done)
            copied[0] += 1
            copied[1] += done

        def copy_tree(a: str, b: str) -> None:
            mkdir(b)
            for name, directory in entries(a):
                if directory:
                    copy_tree(_join(a, name), _join(b, name))
                else:
                    copy_file(_join(a, name), _join(b, name))

        if is_dir(src):
            if not args.recursive:
                raise IsADirectoryError(f"{src} is a directory (use -r)")
            target = _join(dst, src.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
            copy_tree(src, target if is_dir(dst) else dst)
        else:
            name = src.replace("\\", "/").rsplit("/", 1)[-1]
            copy_file(src, _join(dst, name) if is_dir(dst) else dst)
    _out(
        args,
        {"files": copied[0], "bytes": copied[1]},
        lambda: "" if args.quiet else f"{copied[0]} files, {copied[1]} bytes",
    )
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """Print a shell completion script generated from this parser (so it never drifts)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = sorted(sub.choices)
    options = sorted(o for a in parser._actions for o in a.option_strings)
    per_command = {}
    for name, p in sub.choices.items():
        words = [o for a in p._actions for o in a.option_strings]
        for a in p._actions:
            if a.choices and not a.option_strings:
                words += list(a.choices)
        per_command[name] = " ".join(sorted(set(words)))
    if args.shell == "bash":
        cases = "\n".join(f'        {name}) words="{w}" ;;' for name, w in per_command.items())
        print(f"""# bash completion for rdbss: eval "$(rdbss completion bash)"
_rdbss() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "{" ".join(commands)} {" ".join(options)}" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur") $(compgen -f -- "$cur"))
}}
complete -F _rdbss rdbss""")
    else:
        lines = [
            f"    '{name}:{(sub.choices[name].description or name)[:40]}'" for name in commands
        ]
        print("#compdef rdbss\n# zsh completion for rdbss: rdbss completion zsh > ~/.zfunc/_rdbss")
        print("_rdbss() {\n  local -a commands\n  commands=(\n" + "\n".join(lines) + "\n  )")
        print(
            "  _arguments '1: :->cmd' '*: :_files'\n  [[ $state == cmd ]] && "
            "_describe command commands\n}\n_rdbss"
        )
    return 0


def _remove_tree(client: Any, path: str) -> None:
    for entry in list(client.scandir(path)):
        child = _join(path, entry.name)
        if entry.is_dir:
            _remove_tree(client, child)
        else:
            client.remove(child)
    client.rmdir(path)


def cmd_rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for path in args.paths:
            info = client.stat(path)
            if info.is_dir:
                if args.recursive:
                    _remove_tree(client, path)
                else:
                    client.rmdir(path)
            else:
                client.remove(path)
    return 0


def cmd_mkdir(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for path in args.paths:
            client.mkdir(path, parents=args.parents, exist_ok=args.parents)
    return 0


def cmd_mv(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.rename(args.src, args.dst, replace=args.force)
    return 0


def _security_summary(client: Any, path: str) -> dict[str, Any]:
    """Owner, group and (POSIX backends) permission bits for ``rdbss stat``; nothing where the
    backend keeps no security descriptor (STATUS_NOT_IMPLEMENTED) or it cannot be read."""
    try:
        sd = client.query_security(path)
    except NtStatusError:
        return {}
    out: dict[str, Any] = {
        "owner": sd.get("owner_name") or sd.get("owner"),
        "group": sd.get("group_name") or sd.get("group"),
    }
    if isinstance(sd.get("mode"), int):
        out["permissions"] = f"{sd['mode'] & 0o7777:04o}"
    return out


def cmd_stat(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.stat(args.path)
        security = _security_summary(client, args.path)
    data = {
        "name": info.name,
        "size": info.size,
        "directory": info.is_dir,
        "attributes": info.attributes,
        "creation_time": info.creation_time,
        "last_access_time": info.last_access_time,
        "last_write_time": info.last_write_time,
        "change_time": info.change_time,
        **info.extra,
        **security,
    }
    _out(
        args,
        data,
        lambda: "\n".join(
            f"{k:>17}: {_fmt_time(v) if k.endswith('_time') else v}" for k, v in data.items()
        ),
    )
    return 0


def cmd_use(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "add":
            folder = str(Path(args.folder).resolve())
            client.add_share(args.share, folder, args.minirdr)
            _out(
                args,
                {"added": args.share, "path": folder},
                lambda: f"\\\\{client.shares(args.minirdr)['server']}\\{args.share} -> {folder}",
            )
            return 0
        if args.action == "rm":
            client.remove_share(args.share, args.minirdr)
            return 0
        shares = client.shares(args.minirdr)
        status = client.status()
    server = shares.get("server", "?")
    connected = {c["name"].lower(): c["condition"] for c in status["connections"]}

    def text() -> str:
        rows = [f"{'SHARE':<32} {'STATE':<14} FOLDER"]
        for name, folder in sorted(shares.get("shares", {}).items()):
            unc = f"\\\\{server}\\{name}"
            rows.append(f"{unc:<32} {connected.get(unc.lower(), '-'):<14} {folder}")
        return "\n".join(rows)

    _out(args, shares, text)
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    from rdbss.fuse_mount import cmd_mount as run  # lazy: the CLI works without mfusepy

    code: int = run(args)
    return code


def cmd_experiment(args: argparse.Namespace) -> int:
    from rdbss.experiment import command  # lazy: matplotlib only when an experiment runs

    code: int = command(args)
    return code


def cmd_fault(args: argparse.Namespace) -> int:
    import tomllib

    with _client(args) as client:
        if args.action == "set":
            if not args.file:
                raise ConfigError("fault set needs a TOML file with [[rules]] tables")
            data = tomllib.loads(Path(args.file).read_text())
            rules = data.get("rules", [])
            seed = args.seed if args.seed is not None else data.get("seed")
            result = client.set_faults(args.minirdr, rules, seed)
        elif args.action == "clear":
            result = client.set_faults(args.minirdr, [], args.seed)
        else:
            result = client.faults(args.minirdr)

    def text() -> str:
        rows = [f"{args.minirdr} (wraps {result['wraps']}), seed {result['seed']}"]
        for i, rule in enumerate(result["rules"], 1):
            details = " ".join(f"{k}={v}" for k, v in rule.items())
            rows.append(f"  {i}. {details}")
        if not result["rules"]:
            rows.append("  no rules")
        return "\n".join(rows)

    _out(args, result, text)
    return 0


# ---------------------------------------------------------------------------- keys
def cmd_keys(args: argparse.Namespace) -> int:
    from rdbss import keys

    try:
        if args.action == "generate":
            public, secret = keys.generate(Path(args.dir), args.name)
            key = keys.load_public(str(public)).decode()
            result = {"public_key": key, "public_file": str(public), "secret_file": str(secret)}
            _out(
                args,
                result,
                lambda: (
                    f"{secret} (secret, mode 600)\n{public} (public)\n"
                    f"public key: {key}\n"
                    f"allow it on the core host with a line in authorized_keys, e.g.:\n"
                    f"  {key}  {args.name}  peer:NAME   (or: client)"
                ),
            )
        else:
            key = keys.load_public(args.name).decode()
            _out(args, {"public_key": key}, lambda: key)
    except keys.KeyFileError as exc:
        print(f"rdbss: {exc}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdbss", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", help="configuration file (default: ~/.config/rdbss/config.toml)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--connect",
        metavar="tcp://HOST:PORT",
        help="use the daemon of another host (its client_listen); needs --core-key and --key "
        "(or $RDBSS_CORE_KEY, $RDBSS_SECRET_KEY); default $RDBSS_CONNECT or the config's [client]",
    )
    parser.add_argument("--core-key", help="that daemon's public key (file or Z85 text)")
    parser.add_argument("--key", help="this client's .key_secret file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("daemon", help="run or manage the daemon")
    p.add_argument("action", choices=["start", "stop", "status", "run", "reload"])
    p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("status", help="the daemon's processes, connections and handles")
    p.set_defaults(func=cmd_daemon, action="status")
    p = sub.add_parser("keys", help="CURVE keys for tcp:// links between hosts")
    p.add_argument("action", choices=["generate", "show"])
    p.add_argument("name", help="generate: key name (NAME.key, NAME.key_secret); show: key file")
    p.add_argument("--dir", default=".", help="generate: where to write the key files")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("ls", help="list a directory")
    p.add_argument("path")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard pattern (default *)")
    p.add_argument("-l", "--long", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("cat", help="print files")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_cat)
    for name, func, helptext in (
        ("put", cmd_put, "copy a local file to a share"),
        ("get", cmd_get, "copy a file from a share"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "put":
            p.add_argument("local")
            p.add_argument("remote")
        else:
            p.add_argument("remote")
            p.add_argument("local", nargs="?")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
    p = sub.add_parser("cp", help="copy files or trees (-r) between folders and shares")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_cp)
    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=cmd_completion)
    p = sub.add_parser("rm", help="remove files or directories")
    p.add_argument("paths", nargs="+")
    p.add_argument("-r", "--recursive", action="store_true")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("mkdir", help="make directories")
    p.add_argument("paths", nargs="+")
    p.add_argument("-p", "--parents", action="store_true")
    p.set_defaults(func=cmd_mkdir)
    p = sub.add_parser("mv", help="rename or move within a share")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing target")
    p.set_defaults(func=cmd_mv)
    p = sub.add_parser("stat", help="file information")
    p.add_argument("path")
    p.set_defaults(func=cmd_stat)
    p = sub.add_parser("use", help="list, add or remove shares of the local mini-redirector")
    p.add_argument("action", nargs="?", choices=["list", "add", "rm"], default="list")
    p.add_argument("share", nargs="?")
    p.add_argument("folder", nargs="?")
    p.add_argument("--minirdr", help="which mini-redirector (default: the local one)")
    p.set_defaults(func=cmd_use)
    p = sub.add_parser("mount", help="mount a share with FUSE (until fusermount3 -u MOUNTPOINT)")
    p.add_argument("share", help=r"\\server\share or //server/share[/folder]")
    p.add_argument("mountpoint")
    p.add_argument(
        "-o", dest="options", metavar="OPT,...", help="attr_timeout=S, writeback_cache, allow_other"
    )
    p.add_argument("--background", action="store_true", help="detach once mounted")
    p.set_defaults(func=cmd_mount)
    p = sub.add_parser("fault", help="show or change the rules of a faulty mini-redirector")
    p.add_argument("action", choices=["list", "set", "clear"])
    p.add_argument("minirdr", help="name of the faulty mini-redirector")
    p.add_argument("file", nargs="?", help="set: TOML file with [[rules]] tables (and seed)")
    p.add_argument("--seed", type=int, help="a new seed (the schedule starts over)")
    p.set_defaults(func=cmd_fault)
    p = sub.add_parser("experiment", help="run a fault-injection experiment and write a report")
    p.add_argument("action", choices=["run", "plan"])
    p.add_argument("file", help="experiment file (TOML), e.g. deploy/experiments/kill-local.toml")
    p.add_argument("--out", help="report folder (default: ./experiment-<name>-<time>)")
    p.add_argument("--client", type=int, default=0, help="plan: which client's operations")
    p.add_argument("--count", type=int, default=20, help="plan: how many operations")
    p.set_defaults(func=cmd_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, variable in (
        ("connect", "RDBSS_CONNECT"),
        ("core_key", "RDBSS_CORE_KEY"),
        ("key", "RDBSS_SECRET_KEY"),
    ):
        if getattr(args, option):
            os.environ[variable] = getattr(args, option)
    if args.command == "use" and args.action in ("add", "rm") and not args.share:
        parser.error("use add/rm needs a share name")
    if args.command == "use" and args.action == "add" and not args.folder:
        parser.error("use add needs a folder")
    try:
        code: int = args.func(args)
        return code
    except NtStatusError as exc:
        print(f"rdbss: {exc.status_name} (0x{exc.status:08X}): {exc.strerror}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"rdbss: configuration: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"rdbss: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
