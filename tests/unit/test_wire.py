"""The wire: status codes, the RxContext schema, the codec's limits and the framing."""

from __future__ import annotations

import errno
import pickle

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdbss.wire import (
    Codec,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateParameters,
    Heartbeat,
    InfoParameters,
    IrpMj,
    Limits,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    QueryDirectoryParameters,
    Register,
    RequestBundle,
    RxCancel,
    RxCompletion,
    RxContext,
    WireError,
    error_for_status,
    pack_frames,
    unpack_frames,
)
from rdbss.wire.codec import refusal_ids
from rdbss.wire.rxcontext import CANCEL_REASONS, MAX_TEXT_LEN
from rdbss.wire.status import AUTH_ERRORS, NETWORK_ERRORS, status_from_errno, status_name

codec = Codec()

# ----------------------------------------------------------------------------- status codes


@pytest.mark.parametrize(
    ("status", "value"),
    [
        (NtStatus.STATUS_SUCCESS, 0x00000000),
        (NtStatus.STATUS_PENDING, 0x00000103),
        (NtStatus.STATUS_BUFFER_OVERFLOW, 0x80000005),
        (NtStatus.STATUS_NO_MORE_FILES, 0x80000006),
        (NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, 0xC0000034),
        (NtStatus.STATUS_IO_TIMEOUT, 0xC00000B5),
        (NtStatus.STATUS_CONNECTION_DISCONNECTED, 0xC000020C),
        (NtStatus.STATUS_LOGON_FAILURE, 0xC000006D),
        (NtStatus.STATUS_BAD_NETWORK_NAME, 0xC00000CC),
        (NtStatus.STATUS_REMOTE_NOT_LISTENING, 0xC00000BC),
        (NtStatus.STATUS_NETWORK_UNREACHABLE, 0xC000023C),
        (NtStatus.STATUS_USER_SESSION_DELETED, 0xC0000203),
        (NtStatus.STATUS_DOWNGRADE_DETECTED, 0xC0000388),
        (NtStatus.STATUS_LOCK_NOT_GRANTED, 0xC0000055),
    ],
)
def test_status_values_are_the_windows_ones(status: NtStatus, value: int) -> None:
    assert int(status) == value


def test_severity_and_success() -> None:
    assert NtStatus.STATUS_SUCCESS.is_success
    assert NtStatus.STATUS_PENDING.is_success
    assert not NtStatus.STATUS_BUFFER_OVERFLOW.is_success  # a warning is not NT_SUCCESS
    assert NtStatus.STATUS_BUFFER_OVERFLOW.severity == 2
    assert NtStatus.STATUS_ACCESS_DENIED.is_error


def test_families_are_disjoint_and_hold_the_seed_codes() -> None:
    assert not NETWORK_ERRORS & AUTH_ERRORS
    assert NtStatus.STATUS_IO_TIMEOUT in NETWORK_ERRORS
    assert NtStatus.STATUS_CONNECTION_DISCONNECTED in NETWORK_ERRORS
    assert NtStatus.STATUS_LOGON_FAILURE in AUTH_ERRORS
    assert NtStatus.STATUS_NETWORK_CREDENTIAL_CONFLICT in AUTH_ERRORS


def test_errors_subclass_the_matching_oserror() -> None:
    e = error_for_status(NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, "gone")
    assert isinstance(e, FileNotFoundError) and isinstance(e, NtStatusError)
    assert e.errno == errno.ENOENT and e.status == 0xC0000034
    assert "STATUS_OBJECT_NAME_NOT_FOUND" in str(e) and "gone" in str(e)
    assert isinstance(error_for_status(NtStatus.STATUS_OBJECT_NAME_COLLISION), FileExistsError)
    assert isinstance(error_for_status(NtStatus.STATUS_ACCESS_DENIED), PermissionError)
    assert isinstance(error_for_status(NtStatus.STATUS_IO_TIMEOUT), TimeoutError)
    assert isinstance(error_for_status(NtStatus.STATUS_FILE_IS_A_DIRECTORY), IsADirectoryError)
    unknown = error_for_status(0xC0DEDEAD)
    assert type(unknown) is NtStatusError and status_name(unknown.status) == "0xC0DEDEAD"
    again = pickle.loads(pickle.dumps(e))
    assert isinstance(again, FileNotFoundError) and again.status == e.status


