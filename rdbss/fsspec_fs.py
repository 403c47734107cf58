"""An fsspec filesystem over the rdbss daemon: ``rdbss://server/share/path``.

    import fsspec
    with fsspec.open("rdbss://local/data/table.csv", "rt") as f:
        print(f.read())
    fs = fsspec.filesystem("rdbss", runtime_dir="/run/user/1000/rdbss")
    fs.ls("local/data")

Paths inside the filesystem are ``server/share/rest`` (no leading slash); they map one to one onto
the UNC names of the daemon (``\\\\server\\share\\rest``). Every call is a request to the running
daemon through one ``rdbss.client.Client`` per filesystem instance; copies, renames and ranged
reads happen in the daemon, never through a local temporary file. Failures are the client's
``NtStatusError`` subclasses of the matching OSError (FileNotFoundError, FileExistsError...).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped,unused-ignore]
from fsspec.spec import AbstractBufferedFile  # type: ignore[import-untyped,unused-ignore]
from fsspec.utils import stringify_path  # type: ignore[import-untyped,unused-ignore]

from rdbss.client import SHORT_MEANS_END, Client, FileInfo, Handle
from rdbss.config import Config, load_config
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    NtStatus,
)
from rdbss.wire.status import error_for_status

__all__ = ["RdbssBufferedFile", "RdbssFileSystem", "to_unc"]

S = NtStatus
CHUNK = 4 << 20  # bytes per read or write request of copies and whole-file reads
_MAGIC = frozenset("*?[")


def to_unc(path: str) -> str:
    """``server/share/rest`` (already stripped of ``rdbss://``) -> ``\\\\server\\share\\rest``."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return "\\\\" + "\\".join(parts)


def _share_of(path: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in path.split("/")[:2])


#: FileAttributes.READONLY as a plain int: IntFlag arithmetic costs a microsecond per entry
_READONLY = int(FileAttributes.READONLY)


def _seconds(ns: int) -> float:
    return ns / 1e9


class RdbssFileSystem(fsspec.AbstractFileSystem):  # type: ignore[misc]
    """fsspec's ``AbstractFileSystem`` for shares reached through the rdbss daemon.

    Options: ``runtime_dir`` (the daemon's runtime directory) or ``config`` (a ``Config`` or the
    path of a configuration file), ``timeout`` (seconds per request).
    """

    protocol = ("rdbss",)
    root_marker = ""
    sep = "/"
    # fsspec keeps one instance per process, thread and options (``fsspec.filesystem`` and
    # ``storage_options`` with the same options give the same instance, so the same daemon
    # connection); a pickled instance carries only its options and connects again where it
    # is loaded (dask workers, another process).
    cachable = True

    def __init__(
        self,
        runtime_dir: str | Path | None = None,
        config: Config | str | Path | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(config, str | Path):
            config = load_config(Path(config))
        self._runtime_dir = runtime_dir
        self._config = config
        self._timeout = timeout
        self._client_lock = threading.Lock()
        self._client_obj: Client | None = None
        self._client_pid = -1
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # by id: fsspec's files compare equal by path and size in read mode
        self._open_files: weakref.WeakValueDictionary[int, RdbssBufferedFile] = (
            weakref.WeakValueDictionary()
        )

    # ------------------------------------------------------------------ connection
    @property
    def client(self) -> Client:
        """The daemon connection, made on first use (and again in a forked child)."""
        pid = os.getpid()
        client = self._client_obj
        if client is not None and self._client_pid == pid:
            return client
        with self._client_lock:
            if self._client_obj is None or self._client_pid != pid:
                if self._finalizer is not None:
                    self._finalizer.detach()  # a parent's socket: never touch it after fork
                client = Client(self._runtime_dir, config=self._config, timeout=self._timeout)
                self._client_obj, self._client_pid = client, pid
                # at close, garbage collection or interpreter exit (before module teardown
                # collects forgotten files): the files still open first, then the connection
                self._finalizer = weakref.finalize(self, _shut, client, self._open_files)
            return self._client_obj

    def close(self) -> None:
        """Close the daemon connection (a later call opens a new one)."""
        with self._client_lock:
            if self._finalizer is not None:
                if self._client_pid == os.getpid():
                    self._finalizer()
                else:
                    self._finalizer.detach()  # a parent's socket: never touch it after fork
            self._finalizer = None
            self._client_obj = None

    # ------------------------------------------------------------------ paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(stringify_path(path))
        for proto in cls.protocol:
            for prefix in (proto + "://", proto + "::"):
                if text.startswith(prefix):
                    text = text[len(prefix) :]
                    break
        return "/".join(p for p in text.replace("\\", "/").split("/") if p)

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return {}

    def _unc(self, path: str) -> str:
        return to_unc(self._strip_protocol(path))

    # ------------------------------------------------------------------ information
    def _entry(self, path: str, info: FileInfo) -> dict[str, Any]:
        extra = info.extra
        entry: dict[str, Any] = {
            "name": path,
            "size": 0 if info.is_dir else info.size,
            "type": "directory" if info.is_dir else "file",
            "created": _seconds(info.creation_time),
            "mtime": _seconds(info.last_write_time),
            "atime": _seconds(info.last_access_time),
            "ctime": _seconds(info.change_time),
            "attributes": info.attributes,
            "readonly": bool(info.attributes & _READONLY),
        }
        for key, name in (
            ("mode", "mode"),
            ("nlink", "nlink"),
            ("file_id", "ino"),
            ("allocation_size", "allocation_size"),
        ):
            if key in extra:
                entry[name] = extra[key]
        return entry

    @staticmethod
    def _directory(path: str) -> dict[str, Any]:
        return {"name": path, "size": 0, "type": "directory"}

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if path.count("/") < 1:  # the root or a server: a directory of shares
            if path:
                self._list_shares(path)  # FileNotFoundError for a server we cannot list
            return self._directory(path)
        return self._entry(path, self.client.stat(to_unc(path)))

    def _list_shares(self, server: str) -> list[str]:
        """The shares of ``server``, when the local mini-redirector serves it; servers of
        other mini-redirectors cannot be enumerated."""
        listing = self.client.shares()
        if str(listing.get("server", "")).lower() != server.lower():
            raise FileNotFoundError(2, f"cannot list the shares of {server!r}", server)
        return sorted(listing.get("shares", {}))

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not path:
            raise FileNotFoundError(2, "the rdbss root cannot be listed: give server/share", path)
        if "/" not in path:
            entries = [self._directory(f"{path}/{name}") for name in self._list_shares(path)]
        else:
            try:
                infos = list(self.client.scandir(to_unc(path)))
            except NotADirectoryError:
                entries = [self.info(path)]
            else:
                entries = sorted(
                    (
                        self._entry(f"{path}/{i.name}", i)
                        for i in infos
                        if i.name not in (".", "..")
                    ),
                    key=lambda e: e["name"],
                )
        return entries if detail else [e["name"] for e in entries]

    def modified(self, path: Any) -> datetime:
        info = self.client.stat(self._unc(path))
        return datetime.fromtimestamp(_seconds(info.last_write_time), tz=UTC)

    def created(self, path: Any) -> datetime:
        info = self.client.stat(self._unc(path))
        return datetime.fromtimestamp(_seconds(info.creation_time), tz=UTC)

    # ------------------------------------------------------------------ directories
    def mkdir(self, path: Any, create_parents: bool = True, **kwargs: Any) -> None:
        self.client.mkdir(self._unc(path), parents=create_parents, exist_ok=False)

    def makedirs(self, path: Any, exist_ok: bool = False) -> None:
        stripped = self._strip_protocol(path)
        if stripped.count("/") < 1:  # the root, a server: nothing to make
            if exist_ok:
                return
            raise FileExistsError(17, "exists", stripped)
        self.client.mkdir(to_unc(stripped), parents=True, exist_ok=exist_ok)

    def rmdir(self, path: Any) -> None:
        self.client.rmdir(self._unc(path))

    def _rm(self, path: Any) -> None:
        """A file or an empty directory (``rm(recursive=True)`` removes children first)."""
        self.client.delete(self._unc(path))

    # ------------------------------------------------------------------ handles
    def _create(
        self,
        path: str,
        access: int,
        disposition: int,
        *,
        parents: bool = False,
    ) -> Handle:
        """Open a file (never a directory); with ``parents``, make missing parent directories
        and try again."""
        unc = to_unc(path)
        try:
            return self.client.create(
                unc,
                access=access,
                disposition=disposition,
                options=CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
        except FileNotFoundError as exc:
            if not parents or getattr(exc, "status", None) != S.STATUS_OBJECT_PATH_NOT_FOUND:
                raise
        self.client.mkdir(to_unc(posixpath.dirname(path)), parents=True, exist_ok=True)
        return self.client.create(
            unc,
            access=access,
            disposition=disposition,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )

    def _read_range(self, fobx: int, start: int, end: int | None, size: int | None = None) -> bytes:
        """Bytes [start, end) of an open file (to EOF when ``end`` is None). ``size``, the
        file's size at the open, lets a read to EOF of a small file end on one short answer,
        as ``Client`` reads do (``SHORT_MEANS_END``)."""
        chunks: list[bytes] = []
        offset = start
        if end is None and size is not None and 0 <= size - start < SHORT_MEANS_END:
            data = self.client.read_handle(fobx, offset, size - start + 1)
            if len(data) <= size - start:
                return data
            chunks.append(data)
            offset += len(data)
        while end is None or offset < end:
            want = CHUNK if end is None else min(CHUNK, end - offset)
            data = self.client.read_handle(fobx, offset, want)
            if not data:
                break
            chunks.append(data)
            offset += len(data)
        return b"".join(chunks)

    def _write_all(self, fobx: int, offset: int, data: bytes | memoryview) -> int:
        """Write all of ``data`` at ``offset`` (-1 appends); returns the bytes written. The
        whole rest goes to the client in one call, which keeps its pieces in flight
        (``Client.write_handle``)."""
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            piece = view[done:]
            written = self.client.write_handle(fobx, -1 if offset < 0 else offset + done, piece)
            if written <= 0:
                raise OSError(5, "the daemon wrote nothing", self)
            done += written
        return done

    def _close_handle(self, fobx: int) -> None:
        self.client.close_handle(fobx)

    def _register_file(self, file: RdbssBufferedFile) -> Client:
        """A file opened a handle on the current connection: closed with it (see ``_shut``)."""
        self._open_files[id(file)] = file
        return self.client

    # ------------------------------------------------------------------ fast paths
    def cat_file(
        self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        if not start and end is None:  # the whole file: one compound when it is small
            return self.client.read_bytes(to_unc(self._strip_protocol(path)))
        handle = self._create(
            self._strip_protocol(path), Access.GENERIC_READ, CreateDisposition.FILE_OPEN
        )
        try:
            size = handle.info.size
            if start is not None and start < 0:
                start = max(0, size + start)
            if end is not None and end < 0:
                end = max(0, size + end)
            start = start or 0
            if end is not None and end <= start:
                return b""
            return self._read_range(handle.fobx, start, end, size)
        finally:
            self._close_handle(handle.fobx)

    def pipe_file(self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        disposition = (
            CreateDisposition.FILE_CREATE
            if mode == "create"
            else CreateDisposition.FILE_OVERWRITE_IF
        )
        # Client.write_bytes: a small file's create, write and close as one compound, a
        # larger one's pieces in flight; a missing parent folder (refused at the create,
        # before any byte is sent) sends it the way below, which makes the folder
        try:
            self.client.write_bytes(
                to_unc(self._strip_protocol(path)), value, exclusive=mode == "create"
            )
            return
        except FileNotFoundError as exc:
            if getattr(exc, "status", None) != S.STATUS_OBJECT_PATH_NOT_FOUND:
                raise
        handle = self._create(
            self._strip_protocol(path), Access.GENERIC_WRITE, disposition, parents=True
        )
        try:
            self._write_all(handle.fobx, 0, value)
        finally:
            self._close_handle(handle.fobx)

    def touch(self, path: Any, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if truncate or not self.exists(path):
            self.pipe_file(path, b"")
            return
        handle = self.client.create(to_unc(path), access=Access.FILE_WRITE_ATTRIBUTES)
        try:
            now = time.time_ns()
            self.client.set_info(
                handle.fobx,
                FileInformationClass.FileBasicInformation,
                last_access_time=now,
                last_write_time=now,
            )
        finally:
            self._close_handle(handle.fobx)

    def cp_file(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        """Copy one file through the daemon (chunked reads and writes, no local staging),
        making the parents of ``path2``; a directory ``path1`` makes the directory ``path2``."""
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        try:
            source = self._create(src, Access.GENERIC_READ, CreateDisposition.FILE_OPEN)
        except IsADirectoryError:
            self.makedirs(dst, exist_ok=True)
            return
        try:
            target = self._create(
                dst, Access.GENERIC_WRITE, CreateDisposition.FILE_OVERWRITE_IF, parents=True
            )
            try:
                offset = 0
                while data := self.client.read_handle(source.fobx, offset, CHUNK):
                    self._write_all(target.fobx, offset, data)
                    offset += len(data)
            finally:
                self._close_handle(target.fobx)
        finally:
            self._close_handle(source.fobx)

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Rename in the daemon (FileRenameInformation, replacing an existing file). A target
        that is an existing directory, or ends with ``/``, receives the source inside it; lists
        and globs move every match into the target directory. Across shares: copy + delete."""
        many = isinstance(path1, list | tuple) or any(c in str(path1) for c in _MAGIC)
        target = self._strip_protocol(path2)
        into = str(path2).endswith("/") or many
        if many:
            sources = self.expand_path(path1, recursive=False, maxdepth=maxdepth)
            self.makedirs(target, exist_ok=True)
        else:
            sources = [self._strip_protocol(path1)]
            into = into or (target != sources[0] and self.isdir(target))
        for source in sources:
            dst = posixpath.join(target, posixpath.basename(source)) if into else target
            if source == dst:
                continue
            if dst.startswith(source.rstrip("/") + "/"):
                # refused before the target's parents are made, which would be left behind
                # (names as given: on a case-sensitive share "Report" may move into "report")
                raise error_for_status(
                    S.STATUS_INVALID_PARAMETER,
                    f"cannot move {source} into itself ({dst}): choose a target outside it",
                )
            if _share_of(source) != _share_of(dst):
                self.copy(source, dst, recursive=True)
                self.rm(source, recursive=True)
                continue
            parent = posixpath.dirname(dst)
            try:
                self.client.rename(to_unc(source), to_unc(dst), replace=True)
            except FileNotFoundError as exc:
                if getattr(exc, "status", None) != S.STATUS_OBJECT_PATH_NOT_FOUND or (
                    not self.exists(source)
                ):
                    raise
                self.makedirs(parent, exist_ok=True)
                self.client.rename(to_unc(source), to_unc(dst), replace=True)

    rename = mv

    # ------------------------------------------------------------------ files
    def _open(
        self,
        path: Any,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RdbssBufferedFile:
        return RdbssBufferedFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size="default" if block_size is None else block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )


def _shut(client: Client, files: weakref.WeakValueDictionary[int, RdbssBufferedFile]) -> None:
    """Close the files still open on ``client`` (their writes reach the daemon), then it. Runs
    at most once per connection, possibly at interpreter exit: failures are not raised (a
    handle the close could not reach is closed by the daemon when this process ends)."""
    for file in list(files.values()):
        with contextlib.suppress(Exception):
            file.close()
    client.close()


class RdbssBufferedFile(AbstractBufferedFile):  # type: ignore[misc]
    """An open file: one daemon handle for the life of the file. Reads go through fsspec's
    cache to ``read_handle`` ranges; writes are buffered (``block_size``) and sent with
    ``write_handle`` at their offsets. ``xb`` fails at open with FileExistsError, ``wb``
    truncates at open. With ``autocommit=False`` (transactions) data goes to a temporary
    name in the same directory, renamed over the target by ``commit()``."""

    fs: RdbssFileSystem

    def __init__(
        self,
        fs: RdbssFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._fobx: int | None = None
        kwargs.pop("size", None)  # known from the handle
        if mode not in {"rb", "wb", "ab", "xb"}:
            raise NotImplementedError(f"file mode {mode!r} is not supported")
        self._target = path
        self._temp: str | None = None
        if mode == "rb":
            handle = fs._create(path, Access.GENERIC_READ, CreateDisposition.FILE_OPEN)
            self._fobx = handle.fobx
            self._client = fs._register_file(self)
            try:
                super().__init__(
                    fs,
                    path,
                    mode,
                    block_size=block_size,
                    autocommit=autocommit,
                    cache_type=cache_type,
                    cache_options=cache_options,
                    size=handle.info.size,
                    **kwargs,
                )
                self._details = fs._entry(path, handle.info)
            except BaseException:
                fs._close_handle(handle.fobx)
                self._fobx = None
                raise
            return
        write_path = path
        if not autocommit:
            if mode == "ab":
                raise NotImplementedError("append inside a transaction is not supported")
            if mode == "xb" and fs.exists(path):
                raise FileExistsError(17, "exists", path)
            parent, name = posixpath.split(path)
            self._temp = write_path = posixpath.join(
                parent, f".{name}.rdbss-{uuid.uuid4().hex[:12]}.tmp"
            )
        disposition = {
            "wb": CreateDisposition.FILE_OVERWRITE_IF,
            "xb": CreateDisposition.FILE_CREATE,
            "ab": CreateDisposition.FILE_OPEN_IF,
        }[mode]
        access = Access.GENERIC_WRITE if mode != "ab" else Access.FILE_APPEND_DATA
        handle = fs._create(
            write_path, access | Access.FILE_READ_ATTRIBUTES, disposition, parents=True
        )
        self._fobx = handle.fobx
        self._client = fs._register_file(self)
        try:
            super().__init__(
                fs,
                path,
                mode,
                block_size=block_size,
                autocommit=autocommit,
                cache_type=cache_type,
                cache_options=cache_options,
                **kwargs,
            )
        except BaseException:
            fs._close_handle(handle.fobx)
            self._fobx = None
            raise
        if mode == "ab":
            self.loc = handle.info.size

    # fsspec's three hooks ---------------------------------------------------------------
    def _fetch_range(self, start: int, end: int) -> bytes:
        if self._fobx is None:
            raise ValueError("I/O operation on closed file")
        return self.fs._read_range(self._fobx, start, end)

    def _initiate_upload(self) -> None:
        """Nothing: the handle was opened (and the file created) with the file."""

    def _upload_chunk(self, final: bool = False) -> bool:
        if self._fobx is None:
            raise ValueError("I/O operation on closed file")
        data = self.buffer.getbuffer()
        if len(data):
            offset = -1 if self.mode == "ab" else self.offset
            self.fs._write_all(self._fobx, offset, data)
        del data  # release the export of the BytesIO before fsspec replaces it
        return True

    # life cycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, then close the handle on the connection that opened it. When that connection
        is already closed (a file left to the garbage collector at interpreter exit) there is
        nothing to send: the daemon closes the handles of a process that ended."""
        if self.closed:
            return
        try:
            super().close()
        finally:
            fobx, self._fobx = self._fobx, None
            self.fs._open_files.pop(id(self), None)
            if fobx is not None and not self._client.closed:
                self._client.close_handle(fobx)

    def __del__(self) -> None:
        """A file left to the garbage collector: a write-mode file still sends its buffered
        data (as Python's own files flush), a read-mode one sends its close without waiting
        for the answer; nothing is raised (there is no caller to raise to)."""
        fobx = getattr(self, "_fobx", None)
        if getattr(self, "closed", True) or fobx is None:
            return
        with contextlib.suppress(Exception):
            if self.mode == "rb":
                self._fobx = None
                self.fs._open_files.pop(id(self), None)
                self.closed = True
                if not self._client.closed:
                    self._client.close_handle(fobx, wait=False)
            else:
                self.close()

    def commit(self) -> None:
        """Move the temporary file of a transaction over its target."""
        if self._temp is None:
            return
        temp, self._temp = self._temp, None
        self.fs.client.rename(to_unc(temp), to_unc(self._target), replace=True)

    def discard(self) -> None:
        """Throw away the temporary file of a transaction."""
        if self._temp is None:
            return
        temp, self._temp = self._temp, None
        self.fs.client.delete(to_unc(temp))
