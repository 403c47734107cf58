"""A bounded atheris run over the wire codec, UNC names and the allow-list parser, seeded with
valid messages so the fuzzer starts from inputs deep in the decoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rdbss.wire.codec import Codec
from rdbss.wire.constants import IrpMj
from rdbss.wire.framing import pack_frames
from rdbss.wire.rxcontext import (
    CreateParameters,
    Heartbeat,
    LowIoParameters,
    Register,
    RequestBundle,
    RxCompletion,
    RxContext,
)

pytest.importorskip("atheris")  # installed by the test extra; a platform without it skips
HARNESS = Path(__file__).parents[1] / "fuzz" / "fuzz_wire.py"


def _seeds(corpus: Path) -> None:
    codec = Codec()
    messages = [
        RxContext(request_id=1, major=IrpMj.CREATE, path=r"\\srv\share\a.txt",
                  create=CreateParameters(desired_access=0x80, disposition=1)),
        RxContext(request_id=2, major=IrpMj.READ, fobx=3,
                  lowio=LowIoParameters(operation=1, offset=0, length=4096)),
        RxCompletion(request_id=2, status=0, information=5, result={"size": 5}),
        Register(name="local", kind="local", routines=["MRxCreate"], lowio_ops=[1], servers=["*"]),
        Heartbeat(name="local", seq=3),
        RequestBundle([RxContext(request_id=4, major=IrpMj.READ, fobx=3)]),
    ]  # fmt: skip
    for i, msg in enumerate(messages):
        # starting points for the mutations: the harness splits the input itself
        (corpus / f"msg{i}").write_bytes(b"\x00\xff" + bytes(pack_frames(codec, msg)[0]))
    (corpus / "unc").write_bytes(b"\x02" + rb"\\server\share\dir\..\file:stream")
    (corpus / "keys").write_bytes(b"\x03rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7 n peer:x,client")


def test_the_wire_survives_a_bounded_fuzzing_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _seeds(corpus)
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "-runs=100000",
            "-max_len=2048",
            "-seed=1",
            # a crashing input lands here, not in the working tree
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 100000 runs" in run.stderr
