"""The mount's inode numbers and what it tells the kernel to forget (rdbss.fuse_kernel), with
the kernel's calls recorded instead of made."""

from __future__ import annotations

import errno

import pytest

pytest.importorskip("pyfuse3")

from rdbss.fuse_kernel import ROOT, InodeTable, KernelCache


def test_a_path_keeps_its_inode_until_the_kernel_forgets_it() -> None:
    table = InodeTable()
    assert table.path(ROOT) == "/" and table.ino("/") == ROOT
    ino = table.number("/a")
    assert table.number("/a") == ino and table.path(ino) == "/a"
    table.ref(ino)
    table.ref(ino)
    table.forget(ino, 1)
    assert table.path(ino) == "/a"
    table.forget(ino, 1)
    assert table.path(ino) is None and table.ino("/a") is None
    assert table.number("/a") != ino  # never numbered again
    table.forget(ROOT, 5)
    assert table.path(ROOT) == "/"


def test_a_rename_moves_the_tree_and_a_removed_name_serves_its_open_inode() -> None:
    table = InodeTable()
    folder, inside, target = table.number("/d"), table.number("/d/f"), table.number("/e")
    for ino in (folder, inside, target):
        table.ref(ino)
    table.moved("/d", "/e")  # replaces /e
    assert table.path(folder) == "/e" and table.path(inside) == "/e/f"
    assert table.ino("/d") is None and table.ino("/e") == folder
    assert table.path(target) == "/e"  # the replaced one: the kernel still holds it
    table.removed("/e/f")
    assert table.ino("/e/f") is None and table.path(inside) == "/e/f"
    assert sorted(table.paths_under("/")) == ["/e"]


class Kernel:
    def __init__(self) -> None:
        self.inodes: list[int] = []
        self.entries: list[tuple[int, bytes]] = []

    def inval_inode(self, ino: int) -> None:
        if ino == 999:
            raise OSError(errno.ENOENT, "not known")
        self.inodes.append(ino)

    def inval_entry(self, parent: int, name: bytes) -> None:
        self.entries.append((parent, name))


def _cache(table: InodeTable, kernel: Kernel) -> KernelCache:
    return KernelCache(
        table,
        attr_timeout=30.0,
        entry_timeout=30.0,
        inval_inode=kernel.inval_inode,
        inval_entry=kernel.inval_entry,
    )


def test_a_change_drops_the_name_its_inode_and_its_folder() -> None:
    table, kernel = InodeTable(), Kernel()
    cache = _cache(table, kernel)
    folder, file = table.number("/d"), table.number("/d/f")
    cache.changed("/d/f")
    assert kernel.entries == [(folder, b"f")]
    assert kernel.inodes == [folder, file]
    cache.changed("/unknown/g")  # nothing the kernel was given: nothing to drop
    assert kernel.entries == [(folder, b"f")]
    cache.changed("/new")  # a name created in the root: its negative entry goes
    assert kernel.entries[-1] == (ROOT, b"new") and kernel.inodes[-1] == ROOT


def test_too_many_changes_drop_every_known_name() -> None:
    table, kernel = InodeTable(), Kernel()
    cache = _cache(table, kernel)
    for path in ("/a", "/a/b", "/c"):
        table.number(path)
    cache.changed_all()
    assert {name for _, name in kernel.entries} == {b"a", b"b", b"c"}
    assert ROOT in kernel.inodes


def test_pages_are_kept_only_while_the_file_is_unchanged() -> None:
    table, kernel = InodeTable(), Kernel()
    cache = _cache(table, kernel)
    ino = table.number("/f")
    v1 = {"st_size": 3, "st_mtime": 10}
    assert not cache.keep_pages(ino, v1)  # first open: the kernel has nothing to keep
    assert cache.keep_pages(ino, v1)  # unchanged: its pages are still the file
    assert not cache.keep_pages(ino, {"st_size": 3, "st_mtime": 11})  # changed since
    cache.forget_pages(ino)  # written through the mount, or a watch said it changed
    assert not cache.keep_pages(ino, {"st_size": 3, "st_mtime": 11})
    table.number("/g")
    cache.changed("/g")  # the kernel answering ENOENT is no error
