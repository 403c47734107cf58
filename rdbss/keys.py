"""CURVE keys for tcp:// links, and the allow-list of who may use them.

Key pairs are ZeroMQ certificates (the czmq/pyzmq format): ``NAME.key`` holds the public key
and may be shared; ``NAME.key_secret`` holds both and is readable by its owner only
(``rdbss keys generate NAME``). A secret key file readable by others is refused.

The allow-list (``authorized_keys``) names each public key and what it may do, one per line::

    # public key (Z85, 40 characters)          label    grants
    rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7     nodeb    peer:smb_b,peer:sftp_b
    Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID     alice    client

Grants: ``peer:NAME`` lets the key register the mini-redirector NAME over the peer port
(``peer:*`` any name but the daemon's own processes); ``client`` lets it use the client port.
A key not on the list, or used for something it was not granted, gets nothing: the CURVE
handshake is refused before a single message reaches the core.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

KEY_LEN = 40  # Z85 of 32 bytes
RESERVED_PEERS = frozenset({"core", "connmgr"})


class KeyFileError(ValueError):
    """A key file or the allow-list is missing, malformed or unsafe."""


@dataclass(frozen=True, slots=True)
class Grant:
    label: str
    client: bool
    peers: frozenset[str]  # mini-redirector names; "*" = any

    def may_register(self, name: str) -> bool:
        if name in RESERVED_PEERS:
            return False
        return "*" in self.peers or name in self.peers


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes  # Z85
    secret: bytes  # Z85


def _valid_key(text: str) -> bool:
    if len(text) != KEY_LEN:
        return False
    try:
        return len(zmq.utils.z85.decode(text.encode("ascii"))) == 32
    # z85 raises KeyError off its alphabet, and struct.error for a group worth 2**32 or more
    except (ValueError, KeyError, UnicodeEncodeError, struct.error):
        return False


def parse_authorized_keys(text: str, where: str = "authorized_keys") -> dict[bytes, Grant]:
    """The allow-list: public key (Z85 bytes) -> grant. Pure; raises KeyFileError with the line."""
    grants: dict[bytes, Grant] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        # Z85 keys may contain '#': a comment line starts with '#' and a space (or is '#'
        # alone); after the three fields, anything starting with '#' is a comment
        fields = raw.split()
        if not fields or fields[0] == "#" or raw.lstrip().startswith("# "):
            continue
        if len(fields) > 3 and fields[3].startswith("#"):
            fields = fields[:3]
        if len(fields) != 3:
            raise KeyFileError(f"{where}:{number}: expected 'PUBLIC_KEY LABEL GRANTS'")
        key, label, grant_text = fields
        if not _valid_key(key):
            raise KeyFileError(f"{where}:{number}: {key!r} is not a 40-character Z85 public key")
        client = False
        peers: set[str] = set()
        for grant in grant_text.split(","):
            if grant == "client":
                client = True
            elif (
                grant.startswith("peer:")
                and grant[5:]
                and (grant[5:] == "*" or grant[5:].isidentifier())
            ):
                peers.add(grant[5:])
            else:
                raise KeyFileError(
                    f"{where}:{number}: unknown grant {grant!r} (client, peer:NAME or peer:*)"
                )
        if key.encode() in grants:
            raise KeyFileError(f"{where}:{number}: key listed twice")
        grants[key.encode()] = Grant(label, client, frozenset(peers))
    return grants


def load_authorized_keys(path: Path) -> dict[bytes, Grant]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"cannot read the allow-list {path}: {exc.strerror}") from None
    return parse_authorized_keys(text, str(path))


def generate(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (mode 0600) into ``directory``."""
    if not name.replace("-", "_").isidentifier():
        raise KeyFileError(f"key name {name!r}: use letters, digits, - and _")
    directory.mkdir(parents=True, exist_ok=True)
    public_file = directory / f"{name}.key"
    secret_file = directory / f"{name}.key_secret"
    for f in (public_file, secret_file):
        if f.exists():
            raise KeyFileError(f"{f} exists; remove it first to make a new key")
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret_file, 0o600)
    os.chmod(public_file, 0o644)
    return public_file, secret_file


def load_secret(path: Path) -> KeyPair:
    """A key pair from a NAME.key_secret file; refused when others can read it."""
    try:
        info = path.stat()
    except OSError as exc:
        raise KeyFileError(f"cannot read the secret key {path}: {exc.strerror}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise KeyFileError(
            f"secret key {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"chmod 600 {path}"
        )
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path} is not a ZeroMQ certificate: {exc}") from None
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (that is the .key_secret file's job)")
    return KeyPair(public, secret)


def load_public(text_or_path: str) -> bytes:
    """A public key given inline (40 Z85 characters) or as a path to a NAME.key file."""
    if _valid_key(text_or_path):
        return text_or_path.encode()
    path = Path(os.path.expanduser(text_or_path))
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(
            f"{text_or_path!r} is neither a Z85 public key nor a readable key file: {exc}"
        ) from None
    return public
