"""Windows file name wildcards, as FsRtlIsNameInExpression matches them ([MS-FSA] 2.1.4.4).

The expression may hold:

- ``*`` any run of characters, including none;
- ``?`` exactly one character;
- ``<`` (DOS_STAR) any run of characters up to the name's final period: it never crosses the
  final period, though it may end by consuming it;
- ``>`` (DOS_QM) one character; at a period or at the end of the name it matches nothing, so a
  run of them matches up to that many characters before a period or the end;
- ``"`` (DOS_DOT) a period, or nothing at the end of the name.

Every other character matches itself, ignoring case unless asked not to. An empty name matches
only an empty expression. Pure code: no file system access.

The matcher runs the expression as a set of positions (a nondeterministic automaton), so it is
linear in the name for each expression position and never recurses.
"""

from __future__ import annotations

STAR = "*"
QM = "?"
DOS_STAR = "<"
DOS_QM = ">"
DOS_DOT = '"'

WILDCARDS = frozenset((STAR, QM, DOS_STAR, DOS_QM, DOS_DOT))


def has_wildcards(expression: str) -> bool:
    """True if ``expression`` holds any character that is not matched literally."""
    return any(ch in WILDCARDS for ch in expression)


def _fold(text: str) -> str:
    """Upper-case one character at a time, keeping a character whose upper case is longer (the
    upcase table Windows uses maps every character to exactly one)."""
    out = []
    for ch in text:
        upper = ch.upper()
        out.append(upper if len(upper) == 1 else ch)
    return "".join(out)


def _skip_empty(expression: str, states: set[int], char: str | None) -> set[int]:
    """Add the positions reachable without consuming ``char`` (None: the end of the name)."""
    stack = list(states)
    closure = set(states)
    end = len(expression)
    while stack:
        pos = stack.pop()
        if pos == end:
            continue
        op = expression[pos]
        if (
            op in (STAR, DOS_STAR)
            or (op == DOS_QM and char in (None, "."))
            or (op == DOS_DOT and char is None)
        ) and pos + 1 not in closure:
            closure.add(pos + 1)
            stack.append(pos + 1)
    return closure


def _consume(expression: str, states: set[int], char: str, is_last_period: bool) -> set[int]:
    """The positions after consuming ``char`` from each position in ``states``."""
    after: set[int] = set()
    end = len(expression)
    for pos in states:
        if pos == end:
            continue
        op = expression[pos]
        if op == STAR:
            after.add(pos)
        elif op == DOS_STAR:
            # Never past the final period; consuming it ends the DOS_STAR.
            after.add(pos + 1 if is_last_period else pos)
        elif op == DOS_QM:
            if char != ".":
                after.add(pos + 1)
        elif op == DOS_DOT:
            if char == ".":
                after.add(pos + 1)
        elif op in (QM, char):
            after.add(pos + 1)
    return after


def is_name_in_expression(expression: str, name: str, *, ignore_case: bool = True) -> bool:
    """Whether ``name`` (one file name, no path) matches the wildcard ``expression``."""
    if not name:
        return not expression
    if ignore_case:
        expression = _fold(expression)
        name = _fold(name)
    if expression == STAR:
        return True
    if not has_wildcards(expression):
        return expression == name
    last_period = name.rfind(".")
    states = {0}
    for index, char in enumerate(name):
        states = _consume(
            expression, _skip_empty(expression, states, char), char, index == last_period
        )
        if not states:
            return False
    return len(expression) in _skip_empty(expression, states, None)
