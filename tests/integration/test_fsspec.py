"""The fsspec front end (rdbss.fsspec_fs) against a real daemon: fsspec's own abstract test suite
(copy, get, put, open, pipe), then ls/info fields, server-side mv, ranges, transactions, URLs,
pickling and pandas, each checked against the folder behind the share."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

fsspec = pytest.importorskip("fsspec")
abstract = pytest.importorskip("fsspec.tests.abstract")

from rdbss.fsspec_fs import RdbssFileSystem, to_unc  # noqa: E402
from rdbss.requests import SMALL_READ_BYTES  # noqa: E402
from rdbss.wire import IrpMj, NtStatus  # noqa: E402
from tests.daemon import Daemon  # noqa: E402
from tests.integration.test_small_files import count_sent  # noqa: E402

# The entry point in pyproject.toml registers the protocol once installed; this keeps the tests
# independent of how the package was installed.
fsspec.register_implementation("rdbss", "rdbss.fsspec_fs.RdbssFileSystem", clobber=True)


def _fresh(fs: RdbssFileSystem) -> str:
    """A new, empty folder in the share, as an ``rdbss://`` URL."""
    path = f"local/data/t-{uuid.uuid4().hex[:10]}"
    fs.makedirs(path)
    return f"rdbss://{path}"


class RdbssFixtures(abstract.AbstractFixtures):  # type: ignore[misc,name-defined]
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, daemon: Daemon) -> Iterator[RdbssFileSystem]:
        filesystem = fsspec.filesystem("rdbss", runtime_dir=str(daemon.runtime_dir))
        yield filesystem
        filesystem.close()

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(parts)  # keeps a trailing "/" ("newdir/")

    @pytest.fixture
    def fs_path(self, fs: RdbssFileSystem) -> str:
        return _fresh(fs)

    @pytest.fixture
    def fs_sanitize_path(self, fs: RdbssFileSystem) -> Callable[[str], str]:
        return fs._strip_protocol


class TestRdbssCopy(abstract.AbstractCopyTests, RdbssFixtures):  # type: ignore[misc,name-defined]
    pass


class TestRdbssGet(abstract.AbstractGetTests, RdbssFixtures):  # type: ignore[misc,name-defined]
    pass


class TestRdbssPut(abstract.AbstractPutTests, RdbssFixtures):  # type: ignore[misc,name-defined]
    pass


class TestRdbssOpen(abstract.AbstractOpenTests, RdbssFixtures):  # type: ignore[misc,name-defined]
    pass


class TestRdbssPipe(abstract.AbstractPipeTests, RdbssFixtures):  # type: ignore[misc,name-defined]
    pass


# ---------------------------------------------------------------------------------- our own
@pytest.fixture(scope="module")
def fs(daemon: Daemon) -> Iterator[RdbssFileSystem]:
    filesystem = RdbssFileSystem(runtime_dir=daemon.runtime_dir)
    yield filesystem
    filesystem.close()


@pytest.fixture
def base(fs: RdbssFileSystem) -> str:
    """A fresh folder, as an fsspec path (``local/data/t-...``)."""
    return fs._strip_protocol(_fresh(fs))  # type: ignore[no-any-return]


def on_disk(daemon: Daemon, path: str) -> Any:
    """The host path behind an fsspec path ``local/data/rest``."""
    rest = path.split("/", 2)[2]
    return daemon.share_dir / rest


def test_paths_map_to_unc_names() -> None:
    strip = RdbssFileSystem._strip_protocol
    assert strip("rdbss://local/data/a/b.csv") == "local/data/a/b.csv"
    assert strip("rdbss://local/data/dir/") == "local/data/dir"
    assert strip(r"\\local\data\x.txt") == "local/data/x.txt"
    assert strip("local//data/x") == "local/data/x"
    assert strip(["rdbss://a/b", "c/d/"]) == ["a/b", "c/d"]
    assert to_unc("local/data/a/b.csv") == r"\\local\data\a\b.csv"
    assert RdbssFileSystem(runtime_dir="/nonexistent").unstrip_protocol("local/data/x") == (
        "rdbss://local/data/x"
    )


