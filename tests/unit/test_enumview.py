"""The enum views (rdbss.wire.enumview) stand in for the wire's enums: the same member objects,
and everything but member access handed to the enum."""

from __future__ import annotations

import enum
from enum import IntEnum, StrEnum

import pytest

from rdbss.wire.constants import IrpMj, LowIoOp, Routine
from rdbss.wire.enumview import member_view
from rdbss.wire.status import NtStatus

SLOW_HOOK = "__getattr__" in enum.EnumType.__dict__


class Color(IntEnum):
    RED = 1
    GREEN = 2
    CRIMSON = 1  # an alias


class Word(StrEnum):
    HELLO = "hello"


def test_a_view_answers_the_enum_s_own_members() -> None:
    view = member_view(Color)
    assert view.RED is Color.RED and view.CRIMSON is Color.RED
    assert view(2) is Color.GREEN and view["GREEN"] is Color.GREEN
    assert list(view) == [Color.RED, Color.GREEN] and len(view) == 2
    assert Color.RED in view and isinstance(Color.RED, view) and not isinstance(1, view)
    assert view.__members__ == Color.__members__ and view._value2member_map_[2] is Color.GREEN
    assert view.__name__ == "Color" and repr(view) == repr(Color)
    with pytest.raises(ValueError):
        view(9)
    with pytest.raises(AttributeError):
        view.BLUE  # noqa: B018
    assert member_view(Word).HELLO == "hello" and str(member_view(Word).HELLO) == "hello"


@pytest.mark.skipif(not SLOW_HOOK, reason="this Python's enums have no slow attribute hook")
def test_the_wire_enums_are_views_where_enums_are_slow() -> None:
    for view in (IrpMj, LowIoOp, Routine, NtStatus):
        assert type(view).__name__ == "EnumView"
        assert "__getattr__" not in type(view).__dict__  # the point: no slow hook
    assert IrpMj.READ == 3 and IrpMj.READ.name == "READ" and type(IrpMj.READ).__name__ == "IrpMj"
    assert NtStatus(0) is NtStatus.STATUS_SUCCESS and NtStatus.STATUS_SUCCESS.is_success is True
