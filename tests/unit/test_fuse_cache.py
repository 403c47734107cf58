"""The mount's name and attribute cache (rdbss.fuse_cache), with a clock the test moves, and its
pool of clients (rdbss.fuse_ops)."""

from __future__ import annotations

import threading
from typing import Any

from rdbss.fuse_cache import AttrCache, chown_allowed, parent_of
from rdbss.fuse_ops import ClientPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_trusted_for_ttl_seconds() -> None:
    clock = Clock()
    cache = AttrCache(1.0, clock=clock)
    cache.put("/a", {"st_size": 1})
    clock.now += 0.9
    assert cache.get("/a") == {"st_size": 1}
    clock.now += 0.2
    assert cache.get("/a") is None
    assert AttrCache(0.0, clock=clock).get("/a") is None  # ttl 0 keeps nothing


def test_a_listing_answers_lookups_and_misses_in_its_folder() -> None:
    clock = Clock()
    cache = AttrCache(1.0, clock=clock)
    cache.put_listing("/d", {"x": {"st_size": 1}, "busy": {"st_size": 0}}, busy=["busy"])
    assert cache.get("/d/x") == {"st_size": 1}
    assert cache.get("/d/busy") is None  # open for writing: asked again
    assert not cache.known_missing("/d/busy")
    assert cache.known_missing("/d/y")
    assert not cache.known_missing("/e/y")
    cache.put_listing("/", {"d": {}})
    assert not cache.known_missing("/")  # the root is in no listing, and always there
    clock.now += 1.5
    assert not cache.known_missing("/d/y")


def test_changes_through_the_mount_forget_the_path_its_folder_and_its_tree() -> None:
    cache = AttrCache(10.0, clock=Clock())
    cache.put_listing("/d", {"x": {}, "sub": {}})
    cache.put_listing("/d/sub", {"f": {}})
    cache.put("/d", {})
    cache.forget("/d/new")  # a create: the folder's listing no longer tells what is missing
    assert not cache.known_missing("/d/y") and cache.get("/d") is None
    assert cache.get("/d/x") == {}
    cache.forget_tree("/d/sub")  # a rename or rmdir of a folder
    assert cache.get("/d/sub/f") is None and not cache.known_missing("/d/sub/g")


def test_repeated_lookups_in_a_folder_ask_for_one_listing() -> None:
    clock = Clock()
    cache = AttrCache(1.0, clock=clock)
    assert not cache.note_lookup("/d/a")
    cache.put("/d/a", None)
    assert cache.known_missing("/d/a")
    assert cache.note_lookup("/d/b")  # the second unknown name: list /d
    cache.put_listing("/d", {"c": {}})
    assert not cache.note_lookup("/d/e")  # listed already
    clock.now += 2
    assert not cache.note_lookup("/d/f")  # the earlier lookups are old


def test_chown_to_the_users_own_ids_only() -> None:
    assert chown_allowed(-1, -1, 1000, 1000)
    assert chown_allowed(1000, 1000, 1000, 1000)
    assert chown_allowed(-1, 1000, 1000, 1000)
    assert not chown_allowed(0, -1, 1000, 1000)
    assert not chown_allowed(-1, 0, 1000, 1000)
    assert parent_of("/a/b") == "/a" and parent_of("/a") == "/"


def test_the_client_pool_lends_up_to_its_size_and_reuses() -> None:
    made: list[object] = []

    def make() -> Any:
        made.append(object())
        return made[-1]

    pool = ClientPool(make, size=2)
    with pool.lease() as a, pool.lease() as b:
        assert a is not b and len(made) == 2
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(pool._take()))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive()  # all lent: the third waits
    waiter.join(5)
    assert got and got[0] in made and len(made) == 2  # a returned one, no new client
    assert pool.close() == made


def test_a_name_made_through_the_mount_joins_its_folders_listing() -> None:
    clock = Clock()
    cache = AttrCache(1.0, clock=clock)
    cache.put("/d", {"st_size": 0})
    cache.put_listing("/d", {"x": {"st_size": 1}})
    assert cache.known_missing("/d/new")
    cache.added("/d/new", {"st_size": 0})
    assert cache.get("/d/new") == {"st_size": 0}
    assert not cache.known_missing("/d/new")
    assert cache.get("/d") is None  # the folder's own times changed
    cache.forget_attrs("/d/new")  # written to: its size is stale, not its folder's names
    assert cache.get("/d/new") is None
    assert not cache.known_missing("/d/new") and cache.known_missing("/d/other")
    cache.put_listing("/e", {})  # a new folder: every name in it is missing
    assert cache.known_missing("/e/a")
    clock.now += 1.1
    assert not cache.known_missing("/d/other")  # the listing's window has passed
    cache.added("/d/late", {"st_size": 0})  # no listing to join: none is made up
    assert not cache.known_missing("/d/other")


