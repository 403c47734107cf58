"""Multi-host: the core on host A, a node (mini-redirectors only) on host B, over tcp:// with
CURVE. Hosts are network namespaces joined by a veth pair that the tests cut and restore."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss import keys
from rdbss.actors.supervisor import stop_daemon
from rdbss.client import Client
from rdbss.wire.codec import Codec
from rdbss.wire.framing import pack_frames
from rdbss.wire.rxcontext import Register
from rdbss.wire.status import NETWORK_ERRORS, NtStatus, NtStatusError
from tests.daemon import wait_until
from tests.rig.netns import Host, NetnsRig, RigUnavailable

S = NtStatus
PORT = 7700
CLIENT_PORT = 7701
REMOTE = r"\\nodeb\data"
LOCAL = r"\\local\data"


@dataclass
class Rig:
    net: NetnsRig
    base: Path
    core_host: Host
    node_host: Host
    core_runtime: Path
    node_runtime: Path
    core_config: Path
    node_config: Path
    node_share: Path
    local_share: Path

    def client(self, timeout: float = 8.0) -> Client:
        return Client(self.core_runtime, timeout=timeout)

    def peers(self) -> dict[str, dict[str, object]]:
        with self.client(timeout=3) as c:
            return {p["name"]: p for p in c.status()["peers"]}

    def node_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.node_host.run(
            [sys.executable, "-m", "rdbss.cli", "--config", str(self.node_config), *args]
        )

    def logs(self) -> str:
        out = []
        for f in (self.base / "core.log", self.base / "node.log"):
            out.append(f.read_text(errors="replace") if f.exists() else "")
        return "\n".join(out)


def _start(host: Host, config: Path, runtime: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = host.popen(
            [sys.executable, "-m", "rdbss.cli", "--config", str(config), "daemon", "run"],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while not (runtime / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"daemon did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def _authorized(base: Path, node_key: bytes, grants: str = "peer:remote") -> Path:
    path = base / "authorized_keys"
    path.write_text(f"# who may connect\n{node_key.decode()}  nodeb  {grants}\n")
    return path


@pytest.fixture
def rig() -> Iterator[Rig]:
    try:
        net = NetnsRig().__enter__()
    except RigUnavailable as exc:
        if os.environ.get("RDBSS_REQUIRE_SERVERS"):
            raise
        pytest.skip(str(exc))
    base = Path(tempfile.mkdtemp(prefix="rdm-", dir="/tmp"))
    try:
        a, b = net.hosts
        keys.generate(base / "keys", "core")
        keys.generate(base / "keys", "nodeb")
        node_key = keys.load_public(str(base / "keys" / "nodeb.key"))
        _authorized(base, node_key)
        local_share, node_share = base / "ashare", base / "bshare"
        local_share.mkdir()
        node_share.mkdir()
        core_config = base / "core.toml"
        core_config.write_text(
            f"""[daemon]
runtime_dir = "{base / "a"}"
request_timeout = 6.0
connect_timeout = 4.0
secret_key = "{base / "keys" / "core.key_secret"}"
peer_listen = "tcp://{a.address}:{PORT}"
client_listen = "tcp://{a.address}:{CLIENT_PORT}"
remote_client_grace = 4.0
authorized_keys = "{base / "authorized_keys"}"

[[minirdr]]
name = "local"
kind = "local"
server = "local"
[minirdr.shares]
data = "{local_share}"
"""
        )
        node_config = base / "node.toml"
        node_config.write_text(
            f"""[daemon]
runtime_dir = "{base / "b"}"
secret_key = "{base / "keys" / "nodeb.key_secret"}"

[node]
core = "tcp://{a.address}:{PORT}"
core_key = "{base / "keys" / "core.key"}"

