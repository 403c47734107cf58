"""Configuration: the TOML file, its errors, the default location and the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdbss.config import Config, ConfigError, embedded_default, load_config, parse_config

GOOD = """
[daemon]
runtime_dir = "/tmp/rdbss-test-x"
request_timeout = 5
provider_order = ["b"]

[[minirdr]]
name = "a"
kind = "local"
server = "one"
[minirdr.shares]
data = "/srv/a"

[[minirdr]]
name = "b"
kind = "local"
server = "two"
"""


def test_parse_a_full_config() -> None:
    config = parse_config(GOOD)
    assert config.runtime_dir == Path("/tmp/rdbss-test-x")
    assert config.request_timeout == 5.0 and config.connect_timeout == 30.0
    assert [m.name for m in config.minirdrs] == ["a", "b"]
    assert config.minirdr("a").options == {"server": "one", "shares": {"data": "/srv/a"}}
    assert config.provider_order == ["b", "a"]  # the unnamed ones follow in file order
    assert Config.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[daemon\n", "not valid TOML"),
        ("[daemon]\nfrobs = 1\n[[minirdr]]\nname='a'\nkind='local'\n", "unknown [daemon]"),
        ("[daemon]\n", "at least one [[minirdr]]"),
        ("[[minirdr]]\nname='a'\nkind='gopher'\n", "kind 'gopher'"),
        ("[[minirdr]]\nname='a b'\nkind='local'\n", "needs a name"),
        ("[[minirdr]]\nname='core'\nkind='local'\n", "reserved"),
        ("[[minirdr]]\nname='a'\nkind='local'\n[[minirdr]]\nname='a'\nkind='local'\n", "twice"),
        ("[daemon]\nrequest_timeout = -1\n[[minirdr]]\nname='a'\nkind='local'\n", "positive"),
        ("[daemon]\nlog_level = 'loud'\n[[minirdr]]\nname='a'\nkind='local'\n", "log_level"),
        ("[daemon]\nprovider_order=['x']\n[[minirdr]]\nname='a'\nkind='local'\n", "provider_order"),
        ("[daemon]\nclose_delay = -1\n[[minirdr]]\nname='a'\nkind='local'\n", "0 or more"),
        ("[daemon]\nmax_delayed_closes = 1.5\n[[minirdr]]\nname='a'\nkind='local'\n", "whole"),
        ("[[minirdr]]\nname='a'\nkind='local'\ncaching='always'\n", "caching must be one of"),
    ],
)
def test_bad_configs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_config(text)


def test_buffering_settings_and_caching_per_minirdr() -> None:
    text = GOOD.replace("provider_order", "close_delay = 0\nwrite_behind = 2\nprovider_order")
    text = text.replace('server = "two"', 'server = "two"\ncaching = "exclusive"')
    config = parse_config(text)
    assert config.close_delay == 0 and config.write_behind == 2.0
    assert config.max_delayed_closes == 64 and config.cache_mib == 64
    assert config.minirdr("a").caching == "off" and config.minirdr("b").caching == "exclusive"
    assert "caching" not in config.minirdr("b").options  # the core's, not the kind's option
    assert Config.from_json(config.to_json()) == config


def test_load_config_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("RDBSS_CONFIG", raising=False)
    assert load_config().source is None  # nothing there: the embedded default
    (tmp_path / "rdbss").mkdir()
    (tmp_path / "rdbss" / "config.toml").write_text(GOOD)
    assert load_config().source == tmp_path / "rdbss" / "config.toml"
    other = tmp_path / "other.toml"
    other.write_text(GOOD)
    monkeypatch.setenv("RDBSS_CONFIG", str(other))
    assert load_config().source == other
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_embedded_default_serves_local_data() -> None:
    config = embedded_default()
    (local,) = config.minirdrs
    assert local.kind == "local" and local.options["server"] == "local"
    assert "data" in local.options["shares"]