def test_info_and_ls_fields_match_the_folder(
    daemon: Daemon, fs: RdbssFileSystem, base: str
) -> None:
    host = on_disk(daemon, base)
    (host / "sub").mkdir()
    (host / "a.bin").write_bytes(b"x" * 1234)
    (host / "sub" / "inner.txt").write_text("hello")
    st = os.stat(host / "a.bin")

    info = fs.info(f"rdbss://{base}/a.bin")
    assert info["name"] == f"{base}/a.bin"
    assert info["type"] == "file"
    assert info["size"] == 1234
    assert info["mtime"] == pytest.approx(st.st_mtime, abs=1e-6)
    assert info["atime"] == pytest.approx(st.st_atime, abs=1e-6)
    assert info["mode"] == st.st_mode
    assert info["ino"] == st.st_ino
    assert info["nlink"] == 1
    assert isinstance(info["created"], float)
    assert info["readonly"] is False
    assert fs.size(f"{base}/a.bin") == 1234
    assert fs.isfile(f"{base}/a.bin") and not fs.isdir(f"{base}/a.bin")

    listing = fs.ls(base, detail=True)
    assert [(e["name"], e["type"], e["size"]) for e in listing] == [
        (f"{base}/a.bin", "file", 1234),
        (f"{base}/sub", "directory", 0),
    ]
    assert fs.ls(base, detail=False) == [f"{base}/a.bin", f"{base}/sub"]
    assert fs.ls(f"{base}/a.bin", detail=False) == [f"{base}/a.bin"]  # a file lists itself
    assert fs.find(base) == [f"{base}/a.bin", f"{base}/sub/inner.txt"]
    assert fs.du(base) == 1234 + 5
    assert fs.glob(f"{base}/*.bin") == [f"{base}/a.bin"]

    assert fs.info("local/data")["type"] == "directory"  # the share root
    assert fs.isdir("local")  # a server of the local mini-redirector: its shares
    assert "local/data" in fs.ls("local", detail=False)
    assert fs.info(f"{base}/sub")["type"] == "directory"

    with pytest.raises(FileNotFoundError):
        fs.info(f"{base}/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{base}/missing")
    assert not fs.exists(f"{base}/missing")
    assert not fs.exists("nosuchserver/share/x")

    modified = fs.modified(f"{base}/a.bin")
    assert modified.tzinfo is UTC
    assert modified == datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)
    assert isinstance(fs.created(f"{base}/a.bin"), datetime)


def test_mv_is_a_server_side_rename(daemon: Daemon, fs: RdbssFileSystem, base: str) -> None:
    host = on_disk(daemon, base)
    (host / "a.txt").write_text("A")
    inode = os.stat(host / "a.txt").st_ino

    fs.mv(f"{base}/a.txt", f"rdbss://{base}/b.txt")
    assert not (host / "a.txt").exists()
    assert (host / "b.txt").read_text() == "A"
    assert os.stat(host / "b.txt").st_ino == inode  # renamed, not copied

    (host / "c.txt").write_text("C")
    fs.mv(f"{base}/c.txt", f"{base}/b.txt")  # replaces, like fsspec's and POSIX mv
    assert (host / "b.txt").read_text() == "C"

    (host / "dir").mkdir()
    fs.mv(f"{base}/b.txt", f"{base}/dir")  # into an existing directory
    assert (host / "dir" / "b.txt").read_text() == "C"
    fs.mv(f"{base}/dir/b.txt", f"{base}/new/deeper/")  # trailing "/": into a new directory
    assert (host / "new" / "deeper" / "b.txt").read_text() == "C"

    (host / "tree" / "x").mkdir(parents=True)
    (host / "tree" / "x" / "f").write_bytes(b"f")
    fs.mv(f"{base}/tree", f"{base}/moved", recursive=True)  # a whole directory, one rename
    assert (host / "moved" / "x" / "f").read_bytes() == b"f"
    assert not (host / "tree").exists()

    (host / "g1.csv").write_text("1")
    (host / "g2.csv").write_text("2")
    fs.mv(f"{base}/g*.csv", f"{base}/csvs")
    assert sorted(p.name for p in (host / "csvs").iterdir()) == ["g1.csv", "g2.csv"]

    with pytest.raises(FileNotFoundError):
        fs.mv(f"{base}/missing", f"{base}/whatever")

    with pytest.raises(OSError, match="into itself") as into:  # as POSIX mv refuses it
        fs.mv(f"{base}/moved", f"{base}/moved/x/deeper/moved")
    assert getattr(into.value, "status", None) == NtStatus.STATUS_INVALID_PARAMETER
    assert sorted(p.name for p in (host / "moved" / "x").iterdir()) == ["f"]  # nothing made
    (host / "Report").write_text("R")
    (host / "report").mkdir()
    fs.mv(f"{base}/Report", f"{base}/report/Report")  # another name on a case-sensitive share
    assert (host / "report" / "Report").read_text() == "R"


