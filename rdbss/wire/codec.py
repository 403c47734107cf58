"""msgpack codec for the wire messages, with explicit limits for untrusted input.

The messages (``rxcontext``) are ``msgspec`` structures: msgspec encodes them and decodes a
frame straight into them in C, checking every field's type, refusing unknown and missing
fields, and leaving out fields at their default. What msgspec cannot know is checked here after
decoding: the ``Limits`` of the free-form ``args``/``result`` values (the schema limits the
messages' own strings and lists), no NUL in a string, the cancel reasons, the wire version and
the shape of a compound.

A ``Codec(trusted=True)`` decodes what one of the daemon's own processes sent over a local socket
(the core's answers to a client or its requests to a mini-redirector, a mini-redirector's
answers on the core's ipc bus): msgspec's schema, the header's size, the wire version and a
compound's shape are still checked, the walk of the free-form values and the NUL searches are
not. Those guard against a sender that breaks the rules; the daemon's own processes build their
messages from what was checked on the way in (a client's request, by the core) and from values
they make themselves, and the walk was an eighth of the core's CPU per request. Whatever comes
from a client, or from a peer over tcp, is decoded with every check.

Every decoding failure (bad msgpack, wrong types, unknown kind, over a limit) raises ``WireError``
whose ``status`` is STATUS_INVALID_PARAMETER (STATUS_OBJECT_NAME_INVALID for a NUL in a path):
the receiver answers with it and goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec

from rdbss.wire.rxcontext import (
    BATCHED_TYPES,
    CANCEL_REASONS,
    MAX_I64,
    PAYLOADS_KEY,
    WIRE_VERSION,
    Batched,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    Heartbeat,
    Message,
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
    """What a decoded header may hold. The string and list fields of the messages have their
    limits in the schema (``rxcontext.MAX_TEXT_LEN``, ``MAX_LIST_LEN``); ``max_str_len`` to
    ``max_map_len`` bound the free-form values (``args``, ``result``) at every depth."""

    max_header_bytes: int = 1 << 20
    max_str_len: int = 64 << 10
    max_bin_len: int = 1 << 20
    max_array_len: int = 1 << 16
    max_map_len: int = 256
    max_payload_bytes: int = 64 << 20
    max_compound_items: int = 1024  # items in one Compound / CompoundCompletion
    max_compound_payload_bytes: int = 64 << 20  # all payload frames of one compound together


DEFAULT_LIMITS: Final = Limits()

#: a request's path over the schema's length limit (``rxcontext.MAX_TEXT_LEN``)
_LONG_PATH = re.compile(r"^header(\.it\[\d+\])?\.p \(path\): a string over the length limit")
_LONG_PATH_STATUS: Final = NtStatus.STATUS_OBJECT_NAME_INVALID

_BATCHED: Final = (Compound, CompoundCompletion, CompletionBundle, RequestBundle)


# ---------------------------------------------------------------------- msgspec's errors, ours

_AT = re.compile(r"^(?P<body>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.S)
_TYPE_NAMES = {
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "object": "a map",
    "array": "a list",
    "float": "a number",
    "bytes": "binary data",
    "null": "nil",
}


#: msgspec's words for a number outside its ``Meta`` range (rxcontext's U32, Offset...)
_BOUND = re.compile(r"Expected `int` (?P<op>[<>]=?) (?P<n>-?\d+)")
#: what the numeric wire keys are, for error texts (the key alone says little to a user)
_FIELD_NAMES = {
    "id": "request id",
    "dl": "deadline in ms",
    "of": "offset",
    "ln": "length",
    "fx": "handle (fobx)",
    "so": "srv_open",
    "mj": "major function",
    "mn": "minor function",
    "fl": "flags",
    "st": "status",
    "inf": "information",
    "as": "allocation size",
    "p": "path",
}


def _field_name(at: str | None) -> str:
    key = (at or "").rsplit(".", 1)[-1]
    name = _FIELD_NAMES.get(key)
    return f" ({name})" if name else ""


def _type_name(text: str) -> str:
    return " or ".join(_TYPE_NAMES.get(part, part) for part in text.split(" | "))


def printable(text: str, limit: int = 512) -> str:
    """An error text safe to answer with: it may quote what another side sent (msgspec quotes
    a sender's bytes as they are, a server's reply may hold anything), and a NUL in an answer's
    message makes the answer itself undecodable. Control characters escaped, at most ``limit``
    characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain(exc: msgspec.ValidationError) -> str:
    """msgspec's message in the codec's words: ``where: what``, ``where`` as wire keys."""
    return printable(_explain_raw(exc))