[[minirdr]]
name = "remote"
kind = "local"
server = "nodeb"
[minirdr.shares]
data = "{node_share}"
"""
        )
        _start(a, core_config, base / "a", base / "core.log")
        _start(b, node_config, base / "b", base / "node.log")
        r = Rig(
            net, base, a, b, base / "a", base / "b", core_config, node_config, node_share,
            local_share,
        )  # fmt: skip
        wait_until(lambda: "remote" in r.peers(), timeout=20)
        yield r
    finally:
        net.close()
        shutil.rmtree(base, ignore_errors=True)


def test_a_node_registers_over_tcp_and_serves_its_share(rig: Rig) -> None:
    peer = rig.peers()["remote"]
    assert peer["host"], "a node's mini-redirector says which host it runs on"
    with rig.client() as c:
        c.write_bytes(REMOTE + r"\hello.txt", b"from host A")
        assert c.read_bytes(REMOTE + r"\hello.txt") == b"from host A"
        assert c.listdir(REMOTE) == ["hello.txt"]
    # the bytes are in host B's folder, written by the process on host B
    assert (rig.node_share / "hello.txt").read_bytes() == b"from host A"
    status = rig.node_cli("--json", "daemon", "status")
    assert status.returncode == 0, status.stderr
    assert '"connected": true' in status.stdout


def test_the_link_is_encrypted(rig: Rig) -> None:
    """What crosses the link is CURVE ciphertext: a marker written through rdbss never shows
    on the wire in clear (captured on host A's end of the link)."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump not installed")
    marker = b"PLAINTEXT-MARKER-" + os.urandom(4).hex().encode()
    capture = rig.base / "link.pcap"
    dump = rig.core_host.popen(
        ["tcpdump", "-i", rig.core_host.link, "-w", str(capture), "-U", "tcp", "port", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: capture.exists(), timeout=10)
        time.sleep(0.5)
        with rig.client() as c:
            c.write_bytes(REMOTE + r"\secret.txt", marker * 100)
            assert c.read_bytes(REMOTE + r"\secret.txt") == marker * 100
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    data = capture.read_bytes()
    assert len(data) > 2 * len(marker) * 100, "the capture saw the traffic"
    assert marker not in data


def test_an_unknown_key_gets_nothing(rig: Rig) -> None:
    """A node whose key is not on the allow-list, and a socket without CURVE at all, get no
    registration and no answer; the allowed node keeps working."""
    intruder = rig.base / "intruder"
    keys.generate(rig.base / "keys", "intruder")
    config = rig.base / "intruder.toml"
    config.write_text(
        rig.node_config.read_text()
        .replace(str(rig.base / "b"), str(intruder))
        .replace("nodeb.key_secret", "intruder.key_secret")
        .replace('name = "remote"', 'name = "evil"')
        .replace('server = "nodeb"', 'server = "evilsrv"')
    )
    _start(rig.node_host, config, intruder, rig.base / "intruder.log")
    # and a plain socket on host B, no CURVE, registering the allowed name
    script = (
        "import zmq,sys;c=zmq.Context();s=c.socket(zmq.DEALER);s.linger=0;"
        "s.setsockopt(zmq.IDENTITY,b'remote');"
        f"s.connect('tcp://{rig.core_host.address}:{PORT}');"
        "s.send_multipart([bytes.fromhex(sys.argv[1])]);"
        "print('answered' if s.poll(3000) else 'nothing')"
    )
    frame = pack_frames(Codec(), Register("remote", "local", [], [], ["nodeb"]))[0]
    plain_run = rig.node_host.run([sys.executable, "-c", script, bytes(frame).hex()])
    assert plain_run.stdout.strip() == "nothing", plain_run.stderr
    time.sleep(3)  # several registration attempts of the intruder
    peers = rig.peers()
    assert "evil" not in peers
    assert peers["remote"]["pid"] != 0
    assert "refused unknown key" in rig.logs()
    with rig.client() as c, pytest.raises(NtStatusError) as info:
        c.read_bytes(r"\\evilsrv\data\x")
    assert info.value.status in (S.STATUS_BAD_NETWORK_PATH, S.STATUS_BAD_NETWORK_NAME)
    with rig.client() as c:
        c.write_bytes(REMOTE + r"\still.txt", b"ok")


def test_a_key_only_registers_the_names_it_is_granted(rig: Rig) -> None:
    """The allow-list is re-read when it changes: granting nodeb's key another name only lets
    a process with that name in once the line says so."""
    text = rig.node_config.read_text()
    extra = rig.base / "node2.toml"
    extra.write_text(
        text.replace(str(rig.base / "b"), str(rig.base / "b2"))
        .replace('name = "remote"', 'name = "second"')
        .replace('server = "nodeb"', 'server = "nodec"')
    )
    _start(rig.node_host, extra, rig.base / "b2", rig.base / "node2.log")
    time.sleep(3)
    assert "second" not in rig.peers()
    node_key = keys.load_public(str(rig.base / "keys" / "nodeb.key"))
    _authorized(rig.base, node_key, "peer:remote,peer:second")
    wait_until(lambda: "second" in rig.peers(), timeout=20)


def _remote_cli(
    rig: Rig, key: str, *args: str, timeout: float = 5
) -> subprocess.CompletedProcess[str]:
    """The rdbss command on host B, using host A's daemon over tcp:// (no daemon on B for it)."""
    keys_dir = rig.base / "keys"
    remote = [
        f"--connect=tcp://{rig.core_host.address}:{CLIENT_PORT}",
        f"--core-key={keys_dir / 'core.key'}",
        f"--key={keys_dir / f'{key}.key_secret'}",
    ]
    argv = [sys.executable, "-m", "rdbss.cli", "--timeout", str(timeout), *remote, *args]
    return rig.node_host.run(argv, timeout=60)


def test_a_client_on_another_host_uses_the_daemon_over_tcp(rig: Rig) -> None:
    keys.generate(rig.base / "keys", "alice")
    alice = keys.load_public(str(rig.base / "keys" / "alice.key")).decode()
    node_key = keys.load_public(str(rig.base / "keys" / "nodeb.key")).decode()
    (rig.base / "authorized_keys").write_text(
        f"{node_key} nodeb peer:remote\n{alice} alice client\n"
    )
    source = rig.base / "upload.bin"
    source.write_bytes(os.urandom(300_000))
    put = _remote_cli(rig, "alice", "put", "-q", str(source), "//local/data/upload.bin")
    assert put.returncode == 0, put.stderr
    assert (rig.local_share / "upload.bin").read_bytes() == source.read_bytes()
    cat = _remote_cli(rig, "alice", "--json", "stat", "//remote-does-not-exist/x/y")
    assert cat.returncode == 1 and "STATUS_" in cat.stderr
    status = _remote_cli(rig, "alice", "status")
    assert status.returncode == 0 and "remote" in status.stdout, status.stderr
    # the node's key is a peer key, not a client key: its CURVE handshake on the client port
    # is refused, and the client says so at once (never a partial answer)
    refused = _remote_cli(rig, "nodeb", "ls", "//local/data", timeout=5)
    assert refused.returncode == 1
    assert "STATUS_LOGON_FAILURE" in refused.stderr and "key refused by" in refused.stderr
    assert "refused key nodeb" in rig.logs()


def test_a_remote_client_that_stays_unreachable_loses_its_handles(rig: Rig) -> None:
    """Handles of a client on another host are closed once it has been unreachable for the
    grace time (4 s here): its link is cut while it holds a handle open."""
    keys.generate(rig.base / "keys", "bob")
    bob = keys.load_public(str(rig.base / "keys" / "bob.key")).decode()
    (rig.base / "authorized_keys").write_text(f"{bob} bob client\n")
    script = f"""
import sys, time
from rdbss.client import Client
from rdbss.config import RemoteDaemon
remote = RemoteDaemon("tcp://{rig.core_host.address}:{CLIENT_PORT}",
                      "{rig.base / "keys" / "core.key"}", "{rig.base / "keys" / "bob.key_secret"}")
with Client(remote=remote, timeout=5) as c:
    f = c.open(r"{LOCAL}\\held.txt", "wb")
    f.write(b"x")
    print("open", flush=True)
    time.sleep(60)
"""
    holder = rig.node_host.popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], 20)  # its own deadline
    assert ready, "the remote client did not open its file in time"
    assert holder.stdout.readline().strip() == "open"

    def handles() -> int:
        with rig.client(timeout=3) as c:
            return int(c.status()["handles"])

    assert handles() == 1
    time.sleep(6)  # reachable: kept however long it is quiet
    assert handles() == 1
    rig.net.cut()
    try:
        wait_until(lambda: handles() == 0, timeout=25)
    finally:
        rig.net.restore()
        holder.kill()
    assert "unreachable for" in rig.logs()