def test_cat_pipe_ranges_and_files(daemon: Daemon, fs: RdbssFileSystem, base: str) -> None:
    host = on_disk(daemon, base)
    data = os.urandom(5 * (1 << 20) + 123)  # more than one CHUNK and one default block
    fs.pipe_file(f"{base}/deep/er/blob.bin", data)  # makes the parents
    assert (host / "deep" / "er" / "blob.bin").read_bytes() == data
    assert fs.cat_file(f"{base}/deep/er/blob.bin") == data
    assert fs.cat_file(f"{base}/deep/er/blob.bin", start=10, end=20) == data[10:20]
    assert fs.cat_file(f"{base}/deep/er/blob.bin", start=-5) == data[-5:]
    assert fs.cat_file(f"{base}/deep/er/blob.bin", start=100, end=-100) == data[100:-100]
    assert fs.cat_file(f"{base}/deep/er/blob.bin", start=len(data) + 5) == b""
    assert fs.read_block(f"{base}/deep/er/blob.bin", 1000, 50) == data[1000:1050]

    with fs.open(f"{base}/deep/er/blob.bin", "rb", block_size=1 << 16) as f:
        assert f.size == len(data)
        f.seek(3 << 20)
        assert f.read(100) == data[3 << 20 : (3 << 20) + 100]
        f.seek(-10, 2)
        assert f.read() == data[-10:]

    with fs.open(f"{base}/w.bin", "wb", block_size=1 << 20) as f:
        for i in range(0, len(data), 300_000):
            f.write(data[i : i + 300_000])
    assert (host / "w.bin").read_bytes() == data

    with fs.open(f"{base}/w.bin", "ab") as f:
        f.write(b"tail")
    assert (host / "w.bin").read_bytes() == data + b"tail"

    with fs.open(f"{base}/t.txt", "wt", encoding="utf-8") as f:
        f.write("héllo\nworld\n")
    with fs.open(f"{base}/t.txt", "rt", encoding="utf-8") as f:
        assert f.readlines() == ["héllo\n", "world\n"]

    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{base}/t.txt", b"x", mode="create")
    with pytest.raises(FileExistsError):  # a large value: refused at its create, file intact
        fs.pipe_file(f"{base}/deep/er/blob.bin", b"y" * len(data), mode="create")
    assert (host / "deep" / "er" / "blob.bin").read_bytes() == data
    with pytest.raises(FileNotFoundError):
        fs.open(f"{base}/missing", "rb")
    with pytest.raises(IsADirectoryError):
        fs.open(f"{base}/deep", "rb")

    fs.cp_file(f"{base}/deep/er/blob.bin", f"{base}/copy/of/blob.bin")
    assert (host / "copy" / "of" / "blob.bin").read_bytes() == data

    fs.touch(f"{base}/t.txt", truncate=False)  # only the times change
    assert (host / "t.txt").read_text(encoding="utf-8") == "héllo\nworld\n"
    fs.rm(f"{base}/deep", recursive=True)
    assert not (host / "deep").exists()
    fs.rm_file(f"{base}/w.bin")
    assert not (host / "w.bin").exists()
    fs.mkdir(f"{base}/empty")
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{base}/empty")
    fs.rmdir(f"{base}/empty")
    assert not (host / "empty").exists()


def test_transaction_commits_on_exit_and_discards_on_error(
    daemon: Daemon, fs: RdbssFileSystem, base: str
) -> None:
    host = on_disk(daemon, base)
    with fs.transaction:
        with fs.open(f"{base}/tx.bin", "wb") as f:
            f.write(b"committed")
        assert not (host / "tx.bin").exists()  # only the temporary file so far
    assert (host / "tx.bin").read_bytes() == b"committed"
    assert sorted(p.name for p in host.iterdir()) == ["tx.bin"]

    with pytest.raises(RuntimeError), fs.transaction:
        with fs.open(f"{base}/tx.bin", "wb") as f:
            f.write(b"discarded")
        raise RuntimeError("abort")
    assert (host / "tx.bin").read_bytes() == b"committed"
    assert sorted(p.name for p in host.iterdir()) == ["tx.bin"]


