"""What a DFT-verified Eb costs, from the relaxations a campaign stored, and the demo's one-night projection.

Reads a results store (default: the committed DFT calibration set, benchmarks/calibration/cspbi3.db) and prints,
for every DFT relaxation (slab, ligand, verified configuration): atoms, steps, force calls, wall time and seconds
per step, as they were measured when the campaign ran them (wall time includes the ML pre-relaxation). Then:

- one more verified ligand in an existing campaign (slab already relaxed, top 1): DFT ligand + one DFT
  configuration + its counterpoise correction (the four single points, where the store has them), per
  calibration ligand (issue 10's target: <= 20 min on 2 cores);
- the north star: the demo's ligands (workflows/demo.yaml) DFT-verified with the same protocol, projected from
  the measured steps per relaxation and a power-law fit of seconds per step against the number of atoms; and
  what a reserve configuration adds for each ligand whose screened best configuration DFT rejects, at the rate
  the store's verifications show.

    python benchmarks/verify_cost.py [--store benchmarks/calibration/cspbi3.db] [--top-k 1]

The figures are only as good as the store's timings: run the campaign on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NIGHT = 8 * 3600.0


def dft_rows(store) -> list:
    """Converged relaxations computed with a DFT backend, with their timing."""
    from ligbind.calculators import BACKENDS, get_backend

    dft = {name for name in BACKENDS if get_backend(name).is_dft}
    return [
        r
        for r in store.select(kind="relax")
        if r.get("backend") in dft and r.get("status") == "converged" and r.get("n_steps", 0) > 0
    ]


def role(row) -> tuple[str, str]:
    """(slab | ligand | complex, ligand name) from the row's label."""
    label = row.get("label") or ""
    if label == "slab":
        return "slab", ""
    if label.startswith("ligand:"):
        return "ligand", label.split(":")[1]
    return "complex", label.split(":")[1] if ":" in label else label


def counterpoise_rows(store) -> list:
    """Counterpoise corrections (four single points each) with their wall time."""
    return [r for r in store.select(kind="counterpoise") if r.get("wall_time")]


def per_step_fit(rows) -> tuple[float, float]:
    """Seconds per step = a * natoms**b, least squares in log-log; b = 1 through the mean when the sizes span
    less than 1.5x (a demo's complexes of 38-41 atoms: a slope fitted there is noise, e.g. N^24). A row without
    steps (a counterpoise correction) counts as one."""
    n = np.array([r.natoms for r in rows], float)
    t = np.array([r.wall_time / max(r.get("n_steps", 1), 1) for r in rows], float)
    if n.max() < 1.5 * n.min():
        return float(t.mean() / n.mean()), 1.0
    b, log_a = np.polyfit(np.log(n), np.log(t), 1)
    return float(np.exp(log_a)), float(b)


