"""How far above its DFT endpoints each way of starting a DFT band begins (DFT energies of the first band).

Reads the DFT endpoints of a barrier run (by default the one of benchmarks/dft_barrier.py: the lowest stored
DFT relaxation of each endpoint) and evaluates three starting bands with the band's DFT protocol:

- IDPP: ASE's IDPP interpolation under the minimum image between the DFT endpoints (no pre-convergence);
- ML band: every atom from the band converged with the ML protocol between the same geometries;
- ion path: IDPP, with the migrating ion on the ML band's path (what ``--preconverge`` does).

For each it prints the energies of the intermediate images relative to the lower endpoint and their maximum:
the higher a start lies above the converged band, the more DFT steps it costs. 15 DFT single points
(~15 min on 2 cores for the bare 2×2 slab, gpaw-quick spin-polarised).

    python benchmarks/band_start.py [--dir benchmarks/results/dft-barrier] [--starts "IDPP,ion path"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.geometry import find_mic
from ase.mep import NEB

ROOT = Path(__file__).resolve().parents[1]


def endpoints(store, protocol: dict) -> tuple:
    """The lowest stored relaxation of each barrier endpoint with ``protocol``."""
    from ligbind.jobs import result_from_row
    from ligbind.protocols import protocol_hash

    best: dict[str, object] = {}
    for row in store.select(kind="relax"):
        label = str(row.get("label", ""))
        if not label.startswith("migration:") or not row.key.endswith(protocol_hash(protocol)):
            continue
        end = "initial" if ":initial" in label else "final"
        if end not in best or row.energy < best[end].energy:
            best[end] = row
    if set(best) != {"initial", "final"}:
        raise SystemExit(f"no DFT endpoints with protocol {protocol['name']} in the store yet")
    return tuple(result_from_row(best[e], protocol) for e in ("initial", "final"))


def dft_energies(images, protocol: dict, workdir: Path, tag: str) -> list[float]:
    """DFT energies of ``images`` (each in its own MPI job when ``run.cores`` > 1)."""
    from ligbind.calculators import backend_of

    backend = backend_of(protocol)
    out = []
    for k, image in enumerate(images):
        atoms = backend.prepare(image, protocol)
        with backend.lasting_calculator(protocol, atoms, workdir, f"start-{tag}-{k}") as calc:
            atoms.calc = calc
            out.append(float(atoms.get_potential_energy()))
        print(f"  {tag} image {k + 1}: {out[-1]:.4f} eV", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "benchmarks" / "results" / "dft-barrier")
    parser.add_argument("--db", default="barrier.db")
    parser.add_argument("--set", default='{"gpaw": {"spinpol": true}}', help="overrides of gpaw-quick")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--starts", default="IDPP,ML band,ion path", help="which starts, comma-separated")
    args = parser.parse_args()

    from ligbind import jobs
    from ligbind.neb import run_neb
    from ligbind.protocols import load_protocol
    from ligbind.store import ResultStore

    protocol = load_protocol("gpaw-quick", json.loads(args.set))
    ml = load_protocol("ml-screen")
    store = ResultStore(args.dir / args.db)
    workdir = args.dir / "runs"
    initial, final = endpoints(store, protocol)
    d, _ = find_mic(final.atoms.positions - initial.atoms.positions, initial.atoms.cell, initial.atoms.pbc)
    ion = int(np.argmax(np.linalg.norm(d, axis=1)))
    ends = [jobs.single_point(r.atoms, ml, store=store, workdir=workdir) for r in (initial, final)]
    ml_band = run_neb(ends[0], ends[1], ml, images=args.images, workdir=workdir)  # reused when stored

    idpp = [initial.atoms.copy() for _ in range(args.images + 1)] + [final.atoms.copy()]
    NEB(idpp, method="improvedtangent").interpolate(method="idpp", mic=True, apply_constraint=True)
    starts = {"IDPP": [a.copy() for a in idpp[1:-1]], "ML band": [], "ion path": []}
    for k, image in enumerate(idpp[1:-1]):
        whole = image.copy()
        whole.positions = ml_band.band[k + 1].positions
        starts["ML band"].append(whole)
        hybrid = image.copy()
        hybrid.positions[ion] = ml_band.band[k + 1].positions[ion]
        starts["ion path"].append(hybrid)
    low = min(initial.energy, final.energy)
    print(f"endpoints (DFT): initial {initial.energy:.4f} eV, final {final.energy:.4f} eV; ion {ion}")
    rows = {}
    for tag, images in [(t, starts[t]) for t in args.starts.split(",")]:
        rel = [e - low for e in dft_energies(images, protocol, workdir, tag.replace(" ", "-"))]
        rows[tag] = rel
    print(f"{'start':10s} " + " ".join(f"{'img' + str(k + 1):>7s}" for k in range(args.images)) + "     max")
    for tag, rel in rows.items():
        print(f"{tag:10s} " + " ".join(f"{e:7.3f}" for e in rel) + f" {max(rel):7.3f}")


if __name__ == "__main__":
    main()
