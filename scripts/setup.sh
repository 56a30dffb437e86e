#!/usr/bin/env bash
# Install everything ligbind needs, once, into the project's virtual environment .venv:
#   - Debian libraries: libxc and OpenBLAS (GPAW), OpenMPI + ScaLAPACK + FFTW (parallel GPAW), python3-venv;
#   - the CPU build torch==2.13.0 first (an unpinned torch, pulled in by chgnet, fetches GBs of CUDA packages);
#   - ligbind itself (editable) with its Python dependencies; GPAW is compiled with MPI (scripts/gpaw-siteconfig.py).
# Works with a stock Debian/Ubuntu python3 (PEP 668: nothing is installed outside .venv).
# Idempotent: a second run only checks and returns. PYTHON=... chooses the interpreter that makes the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PY=${PYTHON:-python3}
VENV=.venv
PY=$VENV/bin/python
stamp=$VENV/.ligbind-setup
want="$(cat pyproject.toml scripts/setup.sh scripts/gpaw-siteconfig.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && $PY -c "import ligbind, gpaw, chgnet, sevenn, fireworks, rdkit, dftd3, custodian, pymatgen.core" 2>/dev/null; then
  exit 0
fi
echo "ligbind setup: installing dependencies into $VENV (first run only, ~10 min)..." >&2
debs="libxc-dev libopenblas-dev pkg-config libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libfftw3-dev"
$BASE_PY -m venv --help >/dev/null 2>&1 && $BASE_PY -c "import ensurepip" 2>/dev/null || debs="$debs python3-venv"
if ! dpkg -s $debs >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $debs >/dev/null
fi
[ -x "$PY" ] || $BASE_PY -m venv "$VENV"
$PY -m pip install -q --upgrade pip
$PY -m pip install -q torch==2.13.0
# GPAW with MPI/FFTW/ScaLAPACK and native BLAS (rebuilt when an installed GPAW lacks them). --no-cache-dir: a serial GPAW wheel cached by an earlier install must not be reused.
if ! $PY -c "import gpaw.cgpaw as c, sys; sys.exit(0 if c.have_mpi and hasattr(c, 'mmm') else 1)" 2>/dev/null; then
  GPAW_CONFIG="$PWD/scripts/gpaw-siteconfig.py" $PY -m pip install -q --no-cache-dir --force-reinstall --no-deps \
    "$(grep -o '"gpaw[^"]*"' pyproject.toml | head -1 | tr -d '"')"
fi
GPAW_CONFIG="$PWD/scripts/gpaw-siteconfig.py" $PY -m pip install -q -e ".[test]"
echo "$want" > "$stamp"
