"""The command line: every subcommand with its one-line purpose, its options and an example.

Options every command accepts anywhere on the line (before or after the subcommand): --json,
-q/--quiet, --config, --timeout. They live on the main parser (default values) and again on
each subcommand with ``default=SUPPRESS``, so a subcommand that was not given one never
overwrites what was given before it. Usage errors raise ``UsageError`` (rdbss.cli.main prints
them as text or JSON and exits 2) instead of argparse's own exit.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from rdbss.cli import commands, completion, daemon
from rdbss.cli.output import EXIT_CODES_HELP, UsageError

Formatter = argparse.RawDescriptionHelpFormatter

DESCRIPTION = """\
rdbss: a user-space network redirector. Run the daemon, and use the shares it serves.

Remote paths are UNC names: //server/share/dir/file or '\\\\server\\share\\dir\\file'.
Local paths are ordinary paths, relative to the working directory or absolute."""

EPILOG = f"""\
examples:
  rdbss daemon start
  rdbss ls //local                       # the shares of a server
  rdbss put -r photos //local/data/      # a tree, with a progress bar on a terminal
  rdbss get //local/data/report.csv .
  rdbss stat //local/data/report.csv --json
  rdbss COMMAND --help                   # each command's options and an example

{EXIT_CODES_HELP}

With --json, results are JSON on stdout and errors are one JSON object on stderr:
  {{"status": "STATUS_OBJECT_NAME_NOT_FOUND", "code": 3221225524, "message": "..."}}"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rdbss")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _common(suppress: bool) -> Parser:
    """The options accepted anywhere; ``suppress``: the copies on the subcommands."""
    parser = Parser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("options for every command")
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="results as JSON on stdout, errors as JSON on stderr",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress bar and no summary",
    )
    group.add_argument(
        "--config",
        default=default(None),
        help="configuration file (default: $RDBSS_CONFIG or ~/.config/rdbss/config.toml)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(30.0),
        help="seconds per request (default 30)",
    )
    return parser


