"""The messages that cross process boundaries: RxContext (a request), RxCompletion (its answer),
RxCancel (cancel a pending request), Register (RxRegisterMinirdr) and Heartbeat, and the
batches of them (Compound, CompoundCompletion, RequestBundle, CompletionBundle).

Each class is the schema of its msgpack map: a ``msgspec.Struct`` whose ``rename`` gives the
short wire key of every field, and whose ``tag`` is the message kind (wire key ``k``). The codec
(``codec``) encodes and decodes them in C, leaving out fields at their default. Bulk data never
lives in these structures' encoding but travels as its own ZeroMQ frame (see ``framing``).
Pure code: no sockets.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from rdbss.wire.constants import CreateDisposition, CreateOptions, IrpMj, LowIoOp, Routine

WIRE_VERSION = 1

#: Scalar and container types an ``args``/``result`` value may hold (all msgpack-native).
WireValue = Any


#: Every string field of a message holds at most this many characters, every list of numbers
#: or names at most this many entries (checked in C while decoding; the codec's ``Limits``
#: bound the free-form ``args`` and ``result`` values).
MAX_TEXT_LEN = 64 << 10
MAX_LIST_LEN = 1 << 16
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LEN)]
Texts = Annotated[list[Text], msgspec.Meta(max_length=MAX_LIST_LEN)]

#: The ranges of the numeric fields, checked in C while decoding like the lengths above: a
#: value outside its range is refused with STATUS_INVALID_PARAMETER naming the field, before
#: any process acts on it. Masks, codes and ULONG counts are 32-bit (as in the IRP); ids,
#: sizes and offsets are signed 64-bit (LARGE_INTEGER), ids and sizes never negative; an
#: offset may be -1, "at the end of the file" (an append).
MAX_U32 = 0xFFFF_FFFF
MAX_I64 = (1 << 63) - 1
#: a deadline is at most ~24.8 days (a signed 32-bit count of milliseconds); 0 in a compound's
#: item means "the compound's deadline"
MAX_TIMEOUT_MS = (1 << 31) - 1
APPEND_OFFSET = -1
U8 = Annotated[int, msgspec.Meta(ge=0, le=0xFF)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=MAX_U32)]
Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_I64)]
Size = Id
Offset = Annotated[int, msgspec.Meta(ge=APPEND_OFFSET, le=MAX_I64)]
TimeoutMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMEOUT_MS)]
Ints = Annotated[list[U32], msgspec.Meta(max_length=MAX_LIST_LEN)]

#: the wire key of a batch's ``payloads`` field, which never travels in a header
PAYLOADS_KEY = "(payloads)"


def _wire_version() -> int:
    return WIRE_VERSION


# gc=False: the garbage collector does not track messages (a compound decodes a thousand at a
# time, and tracking them costs the core CPU on every read). Safe because no message ever
# refers back to itself or to anything that refers to it: they hold numbers, strings, plain
# containers and parts.


class _Part(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """A structure inside a message (create parameters, LowIoContext...): a map of its own."""


class _Message(
    msgspec.Struct,
    omit_defaults=True,
    forbid_unknown_fields=True,
    tag_field="k",
    kw_only=True,
    gc=False,
):
    """A message: its kind (``tag``) under ``k`` and the wire version under ``v``, then its
    fields. Items inside a batch are messages too and carry both (7 bytes an item)."""

    #: keyword-only, so after every message's own fields; made by a factory, so always encoded
    wire_version: int = msgspec.field(default_factory=_wire_version, name="v")


class CreateParameters(
    _Part,
    rename={
        "desired_access": "da",
        "file_attributes": "fa",
        "share_access": "sa",
        "disposition": "di",
        "create_options": "co",
        "allocation_size": "as",
    },
):
    """NT_CREATE_PARAMETERS. The defaults are plain ints, as decoded values are: a flag
    enum's ``&`` costs microseconds on every create the core and a mini-redirector look at."""

    desired_access: U32 = 0
    file_attributes: U32 = 0
    share_access: U32 = 0
    disposition: U32 = int(CreateDisposition.FILE_OPEN)
    create_options: U32 = int(CreateOptions.NONE)
    allocation_size: Size = 0


class LowIoParameters(
    _Part,
    rename={
        "operation": "o",
        "offset": "of",
        "length": "ln",
        "flags": "f",
        "key": "k",
        "code": "c",
        "watch_tree": "wt",
        "completion_filter": "cf",
    },
):
    """LowIoContext: the operation and its ParamsFor arm (ReadWrite, Locks, FsCtl, NotifyChange)."""

    operation: U32 = int(LowIoOp.READ)
    offset: Offset = 0  # ByteOffset (-1: at the end of the file)
    length: Size = 0  # ByteCount (read/write) or Locks.Length
    flags: U32 = 0  # ReadWrite.Flags or Locks.Flags (SL_FAIL_IMMEDIATELY, SL_EXCLUSIVE_LOCK)
    key: U32 = 0
    code: U32 = 0  # FsControlCode / IoControlCode
    watch_tree: bool = False
    completion_filter: U32 = 0


