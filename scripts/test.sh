#!/usr/bin/env bash
# Install everything the tests need (Debian packages, Python packages) and run the whole suite:
# lint (ruff), types (mypy --strict on the whole package), then pytest. CI runs exactly this.
#
#   bash scripts/test.sh            # default suite (fast; every mini-redirector vs its server)
#   bash scripts/test.sh -m slow    # extra pytest arguments are passed on (here: the soak tests)
#   RDBSS_TEST_SERIAL=1 bash scripts/test.sh   # one pytest process (to debug, or to compare)
#
# By default pytest-xdist runs the test files in one worker process per core (-n auto), each
# file whole on one worker (--dist loadfile): a file's module- and session-scoped fixtures (a
# daemon, a real server) start once per worker that runs it, and the tests of a file keep their
# order. Every test makes its own ports, folders and daemons, so workers do not meet.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

echo "== ruff check"
.venv/bin/ruff check rdbss tests benchmarks conftest.py
echo "== ruff format --check"
.venv/bin/ruff format --check rdbss tests benchmarks conftest.py
echo "== mypy"
.venv/bin/mypy rdbss
echo "== pytest"
# real servers must be there: a missing one fails instead of skipping
export RDBSS_REQUIRE_SERVERS=1
parallel=(-n auto --dist loadfile)
if [[ -n "${RDBSS_TEST_SERIAL:-}" ]]; then
    parallel=()
fi
exec .venv/bin/python -m pytest -q "${parallel[@]}" "$@"
