"""The shares of one server, for ``rdbss ls //server`` (what ``net view \\\\server`` shows) and for
completing share names.

Where the list comes from, by the kind of mini-redirector that claims the server (the daemon's
status names each mini-redirector's servers):
- local: the mini-redirector's own list (RDBSS_LIST_SHARES, ``Client.shares``), so shares added
  with ``rdbss use add`` appear;
- sftp: the shares of that server in the configuration file (``[minirdr.servers.NAME.shares]``:
  an SFTP server has no shares of its own);
- smb and webdav: not listable (SMB share enumeration is an RPC, NetShareEnum over srvsvc, that
  smbprotocol does not offer; a WebDAV share is any collection under the URL): a clear error
  that says to name the share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rdbss.wire.status import NtStatus, NtStatusError, error_for_status

_NOT_LISTABLE = {
    "smb": "SMB share enumeration (NetShareEnum) is not available through smbprotocol",
    "webdav": "a WebDAV server's shares are whatever collections lie under its URL",
}


def _configured(config: Any, minirdr: str, server: str) -> dict[str, str] | None:
    """The shares the configuration file gives ``server`` in ``minirdr``'s table, if any."""
    for m in getattr(config, "minirdrs", []):
        if m.name != minirdr:
            continue
        options = m.options if isinstance(m.options, Mapping) else {}
        servers = options.get("servers", {})
        if not isinstance(servers, Mapping):
            return None
        for name, table in servers.items():
            if str(name).lower() == server.lower() and isinstance(table, Mapping):
                shares = table.get("shares")
                if isinstance(shares, Mapping):
                    return {str(k): str(v) for k, v in shares.items()}
    return None


def server_shares(client: Any, config: Any, server: str) -> list[dict[str, Any]]:
    """``[{"name", "server", "minirdr", "kind", "folder"}]`` sorted by name; an NtStatusError
    (STATUS_BAD_NETWORK_PATH / STATUS_NOT_SUPPORTED) saying why when they cannot be listed."""
    peers = [
        p
        for p in client.status().get("peers", [])
        if server.lower() in (str(s).lower() for s in p.get("servers") or [])
    ]
    if not peers:
        raise error_for_status(
            NtStatus.STATUS_BAD_NETWORK_PATH,
            f"no mini-redirector serves server {server!r} (rdbss status lists them)",
        )
    found: dict[str, dict[str, Any]] = {}
    reasons = []
    for peer in peers:
        name, kind = str(peer["name"]), str(peer.get("kind") or "")
        shares: dict[str, str] | None = None
        try:
            listing = client.shares(name)
        except NtStatusError:
            listing = None
        if listing is not None and str(listing.get("server", "")).lower() == server.lower():
            shares = {str(k): str(v) for k, v in listing.get("shares", {}).items()}
        if shares is None:
            shares = _configured(config, name, server)
        if shares is None:
            reasons.append(f"{name} ({kind}): {_NOT_LISTABLE.get(kind, 'no share list')}")
            continue
        for share, folder in shares.items():
            found.setdefault(
                share.lower(),
                {"name": share, "server": server, "minirdr": name, "kind": kind, "folder": folder},
            )
    if not found and reasons:
        raise error_for_status(
            NtStatus.STATUS_NOT_SUPPORTED,
            f"the shares of {server!r} cannot be listed: {'; '.join(reasons)}; "
            f"name the share instead: //{server}/SHARE",
        )
    return sorted(found.values(), key=lambda s: str(s["name"]).lower())
