"""Metric labels have bounded value sets: free-text reasons and unnamed NTSTATUS codes are
mapped onto a fixed list."""

from __future__ import annotations

from rdbss.actors.metrics import DOWN_REASONS, down_reason, status_label


def test_peer_down_reasons_are_a_fixed_set() -> None:
    assert down_reason("process exited with code -9") == "exited"
    assert down_reason("stopped answering heartbeats") == "silent"
    assert down_reason("registered again (restarted)") == "restarted"
    assert down_reason("configuration reloaded") == "reloaded"
    assert down_reason("the process is stopping") == "stopping"
    assert down_reason("unreachable") == "unreachable"
    assert down_reason("something new and long with a path /x/y") == "other"
    assert set(DOWN_REASONS) | {"other"} == {
        "exited",
        "silent",
        "restarted",
        "reloaded",
        "stopping",
        "unreachable",
        "other",
    }


def test_status_labels_are_names_or_unknown() -> None:
    assert status_label("STATUS_SUCCESS") == "STATUS_SUCCESS"
    assert status_label("0xC0DE1234") == "unknown"
