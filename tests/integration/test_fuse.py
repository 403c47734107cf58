"""The FUSE front end (rdbss.fuse_mount) against a real daemon: the share is mounted by a child
process and used with ordinary shell tools; every result is checked in the folder behind the
share. Needs /dev/fuse and fusermount3 (scripts/install-test-deps.sh); skipped without them
unless RDBSS_REQUIRE_SERVERS is set."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.fuse_handles import LIST_BATCH
from tests.conformance.backend import BackendSetup
from tests.daemon import running_daemon
from tests.mounts import Mount, fuse_missing, mount_share
from tests.servers.fixtures import require_or_skip


@pytest.fixture(scope="module")
def mounted() -> Iterator[Mount]:
    require_or_skip(fuse_missing(), "FUSE")
    with running_daemon() as daemon, mount_share(daemon, daemon.share) as mount:
        yield mount


def test_mount_shows_up_in_proc_mounts(mounted: Mount) -> None:
    lines = Path("/proc/mounts").read_text().splitlines()
    mine = [line for line in lines if line.split()[1] == str(mounted.path)]
    assert mine, lines
    device, _, kind = mine[0].split()[:3]
    assert device == "rdbss://local/data"
    assert kind == "fuse.rdbss"
    df = mounted.sh("df -P .").stdout.splitlines()[-1].split()
    assert int(df[1]) > 0  # statfs answered with the share's volume sizes


def test_echo_cat_append_and_ls(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("echo hi > f.txt")  # open(O_CREAT|O_TRUNC) + write at offset 0: no "Illegal seek"
    assert (share / "f.txt").read_bytes() == b"hi\n"
    assert mounted.sh("cat f.txt").stdout == "hi\n"
    mounted.sh("echo more >> f.txt")
    assert (share / "f.txt").read_bytes() == b"hi\nmore\n"
    mounted.sh("echo new > f.txt")  # O_TRUNC on an existing file
    assert (share / "f.txt").read_bytes() == b"new\n"

    (share / "from-disk.txt").write_bytes(b"12345")
    listing = mounted.sh("ls -l").stdout
    rows = {line.split()[-1]: line.split() for line in listing.splitlines()[1:]}
    assert rows["f.txt"][0].startswith("-rw") and rows["f.txt"][4] == "4"
    assert rows["from-disk.txt"][4] == "5"
    assert mounted.sh("stat -c %s from-disk.txt").stdout.strip() == "5"

    missing = mounted.sh("cat no-such-file", check=False)
    assert missing.returncode != 0 and "No such file or directory" in missing.stderr


def test_cp_of_a_few_mib_and_back(mounted: Mount, tmp_path: Path) -> None:
    share = mounted.daemon.share_dir
    original = tmp_path / "big.bin"
    data = os.urandom(5 * (1 << 20) + 4321)
    original.write_bytes(data)
    mounted.sh(f"cp {original} big.bin && cmp {original} big.bin")
    assert (share / "big.bin").read_bytes() == data
    back = tmp_path / "back.bin"
    mounted.sh(f"cp big.bin {back}")
    assert back.read_bytes() == data
    mounted.sh("dd if=big.bin of=part.bin bs=4096 skip=100 count=3 status=none")
    assert (share / "part.bin").read_bytes() == data[100 * 4096 : 103 * 4096]
    mounted.sh("truncate -s 1000 part.bin")
    assert (share / "part.bin").read_bytes() == data[100 * 4096 : 100 * 4096 + 1000]
    mounted.sh("rm big.bin part.bin")
    assert not (share / "big.bin").exists() and not (share / "part.bin").exists()


def test_mv_rm_mkdir_rmdir(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("mkdir -p a/b && echo x > a/b/c.txt")
    assert (share / "a" / "b" / "c.txt").read_bytes() == b"x\n"
    busy = mounted.sh("rmdir a/b", check=False)
    assert busy.returncode != 0 and "Directory not empty" in busy.stderr
    mounted.sh("mv a/b/c.txt a/d.txt")
    assert (share / "a" / "d.txt").read_bytes() == b"x\n"
    assert not (share / "a" / "b" / "c.txt").exists()
    mounted.sh("echo y > a/e.txt && mv a/e.txt a/d.txt")  # replaces the target
    assert (share / "a" / "d.txt").read_bytes() == b"y\n"
    mounted.sh("mv a/b a/renamed")
    assert (share / "a" / "renamed").is_dir()
    mounted.sh("rmdir a/renamed && rm a/d.txt && rmdir a")
    assert not (share / "a").exists()
    exists = mounted.sh("mkdir f2 && mkdir f2", check=False)
    assert exists.returncode != 0 and "File exists" in exists.stderr
    mounted.sh("rmdir f2")


def test_touch_sets_times_on_the_share(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("touch -d '2001-02-03 04:05:06 UTC' t.txt")
    assert (share / "t.txt").exists()
    assert int(os.stat(share / "t.txt").st_mtime) == 981173106
    assert mounted.sh("stat -c %Y t.txt").stdout.strip() == "981173106"
    before = time.time() - 5
    mounted.sh("touch t.txt")  # UTIME_NOW
    assert os.stat(share / "t.txt").st_mtime >= before
    mounted.sh("chmod a-w t.txt")
    assert not os.stat(share / "t.txt").st_mode & 0o200
    mounted.sh("chmod u+w t.txt && rm t.txt")
    assert not (share / "t.txt").exists()


# ---------------------------------------------------------------------------------------------
# every backend: close-to-open, tools' round trips, changes made on the server
# ---------------------------------------------------------------------------------------------
BACKENDS = ["local", "smb", "sftp", "webdav"]
#: WebDAV keeps no times a client sets (getlastmodified is protected, RFC 4918 15.7)
SETS_TIMES = {"local", "smb", "sftp"}
KEEPS_MODES = {"local", "sftp"}  # backends that store POSIX permission bits
ATTR_TIMEOUT_S = 1.0  # rdbss.fuse_mount's default: a change on the server is seen within it
BIG = 8 << 20


@dataclass
class Backed:
    mount: Mount
    kind: str
    setup: BackendSetup

    def host(self, rel: str) -> Path:
        assert self.setup.host_path is not None
        return self.setup.host_path(rel.replace("/", "\\"))


@pytest.fixture(scope="module", params=BACKENDS)
def backed(request: pytest.FixtureRequest) -> Iterator[Backed]:
    require_or_skip(fuse_missing(), "FUSE")
    kind: str = request.param
    module = importlib.import_module(f"tests.conformance.backend_{kind}")
    base = Path(tempfile.mkdtemp(prefix=f"rdfb-{kind}-", dir="/tmp"))
    try:
        with (
            module.backend(base) as setup,
            running_daemon(extra_config=setup.config) as daemon,
            mount_share(daemon, setup.root) as mount,
        ):
            yield Backed(mount, kind, setup)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _tree(folder: Path) -> None:
    """A small tree with old times and an executable script."""
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"a" * 5000)
    (folder / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "sub" / "b.txt").write_bytes(b"b" * 70000)
    for i, path in enumerate([folder / "a.txt", folder / "run.sh", folder / "sub" / "b.txt"]):
        os.utime(path, ns=(981173106_000000000 + i, 981173106_000000000 + i * 1000))


def test_close_then_read_by_another_client(backed: Backed) -> None:
    """When close(2) returns, a reader that is not the mount sees the whole file."""
    target = backed.mount.path / "big.bin"
    for round_ in range(5):
        data = os.urandom(BIG - round_ * 4099)
        with open(target, "wb") as f:
            f.write(data)
        back = backed.setup.read_back("big.bin")
        assert len(back) == len(data), f"round {round_}: the server has {len(back)} bytes"
        assert back == data, f"round {round_}: the server's copy differs"
    backed.mount.sh("rm big.bin")


def test_cp_a_and_tar_keep_times_and_modes(backed: Backed, tmp_path: Path) -> None:
    if backed.kind not in SETS_TIMES:
        pytest.skip("WebDAV servers keep no times a client sets")
    _tree(tmp_path / "src")
    tarball = tmp_path / "src.tar"
    subprocess.run(["tar", "cf", str(tarball), "-C", str(tmp_path), "src"], check=True)
    backed.mount.sh(f"cp -a {tmp_path / 'src'} cpa && mkdir tarx && tar xf {tarball} -C tarx")
    for top in ("cpa", "tarx/src"):
        for rel in ["a.txt", "run.sh", "sub/b.txt"]:
            want = 981173106  # whole seconds: every backend keeps those
            seen = backed.mount.sh(f"stat -c %Y {top}/{rel}").stdout.strip()
            assert seen == str(want), f"{top}/{rel}: mtime {seen} through the mount"
            assert int(os.stat(backed.host(f"{top}/{rel}")).st_mtime) == want, f"{top}/{rel}"
        if backed.kind in KEEPS_MODES:
            assert os.stat(backed.host(f"{top}/run.sh")).st_mode & 0o777 == 0o755
            assert backed.mount.sh(f"./{top}/run.sh").stdout == "ran\n"
    backed.mount.sh("rm -rf cpa tarx")


def test_rsync_twice_has_nothing_to_do_the_second_time(backed: Backed, tmp_path: Path) -> None:
    if backed.kind not in SETS_TIMES:
        pytest.skip("WebDAV servers keep no times a client sets")
    if shutil.which("rsync") is None:
        require_or_skip(["rsync"], "rsync")
    _tree(tmp_path / "src")
    # a share without POSIX modes shows 0644/0755 whatever rsync asks: -p would always differ
    rsync = "rsync -a" if backed.kind in KEEPS_MODES else "rsync -a --no-perms"
    backed.mount.sh(f"{rsync} {tmp_path / 'src'}/ rs/")
    again = backed.mount.sh(f"{rsync} -i {tmp_path / 'src'}/ rs/")
    assert again.stdout == "", f"the second rsync copied again:\n{again.stdout}"
    backed.mount.sh("rm -rf rs")


def test_git_gc_twice_then_rm_rf(backed: Backed) -> None:
    git = "git -c user.name=t -c user.email=t@example.org -c gc.autoDetach=false"
    backed.mount.sh(
        f"mkdir repo && cd repo && git init -q && echo one > f && git add f && "
        f"{git} commit -qm one && {git} gc -q && echo two > f && {git} commit -qam two && "
        f"{git} gc -q && git log --oneline | wc -l"
    )
    packs = backed.mount.sh("ls repo/.git/objects/pack/*.pack").stdout.split()
    assert len(packs) == 1, f"the second gc left the old pack behind: {packs}"
    backed.mount.sh("rm -rf repo")
    assert not backed.host("repo").exists()


def test_a_change_on_the_server_is_seen_in_time(backed: Backed) -> None:
    backed.setup.write_direct("changed.txt", b"v1")
    seen = backed.mount.path / "changed.txt"
    made_at = time.monotonic()
    while not seen.exists():  # a listing of the folder may be trusted for its window
        assert time.monotonic() < made_at + ATTR_TIMEOUT_S + 2.0, "the new name was not seen"
        time.sleep(0.05)
    assert seen.stat().st_size == 2
    backed.setup.write_direct("changed.txt", b"version two")
    changed_at = time.monotonic()
    deadline = changed_at + ATTR_TIMEOUT_S + 2.0  # the documented time, and slack for 2 cores
    while seen.stat().st_size != len(b"version two"):
        assert time.monotonic() < deadline, "the new size was not seen in time"
        time.sleep(0.05)
    assert seen.read_bytes() == b"version two"
    seen.unlink()


def test_a_bad_mount_option_is_refused_before_mounting(mounted: Mount, tmp_path: Path) -> None:
    done = mounted.daemon.cli("mount", mounted.daemon.share, str(tmp_path), "-o", "attr_timeout=x")
    assert done.returncode != 0
    assert b"STATUS_INVALID_PARAMETER" in done.stderr and b"attr_timeout=x" in done.stderr
    assert not os.path.ismount(tmp_path)


#: ``-o notify``: the watch reports a change made on the server within the backend's notify
#: latency (local and SMB at once, SFTP and WebDAV at their next look, ``notify_interval`` 1 s),
#: while the caches would have kept the old state for ``attr_timeout``.
NOTIFY_DEADLINE_S = 10.0
LONG_TTL = "notify,attr_timeout=300"


def _until(check: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < NOTIFY_DEADLINE_S, f"{what}: not in time"
        time.sleep(0.05)
    return time.monotonic() - started


def test_notify_drops_what_changed_on_the_server(backed: Backed) -> None:
    """With a 300 s cache, a file changed on the server (not through the mount) and a name
    created in a listed folder are seen at once: the watch invalidates the kernel's names,
    attributes and pages, and the mount's own cache."""
    backed.host("nt").mkdir(exist_ok=True)
    backed.setup.write_direct("nt/seen.txt", b"v1")
    with mount_share(backed.mount.daemon, backed.setup.root, LONG_TTL) as mount:
        time.sleep(1.0)  # the watch is armed (its first round)
        seen = mount.path / "nt" / "seen.txt"
        assert seen.read_bytes() == b"v1"  # in the kernel's page cache now
        assert "new.txt" not in mount.sh("ls nt").stdout.split()  # a cached listing
        missing = mount.sh("cat nt/new.txt", check=False)  # a name known to be missing
        assert missing.returncode != 0

        backed.setup.write_direct("nt/seen.txt", b"version two")
        _until(lambda: seen.stat().st_size == len(b"version two"), "the new size")
        assert seen.read_bytes() == b"version two"

        backed.setup.write_direct("nt/new.txt", b"created on the server")
        _until(lambda: "new.txt" in mount.sh("ls nt").stdout.split(), "the new name")
        assert mount.sh("cat nt/new.txt").stdout == "created on the server"
    backed.mount.sh("rm -rf nt")


