"""A compound run as the mini-redirector host runs it, with or without the backend's chain
(``MiniRdr.create_with_related``), for tests that check a chain answers as its items alone."""

from __future__ import annotations

from typing import Any

import pytest

from rdbss.actors.minirdr_host import execute_compound
from rdbss.minirdrs.base import MiniRdr
from rdbss.wire import Compound, RxCompletion

#: an answer's status, information, result (less the SrvOpen number) and payload
Answer = tuple[int, int, Any, bytes | None]


def run_compound(minirdr: MiniRdr, cx: Compound, *, chained: bool) -> list[Answer]:
    """Run ``cx`` (its items numbered 1, 2...) ``chained`` or item by item; every item's
    answer, in order. Fails when the run leaves a SrvOpen in the backend's OpenTable."""
    for number, ctx in enumerate(cx.items, 1):
        ctx.request_id = number
    answers: list[tuple[RxCompletion, Any]] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        if not chained:
            monkeypatch.setattr(minirdr, "create_with_related", lambda *a: None)
        execute_compound(minirdr, cx, lambda done, payload: answers.append((done, payload)))
    assert [done.request_id for done, _ in answers] == list(range(1, len(cx.items) + 1))
    assert len(minirdr._opens) == 0, "a SrvOpen was left in the OpenTable"
    return answers_of(answers)


def answers_of(answers: list[tuple[RxCompletion, Any]]) -> list[Answer]:
    """Each completion (and its payload) as an ``Answer``."""
    out: list[Answer] = []
    for done, payload in answers:
        result = done.result
        if isinstance(result, dict):
            result = {k: v for k, v in result.items() if k != "srv_open"}
        out.append(
            (done.status, done.information, result, None if payload is None else bytes(payload))
        )
    return out
