"""The rules of pipelined transfers (rdbss.model.pipelining) and the SFTP ``ciphers`` option."""

from __future__ import annotations

import pytest

from rdbss.minirdrs.sftp.config import SftpConfigError, parse_config
from rdbss.model.pipelining import (
    AES_FIRST,
    PIPELINE_MIN_BYTES,
    cpu_flags,
    overlaps,
    pipelines,
    preferred_ciphers,
)


def test_only_large_writes_at_an_offset_are_pipelined() -> None:
    assert pipelines(0, PIPELINE_MIN_BYTES, append_only=False)
    assert pipelines(1 << 40, 64 << 20, append_only=False)
    assert not pipelines(0, PIPELINE_MIN_BYTES - 1, append_only=False)
    assert not pipelines(None, 64 << 20, append_only=False)  # at the end of the file
    assert not pipelines(-1, 64 << 20, append_only=False)
    assert not pipelines(0, 64 << 20, append_only=True)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 10), (10, 10), False),  # adjacent
        ((0, 10), (9, 10), True),
        ((5, 1), (0, 10), True),  # inside
        ((0, 10), (0, 10), True),
        ((0, 0), (0, 10), False),  # empty
        ((20, 5), (0, 10), False),
    ],
)
def test_overlaps(a: tuple[int, int], b: tuple[int, int], expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse2 aes avx2 pclmulqdq
bogomips\t: 4800.00

processor\t: 1
flags\t\t: fpu vme
"""


def test_cpu_flags_are_the_first_processors() -> None:
    assert cpu_flags(CPUINFO) == {"fpu", "vme", "sse2", "aes", "avx2", "pclmulqdq"}
    assert cpu_flags("Features\t: fp asimd aes pmull\n") >= {"aes"}  # arm64's name for them
    assert cpu_flags("") == frozenset()


def test_aes_gcm_first_only_with_aes_instructions() -> None:
    assert preferred_ciphers({"aes", "avx2"}) == AES_FIRST
    assert AES_FIRST[0].startswith("aes128-gcm")
    assert "chacha20-poly1305@openssh.com" in AES_FIRST  # still offered, after
    assert preferred_ciphers({"sse2"}) is None


def _config(**top: object) -> dict[str, object]:
    server = {"host": "h", "username": "u", "password": "p", "shares": {"s": "/srv"}}
    return {"servers": {"box": server}, **top}


def test_the_ciphers_option_overrides_the_choice() -> None:
    assert parse_config(_config()).ciphers is None
    chosen = parse_config(_config(ciphers=["aes256-ctr", "aes128-gcm@openssh.com"])).ciphers
    assert chosen == ("aes256-ctr", "aes128-gcm@openssh.com")


@pytest.mark.parametrize("bad", [[], "aes128-ctr", [""], [1], ["rot13"]])
def test_a_bad_ciphers_option_is_refused(bad: object) -> None:
    with pytest.raises(SftpConfigError, match="cipher"):
        parse_config(_config(ciphers=bad))
