"""Mini-redirectors: the dispatch interface (base) and one module per protocol."""

from __future__ import annotations

import importlib

from rdbss.minirdrs.base import MiniRdr

#: kind -> "module:Class", imported only by the process that runs it
KINDS: dict[str, str] = {
    "local": "rdbss.minirdrs.local.minirdr:LocalMiniRdr",
    "smb": "rdbss.minirdrs.smb.minirdr:SmbMiniRdr",
    "sftp": "rdbss.minirdrs.sftp.minirdr:SftpMiniRdr",
    "webdav": "rdbss.minirdrs.webdav.minirdr:WebDavMiniRdr",
    "faulty": "rdbss.minirdrs.faulty.minirdr:FaultyMiniRdr",
}

#: kind -> the pip extra that installs what it needs
EXTRAS: dict[str, str] = {"smb": "smb", "sftp": "sftp", "webdav": "webdav"}


def load_kind(kind: str) -> type[MiniRdr]:
    module_name, _, class_name = KINDS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if kind in EXTRAS and exc.name and not exc.name.startswith("rdbss"):
            raise ModuleNotFoundError(
                f"the {kind} mini-redirector needs {exc.name}: pip install 'rdbss[{EXTRAS[kind]}]'",
                name=exc.name,
            ) from exc
        raise
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, MiniRdr)):
        raise TypeError(f"{KINDS[kind]} is not a MiniRdr")
    return cls