def test_errno_mapping() -> None:
    assert status_from_errno(errno.ENOENT) == NtStatus.STATUS_OBJECT_NAME_NOT_FOUND
    assert status_from_errno(errno.ENOTEMPTY) == NtStatus.STATUS_DIRECTORY_NOT_EMPTY
    assert status_from_errno(errno.ECONNREFUSED) == NtStatus.STATUS_REMOTE_NOT_LISTENING
    assert status_from_errno(12345) == NtStatus.STATUS_UNSUCCESSFUL


# ----------------------------------------------------------------------------- round trips

ints = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=(1 << 32) - 1)  # a U32 field's range
byte = st.integers(min_value=0, max_value=255)  # major / minor functions
offsets = st.integers(min_value=-1, max_value=(1 << 63) - 1)
text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40
)
scalars = st.one_of(st.none(), st.booleans(), ints, text, st.binary(max_size=32))
args = st.dictionaries(text, scalars, max_size=5)

contexts = st.builds(
    RxContext,
    request_id=small,
    major=st.sampled_from(list(IrpMj)).map(int),
    minor=byte,
    routine=st.one_of(st.none(), text),
    target=st.one_of(st.none(), text),
    timeout_ms=st.integers(0, (1 << 31) - 1),
    path=st.one_of(st.none(), text),
    fobx=st.one_of(st.none(), small),
    srv_open=st.one_of(st.none(), small),
    srv_call=st.one_of(st.none(), text),
    net_root=st.one_of(st.none(), text),
    create=st.one_of(
        st.none(), st.builds(CreateParameters, small, small, small, small, small, small)
    ),
    lowio=st.one_of(
        st.none(),
        st.builds(
            LowIoParameters, small, offsets, small, small, small, small, st.booleans(), small
        ),
    ),
    info=st.one_of(st.none(), st.builds(InfoParameters, small, args)),
    query_directory=st.one_of(
        st.none(),
        st.builds(
            QueryDirectoryParameters, small, text, st.booleans(), st.booleans(), small, small
        ),
    ),
    args=st.one_of(st.none(), args),
    flags=small,
    origin=st.one_of(st.none(), text),
)
completions = st.builds(
    RxCompletion,
    request_id=small,
    status=small,
    information=small,
    result=st.one_of(scalars, args, st.lists(args, max_size=4)),
    message=text,
)


@given(contexts)
@settings(max_examples=300)
def test_rxcontext_round_trip(ctx: RxContext) -> None:
    assert codec.decode(codec.encode(ctx)) == ctx


@given(completions)
def test_completion_round_trip(done: RxCompletion) -> None:
    assert codec.decode(codec.encode(done)) == done


def test_register_and_heartbeat_round_trip() -> None:
    reg = Register("local", "local", ["MRxCreate"], [0, 1], ["local"], 0, 42, "minirdr")
    assert codec.decode(codec.encode(reg)) == reg
    reg.buffering = 0x0FF80800  # the grant (FCB_STATE bits)
    assert codec.decode(codec.encode(reg)) == reg
    hb = Heartbeat("local", 7, 3)
    assert codec.decode(codec.encode(hb)) == hb


@given(small, st.sampled_from(CANCEL_REASONS))
def test_cancel_round_trip(request_id: int, reason: str) -> None:
    cancel = RxCancel(request_id, reason)
    assert codec.decode(codec.encode(cancel)) == cancel