def test_without_notify_the_cache_keeps_its_window(backed: Backed) -> None:
    """The same change without ``notify``: a name known to be missing stays missing for the
    cache's window (what ``notify`` is for), and is there once the window has passed."""
    if backed.kind != "local":
        pytest.skip("one backend shows the rule")
    with mount_share(backed.mount.daemon, backed.setup.root, "attr_timeout=3") as mount:
        mount.sh("mkdir -p nn && ls nn")
        backed.setup.write_direct("nn/late.txt", b"x")
        assert mount.sh("cat nn/late.txt", check=False).returncode != 0
        time.sleep(3.5)
        assert mount.sh("cat nn/late.txt").stdout == "x"
    backed.mount.sh("rm -rf nn")


def test_an_open_keeps_pages_only_of_an_unchanged_file(backed: Backed) -> None:
    """Close-to-open with the kernel's page cache kept across opens (``keep_cache``): a file
    changed on the server with the same size but another time is read anew by the next open."""
    host = backed.host("same.txt")
    backed.setup.write_direct("same.txt", b"A" * 4096)
    seen = backed.mount.path / "same.txt"
    assert seen.read_bytes() == b"A" * 4096
    assert seen.read_bytes() == b"A" * 4096  # its pages kept: the same bytes
    before = os.stat(host)
    backed.setup.write_direct("same.txt", b"B" * 4096)
    os.utime(host, ns=(before.st_atime_ns, before.st_mtime_ns + 10 * 10**9))
    deadline = time.monotonic() + ATTR_TIMEOUT_S + 2.0
    while seen.read_bytes() != b"B" * 4096:
        assert time.monotonic() < deadline, "an open kept the pages of a changed file"
        time.sleep(0.05)
    seen.unlink()


