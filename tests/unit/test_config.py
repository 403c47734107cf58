"""Configuration: the TOML file, its errors, the default location and the embedded default."""

from __future__ import annotations

import re
import subprocess
import sys
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
        (
            "[daemon]\nfrobs = 1\n[[minirdr]]\nname='a'\nkind='local'\n",
            "daemon: unknown key 'frobs'",
        ),
        ("[daemon]\n", "at least one [[minirdr]]"),
        ("[[minirdr]]\nname='a'\nkind='gopher'\n", "minirdr[0] (a).kind: expected one of"),
        ("[[minirdr]]\nname='a b'\nkind='local'\n", "minirdr[0].name: expected letters"),
        ("[[minirdr]]\nname='core'\nkind='local'\n", "reserved"),
        ("[[minirdr]]\nname='a'\nkind='local'\n[[minirdr]]\nname='a'\nkind='local'\n", "twice"),
        (
            "[daemon]\nrequest_timeout = -1\n[[minirdr]]\nname='a'\nkind='local'\n",
            "request_timeout: Expected float > 0",
        ),
        ("[daemon]\nlog_level = 'loud'\n[[minirdr]]\nname='a'\nkind='local'\n", "log_level"),
        ("[daemon]\nprovider_order=['x']\n[[minirdr]]\nname='a'\nkind='local'\n", "provider_order"),
        (
            "[daemon]\nclose_delay = -1\n[[minirdr]]\nname='a'\nkind='local'\n",
            "close_delay: Expected float >= 0",
        ),
        (
            "[daemon]\nattr_cache_entries = -1\n[[minirdr]]\nname='a'\nkind='local'\n",
            "attr_cache_entries: Expected int >= 0",
        ),
        (
            "[daemon]\nattr_max_age = 'long'\n[[minirdr]]\nname='a'\nkind='local'\n",
            "attr_max_age: Expected float, got str",
        ),
        (
            "[daemon]\nmax_delayed_closes = 1.5\n[[minirdr]]\nname='a'\nkind='local'\n",
            "max_delayed_closes: Expected int, got float",
        ),
        ("[[minirdr]]\nname='a'\nkind='local'\ncaching='always'\n", "caching must be one of"),
    ],
)
def test_bad_configs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text)


def test_buffering_settings_and_caching_per_minirdr() -> None:
    text = GOOD.replace("provider_order", "close_delay = 0\nwrite_behind = 2\nprovider_order")
    text = text.replace('server = "two"', 'server = "two"\ncaching = "exclusive"')
    config = parse_config(text)
    assert config.close_delay == 0 and config.write_behind == 2.0
    assert config.max_delayed_closes == 64 and config.cache_mib == 64
    assert config.attr_cache_entries == 4096 and config.attr_max_age == 30.0
    text = text.replace(
        "close_delay = 0", "close_delay = 0\nattr_cache_entries = 0\nattr_max_age = 2"
    )
    config = parse_config(text)
    assert config.attr_cache_entries == 0 and config.attr_max_age == 2.0
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # a misspelt table or key is an error naming it, the nearest known key and the others
        ("[deamon]\n", r"top level: unknown key 'deamon' \(did you mean 'daemon'\?\)"),
        ("[[minirdr]]\nname='a'\nkind='local'\nsharez={d='/x'}\n", "did you mean 'shares'"),
        ("[daemon]\nmetrics_port = 70000\n", r"daemon.metrics_port: Expected int <= 65535"),
        ("[daemon]\nlog_format = 'xml'\n", "log_format must be one of logfmt, json"),
        # each kind has its own options; table keys (server names) are named in the path
        (
            "[[minirdr]]\nname='s'\nkind='smb'\n[minirdr.servers.one]\nhost='h'\nusername='u'\n"
            "[minirdr.servers.two]\nhost='h'\nusername='u'\nport=0\n",
            r"minirdr\[0\] \(s\).servers.two.port: Expected int >= 1",
        ),
        (
            "[[minirdr]]\nname='s'\nkind='smb'\n[minirdr.servers.one]\nhost='h'\nusername='u'\n"
            "encrypt='yes'\n",
            "servers.one.encrypt: Expected bool, got str",
        ),
        (
            "[[minirdr]]\nname='s'\nkind='sftp'\n[minirdr.servers.one]\nhost='h'\nusername='u'\n",
            "servers.one: missing key 'shares'",
        ),
        (
            "[[minirdr]]\nname='w'\nkind='webdav'\ntimeout=0\n",
            r"minirdr\[0\] \(w\).timeout: Expected float > 0",
        ),
        (
            "[[minirdr]]\nname='w'\nkind='webdav'\n[minirdr.servers.x]\nurl='ftp://x'\n",
            "servers.x: url must start with http",
        ),
        # faulty: its own options, the wrapped kind's options and every rule
        ("[[minirdr]]\nname='f'\nkind='faulty'\nwraps='gopher'\n", "wraps must be one of"),
        (
            "[[minirdr]]\nname='f'\nkind='faulty'\nwraps='local'\n[minirdr.options]\nsharez={}\n",
            r"minirdr\[0\] \(f\).options: unknown key 'sharez'",
        ),
        (
            "[[minirdr]]\nname='f'\nkind='faulty'\nwraps='local'\n[[minirdr.rules]]\n"
            "action='delay'\nprobability=2\n",
            r"rules\[0\].probability: Expected float <= 1",
        ),
        (
            "[[minirdr]]\nname='f'\nkind='faulty'\nwraps='local'\n[[minirdr.rules]]\n"
            "action='status'\nroutine='MRxNope'\nstatus='STATUS_IO_TIMEOUT'\n",
            "unknown routine 'MRxNope'",
        ),
    ],
)
def test_typos_wrong_types_and_ranges_are_errors(text: str, message: str) -> None:
    if "[[minirdr]]" not in text:
        text += "[[minirdr]]\nname='a'\nkind='local'\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, Path("/etc/rdbss/x.toml"))
    with pytest.raises(ConfigError, match=r"^/etc/rdbss/x\.toml: "):  # the file is named
        parse_config(text, Path("/etc/rdbss/x.toml"))