@given(
    st.fixed_dictionaries(
        {"k": st.just("cancel"), "v": st.just(1)},
        optional={"id": st.one_of(ints, text, st.booleans(), st.none()), "rs": scalars},
    )
)
def test_a_malformed_cancel_is_refused_or_well_formed(data: dict[str, object]) -> None:
    """Whatever a cancel carries, it decodes to a valid RxCancel or answers
    STATUS_INVALID_PARAMETER: never another exception, never an unknown reason."""
    try:
        msg = codec.decode(msgpack.packb(data))
    except WireError as exc:
        assert exc.status == NtStatus.STATUS_INVALID_PARAMETER
        return
    assert isinstance(msg, RxCancel)
    assert type(msg.request_id) is int and msg.reason in CANCEL_REASONS


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),
        (msgpack.packb([1, 2, 3]), "not a map"),
        (msgpack.packb({"k": "rx", "v": 2, "id": 1, "mj": 0}), "version"),
        (msgpack.packb({"k": "zz", "v": 1}), "unknown message kind"),
        (msgpack.packb({"k": "rx", "v": 1, "id": 1}), "missing field 'mj'"),
        (msgpack.packb({"k": "rx", "v": 1, "id": "1", "mj": 0}), "expected an integer"),
        (msgpack.packb({"k": "rx", "v": 1, "id": True, "mj": 0}), "expected an integer"),
        (msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "zz": 1}), "unknown field"),
        (msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "cr": [1]}), "expected a map"),
        (msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "lo": {"o": "x"}}), "integer"),
        (
            msgpack.packb({"k": "reg", "v": 1, "n": "a", "kd": "b", "rt": [1], "lo": [], "sv": []}),
            "rt[0]: expected a string",
        ),
        (msgpack.packb({1: 2}), "expected a string, got int"),
        (msgpack.packb({"k": "cancel", "v": 1}), "missing field 'id'"),
        (msgpack.packb({"k": "cancel", "v": 1, "id": 1, "rs": "whim"}), "expected one of"),
        (msgpack.packb({"k": "cancel", "v": 1, "id": 1, "rs": ["client"]}), "expected a string"),
        (msgpack.packb({"k": "cancel", "v": 1, "id": -1.5}), "expected an integer"),
        (b"\x91" * 5000, "not a map"),
        (
            msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "ar": {"a": 0}})[:-1]
            + b"\x91" * 5000,
            "malformed",
        ),
        (
            msgpack.packb(
                {"k": "rx", "v": 1, "id": 1, "mj": 0, "ar": {"a": msgpack.ExtType(1, b"x")}}
            ),
            "unsupported value",
        ),
        (
            msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "ar": {"a": {1: 2}}}),
            "map keys must be strings",
        ),
        (
            msgpack.packb({"k": "cx", "v": 1, "id": 1, "it": [], "(payloads)": [b"x"]}),
            "unknown field",
        ),
        (msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "k2": 0}), "unknown field 'k2'"),
    ],
)
def test_malformed_headers_answer_invalid_parameter(frame: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        codec.decode(frame)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
    assert reason in (info.value.strerror or "")


@pytest.mark.parametrize(
    "data",
    [
        {"k": "\x00"},
        {"k": "rx", "v": 1, "id": 1, "mj": 0, "a\x00b": 1},
        {"k": "rx\n" * 400},
    ],
    ids=["kind", "field", "long"],
)
def test_an_error_about_the_sender_s_bytes_can_travel_back(data: dict[str, object]) -> None:
    """The daemon answers a bad frame with the codec's message: it must itself decode (no NUL,
    which the answer's own check refuses) and stay short. Found by the hostile-input test."""
    with pytest.raises(WireError) as info:
        codec.decode(msgpack.packb(data))
    message = info.value.strerror or ""
    assert message.isprintable() and len(message) <= 512
    answer = RxCompletion(1, info.value.status, message=message)
    assert codec.decode(codec.encode(answer)) == answer


def test_limits_are_enforced() -> None:
    tight = Codec(Limits(max_header_bytes=64, max_str_len=8, max_array_len=4, max_map_len=8))
    with pytest.raises(WireError, match="exceeds"):
        tight.decode(b"\x80" * 65)
    # free-form values at every depth: the codec's limits
    with pytest.raises(WireError, match="string of 9 exceeds the limit of 8"):
        tight.decode(codec.encode(RxContext(1, 0, args={"a": ["x" * 9]})))
    with pytest.raises(WireError, match="map of 9"):
        tight.decode(codec.encode(RxContext(1, 0, args={str(i): i for i in range(9)})))
    with pytest.raises(WireError, match="list of 5"):
        tight.decode(codec.encode(RxCompletion(1, 0, result=[1, 2, 3, 4, 5])))
    # the messages' own strings and lists: the schema's
    assert codec.decode(codec.encode(RxContext(1, 0, path="x" * MAX_TEXT_LEN))).path
    with pytest.raises(
        WireError, match=r"path\): a string over the length limit \(<= 65536\)"
    ) as info:
        codec.decode(codec.encode(RxContext(1, 0, path="x" * (MAX_TEXT_LEN + 1))))
    # a name no file system takes: a name error, as a NUL in it
    assert info.value.status == NtStatus.STATUS_OBJECT_NAME_INVALID


def test_a_trusted_codec_checks_the_schema_but_not_the_free_form_values() -> None:
    """What the daemon's own processes send each other (the core's answers, a mini-redirector's
    on the ipc bus) skips the walk of ``args``/``result``; the schema, the header's size, the
    wire version and a compound's shape are still refused with their status."""
    tight = Limits(max_header_bytes=256, max_map_len=2)
    trusted, checked = Codec(tight, trusted=True), Codec(tight)
    wide = codec.encode(RxCompletion(1, 0, result={"a": 1, "b": 2, "c": 3}))
    with pytest.raises(WireError, match="map of 3"):
        checked.decode(wide)
    assert trusted.decode(wide) == RxCompletion(1, 0, result={"a": 1, "b": 2, "c": 3})
    with pytest.raises(WireError, match="exceeds 256"):
        trusted.decode(codec.encode(RxCompletion(1, 0, message="x" * 300)))
    with pytest.raises(WireError, match="expected an integer") as info:
        trusted.decode(msgpack.packb({"k": "done", "v": 1, "id": "1", "st": 0}))
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
    with pytest.raises(WireError, match="unsupported wire version"):
        trusted.decode(msgpack.packb({"k": "done", "v": 2, "id": 1, "st": 0}))
    with pytest.raises(WireError, match="malformed msgpack"):
        trusted.decode(b"\xc1")
    shape = {"k": "cd", "v": 1, "id": 1, "st": 0, "it": [{"k": "done", "id": 0, "st": 0}]}
    with pytest.raises(WireError, match="payload_items"):
        trusted.decode(msgpack.packb({**shape, "pi": [3]}))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"dl": -5}, r"dl \(deadline in ms\): out of range \(must be >= 0\)"),
        ({"dl": 2**63}, r"dl \(deadline in ms\): out of range \(must be <= 2147483647\)"),
        ({"id": -1}, r"id \(request id\): out of range"),
        ({"id": 2**63}, r"id \(request id\): out of range"),
        ({"fx": -3}, r"fx \(handle \(fobx\)\): out of range"),
        ({"mj": 256}, r"mj \(major function\): out of range"),
        ({"lo": {"of": -2}}, r"lo.of \(offset\): out of range \(must be >= -1\)"),
        ({"lo": {"ln": -1}}, r"lo.ln \(length\): out of range \(must be >= 0\)"),
        ({"lo": {"f": 2**32}}, r"lo.f: out of range \(must be <= 4294967295\)"),
        ({"cr": {"da": -1}}, r"cr.da: out of range"),
        ({"cr": {"as": 2**64 - 1}}, r"cr.as \(allocation size\): out of range"),
        ({"qd": {"mx": -1}}, r"qd.mx: out of range"),
    ],
)
def test_every_numeric_field_is_range_checked(fields: dict[str, object], named: str) -> None:
    """A number outside its field's range is refused with STATUS_INVALID_PARAMETER naming the
    field, before any process acts on it; the refusal still carries the request's id."""
    frame = msgpack.packb({"k": "rx", "v": 1, "id": 7, "mj": 3, **fields})
    with pytest.raises(WireError, match=named) as info:
        codec.decode(frame)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
    assert refusal_ids(frame) == ([7] if "id" not in fields else [0])


