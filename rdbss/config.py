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
    # tcp:// (several hosts; always CURVE): see deploy/multi-host/README.md
    secret_key = "/etc/rdbss/keys/core.key_secret"   # this host's key (rdbss keys generate)
    peer_listen = "tcp://0.0.0.0:7700"     # mini-redirectors on other hosts register here
    client_listen = "tcp://0.0.0.0:7701"   # clients on other hosts
    remote_client_grace = 60.0             # seconds; a remote client unreachable longer is
                                           # gone and its handles are closed
    authorized_keys = "/etc/rdbss/authorized_keys"   # who may use those ports, and for what

    [node]                                 # only on a node: a host running mini-redirectors
    core = "tcp://10.0.0.1:7700"           # ... for the core of another host (no core here)
    core_key = "/etc/rdbss/keys/core.key"  # the core's public key (file or Z85 text)
    close_delay = 5.0                      # seconds a closed file's server open is kept
    max_delayed_closes = 64                # per server (SrvCall)
    cache_mib = 64                         # the core's read cache, all files together
    write_behind = 1.0                     # seconds deferred writes wait (0: write-through)
    dirty_mib = 16                         # deferred writes, all files together
    warm_standby = true                    # a standby process per mini-redirector takes
                                           # over at once when it dies
    max_client_requests = 4096             # a client's requests in flight (more: refused
                                           # with STATUS_INSUFFICIENT_RESOURCES)
    max_client_unread_mib = 128            # answers waiting for a client to read them (more:
                                           # its requests refused with STATUS_QUOTA_EXCEEDED)

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
class NodeConfig:
    """A node runs mini-redirectors only, registered with the core of another host."""

    core: str  # tcp://HOST:PORT, the core's peer_listen
    core_key: str  # the core's public key: Z85 text or a path to its .key file


@dataclass(slots=True)
class RemoteDaemon:
    """How a client reaches a daemon on another host: its tcp:// client port, over CURVE."""

    connect: str  # tcp://HOST:PORT, the daemon's client_listen
    core_key: str  # the daemon's public key: Z85 text or a path to its .key file
    secret_key: str  # this client's .key_secret


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
    warm_standby: bool = True  # a standby process per mini-redirector (supervisor)
    max_client_requests: int = 4096  # per client, in flight in the core
    max_client_unread_mib: float = 128.0  # per client, answers it has not read yet
    minirdrs: list[MiniRdrConfig] = field(default_factory=list)
    source: Path | None = None  # the file it came from; None for the embedded default
    secret_key: str = ""  # path of this host's .key_secret (tcp:// links)
    peer_listen: str = ""  # tcp:// endpoint for mini-redirectors of other hosts
    client_listen: str = ""  # tcp:// endpoint for clients of other hosts
    authorized_keys: str = ""  # path of the allow-list of public keys
    remote_client_grace: float = 60.0  # seconds a remote client may be unreachable
    node: NodeConfig | None = None
    client: RemoteDaemon | None = None  # [client]: use the daemon of another host

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
            warm_standby=bool(data.get("warm_standby", True)),
            max_client_requests=int(data.get("max_client_requests", 4096)),
            max_client_unread_mib=float(data.get("max_client_unread_mib", 128.0)),
            minirdrs=[MiniRdrConfig(**m) for m in data["minirdrs"]],
            source=Path(data["source"]) if data.get("source") else None,
            secret_key=str(data.get("secret_key", "")),
            peer_listen=str(data.get("peer_listen", "")),
            client_listen=str(data.get("client_listen", "")),
            authorized_keys=str(data.get("authorized_keys", "")),
            remote_client_grace=float(data.get("remote_client_grace", 60.0)),
            node=NodeConfig(**data["node"]) if data.get("node") else None,
            client=RemoteDaemon(**data["client"]) if data.get("client") else None,
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
        "secret_key",
        "peer_listen",
        "client_listen",
        "authorized_keys",
        "remote_client_grace",
        "close_delay",
        "max_delayed_closes",
        "cache_mib",
        "write_behind",
        "dirty_mib",
        "warm_standby",
        "max_client_requests",
        "max_client_unread_mib",
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
    standby = daemon.get("warm_standby", True)
    if not isinstance(standby, bool):
        raise ConfigError(f"{where}: warm_standby must be true or false")
    config.warm_standby = standby
    requests = daemon.get("max_client_requests", 4096)
    if isinstance(requests, bool) or not isinstance(requests, int) or not 1 <= requests <= 1 << 20:
        raise ConfigError(f"{where}: max_client_requests must be a count (1 to 1048576)")
    config.max_client_requests = requests
    config.max_client_unread_mib = _number(
        daemon, "max_client_unread_mib", 128.0, f"{where}: daemon"
    )
    entries = data.get("minirdr", [])
    if "client" in data:
        config.client = _parse_client(data["client"], where)
        if not entries and "provider_order" not in daemon:
            return config  # a client-only configuration: it runs no daemon
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
    _parse_tcp(config, daemon, data, where)
    return config


