"""Windows wildcard matching (FsRtlIsNameInExpression semantics)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdbss.minirdrs.common.wildcard import WILDCARDS, has_wildcards, is_name_in_expression

# (expression, name, ignore_case, expected). The DOS wildcard rows follow the vectors that
# ReactOS checks against Windows' FsRtlIsNameInExpression.
CASES = [
    # empty name / expression
    ("", "", True, True),
    ("", "a", True, False),
    ("*", "", True, False),
    ("**", "a", True, True),
    # literals
    ("ntdll.dll", "ntdll.dll", False, True),
    ("ntdll.dll", "NTDLL.DLL", False, False),
    ("ntdll.dll", "NTDLL.DLL", True, True),
    ("smss.exe", "ntdll.dll", True, False),
    ("abc.exe", "abc.exe.", True, False),
    ("abc.exe", "abc.exes", True, False),
    (".", "NTDLL.DLL", True, False),
    # * and ?
    ("*", "SETUP.INI", True, True),
    ("*", ".", True, True),
    ("he*o", "hello", True, True),
    ("he*o", "helo", True, True),
    ("he*o", "hella", True, False),
    ("he*", "hella", True, True),
    ("*.cpl", "kdcom.dll", True, False),
    ("*.txt", "notes.txt", True, True),
    ("*.txt", "notes.TXT", True, True),
    ("*.txt", "notes.TXT", False, False),
    ("*.txt", "notes.txt.bak", True, False),
    ("a?c", "abc", True, True),
    ("a?c", "ac", True, False),
    ("a?c", "abbc", True, False),
    ("nt??krnl.???", "ntoskrnl.exe", True, True),
    ("*?", "a", True, True),
    ("?*?", "a", True, False),
    ("?*?", "aa", True, True),
    ("*.c.d", "a.b.c.d", True, True),
    ("a.b.??.d", "a.b.c.d", True, False),
    ("a.b.*??.d", "a.b.cc.d", True, True),
    ("a.b.*??.d", "a.b.c.d", True, False),
    ("*.*.*.*", "127.0.0.1", True, True),
    ("*a*ab*abc", "aabaabcdadabdabc", True, True),
    (".*", ".txt", True, True),
    (".*", "1.txt", True, False),
    ("F0_*.*", "F0_001", False, False),
    ("F0_*.*", "F0_001.txt", False, True),
    ("F0_*.*", "f0_001.txt", False, False),
    ("F0_*.*", "f0_001.txt", True, True),
    # DOS_DOT '"': a period, or nothing at the end
    ('ntoskrnl"exe', "ntoskrnl.exe", True, True),
    ('ntoskrnl.exe"', "ntoskrnl.exe", True, True),
    ('"ntoskrnl.exe', "ntoskrnl.exe", True, False),
    ('ntoskrn".exe', "ntoskrnl.exe", True, False),
    ('ntoskrnl."exe', "ntoskrnl.exe", True, False),
    # DOS_STAR '<': up to the final period, never past it
    ("<.exe", "test.exe", True, True),
    ("<.EXE", "test.exe", True, True),
    ("<.EXE", "test.exe", False, False),
    ("ab<exe", "abcd.exe", True, True),
    ("ab<exe", "ab.exe", True, True),
    ("ab<exe", "abcdexe", True, True),
    ("ab<exe", "acd.exe", True, False),
    ("a.b<exe", "a.bcd.exe", True, True),
    ("a<b.exe", "a.bcd.exe", True, False),
    ("<", "readme", True, True),
    ("<", "readme.md", True, False),
    ("<", "a.", True, True),
    ('F0_<"*', "F0_", True, True),
    ('F0_<"*', "F0_.", True, True),
    ('F0_<"*', "F0_001", True, True),
    ('F0_<"*', "F0_001.txt", True, True),
    ('F0_<"*', "SETUP.EXE", True, False),
    ('F0_<"*', ".", True, False),
    # DOS_QM '>': one character, or nothing at a period / the end
    ("a>c.exe", "abc.exe", True, True),
    ("a>c.exe", "ac.exe", True, False),
    ("a>>>exe", "abc.exe", True, False),
    ("a>>>exe", "ac.exe", True, False),
    ("abc>>>", "abc", True, True),
    ("abc>>>", "abcde", True, True),
    ("abc>>>", "abcdefg", True, False),
    ("a>>.txt", "a.txt", True, True),
    ("a>>.txt", "ab.txt", True, True),
    ("a>>.txt", "abcd.txt", True, False),
]


@pytest.mark.parametrize(("expression", "name", "ignore_case", "expected"), CASES)
def test_table(expression: str, name: str, ignore_case: bool, expected: bool) -> None:
    assert is_name_in_expression(expression, name, ignore_case=ignore_case) is expected


def test_ignore_case_is_the_default() -> None:
    assert is_name_in_expression("README.MD", "readme.md")
    assert is_name_in_expression("r?ADME.*", "Readme.md")


def test_non_ascii_case_folding() -> None:
    assert is_name_in_expression("ÉTÉ.txt", "été.TXT")
    assert not is_name_in_expression("ÉTÉ.txt", "été.TXT", ignore_case=False)
    # a character whose upper case is two characters still matches itself and '?'
    assert is_name_in_expression("stra?e", "straße")
    assert is_name_in_expression("straße", "STRAßE")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("abc", False),
        ("a.b", False),
        ("", False),
        ("*", True),
        ("a?", True),
        ("<", True),
        (">", True),
        ('a"b', True),
    ],
)
def test_has_wildcards(expression: str, expected: bool) -> None:
    assert has_wildcards(expression) is expected


_PLAIN = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="".join(WILDCARDS) + "\\/"
    ),
    min_size=1,
    max_size=30,
)


@given(_PLAIN)
def test_every_name_matches_star(name: str) -> None:
    assert is_name_in_expression("*", name)
    assert is_name_in_expression("**", name)


@given(_PLAIN)
def test_a_plain_name_matches_itself_in_any_case(name: str) -> None:
    assert is_name_in_expression(name, name, ignore_case=False)
    assert is_name_in_expression(name.upper(), name.lower())
    assert is_name_in_expression(name.lower(), name.upper())
    if name.upper() != name.lower():
        assert not is_name_in_expression(name.upper(), name.lower(), ignore_case=False)


@given(_PLAIN, _PLAIN)
def test_a_plain_name_does_not_match_a_different_one(name: str, other: str) -> None:
    assert is_name_in_expression(other, name, ignore_case=False) is (name == other)


@given(_PLAIN)
def test_question_marks_match_exactly_the_length(name: str) -> None:
    assert is_name_in_expression("?" * len(name), name)
    assert not is_name_in_expression("?" * (len(name) + 1), name)
    assert not is_name_in_expression("?" * (len(name) - 1), name)


@given(_PLAIN, _PLAIN)
def test_star_suffix_is_ends_with(name: str, suffix: str) -> None:
    expected = name.lower().endswith(suffix.lower())
    assert is_name_in_expression("*" + suffix, name) is expected


def _reference(expression: str, name: str) -> bool:
    """'*' and '?' as a regular expression: the meaning they have without DOS wildcards."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in expression)
    return re.fullmatch(regex, name, re.DOTALL | re.IGNORECASE) is not None


@given(
    st.text(alphabet="aAb.*?", max_size=8),
    st.text(alphabet="aAb.", min_size=1, max_size=10),
)
def test_star_and_question_mark_agree_with_a_regex(expression: str, name: str) -> None:
    assert is_name_in_expression(expression, name) is _reference(expression, name)


@given(st.text(alphabet="ab.", min_size=1, max_size=10))
def test_dos_star_dot_star_matches_every_name(name: str) -> None:
    # '*.*' as Win32 hands it to the file system ('<"*') means "any name".
    assert is_name_in_expression('<"*', name)


@given(st.text(alphabet="ab.", min_size=1, max_size=10))
def test_dos_star_alone_matches_names_without_an_extension(name: str) -> None:
    # '*.' from Win32 becomes '<': names with no extension (no period, or a final one).
    expected = "." not in name or name.endswith(".")
    assert is_name_in_expression("<", name) is expected
