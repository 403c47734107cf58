"""The configuration file's schema: typed msgspec Structs that the TOML is decoded into.

Every table forbids unknown keys, so a typo (``[deamon]``, ``sharez``) is an error instead of a
silently ignored setting; every value has a type and, where it matters, a range. Each
mini-redirector kind has its own options Struct (chosen by ``kind``, a tagged union); a
``faulty`` one's ``options`` are checked against the Struct of the kind it ``wraps``.

An option left out is None here: its default belongs to the mini-redirector that reads it, so a
default is written once. The daemon reads the validated TOML tables (not these Structs), so the
option names the mini-redirectors know are exactly the keys of these Structs.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

Seconds = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Port = Annotated[int, Meta(ge=1, le=65535)]
NonEmpty = Annotated[str, Meta(min_length=1)]
NotifySeconds = Annotated[float, Meta(gt=0, le=3600)]
Count = Annotated[int, Meta(ge=1)]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")
CACHING = ("off", "handles", "exclusive")


class Table(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A TOML table: unknown keys are errors."""


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")


def _one_password_source(table: Any) -> None:
    given = [k for k in ("password_file", "password_env", "password") if getattr(table, k)]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")


# ---------------------------------------------------------------- [daemon], [node], [client]
class DaemonTable(Table):
    runtime_dir: NonEmpty | None = None
    log_level: str = "info"
    log_format: str = "logfmt"
    log_file: NonEmpty | None = None
    log_file_max_mib: Annotated[float, Meta(gt=0)] = 10.0
    log_file_backups: Annotated[int, Meta(ge=0, le=100)] = 5
    request_timeout: Seconds = 30.0
    connect_timeout: Seconds = 30.0
    idle_timeout: Seconds = 300.0
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    metrics_host: NonEmpty = "127.0.0.1"
    provider_order: list[str] | None = None
    secret_key: str = ""
    peer_listen: str = ""
    client_listen: str = ""
    authorized_keys: str = ""
    remote_client_grace: Seconds = 60.0
    close_delay: NonNegative = 5.0
    max_delayed_closes: Annotated[int, Meta(ge=0)] = 64
    cache_mib: NonNegative = 64.0
    write_behind: NonNegative = 1.0
    dirty_mib: NonNegative = 16.0
    attr_cache_entries: Annotated[int, Meta(ge=0, le=1 << 24)] = 4096
    attr_max_age: NonNegative = 30.0
    warm_standby: bool = True
    max_client_requests: Annotated[int, Meta(ge=1, le=1 << 20)] = 4096
    max_client_unread_mib: Annotated[float, Meta(gt=0)] = 128.0

    def __post_init__(self) -> None:
        self.log_level = self.log_level.lower()
        _one_of("log_level", self.log_level, LOG_LEVELS)
        _one_of("log_format", self.log_format, LOG_FORMATS)


class NodeTable(Table):
    core: str
    core_key: NonEmpty


class ClientTable(Table):
    connect: str
    core_key: NonEmpty
    secret_key: NonEmpty


# ---------------------------------------------------------------- mini-redirectors
#: the SMB dialects ``min_dialect`` names (the smb mini-redirector's DIALECTS)
SMB_DIALECTS = ("2.0.2", "2.1", "3.0", "3.0.2", "3.1.1")


class SmbShare(Table):
    """``[minirdr.servers.<name>.shares.<share>]``: a share reached as another user."""

    username: NonEmpty
    password_file: NonEmpty | None = None
    password_env: NonEmpty | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        _one_password_source(self)


class SmbServer(Table):
    host: NonEmpty
    username: NonEmpty
    port: Port | None = None
    password_file: NonEmpty | None = None
    password_env: NonEmpty | None = None
    password: str | None = None
    encrypt: bool | None = None
    min_dialect: str | None = None
    shares: dict[str, SmbShare] | None = None

    def __post_init__(self) -> None:
        _one_password_source(self)
        if self.min_dialect is not None:
            _one_of("min_dialect", self.min_dialect, SMB_DIALECTS)


