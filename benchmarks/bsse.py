"""Counterpoise (Boys-Bernardi) basis-set superposition error of one stored LCAO complex, with timing.

An LCAO basis is incomplete: in the complex, the ligand borrows the slab's basis functions and the slab the
ligand's, which lowers E(complex) against the isolated fragments and so makes Eb too negative. ligbind corrects
it where a protocol asks (``gpaw.counterpoise``, on in gpaw-laptop and gpaw-quick: :func:`ligbind.jobs.counterpoise`,
the formula in :mod:`ligbind.analysis.energies`); this script runs that correction on one stored DFT complex
(a finished campaign's, say) and prints its four terms, the BSSE and the wall time:

    BSSE = [E(ligand, complex basis) − E(ligand)] + [E(slab, complex basis) − E(slab)]

Measured (2026-12-05, methanethiol configuration 1 of the CsPbI3 calibration, gpaw-laptop, serial on cores
shared with a 2-rank DFT job): BSSE −0.226 eV (ligand −0.151, slab −0.075), ~14 min for the four terms.

    python benchmarks/bsse.py --db benchmarks/calibration/cspbi3.db --key relax-7d38d52a8e780684-75456dedcf7970ae
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ligbind.jobs import counterpoise, result_from_row
from ligbind.protocols import load_protocol, with_run_settings
from ligbind.store import ResultStore

DEFAULT_DB = "benchmarks/calibration/cspbi3.db"
DEFAULT_KEY = "relax-7d38d52a8e780684-75456dedcf7970ae"  # methanethiol, configuration 1, gpaw-laptop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--key", default=DEFAULT_KEY, help="a DFT relaxation of a ligand on a slab")
    parser.add_argument(
        "--cores", type=int, default=None, help="MPI ranks (default: the protocol's run.cores)"
    )
    args = parser.parse_args()
    row = ResultStore.open_existing(args.db).get(args.key)
    if row is None:
        raise SystemExit(f"no row {args.key} in {args.db}")
    protocol = load_protocol(row.protocol)
    if args.cores is not None:
        protocol = with_run_settings(protocol, cores=args.cores)
    complex_ = result_from_row(row, protocol)
    print(f"{row.get('label')} ({row.protocol}, {len(complex_.atoms)} atoms)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # the database stays untouched
        start = time.perf_counter()
        cp = counterpoise(complex_, protocol, workdir=tmp)
    for term, energy in cp.energies.items():
        print(f"  E({term}) = {energy:.5f} eV")
    ligand = cp.energies["adsorbate+slab ghosts"] - cp.energies["adsorbate"]
    slab = cp.energies["slab+adsorbate ghosts"] - cp.energies["slab"]
    print(f"BSSE: ligand {ligand:+.4f}, slab {slab:+.4f}, total {cp.bsse:+.4f} eV")
    print(f"Eb_CP = Eb − ({cp.bsse:+.4f}) eV; {time.perf_counter() - start:.0f} s for the four terms")


if __name__ == "__main__":
    main()
