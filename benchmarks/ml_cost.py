"""Cost per force call of the machine-learned screening presets on the demo's structures.

Presets: ml-screen (CHGNet), ml-screen-7net (SevenNet-0), ml-screen-7net-l3i5 (SevenNet-l3i5), each with its
D3(BJ) dispersion and without it (``dispersion: none``). Structures: the demo's 2x2 three-layer CsPbI3 slab
(32 atoms), slab + methylamine, slab + NSA, slab + EDTA, slab + OAm truncated to C12 (as the demo), and slab +
DP1 (the demo's largest complex, 131 atoms), each as placed by ligbind (one configuration, unrelaxed).

One torch thread and OMP/OPENBLAS/MKL_NUM_THREADS=1, as in a campaign worker. Each call moves one atom by
1e-4 Å so that the calculator recomputes; energy and forces are asked (as in a relaxation). After ``--warmup``
calls, ``--calls`` calls per (structure, preset, D3) are timed, interleaved round by round so that a change of
background load hits every preset alike. Prints the median wall time and the median CPU time of this process
per call (the CPU time is the robust figure on a shared machine), and the load average before and after.

    python benchmarks/ml_cost.py                     # ~5 min on 2 cores
    python benchmarks/ml_cost.py --calls 5 --no-dp1  # quicker
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch/dftd3 start their thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

PRESETS = ("ml-screen", "ml-screen-7net", "ml-screen-7net-l3i5")
LABELS = {"ml-screen": "CHGNet", "ml-screen-7net": "SevenNet-0", "ml-screen-7net-l3i5": "SevenNet-l3i5"}


def structures(with_dp1: bool) -> list[tuple[str, object]]:
    """The demo's slab and complexes (ligbind's own builders)."""
    from ligbind.builders.ligands import resolve_ligand, truncate_alkyl
    from ligbind.builders.placement import place_ligand
    from ligbind.builders.slab import build_slab
    from ligbind.errors import LigbindError

    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    out = [("slab", slab)]
    ligands = [("methylamine", None), ("NSA", None), ("EDTA", None), ("OAm", 12)]
    if with_dp1:
        ligands.append(("DP1", None))
    for name, keep in ligands:
        entry = resolve_ligand(name)
        if keep:
            entry = truncate_alkyl(entry, keep)  # the demo's truncate_tails: 12
        for seed in range(4):  # DP1 spans 10.3 Å of the 12.5 Å cell: seed 0 finds no clash-free placement
            try:
                complex_ = place_ligand(slab, entry, n_configs=1, seed=seed)[0]
                break
            except LigbindError as exc:
                error = exc
        else:
            print(f"# {entry.name}: not placed ({error})", file=sys.stderr)
            continue
        out.append((f"slab+{entry.name}" + (f" (seed {seed})" if seed else ""), complex_))
    return out


def calculators() -> dict[tuple[str, bool], object]:
    from ligbind.calculators import make_calculator
    from ligbind.protocols import load_protocol

    calcs = {}
    for preset in PRESETS:
        for d3 in (False, True):
            protocol = load_protocol(preset, None if d3 else {"dispersion": {"method": "none"}})
            assert protocol["run"]["threads"] == 1
            calcs[preset, d3] = make_calculator(protocol, atoms=None)  # sets torch threads to 1
    return calcs


def one_call(atoms, calc) -> tuple[float, float]:
    atoms.calc = calc
    atoms.positions[-1, 0] += 1e-4
    wall, cpu = time.perf_counter(), time.process_time()
    atoms.get_forces()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="timed calls per structure, preset and D3")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--no-dp1", action="store_true", help="skip the 131-atom DP1 complex")
    args = parser.parse_args()

    import torch

    load0 = os.getloadavg()
    start = time.perf_counter()
    calcs = calculators()
    print(
        f"# ml_cost: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread; {args.calls} timed calls after {args.warmup} warm-up"
    )
    print(f"# load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print("# s/call: median wall time per energy+forces call; cpu: median CPU time of this process per call")
    print()
    header = (
        f"| {'structure':<28} | {'atoms':>5} | {'preset':<19} | {'model':<13} | "
        f"{'s/call':>7} | {'cpu':>7} | {'s/call+D3':>9} | {'cpu+D3':>7} | {'x CHGNet+D3':>11} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, structure in structures(not args.no_dp1):
        work = {key: structure.copy() for key in calcs}
        for key, calc in calcs.items():
            for _ in range(args.warmup):
                one_call(work[key], calc)
        times = {key: [] for key in calcs}
        for _ in range(args.calls):
            for key, calc in calcs.items():
                times[key].append(one_call(work[key], calc))
        med = {
            key: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
            for key, v in times.items()
        }
        ref = med["ml-screen", True][1]
        for preset in PRESETS:
            (w0, c0), (w1, c1) = med[preset, False], med[preset, True]
            print(
                f"| {name:<28} | {len(structure):>5} | {preset:<19} | {LABELS[preset]:<13} | "
                f"{w0:>7.3f} | {c0:>7.3f} | {w1:>9.3f} | {c1:>7.3f} | {c1 / ref:>11.1f} |",
                flush=True,
            )
    load1 = os.getloadavg()
    print()
    print(
        f"# load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print("# x CHGNet+D3: CPU time per call relative to ml-screen (CHGNet + D3) on the same structure")


if __name__ == "__main__":
    main()