# ---------------------------------------------------------------------------------------------
# daemon requests per file: what the mount asks the daemon for each tool's work
# ---------------------------------------------------------------------------------------------
FILES = 30
#: The most daemon requests each tool's work over FILES small files may cost: a listing is one
#: compound; a small file's open reads it whole and closes it in one compound; a written file
#: costs its create, one compound of its last writes, flush and stat, and its close; a delete is
#: one compound. The slack is for the folders' own lookups. (Before the compounds: 6, 66, 66,
#: 248 and 73.)
REQUEST_BOUNDS = {
    "ls -lR": 6,
    "cp -r": FILES + 8,
    "read": FILES + 8,
    "write": 3 * FILES + 12,
    "rm -rf": FILES + 8,
}


def _requests_answered(mount: Mount) -> int:
    """How many client requests the daemon has answered, this status request not counted."""
    with mount.daemon.client() as client:
        return int(client.status()["completed"])


def test_daemon_requests_per_file(backed: Backed, tmp_path: Path) -> None:
    """ls -lR, cp -r, reads, writes and deletes of small files ask the daemon about once per
    file (the core's status counts every request it answers), and every byte arrives."""
    for folder in ("rq-ls", "rq-cp", "rq-rd", "rq-rm"):
        backed.host(folder).mkdir()
        for i in range(FILES):
            backed.setup.write_direct(f"{folder}\\f{i}", b"%d" % i * 1000)
    local = tmp_path / "local"
    local.mkdir()
    for i in range(FILES):
        (local / f"f{i}").write_bytes(b"w%d" % i * 1000)
    tools = {
        "ls -lR": "ls -lR rq-ls > /dev/null",
        "cp -r": f"cp -r rq-cp {tmp_path / 'copied'}",
        "read": "for f in rq-rd/*; do cat $f > /dev/null; done",
        "write": f"mkdir rq-wr && cp {local}/* rq-wr/",
        "rm -rf": "rm -rf rq-rm",
    }
    counted = {}
    for tool, script in tools.items():
        time.sleep(ATTR_TIMEOUT_S + 0.2)  # nothing of an earlier step is cached any more
        before = _requests_answered(backed.mount)
        backed.mount.sh(script)
        counted[tool] = _requests_answered(backed.mount) - before - 1
    over = {tool: n for tool, n in counted.items() if n > REQUEST_BOUNDS[tool]}
    assert not over, f"daemon requests {counted}, bounds {REQUEST_BOUNDS}"
    for i in range(FILES):
        assert (tmp_path / "copied" / f"f{i}").read_bytes() == b"%d" % i * 1000
        assert backed.setup.read_back(f"rq-wr\\f{i}") == b"w%d" % i * 1000
    assert not backed.host("rq-rm").exists()
    backed.mount.sh("rm -rf rq-ls rq-cp rq-rd rq-wr")


