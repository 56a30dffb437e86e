#!/usr/bin/env bash
# Install everything ligbind needs, once: Debian libraries for GPAW, the CPU build of torch, then ligbind
# itself (editable) with its Python dependencies. Idempotent: a second run only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.setup-done
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && $PY -c "import ligbind, gpaw, chgnet, fireworks, rdkit, dftd3, custodian, pymatgen.core" 2>/dev/null; then
  exit 0
fi
echo "ligbind setup: installing dependencies (first run only)..." >&2
if ! dpkg -s libxc-dev libopenblas-dev pkg-config >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxc-dev libopenblas-dev pkg-config >/dev/null
fi
# CPU build of torch first: an unpinned torch (pulled in by chgnet) would fetch several GB of CUDA packages.
$PY -m pip install -q torch==2.13.0
# GPAW 26.x compiles its C extension as C++.
CC=g++ $PY -m pip install -q -e ".[test]"
echo "$want" > "$stamp"