def test_the_ranges_edges_are_accepted() -> None:
    """-1 as an offset (an append), 0 as a deadline (a compound item: the compound's), and the
    largest id, size and deadline."""
    lowio = LowIoParameters(offset=-1, length=(1 << 63) - 1)
    ctx = RxContext((1 << 63) - 1, 255, timeout_ms=(1 << 31) - 1, fobx=(1 << 63) - 1, lowio=lowio)
    assert codec.decode(codec.encode(ctx)) == ctx
    assert codec.decode(codec.encode(RxContext(1, 3, timeout_ms=0))).timeout_ms == 0
    hb = Heartbeat("local", -3)  # LEAVING
    assert codec.decode(codec.encode(hb)) == hb


def test_a_refused_frame_is_answered_with_the_ids_it_carries() -> None:
    """Read leniently: an over-long path does not hide the id; a bundle's items are answered
    each; no readable id gives [0]."""
    long_path = {"k": "rx", "v": 1, "id": 41, "mj": 0, "p": "x" * (MAX_TEXT_LEN + 10)}
    assert refusal_ids(msgpack.packb(long_path)) == [41]
    bundle = {"k": "rb", "v": 1, "it": [long_path, {"k": "rx", "id": 42}, {"id": "x"}]}
    assert refusal_ids(msgpack.packb(bundle)) == [41, 42]
    assert refusal_ids(msgpack.packb({"k": "rx", "id": "7"})) == [0]
    assert refusal_ids(b"\xc1garbage") == [0]
    assert refusal_ids(msgpack.packb([1, 2])) == [0]
    assert refusal_ids(b"\x91" * 100_000) == [0]  # nested too deeply


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        codec.decode(data)
    except WireError as exc:
        assert exc.status == NtStatus.STATUS_INVALID_PARAMETER