def _explain_raw(exc: msgspec.ValidationError) -> str:
    match = _AT.match(str(exc))
    body = match.group("body") if match else str(exc)
    at = match.group("at") if match else None
    where = "header" + (at or "")
    if at is None and body.startswith("Expected `object`"):
        return "header is not a map"
    if at == ".k" and body.startswith("Invalid value"):
        return f"unknown message kind {body.removeprefix('Invalid value ')}"
    if at == ".k" or (at is None and body == "Object missing required field `k`"):
        return "unknown message kind (no 'k')"
    expected = re.match(r"Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`", body)
    if expected:
        want, got = _type_name(expected["want"]), expected["got"]
        return f"{where}: expected {want}, got {got}"
    bound = _BOUND.match(body)
    if bound:
        return f"{where}{_field_name(at)}: out of range (must be {bound['op']} {bound['n']})"
    longer = re.match(r"Expected `(?P<want>[^`]*)` of length <= (?P<n>\d+)", body)
    if longer:
        what = _type_name(longer["want"])
        return f"{where}{_field_name(at)}: {what} over the length limit (<= {longer['n']})"
    missing = re.match(r"Object missing required field `(?P<key>[^`]*)`", body)
    if missing:
        return f"{where}: missing field {missing['key']!r}"
    unknown = re.match(r"Object contains unknown field `(?P<key>[^`]*)`", body)
    if unknown:
        return f"{where}: unknown field {unknown['key']!r}"
    return f"{where}: {body}"


# ---------------------------------------------------------------------- what msgspec cannot check


def _too_long(where: str, what: str, length: int, limit: int) -> WireError:
    return WireError(f"{where}: {what} of {length} exceeds the limit of {limit}")


def _text(value: str | None, where: str) -> None:
    if value is not None and "\x00" in value:
        raise WireError(f"{where}: NUL character in string")


#: the free-form values that need no further look: numbers, booleans, nil
_SCALARS = frozenset({int, bool, float, type(None)})


def _value(value: Any, where: str, lim: Limits) -> None:
    """A free-form value (``args``, ``result``): msgpack's own types only, within the limits.
    Maps and lists check their scalar entries in line (a result map of a dozen entries is one
    call, not two dozen: this walk was most of a client's CPU per stat)."""
    kind = type(value)
    if kind is dict:
        if len(value) > lim.max_map_len:
            raise _too_long(where, "map", len(value), lim.max_map_len)
        max_str = lim.max_str_len
        for key, item in value.items():
            if type(key) is not str or len(key) > max_str:
                if type(key) is not str and type(key) is not bytes:
                    raise WireError(f"{where}: map keys must be strings, not {type(key).__name__}")
                _value(key, where, lim)
            kind = type(item)
            if kind in _SCALARS or (kind is str and len(item) <= max_str):
                continue
            _value(item, where, lim)
    elif kind is list:
        if len(value) > lim.max_array_len:
            raise _too_long(where, "list", len(value), lim.max_array_len)
        for item in value:
            if type(item) not in _SCALARS:
                _value(item, where, lim)
    elif kind is str:
        if len(value) > lim.max_str_len:
            raise _too_long(where, "string", len(value), lim.max_str_len)
    elif kind in _SCALARS:
        return
    elif kind is bytes:
        if len(value) > lim.max_bin_len:
            raise _too_long(where, "binary", len(value), lim.max_bin_len)
    else:  # a msgpack extension type (or a value only a broken encoder makes)
        raise WireError(f"{where}: unsupported value of type {kind.__name__}")


def _rx(ctx: RxContext, where: str, lim: Limits) -> None:
    path = ctx.path
    if path is not None and "\x00" in path:  # a name no file system allows: a name error
        raise WireError(f"{where}.p: NUL character in a path", NtStatus.STATUS_OBJECT_NAME_INVALID)
    # one search for a NUL in every other string (None renders as "None")
    if "\x00" in f"{ctx.routine}{ctx.srv_call}{ctx.net_root}{ctx.origin}{ctx.target}":
        for key, text in (
            ("rt", ctx.routine),
            ("sc", ctx.srv_call),
            ("nr", ctx.net_root),
            ("or", ctx.origin),
            ("to", ctx.target),
        ):
            _text(text, f"{where}.{key}")
    if ctx.args is not None:
        _value(ctx.args, where + ".ar", lim)
    if ctx.info is not None:
        _value(ctx.info.args, where + ".in.a", lim)
    if ctx.query_directory is not None:
        _text(ctx.query_directory.pattern, where + ".qd.pt")


def _done(done: RxCompletion, where: str, lim: Limits) -> None:
    if done.message:
        _text(done.message, where + ".msg")
    if done.result is not None:
        _value(done.result, where + ".r", lim)


def _batch(msg: Batched, where: str, lim: Limits) -> None:
    if msg.payloads:
        raise WireError(f"{where}: unknown field {PAYLOADS_KEY!r}")
    check: Any = _rx if isinstance(msg, Compound | RequestBundle) else _done
    for index, item in enumerate(msg.items):
        try:
            check(item, "", lim)
        except WireError as exc:  # where it was, built only now
            raise WireError(f"{where}.it[{index}]{exc.strerror}", exc.status) from None
    if isinstance(msg, Compound):
        _text(msg.origin, where + ".or")
    elif isinstance(msg, CompoundCompletion):
        _text(msg.message, where + ".msg")