def test_a_failed_background_write_is_the_error_of_close(mounted: Mount) -> None:
    """Writes gathered in the mount go to the daemon in the background: when one fails (the
    disk behind the share is full), a later write or close(2) fails with it, never a close
    that returns 0 with bytes missing; what reached the disk is the file's start."""
    if os.geteuid() != 0:
        require_or_skip(["root, to mount a small tmpfs behind the share"], "tmpfs")
    small = mounted.daemon.share_dir / "small-disk"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)], check=True)
    try:
        data = os.urandom(16 << 20)
        failed: OSError | None = None
        f = open(mounted.path / "small-disk" / "big.bin", "wb", buffering=0)  # noqa: SIM115
        try:
            for start in range(0, len(data), 1 << 20):
                f.write(data[start : start + (1 << 20)])
        except OSError as exc:
            failed = exc
        try:
            f.close()
        except OSError as exc:
            failed = failed or exc
        assert failed is not None, "every write and the close succeeded on a full disk"
        assert failed.errno == errno.ENOSPC, failed
        kept = (small / "big.bin").read_bytes()
        assert data.startswith(kept)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
        small.rmdir()


def test_a_folder_larger_than_one_compound_is_listed_whole(mounted: Mount) -> None:
    """A listing is one compound of two queries; a folder with more entries than those (and
    than a message's header holds at once) is listed again in turns, every name once."""
    folder = mounted.daemon.share_dir / "many"
    folder.mkdir()
    names = {f"{i:05d}-" + "n" * 200 for i in range(2 * LIST_BATCH + 100)}
    for name in names:
        (folder / name).write_bytes(b"")
    listed = mounted.sh("ls many").stdout.split()
    assert len(listed) == len(names) and set(listed) == names
    assert mounted.sh("ls many | wc -l").stdout.strip() == str(len(names))
    shutil.rmtree(folder)


