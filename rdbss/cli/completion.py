"""Shell completion through argcomplete: ``rdbss completion bash|zsh|fish`` prints the hook
that makes the shell ask ``rdbss`` itself what completes the word being typed (so completion
follows the parser and never drifts). Local paths complete as files; UNC paths (``//server/``,
``//server/share/``, ``//server/share/dir/...``) complete from the running daemon, with a short
deadline so a missing or stuck daemon costs at most ``DEADLINE_S`` and completes nothing."""

from __future__ import annotations

import argparse
from typing import Any

from rdbss.cli import paths
from rdbss.cli.output import EXIT_OK

SHELLS = ("bash", "zsh", "fish")
DEADLINE_S = 1.0


def remote_candidates(prefix: str, parsed_args: argparse.Namespace) -> list[str]:
    """What completes a UNC prefix, in the spelling the user typed (``//`` or ``\\\\``)."""
    from rdbss.cli.context import client_of, config_of
    from rdbss.cli.shares import server_shares

    sep = "\\" if prefix.startswith("\\") else "/"
    parts = prefix[2:].replace("/", sep).replace("\\", sep).split(sep)
    lead = sep * 2
    with client_of(parsed_args, timeout=DEADLINE_S) as client:
        if len(parts) == 1:
            servers = {
                str(s)
                for peer in client.status().get("peers", [])
                for s in peer.get("servers") or []
            }
            return sorted(
                f"{lead}{s}{sep}" for s in servers if s.lower().startswith(parts[0].lower())
            )
        if len(parts) == 2:
            shares = server_shares(client, config_of(parsed_args), parts[0])
            return [
                f"{lead}{parts[0]}{sep}{s['name']}{sep}"
                for s in shares
                if str(s["name"]).lower().startswith(parts[1].lower())
            ]
        folder = lead + sep.join(parts[:-1])
        return sorted(
            f"{folder}{sep}{e.name}{sep if e.is_dir else ''}"
            for e in client.scandir(folder, parts[-1] + "*")
            if e.name not in (".", "..")
        )


def _remote(prefix: str, parsed_args: argparse.Namespace) -> list[str]:
    try:
        return remote_candidates(prefix, parsed_args)
    except Exception:  # completion shows nothing rather than a traceback in the shell
        return []


def remote_path(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """A path on a share."""
    if not prefix or prefix in ("/", "\\"):
        prefix = "//"
    return _remote(prefix, parsed_args) if paths.is_remote(prefix) else []


def any_path(prefix: str, parsed_args: argparse.Namespace, **kwargs: Any) -> list[str]:
    """A local path or a path on a share (cp, put, get)."""
    if paths.is_remote(prefix):
        return _remote(prefix, parsed_args)
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter()(prefix, **kwargs))


def local_dir(prefix: str, **kwargs: Any) -> list[str]:
    from argcomplete.completers import DirectoriesCompleter

    return list(DirectoriesCompleter()(prefix, **kwargs))


def cmd_completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["rdbss"], shell=args.shell), end="")
    return EXIT_OK
