"""The SMB mini-redirector's options, typed: the ``[[minirdr]]`` table is converted with msgspec
into the Structs of rdbss/config_schema.py (``SmbOptions``, ``SmbServer``, ``SmbShare``: one
place names every option and its range), then into the records below. Credentials are only
where the password is read from: the password itself is read when a session is set up, never at
start-up, and never kept.

Config (the ``[[minirdr]]`` table)::

    [[minirdr]]
    name = "smb"
    kind = "smb"
    timeout = 30.0                     # seconds: each request (a set-up has connect_timeout)
    keepalive_interval = 30.0          # echo a connection idle this long (0: off)
    [minirdr.servers.sambatest]        # \\\\sambatest\\<share> reaches this server
    host = "127.0.0.1"
    port = 445
    username = "root"
    password_file = "/path/to/file"    # or password_env = "VAR", or password = "..."
    encrypt = false                    # request SMB3 encryption for the whole session
    min_dialect = "3.0"                # optional: a server negotiating less is refused
    [minirdr.servers.sambatest.shares.other]   # optional: a share reached as another user
    username = "bob"
    password_file = "/path/to/bob"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from rdbss.config_schema import SmbOptions, SmbServer, SmbShare
from rdbss.minirdrs.common.passwords import read_password

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_KEEPALIVE_S = 30.0
DEFAULT_PORT = 445

#: SMB2/3 dialects by the name a configuration gives them (MS-SMB2 2.2.3).
DIALECTS: dict[str, int] = {
    "2.0.2": 0x0202,
    "2.1": 0x0210,
    "3.0": 0x0300,
    "3.0.2": 0x0302,
    "3.1.1": 0x0311,
}


def dialect_name(dialect: int) -> str:
    """A dialect's configuration name ("3.0" for 0x0300), or its value in hexadecimal."""
    names = {v: k for k, v in DIALECTS.items()}
    return names.get(dialect, hex(dialect))


def _convert(where: str, table: object, schema: type[msgspec.Struct]) -> Any:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    try:
        return msgspec.convert(dict(table), schema)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and where its password is read from."""

    username: str
    password_file: str | None = None
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, table: SmbServer | SmbShare) -> Credentials:
        return cls(table.username, table.password_file, table.password_env, table.password)

    def same_user(self, username: str) -> bool:
        """User names compare without case, as Windows compares them."""
        return self.username.lower() == username.lower()

    def read_password(self, where: str) -> str:
        """The password from its source (rdbss/minirdrs/passwords.py); "" when none is set."""
        secret = read_password(
            where,
            password_file=self.password_file,
            password_env=self.password_env,
            password=self.password,
        )
        return secret or ""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ``[minirdr.servers.<name>]`` table: the server, its default credentials, and the
    shares that are reached as another user (``[minirdr.servers.<name>.shares.<share>]``)."""

    name: str
    host: str
    port: int
    username: str
    password_file: str | None = None
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)
    encrypt: bool = False
    min_dialect: int = 0  # the lowest SMB dialect accepted (0: any the server offers)
    shares: Mapping[str, Credentials] = field(default_factory=dict)  # lower-case share name

    @classmethod
    def parse(cls, name: str, table: object) -> ServerConfig:
        server: SmbServer = _convert(f"smb mini-redirector: server {name!r}", table, SmbServer)
        return cls.of(name, server)

    @classmethod
    def of(cls, name: str, server: SmbServer) -> ServerConfig:
        return cls(
            name=name,
            host=server.host,
            port=server.port if server.port is not None else DEFAULT_PORT,
            username=server.username,
            password_file=server.password_file,
            password_env=server.password_env,
            password=server.password,
            encrypt=bool(server.encrypt),
            min_dialect=DIALECTS.get(server.min_dialect or "", 0),
            shares={
                str(share).lower(): Credentials.of(table)
                for share, table in (server.shares or {}).items()
            },
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def credentials(self) -> Credentials:
        """The server's own credentials (every share not listed under ``shares``)."""
        return Credentials(self.username, self.password_file, self.password_env, self.password)

    def credentials_for(self, share: str) -> Credentials:
        return self.shares.get(share.lower()) or self.credentials

    def read_password(self) -> str:
        return self.credentials.read_password(f"server {self.name!r}")


@dataclass(frozen=True, slots=True)
class SmbConfig:
    """The whole ``[[minirdr]]`` table of an SMB mini-redirector."""

    timeout: float = DEFAULT_TIMEOUT_S
    keepalive_interval: float = DEFAULT_KEEPALIVE_S  # 0: off
    servers: Mapping[str, ServerConfig] = field(default_factory=dict)  # lower-case name

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> SmbConfig:
        options: SmbOptions = _convert("smb mini-redirector", config, SmbOptions)
        servers: dict[str, ServerConfig] = {}
        for name, server in (options.servers or {}).items():
            if not name:
                raise ValueError("smb mini-redirector: server names must be non-empty strings")
            if name.lower() in servers:
                raise ValueError(f"smb mini-redirector: server {name!r} given twice")
            servers[name.lower()] = ServerConfig.of(name, server)
        return cls(
            timeout=float(options.timeout or DEFAULT_TIMEOUT_S),
            keepalive_interval=float(
                DEFAULT_KEEPALIVE_S
                if options.keepalive_interval is None
                else options.keepalive_interval
            ),
            servers=servers,
        )