def _parse_client(table: Any, where: str) -> RemoteDaemon:
    if not isinstance(table, dict) or set(table) - {"connect", "core_key", "secret_key"}:
        raise ConfigError(f"{where}: [client] takes connect, core_key and secret_key")
    missing = {"connect", "core_key", "secret_key"} - set(table)
    if missing:
        raise ConfigError(f"{where}: [client] needs {sorted(missing)[0]}")
    return RemoteDaemon(
        connect=_tcp_endpoint(table["connect"], f"{where}: client.connect"),
        core_key=str(table["core_key"]),
        secret_key=os.path.expanduser(str(table["secret_key"])),
    )


def _tcp_endpoint(value: Any, what: str) -> str:
    text = str(value)
    host, _, port = text.removeprefix("tcp://").rpartition(":")
    if not text.startswith("tcp://") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} must look like tcp://HOST:PORT, not {text!r}")
    return text


def _parse_tcp(config: Config, daemon: dict[str, Any], data: dict[str, Any], where: str) -> None:
    """The tcp:// settings: every tcp link is CURVE, so each needs its keys, checked here so a
    mistake shows at ``daemon start`` rather than in a child's log."""
    from rdbss.keys import KeyFileError, load_authorized_keys, load_public, load_secret

    def path(key: str) -> str:
        return os.path.expanduser(str(daemon.get(key, "")))

    config.secret_key = path("secret_key")
    config.remote_client_grace = _number(daemon, "remote_client_grace", 60.0, f"{where}: daemon")
    config.authorized_keys = path("authorized_keys")
    for key in ("peer_listen", "client_listen"):
        if key in daemon:
            setattr(config, key, _tcp_endpoint(daemon[key], f"{where}: daemon.{key}"))
    node = data.get("node")
    if node is not None:
        if not isinstance(node, dict) or set(node) - {"core", "core_key"}:
            raise ConfigError(f"{where}: [node] takes core and core_key")
        if "core" not in node or "core_key" not in node:
            raise ConfigError(f"{where}: [node] needs core (tcp://HOST:PORT) and core_key")
        if config.peer_listen or config.client_listen:
            raise ConfigError(f"{where}: a node runs no core: no peer_listen/client_listen")
        config.node = NodeConfig(
            core=_tcp_endpoint(node["core"], f"{where}: node.core"), core_key=str(node["core_key"])
        )
    listening = bool(config.peer_listen or config.client_listen)
    try:
        if listening or config.node is not None:
            if not config.secret_key:
                raise ConfigError(f"{where}: tcp:// needs daemon.secret_key (rdbss keys generate)")
            load_secret(Path(config.secret_key))
        if listening:
            if not config.authorized_keys:
                raise ConfigError(f"{where}: listening on tcp:// needs daemon.authorized_keys")
            load_authorized_keys(Path(config.authorized_keys))
        if config.node is not None:
            load_public(config.node.core_key)
    except KeyFileError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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
