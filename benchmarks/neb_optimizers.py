"""Image force evaluations of one NEB band: ASE's NEB (every image every step) vs DyNEB (converged images skipped).

A DFT band's cost is its image force evaluations (one SCF each; ~25 s per image with gpaw-quick on 2 cores).
ASE's NEB evaluates every image at every FIRE step (ligbind's band until 2026-12-06). DyNEB with
``dynamic_relaxation`` skips images already below fmax (ligbind's band, :mod:`ligbind.neb`, since then);
``scale_fmax`` > 0 also loosens the criterion for images far from the climbing image. This runs the bare
2x2 CsPbI3 barrier of ``ligbind barrier`` with the ML protocol once, then optimises its first (IDPP) band
again with each variant, counting the calls that reach the calculators, and prints steps, calls and Ea.
ML only: a few minutes on 2 cores.

    python benchmarks/neb_optimizers.py [--protocol ml-screen] [--images 5]
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
    args = p.parse_args(argv)

    from ase.io import read
    from ase.mep import NEB, DyNEB
    from ase.optimize import FIRE

    from ligbind.calculators import counted, make_calculator
    from ligbind.protocols import load_protocol

    protocol = load_protocol(args.protocol)
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


if __name__ == "__main__":
    raise SystemExit(main())
