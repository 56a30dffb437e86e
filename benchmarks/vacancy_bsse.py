"""How much of an LCAO vacancy energy is basis-set superposition error (BSSE), bare and next to a ligand.

E_vac = E(slab − X) + ½E(X2) − E(slab) compares structures whose atom-centred basis differs: in the pristine
host the surface halide borrows its neighbours' basis functions (and they borrow its), in X2 each X borrows the
other's. The Boys–Bernardi counterpoise terms of ligbind's Eb (:func:`ligbind.calculators.gpaw.
counterpoise_energies`), with the halide as the one-atom fragment, measure both:

    B_host = [E(X, host basis) − E(X)] + [E(host − X, with X's basis) − E(host − X)]   (at the host's geometry)
    B_X2   = the same for one X of X2 against the other
    E_vac would move by B_host − ½·B_X2 if corrected; ΔE_vac (ligand host − bare) by the difference of B_host.

Spin-polarised (the X atom and the host less X have an odd electron count) and with the SCF density
criterion at 1e-3 (at gpaw-laptop's 1e-4 the host less an I stalls at 10^-3.0 for tens of iterations while
its energy is steady to 1 meV). Single points only: the hosts are relaxed DFT structures from a store.

    python benchmarks/vacancy_bsse.py [--db benchmarks/calibration/cspbi3.db] [--site 14] [--workdir DIR]

Finished terms are kept in ``--workdir`` (a rerun computes only the missing ones). ~15 min per host on 2 busy
cores (32-39 atoms, dzp), ~2 min for I2.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DB = "benchmarks/calibration/cspbi3.db"
DEFAULT_HOSTS = (
    "relax-384975573b383403-75456dedcf7970ae",  # bare 2x2 CsPbI3, gpaw-laptop (the calibration's DFT slab)
    "relax-1fa2957e37d77d55-75456dedcf7970ae",  # methylamine configuration 1 on it, gpaw-laptop
)
DEFAULT_SITE = 14  # the surface I nearest methylamine's N–H in that complex (H···I 2.97 Å)


def halide_bsse(atoms, site: int, protocol: dict, key: str, workdir: Path) -> tuple[dict[str, float], float]:
    """The four counterpoise terms with atom ``site`` as the one-atom fragment, and their BSSE (eV)."""
    from ligbind.analysis.energies import counterpoise_bsse
    from ligbind.calculators.gpaw import counterpoise_energies

    tagged = atoms.copy()
    tags = np.zeros(len(tagged), int)
    tags[site] = 1
    tagged.set_tags(tags)
    energies = counterpoise_energies(tagged, protocol, key, workdir)
    return energies, counterpoise_bsse(energies)


def main() -> None:
    from ligbind.builders.vacancies import halogen_molecule
    from ligbind.jobs import result_from_row
    from ligbind.protocols import load_protocol
    from ligbind.recipes import ligand_cell_structure
    from ligbind.store import ResultStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--hosts", nargs="+", default=list(DEFAULT_HOSTS), help="stored DFT relaxations")
    parser.add_argument(
        "--site", type=int, default=DEFAULT_SITE, help="surface halide index (slab atoms first)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the terms here (default: temporary)")
    args = parser.parse_args()
    store = ResultStore.open_existing(args.db)
    rows = [store.get(k) for k in args.hosts]
    missing = [k for k, r in zip(args.hosts, rows, strict=True) if r is None]
    if missing:
        raise SystemExit(f"no row {missing[0]} in {args.db}")
    overrides = {"gpaw": {"spinpol": True, "convergence": {"density": 0.001}}}
    protocol = load_protocol(rows[0].protocol, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        hosts = {}
        for key, row in zip(args.hosts, rows, strict=True):
            atoms = result_from_row(row, protocol).atoms
            element = atoms[args.site].symbol
            start = time.perf_counter()
            energies, bsse = halide_bsse(atoms, args.site, protocol, f"ibsse-{key}-{args.site}", workdir)
            hosts[key] = bsse
            print(
                f"{row.get('label')} ({key}, {len(atoms)} atoms), {element} {args.site}: BSSE {bsse:+.3f} eV "
                f"(the {element} atom {energies['adsorbate+slab ghosts'] - energies['adsorbate']:+.3f}, the "
                f"rest {energies['slab+adsorbate ghosts'] - energies['slab']:+.3f}; {time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        mol = halogen_molecule(element)
        x2 = ligand_cell_structure(mol, atoms, protocol)
        _, b_x2 = halide_bsse(x2, 0, protocol, f"ibsse-{element}2", workdir)
        print(f"{element}2 ({x2.get_distance(0, 1):.3f} Å): BSSE {b_x2:+.3f} eV")
        for key, b in hosts.items():
            print(
                f"E_vac on {store.get(key).get('label')}: would move by {b - 0.5 * b_x2:+.3f} eV if corrected"
            )
        if len(hosts) > 1:
            first = next(iter(hosts.values()))
            for key, b in list(hosts.items())[1:]:
                print(
                    f"ΔE_vac ({store.get(key).get('label')} − the first): would move by {b - first:+.3f} eV"
                )


if __name__ == "__main__":
    main()
