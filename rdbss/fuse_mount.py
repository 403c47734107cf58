"""Mount a share (or a folder in it) of the rdbss daemon with FUSE, so every program can use it.

    from rdbss.fuse_mount import mount
    mount(r"\\\\local\\data", "/mnt/data")        # blocks until `fusermount3 -u /mnt/data`

or ``rdbss mount '\\\\local\\data' /mnt/data``. Built on pyfuse3 (libfuse3's low-level API on
trio): the kernel's requests name inodes (rdbss.fuse_kernel numbers the mount's paths), many
are served at once, each a request to the daemon from a pool of clients (rdbss.fuse_ops), and
the kernel can be told to forget a name or an inode's attributes and pages, which the
high-level API cannot. docs/mount.md is the user's page: options, what is cached and when it
is invalidated.

Options (``-o``), beside libfuse's own (``allow_other``...):
- ``attr_timeout=S``: how long the kernel and the mount trust names and attributes (1 s by
  default; 30 s with ``notify``); ``entry_timeout=S`` for names alone (as ``attr_timeout``).
- ``notify``: a change-notify watch on the mounted folder's tree; a change it reports drops
  the name and the inode from the mount's and the kernel's caches at once.
- ``read_ahead_kb=K``: a sequential reader's window (4096 KiB by default), also the kernel's
  read-ahead for the mount (set when the mounting user may).
- ``writeback_cache``: the kernel gathers writes in its page cache.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from rdbss.client import Client
from rdbss.config import Config, load_config
from rdbss.fuse_ops import ATTR_TIMEOUT_S, POOL_SIZE, READ_AHEAD_BYTES, PathOps, normalize_unc
from rdbss.wire import (
    Access,
    CreateOptions,
    NtStatus,
    NtStatusError,
    error_for_status,
)

__all__ = ["NOTIFY_ATTR_TIMEOUT_S", "Watcher", "cmd_mount", "mount"]

log = logging.getLogger("rdbss.fuse")

#: ``attr_timeout`` by default with ``-o notify``: the watch, not the clock, says what changed.
NOTIFY_ATTR_TIMEOUT_S = 30.0
#: FILE_NOTIFY_CHANGE_FILE_NAME | DIR_NAME | ATTRIBUTES | SIZE | LAST_WRITE (MS-FSCC 2.4.42)
WATCH_FILTER = 0x1 | 0x2 | 0x4 | 0x8 | 0x10
WATCH_ROUND_S = 1.0  # one wait of the watch; stopping the mount waits for at most this
RETRY_S = 1.0  # after a lost watch (the daemon restarted, the server went away)


class Watcher:
    """A change-notify watch on the tree of the mounted folder (``-o notify``), in a thread with
    its own client: each change it reports is handed to ``changed(path)``, "too many to name"
    and a lost watch to ``changed_all()`` (what happened meanwhile is not known)."""

    def __init__(
        self, ops: PathOps, changed: Callable[[str], None], changed_all: Callable[[], None]
    ) -> None:
        self._ops = ops
        self._changed = changed
        self._changed_all = changed_all
        self._stop = threading.Event()
        self.ready = threading.Event()  # armed once (tests wait for it)
        self._thread = threading.Thread(target=self._run, name="rdbss-notify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WATCH_ROUND_S + 5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._ops.new_client() as client:
                    self._watch(client)
            except Exception as exc:  # the daemon restarted, the server went away
                log.warning("change-notify watch lost (%s); watching again", exc)
                self._ops.cache.clear()
                self._changed_all()
                self._stop.wait(RETRY_S)

    def _watch(self, client: Client) -> None:
        handle = client.create(
            self._ops.root,
            access=Access.FILE_LIST_DIRECTORY,
            options=CreateOptions.FILE_DIRECTORY_FILE,
        )
        try:
            while not self._stop.is_set():
                try:
                    changes = client.watch(
                        handle.fobx, WATCH_FILTER, tree=True, timeout=WATCH_ROUND_S
                    )
                except NtStatusError as exc:
                    if exc.status != NtStatus.STATUS_IO_TIMEOUT:
                        raise
                    self.ready.set()
                    continue
                self.ready.set()
                if changes is None:
                    self._ops.cache.clear()
                    self._changed_all()
                    continue
                for change in changes:
                    name = str(change.get("name", "")).replace("\\", "/").strip("/")
                    if name:
                        path = "/" + name
                        self._ops.cache.forget_tree(path)
                        self._changed(path)
        finally:
            with contextlib.suppress(OSError):
                client.close_handle(handle.fobx, wait=False)


def mount(
    unc_share: str,
    mountpoint: str,
    *,
    runtime_dir: str | Path | None = None,
    config: Config | None = None,
    timeout: float | None = None,
    foreground: bool = True,
    options: Mapping[str, str | int | bool] | None = None,
) -> None:
    r"""Mount ``unc_share`` (``\\server\share`` or a folder in it) at ``mountpoint``.

    In the foreground (the default) this returns when the file system is unmounted
    (``fusermount3 -u MOUNTPOINT``, or SIGINT/SIGTERM to this process); otherwise the process
    detaches into the background once mounted. ``options`` are ``-o`` mount options
    (``{"allow_other": True}``...); the mount's own are listed in the module docstring. Fails
    before mounting if the daemon is not running, the share folder does not exist or an
    option of the mount's is bad.
    """
    import pyfuse3  # lazy: the CLI works without pyfuse3
    import trio

    from rdbss.fuse_kernel import InodeTable, KernelCache, KernelOps

    root = normalize_unc(unc_share)
    extra = dict(options or {})
    notify = _flag(extra.pop("notify", False))
    default_ttl = NOTIFY_ATTR_TIMEOUT_S if notify else ATTR_TIMEOUT_S
    attr_timeout = _seconds(extra.pop("attr_timeout", default_ttl), "attr_timeout")
    entry = extra.pop("entry_timeout", None)
    entry_timeout = attr_timeout if entry is None else _seconds(entry, "entry_timeout")
    writeback = _flag(extra.pop("writeback_cache", False))
    read_ahead = _kib(extra.pop("read_ahead_kb", READ_AHEAD_BYTES >> 10), "read_ahead_kb")
    with Client(runtime_dir, config=config, timeout=timeout) as client:
        if not client.stat(root).is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", root)
    if not os.path.isdir(mountpoint):
        raise NotADirectoryError(errno.ENOTDIR, "the mount point is not a directory", mountpoint)
    ops = PathOps(
        root,
        runtime_dir=runtime_dir,
        config=config,
        timeout=timeout,
        attr_timeout=attr_timeout,
        writeback_cache=writeback,
        read_ahead=read_ahead,
    )
    inodes = InodeTable()
    kernel = KernelCache(
        inodes,
        attr_timeout=attr_timeout,
        entry_timeout=entry_timeout,
        inval_inode=pyfuse3.invalidate_inode,
        inval_entry=lambda parent, name: pyfuse3.invalidate_entry_async(
            parent, name, ignore_enoent=True
        ),
    )
    kernel_ops = KernelOps(ops, kernel, threads=POOL_SIZE * 2)
    fuse_options = {"fsname=rdbss:" + root.replace("\\", "/"), "subtype=rdbss"}
    fuse_options |= {k if v is True else f"{k}={v}" for k, v in extra.items() if v is not False}
    try:
        pyfuse3.init(kernel_ops, mountpoint, fuse_options)
    except RuntimeError as exc:
        ops.destroy()
        raise error_for_status(NtStatus.STATUS_ACCESS_DENIED, f"{mountpoint}: {exc}") from exc
    _kernel_read_ahead(mountpoint, read_ahead)
    if not foreground:
        _detach()
    watcher = Watcher(ops, kernel.changed, kernel.changed_all) if notify else None
    if watcher is not None:
        watcher.start()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:

            async def on_signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        pyfuse3.terminate()
                        return

            nursery.start_soon(on_signals)
            await pyfuse3.main(min_tasks=2, max_tasks=POOL_SIZE * 4)
            nursery.cancel_scope.cancel()

    unmount = True
    try:
        trio.run(serve)
    except BaseException:
        unmount = False
        raise
    finally:
        if watcher is not None:
            watcher.stop()
        ops.destroy()
        pyfuse3.close(unmount=unmount)


def _kernel_read_ahead(mountpoint: str, read_ahead: int) -> None:
    """The kernel's read-ahead for this mount (its backing device's ``read_ahead_kb``): a
    sequential reader's requests then come in large pieces. Only root may set it; else the
    kernel's default stays. The device comes from /proc/self/mountinfo: a stat of the mount
    point would wait for this process, which serves no request yet."""
    where = os.path.abspath(mountpoint)
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] == where:
                device = fields[2]  # the last mount there is this one
        knob = Path(f"/sys/class/bdi/{device}/read_ahead_kb")
        knob.write_text(str(read_ahead >> 10))
    except (OSError, NameError, UnboundLocalError) as exc:
        log.debug("read_ahead_kb of %s left as it was: %s", mountpoint, exc)


def _detach() -> None:
    """Go on in a child process, in a session of its own, once mounted."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    with open(os.devnull, "r+b") as null:
        for fd in (0, 1, 2):
            os.dup2(null.fileno(), fd)