def demo_sizes() -> dict[str, int]:
    """Atoms of each demo ligand as the demo campaign builds it (truncation included)."""
    from ligbind.builders.slab import build_slab
    from ligbind.engine.campaign import entry_from_spec, load_campaign
    from ligbind.recipes import ligand_structure

    c = load_campaign(ROOT / "workflows" / "demo.yaml", workdir="/tmp/ligbind-verify-cost")
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=3, vacuum=12.0, fix_layers=1)
    return {
        s["name"]: len(ligand_structure(entry_from_spec(s), slab, {"ligand_cell": "box"}))
        for s in c["ligands"]
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=str(ROOT / "benchmarks" / "calibration" / "cspbi3.db"))
    p.add_argument("--top-k", type=int, default=1)
    args = p.parse_args(argv)

    from ligbind.store import ResultStore

    store = ResultStore.open_existing(args.store)
    rows = dft_rows(store)
    corrections = counterpoise_rows(store)
    if not rows:
        print(f"{args.store}: no converged DFT relaxation yet")
        return 1
    print(f"{'structure':<28}{'atoms':>6}{'steps':>6}{'calls':>6}{'wall s':>9}{'s/step':>8}  protocol")
    by_role: dict[str, list] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (role(r), r.id)):
        by_role[role(r)[0]].append(r)
        name = f"{role(r)[0]} {role(r)[1]}".strip()
        print(
            f"{name:<28}{r.natoms:>6}{r.n_steps:>6}{r.get('force_calls', 0):>6}{r.wall_time:>9.0f}"
            f"{r.wall_time / r.n_steps:>8.1f}  {r.protocol}"
        )

    labels = {r.key: role(r)[1] for r in by_role["complex"]}
    cp_by_ligand: dict[str, list[float]] = defaultdict(list)
    for r in corrections:
        name = labels.get(r.get("complex_key"), "?")
        cp_by_ligand[name].append(r.wall_time)
        print(
            f"{'counterpoise ' + name:<28}{r.natoms:>6}{'4 SP':>6}{'':>6}{r.wall_time:>9.0f}{'':>8}  {r.protocol}"
        )
    ligands = {role(r)[1]: r for r in by_role["ligand"]}
    complexes = defaultdict(list)
    for r in by_role["complex"]:
        complexes[role(r)[1]].append(r)
    one_more = []
    for name, lig in ligands.items():
        if complexes[name]:
            cp = statistics.mean(cp_by_ligand[name]) if cp_by_ligand[name] else 0.0
            cost = lig.wall_time + args.top_k * (statistics.mean(c.wall_time for c in complexes[name]) + cp)
            one_more.append(cost)
            what = f"ligand + {args.top_k} configuration" + (
                " + counterpoise" if cp else ", no counterpoise yet"
            )
            print(f"one more verified ligand, {name}: {cost / 60:.1f} min ({what})")
    if one_more:
        print(
            f"  median {statistics.median(one_more) / 60:.1f} min, max {max(one_more) / 60:.1f} min (target 20)"
        )

    if not by_role["complex"] or not by_role["ligand"]:
        return 0
    fits = {k: per_step_fit(by_role[k]) for k in ("ligand", "complex")}
    steps = {k: statistics.mean(r.n_steps for r in v) for k, v in by_role.items()}
    c0 = next(c[0] for name, c in complexes.items() if c and name in ligands)
    slab_atoms = c0.natoms - ligands[role(c0)[1]].natoms
    slab_cost = statistics.mean(r.wall_time for r in by_role["slab"]) if by_role["slab"] else 0.0

    def cost(kind: str, natoms: int) -> float:
        a, b = fits[kind]
        return steps[kind] * a * natoms**b

    if corrections:  # seconds per correction against the complex's atoms, like the steps
        fits["counterpoise"] = per_step_fit(corrections)
        steps["counterpoise"] = 1

    sizes = demo_sizes()

    def verified_complex(n: int) -> float:
        return cost("complex", slab_atoms + n) + (cost("counterpoise", slab_atoms + n) if corrections else 0)

    total = slab_cost + sum(cost("ligand", n) + args.top_k * verified_complex(n) for n in sizes.values())
    reserve = statistics.mean(
        verified_complex(n) for n in sizes.values()
    )  # one reserve, per ligand needing it
    fit_text = ", ".join(f"{k} {a:.3g}*N^{b:.2f}" for k, (a, b) in fits.items())
    print(
        f"projection, demo's {len(sizes)} ligands verified (top {args.top_k}"
        f"{', counterpoise-corrected' if corrections else ', without counterpoise: none stored'}): "
        f"{total / 3600:.1f} h (s/step fits: {fit_text}; mean steps: ligand {steps['ligand']:.0f}, complex "
        f"{steps['complex']:.0f}; demo ligands of {min(sizes.values())}-{max(sizes.values())} atoms); "
        "one night = 8 h"
    )
    rejected, verified = rejected_best(store)
    at_rate = (
        f"; DFT rejected {rejected} of the {verified} screened best configurations in this store: "
        f"+{rejected / verified * len(sizes) * reserve / 3600:.1f} h at that rate"
        if verified
        else ""
    )
    print(
        f"  plus {reserve / 60:.0f} min per ligand whose best screened configuration DFT rejects "
        f"(verify.reserve relaxes the next){at_rate}"
    )
    return 0


def rejected_best(store) -> tuple[int, int]:
    """(verified ligands whose screened best configuration DFT left unusable, verified ligands whose screened
    best configuration DFT relaxed) in ``store``, from each verification's DFT binding analysis."""
    rejected = n = 0
    for row in store.select(kind="verification"):
        o = row.data["outcome"]
        dft = store.get(o["dft_key"]) if o.get("dft_key") else None
        best = [
            c for c in (dft.data["outcome"]["configs"] if dft else []) if c["config"] == o["screen_config"]
        ]
        if best:
            n += 1
            rejected += bool(best[0]["flags"]) or best[0]["status"] != "converged"
    return rejected, n


if __name__ == "__main__":
    raise SystemExit(main())