class InfoParameters(
    _Part,
    rename={"info_class": "c", "args": "a"},
):
    """Info{FileInformationClass or FsInformationClass, ...}: the class and its typed arguments."""

    info_class: U32 = 0
    args: dict[str, WireValue] = msgspec.field(default_factory=dict)


class QueryDirectoryParameters(
    _Part,
    rename={
        "info_class": "c",
        "pattern": "pt",
        "restart_scan": "rs",
        "return_single_entry": "ss",
        "file_index": "ix",
        "max_entries": "mx",
    },
):
    info_class: U32 = 1  # FileDirectoryInformation
    pattern: Text = "*"
    restart_scan: bool = False
    return_single_entry: bool = False
    file_index: U32 = 0
    max_entries: U32 = 512


class RxContext(
    _Message,
    tag="rx",
    rename={
        "request_id": "id",
        "major": "mj",
        "minor": "mn",
        "routine": "rt",
        "target": "to",
        "timeout_ms": "dl",
        "path": "p",
        "fobx": "fx",
        "srv_open": "so",
        "srv_call": "sc",
        "net_root": "nr",
        "create": "cr",
        "lowio": "lo",
        "info": "in",
        "query_directory": "qd",
        "args": "ar",
        "flags": "fl",
        "origin": "or",
    },
):
    """One request: what an IRP plus its RX_CONTEXT carry, reduced to what crosses a process."""

    request_id: Id
    major: U8
    minor: U8 = 0
    routine: Text | None = None  # set when the core (or connection manager) calls a mini-redirector
    target: Text | None = None  # peer to route to (connection manager -> a mini-redirector)
    timeout_ms: TimeoutMs = (
        30_000  # deadline, relative to receipt, so it survives clock differences
    )
    path: Text | None = None  # UNC from a client; share-relative (backslashes) to a mini-redirector
    fobx: Id | None = None  # handle (FOBX id) the client holds
    srv_open: Id | None = None  # the mini-redirector's own id for the SRV_OPEN
    srv_call: Text | None = None  # server name
    net_root: Text | None = None  # share name
    create: CreateParameters | None = None
    lowio: LowIoParameters | None = None
    info: InfoParameters | None = None
    query_directory: QueryDirectoryParameters | None = None
    args: dict[str, WireValue] | None = None
    flags: U32 = 0
    origin: Text | None = None  # the request id's owner as logged (e.g. "client-1f:42")


class RxCompletion(
    _Message,
    tag="done",
    rename={
        "request_id": "id",
        "status": "st",
        "information": "inf",
        "result": "r",
        "message": "msg",
    },
):
    """StoredStatus + InformationToReturn, and whatever structured result the routine produced."""

    request_id: Id
    status: U32
    information: Size = 0
    result: WireValue = None
    message: Text = ""


#: Why a request is cancelled (``RxCancel.reason``): the client asked (an IRP cancel), the
#: request's deadline passed, or the client that sent it is gone. The first and last end the
#: request with STATUS_CANCELLED, a deadline with STATUS_IO_TIMEOUT.
CANCEL_REASONS: tuple[str, ...] = ("client", "deadline", "gone")


class RxCancel(
    _Message,
    tag="cancel",
    rename={"request_id": "id", "reason": "rs"},
):
    """Cancel a pending request (IRP cancel: RX_CONTEXT_FLAG_CANCELLED, then the mini-redirector's
    cancel routine). ``request_id`` names the request in the sender's own numbering: a client's
    id towards the core, the core's id towards a mini-redirector. Never answered itself: the
    cancelled request is (STATUS_CANCELLED, or its real result if it finished first); a cancel
    for an unknown or finished request is ignored."""

    request_id: Id
    reason: Text = "client"