class SftpServer(Table):
    host: NonEmpty
    username: NonEmpty
    shares: Annotated[dict[str, NonEmpty], Meta(min_length=1)]
    port: Port | None = None
    key_file: NonEmpty | list[NonEmpty] | None = None
    password_file: NonEmpty | None = None
    password_env: NonEmpty | None = None
    password: str | None = None
    known_hosts: NonEmpty | None = None
    host_key_check: bool | None = None


class WebDavServer(Table):
    url: NonEmpty
    username: NonEmpty | None = None
    password_file: NonEmpty | None = None
    password_env: NonEmpty | None = None
    password: str | None = None
    verify: bool | NonEmpty | None = None

    def __post_init__(self) -> None:
        _one_password_source(self)
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {self.url!r}")
        if self.username is None and (self.password_file or self.password_env or self.password):
            raise ValueError("a password needs a username")


class LocalOptions(Table):
    server: NonEmpty | None = None
    aliases: list[NonEmpty] | None = None
    shares: dict[str, NonEmpty] | None = None
    notify_interval: NotifySeconds | None = None
    max_watches: Count | None = None
    max_watches_per_client: Count | None = None


class SmbOptions(Table):
    timeout: Seconds | None = None
    keepalive_interval: NonNegative | None = None
    servers: dict[str, SmbServer] | None = None


class SftpOptions(Table):
    timeout: Seconds | None = None
    keepalive_interval: NonNegative | None = None
    notify_interval: NotifySeconds | None = None
    max_watches: Count | None = None
    max_watches_per_client: Count | None = None
    ciphers: list[NonEmpty] | None = None
    servers: dict[str, SftpServer] | None = None


class WebDavOptions(Table):
    timeout: Seconds | None = None
    staging_dir: NonEmpty | None = None
    notify_interval: NotifySeconds | None = None
    max_watches: Count | None = None
    max_watches_per_client: Count | None = None
    servers: dict[str, WebDavServer] | None = None


class FaultRule(Table):
    """One ``[[minirdr.rules]]`` entry (rdbss/minirdrs/faulty/faults.py says what each does)."""

    action: NonEmpty
    routine: str | None = None
    lowio_op: str | None = None
    path: str | None = None
    status: str | int | None = None
    delay_ms: NonNegative | None = None
    jitter_ms: NonNegative | None = None
    probability: Annotated[float, Meta(ge=0, le=1)] | None = None
    every: Annotated[int, Meta(ge=1)] | None = None
    after_s: NonNegative | None = None
    until_s: NonNegative | None = None
    count: Annotated[int, Meta(ge=0)] | None = None


class FaultyOptions(Table):
    wraps: NonEmpty
    seed: int | None = None
    options: dict[str, Any] | None = None  # checked against OPTIONS[wraps] (config.py)
    rules: list[FaultRule] | None = None

    def __post_init__(self) -> None:
        if self.wraps not in OPTIONS or self.wraps == "faulty":
            kinds = ", ".join(k for k in OPTIONS if k != "faulty")
            raise ValueError(f"wraps must be one of {kinds}, not {self.wraps!r}")


#: kind -> the Struct of its options (the keys of rdbss.minirdrs.KINDS)
OPTIONS: dict[str, type[Table]] = {
    "local": LocalOptions,
    "smb": SmbOptions,
    "sftp": SftpOptions,
    "webdav": WebDavOptions,
    "faulty": FaultyOptions,
}

#: what every [[minirdr]] table has besides its kind's options
COMMON_KEYS = ("name", "kind", "caching")


class MiniRdrHead(Struct, kw_only=True):
    """The keys every [[minirdr]] table has (the kind's options are checked separately)."""

    name: str
    kind: str
    caching: str = "off"


class ConfigFile(Table):
    """The whole file. [[minirdr]] entries are checked one by one, by kind (config.py)."""

    daemon: DaemonTable = msgspec.field(default_factory=DaemonTable)
    node: NodeTable | None = None
    client: ClientTable | None = None
    minirdr: list[dict[str, Any]] = msgspec.field(default_factory=list)
