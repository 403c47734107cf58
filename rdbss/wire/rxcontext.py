"""The messages that cross process boundaries: RxContext (a request), RxCompletion (its answer),
RxCancel (cancel a pending request), Register (RxRegisterMinirdr) and Heartbeat.

Each message maps to a msgpack map with short keys (see the ``_K_*`` comments); bulk data never
lives in these structures' encoding but travels as its own ZeroMQ frame (see ``framing``).
Pure code: no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rdbss.wire.constants import CreateDisposition, CreateOptions, IrpMj, LowIoOp, Routine

WIRE_VERSION = 1

#: Scalar and container types an ``args``/``result`` value may hold (all msgpack-native).
WireValue = Any


@dataclass(slots=True)
class CreateParameters:
    """NT_CREATE_PARAMETERS."""

    desired_access: int = 0
    file_attributes: int = 0
    share_access: int = 0
    disposition: int = CreateDisposition.FILE_OPEN
    create_options: int = CreateOptions.NONE
    allocation_size: int = 0


@dataclass(slots=True)
class LowIoParameters:
    """LowIoContext: the operation and its ParamsFor arm (ReadWrite, Locks, FsCtl, NotifyChange)."""

    operation: int = LowIoOp.READ
    offset: int = 0  # ByteOffset
    length: int = 0  # ByteCount (read/write) or Locks.Length
    flags: int = 0  # ReadWrite.Flags or Locks.Flags (SL_FAIL_IMMEDIATELY, SL_EXCLUSIVE_LOCK)
    key: int = 0
    code: int = 0  # FsControlCode / IoControlCode
    watch_tree: bool = False
    completion_filter: int = 0


@dataclass(slots=True)
class InfoParameters:
    """Info{FileInformationClass or FsInformationClass, ...}: the class and its typed arguments."""

    info_class: int = 0
    args: dict[str, WireValue] = field(default_factory=dict)


@dataclass(slots=True)
class QueryDirectoryParameters:
    info_class: int = 1  # FileDirectoryInformation
    pattern: str = "*"
    restart_scan: bool = False
    return_single_entry: bool = False
    file_index: int = 0
    max_entries: int = 512


@dataclass(slots=True)
class RxContext:
    """One request: what an IRP plus its RX_CONTEXT carry, reduced to what crosses a process."""

    request_id: int
    major: int
    minor: int = 0
    routine: str | None = None  # set when the core (or connection manager) calls a mini-redirector
    target: str | None = None  # peer to route to (connection manager -> a mini-redirector)
    timeout_ms: int = 30_000  # deadline, relative to receipt, so it survives clock differences
    path: str | None = None  # UNC from a client; share-relative (backslashes) to a mini-redirector
    fobx: int | None = None  # handle (FOBX id) the client holds
    srv_open: int | None = None  # the mini-redirector's own id for the SRV_OPEN
    srv_call: str | None = None  # server name
    net_root: str | None = None  # share name
    create: CreateParameters | None = None
    lowio: LowIoParameters | None = None
    info: InfoParameters | None = None
    query_directory: QueryDirectoryParameters | None = None
    args: dict[str, WireValue] | None = None
    flags: int = 0
    origin: str | None = None  # the request id's owner as logged (e.g. "client-1f:42")


@dataclass(slots=True)
class RxCompletion:
    """StoredStatus + InformationToReturn, and whatever structured result the routine produced."""

    request_id: int
    status: int
    information: int = 0
    result: WireValue = None
    message: str = ""


#: Why a request is cancelled (``RxCancel.reason``): the client asked (an IRP cancel), the
#: request's deadline passed, or the client that sent it is gone. The first and last end the
#: request with STATUS_CANCELLED, a deadline with STATUS_IO_TIMEOUT.
CANCEL_REASONS: tuple[str, ...] = ("client", "deadline", "gone")


@dataclass(slots=True)
class RxCancel:
    """Cancel a pending request (IRP cancel: RX_CONTEXT_FLAG_CANCELLED, then the mini-redirector's
    cancel routine). ``request_id`` names the request in the sender's own numbering: a client's
    id towards the core, the core's id towards a mini-redirector. Never answered itself: the
    cancelled request is (STATUS_CANCELLED, or its real result if it finished first); a cancel
    for an unknown or finished request is ignored."""

    request_id: int
    reason: str = "client"


@dataclass(slots=True)
class Register:
    """RxRegisterMinirdr: who the peer is and which routines its dispatch table fills."""

    name: str
    kind: str
    routines: list[str]
    lowio_ops: list[int]
    servers: list[str]  # server names it claims; "*" = any (the connection manager asks it)
    mrx_flags: int = 0
    pid: int = 0
    role: str = "minirdr"  # "minirdr" | "connmgr"
    host: str = ""  # the host the process runs on (a node's mini-redirectors are remote)
    #: FCB_STATE buffering bits it grants an uncontended open (its MRxComputeNewBufferingState
    #: answer, fixed by its ``caching`` option: our servers give no oplocks to break)
    buffering: int = 0


# the core's answers to a registration (Heartbeat.seq): a new registration, and a repeated one
# from a process the core still knows. A peer that gets REGISTERED_NEW a second time was dropped
# by the core in between (it restarted, or it declared the peer down): what the peer holds for
# the core is void, and it restarts clean. UNKNOWN_PEER asks a peer the core does not know to
# register. Heartbeat answers echo the peer's own sequence number (>= 1). A peer about to stop
# sends LEAVING, so the core completes what it holds at once instead of at the heartbeat timeout.
REGISTERED_NEW = 0
REGISTERED_STILL = -2
UNKNOWN_PEER = -1
LEAVING = -3


@dataclass(slots=True)
class Heartbeat:
    name: str
    seq: int = 0
    pending: int = 0


@dataclass(slots=True)
class Compound:
    """Many requests in one message (SMB2 compounding). ``items`` run in order; an item with
    ``RxFlags.RELATED`` acts on the handle of the compound's previous create. Item payloads
    (write data) travel as frames after the header, one per index in ``payload_items``
    (strictly increasing); ``payloads`` holds them on both sides and is not part of the header.

    A client sends one to the core; the core sends one to each mini-redirector carrying that
    peer's items (their request ids are the core's)."""

    request_id: int
    items: list[RxContext]
    payload_items: list[int] = field(default_factory=list)
    timeout_ms: int = 30_000
    origin: str | None = None
    # how the payloads lie in the frames (set by ``framing.pack_frames``; empty: one per frame)
    payload_lengths: list[int] = field(default_factory=list)
    payload_frames: list[int] = field(default_factory=list)  # payloads in each frame
    payloads: list[Any] = field(default_factory=list)  # frames, not encoded in the header


@dataclass(slots=True)
class CompoundCompletion:
    """The answer to a ``Compound``: one completion per item, in item order, each with its own
    NTSTATUS (``status`` is the compound's own: SUCCESS when the items ran, else why none did).
    Read data travels as frames after the header, one per index in ``payload_items``.

    From a mini-redirector to the core it may hold fewer items than were sent: an item that
    answered STATUS_PENDING completes later as an ordinary RxCompletion."""

    request_id: int
    status: int
    items: list[RxCompletion] = field(default_factory=list)
    payload_items: list[int] = field(default_factory=list)
    message: str = ""
    # how the payloads lie in the frames (set by ``framing.pack_frames``; empty: one per frame)
    payload_lengths: list[int] = field(default_factory=list)
    payload_frames: list[int] = field(default_factory=list)  # payloads in each frame
    payloads: list[Any] = field(default_factory=list)  # frames, not encoded in the header


@dataclass(slots=True)
class CompletionBundle:
    """Answers to several separate requests of one client, sent together because they were
    ready together (the core only bundles for a client whose requests carry
    ``RxFlags.BUNDLE_OK``). Each item is the completion its request would have got alone;
    payloads as in ``CompoundCompletion``."""

    items: list[RxCompletion] = field(default_factory=list)
    payload_items: list[int] = field(default_factory=list)
    # how the payloads lie in the frames (set by ``framing.pack_frames``; empty: one per frame)
    payload_lengths: list[int] = field(default_factory=list)
    payload_frames: list[int] = field(default_factory=list)  # payloads in each frame
    payloads: list[Any] = field(default_factory=list)  # frames, not encoded in the header


@dataclass(slots=True)
class RequestBundle:
    """Several separate requests of one client sent together because they were issued together
    (the asyncio client sends what its tasks ask for in one turn of the event loop as one
    message). Unlike a ``Compound``, nothing ties the items: each is a request of its own,
    answered on its own as if it had come alone (or bundled, ``CompletionBundle``); payloads as
    in ``Compound``."""

    items: list[RxContext] = field(default_factory=list)
    payload_items: list[int] = field(default_factory=list)
    # how the payloads lie in the frames (set by ``framing.pack_frames``; empty: one per frame)
    payload_lengths: list[int] = field(default_factory=list)
    payload_frames: list[int] = field(default_factory=list)  # payloads in each frame
    payloads: list[Any] = field(default_factory=list)  # frames, not encoded in the header


#: messages whose payloads are ``payloads`` frames after the header, one per ``payload_items``
Batched = Compound | CompoundCompletion | CompletionBundle | RequestBundle

Message = (
    RxContext
    | RxCompletion
    | RxCancel
    | Register
    | Heartbeat
    | Compound
    | CompoundCompletion
    | CompletionBundle
    | RequestBundle
)

__all__ = [
    "CANCEL_REASONS",
    "LEAVING",
    "REGISTERED_NEW",
    "REGISTERED_STILL",
    "UNKNOWN_PEER",
    "WIRE_VERSION",
    "Batched",
    "CompletionBundle",
    "Compound",
    "CompoundCompletion",
    "CreateParameters",
    "Heartbeat",
    "InfoParameters",
    "IrpMj",
    "LowIoParameters",
    "Message",
    "QueryDirectoryParameters",
    "Register",
    "RequestBundle",
    "Routine",
    "RxCancel",
    "RxCompletion",
    "RxContext",
]
