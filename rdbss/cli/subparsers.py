"""How a subcommand is declared: its one-line purpose, its examples (shown by ``--help``), the
options every command accepts anywhere on the line, and the completer of an argument.

The options for every command (--json, -q/--quiet, --config, --timeout) live on the main parser
(with their defaults) and again on each subcommand with ``default=SUPPRESS``, so a subcommand
that was not given one never overwrites what was given before it. Usage errors raise
``UsageError`` (rdbss.cli.main prints them as text or JSON and exits 2) instead of argparse's
own exit.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rdbss.cli.output import UsageError

Formatter = argparse.RawDescriptionHelpFormatter
Command = Callable[[argparse.Namespace], int]
Completer = Callable[..., list[str]]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


def common_options(on_subcommand: bool) -> Parser:
    """The options accepted anywhere (a parent parser)."""
    parser = Parser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if on_subcommand else value

    group = parser.add_argument_group("options for every command")
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="results as JSON on stdout, errors as JSON on stderr",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="no progress, no summary"
    )
    group.add_argument(
        "--config",
        default=default(None),
        help="configuration file (default: $RDBSS_CONFIG or ~/.config/rdbss/config.toml)",
    )
    group.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per request (default 30)"
    )
    return parser


def add_command(
    sub: Any, name: str, purpose: str, examples: Sequence[str], func: Command | None = None
) -> Parser:
    """A subcommand of ``sub`` (an argparse subparsers action): ``purpose`` is its one line in
    the list of commands and the start of its own help, ``examples`` end its help."""
    heading = "example:" if len(examples) == 1 else "examples:"
    parser: Parser = sub.add_parser(
        name,
        help=purpose,
        description=purpose[0].upper() + purpose[1:] + ".",
        epilog=heading + "".join(f"\n  {e}" for e in examples),
        formatter_class=Formatter,
        parents=[common_options(True)],
    )
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def argument(
    parser: argparse.ArgumentParser, *names: str, complete: Completer | None = None, **kw: Any
) -> None:
    """An argument, completed by ``complete`` (argcomplete's protocol) when given."""
    action = parser.add_argument(*names, **kw)
    if complete is not None:
        action.completer = complete  # type: ignore[attr-defined]