def test_ls_right_after_a_write_shows_what_it_shows_later(backed: Backed) -> None:
    """Sizes and write times the mount shows right after files were made or written through it
    (from the create's and the writes' answers) are the server's: they stay the same once the
    mount's cache and the daemon's attributes are stale and the server is asked again."""
    backed.mount.sh(
        "mkdir fresh && : > fresh/empty && printf abc > fresh/small && "
        "head -c 70000 /dev/zero > fresh/medium && printf more >> fresh/small"
    )
    show = "stat -c '%n %s %Y' fresh/empty fresh/small fresh/medium"
    first = backed.mount.sh(show).stdout
    time.sleep(ATTR_TIMEOUT_S * 2)  # (the mount's cache of attributes is stale then)
    assert backed.mount.sh(show).stdout == first
    for line in first.splitlines():
        name, size, mtime = line.split()
        host = os.stat(backed.host(name))
        assert (int(size), int(mtime)) == (host.st_size, int(host.st_mtime)), line
    backed.mount.sh("rm -rf fresh")


def test_a_name_unlinked_while_open_is_gone_and_free_for_a_new_file(backed: Backed) -> None:
    """unlink(2) of a file still open: the name is gone at once (stat says ENOENT, a create
    makes a new file), and the open file descriptor still reads and fstats its file."""
    path = backed.mount.path / "unlinked.bin"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        with pytest.raises(FileNotFoundError):
            os.stat(path)
        assert os.pread(fd, 10, 0) == b"abc"
        assert os.fstat(fd).st_size == 3
        path.write_bytes(b"a new file")  # the kernel creates it: the name is known missing
        assert path.read_bytes() == b"a new file"
        assert os.stat(path).st_size == 10
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a new file"
    assert backed.setup.read_back("unlinked.bin") == b"a new file"
    path.unlink()