@given(contexts, st.integers(min_value=0, max_value=10_000))
def test_truncated_frames_are_refused(ctx: RxContext, cut: int) -> None:
    frame = codec.encode(ctx)
    cut = cut % len(frame)
    with pytest.raises(WireError):
        codec.decode(frame[:cut])


def test_encoding_an_unencodable_value_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        codec.encode(RxCompletion(1, 0, result={"x": object()}))
    # the packer is still usable afterwards
    assert codec.decode(codec.encode(RxCompletion(2, 0))) == RxCompletion(2, 0)


# ----------------------------------------------------------------------------- framing


def test_payload_travels_in_its_own_frame() -> None:
    data = b"\x00\xff" * 1000
    frames = pack_frames(codec, RxContext(5, IrpMj.WRITE), data)
    assert len(frames) == 2 and frames[1] is data
    assert data not in frames[0]
    msg, payload = unpack_frames(codec, frames)
    assert isinstance(msg, RxContext) and msg.request_id == 5
    assert payload is not None and bytes(payload) == data


def test_frame_count_and_payload_limit() -> None:
    header = codec.encode(RxContext(1, 0))
    with pytest.raises(WireError, match="empty"):
        unpack_frames(codec, [])
    with pytest.raises(WireError, match="3 frames"):
        unpack_frames(codec, [header, b"", b""])
    with pytest.raises(WireError, match="payload"):
        unpack_frames(codec, [header, b"x" * 11], Limits(max_payload_bytes=10))
    _msg, payload = unpack_frames(codec, [header])
    assert payload is None


def test_a_nul_in_a_path_is_a_name_error() -> None:
    frame = msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "p": "a\x00b"})
    with pytest.raises(WireError) as info:
        codec.decode(frame)
    assert info.value.status == NtStatus.STATUS_OBJECT_NAME_INVALID
    frame = msgpack.packb({"k": "rx", "v": 1, "id": 1, "mj": 0, "sc": "a\x00b"})
    with pytest.raises(WireError) as info:
        codec.decode(frame)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


# ----------------------------------------------------------------------------- compounds