def test_a_removal_or_rename_through_the_mount_changes_the_listings_by_its_names() -> None:
    clock = Clock()
    cache = AttrCache(1.0, clock=clock)
    cache.put_listing("/d", {"a": {"st_size": 1}, "b": {"st_size": 2}, "sub": {"st_size": 0}})
    cache.put_listing("/d/sub", {"x": {"st_size": 3}})
    cache.put_listing("/e", {})
    cache.removed("/d/a")
    assert cache.known_missing("/d/a") and cache.get("/d/b") == {"st_size": 2}
    cache.renamed("/d/b", "/e/b")
    assert cache.known_missing("/d/b")
    assert cache.get("/e/b") is None and not cache.known_missing("/e/b")  # there, asked anew
    cache.renamed("/d/sub", "/e/sub")
    assert cache.get("/d/sub/x") is None and not cache.known_missing("/d/sub/x")
    assert not cache.known_missing("/e/sub") and not cache.known_missing("/e/sub/x")
    cache.forget_tree("/e/b")  # a change that failed: the folder's names are not known
    assert not cache.known_missing("/e/zzz")


def test_an_answer_older_than_a_change_through_the_mount_teaches_nothing_it_touched() -> None:
    """A listing sent before another program's mkdir in its folder, answered after it, must
    not put back the folder as it was: what an answer says is kept only for what no change
    through the mount touched since its request went out."""
    cache = AttrCache(10.0, clock=Clock())
    since = cache.begin()  # a listing of /d goes out...
    cache.added("/d/new", {"st_size": 0})  # ...a mkdir there is answered first...
    cache.put_listing("/d", {"old": {"st_size": 1}}, since=since)  # ...then the listing
    assert not cache.known_missing("/d/new")
    assert not cache.known_missing("/d/other")  # the folder's names: not from that listing
    assert cache.get("/d/new") == {"st_size": 0}
    assert cache.get("/d/old") == {"st_size": 1}  # a child no change touched is kept
    later = cache.begin()  # a listing sent after the change is the truth
    cache.put_listing("/d", {"old": {}, "new": {}}, since=later)
    assert cache.known_missing("/d/other")


def test_a_stat_older_than_a_write_or_a_removal_is_not_kept() -> None:
    cache = AttrCache(10.0, clock=Clock())
    since = cache.begin()
    cache.forget_attrs("/f")  # a write through the mount
    cache.put("/f", {"st_size": 1}, since)
    assert cache.get("/f") is None
    since = cache.begin()
    cache.removed("/d")  # a folder removed: everything under it
    cache.put("/d/sub/f", {"st_size": 1}, since)
    cache.put_listing("/d/sub", {"f": {}}, since=since)
    assert cache.get("/d/sub/f") is None and not cache.known_missing("/d/sub/g")
    cache.put("/e/f", {"st_size": 2}, since)  # elsewhere: nothing changed there
    assert cache.get("/e/f") == {"st_size": 2}


def test_a_rename_makes_older_answers_of_both_names_stale() -> None:
    cache = AttrCache(10.0, clock=Clock())
    since = cache.begin()
    cache.renamed("/a/x.lock", "/a/x")
    cache.put("/a/x", None, since)  # a stat that missed the new name
    cache.put_listing("/a", {"x.lock": {}}, since=since)
    assert not cache.known_missing("/a/x")
    assert cache.get("/a/x.lock") is None


def test_too_many_changes_make_every_older_answer_stale() -> None:
    cache = AttrCache(10.0, clock=Clock())
    since = cache.begin()
    for i in range(5000):  # past what the cache remembers (MAX_CHANGES)
        cache.forget_attrs(f"/many/f{i}")
    cache.put("/elsewhere", {"st_size": 3}, since)
    assert cache.get("/elsewhere") is None
    cache.put("/elsewhere", {"st_size": 3}, cache.begin())
    assert cache.get("/elsewhere") == {"st_size": 3}


def test_a_listing_older_than_a_flush_reaches_the_kernel_with_the_flushed_size() -> None:
    """A listing sent while a file's writes were still going out, answered after its flush:
    the cache keeps the flush's size, and what the listing hands on (to the kernel) has it
    too; a name removed through the mount since is left out."""
    cache = AttrCache(10.0, clock=Clock())
    since = cache.begin()
    cache.changed("/d/f", {"st_size": 70000})  # the flush's query
    cache.removed("/d/gone")
    listed = {"f": {"st_size": 0}, "gone": {"st_size": 5}, "other": {"st_size": 1}}
    assert cache.put_listing("/d", listed, since=since) == {
        "f": {"st_size": 70000},
        "other": {"st_size": 1},
    }
    assert cache.get("/d/f") == {"st_size": 70000}
    later = cache.begin()
    assert cache.put_listing("/d", listed, since=later) == listed  # nothing changed since
