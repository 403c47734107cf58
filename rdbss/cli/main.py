"""``rdbss``: parse the line, run the command, turn a failure into its message and exit code."""

from __future__ import annotations

import os
import sys

from rdbss.cli.output import (
    EXIT_ERROR,
    EXIT_USAGE,
    UsageError,
    error_fields,
    report_error,
)
from rdbss.cli.parser import build_parser
from rdbss.config import ConfigError
from rdbss.wire.status import NtStatus

_ENVIRONMENT = (
    ("connect", "RDBSS_CONNECT"),
    ("core_key", "RDBSS_CORE_KEY"),
    ("key", "RDBSS_SECRET_KEY"),
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks what completes a word (completion.py)
        import argcomplete

        argcomplete.autocomplete(parser)
    words = argv[: argv.index("--")] if "--" in argv else argv
    json_errors = "--json" in words
    invalid = int(NtStatus.STATUS_INVALID_PARAMETER)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        report_error(json_errors, invalid, str(exc), f"{exc.usage}rdbss: error: {exc}")
        return EXIT_USAGE
    for option, variable in _ENVIRONMENT:
        if getattr(args, option):
            os.environ[variable] = getattr(args, option)
    try:
        code: int = args.func(args)
        return code
    except UsageError as exc:
        report_error(json_errors, invalid, str(exc), f"rdbss: error: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        report_error(json_errors, invalid, str(exc), f"rdbss: configuration: {exc}")
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except (OSError, RuntimeError) as exc:  # NtStatusError, a local OSError, TimeoutError
        report_error(json_errors, *error_fields(exc))
        return EXIT_ERROR
