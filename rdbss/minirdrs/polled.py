"""Change notify by polling folder listings, for a POSIX-like backend whose protocol cannot
report changes (SFTP, WebDAV): see docs/routines.md, Change notify.

``PolledNotifyMiniRdr`` answers LOWIO_OP_NOTIFY_CHANGE_DIRECTORY through
``rdbss.minirdrs.common.notify.PollingWatches``, cancels its pending notifies and ends the
watches of a handle or an open that closes. A subclass says where a folder is
(``notify_place``) and how to list below it (``_lister``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.common.notify import Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.posix import PosixMiniRdr
from rdbss.minirdrs.primitives import OpenT, ShareT
from rdbss.wire.constants import LowIoOp
from rdbss.wire.rxcontext import LowIoParameters, RxContext
from rdbss.wire.status import NtStatus


class PolledNotifyMiniRdr(PosixMiniRdr[ShareT, OpenT]):
    """A PosixMiniRdr whose pending change notifies poll the watched folder's listing."""

    _watches: PollingWatches

    def start_watches(self, config: Mapping[str, Any], interval_s: float) -> None:
        """Make the watches (a subclass's ``__init__`` calls it once): ``interval_s`` is the
        polling interval when the ``notify_interval`` option does not set one."""
        self._watches = PollingWatches(
            self.complete_later,
            interval_s=notify_interval(config, self.kind, interval_s),
            limits=WatchLimits.from_config(config, self.kind),
            name=f"{self.kind}-{self.name}",
        )

    # --- what a subclass provides -------------------------------------------------------------
    def notify_place(self, op: OpenT) -> tuple[str, str]:
        """Where the folder of ``op`` is: (the group its watches share a poller in, usually the
        server's name in lower case; a key naming the folder in that group)."""
        raise NotImplementedError

    def _lister(self, op: OpenT) -> Lister:
        """Lists a folder below the one ``op`` opened (called from the poller's thread)."""
        raise NotImplementedError

    # --- the hooks of PosixMiniRdr, and cancellation ------------------------------------------
    def lowio_other(self, ctx: RxContext, op: OpenT, lowio: LowIoParameters) -> Result:
        if lowio.operation != LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            return super().lowio_other(ctx, op, lowio)
        group, folder = self.notify_place(op)
        return self._watches.notify(
            ctx,
            self._lister(op),
            group=group,
            folder=folder,
            completion_filter=lowio.completion_filter,
            tree=lowio.watch_tree,
            what=show(op.path),
        )

    def end_fobx(self, ctx: RxContext) -> None:
        self._watches.end(fobx=ctx.fobx)

    def end_srv_open(self, srv_open: int | None, op: OpenT) -> None:
        self._watches.end(srv_open=srv_open)

    def cancel(self, request_id: int, status: int = NtStatus.STATUS_CANCELLED) -> bool:
        """The cancel routine of a pending change notification (the polling watch ends)."""
        return self._watches.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending
