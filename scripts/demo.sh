#!/usr/bin/env bash
# The main job: install what is needed (once), then screen every library ligand on a 2x2 CsPbI3 slab
# (workflows/demo.yaml, ml-screen-7net) through FireWorks' embedded store, and write results/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # the project's virtual environment (see README)
ligbind screen workflows/demo.yaml
ligbind run demo
ligbind status demo
ligbind results demo
echo
echo "Binding-energy table: results/demo/binding.md (also binding.csv, binding.png)"
cat results/demo/binding.md
