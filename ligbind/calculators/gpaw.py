"""GPAW backend: PBE (LCAO or plane waves), Fermi–Dirac smearing, dipole layer for asymmetric slabs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from ligbind.errors import LigbindError


def is_slab(atoms: Atoms) -> bool:
    """A slab: periodic in-plane structure with framework atoms (tags 0) and a vacuum gap along z."""
    return bool(atoms.info.get("kind") in ("slab", "complex", "defect")) or (
        bool(atoms.pbc[0] and atoms.pbc[1]) and any(s == "Pb" for s in atoms.get_chemical_symbols())
    )


def needs_dipole_correction(atoms: Atoms, setting: Any = "auto") -> bool:
    """Dipole layer for slabs whose two faces differ (asymmetric termination or any adsorbate)."""
    if setting is True or setting is False:
        return bool(setting) and is_slab(atoms)
    if not is_slab(atoms):
        return False
    from ligbind.builders.slab import termination

    top, bottom = termination(atoms)
    return top != bottom or bool(np.any(atoms.get_tags() > 0))


def electron_count(atoms: Atoms, charge: int = 0) -> int:
    """Total electron count (PAW cores are closed shells, so its parity is that of the valence count)."""
    return int(atoms.get_atomic_numbers().sum()) - int(charge)


def check_spin(atoms: Atoms, charge: int, spinpol: bool) -> None:
    """Refuse an odd electron count in a spin-paired calculation."""
    n = electron_count(atoms, charge)
    if n % 2 and not spinpol:
        raise LigbindError(
            f"odd number of electrons ({n}, charge {charge:+d}) in a spin-paired calculation: "
            "set gpaw.spinpol: true or check the ligand's charge"
        )


def gpaw_calculator(
    protocol: dict[str, Any], atoms: Atoms | None, directory: Path, label: str, attempt: int = 0
) -> Calculator:
    """GPAW calculator from ``protocol['gpaw']``; ``attempt`` ≥ 1 uses the n-th softer mixer."""
    from gpaw import GPAW, PW, FermiDirac, Mixer

    p = protocol["gpaw"]
    charge = int(atoms.info.get("charge", 0)) if atoms is not None else 0
    if atoms is not None:
        check_spin(atoms, charge, bool(p.get("spinpol")))
    mixer = p["mixer"] if attempt == 0 else p["scf_retries"][attempt - 1]
    kwargs: dict[str, Any] = dict(
        xc=p.get("xc", "PBE"),
        kpts=tuple(p.get("kpts", (1, 1, 1))),
        occupations=FermiDirac(p["occupations"]["width"]),
        convergence=dict(p.get("convergence", {})),
        mixer=Mixer(**mixer),
        maxiter=int(p.get("maxiter", 300)),
        symmetry=p.get("symmetry", "off"),
        spinpol=bool(p.get("spinpol", False)),
        charge=charge,
        txt=str(directory / (f"{label}.txt" if attempt == 0 else f"{label}.retry{attempt}.txt")),
    )
    mode = p.get("mode", "lcao")
    if mode == "lcao":
        kwargs.update(mode="lcao", basis=p.get("basis", "dzp"), h=float(p.get("h", 0.2)))
    elif mode == "pw":
        kwargs.update(mode=PW(float(p.get("ecut", 400))))
    else:
        raise LigbindError(f"unknown GPAW mode '{mode}' (lcao or pw)")
    if atoms is not None and needs_dipole_correction(atoms, p.get("dipole_correction", "auto")):
        kwargs["poissonsolver"] = {"dipolelayer": "xy"}
    directory.mkdir(parents=True, exist_ok=True)
    return GPAW(**kwargs)


def prepare_atoms(atoms: Atoms, protocol: dict[str, Any]) -> Atoms:
    """GPAW wants a non-periodic z for the dipole layer and pbc=False for molecules in a box.

    With ``spinpol`` and an odd electron count, atoms without initial magnetic moments get 1 μB in total.
    """
    atoms = atoms.copy()
    if protocol["gpaw"].get("spinpol") and not np.any(atoms.get_initial_magnetic_moments()):
        n = electron_count(atoms, int(atoms.info.get("charge", 0) or 0))
        if n % 2:  # from zero moments the SCF stays spin-paired (moment 0): start from 1 μB in total
            atoms.set_initial_magnetic_moments(np.full(len(atoms), 1.0 / len(atoms)))
    if is_slab(atoms):
        atoms.pbc = (
            True,
            True,
            not needs_dipole_correction(atoms, protocol["gpaw"].get("dipole_correction")),
        )
    else:
        atoms.pbc = False
    return atoms
