"""The WebDAV mini-redirector: serves WebDAV collections as ``\\\\<server>\\<share>``.

Config::

    [[minirdr]]
    name = "webdav"
    kind = "webdav"
    timeout = 30.0                    # seconds: each read/write of a request (a set-up:
                                      # [daemon] connect_timeout)
    staging_dir = "/var/tmp"          # optional: where the private staging folder is made
    notify_interval = 1.0             # seconds between two PROPFINDs of a watched collection
    [minirdr.servers.davtest]         # \\\\davtest\\<share> reaches this server
    url = "https://dav.example/dav/"  # shares are the first path component under this URL
    username = "davuser"              # optional (anonymous without it)
    password_file = "/path/to/file"   # or password_env = "VAR", or password = "..." (discouraged)
    verify = true                     # optional, https: false, or a CA bundle path

Credentials are read when the SrvCall is created (MRxCreateSrvCall), live only in that SrvCall's
httpx auth object, and never appear in a log line, a message, an exception text or a result.
The authentication scheme is the one the server's 401 challenge asks for (Digest, else Basic).
One ``httpx.Client`` per SrvCall, with explicit timeouts; the host runs each SrvCall's routines
serially on that SrvCall's own worker thread.

Writes: HTTP cannot write part of a resource (wsgidav refuses a ranged PUT), so an open with
write access keeps a staging file (an unnamed temporary file in a private 0700 folder) holding
the whole file. It is made on the first write or size change: empty when this open created or
overwrote the file, else by downloading it. Writes and truncates go to it, reads on that handle
read it, and the whole file is PUT back on MRxFlush and on MRxCloseSrvOpen; a failed upload is
the close's status. So data written through a handle reaches the server at flush or close, not
at each write (as with Windows' own WebDAV redirector). A file this open created or overwrote
and writes sequentially from byte 0 is also streamed to the server while the writes arrive: one
PUT with a chunked body, sent by a thread that reads what the writes staged, ending at the flush
or close (so the upload overlaps the writes instead of following them). The staging file stays
the truth: the first write that is not at the end (or a size change, a rename, a delete) ends
the stream, and if the streamed PUT failed or did not carry the whole file (the server refused a
chunked body, the connection broke, an HTTP error), the close (or flush) PUTs the staged file
whole as before, and that upload's failure is the close's status; nothing written is lost
silently. While a stream runs, other clients may see the file partly written. When the core
re-opens a handle by path after a lost connection (same FOBX), the staged data of the SrvOpen it
lost moves to the new one. Two handles writing the same file each upload their whole copy: the last
close wins (WebDAV locks are not taken; byte-range locks are not offered at all, since WebDAV
locks are whole-resource). Reads on handles without staged data are ranged GETs: a read at any
offset is one GET of exactly its range; a read that starts where the previous one of the same
handle ended opens a streaming GET of the rest of the file (``Range: bytes=N-``) that the next
sequential reads take their bytes from. A read elsewhere (a seek), a write or size change through
the handle, an error, the end of the file, the close and a lost connection close the stream; so
does a third stream on the same server (at most two per server, the least recently used goes:
each holds one of the client's four pooled connections). A stream that breaks (the server closed
the idle connection, a timeout) is reopened once at the same offset before the read fails. A
stream does not see another client's later changes until the handle seeks (as a stale cached
page would not); the handle's own writes always go to the staging file, which reads then use.

Not supported honestly: setting times (FileBasicInformation with a time answers
STATUS_NOT_SUPPORTED; WebDAV's getlastmodified is protected) and the read-only attribute
(STATUS_NOT_SUPPORTED); other attribute bits are accepted and ignored (there is nowhere to keep
them). Names are case sensitive, as the server's URLs are.

HTTP status -> NTSTATUS: 401 LOGON_FAILURE, 403 ACCESS_DENIED, 404 OBJECT_NAME_NOT_FOUND (or
OBJECT_PATH_NOT_FOUND when the parent is missing, found by a PROPFIND of the parent), 405 on MKCOL
OBJECT_NAME_COLLISION (on PUT FILE_IS_A_DIRECTORY), 409 OBJECT_PATH_NOT_FOUND (the parent is
missing), 412 OBJECT_NAME_COLLISION, 416 END_OF_FILE, 423 SHARING_VIOLATION, 413/507 DISK_FULL,
other 5xx UNEXPECTED_NETWORK_ERROR, anything else unexpected INVALID_NETWORK_RESPONSE.

Transport: a connect error, a read/write error or a protocol error mid-session is
STATUS_CONNECTION_DISCONNECTED and marks the SrvCall dead (later calls answer at once; the next
MRxCreateSrvCall for that server makes a new connection); a timeout is STATUS_IO_TIMEOUT. At
MRxCreateSrvCall: the socket's errno through the one table of every backend
(``network_status_from_errno``: refused REMOTE_NOT_LISTENING, no route NETWORK_UNREACHABLE), an
unknown host or server name BAD_NETWORK_PATH.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any, ClassVar

import httpx

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MAX_READ_BYTES,
    MiniRdr,
    Result,
    lowio_of,
    posix_volume,
    set_file_info_with,
    volume_info_class,
)
from rdbss.minirdrs.common.args import arg_bool as _arg_bool
from rdbss.minirdrs.common.args import arg_int as _arg_int
from rdbss.minirdrs.common.args import arg_str as _arg_str
from rdbss.minirdrs.common.args import components as _components
from rdbss.minirdrs.common.args import show as _show
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.notify import Entry, Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.common.passwords import read_password
from rdbss.minirdrs.common.setup import (
    AUTHENTICATE,
    NEGOTIATE,
    SHARE_CHECK,
    TCP_CONNECT,
    SetupDeadline,
)
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.minirdrs.webdav_props import (
    PROPFIND_BODY,
    QUOTA_BODY,
    DavEntry,
    MultiStatusError,
    file_id,
    file_info,
    normalize_path,
    parse_content_range,
    parse_multistatus,
    resource_path,
    split_listing,
)
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
from rdbss.model.create import check_create_parameters, check_open_dir, data_access
from rdbss.wire.constants import (
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsInformationClass,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, network_status_from_errno, status_from_errno

log = logging.getLogger("rdbss.minirdr.webdav")

S = NtStatus
D = CreateDisposition
Info = FileInformationClass
FsInfo = FsInformationClass

DEFAULT_TIMEOUT_S = 30.0
FS_NAME = "rdbss-webdav"
MAX_NAME_LENGTH = 255
UPLOAD_CHUNK = 1 << 20
#: the chunk of a streamed PUT's body (servers that slice their buffer per read, as cheroot
#: does, pay for large chunks quadratically)
STREAM_CHUNK = 64 << 10
#: the HTTP statuses by which a server says it takes no chunked request body
_NO_CHUNKED = frozenset({400, 411, 501, 505})
#: Open streaming GETs per server (each holds one of the client's 4 pooled connections; the
#: other two stay free for the requests of other handles and the notify poller).
MAX_STREAMS_PER_SERVER = 2
USER_AGENT = "rdbss-webdav/0.1"
_OVERWRITING = frozenset({D.FILE_SUPERSEDE, D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF})
_CREATING = frozenset({D.FILE_SUPERSEDE, D.FILE_CREATE, D.FILE_OPEN_IF, D.FILE_OVERWRITE_IF})
_TIME_ARGS = ("creation_time", "last_access_time", "last_write_time", "change_time")
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
#: Seconds between two PROPFINDs of a collection with a pending change notification.
NOTIFY_INTERVAL_S = 1.0
_INVALID_SERVER_CHARS = frozenset('\\/:*?"<>|\x00 ')


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


# --- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _ServerConfig:
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


def _config_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _parse_server(name: object, table: object) -> _ServerConfig:
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
    return _ServerConfig(
        name=name,
        url=url,
        username=username,
        password_file=_config_str(table, "password_file", where),
        password_env=_config_str(table, "password_env", where),
        password=password,
        verify=verify,
    )


# --- per-connection and per-open state -------------------------------------------------------
class _Server:
    """One SrvCall: an authenticated httpx client for one configured server."""

    def __init__(self, config: _ServerConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client
        self.base_raw = config.url.raw_path.decode("ascii")
        self.dead: tuple[int, str] | None = None  # (status, why) once the connection failed
        self.chunked_put = True  # False once the server refused a chunked PUT body
        #: the opens holding a streaming GET, least recently used first
        self.streams: OrderedDict[int, _Open] = OrderedDict()

    @property
    def name(self) -> str:
        return self.config.name

    def url(self, share: str, parts: list[str], *, collection: bool) -> httpx.URL:
        raw = resource_path(self.base_raw, share, parts, collection=collection)
        return self.config.url.copy_with(raw_path=raw.encode("ascii"))

    def decoded_path(self, share: str, parts: list[str]) -> str:
        url = self.url(share, parts, collection=False)
        return normalize_path(url.path)

    def check_alive(self) -> None:
        if self.dead is not None:
            status, why = self.dead
            raise _error(status, f"the connection to {self.name!r} was lost earlier: {why}")

    def close_streams(self) -> None:
        for op in list(self.streams.values()):
            op.drop_stream()

    def close(self) -> None:
        self.close_streams()
        with contextlib.suppress(Exception):
            self.client.close()


@dataclass(slots=True)
class _Stage:
    """The whole file of a write open, staged locally."""

    file: IO[bytes]
    dirty: bool = False

    @property
    def fd(self) -> int:
        return self.file.fileno()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


class _Stream:
    """An open ``GET`` with ``Range: bytes=N-`` positioned at ``position``, the next byte."""

    def __init__(self, response: httpx.Response, position: int, end: int | None) -> None:
        self.response = response
        self.position = position
        self.end = end  # the file's size as the server said, if it did
        self.chunks = response.iter_bytes()
        self.pending = memoryview(b"")

    def fill(self, target: memoryview, done: int) -> tuple[int, bool]:
        """Copy the next bytes into ``target[done:]``: (bytes now in target, whether the body
        goes on). httpx errors propagate; ``position`` counts every byte copied."""
        while done < len(target):
            if not self.pending:
                chunk = next(self.chunks, None)
                if chunk is None:
                    return done, False
                self.pending = memoryview(chunk)
                continue
            take = min(len(target) - done, len(self.pending))
            target[done : done + take] = self.pending[:take]
            self.pending = self.pending[take:]
            done += take
            self.position += take
        return done, self.end is None or self.position < self.end

    def skip(self, count: int) -> None:
        """Discard ``count`` bytes (a server that ignored Range sends from byte 0)."""
        while count > 0:
            if not self.pending:
                chunk = next(self.chunks, None)
                if chunk is None:
                    return
                self.pending = memoryview(chunk)
                continue
            take = min(count, len(self.pending))
            self.pending = self.pending[take:]
            count -= take

    def at_end(self) -> bool:
        return self.end is not None and self.position >= self.end and not self.pending

    def finish(self) -> None:
        with contextlib.suppress(Exception):
            next(self.chunks, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()  # releases (or, mid-body, closes) the pooled connection


class _Upload:
    """A streamed PUT of a file written sequentially from byte 0: a thread sends, as one chunked
    request body, the bytes of the staging file up to ``available`` as the writes stage them;
    ``finish`` ends the body and waits for the server's answer."""

    def __init__(self, server: _Server, url: httpx.URL, fd: int) -> None:
        self.server = server
        self.url = url
        # its own descriptor of the staging file: a request still running after ``finish``
        # gave up on it must never read from a number the close gave to another file
        self.fd = os.dup(fd)
        self.available = 0  # staged bytes the body may carry
        self.sent = 0  # bytes handed to httpx
        self.status: int | None = None  # the server's answer
        self.error: BaseException | None = None  # what broke the request, if it broke
        self._closed = False  # the body ends at ``available``
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"webdav-put-{server.name}", daemon=True
        )
        try:
            self._thread.start()
        except BaseException:
            os.close(self.fd)
            raise

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def extend(self, end: int) -> None:
        """The staging file now holds the bytes up to ``end``: the body may carry them."""
        with self._cond:
            self.available = end
            self._cond.notify()

    def _body(self) -> Iterator[bytes]:
        while True:
            with self._cond:
                while self.sent >= self.available and not self._closed:
                    self._cond.wait()
                end = self.available
                if self.sent >= end:
                    return
            while self.sent < end:
                chunk = os.pread(self.fd, min(STREAM_CHUNK, end - self.sent), self.sent)
                if not chunk:
                    raise OSError(f"staging file shrank to {self.sent} bytes during upload")
                self.sent += len(chunk)
                yield chunk

    def _run(self) -> None:
        try:
            response = self.server.client.request(
                "PUT",
                self.url,
                headers={"Content-Type": "application/octet-stream"},
                content=self._body(),
            )
            self.status = response.status_code
        except BaseException as exc:  # the close reports it (after the fallback upload)
            self.error = exc
        finally:
            os.close(self.fd)

    def finish(self, timeout: float) -> bool:
        """End the body and wait for the answer: whether the server stored the whole body."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = TimeoutError(f"no answer to the streamed PUT in {timeout:g} s")
            return False
        return self.error is None and self.status in (200, 201, 204)

    def why(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return f"HTTP {self.status}"


@dataclass(slots=True)
class _Open:
    """One SRV_OPEN."""

    server: _Server
    share: str
    path: str  # share-relative, backslashes, "" for the share root
    entry: DavEntry  # the properties last seen
    is_dir: bool
    can_read: bool
    can_write: bool
    append_only: bool = False
    empty_on_server: bool = False  # created or overwritten by this open: nothing to download
    stage: _Stage | None = None
    written_ns: int | None = None  # when staged data last changed
    delete_pending: bool = False
    fobx: int | None = None  # the core's handle id at create (a re-open names it again)
    stream: _Stream | None = None  # sequential reads: an open GET at the next byte
    next_read: int | None = None  # where the last remote read of this open ended
    upload: _Upload | None = None  # the streamed PUT of a sequential write, while it runs
    streamable: bool = False  # writes may still start a streamed PUT (see _Upload)

    @property
    def parts(self) -> list[str]:
        return self.path.split("\\") if self.path else []

    def drop_stream(self) -> None:
        """Close this open's streaming GET, if any (the server's LRU entry too)."""
        stream, self.stream = self.stream, None
        self.server.streams.pop(id(self), None)
        if stream is not None:
            stream.close()


class _FileBody:
    """A request body read from a file descriptor; every iteration starts again from byte 0, so
    a request httpx sends twice (a Digest challenge) carries the whole file both times."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        offset = 0
        while offset < self.size:
            chunk = os.pread(self.fd, min(UPLOAD_CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError(f"staging file shrank to {offset} bytes during upload")
            offset += len(chunk)
            yield chunk


def _os_errno(exc: BaseException) -> tuple[int | None, BaseException | None]:
    """The errno (and the exception) of the first OSError in an exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, httpx.HTTPError):
            return current.errno, current
        current = current.__cause__ or current.__context__
    return None, None


def _connect_status(exc: httpx.ConnectError) -> int:
    """The status of a failed connect while setting up a SrvCall."""
    err, cause = _os_errno(exc)
    if isinstance(cause, socket.gaierror):
        return S.STATUS_BAD_NETWORK_PATH
    if err is not None:
        return network_status_from_errno(err)
    text = str(exc).lower()
    if "refused" in text:
        return S.STATUS_REMOTE_NOT_LISTENING
    if "name or service not known" in text or "nodename nor servname" in text:
        return S.STATUS_BAD_NETWORK_PATH
    return S.STATUS_NETWORK_UNREACHABLE


def _http_status(code: int, method: str) -> int:
    """The NTSTATUS for an HTTP error answer to ``method``."""
    if code == 401:
        return S.STATUS_LOGON_FAILURE
    if code == 403:
        return S.STATUS_ACCESS_DENIED
    if code == 404:
        return S.STATUS_OBJECT_NAME_NOT_FOUND
    if code == 405:
        if method == "MKCOL":
            return S.STATUS_OBJECT_NAME_COLLISION
        if method == "PUT":
            return S.STATUS_FILE_IS_A_DIRECTORY
        return S.STATUS_NOT_SUPPORTED
    if code == 409:
        return S.STATUS_OBJECT_PATH_NOT_FOUND
    if code == 412:
        return S.STATUS_OBJECT_NAME_COLLISION
    if code == 416:
        return S.STATUS_END_OF_FILE
    if code == 423:
        return S.STATUS_SHARING_VIOLATION
    if code in (413, 507):
        return S.STATUS_DISK_FULL
    if code >= 500:
        return S.STATUS_UNEXPECTED_NETWORK_ERROR
    if code == 400:
        return S.STATUS_INVALID_PARAMETER
    return S.STATUS_INVALID_NETWORK_RESPONSE


def _range_from(response: httpx.Response, offset: int, what: str) -> tuple[int, int, int | None]:
    """A 206 answer's Content-Range (first, last, size or None), which must start at
    ``offset``; STATUS_INVALID_NETWORK_RESPONSE otherwise."""
    found = parse_content_range(response.headers.get("content-range"))
    if found is None or found[0] != offset:
        raise _error(
            S.STATUS_INVALID_NETWORK_RESPONSE,
            f"{what}: the server answered another range than asked for",
        )
    return found


def _reason(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


class WebDavMiniRdr(MiniRdr):
    """Serves the collections of configured WebDAV servers as shares."""

    kind: ClassVar[str] = "webdav"
    blocking: ClassVar[bool] = True
    #: MRxCloseSrvOpen uploads the staged writes: a close must never be delayed (the user
    #: expects the data on the server once the file is closed), so no collapsing either.
    buffering_mask: ClassVar[int] = int(BUFFERING_STATE_MASK & ~HANDLE_BITS)
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset(
        {LowIoOp.READ, LowIoOp.WRITE, LowIoOp.NOTIFY_CHANGE_DIRECTORY}
    )

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        unknown = sorted(set(config) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"webdav mini-redirector: unknown keys {unknown}")
        # WebDAV (RFC 4918) has no change notification: pending notifies poll with PROPFIND
        self._watches = PollingWatches(
            self.complete_later,
            interval_s=notify_interval(config, "webdav", NOTIFY_INTERVAL_S),
            limits=WatchLimits.from_config(config, "webdav"),
            name=f"webdav-{name}",
        )
        timeout = config.get("timeout", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("webdav mini-redirector: 'timeout' must be a positive number")
        self.timeout = float(timeout)
        staging = config.get("staging_dir")
        if staging is not None and (not isinstance(staging, str) or not staging):
            raise ValueError("webdav mini-redirector: 'staging_dir' must be a folder path")
        self._staging_parent = os.path.expanduser(staging) if staging else None
        servers = config.get("servers", {})
        if not isinstance(servers, Mapping):
            raise ValueError("webdav mini-redirector: 'servers' must be a table of servers")
        self._configs: dict[str, _ServerConfig] = {}
        for server_name, table in servers.items():
            parsed = _parse_server(server_name, table)
            if parsed.name.lower() in self._configs:
                raise ValueError(f"webdav mini-redirector: server {server_name!r} given twice")
            self._configs[parsed.name.lower()] = parsed
        self._lock = threading.RLock()
        self._servers: dict[str, _Server] = {}
        self._opens: dict[int, _Open] = {}
        self._enumerations: Enumerations[DavEntry] = Enumerations()
        self._ids = itertools.count(1)
        self._stage_dir: str | None = None
        # httpx logs every request at INFO; this process's log is the daemon's log.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def servers(self) -> list[str]:
        return [c.name for c in self._configs.values()]

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """The cancel routine of a pending change notification (the polling watch ends)."""
        return self._watches.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending

    def close(self) -> None:
        """Process shutdown: upload what is still staged and delete what was delete-pending
        (as closing each handle would), then drop every connection and the staging folder."""
        self._watches.close()
        with self._lock:
            opens = list(self._opens.values())
            self._opens.clear()
            self._enumerations.clear()
            servers = list(self._servers.values())
            self._servers.clear()
        for op in opens:
            try:
                self._finish(op)
            except NtStatusError as exc:
                log.error(
                    "closing %s on %s at shutdown failed: %s",
                    _show(op.path),
                    op.server.name,
                    exc.strerror,
                )
            except Exception:
                log.exception("closing %s at shutdown failed", _show(op.path))
        for server in servers:
            server.close()
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None

    # --- HTTP -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transport(self, server: _Server, what: str) -> Iterator[None]:
        """Turn httpx transport failures into statuses; a lost connection marks the SrvCall dead."""
        server.check_alive()
        try:
            yield
        except httpx.TimeoutException:
            raise _error(
                S.STATUS_IO_TIMEOUT,
                f"{what}: {server.name!r} did not answer within {self.timeout:g} s",
            ) from None
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc}"
            server.dead = (S.STATUS_CONNECTION_DISCONNECTED, why)
            server.close_streams()
            log.warning("connection to %s lost during %s: %s", server.name, what, why)
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED,
                f"{what}: the connection to {server.name!r} was lost ({why})",
            ) from None

    def _request(
        self,
        server: _Server,
        method: str,
        url: httpx.URL,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | _FileBody | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request; ``timeout`` (seconds) instead of the configured one when given."""
        limit = httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT
        with self._transport(server, what):
            return server.client.request(
                method, url, headers=headers, content=content, timeout=limit
            )

    @staticmethod
    def _fail(response: httpx.Response, method: str, what: str) -> NtStatusError:
        return _error(_http_status(response.status_code, method), f"{what}: {_reason(response)}")

    def _propfind(
        self,
        server: _Server,
        url: httpx.URL,
        depth: int,
        what: str,
        body: bytes = PROPFIND_BODY,
        timeout: float | None = None,
    ) -> list[DavEntry] | None:
        """The entries of a PROPFIND; None when the resource does not exist (404)."""
        response = self._request(
            server,
            "PROPFIND",
            url,
            what,
            headers={"Depth": str(depth), "Content-Type": 'application/xml; charset="utf-8"'},
            content=body,
            timeout=timeout,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 207:
            raise self._fail(response, "PROPFIND", what)
        try:
            return parse_multistatus(response.content)
        except MultiStatusError as exc:
            raise _error(S.STATUS_INVALID_NETWORK_RESPONSE, f"{what}: {exc}") from None

    def _stat(self, server: _Server, share: str, parts: list[str], rel: str) -> DavEntry | None:
        """The properties of one resource, or None if it does not exist."""
        url = server.url(share, parts, collection=not parts)
        entries = self._propfind(server, url, 0, f"cannot query {_show(rel)}")
        if entries is None:
            return None
        own = normalize_path(url.path)
        for entry in entries:
            if entry.path == own:
                return entry
        if len(entries) == 1:  # a server that answers with another spelling of the same path
            return entries[0]
        raise _error(
            S.STATUS_INVALID_NETWORK_RESPONSE, f"cannot query {_show(rel)}: no answer for it"
        )

    def _children(self, op: _Open) -> dict[str, DavEntry]:
        url = op.server.url(op.share, op.parts, collection=True)
        entries = self._propfind(op.server, url, 1, f"cannot list {_show(op.path)}")
        if entries is None:
            raise _error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(op.path)} is gone")
        _own, children = split_listing(entries, url.path)
        return children

    def _check_parent(self, server: _Server, share: str, parts: list[str], rel: str) -> None:
        if len(parts) <= 1:
            return  # the share root, checked when the VNetRoot was made (a PUT says 409 if gone)
        parent = self._stat(server, share, parts[:-1], rel)
        if parent is None or not parent.is_dir:
            raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)}: parent folder not found")

    # --- tables -----------------------------------------------------------------------------
    def _server(self, name: str | None) -> _Server:
        with self._lock:
            server = self._servers.get(name.lower()) if isinstance(name, str) else None
        if server is None:
            if isinstance(name, str) and name.lower() in self._configs:
                raise _error(S.STATUS_CONNECTION_DISCONNECTED, f"no connection to server {name!r}")
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        return server

    def _open_of(self, ctx: RxContext) -> _Open:
        with self._lock:
            op = self._opens.get(ctx.srv_open) if ctx.srv_open is not None else None
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        return op

    def _delete_pending_at(self, server: _Server, share: str, rel: str) -> bool:
        with self._lock:
            return any(
                op.delete_pending
                and op.server.name.lower() == server.name.lower()
                and op.share == share
                and op.path == rel
                for op in self._opens.values()
            )

    def _staging_folder(self) -> str:
        with self._lock:
            if self._stage_dir is None or not os.path.isdir(self._stage_dir):
                # mkdtemp makes it 0700: only this user can read staged data
                self._stage_dir = tempfile.mkdtemp(prefix="rdbss-webdav-", dir=self._staging_parent)
            return self._stage_dir

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        name = ctx.srv_call
        config = self._configs.get(name.lower()) if isinstance(name, str) else None
        if config is None:
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        with self._lock:
            existing = self._servers.get(config.name.lower())
        if existing is not None and existing.dead is None:
            # still good? (the connection manager builds it again)
            self._probe(existing, SetupDeadline.of(ctx, config.name, AUTHENTICATE))
            return Result()
        server = self._connect(config, SetupDeadline.of(ctx, config.name))
        with self._lock:
            old = self._servers.get(config.name.lower())
            self._servers[config.name.lower()] = server
        if old is not None:
            old.close()  # dead: its opens keep answering its status
        log.info("connected to webdav server %s", config.name)
        return Result()

    def _connect(self, config: _ServerConfig, setup: SetupDeadline) -> _Server:
        """A new SrvCall: a PROPFIND of the server's URL answers the authentication challenge
        (the negotiate), then an authenticated one checks the credentials; all within the
        set-up's deadline. A set-up that ends late is closed again (STATUS_IO_TIMEOUT)."""
        client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            verify=config.verify,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )
        server = _Server(config, client)
        try:
            credentials = config.credentials()
            response = self._setup_request(server, setup, NEGOTIATE)
            if response.status_code == 401:
                if credentials is None:
                    raise _error(
                        S.STATUS_LOGON_FAILURE,
                        f"server {config.name!r} asks for credentials and none are configured",
                    )
                challenge = ",".join(response.headers.get_list("www-authenticate")).lower()
                if "digest" in challenge:
                    client.auth = httpx.DigestAuth(*credentials)
                elif "basic" in challenge:
                    client.auth = httpx.BasicAuth(*credentials)
                else:
                    raise _error(
                        S.STATUS_LOGON_FAILURE,
                        f"server {config.name!r} asks for an authentication scheme that is "
                        "not supported (only Digest and Basic are)",
                    )
                del credentials
                self._probe(server, setup)
            elif response.status_code != 207:
                raise self._setup_failure(server, response)
            setup.check()
        except BaseException:
            server.close()
            raise
        return server

    def _setup_request(self, server: _Server, setup: SetupDeadline, phase: str) -> httpx.Response:
        """PROPFIND Depth 0 on the server's URL, within what is left of the set-up's deadline;
        transport failures as set-up statuses."""
        what = f"cannot connect to {server.name!r}"
        left = setup.enter(phase)
        try:
            return server.client.request(
                "PROPFIND",
                server.config.url,
                headers={"Depth": "0", "Content-Type": 'application/xml; charset="utf-8"'},
                content=PROPFIND_BODY,
                timeout=httpx.Timeout(min(left, self.timeout)),
            )
        except httpx.ConnectTimeout:
            raise setup.expired(TCP_CONNECT) from None
        except httpx.TimeoutException:
            if setup.passed:
                raise setup.expired() from None
            raise _error(
                S.STATUS_IO_TIMEOUT, f"{what}: no answer within {self.timeout:g} s"
            ) from None
        except httpx.ConnectError as exc:
            raise _error(_connect_status(exc), f"{what}: {exc}") from None
        except httpx.TransportError as exc:
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED, f"{what}: {type(exc).__name__}: {exc}"
            ) from None

    def _probe(self, server: _Server, setup: SetupDeadline) -> None:
        """An authenticated PROPFIND Depth 0 on the server's URL."""
        server.check_alive()
        response = self._setup_request(server, setup, AUTHENTICATE)
        if response.status_code != 207:
            raise self._setup_failure(server, response)

    @staticmethod
    def _setup_failure(server: _Server, response: httpx.Response) -> NtStatusError:
        code = response.status_code
        what = f"cannot connect to {server.name!r}"
        if code == 401:
            return _error(S.STATUS_LOGON_FAILURE, f"{what}: the server refused the credentials")
        if code == 403:
            return _error(S.STATUS_ACCESS_DENIED, f"{what}: {_reason(response)}")
        if code in (404, 405, 501) or 300 <= code < 400:
            return _error(
                S.STATUS_BAD_NETWORK_PATH,
                f"{what}: no WebDAV collection at the url ({_reason(response)})",
            )
        return _error(_http_status(code, "PROPFIND"), f"{what}: {_reason(response)}")

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        server = self._server(ctx.srv_call)
        share = check_share_name(ctx.net_root)
        url = server.url(share, [], collection=True)
        what = f"cannot connect to share {share!r} on {server.name!r}"
        setup = SetupDeadline.of(ctx, server.name, SHARE_CHECK)
        try:
            entries = self._propfind(server, url, 0, what, timeout=setup.enter(SHARE_CHECK))
            setup.check()
        except NtStatusError as exc:
            if exc.status == S.STATUS_IO_TIMEOUT:
                raise setup.expired() from None
            raise
        if not entries:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"no share named {share!r} on {server.name!r}")
        if not entries[0].is_dir:
            raise _error(
                S.STATUS_BAD_NETWORK_NAME, f"{share!r} on {server.name!r} is not a collection"
            )
        return Result()

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        try:
            key = ctx.srv_call.lower() if isinstance(ctx.srv_call, str) else ""
            with self._lock:
                server = self._servers.get(key)
                in_use = any(op.server is server for op in self._opens.values())
                if server is not None and not in_use:  # open handles keep their connection
                    del self._servers[key]
                else:
                    server = None
            if server is not None:
                server.close()
        except Exception:  # finalize never fails
            log.exception("finalize of SrvCall %s failed", ctx.srv_call)
        return Result()

    # --- create -------------------------------------------------------------------------------
    def create(self, ctx: RxContext) -> Result:
        server = self._server(ctx.srv_call)
        share = check_share_name(ctx.net_root)
        parts = _components(ctx.path or "")
        rel = "\\".join(parts)
        params = ctx.create or CreateParameters()
        disposition, options = check_create_parameters(params)
        if self._delete_pending_at(server, share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{_show(rel)} is being deleted")
        entry = self._stat(server, share, parts, rel)
        created = entry is None
        if entry is None:
            op = self._create_new(server, share, parts, rel, params, disposition, options)
            information = int(CreateInformation.FILE_CREATED)
        else:
            op, information = self._open_existing(
                server, share, parts, rel, entry, params, disposition, options
            )
        if options & CreateOptions.FILE_DELETE_ON_CLOSE:
            try:
                self._check_deletable(op)
            except NtStatusError:
                if created:
                    with contextlib.suppress(NtStatusError):
                        self._delete(op)
                raise
            op.delete_pending = True
        op.fobx = ctx.fobx
        self._adopt_orphan(op)
        with self._lock:
            srv_open = next(self._ids)
            self._opens[srv_open] = op
        return Result(
            information=information,
            result={**self._info(op), "srv_open": srv_open, "directory": op.is_dir},
        )

    def _adopt_orphan(self, op: _Open) -> None:
        """The core re-opens a handle by path (same FOBX) after its connection was lost: the
        SrvOpen it had on the dead connection is never closed, so its staged data (writes not
        uploaded yet) moves to the new SrvOpen instead of being lost."""
        if op.fobx is None:
            return
        with self._lock:
            for srv_open, old in list(self._opens.items()):
                if (
                    old.fobx == op.fobx
                    and old.server is not op.server
                    and old.server.dead is not None
                    and old.server.name.lower() == op.server.name.lower()
                    and old.share == op.share
                    and old.path == op.path
                ):
                    del self._opens[srv_open]
                    self._enumerations.forget_srv_open(srv_open)
                    break
            else:
                return
        old.drop_stream()
        self._end_upload(old)  # its connection is gone: the stage stays dirty unless it got there
        if old.stage is not None:
            if op.stage is not None:
                op.stage.close()
            op.stage, old.stage = old.stage, None
            op.written_ns = old.written_ns
        op.delete_pending = op.delete_pending or old.delete_pending
        log.info("re-opened %s on %s: kept its staged data", _show(op.path), op.server.name)

    def _create_new(
        self,
        server: _Server,
        share: str,
        parts: list[str],
        rel: str,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> _Open:
        if not parts:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"share {share!r} is gone")
        self._check_parent(server, share, parts, rel)
        if disposition not in _CREATING:
            raise _error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
        if params.file_attributes & FileAttributes.READONLY:
            raise _error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        can_read, can_write, append_only = data_access(params.desired_access)
        is_dir = bool(options & CreateOptions.FILE_DIRECTORY_FILE)
        what = f"cannot create {_show(rel)}"
        if is_dir:
            url = server.url(share, parts, collection=True)
            response = self._request(server, "MKCOL", url, what)
            if response.status_code not in (200, 201, 204):
                raise self._fail(response, "MKCOL", what)
        else:
            url = server.url(share, parts, collection=False)
            # If-None-Match: * so a file someone else made meanwhile is not clobbered
            response = self._request(
                server, "PUT", url, what, headers={"If-None-Match": "*"}, content=b""
            )
            if response.status_code not in (200, 201, 204):
                raise self._fail(response, "PUT", what)
        entry = self._stat(server, share, parts, rel)
        if entry is None:
            now = time.time_ns()
            path = server.decoded_path(share, parts)
            entry = DavEntry(path, is_dir, 0, now, now)
        return _Open(
            server,
            share,
            rel,
            entry,
            is_dir,
            can_read,
            can_write,
            append_only=append_only,
            empty_on_server=not is_dir,
            streamable=not is_dir,
        )

    def _open_existing(
        self,
        server: _Server,
        share: str,
        parts: list[str],
        rel: str,
        entry: DavEntry,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[_Open, int]:
        can_read, can_write, append_only = data_access(params.desired_access)
        if disposition == D.FILE_CREATE:
            raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists")
        if entry.is_dir:
            check_open_dir(rel, options, disposition, can_write)
            op = _Open(server, share, rel, entry, True, can_read, can_write)
            return op, int(CreateInformation.FILE_OPENED)
        if options & CreateOptions.FILE_DIRECTORY_FILE:
            raise _error(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
        if params.file_attributes & FileAttributes.READONLY and disposition in _OVERWRITING:
            raise _error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        overwrite = disposition in _OVERWRITING
        if overwrite:
            what = f"cannot overwrite {_show(rel)}"
            url = server.url(share, parts, collection=False)
            response = self._request(server, "PUT", url, what, content=b"")
            if response.status_code not in (200, 201, 204):
                raise self._fail(response, "PUT", what)
            entry = self._stat(server, share, parts, rel) or replace(
                entry, size=0, last_modified_ns=time.time_ns()
            )
        op = _Open(
            server,
            share,
            rel,
            entry,
            False,
            can_read,
            can_write,
            append_only=append_only,
            empty_on_server=overwrite,
            streamable=overwrite,
        )
        information = {
            D.FILE_SUPERSEDE: CreateInformation.FILE_SUPERSEDED,
            D.FILE_OVERWRITE: CreateInformation.FILE_OVERWRITTEN,
            D.FILE_OVERWRITE_IF: CreateInformation.FILE_OVERWRITTEN,
        }.get(disposition, CreateInformation.FILE_OPENED)
        return op, int(information)

    def _check_deletable(self, op: _Open) -> None:
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        if op.is_dir and self._children(op):
            raise _error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{_show(op.path)} is not empty")

    def _info(self, op: _Open) -> dict[str, Any]:
        size = op.stage.size() if op.stage is not None else None
        return file_info(
            op.entry,
            op.path,
            size=size,
            last_write_ns=op.written_ns,
            delete_pending=op.delete_pending,
            ident=file_id(str(op.server.config.url), op.share, op.path),
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            if not op.is_dir:
                raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")
            return self._watches.notify(
                ctx,
                self._lister(op),
                group=op.server.name.lower(),
                folder=f"{op.share}\\{op.path}",
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=_show(op.path),
            )
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
        if lowio.operation == LowIoOp.READ:
            return self._read(op, lowio.offset, lowio.length)
        if lowio.operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(op, lowio.offset, payload)
        raise _error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {lowio.operation!r} not supported"
        )

    def _lister(self, op: _Open) -> Lister:
        """Lists a collection below the watched one (one PROPFIND, Depth 1; called from the
        notify poller's thread). WebDAV gives no mode: only names, sizes and last-modified
        times (to the second, as HTTP dates go) are compared."""

        def list_folder(sub: str) -> list[tuple[str, Entry]]:
            parts = op.parts + (sub.split("\\") if sub else [])
            rel = "\\".join(parts)
            url = op.server.url(op.share, parts, collection=True)
            entries = self._propfind(op.server, url, 1, f"cannot list {_show(rel)}")
            if entries is None:
                raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)} is gone")
            _own, children = split_listing(entries, url.path)
            return [
                (
                    name,
                    Entry(
                        entry.is_dir,
                        0 if entry.is_dir else entry.size or 0,
                        entry.last_modified_ns or 0,
                        0,
                    ),
                )
                for name, entry in children.items()
            ]

        return list_folder

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory path: a streamed read copies the body straight into the client's
        arena; other reads are copied there from their answer."""
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
        return self._read(op, lowio.offset, len(target), into=target)

    def _read(self, op: _Open, offset: int, length: int, into: memoryview | None = None) -> Result:
        if not op.can_read:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for reading")
        if offset < 0 or length < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        if length > MAX_READ_BYTES:
            raise _error(
                S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
            )
        if length == 0:
            return Result(information=0, payload=b"")
        data: bytes | bytearray
        if op.stage is not None:
            op.drop_stream()
            data = self._read_stage(op.stage, offset, length, op.path)
        elif offset == op.next_read:  # sequential: stream the rest of the file
            buffer: bytearray | None = None
            if into is None:
                buffer = bytearray(length)
                target = memoryview(buffer)
            else:
                target = into
            got = self._read_streamed(op, offset, target)
            if not got:
                raise _error(S.STATUS_END_OF_FILE, f"{_show(op.path)}: offset {offset} is past EOF")
            if buffer is None:
                return Result(information=got)
            return Result(information=got, payload=buffer if got == length else buffer[:got])
        else:
            op.drop_stream()
            data = self._read_remote(op, offset, length)
            op.next_read = offset + len(data) if len(data) == length else None
        if not data:
            raise _error(S.STATUS_END_OF_FILE, f"{_show(op.path)}: offset {offset} is past EOF")
        if into is not None:
            into[: len(data)] = data
            return Result(information=len(data))
        return Result(information=len(data), payload=data)

    @staticmethod
    def _read_stage(stage: _Stage, offset: int, length: int, rel: str) -> bytes:
        chunks: list[bytes] = []
        done = 0
        try:
            while done < length:
                chunk = os.pread(stage.fd, length - done, offset + done)
                if not chunk:
                    break
                chunks.append(chunk)
                done += len(chunk)
        except OSError as exc:
            raise _error(
                status_from_errno(exc.errno), f"cannot read {_show(rel)}: {exc.strerror}"
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _read_remote(self, op: _Open, offset: int, length: int) -> bytes:
        """One ranged GET."""
        server = op.server
        url = server.url(op.share, op.parts, collection=False)
        what = f"cannot read {_show(op.path)}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        with self._transport(server, what), server.client.stream("GET", url, headers=headers) as r:
            if r.status_code == 206:
                _range_from(r, offset, what)
                data = r.read()
                return data[:length]
            if r.status_code == 200:  # the server ignored Range: skip to the offset
                return self._slice_stream(r, offset, length)
            if r.status_code == 416:
                return b""
            r.read()
            raise self._fail(r, "GET", what)

    def _read_streamed(self, op: _Open, offset: int, target: memoryview) -> int:
        """A sequential read: from this open's streaming GET, opened here if needed. A stream
        that breaks (the server closed the idle connection, a timeout) is reopened once at the
        same position; a second failure is the read's status. The end of the file, an error or
        an empty answer closes the stream."""
        server = op.server
        what = f"cannot read {_show(op.path)}"
        length = len(target)
        done = 0
        retried = False
        more = True
        while True:
            fresh = op.stream is None
            stream = op.stream
            try:
                if stream is None:
                    stream = self._open_stream(op, offset + done, what)
                    if stream is None:  # 416: past the end
                        more = False
                        break
                with self._lock, contextlib.suppress(KeyError):
                    server.streams.move_to_end(id(op))
                done, more = stream.fill(target, done)
                break
            except httpx.TransportError as exc:
                op.drop_stream()
                if stream is not None:
                    done = stream.position - offset  # what it delivered before it broke
                if retried or (fresh and not done):
                    op.next_read = None
                    with self._transport(server, what):
                        raise exc from None
                retried = True
                log.debug("stream of %s broke (%s): reopening", _show(op.path), exc)
            except BaseException:
                op.drop_stream()
                op.next_read = None
                raise
        if not more or done < length:
            if op.stream is not None and op.stream.at_end():
                op.stream.finish()  # the body is complete: the connection goes back to the pool
            op.drop_stream()
            op.next_read = None
        else:
            op.next_read = offset + done
        return done

    def _open_stream(self, op: _Open, offset: int, what: str) -> _Stream | None:
        """A GET from ``offset`` to the end, kept open on ``op``; None if ``offset`` is past
        the end. The least recently used stream of the server goes if there are too many."""
        server = op.server
        server.check_alive()
        with self._lock:
            while len(server.streams) >= MAX_STREAMS_PER_SERVER:
                _key, oldest = next(iter(server.streams.items()))
                oldest.drop_stream()
        url = server.url(op.share, op.parts, collection=False)
        request = server.client.build_request("GET", url, headers={"Range": f"bytes={offset}-"})
        response = server.client.send(request, stream=True)
        try:
            if response.status_code == 206:
                found = _range_from(response, offset, what)
                stream = _Stream(response, offset, found[2])
            elif response.status_code == 200:  # the server ignored Range: skip to the offset
                size = response.headers.get("content-length")
                stream = _Stream(response, offset, int(size) if size and size.isdigit() else None)
                stream.skip(offset)
            elif response.status_code == 416:
                response.close()
                return None
            else:
                response.read()
                raise self._fail(response, "GET", what)
        except BaseException:
            response.close()
            raise
        op.stream = stream
        with self._lock:
            server.streams[id(op)] = op
        return stream

    @staticmethod
    def _slice_stream(response: httpx.Response, offset: int, length: int) -> bytes:
        chunks: list[bytes] = []
        position = 0
        got = 0
        for chunk in response.iter_bytes():
            end = position + len(chunk)
            if end > offset:
                piece = chunk[max(0, offset - position) : offset + length - position]
                chunks.append(piece)
                got += len(piece)
                if got >= length:
                    break
            position = end
        return b"".join(chunks)

    def _write(
        self, op: _Open, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if not op.can_write:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
        if offset < -1:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise _error(S.STATUS_INVALID_PARAMETER, "write without data")
        view = memoryview(payload).cast("B")
        if not len(view):
            return Result(information=0)
        op.drop_stream()
        op.next_read = None
        stage = self._stage(op)
        try:
            size = stage.size()
            if offset == -1 or op.append_only:
                offset = size
            if offset != size or (op.upload is not None and not op.upload.running):
                self._end_upload(op)  # not at the end (or the PUT ended): no streaming now
            written = 0
            while written < len(view):
                written += os.pwrite(stage.fd, view[written:], offset + written)
        except OSError as exc:
            raise _error(
                status_from_errno(exc.errno), f"cannot write {_show(op.path)}: {exc.strerror}"
            ) from None
        stage.dirty = True
        op.written_ns = time.time_ns()
        if op.upload is not None:
            op.upload.extend(offset + written)
        elif op.streamable and offset == 0 and op.server.chunked_put:
            url = op.server.url(op.share, op.parts, collection=False)
            try:
                upload = _Upload(op.server, url, stage.fd)
            except (OSError, RuntimeError):  # no descriptor or thread to spare: uploaded whole
                op.streamable = False
            else:
                upload.extend(written)
                op.upload = upload
        return Result(information=written)

    def _end_upload(self, op: _Open) -> None:
        """End the open's streamed PUT, if one runs; writes no longer start one. The staging
        file is clean if the server stored all of it, else it stays dirty: the flush or close
        then PUTs it whole."""
        upload, op.upload = op.upload, None
        op.streamable = False
        if upload is None:
            return
        stored = upload.finish(2 * self.timeout + 1.0)
        stage = op.stage
        if stored and stage is not None and upload.sent == stage.size():
            stage.dirty = False
            op.entry = replace(
                op.entry, size=upload.sent, last_modified_ns=op.written_ns or time.time_ns()
            )
            return
        if upload.status in _NO_CHUNKED:
            op.server.chunked_put = False
        if not stored:
            log.info(
                "streamed PUT of %s on %s failed (%s): the staged file goes up whole instead",
                _show(op.path),
                op.server.name,
                upload.why(),
            )

    def _stage(self, op: _Open, *, fill: bool = True) -> _Stage:
        """The staging file of a write open, made (and filled from the server, unless this open
        made the file empty or ``fill`` is false) on first use."""
        if op.stage is not None:
            return op.stage
        op.drop_stream()  # from now on reads come from the staging file
        op.next_read = None
        try:
            stage = _Stage(tempfile.TemporaryFile(dir=self._staging_folder()))  # noqa: SIM115
        except OSError as exc:
            raise _error(
                status_from_errno(exc.errno),
                f"cannot stage {_show(op.path)}: no local staging file ({exc.strerror})",
            ) from None
        try:
            if fill and not op.empty_on_server:
                self._download(op, stage)
        except BaseException:
            stage.close()
            raise
        op.stage = stage
        return stage

    def _download(self, op: _Open, stage: _Stage) -> None:
        server = op.server
        url = server.url(op.share, op.parts, collection=False)
        what = f"cannot fetch {_show(op.path)} to change it"
        with self._transport(server, what), server.client.stream("GET", url) as r:
            if r.status_code != 200:
                r.read()
                raise self._fail(r, "GET", what)
            expected = r.headers.get("content-length")
            size = 0
            try:
                for chunk in r.iter_bytes(UPLOAD_CHUNK):
                    stage.file.write(chunk)
                    size += len(chunk)
                stage.file.flush()
            except OSError as exc:
                raise _error(
                    status_from_errno(exc.errno), f"{what}: staging failed ({exc.strerror})"
                ) from None
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED,
                f"{what}: got {size} of {expected} bytes",
            )

    def _upload(self, op: _Open) -> None:
        """PUT the staged file, if it changed since the last upload (or its streamed PUT)."""
        self._end_upload(op)
        stage = op.stage
        if stage is None or not stage.dirty:
            return
        server = op.server
        url = server.url(op.share, op.parts, collection=False)
        what = f"cannot upload {_show(op.path)}"
        try:
            size = stage.size()
        except OSError as exc:
            raise _error(status_from_errno(exc.errno), f"{what}: {exc.strerror}") from None
        response = self._request(
            server,
            "PUT",
            url,
            what,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            content=_FileBody(stage.fd, size),
        )
        if response.status_code not in (200, 201, 204):
            raise self._fail(response, "PUT", what)
        stage.dirty = False
        op.entry = replace(op.entry, size=size, last_modified_ns=op.written_ns or time.time_ns())

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            self._upload(op)
        return Result()

    # --- file information ---------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        if op.stage is None:
            fresh = self._stat(op.server, op.share, op.parts, op.path)
            if fresh is not None and fresh.is_dir == op.is_dir:
                op.entry = fresh
        info = self._info(op)
        info["position"] = 0
        return Result(result=info)

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    @staticmethod
    def _set_basic(op: _Open, args: Mapping[str, Any]) -> None:
        times = {key: _arg_int(args, key, default=0) for key in _TIME_ARGS}
        attributes = _arg_int(args, "attributes", default=0)
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        if any(value > 0 for value in times.values()):
            raise _error(S.STATUS_NOT_SUPPORTED, "WebDAV cannot set file times")
        if attributes & FileAttributes.READONLY:
            raise _error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        # other attribute bits: nowhere to keep them; accepted and ignored

    def _writable_file(self, op: _Open, what: str, size: int) -> _Stage:
        if op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
        if not op.can_write:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
        return self._stage(op, fill=size > 0)  # nothing to fetch for a truncation to 0

    def _truncate(self, op: _Open, stage: _Stage, size: int) -> None:
        op.drop_stream()
        op.next_read = None
        try:
            if size or op.upload is not None or stage.size():
                self._end_upload(op)  # an empty file made empty again may still stream
            os.ftruncate(stage.fd, size)
        except OSError as exc:
            raise _error(
                status_from_errno(exc.errno),
                f"cannot set the size of {_show(op.path)}: {exc.strerror}",
            ) from None
        stage.dirty = True
        op.written_ns = time.time_ns()

    def _set_end_of_file(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "end of file", size)
        if (fresh and size == 0) or size != stage.size():
            self._truncate(op, stage, size)

    def _set_allocation(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "allocation size", size)
        if (fresh and size == 0) or size < stage.size():
            self._truncate(op, stage, size)

    def _set_rename(self, op: _Open, args: Mapping[str, Any]) -> None:
        target_parts = _components(_arg_str(args, "target"))
        target_rel = "\\".join(target_parts)
        replace_existing = _arg_bool(args, "replace", default=False)
        if not target_rel:
            raise _error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        if target_rel == op.path:
            return
        server = op.server
        self._check_parent(server, op.share, target_parts, target_rel)
        existing = self._stat(server, op.share, target_parts, target_rel)
        if existing is not None:
            if not replace_existing:
                raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(target_rel)} already exists")
            if existing.is_dir:
                raise _error(
                    S.STATUS_ACCESS_DENIED, f"{_show(target_rel)} is a directory: cannot replace it"
                )
        self._end_upload(op)  # the streamed PUT goes to the old name: end it before the MOVE
        source = server.url(op.share, op.parts, collection=op.is_dir)
        target = server.url(op.share, target_parts, collection=op.is_dir)
        what = f"cannot rename {_show(op.path)} to {_show(target_rel)}"
        response = self._request(
            server,
            "MOVE",
            source,
            what,
            headers={"Destination": str(target), "Overwrite": "T" if replace_existing else "F"},
        )
        if response.status_code not in (200, 201, 204):
            raise self._fail(response, "MOVE", what)
        self._renamed(op, target_rel)

    def _renamed(self, moved: _Open, new: str) -> None:
        """Point every open at or under the moved name at its new name."""
        old = moved.path
        prefix = old + "\\"
        with self._lock:
            others = [o for o in self._opens.values() if o is not moved]
        for other in [moved, *others]:
            if other.server.name.lower() != moved.server.name.lower():
                continue
            if other.share != moved.share:
                continue
            if other.path == old:
                other.path = new
            elif other.path.startswith(prefix):
                other.path = new + "\\" + other.path[len(prefix) :]
            else:
                continue
            other.drop_stream()
            other.next_read = None

    def _set_disposition(self, op: _Open, args: Mapping[str, Any]) -> None:
        delete = _arg_bool(args, "delete")
        if delete:
            self._check_deletable(op)
        op.delete_pending = delete

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")

        def load(pattern: str) -> list[tuple[str, DavEntry]]:
            children = self._children(op)
            return [(n, children[n]) for n in sorted(children) if is_name_in_expression(pattern, n)]

        def describe(name: str, entry: DavEntry) -> dict[str, Any]:
            rel = f"{op.path}\\{name}" if op.path else name
            return file_info(
                entry,
                rel,
                delete_pending=self._delete_pending_at(op.server, op.share, rel),
                ident=file_id(str(op.server.config.url), op.share, rel),
            )

        return self._enumerations.query(ctx, _show(op.path), load, describe)

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        if ctx.srv_open is not None:
            op = self._open_of(ctx)
            server, share = op.server, op.share
        else:
            server, share = self._server(ctx.srv_call), check_share_name(ctx.net_root)
        volume_info_class(ctx)
        url = server.url(share, [], collection=True)
        what = f"cannot query the volume of share {share!r}"
        entries = self._propfind(server, url, 0, what, body=QUOTA_BODY)
        if not entries:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"{what}: the share is gone")
        available, used = entries[0].quota_available, entries[0].quota_used
        if available is None:
            raise _error(S.STATUS_NOT_SUPPORTED, f"{what}: the server reports no quota")
        return posix_volume(
            total=available + (used or 0),
            free=available,
            avail=available,
            block=0,
            fs_name=FS_NAME,
            label=share,
            serial=zlib.crc32(f"{server.config.url}{share}".encode()),
            max_name_length=MAX_NAME_LENGTH,
        )

    # --- close --------------------------------------------------------------------------------
    def close_srv_open(self, ctx: RxContext) -> Result:
        with self._lock:
            op = self._opens.pop(ctx.srv_open, None) if ctx.srv_open is not None else None
        if op is not None:
            self._enumerations.forget_srv_open(ctx.srv_open)
            self._watches.end(srv_open=ctx.srv_open)
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        try:
            self._finish(op)
        except NtStatusError as exc:
            return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    def _finish(self, op: _Open) -> None:
        """What closing an open does: delete it if delete-pending, else upload staged data."""
        try:
            if op.delete_pending:
                self._end_upload(op)  # the PUT must not bring the file back after the DELETE
                self._delete(op)
            elif op.stage is not None and op.stage.dirty:
                try:
                    self._upload(op)
                except NtStatusError as exc:
                    raise _error(
                        exc.status,
                        f"{exc.strerror}; the data written through this handle did not reach "
                        "the server",
                    ) from None
        finally:
            self._end_upload(op)  # before its staging file closes
            op.drop_stream()
            if op.stage is not None:
                op.stage.close()
                op.stage = None

    def _delete(self, op: _Open) -> None:
        what = f"cannot delete {_show(op.path)}"
        if op.is_dir:
            # DELETE of a collection is recursive in WebDAV: never take what appeared since
            try:
                children = self._children(op)
            except NtStatusError as exc:
                if exc.status == S.STATUS_OBJECT_NAME_NOT_FOUND:
                    return  # already gone: what was asked for
                raise
            if children:
                raise _error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{what}: not empty")
        url = op.server.url(op.share, op.parts, collection=op.is_dir)
        response = self._request(op.server, "DELETE", url, what)
        if response.status_code in (200, 202, 204, 404):  # 404: already gone, what was asked
            return
        raise self._fail(response, "DELETE", what)