def test_every_kind_accepts_its_documented_options(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw")
    secret.chmod(0o600)
    text = f"""
[daemon]
log_format = "json"
log_file = "~/rdbss.log"
[[minirdr]]
name = "l"
kind = "local"
server = "l"
aliases = ["l2"]
notify_interval = 0.5
shares = {{ data = "/srv/x" }}
[[minirdr]]
name = "s"
kind = "smb"
timeout = 5
keepalive_interval = 0
[minirdr.servers.nas]
host = "h"
port = 445
username = "u"
password_file = "{secret}"
encrypt = true
[[minirdr]]
name = "f"
kind = "sftp"
[minirdr.servers.box]
host = "h"
username = "u"
key_file = ["/k"]
host_key_check = false
shares = {{ data = "/srv" }}
[[minirdr]]
name = "w"
kind = "webdav"
staging_dir = "/tmp"
[minirdr.servers.dav]
url = "http://h/dav"
username = "u"
password_env = "PW"
verify = "/ca.pem"
[[minirdr]]
name = "x"
kind = "faulty"
wraps = "local"
seed = 3
options = {{ server = "x" }}
[[minirdr.rules]]
action = "status"
routine = "MRxCreate"
status = "STATUS_IO_TIMEOUT"
every = 2
"""
    config = parse_config(text)
    assert [m.kind for m in config.minirdrs] == ["local", "smb", "sftp", "webdav", "faulty"]
    assert config.minirdr("s").options["servers"]["nas"]["port"] == 445  # passed on as written
    assert config.log_format == "json" and config.log_file == str(Path.home() / "rdbss.log")
    assert Config.from_json(config.to_json()) == config


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw")
    secret.chmod(0o644)
    text = (
        "[[minirdr]]\nname='s'\nkind='smb'\n[minirdr.servers.nas]\nhost='h'\nusername='u'\n"
        f"password_file='{secret}'\n"
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert f"chmod 600 {secret}" in str(refused.value)
    assert "servers.nas.password_file" in str(refused.value) and "0644" in str(refused.value)
    secret.chmod(0o600)
    assert parse_config(text).minirdr("s").kind == "smb"


def test_check_config_validates_without_starting(tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rdbss.cli", "daemon", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    example = Path(__file__).resolve().parents[2] / "deploy" / "config.example.toml"
    good = check(example)
    assert good.returncode == 0 and "ok; mini-redirectors: local (local)" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[deamon]\n[[minirdr]]\nname='a'\nkind='local'\n")
    refused = check(bad)
    assert refused.returncode == 2
    assert f"{bad}: top level: unknown key 'deamon' (did you mean 'daemon'?)" in refused.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_smb_min_dialect_and_per_share_users_are_checked(tmp_path: Path) -> None:
    good = """
[[minirdr]]
name = "smb"
kind = "smb"
[minirdr.servers.s]
host = "h"
username = "u"
min_dialect = "3.0"
[minirdr.servers.s.shares.payroll]
username = "other"
password_env = "PAYROLL_PW"
"""
    path = tmp_path / "c.toml"
    path.write_text(good)
    load_config(path)
    path.write_text(good.replace('"3.0"', '"3.5"'))
    with pytest.raises(ConfigError, match="min_dialect"):
        load_config(path)
    path.write_text(good.replace("password_env", "pasword_env"))
    with pytest.raises(ConfigError, match="pasword_env"):
        load_config(path)


def test_the_schema_names_the_dialects_the_smb_mini_redirector_knows() -> None:
    from rdbss.config_schema import SMB_DIALECTS
    from rdbss.minirdrs.smb.config import DIALECTS

    assert set(SMB_DIALECTS) == set(DIALECTS)
