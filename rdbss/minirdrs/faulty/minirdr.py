"""The ``faulty`` mini-redirector: wraps any other mini-redirector in the same process and
injects faults by rules (see ``faults.py``): an NTSTATUS, added latency, a hang, a process crash,
a dropped connection or a frozen process; per routine or low I/O operation, per path pattern,
with probability, every n-th call or in a time window. A seed makes a schedule repeat exactly.

    [[minirdr]]
    name = "flaky"
    kind = "faulty"
    wraps = "local"                 # the kind it wraps
    seed = 42
    [minirdr.options]               # the wrapped mini-redirector's own options
    server = "flaky"
    shares = { data = "/srv/x" }
    [[minirdr.rules]]
    routine = "MRxLowIOSubmit"
    lowio_op = "READ"
    action = "status"
    status = "STATUS_IO_TIMEOUT"
    probability = 0.1

It registers exactly the wrapped one's routines. Its routines run on per-connection workers
(``blocking``), so a hang or delay holds only that connection. Rules change at run time through
``MRxDevFcbXXXControlFile`` (FSCTL RDBSS_SET_FAULTS / RDBSS_LIST_FAULTS; ``rdbss fault``).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rdbss.minirdrs import load_kind
from rdbss.minirdrs.base import ROUTINE_METHODS, MiniRdr, Result
from rdbss.minirdrs.faulty.faults import Action, FaultError, FaultSchedule, parse_rules
from rdbss.wire.constants import FsctlCode, LowIoOp, Routine
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.faulty")

HANG_LIMIT_S = 3600.0
CRASH_EXIT_CODE = 70


class FaultyMiniRdr(MiniRdr):
    kind = "faulty"
    blocking = True

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        wraps = config.get("wraps")
        if not isinstance(wraps, str) or wraps == "faulty":
            raise ValueError("a faulty mini-redirector needs wraps = <another kind>")
        options = config.get("options", {})
        if not isinstance(options, Mapping):
            raise ValueError("options must be a table")
        seed = config.get("seed", 0)
        if not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        self.inner = load_kind(wraps)(name, options)
        self.schedule = FaultSchedule(parse_rules(config.get("rules", [])), seed, time.monotonic)
        self._lock = threading.Lock()  # the schedule is shared by every connection's worker
        self._release = threading.Event()  # ends hangs when the process stops
        for routine in self.inner.registration_routines():
            method = ROUTINE_METHODS[routine]
            if routine == Routine.MRxDevFcbXXXControlFile:
                continue
            setattr(self, method, self._wrapped(routine, getattr(self.inner, method)))

    # ------------------------------------------------------------------ registration
    def servers(self) -> list[str]:
        return self.inner.servers()

    def registration_buffering_mask(self) -> int:
        return self.inner.registration_buffering_mask()

    def registration_routines(self) -> list[Routine]:
        routines = list(self.inner.registration_routines())
        if Routine.MRxDevFcbXXXControlFile not in routines:
            routines.append(Routine.MRxDevFcbXXXControlFile)  # for the fault rules themselves
        return routines

    def registration_lowio_ops(self) -> frozenset[LowIoOp]:
        return self.inner.registration_lowio_ops()

    def attach_completion(self, sink: Callable[[RxContext, Result], None]) -> None:
        super().attach_completion(sink)
        self.inner.attach_completion(sink)  # the wrapped one completes its pending requests

    def close(self) -> None:
        self._release.set()
        self.inner.close()

    def cancel(self, request_id: int, status: int = NtStatus.STATUS_CANCELLED) -> bool:
        return self.inner.cancel(request_id, status)  # its pending requests are the inner one's

    def pending_requests(self) -> int:
        return self.inner.pending_requests()

    # ------------------------------------------------------------------ injection
    def _wrapped(self, routine: Routine, call: Callable[..., Result]) -> Callable[..., Result]:
        def run(ctx: RxContext, *rest: Any) -> Result:
            op = ctx.lowio.operation if ctx.lowio is not None else None
            with self._lock:
                decision = self.schedule.decide(str(routine), op, ctx.path)
            if decision is None:
                return call(ctx, *rest)
            where = f"rule {decision.rule + 1}: {decision.action} on {routine}"
            log.info("fault %s req=%s path=%s", where, ctx.origin, ctx.path)
            if decision.action == Action.STATUS:
                raise NtStatusError(decision.status, f"injected fault ({where})")
            if decision.action == Action.DISCONNECT:
                raise NtStatusError(
                    NtStatus.STATUS_CONNECTION_DISCONNECTED,
                    f"injected: connection dropped ({where})",
                )
            if decision.action == Action.DELAY:
                self._release.wait(decision.delay_s)
                return call(ctx, *rest)
            if decision.action == Action.HANG:
                self._release.wait(HANG_LIMIT_S)
                raise NtStatusError(NtStatus.STATUS_IO_TIMEOUT, f"injected hang ended ({where})")
            if decision.action == Action.CRASH:
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)
            if decision.action == Action.SPIN:  # only SIGKILL (the supervisor) ends it
                # a regular expression that backtracks for ever never lets go of the
                # interpreter lock, as a runaway C extension: every thread stands still
                re.match(r"(a+)+$", "a" * 64 + "b")
                raise NtStatusError(NtStatus.STATUS_IO_TIMEOUT, f"injected spin ended ({where})")
            # FREEZE: the whole process stops; only SIGKILL (the supervisor) ends it
            os.kill(os.getpid(), signal.SIGSTOP)
            return call(ctx, *rest)

        return run

    # ------------------------------------------------------------------ management
    def dev_fcb_control(self, ctx: RxContext) -> Result:
        code = ctx.lowio.code if ctx.lowio else 0
        args = ctx.args or {}
        if code == FsctlCode.RDBSS_SET_FAULTS:
            rules = args.get("rules", [])
            seed = args.get("seed")
            if not isinstance(rules, list) or (seed is not None and not isinstance(seed, int)):
                raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "rules must be a list")
            try:
                parsed = parse_rules(rules)
            except FaultError as exc:
                raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, str(exc)) from None
            with self._lock:
                self.schedule.replace(parsed, seed)
            log.info("fault rules replaced: %d rules, seed %d", len(parsed), self.schedule.seed)
            return Result(result=self._describe())
        if code == FsctlCode.RDBSS_LIST_FAULTS:
            return Result(result=self._describe())
        if Routine.MRxDevFcbXXXControlFile in self.inner.registration_routines():
            return self.inner.dev_fcb_control(ctx)
        raise NtStatusError(NtStatus.STATUS_INVALID_DEVICE_REQUEST, f"unknown code 0x{code:08X}")

    def _describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.schedule.seed,
                "wraps": self.inner.kind,
                "rules": [rule.describe() for rule in self.schedule.rules],
            }
