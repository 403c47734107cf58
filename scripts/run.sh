#!/usr/bin/env bash
# Install rdbss and run the main job on the embedded default: the daemon with the local-folder
# mini-redirector serving \\local\data (from ~/.local/share/rdbss/data), used through the client.
# The daemon keeps running afterwards; stop it with: .venv/bin/rdbss daemon stop
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
RDBSS=.venv/bin/rdbss

$RDBSS daemon start
echo "hello from rdbss, $(date -u +%FT%TZ)" > /tmp/rdbss-hello.txt
$RDBSS put -q /tmp/rdbss-hello.txt //local/data/hello.txt
$RDBSS mkdir -p //local/data/demo
$RDBSS mv -f //local/data/hello.txt //local/data/demo/hello.txt
echo "--- rdbss ls -l //local/data/demo"
$RDBSS ls -l //local/data/demo
echo "--- rdbss cat //local/data/demo/hello.txt"
$RDBSS cat //local/data/demo/hello.txt
echo "--- rdbss status"
$RDBSS status
echo
echo "The daemon is still running. Try: $RDBSS --help    Stop it with: $RDBSS daemon stop"