def test_what_one_handle_writes_the_others_stat_and_read(backed: Backed) -> None:
    """Two handles on one file: after one writes and closes, the other (and stat, before and
    after every handle is closed) sees the new size and bytes, not what it found at its open."""
    path = backed.mount.path / "two-handles.bin"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    try:
        with open(path, "r+b") as other:
            other.seek(1)
            other.write(b"xy")
        assert os.stat(path).st_size == 3
        assert os.fstat(fd).st_size == 3
        assert os.pread(fd, 10, 0) == b"\0xy"
    finally:
        os.close(fd)
    assert os.stat(path).st_size == 3
    assert path.read_bytes() == b"\0xy"
    path.unlink()


def test_a_rename_over_an_open_file_shows_the_renamed_one(backed: Backed) -> None:
    """rename(2) onto a name whose file is open: the name shows the renamed file's size, before
    and after the replaced file's descriptor is closed."""
    if backed.kind == "smb":
        pytest.skip("SMB refuses to replace a file that is open (a Windows rule)")
    a, b = backed.mount.path / "ren-a.bin", backed.mount.path / "ren-b.bin"
    a.write_bytes(b"A" * 10)
    b.write_bytes(b"B" * 100)
    fd = os.open(b, os.O_RDWR)
    try:
        os.rename(a, b)
        assert os.stat(b).st_size == 10
    finally:
        os.close(fd)
    assert os.stat(b).st_size == 10
    assert b.read_bytes() == b"A" * 10
    b.unlink()


