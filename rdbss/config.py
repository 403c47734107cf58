"""Configuration: one TOML file, with an embedded default.

Location: ``--config PATH``, else ``$RDBSS_CONFIG``, else ``$XDG_CONFIG_HOME/rdbss/config.toml``
(``~/.config/rdbss/config.toml``); when none exists the embedded default runs: the local-folder
mini-redirector serving ``\\\\local\\data`` from ``~/.local/share/rdbss/data``.

Example::

    [daemon]
    runtime_dir = "/run/user/1000/rdbss"   # sockets, pid and lock files (mode 0700)
    log_level = "info"
    request_timeout = 30.0                 # seconds, default deadline of a request
    connect_timeout = 30.0                 # seconds, deadline of a connection set-up
    idle_timeout = 300.0                   # seconds; a connection with no open file is closed
    metrics_port = 9464                    # Prometheus on metrics_host (127.0.0.1); 0 = off
    provider_order = ["local"]             # who wins when several claim one server
    close_delay = 5.0                      # seconds a closed file's server open is kept
    max_delayed_closes = 64                # per server (SrvCall)
    cache_mib = 64                         # the core's read cache, all files together
    write_behind = 1.0                     # seconds deferred writes wait (0: write-through)
    dirty_mib = 16                         # deferred writes, all files together

    [[minirdr]]
    name = "local"
    kind = "local"
    caching = "off"                        # off | handles | exclusive (model/buffering.py)
    server = "local"
    [minirdr.shares]
    data = "~/rdbss-data"
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rdbss.minirdrs import KINDS
from rdbss.model.buffering import grant_for


class ConfigError(ValueError):
    """The configuration file is missing something or says something impossible."""


def default_config_path() -> Path:
    env = os.environ.get("RDBSS_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rdbss" / "config.toml"


def default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "rdbss"
    return Path(f"/tmp/rdbss-{os.getuid()}")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rdbss" / "data"


@dataclass(slots=True)
class MiniRdrConfig:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    caching: str = "off"  # what the core may buffer for it (rdbss.model.buffering.Caching)


@dataclass(slots=True)
class Config:
    runtime_dir: Path = field(default_factory=default_runtime_dir)
    log_level: str = "info"
    request_timeout: float = 30.0
    connect_timeout: float = 30.0
    idle_timeout: float = 300.0
    metrics_port: int = 0  # 0: no metrics endpoint
    metrics_host: str = "127.0.0.1"
    provider_order: list[str] = field(default_factory=list)
    close_delay: float = 5.0  # delayed close: how long a closed server open is kept
    max_delayed_closes: int = 64  # per SrvCall (MaximumNumberOfCloseDelayedFiles)
    cache_mib: float = 64.0  # the core's read cache
    write_behind: float = 1.0  # WRITEBUFFERING: how long a deferred write may wait
    dirty_mib: float = 16.0  # deferred writes, all files together
    minirdrs: list[MiniRdrConfig] = field(default_factory=list)
    source: Path | None = None  # the file it came from; None for the embedded default

    def minirdr(self, name: str) -> MiniRdrConfig:
        for m in self.minirdrs:
            if m.name == name:
                return m
        raise ConfigError(f"no mini-redirector named {name!r} in the configuration")

    def to_json(self) -> str:
        data = asdict(self)
        data["runtime_dir"] = str(self.runtime_dir)
        data["source"] = str(self.source) if self.source else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        return cls(
            runtime_dir=Path(data["runtime_dir"]),
            log_level=data["log_level"],
            request_timeout=float(data["request_timeout"]),
            connect_timeout=float(data["connect_timeout"]),
            idle_timeout=float(data.get("idle_timeout", 300.0)),
            metrics_port=int(data.get("metrics_port", 0)),
            metrics_host=str(data.get("metrics_host", "127.0.0.1")),
            provider_order=list(data["provider_order"]),
            close_delay=float(data.get("close_delay", 5.0)),
            max_delayed_closes=int(data.get("max_delayed_closes", 64)),
            cache_mib=float(data.get("cache_mib", 64.0)),
            write_behind=float(data.get("write_behind", 1.0)),
            dirty_mib=float(data.get("dirty_mib", 16.0)),
            minirdrs=[MiniRdrConfig(**m) for m in data["minirdrs"]],
            source=Path(data["source"]) if data.get("source") else None,
        )


def embedded_default() -> Config:
    return Config(
        minirdrs=[
            MiniRdrConfig(
                name="local",
                kind="local",
                options={"server": "local", "shares": {"data": str(default_data_dir())}},
            )
        ],
        provider_order=["local"],
    )


def _number(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number of seconds, not {value!r}")
    return float(value)


def _at_least_zero(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{key} must be a number, 0 or more, not {value!r}")
    return float(value)


def parse_config(text: str, source: Path | None = None) -> Config:
    where = str(source) if source else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    daemon = data.get("daemon", {})
    if not isinstance(daemon, dict):
        raise ConfigError(f"{where}: [daemon] must be a table")
    unknown = set(daemon) - {
        "runtime_dir",
        "log_level",
        "request_timeout",
        "connect_timeout",
        "idle_timeout",
        "metrics_port",
        "metrics_host",
        "provider_order",
        "close_delay",
        "max_delayed_closes",
        "cache_mib",
        "write_behind",
        "dirty_mib",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown [daemon] setting {sorted(unknown)[0]!r}")
    config = Config(source=source)
    if "runtime_dir" in daemon:
        config.runtime_dir = Path(os.path.expanduser(str(daemon["runtime_dir"])))
    level = str(daemon.get("log_level", "info")).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{where}: log_level must be debug, info, warning or error")
    config.log_level = level
    config.request_timeout = _number(daemon, "request_timeout", 30.0, f"{where}: daemon")
    config.connect_timeout = _number(daemon, "connect_timeout", 30.0, f"{where}: daemon")
    config.idle_timeout = _number(daemon, "idle_timeout", 300.0, f"{where}: daemon")
    port = daemon.get("metrics_port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ConfigError(f"{where}: metrics_port must be a port number (0 = off)")
    config.metrics_port = port
    config.metrics_host = str(daemon.get("metrics_host", "127.0.0.1"))
    config.close_delay = _at_least_zero(daemon, "close_delay", 5.0, f"{where}: daemon")
    config.cache_mib = _at_least_zero(daemon, "cache_mib", 64.0, f"{where}: daemon")
    config.write_behind = _at_least_zero(daemon, "write_behind", 1.0, f"{where}: daemon")
    config.dirty_mib = _at_least_zero(daemon, "dirty_mib", 16.0, f"{where}: daemon")
    limit = daemon.get("max_delayed_closes", 64)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"{where}: max_delayed_closes must be a whole number (0 = none)")
    config.max_delayed_closes = limit
    entries = data.get("minirdr", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: needs at least one [[minirdr]] table")
    names: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: [[minirdr]] #{i + 1} must be a table")
        name = entry.get("name")
        kind = entry.get("kind")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{where}: [[minirdr]] #{i + 1} needs a name (letters, digits, _)")
        if name in names or name in ("core", "connmgr"):
            raise ConfigError(f"{where}: mini-redirector name {name!r} is used twice or reserved")
        if kind not in KINDS:
            raise ConfigError(
                f"{where}: mini-redirector {name!r} has kind {kind!r}; known: {sorted(KINDS)}"
            )
        names.add(name)
        caching = entry.get("caching", "off")
        try:
            grant_for(str(caching))
        except ValueError as exc:
            raise ConfigError(f"{where}: mini-redirector {name!r}: {exc}") from None
        options = {k: v for k, v in entry.items() if k not in ("name", "kind", "caching")}
        config.minirdrs.append(
            MiniRdrConfig(name=name, kind=kind, options=options, caching=str(caching))
        )
    order = daemon.get("provider_order", [m.name for m in config.minirdrs])
    if not isinstance(order, list) or any(o not in names for o in order):
        raise ConfigError(f"{where}: provider_order must list configured mini-redirector names")
    config.provider_order = list(order) + [m.name for m in config.minirdrs if m.name not in order]
    return config


def load_config(path: Path | None = None) -> Config:
    """The configuration at ``path`` (must exist), else at the default location, else the
    embedded default."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        return parse_config(path.read_text(), path)
    default = default_config_path()
    if default.is_file():
        return parse_config(default.read_text(), default)
    return embedded_default()