def test_the_node_supervisor_restarts_a_killed_minirdr(rig: Rig) -> None:
    before = rig.peers()["remote"]["pid"]
    found = subprocess.run(
        ["pgrep", "-f", f"rdbss.actors.process minirdr remote {rig.node_runtime}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found, "the remote mini-redirector runs on host B"
    os.kill(int(found[0]), signal.SIGKILL)
    wait_until(lambda: rig.peers().get("remote", {}).get("pid") not in (None, before), 30)
    with rig.client() as c:
        c.write_bytes(REMOTE + r"\after.txt", b"back")
    assert (rig.node_share / "after.txt").read_bytes() == b"back"


def test_cutting_the_link_fails_remote_requests_only_and_restoring_it_recovers(rig: Rig) -> None:
    before = rig.peers()["remote"]["pid"]
    with rig.client() as c:
        c.write_bytes(REMOTE + r"\kept.txt", b"before the cut")
        handle = c.open(REMOTE + r"\kept.txt", "rb")
        assert handle.read() == b"before the cut"
        rig.net.cut()
        started = time.monotonic()
        # the node is declared down within its heartbeat timeout; requests to it then fail
        # with a network status, in bounded time
        with pytest.raises(NtStatusError) as info:
            for _ in range(20):
                c.read_bytes(REMOTE + r"\kept.txt")
                time.sleep(0.5)
        assert info.value.status in NETWORK_ERRORS, info.value.status_name
        assert time.monotonic() - started < 20
        # the rest of the daemon never noticed
        c.write_bytes(LOCAL + r"\during.txt", b"local still works")
        assert c.read_bytes(LOCAL + r"\during.txt") == b"local still works"
        assert "remote" not in rig.peers()
        wait_until(lambda: '"connected": false' in rig.node_cli("--json", "status").stdout, 10)
        rig.net.restore()
        # the node's process hears the core again, learns it was dropped (registered anew)
        # and restarts clean: a new pid registers
        wait_until(lambda: rig.peers().get("remote", {}).get("pid") not in (None, before), 30)
        # new requests work, and the handle opened before the cut is re-opened by path
        assert c.read_bytes(REMOTE + r"\kept.txt") == b"before the cut"
        handle.seek(0)
        assert handle.read() == b"before the cut"
        handle.close()
    assert "restarts clean (the core dropped it)" in rig.logs()


def test_a_node_outlives_a_core_restart(rig: Rig) -> None:
    """The core's host restarts its daemon: the node keeps running, reports the core
    unreachable meanwhile, and its mini-redirector registers with the new core by itself."""
    before = rig.peers()["remote"]["pid"]
    assert stop_daemon(rig.core_runtime) is not None
    wait_until(lambda: '"connected": false' in rig.node_cli("--json", "status").stdout, 15)
    _start(rig.core_host, rig.core_config, rig.core_runtime, rig.base / "core.log")
    wait_until(lambda: "remote" in rig.peers(), timeout=30)
    with rig.client() as c:
        c.write_bytes(REMOTE + r"\after-restart.txt", b"again")
    assert (rig.node_share / "after-restart.txt").read_bytes() == b"again"
    assert rig.peers()["remote"]["pid"] != before  # restarted clean: the new core knew nothing


def test_a_node_refuses_to_start_without_safe_keys(tmp_path: Path) -> None:
    keys.generate(tmp_path, "n")
    secret = tmp_path / "n.key_secret"
    os.chmod(secret, 0o644)
    config = tmp_path / "node.toml"
    config.write_text(
        f"""[daemon]
runtime_dir = "{tmp_path / "run"}"
secret_key = "{secret}"
[node]
core = "tcp://127.0.0.1:7700"
core_key = "{tmp_path / "n.key"}"
[[minirdr]]
name = "x"
kind = "local"
server = "x"
"""
    )
    run = subprocess.run(
        [sys.executable, "-m", "rdbss.cli", "--config", str(config), "daemon", "start"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert "readable by others" in run.stderr
    with contextlib.suppress(FileNotFoundError):
        assert not (tmp_path / "run" / "ready").exists()