def test_a_file_just_written_reads_back_whole_beside_a_lister(backed: Backed) -> None:
    """Files written and read back at once while another thread lists their folder all the
    time: a listing taken while the writes were still going out never puts an older size
    back over what the close found."""
    import threading

    folder = backed.mount.path / "listed-while-written"
    folder.mkdir()
    stop = threading.Event()

    def lister() -> None:
        while not stop.is_set():
            os.listdir(folder)

    thread = threading.Thread(target=lister)
    thread.start()
    short: list[tuple[int, int]] = []
    try:
        for i in range(150):
            data = os.urandom(70000 + i)
            (folder / "f").write_bytes(data)
            back = (folder / "f").read_bytes()
            if back != data:
                short.append((i, len(back)))
    finally:
        stop.set()
        thread.join()
    assert short == []
    shutil.rmtree(folder)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite_two_writers_then_reopen(backed: Backed, journal: str) -> None:
    """SQLite on the mount: a database in WAL (its -shm file is unlinked while open) or
    rollback mode reopens at once after its last connection closed, and two processes
    inserting at once lose no row (not on WebDAV, whose handles write apart)."""
    import sqlite3
    import sys

    db = backed.mount.path / f"two-{journal}.db"
    con = sqlite3.connect(db)
    con.execute(f"pragma journal_mode={journal}")
    con.execute("create table t(x)")
    con.commit()
    con.close()
    con = sqlite3.connect(db)  # at once: no name left behind by the close
    assert con.execute("select count(*) from t").fetchone() == (0,)
    con.close()
    if backed.kind == "webdav":
        return  # each WebDAV handle stages the whole file: writers apart (docs/limitations.md)
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=60)\n"
        "for i in range(100):\n"
        "    c.execute('insert into t values(?)', (i,)); c.commit()\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        errors = [w.communicate(timeout=120)[1].decode() for w in writers]
    finally:
        for w in writers:  # (a writer past its deadline is stopped, not left behind)
            if w.poll() is None:
                w.kill()
                w.wait(10)
    assert [w.returncode for w in writers] == [0, 0], errors
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from t").fetchone() == (200,)
    assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    con.close()


def test_a_handle_of_a_removed_or_replaced_file_never_brings_it_back(backed: Backed) -> None:
    """Writes through a descriptor whose file was unlinked, or replaced by a rename, through
    the mount go to that file, never to the name: the name stays removed, or keeps the file
    renamed onto it (WebDAV, which stages a handle's writes, too)."""
    mnt = backed.mount.path
    gone = mnt / "gone.bin"
    fd = os.open(gone, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"hello")
        os.unlink(gone)
        os.write(fd, b"world")
    finally:
        os.close(fd)
    time.sleep(ATTR_TIMEOUT_S * 1.5)  # what the mount and the kernel knew is stale by then
    assert not gone.exists()
    assert "gone.bin" not in os.listdir(mnt)
    if backed.kind == "smb":
        return  # SMB refuses to replace a file that is open (a Windows rule)
    c, d = mnt / "rep-c.bin", mnt / "rep-d.bin"
    c.write_bytes(b"C" * 10)
    d.write_bytes(b"D" * 100)
    fd = os.open(d, os.O_RDWR)
    try:
        os.rename(c, d)
        os.pwrite(fd, b"XXXX", 0)
    finally:
        os.close(fd)
    assert d.read_bytes() == b"C" * 10
    assert backed.setup.read_back("rep-d.bin") == b"C" * 10
    d.unlink()


def test_appends_beside_a_listing_of_their_folder_land_one_after_the_other(
    backed: Backed,
) -> None:
    """A descriptor opened for appending writes where the kernel thinks the file ends; a
    listing of the folder between its writes (readdirplus hands the kernel sizes) waits for
    the writes the mount gathered, so the next append never lands on the last one. A reader's
    fsync succeeds."""
    folder = backed.mount.path / "appends"
    folder.mkdir()
    path = folder / "log.txt"
    path.write_bytes(b"0" * 1000)
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        for i in range(1, 6):
            os.write(fd, str(i).encode() * 100)
            assert "log.txt" in os.listdir(folder)
        assert os.fstat(fd).st_size == 1500
    finally:
        os.close(fd)
    expected = b"0" * 1000 + b"".join(str(i).encode() * 100 for i in range(1, 6))
    assert path.read_bytes() == expected
    assert backed.setup.read_back("appends/log.txt") == expected
    reader = os.open(path, os.O_RDONLY)
    try:
        os.fsync(reader)
    finally:
        os.close(reader)
    shutil.rmtree(folder)
