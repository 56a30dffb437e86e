"""Image force evaluations of one NEB band: ASE's NEB (every image every step) vs DyNEB (converged images skipped).

A DFT band's cost is its image force evaluations (one SCF each; ~25 s per image with gpaw-quick on 2 cores).
ASE's NEB evaluates every image at every FIRE step (ligbind's band until 2026-12-06). DyNEB with
``dynamic_relaxation`` skips images already below fmax (ligbind's band, :mod:`ligbind.neb`, since then);
``scale_fmax`` > 0 also loosens the criterion for images far from the climbing image. This runs the bare
2x2 CsPbI3 barrier of ``ligbind barrier`` with the ML protocol once, then optimises its first (IDPP) band
again with each variant, counting the calls that reach the calculators, and prints steps, calls and Ea.
ML only: a few minutes on 2 cores.

``--polish P``: the other half of a DFT barrier's cost, the band pre-converged with ``--protocol`` and then
converged with the verification protocol. P (another ML potential, a cheap stand-in for DFT) relaxes the two
endpoints again, as ligbind's DFT step does, and then converges the pre-converged band with ligbind's
FIRE on DyNEB and with ASE's ``NEBOptimizer`` (the adaptive ODE solver of ``ase.mep``), on NEB and on DyNEB;
each variant's band is then tightened to fmax 0.01 eV/Å with FIRE (calls not counted), which shows how far
its Ea was from the band's converged one. NEBOptimizer stops on the largest force *component*, FIRE on the
largest per-atom force, so the table also gives the per-atom test at the stop (``fmax at stop``).

    python benchmarks/neb_optimizers.py [--protocol ml-screen] [--images 5] [--polish ml-screen-7net]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="ml-screen")
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--polish", metavar="PROTOCOL", help="converge the pre-converged band with this protocol")
    args = p.parse_args(argv)

    from ase.io import read
    from ase.mep import NEB, DyNEB
    from ase.optimize import FIRE

    from ligbind.calculators import counted, make_calculator
    from ligbind.errors import LigbindError
    from ligbind.protocols import load_protocol

    try:  # a misspelt protocol fails here, not after the barrier
        protocol = load_protocol(args.protocol)
        if args.polish:
            load_protocol(args.polish)
    except LigbindError as exc:
        p.error(str(exc))
    fmax = float(protocol["relax"]["fmax"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cli = [sys.executable, "-m", "ligbind"]
        subprocess.run(
            [*cli, "build", "slab", "-o", str(work / "slab.extxyz")], check=True, capture_output=True
        )
        out = subprocess.run(
            [
                *cli,
                "barrier",
                "--slab",
                str(work / "slab.extxyz"),
                "--protocol",
                args.protocol,
                "--images",
                str(args.images),
                "--db",
                str(work / "b.db"),
                "--workdir",
                str(work / "runs"),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(out.stdout)["bare"]["key"]
        if args.polish:
            return polish(read(work / "runs" / f"{key}.band.traj", f"-{args.images + 2}:"), args, work)
        first = read(work / "runs" / f"{key}.band.traj", f":{args.images + 2}")  # the IDPP band
        print(f"{args.protocol}, bare 2x2 CsPbI3 halide hop, {args.images} images, FIRE, fmax {fmax} eV/Å")
        print(f"{'band':<28}{'converged':>10}{'steps':>7}{'image calls':>13}{'Ea (eV)':>9}")
        variants = {
            "NEB": lambda band: NEB(band, climb=True, method="improvedtangent"),
            "DyNEB (ligbind)": lambda band: DyNEB(
                band, climb=True, method="improvedtangent", fmax=fmax, dynamic_relaxation=True
            ),
            "DyNEB, scale_fmax 1": lambda band: DyNEB(
                band, climb=True, method="improvedtangent", fmax=fmax, dynamic_relaxation=True, scale_fmax=1.0
            ),
        }
        for name, make in variants.items():
            calls: dict[str, int] = {}
            band = [image.copy() for image in first]
            for i, image in enumerate(band):
                image.calc = counted(
                    make_calculator(protocol, atoms=image, directory=work, label=f"i{i}"), calls
                )
            opt = FIRE(make(band), logfile=None)
            ok = opt.run(fmax=fmax, steps=int(protocol["relax"]["steps"]))
            energies = [image.get_potential_energy() for image in band]
            print(
                f"{name:<28}{ok!s:>10}{opt.nsteps:>7}{calls['calls']:>13}{max(energies) - energies[0]:>9.3f}"
            )
    return 0


def polish(band: list, args: argparse.Namespace, work: Path) -> int:
    """Converge ``band`` (converged with ``args.protocol``) with ``args.polish`` after relaxing its endpoints."""
    import numpy as np
    from ase.mep import NEB, DyNEB
    from ase.mep.neb import NEBOptimizer
    from ase.optimize import BFGS, FIRE

    from ligbind.calculators import counted, make_calculator
    from ligbind.protocols import load_protocol

    protocol = load_protocol(args.polish)
    fmax, steps = float(protocol["relax"]["fmax"]), int(protocol["relax"]["steps"])
    ends = [band[0].copy(), band[-1].copy()]
    for k, end in enumerate(ends):
        end.calc = make_calculator(protocol, atoms=end, directory=work, label=f"end{k}")
        BFGS(end, logfile=None).run(fmax=fmax, steps=steps)

    def neb(images: list, dynamic: bool):
        if dynamic:
            return DyNEB(images, climb=True, method="improvedtangent", fmax=fmax, dynamic_relaxation=True)
        return NEB(images, climb=True, method="improvedtangent")

    print(
        f"band of the bare 2x2 CsPbI3 hop converged with {args.protocol}, endpoints relaxed again and band "
        f"converged with {args.polish}, {args.images} images, fmax {fmax} eV/Å"
    )
    print(f"{'optimizer':<24}{'converged':>10}{'steps':>7}{'image calls':>13}{'fmax at stop':>14}"
          f"{'Ea (eV)':>9}{'Ea tightened':>14}")  # fmt: skip
    variants = {
        "FIRE, DyNEB (ligbind)": lambda images: FIRE(neb(images, True), logfile=None),
        "NEBOptimizer ode, NEB": lambda images: NEBOptimizer(neb(images, False), method="ode", logfile=None),
        "NEBOptimizer ode, DyNEB": lambda images: NEBOptimizer(neb(images, True), method="ode", logfile=None),
    }
    for name, make in variants.items():
        calls: dict[str, int] = {}
        images = [ends[0].copy(), *(image.copy() for image in band[1:-1]), ends[1].copy()]
        for i, image in enumerate(images):
            image.calc = counted(make_calculator(protocol, atoms=image, directory=work, label=f"i{i}"), calls)
        opt = make(images)
        ok = opt.run(fmax=fmax, steps=steps)
        n_calls = calls["calls"]
        at_stop = float(np.sqrt((neb(images, False).get_forces() ** 2).sum(axis=1).max()))
        ea = max(image.get_potential_energy() for image in images) - images[0].get_potential_energy()
        FIRE(neb(images, False), logfile=None).run(fmax=0.01, steps=steps)
        tight = max(image.get_potential_energy() for image in images) - images[0].get_potential_energy()
        print(f"{name:<24}{ok!s:>10}{opt.nsteps:>7}{n_calls:>13}{at_stop:>14.3f}{ea:>9.3f}{tight:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
