"""Run the mini-redirector conformance suite against a configured backend.

    python -m rdbss.testing --config my.toml --minirdr NAME --root //server/share/scratch \\
        [--host-dir DIR] [--start-daemon] [-- PYTEST ARGS...]

The daemon of ``my.toml`` must be running (or ``--start-daemon`` starts one for the run). Before
any test runs the command checks, each at once and with a readable message, that the
configuration loads and names ``NAME``, that the daemon answers, that ``NAME`` registered with
its core and that ``--root`` is a folder it serves. The suite then works in a new folder
``rdbss-conformance-<time>-<pid>`` under the root (left there afterwards, to look at).
``--host-dir`` is where the root lives on this machine, when it does: the suite then checks
bytes there, behind the server's back.

Exit status: pytest's (0 every test passed or skipped, 1 a test failed, 2 interrupted,
3 internal error, 4 pytest usage error, 5 no test ran), or one of ours when the run could not
start: 10 unusable configuration or arguments, 11 the daemon is not reachable, 12 the
mini-redirector did not register, 13 the root is not a usable folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from rdbss.client import Client
from rdbss.config import ConfigError, load_config
from rdbss.testing import SUITE_MODULES
from rdbss.testing.backend import unc_root
from rdbss.wire import NtStatusError
from rdbss.wire.status import status_name

EXIT_CONFIG = 10
EXIT_DAEMON = 11
EXIT_MINIRDR = 12
EXIT_ROOT = 13
#: Deadline of each check before the suite starts (seconds).
CHECK_TIMEOUT_S = 5.0
PROG = "python -m rdbss.testing"


class Refused(Exception):
    """The run cannot start: ``code`` is the exit status, the message says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_message(exc: NtStatusError) -> str:
    return f"{status_name(exc.status)} (0x{exc.status & 0xFFFFFFFF:08X}): {exc.strerror}"


@dataclass(frozen=True)
class Target:
    config: Path
    minirdr: str
    root: str
    host_dir: Path | None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise Refused(EXIT_CONFIG, message)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    pytest_args: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, pytest_args = args[:at], args[at + 1 :]
    parser = _Parser(
        prog=PROG,
        description="Run the rdbss mini-redirector conformance suite against a configured "
        "backend; arguments after -- go to pytest.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the daemon's configuration")
    parser.add_argument("--minirdr", required=True, help="the mini-redirector under test")
    parser.add_argument(
        "--root", required=True, help="a scratch folder it serves, //server/share/folder"
    )
    parser.add_argument("--host-dir", type=Path, help="where that folder is on this machine")
    parser.add_argument(
        "--start-daemon", action="store_true", help="start a daemon on the configuration"
    )
    return parser.parse_args(args), pytest_args


def check_config(path: Path, minirdr: str) -> Path:
    """The daemon's runtime directory, once the configuration loads and names ``minirdr``."""
    try:
        config = load_config(path)
    except (ConfigError, OSError) as exc:
        raise Refused(EXIT_CONFIG, f"cannot use the configuration {path}: {exc}") from None
    names = [m.name for m in config.minirdrs]
    if minirdr not in names:
        raise Refused(
            EXIT_CONFIG, f"{path} configures no mini-redirector {minirdr!r} (it has: {names})"
        )
    return config.runtime_dir


def check_daemon(runtime_dir: Path, target: Target) -> str:
    """Ask the daemon what ``target.minirdr`` registered; make the run's scratch folder under
    the root and return its UNC name."""
    hint = (
        f"; for this configuration: `rdbss daemon start --config {target.config}`,"
        " or run with --start-daemon"
    )
    try:
        client = Client(runtime_dir, timeout=CHECK_TIMEOUT_S)
    except NtStatusError as exc:
        raise Refused(EXIT_DAEMON, f"daemon not reachable: {status_message(exc)}{hint}") from None
    with client:
        try:
            peers = client.status()["peers"]
        except NtStatusError as exc:
            message = f"daemon not reachable: {status_message(exc)}{hint}"
            raise Refused(EXIT_DAEMON, message) from None
        names = sorted(str(p["name"]) for p in peers)
        if target.minirdr not in names:
            raise Refused(
                EXIT_MINIRDR,
                f"mini-redirector {target.minirdr!r} is not registered with the daemon's core "
                f"(registered: {names}); see the daemon's log in {runtime_dir}",
            )
        try:
            if not client.stat(target.root).is_dir:
                raise Refused(EXIT_ROOT, f"{target.root} is not a folder")
            run = f"rdbss-conformance-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            scratch = f"{target.root}\\{run}"
            client.mkdir(scratch)
        except NtStatusError as exc:
            raise Refused(EXIT_ROOT, f"{target.root}: {status_message(exc)}") from None
    return scratch


@contextlib.contextmanager
def started(config: Path, start: bool) -> Iterator[None]:
    if not start:
        yield
        return
    from rdbss.testing.daemon import daemon_on_config

    try:
        with daemon_on_config(config):
            yield
    except NtStatusError as exc:
        raise Refused(EXIT_DAEMON, f"the daemon did not start: {status_message(exc)}") from None


def run(argv: Sequence[str]) -> int:
    options, pytest_args = parse_args(argv)
    try:
        root = unc_root(options.root)
    except ValueError as exc:
        raise Refused(EXIT_CONFIG, str(exc)) from None
    target = Target(options.config.resolve(), options.minirdr, root, options.host_dir)
    if target.host_dir is not None and not target.host_dir.is_dir():
        raise Refused(EXIT_CONFIG, f"--host-dir {target.host_dir} is not a folder")
    runtime_dir = check_config(target.config, target.minirdr)
    with started(target.config, options.start_daemon):
        scratch = check_daemon(runtime_dir, target)
        plugin_args = [
            f"--rdbss-config={target.config}",
            f"--rdbss-minirdr={target.minirdr}",
            f"--rdbss-root={scratch}",
        ]
        if target.host_dir is not None:
            host = target.host_dir.joinpath(scratch.rsplit("\\", 1)[1])
            plugin_args.append(f"--rdbss-host-dir={host}")
        import pytest  # after the checks: they need no pytest

        return int(
            pytest.main(
                [
                    # the suite's own settings, whatever configuration the current folder has
                    f"--config-file={os.devnull}",
                    "--noconftest",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "rdbss.testing.plugin",
                    *plugin_args,
                    "--pyargs",
                    *(f"rdbss.testing.suite.{name}" for name in SUITE_MODULES),
                    *pytest_args,
                ]
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Refused as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 2


if __name__ == "__main__":
    sys.exit(main())
