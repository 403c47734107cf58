"""msgpack codec for the wire messages, with explicit limits for untrusted input.

Every decoding failure (bad msgpack, wrong types, unknown kind, over a limit) raises ``WireError``
whose ``status`` is STATUS_INVALID_PARAMETER: the receiver answers with it and goes on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from rdbss.wire.rxcontext import (
    CANCEL_REASONS,
    WIRE_VERSION,
    Batched,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateParameters,
    Heartbeat,
    InfoParameters,
    LowIoParameters,
    Message,
    QueryDirectoryParameters,
    Register,
    RequestBundle,
    RxCancel,
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
    ("host", "h", "str"),
    ("buffering", "bf", "int"),
)
_HB: _Spec = (("name", "n", "str"), ("seq", "s", "int"), ("pending", "pd", "int"))
_CANCEL: _Spec = (("request_id", "id", "int"), ("reason", "rs", "reason"))
_CX: _Spec = (
    ("request_id", "id", "int"),
    ("items", "it", "rxlist"),
    ("payload_items", "pi", "intlist"),
    ("timeout_ms", "dl", "int"),
    ("origin", "or", "str"),
    ("payload_lengths", "pl", "intlist"),
    ("payload_frames", "pf", "intlist"),
)
_CD: _Spec = (
    ("request_id", "id", "int"),
    ("status", "st", "int"),
    ("items", "it", "donelist"),
    ("payload_items", "pi", "intlist"),
    ("message", "msg", "str"),
    ("payload_lengths", "pl", "intlist"),
    ("payload_frames", "pf", "intlist"),
)
_CB: _Spec = (
    ("items", "it", "donelist"),
    ("payload_items", "pi", "intlist"),
    ("payload_lengths", "pl", "intlist"),
    ("payload_frames", "pf", "intlist"),
)
_RB: _Spec = (
    ("items", "it", "rxlist"),
    ("payload_items", "pi", "intlist"),
    ("payload_lengths", "pl", "intlist"),
    ("payload_frames", "pf", "intlist"),
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
    RxCancel: _CANCEL,
    Compound: _CX,
    CompoundCompletion: _CD,
    CompletionBundle: _CB,
    RequestBundle: _RB,
}
_KINDS: dict[str, type[Any]] = {
    "rx": RxContext,
    "done": RxCompletion,
    "reg": Register,
    "hb": Heartbeat,
    "cancel": RxCancel,
    "cx": Compound,
    "cd": CompoundCompletion,
    "cb": CompletionBundle,
    "rb": RequestBundle,
}
_KIND_OF: dict[type[Any], str] = {cls: kind for kind, cls in _KINDS.items()}
_REQUIRED: dict[type[Any], frozenset[str]] = {
    RxContext: frozenset({"id", "mj"}),
    RxCompletion: frozenset({"id", "st"}),
    Register: frozenset({"n", "kd", "rt", "lo", "sv"}),
    Heartbeat: frozenset({"n"}),
    RxCancel: frozenset({"id"}),
    Compound: frozenset({"id", "it"}),
    CompoundCompletion: frozenset({"id", "st"}),
    CompletionBundle: frozenset({"it"}),
    RequestBundle: frozenset({"it"}),
}


def _to_wire(obj: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = _ENCODERS[type(obj)](obj)
    return encoded


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
    if kind == "reason":
        if type(value) is not str or value not in CANCEL_REASONS:
            raise WireError(f"{where}: expected one of {', '.join(CANCEL_REASONS)}")
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


_ENVELOPE = frozenset({"k", "v"})
_BATCHED = frozenset({Compound, CompoundCompletion, CompletionBundle, RequestBundle})


def _from_wire(cls: type[Any], data: dict[Any, Any], where: str) -> Any:
    return _DECODERS[cls](data, where)


# Per class, an encoder and a decoder generated once from its spec: the same checks as
# ``_check`` (which still builds every error), without a generic loop per field. The wire
# format is the spec's; the encoder leaves out fields at their default (the decoder fills them
# in), so messages are smaller; the codec is most of the per-message CPU.
_FAST_CHECK = {
    "int": "type(v) is int and _INT64_MIN <= v <= _UINT64_MAX",
    "str": "type(v) is str and '\\x00' not in v",
    "path": "type(v) is str and '\\x00' not in v",
    "bool": "type(v) is bool",
    "map": "type(v) is dict",
    "any": "True",
}


def _compile(cls: type[Any], spec: _Spec) -> tuple[Any, Any]:
    name = cls.__name__
    namespace: dict[str, Any] = {
        "_INT64_MIN": _INT64_MIN,
        "_UINT64_MAX": _UINT64_MAX,
        "_check": _check,
        "_ENCODERS": _ENCODERS,
        "_DECODERS": _DECODERS,
        "WireError": WireError,
        "cls": cls,
        "ALLOWED": frozenset(key for _, key, _ in spec) | _ENVELOPE,
        "REQUIRED": _REQUIRED.get(cls, frozenset()),
    }
    enc = [f"def _enc_{name}(obj):", "    out = {}"]
    dec = [
        f"def _dec_{name}(data, where):",
        "    keys = data.keys()",
        "    if not keys <= ALLOWED:",
        "        unknown = next(k for k in data if k not in ALLOWED)",
        "        raise WireError(f'{where}: unknown field {unknown!r}')",
        "    if not REQUIRED <= keys:",
        "        raise WireError(f'{where}: missing field {sorted(REQUIRED - keys)[0]!r}')",
    ]
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    call = []
    for i, (attr, key, kind) in enumerate(spec):
        enc.append(f"    v = obj.{attr}")
        plain = defaults[attr].default
        if plain is None or plain is dataclasses.MISSING:
            enc.append("    if v is not None:")
        else:  # a field at its default stays off the wire: the decoder fills it in again
            namespace[f"omit_{i}"] = plain
            enc.append(f"    if v is not None and v != omit_{i}:")
        if isinstance(kind, type):
            enc.append(f"        out[{key!r}] = _ENCODERS[kind_{i}](v)")
            namespace[f"kind_{i}"] = kind
        elif kind in _LIST_OF:
            item_cls = _LIST_OF[kind]
            namespace[f"kind_{i}"] = item_cls
            enc.append(f"        enc = _ENCODERS[kind_{i}]")
            enc.append(f"        out[{key!r}] = [enc(item) for item in v]")
        else:
            enc.append(f"        out[{key!r}] = v")
        namespace[f"spec_{i}"] = kind
        d = defaults[attr]
        if d.default is not dataclasses.MISSING:
            namespace[f"default_{i}"] = d.default
            missing = f"default_{i}"
        elif d.default_factory is not dataclasses.MISSING:
            namespace[f"factory_{i}"] = d.default_factory
            missing = f"factory_{i}()"
        else:
            missing = ""  # required: present and not nil
        dec.append(f"    v = data.get({key!r})")
        dec.append("    if v is None:")
        if missing:
            dec.append(f"        a_{i} = {missing}")
        else:
            dec.append(f"        raise WireError(where + {': missing field ' + repr(key)!r})")
        if isinstance(kind, type):
            namespace[f"kind_{i}"] = kind
            dec.append("    elif type(v) is dict:")
            dec.append(f"        a_{i} = _DECODERS[kind_{i}](v, where + '.{key}')")
        elif kind in _FAST_CHECK:
            dec.append(f"    elif {_FAST_CHECK[kind]}:")
            dec.append(f"        a_{i} = v")
        dec.append("    else:")
        dec.append(f"        a_{i} = _check(v, spec_{i}, where + '.{key}')")
        call.append(f"{attr}=a_{i}")
    enc.append("    return out")
    order = [f.name for f in dataclasses.fields(cls)]
    by_attr = dict(item.split("=") for item in call)
    if order[: len(call)] == [attr for attr, _, _ in spec] or set(order[: len(call)]) == set(
        by_attr
    ):
        args = ", ".join(by_attr[attr] for attr in order[: len(call)])  # positional: faster
    else:  # pragma: no cover - a spec field after a field the wire does not carry
        args = ", ".join(call)
    dec.append("    try:")
    dec.append(f"        return cls({args})")
    dec.append("    except TypeError as exc:")
    dec.append("        raise WireError(f'{where}: {exc}') from None")
    exec("\n".join(enc) + "\n\n" + "\n".join(dec), namespace)  # our own specs only
    return namespace[f"_enc_{name}"], namespace[f"_dec_{name}"]


_ENCODERS: dict[type[Any], Any] = {}
_DECODERS: dict[type[Any], Any] = {}
for _cls, _spec in _SPECS.items():
    _ENCODERS[_cls], _DECODERS[_cls] = _compile(_cls, _spec)


class Codec:
    """Encodes and decodes message headers. One instance per thread (the Packer is not shared)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._packer = msgpack.Packer(use_bin_type=True)

    def check_compound(self, msg: Batched) -> None:
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
        if isinstance(msg, Batched):
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
        if cls in _BATCHED:
            items = data.get("it")
            if isinstance(items, list) and len(items) > lim.max_compound_items:
                raise WireError(f"compound of {len(items)} items exceeds {lim.max_compound_items}")
        msg: Message = _from_wire(cls, data, kind)
        if isinstance(msg, Batched):
            self.check_compound(msg)
        return msg


_default_codec = Codec()
encode = _default_codec.encode
decode = _default_codec.decode
