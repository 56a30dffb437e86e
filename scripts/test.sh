#!/usr/bin/env bash
# Install what is needed (once, into .venv), then run the whole test suite against this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -q -rs -p no:cacheprovider --durations=15 "$@"
