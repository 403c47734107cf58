"""Read leases, the core's side (rules in rdbss/model/leases.py, the table in rdbss/epochs.py):
grants at create, and breaks before whatever could change what a leased read returns.

``Caching`` owns the leases: whatever makes cached data stale there (a purge, a write sent,
deferred or completed, a lost mini-redirector or connection) breaks them too. The rest of the
core calls in at three points: a create asks for a grant (``granted``), an open that writes
breaks the file's leases before it goes on (``opening``), and so does a rename, a delete or a
change of size (``setting``).
"""

from __future__ import annotations

import logging
from typing import Any

from rdbss.core.services import CoreState
from rdbss.epochs import EpochTable
from rdbss.model import leases as rules
from rdbss.model.structs import Fcb, Fobx, SrvCall
from rdbss.wire.constants import FileInformationClass
from rdbss.wire.rxcontext import RxContext

log = logging.getLogger("rdbss.core")


class Leases:
    def __init__(self, state: CoreState, slots: int = rules.DEFAULT_SLOTS) -> None:
        self.state = state
        self.slots = rules.EpochSlots(slots)
        self.table: EpochTable | None = None  # made on the first grant
        self.fcbs: dict[int, Fcb] = {}  # serial -> Fcb holding a slot
        self.counters = {"lease_grants": 0, "lease_breaks": 0, "lease_refused": 0}
        self._table_failed = False

    # ------------------------------------------------------------------ grants
    def granted(self, ident: bytes, ctx: RxContext, fobx: Fobx, result: dict[str, Any]) -> None:
        """A create succeeded: when it asked for a lease and may have one, its answer's
        ``result`` gets ``lease`` = {table, slot, epoch}."""
        if not rules.asked(ctx.args):
            return
        fcb = fobx.fcb
        if not rules.may_grant(
            fcb.buffering,
            directory=fcb.directory,
            access=fobx.srv_open.desired_access,
            local=ident[:1] == b"c",
            delete_pending=fcb.delete_pending,
        ):
            return
        table = self._table()
        given = None if table is None else self.slots.grant(fcb.serial, self._in_use)
        if table is None or given is None:
            self.counters["lease_refused"] += 1
            return
        slot, epoch = given
        table.store(slot, epoch)
        self.fcbs[fcb.serial] = fcb
        self.counters["lease_grants"] += 1
        result["lease"] = {"table": table.name, "slot": slot, "epoch": epoch}

    def _table(self) -> EpochTable | None:
        if self.table is None and not self._table_failed:
            try:
                self.table = EpochTable(self.slots.capacity)
            except OSError as exc:
                self._table_failed = True
                log.warning("no read leases: cannot make the epoch table: %s", exc)
        return self.table

    def _in_use(self, serial: int) -> bool:
        fcb = self.fcbs.get(serial)
        return fcb is not None and bool(fcb.srv_opens)

    # ------------------------------------------------------------------ breaks
    def breaks(self, fcb: Fcb) -> None:
        """Break the Fcb's leases (a no-op when it has none); an Fcb that lost its last
        SrvOpen gives its slot back."""
        if fcb.serial not in self.fcbs:
            return
        if fcb.srv_opens:
            changed = self.slots.bump(fcb.serial)
        else:
            changed = self.slots.release(fcb.serial)
            del self.fcbs[fcb.serial]
        if changed is not None and self.table is not None:
            self.table.store(*changed)
            self.counters["lease_breaks"] += 1

    def opening(self, ctx: RxContext, existing: Fcb | None) -> None:
        """An open of a file already open: one that may write, delete or overwrite it breaks
        its leases before it goes on."""
        create = ctx.create
        if (
            existing is not None
            and existing.serial in self.fcbs
            and create is not None
            and rules.open_breaks(create.desired_access, create.disposition, create.create_options)
        ):
            self.breaks(existing)

    def setting(self, fcb: Fcb, ctx: RxContext) -> None:
        """A set-information request on ``fcb`` about to be sent: a rename (of the file and of
        the one it may replace), a delete or a change of size breaks their leases first."""
        if ctx.info is None or not self.fcbs or not rules.info_breaks(ctx.info.info_class):
            return
        self.breaks(fcb)
        if ctx.info.info_class == FileInformationClass.FileRenameInformation:
            target = ctx.info.args.get("target")
            replaced = fcb.net_root.fcbs.get(target.lower()) if isinstance(target, str) else None
            if replaced is not None:
                self.breaks(replaced)

    def peer_down(self, name: str) -> None:
        """A mini-redirector went down: leases on files it held open break."""
        for fcb in list(self.fcbs.values()):
            if fcb.net_root.minirdr == name or any(so.minirdr == name for so in fcb.srv_opens):
                self.breaks(fcb)

    def connection_lost(self, srv_call: SrvCall) -> None:
        """A connection went down: leases on its files break."""
        for fcb in list(self.fcbs.values()):
            if fcb.net_root.srv_call is srv_call:
                self.breaks(fcb)

    def close(self) -> None:
        """The core stops: every lease breaks and the table goes."""
        if self.table is None:
            return
        for serial in list(self.fcbs):
            changed = self.slots.bump(serial)
            if changed is not None:
                self.table.store(*changed)
        self.table.close()
        self.table = None

    def status(self) -> dict[str, Any]:
        """For the core's status (under ``buffering``)."""
        return {
            **self.counters,
            "leased_files": len(self.fcbs),
            "lease_table": self.table.name if self.table is not None else None,
        }
