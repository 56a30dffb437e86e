"""What one DFT migration barrier costs on this machine, from a `ligbind barrier` run's store and logs.

Runs (or resumes) the barrier unless ``--report-only``, then prints every stage: the DFT relaxations (slab,
endpoints, re-relaxed endpoints) with steps and wall time from the results store, and each NEB band (ML
pre-converged, DFT) with its steps and seconds per step from the optimizer log's timestamps (gaps over 15 min,
i.e. interruptions, are not counted). The default is issue 11's measurement: the bare 2×2 3-layer CsPbI3 slab,
gpaw-quick spin-polarised (the vacancy has an odd electron count), 5 images, the migrating ion's path
pre-converged with ml-screen (``--preconverge none``: plain IDPP), GPAW over all cores.

    python benchmarks/dft_barrier.py [--dir benchmarks/results/dft-barrier] [--db barrier.db] [--grid H]
                                     [--report-only]

``--grid 0.25``: the bare hop has no light atoms, and the grid's egg-box effect on Pb and I is 2 meV at h 0.25
(README, "A grid too coarse"), so a bare barrier can use that grid at a third of the cost per step (spin-polarised
slab: 28 against 93 s per BFGS step on 2 ranks). Its run is in benchmarks/results/dft-barrier-h025 (``--dir``);
benchmarks/results/dft-barrier holds the run of 2026-12-05 on that grid, from another slab start (before the
slab search), and the h 0.2 one begun after it.

Hours on 2 cores; interrupt and rerun at will (relaxations and the band resume). The default directory is in
the repository so that a run can be committed part-way and resumed on another machine. Run it on an idle
machine for clean timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GAP = 15 * 60.0  # s: a longer pause between two logged steps is an interruption


def band_log(path: Path) -> dict[str, float]:
    """Steps, wall seconds (interruptions left out), last fmax and seconds per step of an NEB optimizer log."""
    from ligbind.io import read_optimizer_log, step_intervals

    steps = read_optimizer_log(path)
    gaps = step_intervals(steps, longest=GAP)
    logged = [s for s in steps if s is not None]
    wall = sum(gaps)
    return {
        "steps": len(gaps),
        "wall": wall,
        "fmax": logged[-1].fmax if logged else float("nan"),
        "per_step": wall / max(len(gaps), 1),
    }


def band_name(path: Path) -> tuple[str, str, str, int]:
    """(initial, final, protocol hash, images) of a band file named barrier-<initial>-<final>-<protocol>-<n>i..."""
    initial, final, protocol, images = path.name.split("-")[1:5]
    return initial, final, protocol, int(images.split(".")[0].removesuffix("i"))


def below_an_end(traj: Path) -> str:
    """', an image below an end' when the last saved band puts one ENDPOINT_TOLERANCE below an endpoint on its
    half (a first DFT band stops there and the end is relaxed again; an ML pre-converged band's ends are single
    points of the DFT ends, so its images fall below them by design)."""
    from ase.io import Trajectory

    from ligbind.analysis.migration import endpoints_above_band

    if not traj.exists():
        return ""
    frames = Trajectory(str(traj))
    n = band_name(traj)[3] + 2
    last = [frames[len(frames) - n + k].get_potential_energy() for k in range(n)] if len(frames) >= n else []
    return ", an image below an end" if last and endpoints_above_band(last) else ""


def report(directory: Path, db: str, dft_hash: str) -> None:
    """Every stage of the barrier computed with the DFT protocol of hash ``dft_hash`` (a store may hold runs of
    several grids)."""
    from ligbind.calculators import get_backend
    from ligbind.store import ResultStore

    store = ResultStore(directory / db)
    print(f"{'stage':48s} {'steps':>5s} {'wall (min)':>10s} {'s/step':>7s}   (DFT protocol hash {dft_hash})")
    logs = sorted((directory / "runs").glob("barrier-*.neb.log"), key=lambda f: f.stat().st_mtime)
    pairs = {band_name(log)[:2] for log in logs if band_name(log)[2] == dft_hash}
    total = 0.0
    for row in store.select(kind="relax"):
        dft = get_backend(row.backend).is_dft and row.key.endswith(dft_hash)  # relax-<structure>-<protocol>
        if not dft:
            continue
        wall, steps = float(row.get("wall_time") or 0.0), int(row.get("n_steps") or 0)
        total += wall
        name = f"relax {row.get('label', '')} ({row.protocol})"
        print(f"{name[:48]:48s} {steps:5d} {wall / 60:10.1f} {wall / max(steps, 1):7.1f}")
    for log in logs:
        initial, final, protocol, _ = band_name(log)
        if (initial, final) not in pairs:
            continue  # another run's band (ML bands are kept where a DFT band joins the same endpoints)
        b = band_log(log)
        dft = protocol == dft_hash
        total += b["wall"] if dft else 0.0
        name = f"NEB band ({'DFT' if dft else 'ML'}) {initial}-{final}"
        key = log.name.removesuffix(".neb.log")
        calls = log.with_name(f"{key}.calls")
        print(
            f"{name[:48]:48s} {b['steps']:5d} {b['wall'] / 60:10.1f} {b['per_step']:7.1f}"
            f"   last fmax {b['fmax']:.3f} eV/Å, {calls.read_text().strip() if calls.exists() else '?'} image"
            f" calls{below_an_end(log.with_name(f'{key}.band.traj')) if dft else ''}"
        )
    print(f"DFT wall time (relaxations + every DFT band above, interruptions left out): {total / 3600:.2f} h")
    for row in store.select(kind="barrier"):
        if dft_hash not in row.key:
            continue
        o = row.data["outcome"]
        print(
            f"barrier {row.protocol}: Ea forward {o['ea_forward']:.3f} eV, backward {o['ea_backward']:.3f} eV, "
            f"converged {o['converged']}, {o['n_steps']} steps, flags {','.join(o['flags']) or 'none'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "benchmarks" / "results" / "dft-barrier")
    parser.add_argument("--preconverge", default="ml-screen", help="ML protocol, or none")
    parser.add_argument("--db", default="barrier.db", help="results store in --dir")
    parser.add_argument(
        "--grid", type=float, default=None, help="GPAW grid spacing h (Å) instead of the preset's (0.2)"
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    from ligbind.errors import LigbindError
    from ligbind.protocols import load_protocol
    from ligbind.store import protocol_hash

    overrides = {"gpaw": {"spinpol": True} | ({"h": args.grid} if args.grid else {})}
    try:  # a bad --grid: one line, before anything is built or run
        with warnings.catch_warnings():  # a coarse grid's warning: `ligbind barrier` below gives it
            warnings.simplefilter("ignore", UserWarning)
            dft_hash = protocol_hash(load_protocol("gpaw-quick", overrides))
    except LigbindError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    args.dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        slab = args.dir / "slab.extxyz"
        if not slab.exists():
            subprocess.run([sys.executable, "-m", "ligbind", "build", "slab", "-o", str(slab)], check=True)
        spin = json.dumps(overrides)
        command = [
            sys.executable, "-m", "ligbind", "barrier", "--slab", "slab.extxyz", "--protocol", "gpaw-quick",
            "--set", spin, "--images", "5", "--db", args.db, "--workdir", "runs", "--json",
        ]  # fmt: skip
        if args.preconverge != "none":
            command += ["--preconverge", args.preconverge]
        subprocess.run(command, cwd=args.dir, check=True, stdout=subprocess.DEVNULL)
    report(args.dir, args.db, dft_hash)


if __name__ == "__main__":
    main()
