"""The WebDAV mini-redirector's configuration: the ``[[minirdr]]`` table checked into typed,
frozen records (see the package docstring for the keys).

Kept as dataclasses rather than msgspec Structs: a server's inline password must stay out of
``repr`` (``field(repr=False)``), and every refusal names the server and the key in the words
the configuration tests expect.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from rdbss.minirdrs.common.passwords import read_password

DEFAULT_TIMEOUT_S = 30.0
#: Seconds between two PROPFINDs of a collection with a pending change notification.
NOTIFY_INTERVAL_S = 1.0
_SERVER_KEYS = frozenset({"url", "username", "password", "password_file", "password_env", "verify"})
_TOP_KEYS = frozenset(
    {
        "timeout",
        "servers",
        "staging_dir",
        "notify_interval",
        "max_watches",
        "max_watches_per_client",
    }
)
_INVALID_SERVER_CHARS = frozenset('\\/:*?"<>|\x00 ')


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    url: httpx.URL
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)  # inline (discouraged)
    verify: bool | str = True

    def credentials(self) -> tuple[str, str] | None:
        """(user, password), read now from wherever the config says; None for anonymous.
        Failures name the source, never its content."""
        if self.username is None:
            return None
        secret = read_password(
            f"server {self.name!r}",
            password_file=self.password_file,
            password_env=self.password_env,
            password=self.password,
        )
        return self.username, secret or ""


@dataclass(frozen=True, slots=True)
class WebDavConfig:
    """The whole table: request timeout, where staging files go, and the servers by lowercased
    name (server names are case-insensitive, as UNC names are)."""

    timeout: float
    staging_parent: str | None
    servers: Mapping[str, ServerConfig]

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> WebDavConfig:
        unknown = sorted(set(config) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"webdav mini-redirector: unknown keys {unknown}")
        timeout = config.get("timeout", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("webdav mini-redirector: 'timeout' must be a positive number")
        staging = config.get("staging_dir")
        if staging is not None and (not isinstance(staging, str) or not staging):
            raise ValueError("webdav mini-redirector: 'staging_dir' must be a folder path")
        servers = config.get("servers", {})
        if not isinstance(servers, Mapping):
            raise ValueError("webdav mini-redirector: 'servers' must be a table of servers")
        parsed_servers: dict[str, ServerConfig] = {}
        for server_name, table in servers.items():
            parsed = parse_server(server_name, table)
            if parsed.name.lower() in parsed_servers:
                raise ValueError(f"webdav mini-redirector: server {server_name!r} given twice")
            parsed_servers[parsed.name.lower()] = parsed
        return cls(
            timeout=float(timeout),
            staging_parent=os.path.expanduser(staging) if staging else None,
            servers=parsed_servers,
        )


def _config_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def parse_server(name: object, table: object) -> ServerConfig:
    where = f"webdav mini-redirector: server {name!r}"
    if not isinstance(name, str) or not name or any(c in _INVALID_SERVER_CHARS for c in name):
        raise ValueError(f"{where}: not a valid server name")
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(table) - _SERVER_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    raw_url = _config_str(table, "url", where)
    if raw_url is None:
        raise ValueError(f"{where}: needs a url")
    try:
        url = httpx.URL(raw_url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"{where}: url is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{where}: url must be http:// or https:// with a host")
    if url.userinfo:
        raise ValueError(f"{where}: put credentials in username/password_file, not in the url")
    if url.query or url.fragment:
        raise ValueError(f"{where}: url must not have a query or a fragment")
    raw_path = url.raw_path.decode("ascii")
    if not raw_path.endswith("/"):
        url = url.copy_with(raw_path=(raw_path + "/").encode("ascii"))
    sources = [k for k in ("password", "password_file", "password_env") if k in table]
    if len(sources) > 1:
        raise ValueError(f"{where}: give only one of {sources}")
    username = _config_str(table, "username", where)
    if username is None and sources:
        raise ValueError(f"{where}: a password without a username")
    password = table.get("password")
    if password is not None and not isinstance(password, str):
        raise ValueError(f"{where}: 'password' must be a string")
    verify = table.get("verify", True)
    if not isinstance(verify, bool | str):
        raise ValueError(f"{where}: 'verify' must be true, false or a CA bundle path")
    return ServerConfig(
        name=name,
        url=url,
        username=username,
        password_file=_config_str(table, "password_file", where),
        password_env=_config_str(table, "password_env", where),
        password=password,
        verify=verify,
    )
