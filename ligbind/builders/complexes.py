"""Metal-ion–ligand complexes in vacuum (e.g. Pb2+ chelated by EDTA): the ion, and chelating geometries.

A chelating geometry puts the ion where as many of the ligand's anchor atoms (library SMARTS) as possible sit at
their Pb–donor bond length (:data:`ligbind.builders.placement.BOND_LENGTH`: O 2.6, N 2.65, S 2.95 Å) while every
other atom stays clear of it. Candidates come from several RDKit conformers (:func:`ligand_conformers`) and every
subset of their anchors, largest first; the ion position of each is a least-squares fit (scipy). The best few
distinct candidates (most anchors coordinated, then the best fit) are returned for relaxation.

Every structure is a molecule in a box with ``vacuum`` Å on each side (the same convention for the complex, the
free ligand and the bare ion); ``info['charge']`` carries the total charge (ion charge + ligand charge).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from scipy.optimize import minimize

from ligbind.builders.conformers import ligand_conformers
from ligbind.builders.library import LigandEntry
from ligbind.builders.placement import BOND_LENGTH
from ligbind.errors import LigbindError

ANCHOR_TOLERANCE = 0.35  # Å: an anchor counts as coordinating when within BOND_LENGTH ± this
CLASH_HEAVY = 2.6  # Å: closest a non-anchor heavy atom may come to the ion
CLASH_H = 2.1  # Å: closest an H atom may come to the ion
MAX_SUBSET_ANCHORS = 8  # anchors beyond this are not combined exhaustively (2^8 fits per conformer)
_ION = re.compile(r"^([A-Z][a-z]?)(\d*)([+-])$")


@dataclass(frozen=True)
class Ion:
    """A monatomic ion: element and charge (``Pb2+`` → Pb, +2)."""

    name: str
    symbol: str
    charge: int


def parse_ion(name: str) -> Ion:
    """The ion named like ``Pb2+``, ``Cd2+``, ``K+`` or ``Br-``.

    Raises
    ------
    LigbindError
        Unparsable name or unknown element.
    """
    m = _ION.match(str(name).strip())
    if not m or m.group(1) not in chemical_symbols[1:]:
        raise LigbindError(f"bad ion '{name}': write an element and its charge, e.g. Pb2+")
    magnitude = int(m.group(2) or 1)
    if magnitude < 1 or magnitude > 4:
        raise LigbindError(f"bad ion '{name}': charge magnitude must be 1-4")
    charge = magnitude if m.group(3) == "+" else -magnitude
    return Ion(name=f"{m.group(1)}{m.group(2)}{m.group(3)}", symbol=m.group(1), charge=charge)


def in_box(atoms: Atoms, vacuum: float) -> Atoms:
    """``atoms`` centred in an orthorhombic box with ``vacuum`` Å on each side, not periodic (a molecule)."""
    boxed = atoms.copy()
    boxed.center(vacuum=vacuum)
    boxed.pbc = False
    return boxed


def ion_structure(ion: Ion, vacuum: float) -> Atoms:
    """The bare ion in its box (a single atom: its relaxation takes no step)."""
    atoms = in_box(Atoms(ion.symbol, positions=[[0.0, 0.0, 0.0]]), vacuum)
    atoms.info.update(kind="ion", label=f"ion:{ion.name}", ion=ion.name, charge=int(ion.charge))
    return atoms


def free_ligand_structure(entry: LigandEntry, vacuum: float) -> Atoms:
    """The free ligand (lowest RDKit conformer) in its box, with the library charge."""
    atoms = in_box(ligand_conformers(entry, n_conformers=4)[0], vacuum)
    atoms.info.update(
        kind="ligand", label=f"ligand:{entry.name}", ligand=entry.name, charge=int(entry.charge)
    )
    return atoms


@dataclass
class Chelate:
    """One candidate: the ion position on one conformer and the anchors that coordinate it."""

    conformer: int
    position: np.ndarray
    anchors: tuple[int, ...]
    misfit: float


def _targets(symbols: list[str], anchors: tuple[int, ...]) -> np.ndarray:
    return np.array([BOND_LENGTH.get(symbols[a], 2.7) for a in anchors])


def _outward(pos: np.ndarray, heavy: np.ndarray, anchors: tuple[int, ...]) -> np.ndarray:
    """Unit vector from the heavy-atom centroid through the anchors' centroid (a lone-pair side guess)."""
    direction = pos[list(anchors)].mean(axis=0) - pos[heavy].mean(axis=0)
    norm = np.linalg.norm(direction)
    return direction / norm if norm > 1e-3 else np.array([0.0, 0.0, 1.0])


