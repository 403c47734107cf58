"""Key files, the allow-list and the ZAP decisions (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from rdbss import keys
from rdbss.actors.zap import CLIENT_DOMAIN, PEER_DOMAIN, AllowList, ZapHandler
from rdbss.config import ConfigError, parse_config

NODE = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
ALICE = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"


def test_the_allow_list_reads_keys_labels_and_grants() -> None:
    grants = keys.parse_authorized_keys(
        f"# comment\n\n{NODE}  nodeb  peer:smb_b,peer:sftp_b  # trailing\n{ALICE} alice client\n"
    )
    node, alice = grants[NODE.encode()], grants[ALICE.encode()]
    assert node.label == "nodeb" and not node.client
    assert node.may_register("smb_b") and not node.may_register("other")
    assert alice.client and not alice.peers


@pytest.mark.parametrize(
    ("line", "error", "number"),
    [
        (f"{NODE} nodeb", "expected", 2),
        (f"{NODE[:-1]} nodeb client", "Z85 public key", 2),
        (f"{NODE[:-1]}\x7f nodeb client", "Z85 public key", 2),  # a byte outside Z85
        (f"{NODE} nodeb admin", "unknown grant", 2),
        (f"{NODE} nodeb peer:", "unknown grant", 2),
        (f"{NODE} nodeb client\n{NODE} again client", "listed twice", 3),
    ],
)
def test_a_bad_allow_list_line_is_refused_with_its_line_number(
    line: str, error: str, number: int
) -> None:
    with pytest.raises(keys.KeyFileError, match=error) as info:
        keys.parse_authorized_keys("# header\n" + line)
    assert f"authorized_keys:{number}:" in str(info.value)


def test_the_daemons_own_names_are_never_granted() -> None:
    grants = keys.parse_authorized_keys(f"{NODE} n peer:*")
    grant = grants[NODE.encode()]
    assert grant.may_register("anything")
    assert not grant.may_register("core") and not grant.may_register("connmgr")


def test_generated_keys_load_and_an_exposed_secret_is_refused(tmp_path: Path) -> None:
    public, secret = keys.generate(tmp_path, "host1")
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    pair = keys.load_secret(secret)
    assert keys.load_public(str(public)) == pair.public
    assert keys.load_public(pair.public.decode()) == pair.public
    with pytest.raises(keys.KeyFileError, match="exists"):
        keys.generate(tmp_path, "host1")
    os.chmod(secret, 0o640)
    with pytest.raises(keys.KeyFileError, match="readable by others"):
        keys.load_secret(secret)
    with pytest.raises(keys.KeyFileError, match="no secret key"):
        os.chmod(public, 0o600)
        keys.load_secret(public)


def _zap(handler: ZapHandler, domain: str, key: bytes, mechanism: bytes = b"CURVE") -> bytes:
    reply = handler.decide(
        [b"1.0", b"7", domain.encode(), b"10.0.0.2", b"", mechanism, z85.decode(key)]
    )
    assert reply[1] == b"7"
    return reply[2]


def test_zap_admits_granted_keys_only_and_follows_file_changes(tmp_path: Path) -> None:
    allow_file = tmp_path / "authorized_keys"
    allow_file.write_text(f"{NODE} nodeb peer:remote\n")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        handler = ZapHandler(ctx, AllowList(allow_file))
        assert _zap(handler, PEER_DOMAIN, NODE.encode()) == b"200"
        assert _zap(handler, CLIENT_DOMAIN, NODE.encode()) == b"400"  # not granted "client"
        assert _zap(handler, PEER_DOMAIN, ALICE.encode()) == b"400"  # unknown key
        assert _zap(handler, PEER_DOMAIN, NODE.encode(), b"NULL") == b"400"
        assert handler.decide([b"1.0"])[2] == b"500"
        # revoke nodeb, admit alice as a client: no restart needed
        allow_file.write_text(f"{ALICE} alice client\n")
        os.utime(allow_file, ns=(1, 1))  # a different mtime even within one clock tick
        assert _zap(handler, PEER_DOMAIN, NODE.encode()) == b"400"
        assert _zap(handler, CLIENT_DOMAIN, ALICE.encode()) == b"200"
        # a broken edit keeps the last good list
        allow_file.write_text("garbage line\n")
        assert _zap(handler, CLIENT_DOMAIN, ALICE.encode()) == b"200"
        handler.stop()
    finally:
        ctx.destroy(0)


def test_tcp_settings_need_their_keys(tmp_path: Path) -> None:
    base = """[[minirdr]]\nname = "l"\nkind = "local"\nserver = "l"\n"""
    with pytest.raises(ConfigError, match="secret_key"):
        parse_config('[daemon]\npeer_listen = "tcp://0.0.0.0:7700"\n' + base)
    with pytest.raises(ConfigError, match=r"tcp://HOST:PORT"):
        parse_config('[daemon]\npeer_listen = "0.0.0.0:7700"\n' + base)
    _, secret = keys.generate(tmp_path, "k")
    with pytest.raises(ConfigError, match="authorized_keys"):
        parse_config(f'[daemon]\nsecret_key = "{secret}"\npeer_listen = "tcp://h:1"\n' + base)
    with pytest.raises(ConfigError, match="core_key"):
        parse_config(f'[daemon]\nsecret_key = "{secret}"\n[node]\ncore = "tcp://h:1"\n' + base)
    config = parse_config(
        f'[daemon]\nsecret_key = "{secret}"\n[node]\ncore = "tcp://h:1"\n'
        f'core_key = "{tmp_path / "k.key"}"\n' + base
    )
    assert config.node is not None and config.node.core == "tcp://h:1"
    assert type(config).from_json(config.to_json()).node == config.node


def test_the_multi_host_examples_in_deploy_are_valid(tmp_path: Path) -> None:
    """deploy/multi-host: the allow-list parses, and each config parses once its key paths
    point at real keys (the files under /etc/rdbss do not exist here)."""
    deploy = Path(__file__).parents[2] / "deploy" / "multi-host"
    grants = keys.load_authorized_keys(deploy / "authorized_keys")
    assert {g.label for g in grants.values()} == {"nodeb", "alice"}
    for name in ("core", "nodeb", "alice"):
        keys.generate(tmp_path, name)
    allow = tmp_path / "authorized_keys"
    allow.write_text((deploy / "authorized_keys").read_text())
    for example in ("core.toml", "node.toml", "client.toml"):
        text = (deploy / example).read_text()
        text = text.replace("/etc/rdbss/keys", str(tmp_path)).replace(
            "~/.config/rdbss", str(tmp_path)
        )
        text = text.replace("/etc/rdbss/authorized_keys", str(allow))
        config = parse_config(text, deploy / example)
        if example == "node.toml":
            assert config.node is not None and {m.name for m in config.minirdrs} == {
                "smb_b",
                "disk_b",
            }
            assert all(
                any(g.may_register(m.name) for g in grants.values()) for m in config.minirdrs
            )
        elif example == "client.toml":
            assert config.client is not None and not config.minirdrs
        else:
            assert config.peer_listen and config.client_listen


def test_a_key_with_characters_outside_z85_is_refused_not_a_crash() -> None:
    """Found by the atheris run: z85.decode raises KeyError for a byte outside its alphabet."""
    # and (the second atheris find) Z85 characters whose five-character group is worth 2**32
    # or more: struct.error
    for bad in (NODE[:-1] + "\x7f", "#" * 40):
        with pytest.raises(keys.KeyFileError, match="Z85 public key"):
            keys.parse_authorized_keys(f"{bad} n client")
        with pytest.raises(keys.KeyFileError):
            keys.load_public(bad)


def test_a_broken_allow_list_at_start_admits_nobody_until_fixed(tmp_path: Path) -> None:
    """The core restarting with a broken allow-list must not crash (the supervisor would give
    up on it, and this host's own clients with it): it admits no key until the file is fixed."""
    allow_file = tmp_path / "authorized_keys"
    allow_file.write_text("not a key line\n")
    allow = AllowList(allow_file)
    assert allow.grants == {}
    allow_file.write_text(f"{NODE} nodeb peer:remote\n")
    os.utime(allow_file, ns=(1, 1))
    allow.refresh()
    assert allow.grant(NODE) is not None
