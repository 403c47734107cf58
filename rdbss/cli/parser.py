"""The command line: which commands exist, their arguments, purposes and examples (how one is
declared: ``subparsers``; the ``daemon`` subcommands: ``daemon``)."""

from __future__ import annotations

import argparse

from rdbss.cli import commands, completion, daemon
from rdbss.cli.output import EXIT_CODES_HELP
from rdbss.cli.subparsers import Formatter, Parser, add_command, argument, common_options
from rdbss.experiment.cli import add_arguments as experiment_arguments

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

REMOTE = completion.remote_path
ANY = completion.any_path
LOCAL_DIR = completion.local_dir


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rdbss")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _recursive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="a folder and everything in it"
    )


def _file_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    p = add_command(
        sub,
        "ls",
        "list a folder, or the shares of a server",
        ["rdbss ls -l //local/data '*.csv'", "rdbss ls //local"],
        commands.cmd_ls,
    )
    argument(p, "path", complete=REMOTE, help="//server, //server/share or //server/share/dir")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard pattern (default *)")
    p.add_argument("-l", "--long", action="store_true", help="sizes and times (shares: folders)")
    p = add_command(
        sub, "cat", "print files from a share", ["rdbss cat //local/data/a.txt"], commands.cmd_cat
    )
    argument(p, "paths", nargs="+", complete=REMOTE)
    p = add_command(
        sub,
        "stat",
        "a file's size, attributes, times and owner",
        ["rdbss stat //local/data/a.txt", "rdbss stat //local/data/a.txt --json"],
        commands.cmd_stat,
    )
    argument(p, "path", complete=REMOTE)

    p = add_command(
        sub,
        "put",
        "copy a local file or tree (-r) to a share",
        ["rdbss put -r photos //local/data/"],
        commands.cmd_put,
    )
    argument(p, "local", complete=ANY, help="a file or folder here")
    argument(p, "remote", complete=REMOTE, help="//server/share/... (a folder: copied into it)")
    _recursive(p)
    p = add_command(
        sub,
        "get",
        "copy a file or tree (-r) from a share",
        ["rdbss get -r //local/data/photos ~/Pictures/"],
        commands.cmd_get,
    )
    argument(p, "remote", complete=REMOTE, help="//server/share/...")
    argument(p, "local", nargs="?", complete=ANY, help="where (default: the working directory)")
    _recursive(p)
    p = add_command(
        sub,
        "cp",
        "copy files or trees (-r) between folders and shares, either way",
        ["rdbss cp -r //local/data/photos backup/"],
        commands.cmd_cp,
    )
    argument(p, "src", complete=ANY)
    argument(p, "dst", complete=ANY)
    _recursive(p)

    p = add_command(
        sub,
        "rm",
        "remove files or folders (-r: with their contents)",
        ["rdbss rm -r //local/data/old"],
        commands.cmd_rm,
    )
    argument(p, "paths", nargs="+", complete=REMOTE)
    _recursive(p)
    p = add_command(
        sub,
        "mkdir",
        "make folders on a share",
        ["rdbss mkdir -p //local/data/a/b"],
        commands.cmd_mkdir,
    )
    argument(p, "paths", nargs="+", complete=REMOTE)
    p.add_argument("-p", "--parents", action="store_true", help="make parents; exists is fine")
    p = add_command(
        sub,
        "mv",
        "rename or move within a share",
        ["rdbss mv //local/data/a.txt //local/data/b.txt"],
        commands.cmd_mv,
    )
    argument(p, "src", complete=REMOTE)
    argument(p, "dst", complete=REMOTE)
    p.add_argument("-f", "--force", action="store_true", help="replace an existing target")


def _management_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    p = add_command(
        sub,
        "use",
        "list, add or remove shares of the local mini-redirector",
        ["rdbss use add music ~/Music"],
        commands.cmd_use,
    )
    p.add_argument("action", nargs="?", choices=["list", "add", "rm"], default="list")
    p.add_argument("share", nargs="?")
    argument(p, "folder", nargs="?", complete=LOCAL_DIR)
    p.add_argument("--minirdr", help="which mini-redirector (default: the local one)")
    p = add_command(
        sub,
        "mount",
        "mount a share with FUSE (until fusermount3 -u MOUNTPOINT)",
        ["rdbss mount //local/data /mnt/data"],
        commands.cmd_mount,
    )
    argument(p, "share", complete=REMOTE, help=r"\\server\share or //server/share[/folder]")
    argument(p, "mountpoint", complete=LOCAL_DIR)
    p.add_argument(
        "-o",
        dest="options",
        metavar="OPT,...",
        help="notify, attr_timeout=S, read_ahead_kb=K, writeback_cache, allow_other "
        "(docs/mount.md)",
    )
    p.add_argument("--background", action="store_true", help="detach once mounted")
    p = add_command(
        sub,
        "keys",
        "make or show CURVE keys for tcp:// links between hosts",
        ["rdbss keys generate core --dir keys/"],
        commands.cmd_keys,
    )
    p.add_argument("action", choices=["generate", "show"])
    p.add_argument("name", help="generate: key name (NAME.key, NAME.key_secret); show: key file")
    p.add_argument("--dir", default=".", help="generate: where to write the key files")
    p = add_command(
        sub,
        "fault",
        "show or change the rules of a faulty mini-redirector",
        ["rdbss fault set flaky rules.toml"],
        commands.cmd_fault,
    )
    p.add_argument("action", choices=["list", "set", "clear"])
    p.add_argument("minirdr", help="name of the faulty mini-redirector")
    p.add_argument("file", nargs="?", help="set: TOML file with [[rules]] tables (and seed)")
    p.add_argument("--seed", type=int, help="a new seed (the schedule starts over)")
    p = add_command(
        sub,
        "experiment",
        "run a fault-injection experiment and write a report",
        [
            "rdbss experiment run deploy/experiments/blackhole-webdav.toml --out report/",
            "rdbss experiment compare runs-a/ runs-b/",
        ],
        commands.cmd_experiment,
    )
    experiment_arguments(p)  # run FILE | plan FILE | compare DIR_A DIR_B, --repeat N
    p = add_command(
        sub,
        "completion",
        "print the shell completion hook (bash, zsh or fish)",
        [
            "rdbss completion bash > ~/.local/share/bash-completion/completions/rdbss",
            "rdbss completion zsh > ~/.zfunc/_rdbss     # with fpath+=(~/.zfunc) in ~/.zshrc",
            "rdbss completion fish > ~/.config/fish/completions/rdbss.fish",
        ],
        completion.cmd_completion,
    )
    p.add_argument("shell", choices=completion.SHELLS)


def build_parser() -> Parser:
    parser = Parser(
        prog="rdbss",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
        parents=[common_options(False)],
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
    daemon.add_parsers(sub)
    _file_commands(sub)
    _management_commands(sub)
    return parser
