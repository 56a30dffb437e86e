"""Demo campaign through ligbind (FireWorks, embedded store) vs. the plain ASE loop a user would write.

The plain loop, for each ligand: build and relax the slab, relax the isolated ligand, place it on the relaxed
slab (ligbind's placement) and relax each candidate complex, one after the other, with the same model (stock
CHGNet calculator + D3, torch's default threads), optimizer settings and convergence as the campaign. Prints wall time, force calls and relaxations of both,
the largest Eb difference, and the engine overhead per Firework.

    python benchmarks/screen_throughput.py                  # the whole demo campaign
    python benchmarks/screen_throughput.py --ligands 6      # its first six ligands
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def campaign_run(campaign: Path, workdir: Path) -> dict:
    """ligbind screen + run on a fresh embedded store; figures from the results store."""
    from ligbind.analysis.tables import binding_table
    from ligbind.engine import fireworks as engine
    from ligbind.engine.campaign import load_campaign
    from ligbind.store import ResultStore

    os.chdir(workdir)
    start = time.perf_counter()
    engine.screen(campaign)
    out = engine.run(campaign, progress=False)
    wall = time.perf_counter() - start
    c = load_campaign(campaign)
    store = ResultStore(c["store"])
    rows = list(store.select(kind="relax"))
    table = binding_table(store).set_index("ligand")
    flagged = table["flagged_configs"].fillna("")
    return {
        "wall": wall,
        "force_calls": sum(r.force_calls for r in rows),
        "relaxations": len(rows),
        "eb": table["eb"].to_dict(),
        # like for like with the plain loop, which keeps every configuration: flagged ones included
        "eb_all": table["eb_including_flagged"].to_dict(),
        "flagged": flagged[flagged != ""].to_dict(),
        "fireworks": out["ran"],
        "workers": out["workers"],
        "overhead": out["engine_overhead_s"],
        "states": out["states"],
    }


def plain_loop(campaign: Path) -> dict:
    """What a user writes with ASE: for each ligand relax the slab, relax the ligand, relax the complexes.

    Stock calculators (chgnet's CHGNetCalculator + dftd3's DFTD3, summed), torch's default threads, ASE's
    optimizer with the protocol's fmax and step limit; ligbind's builders and placement (the relaxed ligand on
    the relaxed slab), so both paths start every relaxation from the same structure.
    """
    import ase.optimize
    import torch
    from ase.calculators.mixing import SumCalculator
    from chgnet.model.dynamics import CHGNetCalculator
    from dftd3.ase import DFTD3

    from ligbind.builders import ligands
    from ligbind.builders.placement import place_ligand
    from ligbind.engine.campaign import campaign_slab, entry_from_spec, load_campaign
    from ligbind.recipes import ligand_cell_structure

    ligands._CONFORMER_CACHE.clear()  # the campaign ran in this process: no head start
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # torch's default; ligbind had set 1 for its workers
    c = load_campaign(campaign)
    protocol = c["protocol"]
    fmax, steps = protocol["relax"]["fmax"], protocol["relax"]["steps"]
    optimizer = getattr(ase.optimize, protocol["relax"].get("optimizer", "BFGS"))
    disp = protocol["dispersion"]
    calc = SumCalculator([CHGNetCalculator(), DFTD3(method=disp["xc"], damping=disp["method"])])
    calls = [0]
    original = calc.calculate

    def counted(*a, **k):
        calls[0] += 1
        return original(*a, **k)

    calc.calculate = counted

    def relaxed(atoms):
        atoms.calc = calc
        optimizer(atoms, logfile=None).run(fmax=fmax, steps=steps)
        atoms.info["energy"] = atoms.get_potential_energy()  # the shared calculator moves on
        return atoms

    start = time.perf_counter()
    eb, relaxations = {}, 0
    for spec in c["ligands"]:
        entry = entry_from_spec(spec)
        slab = relaxed(campaign_slab(c))
        mol = relaxed(
            ligand_cell_structure(ligands.ligand_conformers(entry, n_conformers=4)[0], slab, protocol)
        )
        # the relaxed ligand on the relaxed slab, as ligbind does: same starting structures, so equal Eb
        placed = place_ligand(
            slab,
            entry,
            n_configs=c["configs"],
            mode=spec["mode"],
            seed=c["seed"],
            relaxed_ligand=mol if spec["mode"] == "neutral" else None,
        )
        energies = [relaxed(complex_).info["energy"] for complex_ in placed]
        relaxations += 2 + len(energies)
        eb[spec["name"]] = min(energies) - mol.info["energy"] - slab.info["energy"]
    return {
        "wall": time.perf_counter() - start,
        "force_calls": calls[0],
        "relaxations": relaxations,
        "eb": eb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", default=str(ROOT / "workflows" / "demo.yaml"))
    parser.add_argument("--ligands", type=int, help="use only the first N ligands of the campaign")
    args = parser.parse_args()

    spec = yaml.safe_load(Path(args.campaign).read_text())
    if args.ligands:
        spec["ligands"] = spec["ligands"][: args.ligands]
    spec["name"] = "bench"
    tmp = Path(tempfile.mkdtemp(prefix="ligbind-bench-"))
    campaign = tmp / "bench.yaml"
    campaign.write_text(yaml.safe_dump(spec))
    print(
        f"campaign: {args.campaign} ({len(spec['ligands'])} ligands, {spec.get('configs', 3)} configurations each)"
    )

    ours = campaign_run(campaign, tmp)
    plain = plain_loop(campaign)
    common = [
        k for k in plain["eb"] if ours["eb_all"].get(k) == ours["eb_all"].get(k) and k in ours["eb_all"]
    ]
    diffs = {k: abs(ours["eb_all"][k] - plain["eb"][k]) for k in common}

    print(f"{'':<22}{'ligbind campaign':>18}{'plain ASE loop':>18}{'ratio':>8}")
    for label, key in (
        ("wall time (s)", "wall"),
        ("force calls", "force_calls"),
        ("relaxations", "relaxations"),
    ):
        ratio = plain[key] / ours[key] if ours[key] else float("nan")
        print(f"{label:<22}{ours[key]:>18.1f}{plain[key]:>18.1f}{ratio:>8.2f}")
    print(f"Fireworks run: {ours['fireworks']} with {ours['workers']} worker(s), states {ours['states']}")
    print(f"engine overhead per Firework: {ours['overhead']:.3f} s" if ours["overhead"] is not None else "")
    if diffs:
        worst = max(diffs, key=diffs.get)
        print(
            f"Eb agreement (lowest converged configuration, flagged ones included as the plain loop does): mean "
            f"|ΔEb| {sum(diffs.values()) / len(diffs):.3f} eV, max {diffs[worst]:.3f} eV ({worst})"
        )
    print(f"{'ligand':<20}{'Eb campaign':>12}{'incl. flagged':>14}{'Eb plain':>12}  flagged configurations")
    for k in plain["eb"]:
        e, e_all = ours["eb"].get(k), ours["eb_all"].get(k)
        e = e if e == e and e is not None else float("nan")
        e_all = e_all if e_all == e_all and e_all is not None else float("nan")
        print(f"{k:<20}{e:>12.3f}{e_all:>14.3f}{plain['eb'][k]:>12.3f}  {ours['flagged'].get(k, '')}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