@given(st.lists(contexts, max_size=8), st.data())
@settings(max_examples=100)
def test_compound_round_trip_with_payload_frames(
    items: list[RxContext], data: st.DataObject
) -> None:
    carrying = sorted(data.draw(st.sets(st.integers(0, max(len(items) - 1, 0)))) if items else [])
    payloads = [bytes([i]) * (i + 1) for i in carrying]
    cx = Compound(7, items, payload_items=carrying, timeout_ms=1234, payloads=payloads)
    frames = pack_frames(codec, cx)
    assert len(frames) == (2 if carrying else 1)  # small payloads share one frame
    msg, single = unpack_frames(codec, frames)
    assert single is None and isinstance(msg, Compound)
    assert msg.items == items and msg.payload_items == carrying and msg.timeout_ms == 1234
    assert [bytes(p) for p in msg.payloads] == payloads


@given(st.lists(completions, max_size=8))
def test_compound_completion_round_trip(items: list[RxCompletion]) -> None:
    cd = CompoundCompletion(3, NtStatus.STATUS_SUCCESS, items)
    msg, _ = unpack_frames(codec, pack_frames(codec, cd))
    assert isinstance(msg, CompoundCompletion) and msg.items == items and msg.payloads == []


def test_compound_limits_answer_invalid_parameter() -> None:
    small_codec = Codec(Limits(max_compound_items=4, max_compound_payload_bytes=10))
    five = Compound(1, [RxContext(i, IrpMj.READ) for i in range(5)])
    with pytest.raises(WireError, match="5 items exceeds 4") as info:
        small_codec.encode(five)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
    with pytest.raises(WireError, match="5 items exceeds 4"):
        small_codec.decode(codec.encode(five))
    two = Compound(1, [RxContext(0, IrpMj.WRITE), RxContext(1, IrpMj.WRITE)], [0, 1])
    frames = [codec.encode(Compound(1, two.items, [0, 1], payloads=[b"", b""])), b"x" * 6, b"y" * 5]
    with pytest.raises(WireError, match="11 bytes exceed 10"):
        unpack_frames(small_codec, frames, small_codec.limits)
    with pytest.raises(WireError, match="1 payloads for 2"):
        unpack_frames(codec, frames[:2])
    with pytest.raises(WireError, match="more than a compound"):
        unpack_frames(small_codec, [frames[0]] + [b""] * 5, small_codec.limits)


@pytest.mark.parametrize(
    "payload_items",
    [[1, 1], [2, 1], [-1], [2], [0, 5]],
    ids=["dup", "order", "neg", "range", "far"],
)
def test_compound_payload_indices_are_checked(payload_items: list[int]) -> None:
    header = msgpack.packb(
        {
            "k": "cx",
            "v": 1,
            "id": 1,
            "it": [{"id": 0, "mj": 3}, {"id": 1, "mj": 3}],
            "pi": payload_items,
        }
    )
    with pytest.raises(WireError, match=r"payload_items|header\.pi\[0\]: out of range"):
        codec.decode(header)


@pytest.mark.parametrize(
    "items",
    [5, [5], ["x"], [{"id": "1", "mj": 3}], [{"mj": 3}], [{"id": 1, "mj": 3, "zz": 1}]],
    ids=["not-list", "int-item", "str-item", "bad-field", "missing-id", "unknown-key"],
)
def test_malformed_compound_items_are_refused(items: object) -> None:
    header = msgpack.packb({"k": "cx", "v": 1, "id": 1, "it": items})
    with pytest.raises(WireError) as info:
        codec.decode(header)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
)


@given(values, values, st.lists(st.binary(max_size=8), max_size=3))
@settings(max_examples=300)
def test_random_compound_fields_never_crash_the_decoder(
    items: object, payload_items: object, payloads: list[bytes]
) -> None:
    header = msgpack.packb({"k": "cx", "v": 1, "id": 1, "it": items, "pi": payload_items})
    try:
        msg, _ = unpack_frames(codec, [header, *payloads])
    except WireError as exc:
        assert exc.status in (
            NtStatus.STATUS_INVALID_PARAMETER,
            NtStatus.STATUS_OBJECT_NAME_INVALID,
        )
    else:
        assert isinstance(msg, Compound) and len(msg.payloads) == len(msg.payload_items)