def _fit_ion(pos: np.ndarray, symbols: list[str], anchors: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Ion position minimising the anchors' bond-length misfit plus a clash penalty for all other atoms."""
    target = _targets(symbols, anchors)
    others = np.array([i for i in range(len(pos)) if i not in anchors], dtype=int)
    clash = np.array([CLASH_H if symbols[i] == "H" else CLASH_HEAVY for i in others]) + 0.2
    heavy = np.array([i for i, s in enumerate(symbols) if s != "H"], dtype=int)

    def cost(x: np.ndarray) -> float:
        misfit = np.linalg.norm(pos[list(anchors)] - x, axis=1) - target
        penalty = 0.0
        if len(others):
            overlap = clash - np.linalg.norm(pos[others] - x, axis=1)
            penalty = float((np.clip(overlap, 0, None) ** 2).sum())
        return float((misfit**2).sum()) + 4.0 * penalty

    outward = _outward(pos, heavy, anchors)
    centre = pos[list(anchors)].mean(axis=0)
    best = None
    for step in (0.5 * target.mean(), target.mean()):
        res = minimize(cost, centre + step * outward, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    return best.x, float(best.fun)


def _acceptable(pos: np.ndarray, symbols: list[str], anchors: tuple[int, ...], x: np.ndarray) -> bool:
    """All chosen anchors at bond length, every other atom clear of the ion."""
    d = np.linalg.norm(pos - x, axis=1)
    if np.any(np.abs(d[list(anchors)] - _targets(symbols, anchors)) > ANCHOR_TOLERANCE):
        return False
    for i, s in enumerate(symbols):
        if i not in anchors and d[i] < (CLASH_H if s == "H" else CLASH_HEAVY):
            return False
    return True


def _conformer_chelates(k: int, conformer: Atoms) -> list[Chelate]:
    """Every acceptable ion position on one conformer, from the largest anchor subsets down."""
    pos, symbols = conformer.positions, conformer.get_chemical_symbols()
    anchors = [int(a) for a in conformer.info["anchors"]][:MAX_SUBSET_ANCHORS]
    found: list[Chelate] = []
    for size in range(len(anchors), 0, -1):
        for subset in itertools.combinations(anchors, size):
            x, misfit = _fit_ion(pos, symbols, subset)
            if _acceptable(pos, symbols, subset, x):
                found.append(Chelate(k, x, subset, misfit))
        if found:  # the largest coordinating subsets of this conformer only
            break
    return found


def chelate_candidates(entry: LigandEntry, n_conformers: int = 6, seed: int = 0) -> list[Chelate]:
    """Candidates over ``n_conformers`` RDKit conformers, most coordinating anchors first, then best fit."""
    conformers = ligand_conformers(entry, n_conformers=n_conformers, seed=42 + seed)
    found = [c for k, conf in enumerate(conformers) for c in _conformer_chelates(k, conf)]
    return sorted(found, key=lambda c: (-len(c.anchors), round(c.misfit, 4), c.conformer, c.anchors))


def build_complexes(
    ion: str | Ion,
    entry: LigandEntry,
    vacuum: float,
    n_configs: int = 3,
    n_conformers: int = 6,
    seed: int = 0,
) -> list[Atoms]:
    """Up to ``n_configs`` distinct ion–ligand complexes (one per conformer first), ion last, in their box.

    Returns
    -------
    list of ase.Atoms
        Ligand atoms (tags 1) then the ion (tag 0). ``info``: kind "ion-complex", ion, ligand, charge (ion +
        ligand), conformer, config, denticity (anchors coordinating as built) and ``ion_sites`` (JSON list of
        {anchor, element, distance}).

    Raises
    ------
    LigbindError
        Bad ``n_configs`` or no clash-free position for the ion on any conformer.
    """
    ion = ion if isinstance(ion, Ion) else parse_ion(ion)
    if n_configs < 1:
        raise LigbindError(f"bad number of configurations {n_configs}: need at least 1")
    candidates = chelate_candidates(entry, n_conformers, seed)
    if not candidates:
        raise LigbindError(f"no clash-free position for {ion.name} on any conformer of '{entry.name}'")
    first: list[int] = []  # one per conformer first (they relax to different minima), then the rest
    for i, c in enumerate(candidates):
        if c.conformer not in {candidates[j].conformer for j in first}:
            first.append(i)
    chosen = [candidates[i] for i in first] + [c for i, c in enumerate(candidates) if i not in first]
    conformers = ligand_conformers(entry, n_conformers=n_conformers, seed=42 + seed)
    return [
        _complex(ion, entry, conformers[c.conformer], c, k, vacuum) for k, c in enumerate(chosen[:n_configs])
    ]


def _complex(ion: Ion, entry: LigandEntry, conformer: Atoms, c: Chelate, k: int, vacuum: float) -> Atoms:
    lig = conformer.copy()
    lig.set_tags(1)
    atoms = lig + Atoms(ion.symbol, positions=[c.position])
    sites = [
        {
            "anchor": int(a),
            "element": lig[a].symbol,
            "distance": round(float(np.linalg.norm(lig.positions[a] - c.position)), 3),
        }
        for a in c.anchors
    ]
    atoms = in_box(atoms, vacuum)
    atoms.info = {
        "kind": "ion-complex",
        "label": f"ion-complex:{ion.name}:{entry.name}:{k}",
        "ion": ion.name,
        "ligand": entry.name,
        "charge": int(ion.charge + entry.charge),
        "ligand_charge": int(entry.charge),
        "conformer": int(c.conformer),
        "config": k,
        "denticity": len(c.anchors),
        "anchors": [int(a) for a in conformer.info["anchors"]],
        "ion_sites": json.dumps(sites),
    }
    return atoms


def ion_index(atoms: Atoms) -> int:
    """Index of the ion in a complex (the only atom with tag 0)."""
    idx = np.where(atoms.get_tags() == 0)[0]
    if len(idx) != 1:
        raise LigbindError("not an ion–ligand complex: expected exactly one untagged atom (the ion)")
    return int(idx[0])


def coordinating_anchors(atoms: Atoms, margin: float = ANCHOR_TOLERANCE) -> list[int]:
    """Anchor atoms of a complex within BOND_LENGTH + ``margin`` of the ion."""
    ion = ion_index(atoms)
    out = []
    for a in atoms.info.get("anchors", []):
        if atoms.get_distance(ion, int(a)) <= BOND_LENGTH.get(atoms[int(a)].symbol, 2.7) + margin:
            out.append(int(a))
    return out
