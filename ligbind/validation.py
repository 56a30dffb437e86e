"""Sanity checks of user-given structures and molecules, run by every entry point before any calculation.

- :func:`check_slab`: a bare PbX2-terminated perovskite slab (finite numbers, a 3D cell with the surface in
  the xy plane, Pb and a halide present, no adsorbate tags, no overlapping atoms, vacuum along z, PbX2 on
  top). Returns warnings (an even layer count: the two faces differ).
- :func:`check_molecule`: a ligand the protocol can compute (closed shell unless the protocol treats spin;
  a given charge matches the SMILES' formal charge).

Each problem raises :class:`LigbindError` with one line naming the structure and the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from ligbind.builders.slab import HALIDES, layer_name, vacuum_thickness
from ligbind.errors import LigbindError

MIN_DISTANCE = 0.5
"""Å: two atoms closer than this (minimum image) overlap; no chemical bond is this short (H2: 0.74 Å)."""

MIN_VACUUM = 5.0
"""Å: empty space along z between the slab and its periodic image below which the 'slab' is not one (the
perovskite layer spacing is ~3.1 Å; published slabs use 10–20 Å)."""


def _check_finite(atoms: Atoms, source: str) -> None:
    bad = np.where(~np.isfinite(atoms.positions).all(axis=1))[0]
    if len(bad):
        raise LigbindError(f"{source}: atom {bad[0]} ({atoms[bad[0]].symbol}) has a non-finite position")
    if not np.isfinite(atoms.cell.array).all():
        raise LigbindError(f"{source}: the cell has non-finite entries")


def _check_cell(atoms: Atoms, source: str) -> None:
    cell = atoms.cell.array
    if atoms.cell.rank < 3 or abs(np.linalg.det(cell)) < 1e-6:
        raise LigbindError(f"{source} has no 3D periodic cell (a slab needs one, with vacuum along z)")
    if abs(cell[0, 2]) > 1e-3 or abs(cell[1, 2]) > 1e-3 or cell[2, 2] <= 0:
        raise LigbindError(
            f"{source}: the surface must lie in the xy plane (cell vectors a and b in-plane, c along +z)"
        )


def _check_overlaps(atoms: Atoms, source: str) -> None:
    from ase.neighborlist import neighbor_list

    probe = atoms.copy()
    probe.pbc = True
    i, j, d = neighbor_list("ijd", probe, MIN_DISTANCE)
    if len(i):
        k = int(np.argmin(d))
        a, b = sorted((int(i[k]), int(j[k])))
        raise LigbindError(
            f"{source}: atoms {a} ({atoms[a].symbol}) and {b} ({atoms[b].symbol}) overlap "
            f"({d[k]:.2f} Å apart, minimum {MIN_DISTANCE} Å)"
        )


def slab_vacuum(atoms: Atoms) -> float:
    """Vacuum along z (Å), also for a slab that crosses the cell boundary along z (e.g. a wrapped POSCAR)."""
    z = np.mod(atoms.positions[:, 2], atoms.cell[2, 2])
    zs = np.sort(z)
    gaps = np.diff(np.append(zs, zs[0] + atoms.cell[2, 2]))
    start = zs[(int(np.argmax(gaps)) + 1) % len(zs)]
    unwrapped = atoms.copy()
    unwrapped.positions[:, 2] = np.mod(z - start, atoms.cell[2, 2]) + start
    return vacuum_thickness(unwrapped)


def check_slab(atoms: Atoms, source: str = "slab") -> list[str]:
    """Refuse anything but a bare PbX2-terminated perovskite slab; return warnings (one line each).

    Parameters
    ----------
    atoms
        The structure a user gave as a slab (read from a file, or built).
    source
        How the messages name it, e.g. ``"slab slab.extxyz"``.

    Raises
    ------
    LigbindError
        Non-finite numbers, no 3D cell, not a lead-halide perovskite, adsorbate atoms (tags ≥ 1), overlapping
        atoms, less than :data:`MIN_VACUUM` of vacuum along z, or a top layer that is neither PbX2 nor AX.
    """
    if len(atoms) == 0:
        raise LigbindError(f"{source} has no atoms")
    _check_finite(atoms, source)
    _check_cell(atoms, source)
    symbols = set(atoms.get_chemical_symbols())
    if "Pb" not in symbols or not symbols & set(HALIDES):
        raise LigbindError(
            f"{source} is not a lead-halide perovskite slab (elements: {', '.join(sorted(symbols))}); "
            "ligbind computes PbX2-terminated (001) slabs of CsPbI3 and MAPbI3"
        )
    if (atoms.get_tags() != 0).any():
        raise LigbindError(
            f"{source}: {int((atoms.get_tags() != 0).sum())} atoms carry tags ≠ 0, which ligbind reserves for "
            "adsorbates: give the bare slab (tags 0)"
        )
    _check_overlaps(atoms, source)
    vacuum = slab_vacuum(atoms)
    if vacuum < MIN_VACUUM - 1e-6:
        raise LigbindError(
            f"{source} has only {max(vacuum, 0.0):.1f} Å of vacuum along z (need ≥ {MIN_VACUUM:.0f} Å; "
            "published slabs use 10–20 Å)"
        )
    from ligbind.builders.slab import find_layers
    from ligbind.builders.termination import check_terminated

    check_terminated(atoms, source)  # PbX2 or AX (ligbind.builders.termination) on top
    layers = find_layers(atoms)
    names = [layer_name(atoms, layer) for layer in layers]
    warnings = []
    if len(layers) % 2 == 0:
        warnings.append(
            f"{source} has {len(layers)} layers (even): its two faces differ (top {names[-1]}, bottom "
            f"{names[0]}); ligands bind to the top face, and the slab carries a dipole"
        )
    return warnings


# ------------------------------------------------------------------------------------------------ molecules
def protocol_treats_spin(protocol: dict[str, Any] | None) -> bool:
    """True when the protocol computes spin-polarised (open-shell) systems: GPAW with ``spinpol``, VASP with
    ``ISPIN = 2``. The ML potentials take no spin state."""
    if not protocol:
        return False
    from ligbind.calculators import backend_of

    return backend_of(protocol).treats_spin(protocol)


def radical_electrons(smiles: str) -> int:
    """Unpaired electrons of a SMILES as RDKit reads it (``C[O]`` → 1); 0 for a closed-shell molecule."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise LigbindError(f"cannot parse SMILES '{smiles}'")
    return int(Descriptors.NumRadicalElectrons(mol))


