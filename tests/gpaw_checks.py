"""An energy assembled independently of what ligbind stored: GPAW's own log energy plus D3 computed here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def log_energy_plus_d3(runs: Path, store, key: str, protocol: dict[str, Any]) -> float:
    """E of the calculation ``key``: GPAW's last extrapolated energy from ``runs/<key>.txt`` + D3(BJ) of its atoms
    (prepared as the backend prepares them: same periodicity)."""
    from dftd3.ase import DFTD3

    from ligbind.calculators import backend_of

    log = (Path(runs) / f"{key}.txt").read_text()
    e_gpaw = float(re.findall(r"Extrapolated:\s+(-?\d+\.\d+)", log)[-1])
    atoms = backend_of(protocol).prepare(store.get(key).toatoms(), protocol)
    atoms.calc = DFTD3(method="pbe", damping="d3bj")
    return e_gpaw + float(atoms.get_potential_energy())