class Register(
    _Message,
    tag="reg",
    rename={
        "name": "n",
        "kind": "kd",
        "routines": "rt",
        "lowio_ops": "lo",
        "servers": "sv",
        "mrx_flags": "f",
        "pid": "pid",
        "role": "ro",
        "host": "h",
        "buffering": "bf",
    },
):
    """RxRegisterMinirdr: who the peer is and which routines its dispatch table fills."""

    name: Text
    kind: Text
    routines: Texts
    lowio_ops: Ints
    servers: Texts  # server names it claims; "*" = any (the connection manager asks it)
    mrx_flags: U32 = 0
    pid: U32 = 0
    role: Text = "minirdr"  # "minirdr" | "connmgr"
    host: Text = ""  # the host the process runs on (a node's mini-redirectors are remote)
    #: FCB_STATE buffering bits it grants an uncontended open (its MRxComputeNewBufferingState
    #: answer, fixed by its ``caching`` option: our servers give no oplocks to break)
    buffering: U32 = 0


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


class Heartbeat(
    _Message,
    tag="hb",
    rename={"name": "n", "seq": "s", "pending": "pd"},
):
    name: Text
    seq: Annotated[int, msgspec.Meta(ge=LEAVING, le=MAX_I64)] = 0
    pending: Size = 0


class _Batch(_Message, kw_only=True, rename={"payload_lengths": "pl", "payload_frames": "pf"}):
    """A message whose payloads travel as frames after its header (``Batched``)."""

    # how the payloads lie in the frames (set by ``framing.pack_frames``; empty: one per frame)
    payload_lengths: Ints = msgspec.field(default_factory=list)
    payload_frames: Ints = msgspec.field(default_factory=list)  # payloads in each frame
    #: frames, never in the header (the codec refuses this key in a header it decodes)
    payloads: list[Any] = msgspec.field(default_factory=list, name=PAYLOADS_KEY)


class Compound(
    _Batch,
    tag="cx",
    rename={
        "request_id": "id",
        "items": "it",
        "payload_items": "pi",
        "timeout_ms": "dl",
        "origin": "or",
    },
):
    """Many requests in one message (SMB2 compounding). ``items`` run in order; an item with
    ``RxFlags.RELATED`` acts on the handle of the compound's previous create. Item payloads
    (write data) travel as frames after the header, one per index in ``payload_items``
    (strictly increasing); ``payloads`` holds them on both sides and is not part of the header.

    A client sends one to the core; the core sends one to each mini-redirector carrying that
    peer's items (their request ids are the core's)."""

    request_id: Id
    items: list[RxContext]
    payload_items: Ints = msgspec.field(default_factory=list)
    timeout_ms: TimeoutMs = 30_000
    origin: Text | None = None


class CompoundCompletion(
    _Batch,
    tag="cd",
    rename={
        "request_id": "id",
        "status": "st",
        "items": "it",
        "payload_items": "pi",
        "message": "msg",
    },
):
    """The answer to a ``Compound``: one completion per item, in item order, each with its own
    NTSTATUS (``status`` is the compound's own: SUCCESS when the items ran, else why none did).
    Read data travels as frames after the header, one per index in ``payload_items``.

    From a mini-redirector to the core it may hold fewer items than were sent: an item that
    answered STATUS_PENDING completes later as an ordinary RxCompletion."""

    request_id: Id
    status: U32
    items: list[RxCompletion] = msgspec.field(default_factory=list)
    payload_items: Ints = msgspec.field(default_factory=list)
    message: Text = ""


class CompletionBundle(
    _Batch,
    tag="cb",
    rename={"items": "it", "payload_items": "pi"},
):
    """Answers to several separate requests of one client, sent together because they were
    ready together (the core only bundles for a client whose requests carry
    ``RxFlags.BUNDLE_OK``). Each item is the completion its request would have got alone;
    payloads as in ``CompoundCompletion``."""

    items: list[RxCompletion] = msgspec.field(default_factory=list)
    payload_items: Ints = msgspec.field(default_factory=list)


class RequestBundle(
    _Batch,
    tag="rb",
    rename={"items": "it", "payload_items": "pi"},
):
    """Several separate requests of one client sent together because they were issued together
    (the asyncio client sends what its tasks ask for in one turn of the event loop as one
    message). Unlike a ``Compound``, nothing ties the items: each is a request of its own,
    answered on its own as if it had come alone (or bundled, ``CompletionBundle``); payloads as
    in ``Compound``."""

    items: list[RxContext] = msgspec.field(default_factory=list)
    payload_items: Ints = msgspec.field(default_factory=list)


#: messages whose payloads are ``payloads`` frames after the header, one per ``payload_items``
Batched = Compound | CompoundCompletion | CompletionBundle | RequestBundle
#: the same as a set of types, for the hot paths: ``type(msg) in BATCHED_TYPES`` costs a tenth
#: of an ``isinstance`` against the union (the messages have no subclasses)
BATCHED_TYPES: frozenset[type] = frozenset(
    {Compound, CompoundCompletion, CompletionBundle, RequestBundle}
)

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
    "BATCHED_TYPES",
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
