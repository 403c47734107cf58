"""The registration itself (RxRegisterMinirdr, docs/routines.md, The routines): what a
mini-redirector registers is a real dispatch routine, exactly what its class implements, and the
core answers STATUS_NOT_IMPLEMENTED for whatever it did not register, without sending it
(MINIRDR_CALL on a NULL slot)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rdbss.minirdrs import load_kind
from rdbss.minirdrs.base import ROUTINE_METHODS
from rdbss.testing.suite.harness import ConformanceBackend, call_status, opened, raw, status_text
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    FileInformationClass,
    FsInformationClass,
    InfoParameters,
    IrpMj,
    IrpMn,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxContext,
)

S = NtStatus
FSCTL_IS_VOLUME_MOUNTED = 0x00090028
IOCTL_PROBE = 0x00070000  # IOCTL_DISK_GET_DRIVE_GEOMETRY: meaningless on a network file


def test_registered_routines_are_dispatch_routines(backend: ConformanceBackend) -> None:
    known = {str(r) for r in ROUTINE_METHODS}
    unknown = sorted(backend.routines - known)
    assert not unknown, f"{backend.minirdr} registers routines RDBSS never calls: {unknown}"
    # CLEAROUT is never sent (docs/routines.md, Low I/O)
    valid_ops = {int(op) for op in LowIoOp if op != LowIoOp.CLEAROUT}
    bad_ops = sorted(backend.lowio_ops - valid_ops)
    assert not bad_ops, f"{backend.minirdr} registers unusable low I/O operations {bad_ops}"
    has_lowio = str(Routine.MRxLowIOSubmit) in backend.routines
    assert has_lowio == bool(backend.lowio_ops), (
        f"MRxLowIOSubmit registered: {has_lowio}, low I/O operations: {sorted(backend.lowio_ops)}"
    )


def test_registration_is_what_the_class_implements(backend: ConformanceBackend) -> None:
    assert backend.peer["kind"] == backend.kind, (
        f"backend_{backend.kind}.py tests {backend.minirdr}, a {backend.peer['kind']!r} "
        "mini-redirector"
    )
    cls = load_kind(backend.kind)
    assert backend.routines == {str(r) for r in cls.implemented_routines()}
    assert backend.lowio_ops == {int(op) for op in cls.lowio_ops}


@dataclass(frozen=True)
class Probe:
    """One request that reaches ``routine`` (and ``op``) of a mini-redirector."""

    name: str
    routine: Routine
    op: LowIoOp | None
    build: Callable[[int, int], tuple[RxContext, bytes | None]]  # (file fobx, dir fobx)


def _lowio(major: int, minor: int = 0, **fields: Any) -> Callable[[int, int], RxContext]:
    def build(fobx: int, _dir: int) -> RxContext:
        return raw(major, fobx, minor=minor, lowio=LowIoParameters(**fields))

    return build


def _info(major: int, info_class: int, on_dir: bool = False) -> Callable[[int, int], RxContext]:
    def build(fobx: int, dir_fobx: int) -> RxContext:
        return raw(major, dir_fobx if on_dir else fobx, info=InfoParameters(info_class=info_class))

    return build


def _no_payload(
    build: Callable[[int, int], RxContext],
) -> Callable[[int, int], tuple[RxContext, bytes | None]]:
    return lambda fobx, dir_fobx: (build(fobx, dir_fobx), None)


LOWIO = Routine.MRxLowIOSubmit
PROBES: list[Probe] = [
    Probe("read", LOWIO, LowIoOp.READ, _no_payload(_lowio(IrpMj.READ, offset=0, length=1))),
    Probe(
        "write",
        LOWIO,
        LowIoOp.WRITE,
        lambda fobx, _d: (raw(IrpMj.WRITE, fobx, lowio=LowIoParameters(length=1)), b"x"),
    ),
    Probe(
        "shared lock",
        LOWIO,
        LowIoOp.SHAREDLOCK,
        _no_payload(_lowio(IrpMj.LOCK_CONTROL, IrpMn.LOCK, offset=0, length=1, flags=0x1)),
    ),
    Probe(
        "exclusive lock",
        LOWIO,
        LowIoOp.EXCLUSIVELOCK,
        _no_payload(_lowio(IrpMj.LOCK_CONTROL, IrpMn.LOCK, offset=0, length=1, flags=0x3)),
    ),
    Probe(
        "unlock",
        LOWIO,
        LowIoOp.UNLOCK,
        _no_payload(_lowio(IrpMj.LOCK_CONTROL, IrpMn.UNLOCK_SINGLE, offset=0, length=1)),
    ),
    Probe(
        "unlock all",
        LOWIO,
        LowIoOp.UNLOCK_MULTIPLE,
        _no_payload(_lowio(IrpMj.LOCK_CONTROL, IrpMn.UNLOCK_ALL)),
    ),
    Probe(
        "fsctl",
        LOWIO,
        LowIoOp.FSCTL,
        _no_payload(_lowio(IrpMj.FILE_SYSTEM_CONTROL, code=FSCTL_IS_VOLUME_MOUNTED)),
    ),
    Probe(
        "ioctl", LOWIO, LowIoOp.IOCTL, _no_payload(_lowio(IrpMj.DEVICE_CONTROL, code=IOCTL_PROBE))
    ),
    Probe(
        "notify change directory",
        LOWIO,
        LowIoOp.NOTIFY_CHANGE_DIRECTORY,
        lambda _f, dir_fobx: (
            raw(
                IrpMj.DIRECTORY_CONTROL,
                dir_fobx,
                minor=IrpMn.NOTIFY_CHANGE_DIRECTORY,
                lowio=LowIoParameters(completion_filter=0x3),
            ),
            None,
        ),
    ),
    Probe(
        "query directory",
        Routine.MRxQueryDirectory,
        None,
        lambda _f, dir_fobx: (
            raw(IrpMj.DIRECTORY_CONTROL, dir_fobx, minor=IrpMn.QUERY_DIRECTORY),
            None,
        ),
    ),
    Probe(
        "query file info",
        Routine.MRxQueryFileInfo,
        None,
        _no_payload(_info(IrpMj.QUERY_INFORMATION, FileInformationClass.FileStandardInformation)),
    ),
    Probe(
        "set file info",
        Routine.MRxSetFileInfo,
        None,
        _no_payload(_info(IrpMj.SET_INFORMATION, FileInformationClass.FileBasicInformation)),
    ),
    Probe(
        "query volume info",
        Routine.MRxQueryVolumeInfo,
        None,
        _no_payload(
            _info(IrpMj.QUERY_VOLUME_INFORMATION, FsInformationClass.FileFsSizeInformation)
        ),
    ),
    Probe(
        "set volume info",
        Routine.MRxSetVolumeInfo,
        None,
        _no_payload(_info(IrpMj.SET_VOLUME_INFORMATION, FsInformationClass.FileFsLabelInformation)),
    ),
    Probe("flush", Routine.MRxFlush, None, _no_payload(_lowio(IrpMj.FLUSH_BUFFERS))),
    Probe("query EA", Routine.MRxQueryEaInfo, None, _no_payload(_info(IrpMj.QUERY_EA, 0))),
    Probe("set EA", Routine.MRxSetEaInfo, None, _no_payload(_info(IrpMj.SET_EA, 0))),
    Probe(
        "query security", Routine.MRxQuerySdInfo, None, _no_payload(_info(IrpMj.QUERY_SECURITY, 0))
    ),
    Probe("set security", Routine.MRxSetSdInfo, None, _no_payload(_info(IrpMj.SET_SECURITY, 0))),
    Probe("query quota", Routine.MRxQueryQuotaInfo, None, _no_payload(_info(IrpMj.QUERY_QUOTA, 0))),
    Probe("set quota", Routine.MRxSetQuotaInfo, None, _no_payload(_info(IrpMj.SET_QUOTA, 0))),
]


def test_unregistered_operations_answer_not_implemented(backend: ConformanceBackend) -> None:
    """Every operation the mini-redirector did not register is answered STATUS_NOT_IMPLEMENTED
    by the core, and none of them is sent to the mini-redirector."""
    probes = [p for p in PROBES if not backend.registers(p.routine, p.op)]
    if not probes:
        pytest.skip(f"{backend.minirdr} registers every operation this test probes")
    # MRxCreate is needed to get handles; a mini-redirector without it has nothing to probe with
    assert backend.registers(Routine.MRxCreate), f"{backend.minirdr} does not register MRxCreate"
    c = backend.client
    d = backend.fresh_dir()
    with (
        opened(
            c,
            d.path("probe.bin"),
            access=Access.GENERIC_READ | Access.GENERIC_WRITE,
            disposition=CreateDisposition.FILE_CREATE,
        ) as f,
        opened(
            c, d.unc, access=Access.FILE_LIST_DIRECTORY, options=CreateOptions.FILE_DIRECTORY_FILE
        ) as dh,
    ):
        before = backend.requests_sent()
        wrong = []
        for probe in probes:
            ctx, payload = probe.build(f.fobx, dh.fobx)
            done, _ = call_status(c, ctx, payload)
            if done.status != S.STATUS_NOT_IMPLEMENTED:
                wrong.append(f"{probe.name}: {status_text(done.status)} {done.message}")
        sent = backend.requests_sent() - before
    assert not wrong, "unregistered operations not answered STATUS_NOT_IMPLEMENTED:\n" + "\n".join(
        wrong
    )
    assert sent == 0, f"{sent} request(s) for unregistered operations reached the mini-redirector"