def check_molecule(
    entry: Any,
    protocol: dict[str, Any] | None = None,
    *,
    charge: int | None = None,
    where: str | None = None,
) -> None:
    """Refuse a ligand the protocol cannot compute, before anything is computed.

    Parameters
    ----------
    entry
        A :class:`~ligbind.builders.ligands.LigandEntry` (its SMILES, exchange anion and byproduct are checked).
    protocol
        The resolved protocol; None means no protocol can treat spin (e.g. ``build ligand``).
    charge
        A charge the user gave: it must equal the SMILES' total formal charge.
    where
        How the messages name the ligand (default: ``ligand 'NAME'``).
    """
    where = where or f"ligand '{entry.name}'"
    if charge is not None and int(charge) != int(entry.charge):
        raise LigbindError(
            f"{where}: charge {int(charge):+d} given, but SMILES '{entry.smiles}' has total formal charge "
            f"{int(entry.charge):+d}"
        )
    if protocol_treats_spin(protocol):
        return
    smiles = [("SMILES", entry.smiles)] + [
        (f"exchange {k} SMILES", v) for k, v in sorted((getattr(entry, "exchange", None) or {}).items())
    ]
    for what, s in smiles:
        n = radical_electrons(s)
        if n:
            by = (
                f"protocol '{protocol.get('name')}' does not treat spin"
                if protocol
                else "ligbind computes closed-shell molecules"
            )
            raise LigbindError(
                f"{where}: {what} '{s}' is open-shell ({n} unpaired electron{'s' if n > 1 else ''}) and {by}: "
                "give the closed-shell molecule or ion (add the missing H or the charge)"
            )
