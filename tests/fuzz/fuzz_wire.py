"""Coverage-guided fuzzing (atheris/libFuzzer) of what the daemon reads from the outside: the
multipart framing and msgpack codec of every message, UNC names, and the allow-list parser.
The property: any input is either accepted or refused with the module's own error (WireError,
NtStatusError, KeyFileError); anything else is a bug and stops the fuzzer.

    python tests/fuzz/fuzz_wire.py -runs=200000 -max_len=4096 [CORPUS_DIR]

Run for a bounded number of inputs by tests/unit/test_fuzz.py; run longer by hand."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from rdbss.keys import KeyFileError, parse_authorized_keys
    from rdbss.model.names import parse_unc
    from rdbss.wire.codec import Codec, WireError, refusal_ids
    from rdbss.wire.framing import unpack_frames
    from rdbss.wire.status import NtStatusError

CODEC = Codec()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice <= 1:
        header = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, len(data)))
        frames = [header] if choice == 0 else [header, fdp.ConsumeBytes(64)]
        try:
            unpack_frames(CODEC, frames)
        except WireError:  # refused: the ids to answer with are read leniently, never raise
            ids = refusal_ids(header)
            assert ids and all(type(i) is int and i >= 0 for i in ids)
    elif choice == 2:
        with contextlib.suppress(NtStatusError):
            parse_unc(fdp.ConsumeUnicodeNoSurrogates(512))
    else:
        with contextlib.suppress(KeyFileError):
            parse_authorized_keys(fdp.ConsumeUnicodeNoSurrogates(1024))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
