"""Configured passwords (rdbss/minirdrs/common/passwords.py): read from their one source,
failures as STATUS_LOGON_FAILURE naming the source and never the content."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rdbss.minirdrs.common.passwords import MAX_PASSWORD_FILE_BYTES, read_password
from rdbss.wire import NtStatus, NtStatusError


def _fails(**source: str) -> str:
    with pytest.raises(NtStatusError) as ei:
        read_password("server 'x'", **source)
    assert ei.value.status == NtStatus.STATUS_LOGON_FAILURE
    return ei.value.strerror or ""


def test_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\r\n")
    secret.chmod(0o600)
    assert read_password("w", password_file=str(secret)) == "s3cret"
    monkeypatch.setenv("RDBSS_T_PW", "from-env")
    assert read_password("w", password_env="RDBSS_T_PW") == "from-env"
    assert read_password("w", password="inline") == "inline"
    assert read_password("w") is None


def test_failures_name_the_source_not_the_secret(tmp_path: Path) -> None:
    assert "RDBSS_T_MISSING is not set" in _fails(password_env="RDBSS_T_MISSING")
    assert "cannot read" in _fails(password_file=str(tmp_path / "none"))
    big = tmp_path / "big"
    big.write_text("x" * (MAX_PASSWORD_FILE_BYTES + 1))
    assert "too large" in _fails(password_file=str(big))
    latin = tmp_path / "latin"
    latin.write_bytes(b"caf\xe9-secret")
    message = _fails(password_file=str(latin))
    assert "not UTF-8" in message and "secret" not in message.replace("server 'x'", "")


def test_a_file_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.write_text("open")
    shared.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rdbss.minirdr"):
        assert read_password("server 'x'", password_file=str(shared)) == "open"
    assert "readable by others" in caplog.text and "open" not in caplog.text.replace(
        str(shared), ""
    )
