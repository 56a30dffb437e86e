"""Do the lower adsorbed states one DFT protocol found survive at another? (the basin question of issue 10)

The DFT-savings benchmark (gpaw-quick, LCAO sz(dzp), then on an h 0.25 grid) found methylamine 0.09-0.2 eV
more strongly bound on other tilt basins of the 2x2 CsPbI3 slab than its verified complex. This relaxes those
complexes again, each from its final geometry, with another protocol (default gpaw-laptop, dzp), and prints
their energies against the first one's: the complexes have the same atoms, so their energy differences need no slab or ligand term. Whether each
stayed in its basin is shown by its framework's RMSD from the start. Resumable (its own store).

    python benchmarks/basin_check.py            # verified vs plain configuration 0 of methylamine (h 0.25)
    python benchmarks/basin_check.py --labels verify:methanethiol:2@2145f70d plain:methanethiol:2@7fb285be
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAVINGS = ROOT / "benchmarks" / "results" / "dft-savings" / "savings.db"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="gpaw-laptop")
    p.add_argument("--source", default=str(SAVINGS), help="store holding the complexes (dft_savings.py's)")
    p.add_argument(
        "--labels",
        nargs="+",
        default=["verify:methylamine:0@4f840263", "plain:methylamine:0@7b173c41"],
        help="label[@protocol hash prefix] of converged relaxations in --source",
    )
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "results" / "basin-check"))
    args = p.parse_args(argv)

    from ligbind.analysis.anomalies import framework_rmsd
    from ligbind.jobs import relax, result_from_row
    from ligbind.protocols import load_protocol
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, {"prerelax": None})  # from DFT minima: nothing for ML to do
    source = ResultStore.open_existing(args.source)
    workdir = Path(args.workdir)
    store = ResultStore(workdir / "basin.db")
    converged = list(source.select(kind="relax", status="converged"))
    results = []
    for label in args.labels:
        name, _, protocol_hash = label.partition("@")  # relax-<structure hash>-<protocol hash>
        found = {
            r.key.split("-")[-1]: r
            for r in converged
            if r.get("label") == name and r.key.split("-")[-1].startswith(protocol_hash)
        }
        if len(found) != 1:
            print(
                f"error: '{label}' must name one converged relaxation in {args.source} (protocol hashes: "
                f"{', '.join(sorted(found)) or 'none'}; add @<hash> to choose)",
                file=sys.stderr,
            )
            return 2
        (row,) = found.values()
        start = result_from_row(row, protocol).atoms
        start.calc = None
        start.info["label"] = f"basin-check:{name}"
        r = relax(start, protocol, store=store, workdir=workdir, prerelax=False)
        results.append((label, row.energy, r, framework_rmsd(r.atoms, start)))
    base_source, base = results[0][1], results[0][2].energy
    print(f"complexes relaxed again with {args.protocol}, energies against {args.labels[0]}")
    print(f"{'label':<32}{'source E':>11}{'ΔE source':>11}{'E':>12}{'ΔE':>8}{'steps':>7}{'fw RMSD':>9}")
    for label, e_source, r, rmsd in results:
        print(
            f"{label:<32}{e_source:11.3f}{e_source - base_source:11.3f}{r.energy:12.3f}{r.energy - base:8.3f}"
            f"{r.n_steps:7d}{rmsd:9.2f}{'' if r.converged else '  unconverged'}"
        )
    return 0


if __name__ == "__main__":
    from ligbind.errors import LigbindError

    try:
        raise SystemExit(main())
    except LigbindError as exc:  # a missing store: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
