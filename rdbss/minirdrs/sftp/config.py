"""Configuration of the SFTP mini-redirector, and the credentials it reads at connect time.

The mini-redirector gets its ``[[minirdr]]`` table (minus ``name``/``kind``)::

    timeout = 30.0                  # seconds: each request (a set-up: [daemon] connect_timeout)
    keepalive_interval = 15.0       # seconds between SSH keepalives (0 = off)
    notify_interval = 1.0           # seconds between two listings of a watched folder
    ciphers = ["aes128-gcm@openssh.com"]   # SSH ciphers to offer, in order (default below)
    [servers.sshtest]               # \\\\sshtest\\<share> reaches this server
    host = "127.0.0.1"
    port = 22
    username = "alice"
    key_file = "~/.ssh/id_ed25519"  # or a list of files
    password_file = "/etc/rdbss/sshtest.pw"   # and/or password_env / password (inline)
    known_hosts = "~/.ssh/known_hosts"        # or host_key_check = false (tests only)
    [servers.sshtest.shares]
    data = "/srv/data"              # share name -> folder on the server

Without ``ciphers``, AES-GCM is offered first on a CPU with AES instructions (the ``aes`` flag of
/proc/cpuinfo), asyncssh's own order (chacha20-poly1305 first) elsewhere:
:mod:`rdbss.model.pipelining`. Server and share names are case-insensitive. Only what is
configured is used: no ssh-agent, no ``~/.ssh/config``, no default key files. Secrets are read
by :func:`read_credentials` when a SrvCall is created, never here, and are never part of a repr,
a log line or an error message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rdbss.minirdrs.common.passwords import read_password
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.wire.status import NtStatus, NtStatusError

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_KEEPALIVE_S = 15.0
DEFAULT_PORT = 22

_TOP_KEYS = frozenset(
    {
        "timeout",
        "keepalive_interval",
        "notify_interval",
        "max_watches",
        "max_watches_per_client",
        "ciphers",
        "servers",
    }
)
_SERVER_KEYS = frozenset(
    {
        "host",
        "port",
        "username",
        "key_file",
        "password_file",
        "password_env",
        "password",
        "known_hosts",
        "host_key_check",
        "shares",
    }
)


class SftpConfigError(ValueError):
    """The [[minirdr]] table of an SFTP mini-redirector says something impossible."""


@dataclass(frozen=True, slots=True)
class SftpServer:
    """One configured server. ``password`` (inline) is kept out of the repr."""

    name: str
    host: str
    port: int
    username: str
    key_files: tuple[str, ...]
    password_file: str | None
    password_env: str | None
    known_hosts: str | None  # None with host_key_check: asyncssh's default (~/.ssh/known_hosts)
    host_key_check: bool
    shares: dict[str, tuple[str, str]]  # lower-case share name -> (name as configured, folder)
    password: str | None = field(default=None, repr=False)

    def share(self, name: str | None) -> tuple[str, str] | None:
        return self.shares.get(name.lower()) if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class SftpConfig:
    timeout: float
    keepalive_interval: float
    servers: dict[str, SftpServer]  # lower-case server name -> server
    ciphers: tuple[str, ...] | None = None  # None: chosen for this host's CPU

    def server(self, name: str | None) -> SftpServer | None:
        return self.servers.get(name.lower()) if isinstance(name, str) else None


@dataclass(slots=True)
class Credentials:
    """What one connection attempt authenticates with; dropped once it is connected."""

    password: str | None = field(default=None, repr=False)
    keys: list[Any] = field(default_factory=list, repr=False)


def _seconds(table: Mapping[str, Any], key: str, default: float, *, zero_ok: bool) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SftpConfigError(f"sftp: {key} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise SftpConfigError(f"sftp: {key} must be positive, not {value!r}")
    return float(value)


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SftpConfigError(f"sftp: {where}.{key} must be a non-empty string")
    return value


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _parse_server(name: str, table: Any) -> SftpServer:
    where = f"servers.{name}"
    if not isinstance(table, Mapping):
        raise SftpConfigError(f"sftp: {where} must be a table")
    unknown = sorted(set(table) - _SERVER_KEYS)
    if unknown:
        raise SftpConfigError(f"sftp: unknown setting {where}.{unknown[0]}")
    host = table.get("host")
    if not isinstance(host, str) or not host:
        raise SftpConfigError(f"sftp: {where}.host must be a host name or address")
    port = table.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SftpConfigError(f"sftp: {where}.port must be a TCP port number")
    username = table.get("username")
    if not isinstance(username, str) or not username:
        raise SftpConfigError(f"sftp: {where}.username must be a non-empty string")
    raw_keys = table.get("key_file", [])
    if isinstance(raw_keys, str):
        raw_keys = [raw_keys]
    if not isinstance(raw_keys, list) or not all(isinstance(k, str) and k for k in raw_keys):
        raise SftpConfigError(f"sftp: {where}.key_file must be a path or a list of paths")
    password_file = _optional_str(table, "password_file", where)
    password_env = _optional_str(table, "password_env", where)
    password = table.get("password")
    if password is not None and not isinstance(password, str):
        raise SftpConfigError(f"sftp: {where}.password must be a string")
    if not raw_keys and password_file is None and password_env is None and password is None:
        raise SftpConfigError(
            f"sftp: {where} needs key_file, password_file, password_env or password"
        )
    host_key_check = table.get("host_key_check", True)
    if not isinstance(host_key_check, bool):
        raise SftpConfigError(f"sftp: {where}.host_key_check must be true or false")
    known_hosts = _optional_str(table, "known_hosts", where)
    shares_table = table.get("shares")
    if not isinstance(shares_table, Mapping) or not shares_table:
        raise SftpConfigError(f"sftp: {where}.shares must map share names to server folders")
    shares: dict[str, tuple[str, str]] = {}
    for share, folder in shares_table.items():
        try:
            check_share_name(share)
        except NtStatusError as exc:
            raise SftpConfigError(f"sftp: {where}.shares: {exc.strerror}") from None
        if not isinstance(folder, str) or not folder or "\x00" in folder:
            raise SftpConfigError(f"sftp: {where}.shares.{share} must be a folder on the server")
        if share.lower() in shares:
            raise SftpConfigError(f"sftp: {where}.shares: {share!r} given twice")
        shares[share.lower()] = (share, folder)
    return SftpServer(
        name=name,
        host=host,
        port=port,
        username=username,
        key_files=tuple(_expand(k) for k in raw_keys),
        password_file=_expand(password_file) if password_file else None,
        password_env=password_env,
        known_hosts=_expand(known_hosts) if known_hosts else None,
        host_key_check=host_key_check,
        shares=shares,
        password=password,
    )


def _ciphers(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = config.get("ciphers")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(name, str) and name for name in value)
    ):
        raise SftpConfigError("sftp: ciphers must be a non-empty list of SSH cipher names")
    try:
        from asyncssh.encryption import get_encryption_algs
    except ImportError:  # checked where the mini-redirector runs
        return tuple(value)
    known = {alg.decode("ascii") for alg in get_encryption_algs()}
    unknown = [name for name in value if name not in known]
    if unknown:
        raise SftpConfigError(
            f"sftp: unknown cipher {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    return tuple(value)


def parse_config(config: Mapping[str, Any]) -> SftpConfig:
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        raise SftpConfigError(f"sftp: unknown setting {unknown[0]!r}")
    timeout = _seconds(config, "timeout", DEFAULT_TIMEOUT_S, zero_ok=False)
    keepalive = _seconds(config, "keepalive_interval", DEFAULT_KEEPALIVE_S, zero_ok=True)
    servers_table = config.get("servers", {})
    if not isinstance(servers_table, Mapping):
        raise SftpConfigError("sftp: servers must be a table of server name -> settings")
    servers: dict[str, SftpServer] = {}
    for name, table in servers_table.items():
        if not isinstance(name, str) or not name or any(c in name for c in '\\/:*?"<>| \x00'):
            raise SftpConfigError(f"sftp: invalid server name {name!r}")
        if name.lower() in servers:
            raise SftpConfigError(f"sftp: server {name!r} given twice")
        servers[name.lower()] = _parse_server(name, table)
    return SftpConfig(
        timeout=timeout, keepalive_interval=keepalive, servers=servers, ciphers=_ciphers(config)
    )


def _logon_failure(server: SftpServer, what: str) -> NtStatusError:
    return NtStatusError(NtStatus.STATUS_LOGON_FAILURE, f"server {server.name!r}: {what}")


def read_credentials(server: SftpServer) -> Credentials:
    """Read the configured secrets now (SrvCall creation). A secret that cannot be read is a
    logon failure; the message says which setting, never what it holds."""
    import asyncssh  # the process that runs this mini-redirector has it; config parsing need not

    creds = Credentials()
    creds.password = read_password(
        f"server {server.name!r}",
        password_file=server.password_file,
        password_env=server.password_env,
        password=server.password,
    )
    for index, path in enumerate(server.key_files):
        try:
            creds.keys.append(asyncssh.read_private_key(path))
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise _logon_failure(server, f"cannot read key_file #{index + 1}: {reason}") from None
        except (asyncssh.KeyImportError, ValueError):
            raise _logon_failure(
                server, f"key_file #{index + 1} is not a usable unencrypted private key"
            ) from None
    return creds
