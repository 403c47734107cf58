"""What every command needs from the global options: the configuration and a daemon client."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rdbss.config import Config, load_config


def config_of(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config) if getattr(args, "config", None) else None)


def client_of(args: argparse.Namespace, timeout: float | None = None) -> Any:
    from rdbss.client import Client  # lazy: --help, completion and parsing stay fast

    return Client(config=config_of(args), timeout=timeout or args.timeout)
