"""Bulk perovskite cells (experimental lattice parameters, each cited where it is defined).

The inorganic framework is generated from its space group with :func:`ase.spacegroup.crystal`; the
methylammonium cations of MAPbI3 come from the ligand builder (RDKit), oriented on the A sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.spacegroup import crystal

from ligbind.errors import LigbindError


@dataclass(frozen=True)
class Phase:
    """A bulk phase: space group, cell and the pseudo-cubic repeat used to build slabs."""

    material: str
    phase: str
    spacegroup: int
    a: float
    c: float
    tilted: bool
    reference: str


# CsPbI3 alpha (cubic, Pm-3m): a = 6.2894 Å at 634 K.
#   Trots & Myagkota, J. Phys. Chem. Solids 69, 2520 (2008).
# CsPbI3 beta (tetragonal, P4/mbm, a0a0c+ tilts): a = 8.8226 Å, c = 6.3047 Å at 510 K.
#   Marronnier et al., ACS Nano 12, 3477 (2018).
# MAPbI3 tetragonal (I4/mcm, a0a0c- tilts): a = 8.855 Å, c = 12.659 Å at 293 K.
#   Poglitsch & Weber, J. Chem. Phys. 87, 6373 (1987).
PHASES: dict[tuple[str, str], Phase] = {
    ("CsPbI3", "cubic"): Phase("CsPbI3", "cubic", 221, 6.2894, 6.2894, False, "Trots & Myagkota 2008"),
    ("CsPbI3", "tetragonal"): Phase(
        "CsPbI3", "tetragonal", 127, 8.8226, 6.3047, True, "Marronnier et al. 2018"
    ),
    ("MAPbI3", "tetragonal"): Phase(
        "MAPbI3", "tetragonal", 140, 8.855, 12.659, True, "Poglitsch & Weber 1987"
    ),
}
DEFAULT_PHASE = {"CsPbI3": "tetragonal", "MAPbI3": "tetragonal"}

# Equatorial iodide on the 4g (P4/mbm) / 8h (I4/mcm) site (x, x+1/2, 0): x = 1/4 is untilted;
# x = 0.2125 gives an in-plane PbI6 rotation of atan(4 * (0.25 - x)) ≈ 8.5°, as in both refined structures.
EQUATORIAL_X = 0.2125


def get_phase(material: str, phase: str | None = None) -> Phase:
    """Look up a supported phase, with one clear error for anything else.

    Parameters
    ----------
    material : str
        ``CsPbI3`` or ``MAPbI3``.
    phase : str, optional
        ``cubic`` or ``tetragonal``; default the material's tilted tetragonal phase.

    Returns
    -------
    Phase
        Space group, lattice parameters and literature reference.

    Raises
    ------
    LigbindError
        Unknown material, or a phase not supported for it.
    """
    materials = sorted({m for m, _ in PHASES})
    if material not in materials:
        raise LigbindError(f"unknown material '{material}' (supported: {', '.join(materials)})")
    phase = phase or DEFAULT_PHASE[material]
    if (material, phase) not in PHASES:
        phases = sorted(p for m, p in PHASES if m == material)
        raise LigbindError(f"unknown phase '{phase}' for {material} (supported: {', '.join(phases)})")
    return PHASES[(material, phase)]


def methylammonium() -> Atoms:
    """A methylammonium cation (CH3NH3+) from RDKit, C–N axis along +x, centred at the origin.

    Returns
    -------
    ase.Atoms
        The cation (no cell, not periodic), the C–N midpoint at the origin.
    """
    from ligbind.builders.ligands import LigandEntry, ligand_conformers

    # a user SMILES needs a lone-pair anchor, which CH3NH3+ lacks: use an explicit entry (N as the "anchor")
    entry = LigandEntry("MA", "C[NH3+]", 1, "[NX4+:1]", 1, "methylammonium A-site cation")
    ma = ligand_conformers(entry, n_conformers=1, seed=42)[0]
    c = next(i for i, s in enumerate(ma.get_chemical_symbols()) if s == "C")
    n = next(i for i, s in enumerate(ma.get_chemical_symbols()) if s == "N")
    ma.set_cell(None)
    ma.pbc = False
    axis = ma.positions[n] - ma.positions[c]
    ma.rotate(axis, "x")
    ma.translate(-(ma.positions[c] + ma.positions[n]) / 2)
    return ma


def bulk(material: str, phase: str | None = None) -> Atoms:
    """Bulk cell of ``material`` in ``phase`` (default: the tilted tetragonal phase).

    The cell is the crystallographic one (cubic: 1 formula unit; P4/mbm: 2; I4/mcm: 4). For MAPbI3 the
    C–N axes lie in the ab plane, antiparallel on neighbouring A sites (no net dipole).

    Parameters
    ----------
    material : str
        ``CsPbI3`` or ``MAPbI3``.
    phase : str, optional
        As in :func:`get_phase`.

    Returns
    -------
    ase.Atoms
        The periodic bulk cell; ``info``: material, phase, spacegroup, reference.

    Raises
    ------
    LigbindError
        As :func:`get_phase`.
    """
    ph = get_phase(material, phase)
    cellpar = [ph.a, ph.a, ph.c, 90, 90, 90]
    if ph.spacegroup == 221:
        atoms = crystal(
            ["Cs", "Pb", "I"],
            basis=[(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)],
            spacegroup=221,
            cellpar=cellpar,
        )
    elif ph.spacegroup == 127:
        x = EQUATORIAL_X
        atoms = crystal(
            ["Pb", "I", "I", "Cs"],
            basis=[(0, 0, 0), (0, 0, 0.5), (x, x + 0.5, 0), (0, 0.5, 0.5)],
            spacegroup=127,
            cellpar=cellpar,
        )
    else:  # I4/mcm; A sites (4b) hold a placeholder that becomes methylammonium
        x = EQUATORIAL_X
        frame = crystal(
            ["Pb", "I", "I", "Xe"],
            basis=[(0, 0, 0), (0, 0, 0.25), (x, x + 0.5, 0), (0, 0.5, 0.25)],
            spacegroup=140,
            cellpar=cellpar,
        )
        atoms = _fill_a_sites_with_ma(frame)
    atoms.info.update(material=ph.material, phase=ph.phase, spacegroup=ph.spacegroup, reference=ph.reference)
    return atoms


def _fill_a_sites_with_ma(frame: Atoms) -> Atoms:
    """Replace placeholder A-site atoms by MA cations, C–N along ±[110] in a checkerboard (zero dipole)."""
    ma = methylammonium()
    sites = [a.position for a in frame if a.symbol == "Xe"]
    atoms = frame[[a.index for a in frame if a.symbol != "Xe"]]
    for pos in sites:
        frac = np.linalg.solve(frame.cell.T, pos)
        # pseudo-cubic indices of an A site are i = fx + fy, j = fx - fy, k = 2 fz (+ 1/2 each): the
        # checkerboard parity (i + j + k) mod 2 makes every in-plane and out-of-plane neighbour antiparallel
        parity = int(round(2 * frac[0] + 2 * frac[2] - 0.5)) % 2
        mol = ma.copy()
        mol.rotate(45 if parity == 0 else 225, "z")
        mol.translate(pos)
        atoms += mol
    return atoms
