"""The attribute cache's rules alone: what fills it, how long an entry answers, the LRU bound,
and which changes drop which entries (rdbss/model/attrcache.py)."""

from __future__ import annotations

from typing import Any

from rdbss.model.attrcache import (
    AttrCache,
    answers_open,
    changes_attributes,
    may_cache_attributes,
    parent_of,
)
from rdbss.model.buffering import grant_for
from rdbss.wire.constants import CreateOptions, IrpMj

NR = r"\\srv\share"


def info(size: int, **more: Any) -> dict[str, Any]:
    return {"size": size, "last_write_time": 1000 + size, "attributes": 0x80, **more}


def cache_with(*paths: str, max_entries: int = 100, max_age: float = 30.0) -> AttrCache:
    cache = AttrCache(max_entries, max_age)
    for n, path in enumerate(paths):
        assert cache.fill(NR, path, info(n), 0.0, cache.epoch(NR))
    return cache


def test_only_the_exclusive_grant_keeps_attributes() -> None:
    assert may_cache_attributes(grant_for("exclusive"))
    assert not may_cache_attributes(grant_for("handles"))
    assert not may_cache_attributes(grant_for("off"))


def test_a_fill_answers_lookups_until_it_is_too_old() -> None:
    cache = AttrCache(10, 30.0)
    assert cache.lookup(NR, "a.txt", 0.0) is None
    assert cache.fill(NR, "a.txt", info(5, srv_open=7, fobx=3), 0.0, cache.epoch(NR))
    got = cache.lookup(NR, "a.txt", 29.0)
    assert got is not None
    assert got["size"] == 5 and got["name"] == "a.txt"
    assert "srv_open" not in got and "fobx" not in got  # per answer, not per file
    got["size"] = 99  # a copy: the caller may change it
    assert (cache.lookup(NR, "a.txt", 29.5) or {})["size"] == 5
    assert cache.lookup(NR, "a.txt", 30.5) is None  # older than max_age
    assert cache.lookup(NR, "a.txt", 1.0) is None  # and gone
    assert cache.stats.hits == 2 and cache.stats.expired == 1


def test_keys_ignore_case_but_a_lookup_needs_the_spelling_learned() -> None:
    cache = cache_with("Dir\\A.txt")
    assert cache.lookup(NR, "Dir\\A.txt", 0.0) is not None
    assert cache.lookup(NR, "dir\\a.txt", 0.0) is None  # maybe another file on the server
    assert cache.lookup(NR.upper(), "Dir\\A.txt", 0.0) is not None  # server names: any case
    cache.changed(NR, "DIR\\a.TXT")  # but every spelling invalidates
    assert cache.lookup(NR, "Dir\\A.txt", 0.0) is None


def test_zero_entries_or_zero_age_turns_it_off() -> None:
    for cache in (AttrCache(0, 30.0), AttrCache(10, 0.0)):
        assert not cache.enabled
        assert not cache.fill(NR, "a", info(1), 0.0, cache.epoch(NR))
        assert cache.fill_listing(NR, "", [info(1, name="a")], 0.0, cache.epoch(NR)) == 0
        assert cache.lookup(NR, "a", 0.0) is None


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = cache_with("a", "b", "c", max_entries=3)
    assert cache.lookup(NR, "a", 0.0) is not None  # a is now the most recent
    cache.fill(NR, "d", info(4), 0.0, cache.epoch(NR))
    assert len(cache) == 3
    assert cache.lookup(NR, "b", 0.0) is None
    assert all(cache.lookup(NR, p, 0.0) is not None for p in ("a", "c", "d"))


def test_a_listing_fills_its_entries_under_the_folder() -> None:
    cache = AttrCache(100, 30.0)
    entries = [info(1, name="x", file_index=0), info(2, name="y", file_index=1)]
    entries += [info(0, name="."), info(0, name=".."), info(3, name="open.txt")]
    kept = cache.fill_listing(
        NR, "d", entries, 0.0, cache.epoch(NR), skip=frozenset({"d\\open.txt"})
    )
    assert kept == 2
    x = cache.lookup(NR, "d\\x", 0.0)
    assert x is not None and x["size"] == 1 and x["name"] == "d\\x" and "file_index" not in x
    assert cache.lookup(NR, "d\\open.txt", 0.0) is None  # the core may be changing it
    assert cache.lookup(NR, "d\\.", 0.0) is None
    cache.fill_listing(NR, "", [info(9, name="top")], 0.0, cache.epoch(NR))
    assert cache.lookup(NR, "top", 0.0) is not None