def _check(msg: Message, lim: Limits) -> None:
    if isinstance(msg, RxContext):
        _rx(msg, "rx", lim)
    elif isinstance(msg, RxCompletion):
        _done(msg, "done", lim)
    elif isinstance(msg, _BATCHED):
        _batch(msg, str(type(msg).__struct_config__.tag), lim)
    elif isinstance(msg, RxCancel):
        if msg.reason not in CANCEL_REASONS:
            raise WireError(f"cancel.rs: expected one of {', '.join(CANCEL_REASONS)}")
    elif isinstance(msg, Heartbeat):
        _text(msg.name, "hb.n")
    elif isinstance(msg, Register):
        for key, text in (("n", msg.name), ("kd", msg.kind), ("ro", msg.role), ("h", msg.host)):
            _text(text, f"reg.{key}")
        for key, texts in (("rt", msg.routines), ("sv", msg.servers)):
            for text in texts:
                _text(text, f"reg.{key}")


class Codec:
    """Encodes and decodes message headers. One instance per thread. ``trusted``: decode
    without the checks msgspec does not make itself (see the module's docstring)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, trusted: bool = False) -> None:
        self.limits = limits
        self.trusted = trusted
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)

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
        if type(msg) not in BATCHED_TYPES:
            try:
                return self._encoder.encode(msg)
            except (TypeError, ValueError, OverflowError, msgspec.MsgspecError) as exc:
                raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from None
        return self._encode_batch(cast(Batched, msg))

    def _encode_batch(self, msg: Batched) -> bytes:
        self.check_compound(msg)
        if len(msg.payloads) != len(msg.payload_items):
            raise WireError(
                f"{len(msg.payloads)} payloads for {len(msg.payload_items)} payload_items"
            )
        payloads, msg.payloads = msg.payloads, []  # frames of their own, never in the header
        try:
            return self._encoder.encode(msg)
        except (TypeError, ValueError, OverflowError, msgspec.MsgspecError) as exc:
            raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from None
        finally:
            msg.payloads = payloads

    def decode(self, frame: bytes | memoryview) -> Message:
        lim = self.limits
        if len(frame) > lim.max_header_bytes:
            raise WireError(f"header of {len(frame)} bytes exceeds {lim.max_header_bytes}")
        try:
            msg = self._decoder.decode(frame)
        except msgspec.ValidationError as exc:
            text = _explain(exc)
            # a name too long for any file system is a name error, as a NUL in it is
            status = (
                _LONG_PATH_STATUS if _LONG_PATH.match(text) else NtStatus.STATUS_INVALID_PARAMETER
            )
            raise WireError(text, status) from None
        except msgspec.DecodeError as exc:
            raise WireError(printable(f"malformed msgpack: {exc}")) from None
        except RecursionError:
            raise WireError("malformed msgpack: nested too deeply") from None
        if msg.wire_version != WIRE_VERSION:
            raise WireError(
                f"unsupported wire version {msg.wire_version!r} (expected {WIRE_VERSION})"
            )
        if not self.trusted:
            try:
                _check(msg, lim)
            except RecursionError:
                raise WireError("malformed msgpack: nested too deeply") from None
        if type(msg) in BATCHED_TYPES:
            self.check_compound(cast(Batched, msg))
        return msg


def refusal_ids(frame: bytes | memoryview) -> list[int]:
    """The request ids a refused frame (one ``Codec.decode`` rejected) is answered with, read
    leniently so that a request broken anywhere but in its id still gets an answer its sender
    can match: the message's own id, or each item's of a RequestBundle (whose items are
    separate requests). [0] when no id can be read: its sender cannot match any answer, but a
    raw peer still sees that the frame was refused."""
    if len(frame) > DEFAULT_LIMITS.max_header_bytes:
        return [0]
    try:  # every value read whole, however long (the header is at most 1 MiB)
        data = _lenient.decode(frame)
    except Exception:  # anything msgspec (or a nesting too deep) can raise: no id to read
        return [0]
    if not isinstance(data, dict):
        return [0]
    if data.get("k") == "rb" and isinstance(data.get("it"), list):
        ids = [_id_of(item) for item in data["it"]]
        return [i for i in ids if i] or [0]
    return [_id_of(data)]


def _id_of(data: object) -> int:
    value = data.get("id") if isinstance(data, dict) else None
    return value if type(value) is int and 0 <= value <= MAX_I64 else 0


_lenient: Final = msgspec.msgpack.Decoder()
_default_codec = Codec()
encode = _default_codec.encode
decode = _default_codec.decode
