"""Configuration: one TOML file, with an embedded default.

Location: ``--config PATH``, else ``$RDBSS_CONFIG``, else ``$XDG_CONFIG_HOME/rdbss/config.toml``
(``~/.config/rdbss/config.toml``); when none exists the embedded default runs: the local-folder
mini-redirector serving ``\\\\local\\data`` from ``~/.local/share/rdbss/data``.

Example::

    [daemon]
    runtime_dir = "/run/user/1000/rdbss"   # sockets, pid and lock files (mode 0700)
    log_level = "info"                     # debug | info | warning | error
    log_format = "logfmt"                  # logfmt | json (rdbss.logs)
    log_file = "~/rdbss.log"               # also log here, rotated (log_file_max_mib = 10,
                                           # log_file_backups = 5); default: stderr only
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
    close_delay = 5.0                      # seconds a closed file's server open is kept
    max_delayed_closes = 64                # per server (SrvCall)
    cache_mib = 64                         # the core's read cache, all files together
    write_behind = 1.0                     # seconds deferred writes wait (0: write-through)
    dirty_mib = 16                         # deferred writes, all files together
    attr_cache_entries = 4096              # files whose attributes the core keeps under
                                           # caching = "exclusive" (0: none)
    attr_max_age = 30.0                    # seconds such attributes answer stats
    warm_standby = true                    # a standby process per mini-redirector takes
                                           # over at once when it dies
    max_client_requests = 4096             # a client's requests in flight (more: refused
                                           # with STATUS_INSUFFICIENT_RESOURCES)
    max_client_unread_mib = 128            # answers waiting for a client to read them (more:
                                           # its requests refused with STATUS_QUOTA_EXCEEDED)

    [node]                                 # only on a node: a host running mini-redirectors
    core = "tcp://10.0.0.1:7700"           # ... for the core of another host (no core here)
    core_key = "/etc/rdbss/keys/core.key"  # the core's public key (file or Z85 text)

    [[minirdr]]
    name = "local"
    kind = "local"
    caching = "off"                        # off | handles | exclusive (model/buffering.py)
    server = "local"
    [minirdr.shares]
    data = "~/rdbss-data"

Every table and key is checked against ``rdbss.config_schema`` (unknown keys, types, ranges,
each kind's options), so a mistake is a ConfigError naming the file and the key path.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import stat
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from rdbss import config_schema as schema
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
    log_format: str = "logfmt"  # logfmt | json (rdbss.logs)
    log_file: str = ""  # also log to this file, rotated by size ("": no file)
    log_file_max_mib: float = 10.0
    log_file_backups: int = 5
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
    attr_cache_entries: int = 4096  # attributes kept under caching="exclusive" (0: off)
    attr_max_age: float = 30.0  # seconds a kept attribute answers (model/attrcache.py)
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
            log_format=str(data.get("log_format", "logfmt")),
            log_file=str(data.get("log_file", "")),
            log_file_max_mib=float(data.get("log_file_max_mib", 10.0)),
            log_file_backups=int(data.get("log_file_backups", 5)),
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
            attr_cache_entries=int(data.get("attr_cache_entries", 4096)),
            attr_max_age=float(data.get("attr_max_age", 30.0)),
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


def parse_config(text: str, source: Path | None = None) -> Config:
    """Decode and validate the whole file (config_schema): the first mistake is a ConfigError
    that names the file, the key path and what was expected."""
    where = str(source) if source else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    top = _typed(data, schema.ConfigFile, where, "")
    daemon = top.daemon
    config = Config(source=source)
    if daemon.runtime_dir is not None:
        config.runtime_dir = Path(os.path.expanduser(daemon.runtime_dir))
    for key in _DAEMON_COPIED:
        setattr(config, key, getattr(daemon, key))
    config.log_file = os.path.expanduser(daemon.log_file) if daemon.log_file else ""
    for key in ("request_timeout", "connect_timeout", "idle_timeout", "remote_client_grace"):
        setattr(config, key, float(getattr(daemon, key)))
    for key in (
        "close_delay",
        "cache_mib",
        "write_behind",
        "dirty_mib",
        "attr_max_age",
        "log_file_max_mib",
        "max_client_unread_mib",
    ):
        setattr(config, key, float(getattr(daemon, key)))
    if top.client is not None:
        config.client = RemoteDaemon(
            connect=_tcp_endpoint(top.client.connect, f"{where}: client.connect"),
            core_key=top.client.core_key,
            secret_key=os.path.expanduser(top.client.secret_key),
        )
        if not top.minirdr and daemon.provider_order is None:
            return config  # a client-only configuration: it runs no daemon
    if not top.minirdr:
        raise ConfigError(f"{where}: needs at least one [[minirdr]] table")
    for index, entry in enumerate(top.minirdr):
        config.minirdrs.append(_minirdr(entry, index, where, config.minirdrs))
    names = [m.name for m in config.minirdrs]
    order = daemon.provider_order if daemon.provider_order is not None else names
    unknown = [o for o in order if o not in names]
    if unknown:
        raise ConfigError(
            f"{where}: daemon.provider_order: {unknown[0]!r} is not a configured "
            f"mini-redirector; expected names from {names}"
        )
    config.provider_order = list(order) + [n for n in names if n not in order]
    _parse_tcp(config, daemon, top.node, where)
    return config


#: [daemon] keys copied as they are
_DAEMON_COPIED = (
    "log_level",
    "log_format",
    "log_file_backups",
    "metrics_port",
    "metrics_host",
    "max_delayed_closes",
    "attr_cache_entries",
    "warm_standby",
    "max_client_requests",
)


def _minirdr(
    entry: dict[str, Any], index: int, where: str, before: list[MiniRdrConfig]
) -> MiniRdrConfig:
    """One [[minirdr]] table: its name, kind and caching, then its kind's options."""
    at = f"minirdr[{index}]"
    head = _typed(
        {k: entry.get(k) for k in schema.COMMON_KEYS if k in entry}, schema.MiniRdrHead, where, at
    )
    name, kind = head.name, head.kind
    if not name.isidentifier():
        raise ConfigError(f"{where}: {at}.name: expected letters, digits and _, not {name!r}")
    if name in ("core", "connmgr") or any(m.name == name for m in before):
        raise ConfigError(f"{where}: {at}.name: {name!r} is used twice or reserved")
    at = f"{at} ({name})"
    if kind not in KINDS:
        raise ConfigError(f"{where}: {at}.kind: expected one of {sorted(KINDS)}, not {kind!r}")
    try:
        grant_for(head.caching)
    except ValueError as exc:
        raise ConfigError(f"{where}: {at}.caching: {exc}") from None
    options = {k: v for k, v in entry.items() if k not in schema.COMMON_KEYS}
    _check_options(kind, options, where, at)
    return MiniRdrConfig(name=name, kind=kind, options=options, caching=head.caching)