def _flag(value: object) -> bool:
    return value not in (False, "0", "no", "false")


def _seconds(value: object, name: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:
        raise error_for_status(
            NtStatus.STATUS_INVALID_PARAMETER,
            f"-o {name}={value}: give a number of seconds, 0 or more (0: nothing is cached)",
        )
    return seconds


def _kib(value: object, name: str) -> int:
    try:
        kib: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        kib = -1
    if not 128 <= kib <= 1 << 20:
        raise error_for_status(
            NtStatus.STATUS_INVALID_PARAMETER,
            f"-o {name}={value}: give KiB, from 128 to 1048576",
        )
    return kib << 10


def _parse_options(text: str | None) -> dict[str, str | bool]:
    parsed: dict[str, str | bool] = {}
    for item in (text or "").split(","):
        if item.strip():
            key, sep, value = item.strip().partition("=")
            parsed[key] = value if sep else True
    return parsed


def cmd_mount(args: argparse.Namespace) -> int:
    """``rdbss mount SHARE MOUNTPOINT [-o opt,...] [--background]`` (see rdbss.cli)."""
    config = load_config(Path(args.config) if args.config else None)
    mount(
        args.share,
        args.mountpoint,
        config=config,
        timeout=getattr(args, "timeout", None),
        foreground=not getattr(args, "background", False),
        options=_parse_options(getattr(args, "options", None)),
    )
    return 0
