"""Energy definitions (pure functions). Sign convention as published: negative = binding.

- Binding energy      Eb = E(ligand@slab) − E(ligand) − E(slab)
- Exchange binding    Eb = E(slab with anion on an X site) + E(byproduct) − E(slab) − E(ligand)
- Coadsorption        Eb(A+B) = E(A+B@slab) − E(A) − E(B) − E(slab);  ΔE_inter = Eb(A+B) − Eb(A) − Eb(B)
- Counterpoise        BSSE = [E(L, complex basis) − E(L)] + [E(slab, complex basis) − E(slab)] at the complex's
                      geometry; Eb_CP = Eb − BSSE (LCAO only: :func:`counterpoise_bsse`)
- Frenkel pair        E_F = E(slab with one surface iodide moved to an interstitial) − E(pristine slab)
                      ΔE_F = E_F(ligand@slab) − E_F(bare slab)

Every energy is a balanced reaction of :class:`Term` s. Terms must share the protocol; periodic slab terms must
share the cell (or be an exact in-plane supercell of it, scaled explicitly) and the vacuum; the compositions
must balance. Anything else is refused with :class:`EnergyMismatchError`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ligbind.errors import LigbindError

VACUUM_TOLERANCE = 0.05  # Å on the cell height of slab terms


class EnergyMismatchError(LigbindError):
    """Energy terms that cannot be combined (different protocols, cells, vacuum or unbalanced)."""


@dataclass(frozen=True)
class Term:
    """One total energy entering a reaction.

    ``cell`` is set for periodic slab terms (whose cell matters); None for molecules.
    """

    label: str
    energy: float
    composition: Counter
    protocol: str
    cell: np.ndarray | None = None
    converged: bool = True
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_atoms(cls, label: str, atoms, energy: float, protocol: str, periodic_slab: bool, converged=True):
        return cls(
            label,
            float(energy),
            Counter(atoms.get_chemical_symbols()),
            protocol,
            atoms.cell.array.copy() if periodic_slab else None,
            converged,
        )


def supercell_multiple(small: np.ndarray, large: np.ndarray) -> int:
    """n such that the in-plane cell ``large`` is an n-fold supercell of ``small`` with the same height.

    Raises
    ------
    EnergyMismatchError
        If the in-plane lattice of ``large`` is not an integer combination of ``small``'s, or the cell
        heights (vacuum) differ.
    """
    if abs(np.linalg.norm(small[2]) - np.linalg.norm(large[2])) > VACUUM_TOLERANCE:
        raise EnergyMismatchError(
            f"slab cells differ in height ({np.linalg.norm(small[2]):.3f} vs {np.linalg.norm(large[2]):.3f} Å): "
            "terms must use the same vacuum"
        )
    coeffs = np.linalg.lstsq(small[:2, :2].T, large[:2, :2].T, rcond=None)[0]
    if not np.allclose(coeffs, np.rint(coeffs), atol=1e-3):
        raise EnergyMismatchError("slab cell is not an integer in-plane supercell of the reference slab cell")
    n = round(abs(np.linalg.det(np.rint(coeffs))))
    if n < 1:
        raise EnergyMismatchError("degenerate supercell relation between slab cells")
    return int(n)


def reaction_energy(products: list[Term], reactants: list[Term]) -> tuple[float, dict[str, float]]:
    """Σ E(products) − Σ n·E(reactants), with checks; slab reactants are scaled to the product slab's cell.

    Returns the energy and the scale factor applied to each reactant label.
    """
    protocols = {t.protocol for t in products + reactants}
    if len(protocols) > 1:
        labels = ", ".join(f"{t.label}: {t.protocol}" for t in products + reactants)
        raise EnergyMismatchError(f"energy terms come from different protocols ({labels})")
    unconverged = [t.label for t in products + reactants if not t.converged]
    if unconverged:
        raise EnergyMismatchError(f"unconverged terms cannot enter an energy: {', '.join(unconverged)}")
    product_cells = [t.cell for t in products if t.cell is not None]
    scales: dict[str, float] = {}
    for t in reactants:
        scales[t.label] = 1.0
        if t.cell is not None:
            if not product_cells:
                raise EnergyMismatchError(
                    f"slab term {t.label} has no periodic counterpart among the products"
                )
            scales[t.label] = float(supercell_multiple(t.cell, product_cells[0]))
    for t in products:
        if t.cell is not None and product_cells and t.cell is not product_cells[0]:
            if supercell_multiple(t.cell, product_cells[0]) != 1:
                raise EnergyMismatchError("product slab terms have different cells")
    left: Counter = Counter()
    for t in reactants:
        for el, n in t.composition.items():
            left[el] += n * scales[t.label]
    right: Counter = sum((t.composition for t in products), Counter())
    if +Counter({k: round(v) for k, v in left.items()}) != +right:
        raise EnergyMismatchError(f"reaction is not balanced: {dict(left)} → {dict(right)}")
    energy = sum(t.energy for t in products) - sum(scales[t.label] * t.energy for t in reactants)
    return float(energy), scales


def binding_energy(complex_: Term, ligand: Term, slab: Term) -> float:
    """Eb = E(ligand@slab) − E(ligand) − E(slab) (slab scaled if the complex is a supercell of it)."""
    return reaction_energy([complex_], [ligand, slab])[0]


def exchange_binding_energy(complex_: Term, byproduct: Term, ligand: Term, slab: Term) -> float:
    """Eb(exchange) = E(slab with anion on X site) + E(byproduct) − E(slab) − E(ligand)."""
    return reaction_energy([complex_, byproduct], [ligand, slab])[0]


COUNTERPOISE_TERMS = ("adsorbate", "adsorbate+slab ghosts", "slab", "slab+adsorbate ghosts")


def counterpoise_bsse(energies: dict[str, float]) -> float:
    """Boys–Bernardi basis-set superposition error of a complex (eV, ≤ 0 for a variational basis).

    ``energies`` holds the electronic energies of :data:`COUNTERPOISE_TERMS`, all at the complex's geometry: each
    fragment alone, and with the other fragment's atoms as ghosts (basis functions only). The dispersion
    correction (D3) is left out of all four: it depends on the real atoms' positions only, the same in both
    members of a pair, so it cancels. The fragments' deformation is already in Eb (its terms are relaxed), so
    Eb_CP = Eb − BSSE.
    """
    missing = [t for t in COUNTERPOISE_TERMS if t not in energies]
    if missing:
        raise EnergyMismatchError(f"counterpoise needs the energies of {', '.join(missing)}")
    return (energies["adsorbate+slab ghosts"] - energies["adsorbate"]) + (
        energies["slab+adsorbate ghosts"] - energies["slab"]
    )


def coadsorption_energy(complex_ab: Term, ligand_a: Term, ligand_b: Term, slab: Term) -> float:
    """Eb(A+B) = E(A+B@slab) − E(A) − E(B) − E(slab)."""
    return reaction_energy([complex_ab], [ligand_a, ligand_b, slab])[0]


def interaction_energy(eb_ab: float, eb_a: float, eb_b: float) -> float:
    """ΔE_inter = Eb(A+B) − Eb(A) − Eb(B); negative = the two ligands stabilise each other."""
    return eb_ab - eb_a - eb_b


def frenkel_energy(defect: Term, pristine: Term) -> float:
    """E_F = E(slab with a surface iodide moved to an interstitial) − E(pristine slab)."""
    return reaction_energy([defect], [pristine])[0]


def delta_frenkel(ef_ligand: float, ef_bare: float) -> float:
    """ΔE_F = E_F(ligand@slab) − E_F(bare); positive = the ligand suppresses Frenkel defects."""
    return ef_ligand - ef_bare


def lowest(values: dict[str, float]) -> tuple[str, float]:
    """Label and value of the lowest energy (e.g. over relaxed configurations)."""
    if not values:
        raise LigbindError("no usable configuration: every candidate was unconverged or flagged")
    label = min(values, key=values.get)
    return label, values[label]


def lowest_corrected(usable: dict, bsse: dict) -> tuple:
    """Label and value of the lowest E − BSSE over the ``usable`` energies, when every one of them has its BSSE
    (an incomplete set could hide the lowest); (None, None) otherwise, and when nothing is usable."""
    if not usable or any(k not in bsse for k in usable):
        return None, None
    return lowest({k: e - bsse[k] for k, e in usable.items()})


# ---------------------------------------------------------------------------------------------- coverage
def _times(term: Term, n: int) -> Term:
    """``n`` copies of a molecular term (energy and composition × n)."""
    composition = Counter({el: k * n for el, k in term.composition.items()})
    return Term(f"{n}×{term.label}", n * term.energy, composition, term.protocol, None, term.converged)


def coverage_binding_energy(covered: Term, ligand: Term, slab: Term, n: int) -> float:
    """Eb per ligand = [E(n L@slab) − n·E(L) − E(slab)] / n."""
    if n < 1:
        raise LigbindError(f"bad coverage {n}: need at least 1 ligand")
    return reaction_energy([covered], [_times(ligand, n), slab])[0] / n


def differential_binding_energy(covered: Term, covered_before: Term, ligand: Term) -> float:
    """Differential Eb of the n-th ligand = E(n L@slab) − E((n−1) L@slab) − E(L).

    ``covered_before`` is the slab itself for n = 1 (then this is Eb of one ligand).
    """
    return reaction_energy([covered], [covered_before, ligand])[0]