def _check_options(kind: str, options: dict[str, Any], where: str, at: str) -> None:
    """A kind's options: their types (config_schema), the rules the mini-redirector itself
    checks that need no I/O, and the password files' permissions."""
    typed = _typed(options, schema.OPTIONS[kind], where, at)
    if isinstance(typed, schema.FaultyOptions):
        _check_options(typed.wraps, typed.options or {}, where, f"{at}.options")
    try:
        if isinstance(typed, schema.FaultyOptions):
            from rdbss.minirdrs.faulty.faults import FaultError, parse_rules

            try:
                parse_rules(options.get("rules", []))
            except FaultError as exc:
                raise ValueError(f"rules: {exc}") from None
        elif isinstance(typed, schema.LocalOptions):
            from rdbss.minirdrs.common.shares import check_share_name
            from rdbss.wire.status import NtStatusError

            for share in typed.shares or {}:
                try:
                    check_share_name(share)
                except NtStatusError as exc:
                    raise ValueError(f"shares: {exc.strerror}") from None
        elif isinstance(typed, schema.SftpOptions):
            from rdbss.minirdrs.sftp.config import parse_config as parse_sftp

            parse_sftp(options)
    except ValueError as exc:
        raise ConfigError(f"{where}: {at}: {str(exc).removeprefix('sftp: ')}") from None
    servers = getattr(typed, "servers", None) or {}
    for server_name, server in servers.items():
        if getattr(server, "password_file", None):
            check_secret_file(server.password_file, f"{where}: {at}.servers.{server_name}")


def check_secret_file(path: str, what: str) -> None:
    """Refuse a secret file that group or others may read (as ssh refuses such a private key):
    the fix is named. A file not there yet is left to the mini-redirector, which reads it when
    it connects and reports a missing one then."""
    full = os.path.expanduser(path)
    try:
        mode = stat.S_IMODE(os.stat(full).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{what}.password_file: cannot check {full}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{what}.password_file: {full} is readable by group or others "
            f"(mode {mode:04o}); a password file must be private: chmod 600 {full}"
        )


T = TypeVar("T")


