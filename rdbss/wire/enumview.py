"""Fast member access for the wire's enums on Python 3.11. Pure code.

On 3.11 every attribute read on an enum class (``IrpMj.READ``, ``S.STATUS_SUCCESS``) is
several times slower than a plain class attribute: ``EnumType`` defines ``__getattr__``, which
sends every lookup on every enum class through CPython's slow attribute hook, even for members
found at once (3.12 dropped it). The request path reads dozens of members per request, in each
process, so small requests in compounds are measurably faster without the hook
(``python -m benchmarks``).

``member_view(SomeEnum)`` answers a stand-in class whose metaclass has no ``__getattr__``: the
members (the enum's own member objects, so ``is``, ``==``, ``.name`` and msgspec are unchanged)
are plain class attributes, and calling, iterating, ``in``, ``[name]`` and ``isinstance`` are
handed to the enum. Modules bind the view under the enum's name; type checkers see the enum.
Where the interpreter has no such hook, ``member_view`` answers the enum itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum, EnumType
from typing import Any, TypeVar

E = TypeVar("E", bound=Enum)


class EnumView(type):
    """The metaclass of a view: everything but member access goes to the enum (``__enum__``)."""

    __enum__: type[Enum]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.__enum__(*args, **kwargs)

    def __iter__(cls) -> Iterator[Any]:
        return iter(cls.__enum__)

    def __reversed__(cls) -> Iterator[Any]:
        return reversed(cls.__enum__)

    def __len__(cls) -> int:
        return len(cls.__enum__)

    def __contains__(cls, value: object) -> bool:
        enum: Any = cls.__enum__
        return value in enum

    def __getitem__(cls, name: str) -> Any:
        return cls.__enum__[name]

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.__enum__)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.__enum__)

    def __repr__(cls) -> str:
        return repr(cls.__enum__)


#: the enum attributes a view copies as they are (besides the members)
_COPIED = ("__members__", "_member_map_", "_value2member_map_", "_member_names_", "__doc__")


def member_view(enum: type[E]) -> type[E]:
    """A view of ``enum`` with fast member access (see the module), or ``enum`` itself where
    the interpreter gives enums no slow attribute hook."""
    if "__getattr__" not in EnumType.__dict__:
        return enum
    namespace: dict[str, Any] = dict(enum.__members__)  # aliases too
    namespace.update({name: getattr(enum, name) for name in _COPIED})
    namespace.update(__enum__=enum, __module__=enum.__module__, __qualname__=enum.__qualname__)
    view: Any = EnumView(enum.__name__, (), namespace)
    return view  # type: ignore[no-any-return]
