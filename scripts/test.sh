#!/usr/bin/env bash
# Install what is needed (once), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
exec $PY -m pytest -q -p no:cacheprovider "$@"
