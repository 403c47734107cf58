"""The daemon configuration an experiment runs with: the file's setup with its placeholders
replaced (``{tmp}``, ``{proxy.NAME.port}``, ``{proxy.NAME.host}``, ``{env.VAR}``), a private
runtime directory and short default timeouts, written as TOML for ``rdbss.config``. Pure.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rdbss.experiment.schema import Experiment, ExperimentError


def substitute(value: Any, replacements: Mapping[str, Any]) -> Any:
    """Replace placeholders in every string; a string that is exactly one placeholder takes
    the replacement's own type (a port stays an integer)."""
    if isinstance(value, str):
        if value in replacements:
            return replacements[value]
        for key, repl in replacements.items():
            value = value.replace(key, str(repl))
        return value
    if isinstance(value, list | tuple):
        return [substitute(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    return value


PORT_PLACEHOLDER = re.compile(r"\{port\.([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_PLACEHOLDER = re.compile(r"\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def placeholders(
    base: Path,
    proxies: Mapping[str, tuple[str, int]],
    env: Mapping[str, str] | None = None,
    text: str = "",
) -> dict[str, Any]:
    """The replacements of a run in ``base`` with proxies listening at ``proxies``: ``{tmp}``,
    ``{python}`` (this interpreter), ``{proxy.NAME.host}`` / ``{proxy.NAME.port}``, ``{env.X}``
    for every environment variable (a server address the user started, say) and a free
    loopback port for every ``{port.NAME}`` in ``text`` (the experiment file)."""
    replacements: dict[str, Any] = {"{tmp}": str(base), "{python}": sys.executable}
    for name in sorted(set(PORT_PLACEHOLDER.findall(text))):
        replacements[f"{{port.{name}}}"] = free_port()
    for name, (host, port) in proxies.items():
        replacements[f"{{proxy.{name}.port}}"] = port
        replacements[f"{{proxy.{name}.host}}"] = host
    for key, value in (os.environ if env is None else env).items():
        replacements[f"{{env.{key}}}"] = value
    return replacements


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ExperimentError(f"cannot write {value!r} into a TOML configuration")


def config_toml(config: Mapping[str, Any]) -> str:
    """A daemon configuration ({daemon: {...}, minirdr: [...]}) as TOML text."""
    lines = ["[daemon]"]
    for key, value in config.get("daemon", {}).items():
        lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for entry in config.get("minirdr", []):
        lines += ["", "[[minirdr]]"]
        for key, value in entry.items():
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def check_env(value: Any) -> None:
    """Refuse what still holds an ``{env.X}`` placeholder: X is not set."""
    missing = sorted(set(ENV_PLACEHOLDER.findall(json.dumps(value))))
    if missing:
        name = missing[0]
        raise ExperimentError(
            f"setup: the file uses {{env.{name}}}, but {name} is not set (the experiment "
            "file's header says what it needs)"
        )


def daemon_config(
    experiment: Experiment, base: Path, replacements: Mapping[str, Any]
) -> dict[str, Any]:
    """The experiment's daemon configuration for a run in ``base``: placeholders replaced,
    a private runtime directory, short default timeouts."""
    config = substitute(copy.deepcopy(dict(experiment.config)), replacements)
    check_env(config)
    daemon = config.setdefault("daemon", {})
    if not isinstance(daemon, dict):
        raise ExperimentError("setup: [daemon] must be a table")
    daemon["runtime_dir"] = str(base / "run")
    daemon.setdefault("request_timeout", 5.0)
    daemon.setdefault("connect_timeout", 5.0)
    daemon.setdefault("log_level", "info")
    return dict(config)


def share_folders(options: Mapping[str, Any]) -> Iterator[str]:
    """The local folders a mini-redirector entry serves (local and faulty-over-local)."""
    shares = options.get("shares")
    if isinstance(shares, Mapping):
        yield from (str(v) for v in shares.values())
    inner = options.get("options")
    if isinstance(inner, Mapping):
        yield from share_folders(inner)
