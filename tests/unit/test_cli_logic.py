"""The command line's pure rules: UNC names, names crossing sides, renderings, copy plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rdbss.cli import paths
from rdbss.cli.output import attribute_names, error_fields, human_size, human_time
from rdbss.cli.progress import TransferProgress
from rdbss.cli.transfer import LocalSide, carry_out, plan_copy
from rdbss.wire.status import NtStatus, NtStatusError, error_for_status


def test_unc_names() -> None:
    assert paths.is_remote("//local/data") and paths.is_remote(r"\\local\data")
    assert (
        not paths.is_remote("/tmp/x") and not paths.is_remote("photos") and not paths.is_remote("/")
    )
    assert paths.to_unc("//local/data/a b/") == r"\\local\data\a b"
    assert paths.unc_join("//local/data", "été") == r"\\local\data\été"
    assert paths.unc_name(r"\\local\data\x\y.txt") == "y.txt"
    assert paths.split_unc("//local") == paths.UncParts("local", "", ())
    assert paths.split_unc(r"\\local\data\a\b") == paths.UncParts("local", "data", ("a", "b"))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "nul\0"])
def test_a_name_that_could_leave_the_target_is_refused(name: str) -> None:
    with pytest.raises(NtStatusError) as info:
        paths.check_component(name, "somewhere")
    assert info.value.status == NtStatus.STATUS_OBJECT_NAME_INVALID


def test_renderings() -> None:
    assert attribute_names(0x21) == "READONLY|ARCHIVE"
    assert attribute_names(0) == "NONE"
    assert attribute_names(0x10000) == "0x10000"
    assert human_size(512) == "512 B" and human_size(5 << 20) == "5.0 MiB"
    assert human_time(0) == "-"
    assert human_time(1_700_000_000_000_000_001).split()[1].endswith(".000000001")


def test_error_fields_name_a_status_for_local_failures() -> None:
    assert error_fields(FileNotFoundError(2, "No such file", "x"))[0] == (
        NtStatus.STATUS_OBJECT_NAME_NOT_FOUND
    )
    err = error_for_status(NtStatus.STATUS_ACCESS_DENIED, "no")
    assert error_fields(err) == (NtStatus.STATUS_ACCESS_DENIED, "no")


def _tree(root: Path) -> None:
    (root / "a b" / "ü").mkdir(parents=True)
    (root / "a b" / "ü" / "f.txt").write_text("f")
    (root / "top.txt").write_text("top")


def test_plan_follows_cp_rules(tmp_path: Path) -> None:
    side = LocalSide()
    src = tmp_path / "src"
    _tree(src)
    (tmp_path / "existing").mkdir()
    into = plan_copy(side, src, side, tmp_path / "existing", recursive=True)
    assert into.target == tmp_path / "existing" / "src"  # into an existing folder: keeps its name
    assert into.total_bytes == 4 and len(into.files) == 2
    fresh = plan_copy(side, src, side, tmp_path / "new", recursive=True)
    assert fresh.target == tmp_path / "new"  # a new name: the copy is called that
    made = plan_copy(side, src / "top.txt", side, tmp_path / "made", recursive=False, into=True)
    assert made.folders == [tmp_path / "made"] and made.target == tmp_path / "made" / "top.txt"
    with pytest.raises(IsADirectoryError):
        plan_copy(side, src, side, tmp_path / "x", recursive=False)
    with pytest.raises(NotADirectoryError):
        plan_copy(side, src, side, src / "top.txt", recursive=True)
    with pytest.raises(FileNotFoundError):
        plan_copy(side, tmp_path / "missing", side, tmp_path / "x", recursive=True)
    with pytest.raises(FileExistsError):  # onto itself: opening the target would empty it
        plan_copy(side, src / "top.txt", side, src, recursive=False)
    assert (src / "top.txt").read_text() == "top"
    assert carry_out(fresh, side, side, TransferProgress(False, 0, 0)) == (2, 4)
    assert (tmp_path / "new" / "a b" / "ü" / "f.txt").read_text() == "f"


class HostileSide(LocalSide):
    """A listing that names '..': what a broken or hostile server could send."""

    def entries(self, path: Any) -> list[tuple[str, bool, int]]:
        return [("..", False, 1)]


def test_a_hostile_listing_cannot_write_outside_the_target(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(NtStatusError) as info:
        plan_copy(HostileSide(), tmp_path / "src", LocalSide(), tmp_path / "dst", recursive=True)
    assert info.value.status == NtStatus.STATUS_OBJECT_NAME_INVALID
