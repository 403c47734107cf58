"""Copies between local folders and shares, either way, for ``cp``, ``put`` and ``get``.

A side is where a path lives: ``LocalSide`` (``pathlib.Path``, relative to the working directory
or absolute) or ``RemoteSide`` (UNC names through the daemon). A copy is planned first (every
folder to make and file to copy, with sizes, so the progress bar knows its totals) and then
carried out. The rules are those of ``cp -r``: a source copied into an existing folder keeps its
name there; otherwise the destination is the new name. Names read from one side are checked
before they are used on the other (``paths.check_component``), so a listing can never make a
copy write outside its destination.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from rdbss.cli import paths
from rdbss.cli.progress import TransferProgress
from rdbss.wire.status import NtStatus, error_for_status

CHUNK = 4 << 20


class Side(Protocol):
    """Where one end of a copy lives."""

    def kind(self, path: Any) -> str | None:
        """``"dir"``, ``"file"`` or None when nothing is there."""

    def entries(self, path: Any) -> list[tuple[str, bool, int]]:
        """(name, is a folder, size) of a folder's entries, sorted by name."""

    def size(self, path: Any) -> int: ...
    def join(self, path: Any, name: str) -> Any: ...
    def name(self, path: Any) -> str: ...
    def mkdir(self, path: Any) -> None: ...
    def reader(self, path: Any) -> contextlib.AbstractContextManager[IO[bytes]]: ...
    def writer(self, path: Any) -> contextlib.AbstractContextManager[IO[bytes]]: ...
    def show(self, path: Any) -> str: ...


