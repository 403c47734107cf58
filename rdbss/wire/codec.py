"""msgpack codec for the wire messages, with explicit limits for untrusted input.

Every decoding failure (bad msgpack, wrong types, unknown kind, over a limit) raises ``WireError``
whose ``status`` is STATUS_INVALID_PARAMETER: the receiver answers with it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from rdbss.wire.rxcontext import (
    WIRE_VERSION,
    Compound,
    CompoundCompletion,
    CreateParameters,
    Heartbeat,
    InfoParameters,
    LowIoParameters,
    Message,
    QueryDirectoryParameters,
    Register,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError


class WireError(NtStatusError):
    """A frame or message that does not follow the schema."""

    def __init__(self, message: str, status: int = NtStatus.STATUS_INVALID_PARAMETER) -> None:
        super().__init__(status, message)


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 1 << 20
    max_str_len: int = 64 << 10
    max_bin_len: int = 1 << 20
    max_array_len: int = 1 << 16
    max_map_len: int = 256
    max_payload_bytes: int = 64 << 20
    max_compound_items: int = 1024  # items in one Compound / CompoundCompletion
    max_compound_payload_bytes: int = 64 << 20  # all payload frames of one compound together


DEFAULT_LIMITS: Final = Limits()

_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1

# (attribute, wire key, kind) where kind is "int", "str", "bool", "map", "any" or a dataclass.
_Spec = tuple[tuple[str, str, Any], ...]

_CREATE: _Spec = (
    ("desired_access", "da", "int"),
    ("file_attributes", "fa", "int"),
    ("share_access", "sa", "int"),
    ("disposition", "di", "int"),
    ("create_options", "co", "int"),
    ("allocation_size", "as", "int"),
)
_LOWIO: _Spec = (
    ("operation", "o", "int"),
    ("offset", "of", "int"),
    ("length", "ln", "int"),
    ("flags", "f", "int"),
    ("key", "k", "int"),
    ("code", "c", "int"),
    ("watch_tree", "wt", "bool"),
    ("completion_filter", "cf", "int"),
)
_INFO: _Spec = (("info_class", "c", "int"), ("args", "a", "map"))
_QDIR: _Spec = (
    ("info_class", "c", "int"),
    ("pattern", "pt", "str"),
    ("restart_scan", "rs", "bool"),
    ("return_single_entry", "ss", "bool"),
    ("file_index", "ix", "int"),
    ("max_entries", "mx", "int"),
)
_RX: _Spec = (
    ("request_id", "id", "int"),
    ("major", "mj", "int"),
    ("minor", "mn", "int"),
    ("routine", "rt", "str"),
    ("target", "to", "str"),
    ("timeout_ms", "dl", "int"),
    ("path", "p", "path"),
    ("fobx", "fx", "int"),
    ("srv_open", "so", "int"),
    ("srv_call", "sc", "str"),
    ("net_root", "nr", "str"),
    ("create", "cr", CreateParameters),
    ("lowio", "lo", LowIoParameters),
    ("info", "in", InfoParameters),
    ("query_directory", "qd", QueryDirectoryParameters),
    ("args", "ar", "map"),
    ("flags", "fl", "int"),
    ("origin", "or", "str"),
)
_DONE: _Spec = (
    ("request_id", "id", "int"),
    ("status", "st", "int"),
    ("information", "inf", "int"),
    ("result", "r", "any"),
    ("message", "msg", "str"),
)
_REG: _Spec = (
    ("name", "n", "str"),
    ("kind", "kd", "str"),
    ("routines", "rt", "strlist"),
    ("lowio_ops", "lo", "intlist"),
    ("servers", "sv", "strlist"),
    ("mrx_flags", "f", "int"),
    ("pid", "pid", "int"),
    ("role", "ro", "str"),
)
_HB: _Spec = (("name", "n", "str"), ("seq", "s", "int"), ("pending", "pd", "int"))
_CX: _Spec = (
    ("request_id", "id", "int"),
    ("items", "it", "rxlist"),
    ("payload_items", "pi", "intlist"),
    ("timeout_ms", "dl", "int"),
    ("origin", "or", "str"),
)
_CD: _Spec = (
    ("request_id", "id", "int"),
    ("status", "st", "int"),
    ("items", "it", "donelist"),
    ("payload_items", "pi", "intlist"),
    ("message", "msg", "str"),
)
#: list kinds: a list of maps, each one message of this class (without the envelope)
_LIST_OF: dict[str, type[Any]] = {"rxlist": RxContext, "donelist": RxCompletion}

_SPECS: dict[type[Any], _Spec] = {
    CreateParameters: _CREATE,
    LowIoParameters: _LOWIO,
    InfoParameters: _INFO,
    QueryDirectoryParameters: _QDIR,
    RxContext: _RX,
    RxCompletion: _DONE,
    Register: _REG,
    Heartbeat: _HB,
    Compound: _CX,
    CompoundCompletion: _CD,
}
_KINDS: dict[str, type[Any]] = {
    "rx": RxContext,
    "done": RxCompletion,
    "reg": Register,
    "hb": Heartbeat,
    "cx": Compound,
    "cd": CompoundCompletion,
}
_KIND_OF: dict[type[Any], str] = {cls: kind for kind, cls in _KINDS.items()}
_REQUIRED: dict[type[Any], frozenset[str]] = {
    RxContext: frozenset({"id", "mj"}),
    RxCompletion: frozenset({"id", "st"}),
    Register: frozenset({"n", "kd", "rt", "lo", "sv"}),
    Heartbeat: frozenset({"n"}),
    Compound: frozenset({"id", "it"}),
    CompoundCompletion: frozenset({"id", "st"}),
}


def _to_wire(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key, kind in _SPECS[type(obj)]:
        value = getattr(obj, attr)
        if value is None:
            continue
        if isinstance(kind, type):
            value = _to_wire(value)
        elif kind in _LIST_OF:
            value = [_to_wire(item) for item in value]
        out[key] = value
    return out


def _check(value: Any, kind: Any, where: str) -> Any:
    if kind == "int":
        if type(value) is not int or not (_INT64_MIN <= value <= _UINT64_MAX):
            raise WireError(f"{where}: expected an integer")
        return value
    if kind == "str":
        if type(value) is not str:
            raise WireError(f"{where}: expected a string")
        if "\x00" in value:
            raise WireError(f"{where}: NUL character in string")
        return value
    if kind == "path":
        if type(value) is not str:
            raise WireError(f"{where}: expected a string")
        if "\x00" in value:  # a name no file system allows: a name error, not a bad message
            raise WireError(
                f"{where}: NUL character in a path", NtStatus.STATUS_OBJECT_NAME_INVALID
            )
        return value
    if kind == "bool":
        if type(value) is not bool:
            raise WireError(f"{where}: expected a boolean")
        return value
    if kind == "map":
        if type(value) is not dict:
            raise WireError(f"{where}: expected a map")
        return value
    if kind == "strlist":
        if type(value) is not list or any(type(v) is not str for v in value):
            raise WireError(f"{where}: expected a list of strings")
        return value
    if kind == "intlist":
        if type(value) is not list or any(type(v) is not int for v in value):
            raise WireError(f"{where}: expected a list of integers")
        return value
    if kind == "any":
        return value
    if kind in _LIST_OF:
        if type(value) is not list:
            raise WireError(f"{where}: expected a list of messages")
        cls = _LIST_OF[kind]
        items = []
        for i, item in enumerate(value):
            if type(item) is not dict:
                raise WireError(f"{where}[{i}]: expected a map")
            items.append(_from_wire(cls, item, f"{where}[{i}]"))
        return items
    if isinstance(kind, type):
        if type(value) is not dict:
            raise WireError(f"{where}: expected a map")
        return _from_wire(kind, value, where)
    raise AssertionError(kind)  # pragma: no cover - spec error


# per class: wire key -> (attribute, kind), built once
_FIELDS: dict[type[Any], dict[str, tuple[str, Any]]] = {
    cls: {key: (attr, kind) for attr, key, kind in spec} for cls, spec in _SPECS.items()
}
_ENVELOPE = frozenset({"k", "v"})


def _from_wire(cls: type[Any], data: dict[Any, Any], where: str) -> Any:
    fields = _FIELDS[cls]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            if key in _ENVELOPE:
                continue
            raise WireError(f"{where}: unknown field {key!r}")
        if value is None:
            continue
        attr, kind = field
        if kind == "int" and type(value) is int and _INT64_MIN <= value <= _UINT64_MAX:
            kwargs[attr] = value  # the common case, checked without building an error context
        else:
            kwargs[attr] = _check(value, kind, f"{where}.{key}")
    missing = _REQUIRED.get(cls, frozenset()) - data.keys()
    if missing:
        raise WireError(f"{where}: missing field {sorted(missing)[0]!r}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by _REQUIRED
        raise WireError(f"{where}: {exc}") from None


class Codec:
    """Encodes and decodes message headers. One instance per thread (the Packer is not shared)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._packer = msgpack.Packer(use_bin_type=True)

    def check_compound(self, msg: Compound | CompoundCompletion) -> None:
        """The limits and the shape of a compound's items and payload indices."""
        lim = self.limits
        n = len(msg.items)
        if n > lim.max_compound_items:
            raise WireError(f"compound of {n} items exceeds {lim.max_compound_items}")
        previous = -1
        for index in msg.payload_items:
            if not previous < index < n:
                raise WireError(
                    "compound payload_items must be increasing item indices "
                    f"(got {index} after {previous}, {n} items)"
                )
            previous = index

    def encode(self, msg: Message) -> bytes:
        if isinstance(msg, Compound | CompoundCompletion):
            self.check_compound(msg)
            if len(msg.payloads) != len(msg.payload_items):
                raise WireError(
                    f"{len(msg.payloads)} payloads for {len(msg.payload_items)} payload_items"
                )
        data = _to_wire(msg)
        data["k"] = _KIND_OF[type(msg)]
        data["v"] = WIRE_VERSION
        try:
            packed: bytes = self._packer.pack(data)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from None
        return packed

    def decode(self, frame: bytes | memoryview) -> Message:
        lim = self.limits
        if len(frame) > lim.max_header_bytes:
            raise WireError(f"header of {len(frame)} bytes exceeds {lim.max_header_bytes}")
        try:
            data = msgpack.unpackb(
                frame,
                raw=False,
                strict_map_key=True,
                use_list=True,
                max_str_len=lim.max_str_len,
                max_bin_len=lim.max_bin_len,
                max_array_len=lim.max_array_len,
                max_map_len=lim.max_map_len,
                max_ext_len=0,
            )
        except (ValueError, TypeError) as exc:
            raise WireError(f"malformed msgpack: {exc}") from None
        if type(data) is not dict:
            raise WireError("header is not a map")
        version = data.get("v")
        if version != WIRE_VERSION:
            raise WireError(f"unsupported wire version {version!r} (expected {WIRE_VERSION})")
        kind = data.get("k")
        cls = _KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None or not isinstance(kind, str):
            raise WireError(f"unknown message kind {kind!r}")
        if cls is Compound or cls is CompoundCompletion:
            items = data.get("it")
            if isinstance(items, list) and len(items) > lim.max_compound_items:
                raise WireError(f"compound of {len(items)} items exceeds {lim.max_compound_items}")
        msg: Message = _from_wire(cls, data, kind)
        if isinstance(msg, Compound | CompoundCompletion):
            self.check_compound(msg)
        return msg


_default_codec = Codec()
encode = _default_codec.encode
decode = _default_codec.decode