@given(st.lists(completions, max_size=6))
def test_completion_bundle_round_trip(items: list[RxCompletion]) -> None:
    carrying = list(range(0, len(items), 2))
    bundle = CompletionBundle(items, carrying, payloads=[b"p%d" % i for i in carrying])
    msg, _ = unpack_frames(codec, pack_frames(codec, bundle))
    assert isinstance(msg, CompletionBundle) and msg.items == items
    assert [bytes(p) for p in msg.payloads] == [b"p%d" % i for i in carrying]


def test_request_bundle_round_trip_and_limits() -> None:
    items = [
        RxContext(1, IrpMj.READ, fobx=3, lowio=LowIoParameters(operation=0, length=10)),
        RxContext(2, IrpMj.WRITE, fobx=3, lowio=LowIoParameters(operation=1, length=4)),
    ]
    bundle = RequestBundle(items, [1], payloads=[b"data"])
    msg, _ = unpack_frames(codec, pack_frames(codec, bundle))
    assert isinstance(msg, RequestBundle) and msg.items == items
    assert [bytes(p) for p in msg.payloads] == [b"data"]
    too_many = RequestBundle([RxContext(i, IrpMj.READ) for i in range(1025)])
    with pytest.raises(WireError, match="exceeds"):
        unpack_frames(codec, [msgpack.packb({"k": "rb", "v": 1, "it": [
            {"id": i, "mj": 3} for i in range(len(too_many.items))
        ]})])  # fmt: skip
    with pytest.raises(WireError):  # its items are requests, never completions
        codec.decode(msgpack.packb({"k": "rb", "v": 1, "it": [{"id": 1, "st": 0}]}))


def test_small_payloads_share_frames_and_large_ones_travel_alone() -> None:
    big = b"B" * (128 << 10)
    small = [b"a" * 10, b"b" * 4096, b"", b"c" * 3]
    payloads = [small[0], small[1], big, small[2], small[3]]
    items = [RxContext(i, IrpMj.WRITE) for i in range(5)]
    cx = Compound(1, items, payload_items=[0, 1, 2, 3, 4], payloads=payloads)
    frames = pack_frames(codec, cx)
    assert len(frames) == 4 and frames[2] is big  # header, a+b, big (not copied), empty+c
    assert bytes(frames[1]) == small[0] + small[1] and bytes(frames[3]) == small[3]
    msg, _ = unpack_frames(codec, frames)
    assert isinstance(msg, Compound) and [bytes(p) for p in msg.payloads] == payloads


@pytest.mark.parametrize(
    ("lengths", "counts", "frames"),
    [
        ([3, 3], [1], [b"abcdef"]),  # two payloads for one count
        ([3, 4], [2], [b"abcdef"]),  # lengths overrun the frame
        ([2, 2], [2], [b"abcdef"]),  # lengths do not fill the frame
        ([-1, 7], [2], [b"abcdef"]),  # a negative length
        ([3, 3], [1, 1], [b"abcdef"]),  # more counts than frames
        ([6, 0], [2, 0], [b"abcdef", b""]),  # a frame holding nothing
    ],
)
def test_bad_payload_layouts_are_refused(
    lengths: list[int], counts: list[int], frames: list[bytes]
) -> None:
    header = msgpack.packb(
        {
            "k": "cx",
            "v": 1,
            "id": 1,
            "it": [{"id": 0, "mj": 4}, {"id": 1, "mj": 4}],
            "pi": [0, 1],
            "pl": lengths,
            "pf": counts,
        }
    )
    with pytest.raises(WireError) as info:
        unpack_frames(codec, [header, *frames])
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


def test_payload_lengths_count_bytes_whatever_the_buffer_item_size() -> None:
    import array

    words = memoryview(array.array("i", [1, 2, 3]))  # 3 items, 12 bytes
    cx = Compound(1, [RxContext(0, IrpMj.WRITE), RxContext(1, IrpMj.WRITE)], [0, 1])
    cx.payloads = [words, b"xy"]
    msg, _ = unpack_frames(codec, pack_frames(codec, cx))
    assert isinstance(msg, Compound)
    assert [bytes(p) for p in msg.payloads] == [words.tobytes(), b"xy"]