def test_a_fill_after_a_change_in_its_netroot_keeps_nothing() -> None:
    cache = AttrCache(100, 30.0)
    sent = cache.epoch(NR)  # a listing leaves...
    cache.changed(NR, "d\\x")  # ...a write lands before its answer
    assert cache.fill_listing(NR, "d", [info(1, name="x")], 0.0, sent) == 0
    assert not cache.fill(NR, "d\\x", info(1), 0.0, sent)
    assert cache.lookup(NR, "d\\x", 0.0) is None
    assert cache.stats.stale_fills == 2
    other = r"\\srv\other"
    assert cache.fill(other, "d\\x", info(1), 0.0, cache.epoch(other))  # another NetRoot: fine


def test_a_change_drops_the_file_only() -> None:
    cache = cache_with("d", "d\\a", "d\\b")
    cache.changed(NR, "d\\a")  # a write, a truncation, new times
    assert cache.lookup(NR, "d\\a", 0.0) is None
    assert cache.lookup(NR, "d\\b", 0.0) is not None
    assert cache.lookup(NR, "d", 0.0) is not None


def test_a_create_drops_the_file_and_its_folder() -> None:
    cache = cache_with("d", "d\\a", "d\\b")
    cache.created(NR, "d\\a")
    assert cache.lookup(NR, "d\\a", 0.0) is None
    assert cache.lookup(NR, "d", 0.0) is None  # its times changed
    assert cache.lookup(NR, "d\\b", 0.0) is not None


def test_a_delete_drops_the_tree_and_the_parent() -> None:
    cache = cache_with("top", "top\\d", "top\\d\\a", "top\\d\\e\\f", "top\\dd", "other")
    cache.deleted(NR, "top\\d")
    for gone in ("top\\d", "top\\d\\a", "top\\d\\e\\f", "top"):
        assert cache.lookup(NR, gone, 0.0) is None, gone
    assert cache.lookup(NR, "top\\dd", 0.0) is not None  # a name that only starts alike
    assert cache.lookup(NR, "other", 0.0) is not None


def test_a_rename_drops_source_target_and_both_parents() -> None:
    cache = cache_with("a", "a\\x", "b", "b\\y", "b\\y\\z", "c")
    cache.renamed(NR, "a\\x", "b\\y")
    for gone in ("a", "a\\x", "b", "b\\y", "b\\y\\z"):
        assert cache.lookup(NR, gone, 0.0) is None, gone
    assert cache.lookup(NR, "c", 0.0) is not None


def test_a_lost_netroot_drops_all_its_entries_only() -> None:
    cache = cache_with("a", "b")
    other = r"\\srv\other"
    cache.fill(other, "a", info(1), 0.0, cache.epoch(other))
    cache.drop_net_root(NR.upper())
    assert cache.lookup(NR, "a", 0.0) is None and cache.lookup(NR, "b", 0.0) is None
    assert cache.lookup(other, "a", 0.0) is not None
    cache.clear()
    assert len(cache) == 0


def test_parent_of() -> None:
    assert parent_of("a\\b\\c") == "a\\b"
    assert parent_of("a") == ""


def test_which_requests_change_attributes() -> None:
    for major in (IrpMj.WRITE, IrpMj.SET_INFORMATION, IrpMj.SET_EA, IrpMj.FILE_SYSTEM_CONTROL):
        assert changes_attributes(major), major
    for major in (IrpMj.READ, IrpMj.QUERY_INFORMATION, IrpMj.DIRECTORY_CONTROL):
        assert not changes_attributes(major), major


def test_a_kept_entry_answers_only_opens_the_server_would_grant() -> None:
    folder, plain = {"directory": True}, {"directory": False}
    assert answers_open(folder, 0) and answers_open(plain, 0)
    assert answers_open(folder, CreateOptions.FILE_DIRECTORY_FILE)
    assert not answers_open(plain, CreateOptions.FILE_DIRECTORY_FILE)
    assert answers_open(plain, CreateOptions.FILE_NON_DIRECTORY_FILE)
    assert not answers_open(folder, CreateOptions.FILE_NON_DIRECTORY_FILE)
