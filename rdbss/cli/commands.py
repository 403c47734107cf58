"""The file and share commands: ls, cat, stat, cp/put/get, rm, mkdir, mv, use, fault, keys,
mount, experiment. Each ``cmd_*`` takes the parsed arguments and returns the exit code; errors
are raised (``rdbss.cli.main`` turns them into the message and the exit code)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import Any

from rdbss.cli import paths
from rdbss.cli.context import client_of, config_of
from rdbss.cli.output import (
    EXIT_OK,
    UsageError,
    attribute_names,
    emit,
    human_size,
    human_time,
    short_time,
    wants_json,
)
from rdbss.cli.progress import wanted as progress_wanted
from rdbss.cli.shares import server_shares
from rdbss.cli.transfer import CHUNK, copy
from rdbss.config import ConfigError
from rdbss.wire.status import NtStatusError


# ---------------------------------------------------------------------------- listing
def cmd_ls(args: argparse.Namespace) -> int:
    if paths.is_remote(args.path) and not paths.split_unc(args.path).share:
        return _ls_server(args, paths.split_unc(args.path).server)
    with client_of(args) as client:
        info = client.stat(args.path)
        # a file is listed by its own name, as its folder's listing names it (a stat's answer
        # names it by its path in the share)
        file = dataclasses.replace(info, name=info.name.rsplit("\\", 1)[-1])
        entries = list(client.scandir(args.path, args.pattern)) if info.is_dir else [file]
    data = [
        {
            "name": e.name,
            "size": e.size,
            "dir": e.is_dir,
            "attributes": e.attributes,
            "mtime": e.last_write_time,
        }
        for e in entries
    ]

    def text() -> str:
        if not args.long:
            return "\n".join(f"{e.name}{'/' if e.is_dir else ''}" for e in entries)
        return "\n".join(
            f"{'d' if e.is_dir else '-'} {e.size:>12} {short_time(e.last_write_time)} "
            f"{e.name}{'/' if e.is_dir else ''}"
            for e in entries
        )

    emit(args, data, text)
    return EXIT_OK


def _ls_server(args: argparse.Namespace, server: str) -> int:
    """``ls //server``: the shares of a server, as ``net view \\\\server`` lists them."""
    with client_of(args) as client:
        shares = server_shares(client, config_of(args), server)

    def text() -> str:
        if not args.long:
            return "\n".join(f"{s['name']}/" for s in shares)
        rows = [f"{'SHARE':<24} {'MINIRDR':<12} {'KIND':<8} FOLDER"]
        rows += [f"{s['name']:<24} {s['minirdr']:<12} {s['kind']:<8} {s['folder']}" for s in shares]
        return "\n".join(rows)

    emit(args, shares, text)
    return EXIT_OK


def cmd_cat(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        for path in args.paths:
            with client.open(path, "rb", buffering=0) as f:
                while chunk := f.read(CHUNK):
                    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return EXIT_OK


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
    """Attributes by name and local times in text; the raw numbers with --json."""
    with client_of(args) as client:
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

    def shown(key: str, value: Any) -> Any:
        if key == "attributes":
            return attribute_names(int(value))
        if key.endswith("_time") and isinstance(value, int):
            return human_time(value)
        if key == "size":
            return f"{value} ({human_size(int(value))})" if value >= 1024 else value
        return value

    emit(args, data, lambda: "\n".join(f"{k:>17}: {shown(k, v)}" for k, v in data.items()))
    return EXIT_OK


# ---------------------------------------------------------------------------- transfers
def _transfer(args: argparse.Namespace, src: str, dst: str, recursive: bool) -> int:
    with client_of(args) as client:
        result = copy(
            client,
            src,
            dst,
            recursive=recursive,
            show_progress=progress_wanted(args.quiet, wants_json(args)),
        )
    files = "1 file" if result["files"] == 1 else f"{result['files']} files"
    emit(
        args,
        result,
        lambda: (
            "" if args.quiet else f"{files}, {human_size(result['bytes'])} -> {result['target']}"
        ),
    )
    return EXIT_OK


def cmd_cp(args: argparse.Namespace) -> int:
    return _transfer(args, args.src, args.dst, args.recursive)


def cmd_put(args: argparse.Namespace) -> int:
    if not paths.is_remote(args.remote):
        raise UsageError(f"put copies to a share: {args.remote!r} is not //server/share/...")
    return _transfer(args, args.local, args.remote, args.recursive)


def cmd_get(args: argparse.Namespace) -> int:
    if not paths.is_remote(args.remote):
        raise UsageError(f"get copies from a share: {args.remote!r} is not //server/share/...")
    return _transfer(args, args.remote, args.local or ".", args.recursive)


# ---------------------------------------------------------------------------- changes
def _remove_tree(client: Any, path: str) -> None:
    for entry in list(client.scandir(path)):
        child = paths.unc_join(path, entry.name)
        if entry.is_dir:
            _remove_tree(client, child)
        else:
            client.remove(child)
    client.rmdir(path)


def cmd_rm(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        for path in args.paths:
            info = client.stat(path)
            if info.is_dir:
                if args.recursive:
                    _remove_tree(client, path)
                else:
                    client.rmdir(path)
            else:
                client.remove(path)
    return EXIT_OK


def cmd_mkdir(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        for path in args.paths:
            client.mkdir(path, parents=args.parents, exist_ok=args.parents)
    return EXIT_OK


def cmd_mv(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        client.rename(args.src, args.dst, replace=args.force)
    return EXIT_OK


# ---------------------------------------------------------------------------- management
def cmd_use(args: argparse.Namespace) -> int:
    if args.action in ("add", "rm") and not args.share:
        raise UsageError(f"use {args.action} needs a share name")
    if args.action == "add" and not args.folder:
        raise UsageError("use add needs a folder")
    with client_of(args) as client:
        if args.action == "add":
            folder = str(Path(args.folder).resolve())
            client.add_share(args.share, folder, args.minirdr)
            server = client.shares(args.minirdr)["server"]
            emit(
                args,
                {"added": args.share, "path": folder},
                lambda: f"\\\\{server}\\{args.share} -> {folder}",
            )
            return EXIT_OK
        if args.action == "rm":
            client.remove_share(args.share, args.minirdr)
            return EXIT_OK
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

    emit(args, shares, text)
    return EXIT_OK


def cmd_fault(args: argparse.Namespace) -> int:
    with client_of(args) as client:
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

    emit(args, result, text)
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from rdbss import keys

    try:
        if args.action == "generate":
            public, secret = keys.generate(Path(args.dir), args.name)
            key = keys.load_public(str(public)).decode()
            result = {"public_key": key, "public_file": str(public), "secret_file": str(secret)}
            emit(
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
            emit(args, {"public_key": key}, lambda: key)
    except keys.KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    return EXIT_OK


def cmd_mount(args: argparse.Namespace) -> int:
    from rdbss.fuse_mount import cmd_mount as run  # lazy: the CLI works without pyfuse3

    code: int = run(args)
    return code


def cmd_experiment(args: argparse.Namespace) -> int:
    from rdbss.experiment import command  # lazy: matplotlib only when an experiment runs

    code: int = command(args)
    return code
