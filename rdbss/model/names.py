"""UNC names: parse once, normalize once, refuse what could leave a share.

``\\\\server\\share\\dir\\file`` (or ``//server/share/dir/file``) becomes a ``UncName`` whose
``path`` is share-relative with backslashes and no ``.``/``..`` components. Pure code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rdbss.wire.status import NtStatus, NtStatusError

MAX_PATH_CHARS = 32_767
MAX_COMPONENT_CHARS = 255
_INVALID_CHARS = frozenset('<>"|?*:') | frozenset(chr(c) for c in range(32))
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


def _invalid(message: str, status: int = NtStatus.STATUS_OBJECT_NAME_INVALID) -> NtStatusError:
    return NtStatusError(status, message)


def check_component(component: str) -> None:
    """Refuse a file name component that Windows would refuse or that could escape a share."""
    if not component:
        raise _invalid("empty path component")
    if len(component) > MAX_COMPONENT_CHARS:
        raise _invalid(f"path component longer than {MAX_COMPONENT_CHARS} characters")
    if not _INVALID_CHARS.isdisjoint(component):  # one pass in C; the culprit only on failure
        bad = next(ch for ch in component if ch in _INVALID_CHARS)
        what = "alternate data streams are not supported" if bad == ":" else f"character {bad!r}"
        raise _invalid(f"invalid name {component!r}: {what}")
    if component.split(".")[0].rstrip(" ").upper() in _DEVICE_NAMES:
        raise _invalid(f"invalid name {component!r}: reserved device name")


@dataclass(frozen=True, slots=True)
class UncName:
    server: str
    share: str
    path: str = ""  # share-relative, backslash-separated, "" for the share root

    @property
    def net_root_prefix(self) -> str:
        return f"\\\\{self.server}\\{self.share}"

    @property
    def key(self) -> str:
        """Case-insensitive key of the share (SrvCall/NetRoot names are case-insensitive)."""
        return self.net_root_prefix.lower()

    @property
    def components(self) -> list[str]:
        return self.path.split("\\") if self.path else []

    @property
    def parent(self) -> UncName:
        parts = self.components
        return UncName(self.server, self.share, "\\".join(parts[:-1]))

    @property
    def name(self) -> str:
        parts = self.components
        return parts[-1] if parts else ""

    def child(self, name: str) -> UncName:
        check_component(name)
        return UncName(self.server, self.share, f"{self.path}\\{name}" if self.path else name)

    def __str__(self) -> str:
        return f"{self.net_root_prefix}\\{self.path}" if self.path else self.net_root_prefix


def normalize_relative(path: str) -> str:
    """Normalize a share-relative path: '/' -> '\\', drop '.' and empty parts, resolve '..'
    lexically, and refuse a '..' that would climb above the share root."""
    if "\x00" in path:
        raise _invalid("NUL character in path")
    if len(path) > MAX_PATH_CHARS:
        raise _invalid(f"path longer than {MAX_PATH_CHARS} characters")
    parts: list[str] = []
    for part in path.replace("/", "\\").split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _invalid(
                    "path escapes the share with '..'", NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD
                )
            parts.pop()
            continue
        check_component(part)
        parts.append(part)
    return "\\".join(parts)


def parse_unc(name: str) -> UncName:
    """Parse ``\\\\server\\share[\\path]`` (forward slashes accepted)."""
    if not isinstance(name, str):
        raise _invalid("path is not a string", NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD)
    return _parse_unc(name)


#: the names parsed last: a request's name is parsed again on its way (the create, the compound
#: that carries it) and a client asks for the same names again; UncName is immutable, a name
#: refused raises every time (exceptions are not kept)
@functools.lru_cache(maxsize=1024)
def _parse_unc(name: str) -> UncName:
    if "\x00" in name:
        raise _invalid("NUL character in path")
    unified = name.replace("/", "\\")
    if not unified.startswith("\\\\"):
        raise _invalid(
            f"not a UNC name (expected \\\\server\\share\\path): {name!r}",
            NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD,
        )
    rest = unified[2:]
    server, _, after = rest.partition("\\")
    share, _, path = after.lstrip("\\").partition("\\")
    if not server or not share:
        raise _invalid(
            f"UNC name needs a server and a share: {name!r}", NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD
        )
    for part in (server, share):
        check_component(part)
    return UncName(server, share, normalize_relative(path))