def build_parser() -> Parser:
    parser = Parser(
        prog="rdbss",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
        parents=[_common(False)],
    )
    parser.add_argument("--version", action="version", version=f"rdbss {version()}")
    parser.add_argument(
        "--connect",
        metavar="tcp://HOST:PORT",
        help="use the daemon of another host (its client_listen); needs --core-key and --key "
        "(or $RDBSS_CORE_KEY, $RDBSS_SECRET_KEY); default $RDBSS_CONNECT or the config's [client]",
    )
    parser.add_argument("--core-key", help="that daemon's public key (file or Z85 text)")
    parser.add_argument("--key", help="this client's .key_secret file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common(True)]

    def command(
        name: str, purpose: str, example: str, func: Callable[[argparse.Namespace], int]
    ) -> Parser:
        p: Parser = sub.add_parser(
            name,
            help=purpose,
            description=purpose[0].upper() + purpose[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=Formatter,
            parents=common,
        )
        p.set_defaults(func=func)
        return p

    daemon.add_parsers(sub, common, Formatter)

    p = command(
        "ls",
        "list a folder, or the shares of a server",
        "rdbss ls -l //local/data '*.csv'\n  rdbss ls //local",
        commands.cmd_ls,
    )
    p.add_argument(
        "path", help="//server, //server/share or //server/share/folder"
    ).completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument("pattern", nargs="?", default="*", help="wildcard pattern (default *)")
    p.add_argument("-l", "--long", action="store_true", help="sizes and times (shares: folders)")
    p = command(
        "cat", "print files from a share", "rdbss cat //local/data/notes.txt", commands.cmd_cat
    )
    p.add_argument("paths", nargs="+").completer = completion.remote_path  # type: ignore[attr-defined]
    p = command(
        "stat",
        "a file's size, attributes, times and owner",
        "rdbss stat //local/data/notes.txt",
        commands.cmd_stat,
    )
    p.add_argument("path").completer = completion.remote_path  # type: ignore[attr-defined]

    p = command(
        "put",
        "copy a local file or tree (-r) to a share",
        "rdbss put -r photos //local/data/",
        commands.cmd_put,
    )
    p.add_argument("local", help="a file or folder here").completer = completion.any_path  # type: ignore[attr-defined]
    p.add_argument(
        "remote", help="//server/share/... (an existing folder: copied into it)"
    ).completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument(
        "-r", "--recursive", action="store_true", help="copy a folder and everything in it"
    )
    p = command(
        "get",
        "copy a file or tree (-r) from a share",
        "rdbss get -r //local/data/photos ~/Pictures/",
        commands.cmd_get,
    )
    p.add_argument("remote", help="//server/share/...").completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument(
        "local", nargs="?", help="where (default: the working directory)"
    ).completer = completion.any_path  # type: ignore[attr-defined]
    p.add_argument(
        "-r", "--recursive", action="store_true", help="copy a folder and everything in it"
    )
    p = command(
        "cp",
        "copy files or trees (-r) between folders and shares, either way",
        "rdbss cp -r //local/data/photos backup/",
        commands.cmd_cp,
    )
    p.add_argument("src").completer = completion.any_path  # type: ignore[attr-defined]
    p.add_argument("dst").completer = completion.any_path  # type: ignore[attr-defined]
    p.add_argument(
        "-r", "--recursive", action="store_true", help="copy a folder and everything in it"
    )

    p = command(
        "rm",
        "remove files or folders (-r: with their contents)",
        "rdbss rm -r //local/data/old",
        commands.cmd_rm,
    )
    p.add_argument("paths", nargs="+").completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument("-r", "--recursive", action="store_true")
    p = command(
        "mkdir", "make folders on a share", "rdbss mkdir -p //local/data/a/b", commands.cmd_mkdir
    )
    p.add_argument("paths", nargs="+").completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument(
        "-p", "--parents", action="store_true", help="make missing parents; no error if it exists"
    )
    p = command(
        "mv",
        "rename or move within a share",
        "rdbss mv //local/data/a.txt //local/data/b.txt",
        commands.cmd_mv,
    )
    p.add_argument("src").completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument("dst").completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument("-f", "--force", action="store_true", help="replace an existing target")

    p = command(
        "use",
        "list, add or remove shares of the local mini-redirector",
        "rdbss use add music ~/Music",
        commands.cmd_use,
    )
    p.add_argument("action", nargs="?", choices=["list", "add", "rm"], default="list")
    p.add_argument("share", nargs="?")
    p.add_argument("folder", nargs="?").completer = completion.local_dir  # type: ignore[attr-defined]
    p.add_argument("--minirdr", help="which mini-redirector (default: the local one)")
    p = command(
        "mount",
        "mount a share with FUSE (until fusermount3 -u MOUNTPOINT)",
        "rdbss mount //local/data /mnt/data",
        commands.cmd_mount,
    )
    p.add_argument(
        "share", help=r"\\server\share or //server/share[/folder]"
    ).completer = completion.remote_path  # type: ignore[attr-defined]
    p.add_argument("mountpoint").completer = completion.local_dir  # type: ignore[attr-defined]
    p.add_argument(
        "-o", dest="options", metavar="OPT[,OPT...]", help="FUSE options, e.g. ro,allow_other"
    )
    p.add_argument("--background", action="store_true", help="detach once mounted")
    p = command(
        "keys",
        "make or show CURVE keys for tcp:// links between hosts",
        "rdbss keys generate core --dir keys/",
        commands.cmd_keys,
    )
    p.add_argument("action", choices=["generate", "show"])
    p.add_argument("name", help="generate: key name (NAME.key, NAME.key_secret); show: key file")
    p.add_argument("--dir", default=".", help="generate: where to write the key files")
    p = command(
        "fault",
        "show or change the rules of a faulty mini-redirector",
        "rdbss fault set flaky rules.toml",
        commands.cmd_fault,
    )
    p.add_argument("action", choices=["list", "set", "clear"])
    p.add_argument("minirdr", help="name of the faulty mini-redirector")
    p.add_argument("file", nargs="?", help="set: TOML file with [[rules]] tables (and seed)")
    p.add_argument("--seed", type=int, help="a new seed (the schedule starts over)")
    p = command(
        "experiment",
        "run a fault-injection experiment and write a report",
        "rdbss experiment run deploy/experiments/kill-local.toml",
        commands.cmd_experiment,
    )
    p.add_argument("action", choices=["run", "plan"])
    p.add_argument("file", help="experiment file (TOML), e.g. deploy/experiments/kill-local.toml")
    p.add_argument("--out", help="report folder (default: ./experiment-<name>-<time>)")
    p.add_argument("--client", type=int, default=0, help="plan: which client's operations")
    p.add_argument("--count", type=int, default=20, help="plan: how many operations")
    p = command(
        "completion",
        "print the shell completion hook (bash, zsh or fish)",
        "rdbss completion bash > ~/.local/share/bash-completion/completions/rdbss\n"
        "  rdbss completion zsh > ~/.zfunc/_rdbss     # with fpath+=(~/.zfunc) in ~/.zshrc\n"
        "  rdbss completion fish > ~/.config/fish/completions/rdbss.fish",
        completion.cmd_completion,
    )
    p.add_argument("shell", choices=completion.SHELLS)
    return parser