class LocalSide:
    def kind(self, path: Path) -> str | None:
        if path.is_dir():
            return "dir"
        return "file" if path.exists() else None

    def entries(self, path: Path) -> list[tuple[str, bool, int]]:
        out = []
        for child in sorted(path.iterdir(), key=lambda p: p.name):
            directory = child.is_dir()
            out.append((child.name, directory, 0 if directory else child.stat().st_size))
        return out

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def join(self, path: Path, name: str) -> Path:
        return path / paths.check_component(name, str(path))

    def name(self, path: Path) -> str:
        return path.name if path.name not in ("", ".", "..") else path.resolve().name

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def reader(self, path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
        return open(path, "rb")

    @contextlib.contextmanager
    def writer(self, path: Path) -> Iterator[IO[bytes]]:
        """Written beside the target and renamed over it once complete: an interrupted copy
        never leaves a truncated file under the real name."""
        part = path.with_name(f".{path.name}.rdbss-part")
        try:
            with open(part, "wb") as out:
                yield out
            os.replace(part, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()

    def show(self, path: Path) -> str:
        return str(path)


class RemoteSide:
    def __init__(self, client: Any) -> None:
        self.client = client

    def kind(self, path: str) -> str | None:
        try:
            return "dir" if self.client.stat(path).is_dir else "file"
        except FileNotFoundError:
            return None

    def entries(self, path: str) -> list[tuple[str, bool, int]]:
        found = [
            (e.name, bool(e.is_dir), int(e.size))
            for e in self.client.scandir(path)
            if e.name not in (".", "..")
        ]
        return sorted(found)

    def size(self, path: str) -> int:
        return int(self.client.stat(path).size)

    def join(self, path: str, name: str) -> str:
        return paths.unc_join(path, name)

    def name(self, path: str) -> str:
        return paths.unc_name(path)

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path, parents=True, exist_ok=True)

    def reader(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return self.client.open(path, "rb", buffering=0)  # type: ignore[no-any-return]

    def writer(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return self.client.open(path, "wb", buffering=0)  # type: ignore[no-any-return]

    def show(self, path: str) -> str:
        return paths.to_unc(path)


@dataclass
class Plan:
    """What a copy does, in order: folders to make, files to copy (source, target, size)."""

    target: Any
    folders: list[Any] = field(default_factory=list)
    files: list[tuple[Any, Any, int]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files)


def side_for(text: str, client: Any) -> tuple[Side, Any]:
    """The side a command-line path lives on and the path in that side's terms."""
    if paths.is_remote(text):
        return RemoteSide(client), paths.to_unc(text)
    return LocalSide(), Path(text)


def _same(a_side: Side, a: Any, b_side: Side, b: Any) -> bool:
    """Whether a file would be copied onto itself (opening the target truncates the source)."""
    if isinstance(a_side, LocalSide) and isinstance(b_side, LocalSide):
        return bool(a.resolve() == b.resolve())
    if isinstance(a_side, RemoteSide) and isinstance(b_side, RemoteSide):
        return bool(paths.to_unc(a).lower() == paths.to_unc(b).lower())
    return False


def plan_copy(
    src_side: Side, src: Any, dst_side: Side, dst: Any, *, recursive: bool, into: bool = False
) -> Plan:
    """Plan copying ``src`` to ``dst`` as ``cp [-r]`` does. ``into``: the destination was
    written with a trailing separator, so it is a folder (made if missing)."""
    kind = src_side.kind(src)
    if kind is None:
        raise error_for_status(
            NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, f"{src_side.show(src)}: no such file or folder"
        )
    if kind == "dir" and not recursive:
        raise error_for_status(
            NtStatus.STATUS_FILE_IS_A_DIRECTORY, f"{src_side.show(src)} is a folder (use -r)"
        )
    dst_kind = dst_side.kind(dst)
    plan = Plan(target=dst)
    if into and dst_kind is None:
        plan.folders.append(dst)
        dst_kind = "dir"
    if dst_kind == "dir":
        plan.target = dst_side.join(dst, src_side.name(src))
    elif dst_kind == "file" and kind == "dir":
        raise error_for_status(
            NtStatus.STATUS_NOT_A_DIRECTORY,
            f"cannot copy folder {src_side.show(src)} onto file {dst_side.show(dst)}",
        )
    if kind == "file":
        if _same(src_side, src, dst_side, plan.target):
            raise error_for_status(
                NtStatus.STATUS_OBJECT_NAME_COLLISION,
                f"{src_side.show(src)} and {dst_side.show(plan.target)} are the same file",
            )
        plan.files.append((src, plan.target, src_side.size(src)))
        return plan
    stack = [(src, plan.target)]
    while stack:
        folder, target = stack.pop()
        plan.folders.append(target)
        subfolders = []
        for name, directory, size in src_side.entries(folder):
            child = src_side.join(folder, name)
            child_target = dst_side.join(target, name)
            if directory:
                subfolders.append((child, child_target))
            else:
                plan.files.append((child, child_target, size))
        stack.extend(reversed(subfolders))
    return plan


def carry_out(
    plan: Plan, src_side: Side, dst_side: Side, progress: TransferProgress
) -> tuple[int, int]:
    """Make the folders and copy the files of ``plan``; (files, bytes) copied."""
    for folder in plan.folders:
        dst_side.mkdir(folder)
    copied = 0
    for src, dst, _size in plan.files:
        progress.file_started(src_side.name(src))
        with src_side.reader(src) as fin, dst_side.writer(dst) as fout:
            while chunk := fin.read(CHUNK):
                view = memoryview(chunk)
                while view:  # a raw remote file may take part of a write
                    view = view[fout.write(view) :]
                progress.advance(len(chunk))
                copied += len(chunk)
        progress.file_done()
    return len(plan.files), copied


def copy(
    client: Any,
    src_text: str,
    dst_text: str,
    *,
    recursive: bool,
    show_progress: bool,
) -> dict[str, Any]:
    """Copy between the command line's two paths; what was copied, for the output."""
    src_side, src = side_for(src_text, client)
    dst_side, dst = side_for(dst_text, client)
    into = paths.ends_with_separator(dst_text) and dst_text.strip("/\\") != ""
    plan = plan_copy(src_side, src, dst_side, dst, recursive=recursive, into=into)
    with TransferProgress(show_progress, plan.total_bytes, len(plan.files)) as progress:
        files, copied = carry_out(plan, src_side, dst_side, progress)
    return {"files": files, "bytes": copied, "target": dst_side.show(plan.target)}
