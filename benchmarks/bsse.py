"""Counterpoise (Boys-Bernardi) basis-set superposition error of an LCAO binding energy.

An LCAO basis is incomplete: in the complex, the ligand borrows the slab's basis functions and the slab the
ligand's, which lowers E(complex) against the isolated fragments and so makes Eb too negative. This script
takes one stored DFT complex and computes, at its geometry, with its protocol's GPAW settings (same cell,
grid, Poisson solver):

    BSSE = [E(ligand, complex basis) − E(ligand)] + [E(slab, complex basis) − E(slab)]

the "complex basis" being the other fragment's atoms as ghosts (basis functions, no nuclei, no electrons).
Eb_CP = Eb − BSSE. Four single points, ~14 min on 2 busy cores for a 38-atom complex (gpaw-laptop).

    python benchmarks/bsse.py --db benchmarks/calibration/cspbi3.db --key relax-7d38d52a8e780684-75456dedcf7970ae
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ligbind.calculators.gpaw import gpaw_calculator, prepare_atoms
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore, atoms_from_row

DEFAULT_DB = "benchmarks/calibration/cspbi3.db"
DEFAULT_KEY = "relax-7d38d52a8e780684-75456dedcf7970ae"  # methanethiol, configuration 1, gpaw-laptop


def single_point(atoms, parameters: dict, ghosts: np.ndarray, txt: Path) -> float:
    from gpaw import GPAW

    kwargs = {**parameters, "txt": str(txt)}
    if len(ghosts):
        kwargs["setups"] = {int(i): "ghost" for i in ghosts}
    atoms = atoms.copy()
    atoms.calc = GPAW(**kwargs)
    return float(atoms.get_potential_energy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--key", default=DEFAULT_KEY, help="a DFT relaxation of a ligand on a slab")
    args = parser.parse_args()
    row = ResultStore.open_existing(args.db).get(args.key)
    if row is None:
        raise SystemExit(f"no row {args.key} in {args.db}")
    protocol = load_protocol(row.protocol)
    if protocol.get("backend") != "gpaw" or protocol["gpaw"]["mode"] != "lcao":
        raise SystemExit(f"{row.protocol}: not an LCAO GPAW protocol (no basis-set superposition to measure)")
    complex_ = prepare_atoms(atoms_from_row(row), protocol)
    complex_.set_constraint()
    ligand = np.flatnonzero(complex_.get_tags() > 0)
    slab = np.flatnonzero(complex_.get_tags() == 0)
    with tempfile.TemporaryDirectory() as tmp:
        parameters = gpaw_calculator(protocol, complex_, Path(tmp), "settings").parameters.todict()
        print(f"{row.get('label')} ({row.protocol}): {len(ligand)} ligand atoms, {len(slab)} slab atoms")
        energies = {}
        for name, atoms, ghosts in (
            ("ligand", complex_[ligand], []),
            ("ligand + slab ghosts", complex_, slab),
            ("slab", complex_[slab], []),
            ("slab + ligand ghosts", complex_, ligand),
        ):
            start = time.perf_counter()
            energies[name] = single_point(atoms, parameters, np.asarray(ghosts), Path(tmp) / "sp.txt")
            print(f"  E({name}) = {energies[name]:.5f} eV  ({time.perf_counter() - start:.0f} s)", flush=True)
    ligand_part = energies["ligand + slab ghosts"] - energies["ligand"]
    slab_part = energies["slab + ligand ghosts"] - energies["slab"]
    print(f"BSSE: ligand {ligand_part:+.4f}, slab {slab_part:+.4f}, total {ligand_part + slab_part:+.4f} eV")
    print(f"Eb_CP = Eb − ({ligand_part + slab_part:+.4f}) eV")


if __name__ == "__main__":
    main()