def test_urls_through_fsspec_open_and_pickling(
    daemon: Daemon, fs: RdbssFileSystem, base: str
) -> None:
    url = f"rdbss://{base}/x.csv"
    opts = {"runtime_dir": str(daemon.runtime_dir)}
    with fsspec.open(url, "w", **opts) as f:
        f.write("a,b\n1,2\n")
    assert (on_disk(daemon, base) / "x.csv").read_text() == "a,b\n1,2\n"
    with fsspec.open(url, "r", **opts) as f:
        assert f.read() == "a,b\n1,2\n"
    other, path = fsspec.core.url_to_fs(url, **opts)
    assert isinstance(other, RdbssFileSystem) and path == f"{base}/x.csv"
    # one instance (one daemon connection) per options, as fsspec caches them
    assert fsspec.core.url_to_fs(url, **opts)[0] is other
    assert fsspec.filesystem("rdbss", runtime_dir=str(daemon.runtime_dir), timeout=7) is not other

    clone = pickle.loads(pickle.dumps(other))
    assert clone.cat_file(f"{base}/x.csv") == b"a,b\n1,2\n"
    # a pickled instance connects again where it is loaded (a dask worker, another process)
    script = (
        "import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
        f"sys.stdout.buffer.write(fs.cat_file('{base}/x.csv'))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(other),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and run.stdout == b"a,b\n1,2\n", run.stderr
    other.close()  # a closed instance connects again on its next call
    assert other.cat_file(f"{base}/x.csv") == b"a,b\n1,2\n"


def test_pandas_reads_and_writes_through_rdbss_urls(daemon: Daemon, base: str) -> None:
    import pandas as pd

    opts = {"runtime_dir": str(daemon.runtime_dir)}
    (on_disk(daemon, base) / "in.csv").write_text("x,y\n1,2\n3,4\n")
    frame = pd.read_csv(f"rdbss://{base}/in.csv", storage_options=opts)
    assert frame["y"].sum() == 6
    frame.to_csv(f"rdbss://{base}/out.csv", index=False, storage_options=opts)
    assert (on_disk(daemon, base) / "out.csv").read_text() == "x,y\n1,2\n3,4\n"


def test_parquet_and_compressed_files_through_pandas_and_fsspec_open(
    daemon: Daemon, base: str
) -> None:
    import pandas as pd

    opts = {"runtime_dir": str(daemon.runtime_dir)}
    frame = pd.DataFrame({"n": range(5000), "word": ["zwölf", "two words"] * 2500})
    frame.to_parquet(f"rdbss://{base}/t.parquet", storage_options=opts)
    back = pd.read_parquet(f"rdbss://{base}/t.parquet", storage_options=opts)
    assert back.equals(frame)
    assert pd.read_parquet(on_disk(daemon, base) / "t.parquet").equals(frame)  # really there

    with fsspec.open(f"rdbss://{base}/t.csv.gz", "wt", compression="infer", **opts) as f:
        frame.to_csv(f, index=False)
    assert gzip.decompress((on_disk(daemon, base) / "t.csv.gz").read_bytes()).startswith(
        b"n,word\n0,zw\xc3\xb6lf\n"
    )
    with fsspec.open(f"rdbss://{base}/t.csv.gz", "rt", compression="gzip", **opts) as f:
        assert pd.read_csv(f).equals(frame)
    assert pd.read_csv(f"rdbss://{base}/t.csv.gz", storage_options=opts).equals(frame)


LEFT_TO_THE_GC = """
import sys, fsspec, pandas as pd
fsspec.register_implementation("rdbss", "rdbss.fsspec_fs.RdbssFileSystem", clobber=True)
opts = {"runtime_dir": sys.argv[1]}
url = f"rdbss://{sys.argv[2]}/gc.parquet"
pd.DataFrame({"a": range(1000)}).to_parquet(url, storage_options=opts)
assert len(pd.read_parquet(url, storage_options=opts)) == 1000
forgotten = fsspec.open(url, "rb", **opts).open()  # never closed: left to the GC
forgotten.read(4)
unflushed = fsspec.open(url + ".txt", "wb", **opts).open()
unflushed.write(b"flushed at exit")
"""


def test_interpreter_exit_is_clean_with_files_left_open(daemon: Daemon, base: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", LEFT_TO_THE_GC, str(daemon.runtime_dir), base],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no "Exception ignored in ... __del__" tracebacks
    assert (on_disk(daemon, base) / "gc.parquet.txt").read_bytes() == b"flushed at exit"


@pytest.mark.parametrize("size", [0, 4096, (64 << 10) - 1])
def test_cat_file_reads_a_small_file_in_one_request(
    daemon: Daemon, base: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file is read to its end by one READ whose short answer is the end: the whole
    file as one compound message (create, a READ of the first 64 KiB, close), from an offset
    in it by one READ of one byte more than is left at the open."""
    data = os.urandom(size)
    on_disk(daemon, base).joinpath("small.bin").write_bytes(data)
    fs = RdbssFileSystem(runtime_dir=daemon.runtime_dir, skip_instance_cache=True)
    try:
        reads: list[tuple[int, int]] = []
        read_handle = fs.client.read_handle

        def counted(fobx: int, offset: int, length: int) -> bytes:
            reads.append((offset, length))
            return read_handle(fobx, offset, length)

        monkeypatch.setattr(fs.client, "read_handle", counted)
        sent = count_sent(fs.client, monkeypatch)
        assert fs.cat_file(f"{base}/small.bin") == data
        assert len(sent) == 1 and reads == []
        whole = [(i.lowio.offset, i.lowio.length) for i in sent[0].items if i.major == IrpMj.READ]
        assert whole == [(0, SMALL_READ_BYTES)]
        reads.clear()
        start = size // 2
        assert fs.cat_file(f"{base}/small.bin", start=start) == data[start:]
        if start:  # (from 0 it is the whole file, as above)
            assert reads == [(start, size - start + 1)]
    finally:
        fs.close()