def _typed(data: Any, kind: type[T], where: str, at: str) -> T:
    """``data`` as the Struct ``kind``, or a ConfigError naming the key path."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {describe_error(data, kind, exc, at)}") from None


def describe_error(data: Any, kind: type[Any], exc: msgspec.ValidationError, at: str) -> str:
    """msgspec's error as ``key.path: what was expected``: the ``[...]`` it writes for a table
    key is resolved to the key, and an unknown key lists the known ones (nearest first)."""
    text = str(exc)
    message, _, path = text.partition(" - at `")
    segments = _segments(path.rstrip("`"))
    for i, segment in enumerate(segments):
        if segment is None:
            segments[i] = _culprit(data, kind, segments[:i], text)
    message = message.replace("`", "").replace(" | null", "")
    field = message.removeprefix("Object contains unknown field ")
    if field != message:
        known = _known_keys(kind, segments)
        near = difflib.get_close_matches(field, known, n=1)
        message = f"unknown key {field!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
        if known:
            message += f"; expected one of: {', '.join(known)}"
    elif message.startswith("Object missing required field "):
        message = "missing key " + repr(message.removeprefix("Object missing required field "))
    key = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in segments)
    full = (at + key).lstrip(".")
    return f"{full or 'top level'}: {message}"


def _segments(path: str) -> list[str | int | None]:
    """``$.a[0].b[...]`` as ["a", 0, "b", None] (None: a table key msgspec does not name)."""
    out: list[str | int | None] = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]", path.removeprefix("$")):
        name, index = part
        if name:
            out.append(name)
        else:
            out.append(None if index == "..." else int(index))
    return out


def _walk(data: Any, segments: list[Any]) -> Any:
    for segment in segments:
        data = data[segment]
    return data


def _culprit(data: Any, kind: type[Any], segments: list[Any], text: str) -> str | None:
    """The key of the table at ``segments`` whose entry gives the error ``text`` alone."""
    table = _walk(data, segments)
    for key in list(table):
        trial = copy.deepcopy(data)
        holder = _walk(trial, segments)
        for other in list(holder):
            if other != key:
                del holder[other]
        try:
            msgspec.convert(trial, kind)
        except msgspec.ValidationError as exc:
            if str(exc) == text:
                return str(key)
    return None


def _known_keys(kind: type[Any], segments: list[Any]) -> list[str]:
    """The keys the Struct at ``segments`` (below ``kind``) accepts."""
    info: Any = msgspec.inspect.type_info(kind)
    for segment in segments:
        info = _container(info)
        if isinstance(info, msgspec.inspect.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            if segment not in fields:
                return []
            info = fields[segment]
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
        else:
            return []
    info = _container(info)
    if isinstance(info, msgspec.inspect.StructType):
        return [f.encode_name for f in info.fields]
    return []


_CONTAINERS = (msgspec.inspect.StructType, msgspec.inspect.DictType, msgspec.inspect.ListType)


def _container(info: Any) -> Any:
    """A Struct, dict or list type inside an optional (union) type."""
    if isinstance(info, msgspec.inspect.UnionType):
        for option in info.types:
            if isinstance(option, _CONTAINERS):
                return option
    return info


def _tcp_endpoint(value: Any, what: str) -> str:
    text = str(value)
    host, _, port = text.removeprefix("tcp://").rpartition(":")
    if not text.startswith("tcp://") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} must look like tcp://HOST:PORT, not {text!r}")
    return text


def _parse_tcp(
    config: Config, daemon: schema.DaemonTable, node: schema.NodeTable | None, where: str
) -> None:
    """The tcp:// settings: every tcp link is CURVE, so each needs its keys, checked here so a
    mistake shows at ``daemon start`` rather than in a child's log."""
    from rdbss.keys import KeyFileError, load_authorized_keys, load_public, load_secret

    config.secret_key = os.path.expanduser(daemon.secret_key)
    config.authorized_keys = os.path.expanduser(daemon.authorized_keys)
    for key in ("peer_listen", "client_listen"):
        if getattr(daemon, key):
            setattr(config, key, _tcp_endpoint(getattr(daemon, key), f"{where}: daemon.{key}"))
    if node is not None:
        if config.peer_listen or config.client_listen:
            raise ConfigError(f"{where}: a node runs no core: no peer_listen/client_listen")
        config.node = NodeConfig(
            core=_tcp_endpoint(node.core, f"{where}: node.core"), core_key=node.core_key
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


def check_config(path: Path | None = None) -> str:
    """``rdbss daemon check-config``: load and validate like ``daemon run`` (nothing starts);
    the summary of what would run, or a ConfigError."""
    config = load_config(path)
    where = config.source or "the embedded default"
    if config.client is not None and not config.minirdrs:
        return f"{where}: ok (a client configuration: uses the daemon at {config.client.connect})"
    kinds = ", ".join(f"{m.name} ({m.kind})" for m in config.minirdrs)
    return f"{where}: ok; mini-redirectors: {kinds}"
