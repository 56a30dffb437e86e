"""Surface iodine Frenkel pairs: one top-layer halide moved from its site to an interstitial site.

Interstitial candidates on the PbX2 surface: atop an undercoordinated Pb (the halide completes its octahedron)
and the hollow above the centre of four surface Pb (every square, periodic images included). Pairs are
enumerated vacancy × interstitial, farthest first (the farthest of each interstitial kind, then the farthest
left), keeping one of each set of pairs related by a symmetry of the host, and skipping interstitials next to
the vacancy (near pairs relax back into it: measured E_F ≈ 0.03 eV at 4.2 Å) and next to an adsorbate.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.neighborlist import neighbor_list

from ligbind.builders.slab import (
    check_pbi2_terminated,
    surface_halides,
    surface_pb,
    surface_symmetry,
    symmetry_rmsd,
)
from ligbind.builders.vacancies import site_taken
from ligbind.errors import LigbindError

ATOP_HEIGHT = 3.05  # Å above surface Pb (Pb–I bond)
HOLLOW_HEIGHT = 2.2  # Å above the top layer's mean height
MIN_SEPARATION = 4.0  # Å between vacancy and interstitial
MIN_LIGAND_DISTANCE = 2.6  # Å between an interstitial and any adsorbate atom
HOLLOW_DIAGONAL = (8.0, 9.6)  # Å, diagonal of the ~6.3 Å square of surface Pb


def interstitial_sites(atoms: Atoms) -> list[tuple[str, np.ndarray]]:
    """Interstitial candidates above the top layer.

    Atop each surface Pb (at the Pb–I bond length) and in each hollow above the centre of four surface Pb.

    Parameters
    ----------
    atoms : ase.Atoms
        A PbX2-terminated slab (checked), bare or with an adsorbate.

    Returns
    -------
    list of (str, numpy.ndarray)
        (kind, Cartesian position), kind "atop-Pb" or "hollow".
    """
    layers = check_pbi2_terminated(atoms)
    pbs = surface_pb(atoms, layers)
    z_top = float(atoms.positions[layers[-1], 2].mean())
    sites = [("atop-Pb", atoms.positions[p] + [0, 0, ATOP_HEIGHT]) for p in pbs]
    # hollows: centre of each Pb square = midpoint of second-nearest (diagonal) Pb pairs, every periodic image
    # of the pair (ASE's neighbour list: on a 2×2 cell the same two Pb are diagonal across all four squares)
    top = atoms[pbs]
    first, shift = neighbor_list("iD", top, HOLLOW_DIAGONAL[1])
    seen: list[np.ndarray] = []
    for a, vec in zip(first, shift, strict=True):
        if HOLLOW_DIAGONAL[0] < np.linalg.norm(vec):
            centre = top.positions[a] + vec / 2
            centre[2] = z_top + HOLLOW_HEIGHT
            if not any(np.linalg.norm(find_mic(centre - s, atoms.cell, atoms.pbc)[0]) < 1.0 for s in seen):
                seen.append(centre)
                sites.append(("hollow", centre))
    return sites


def frenkel_pairs(atoms: Atoms, max_pairs: int = 4) -> list[Atoms]:
    """Up to ``max_pairs`` Frenkel-pair structures of ``atoms`` (bare slab or ligand@slab), farthest pairs first.

    Parameters
    ----------
    atoms : ase.Atoms
        A PbX2-terminated slab, bare or with an adsorbate (tags > 0).
    max_pairs : int
        Most structures returned (>= 1).

    Returns
    -------
    list of ase.Atoms
        Copies of ``atoms`` with one top-layer halide moved to an interstitial site, no two related by a
        symmetry of the host. ``info``: that of ``atoms`` plus kind ("defect"), defect ("frenkel"), pair,
        vacancy_atom, interstitial (site kind) and separation (Å).

    Raises
    ------
    LigbindError
        ``max_pairs`` < 1, a slab that is not PbX2-terminated, or no pair that fits.
    """
    if max_pairs < 1:
        raise LigbindError(f"bad number of Frenkel pairs {max_pairs}: need at least 1")
    candidates = _candidate_pairs(atoms)
    if not candidates:
        raise LigbindError("no vacancy–interstitial pair fits on this surface")
    # farthest pairs first (near ones relax back into the vacancy), alternating interstitial kinds
    candidates.sort(key=lambda c: (-round(c[0], 1), c[1]))
    return pair_structures(atoms, _distinct_pairs(atoms, candidates, max_pairs)[:max_pairs])


def pair_structures(
    atoms: Atoms, pairs: list[tuple[float, int, str, np.ndarray]], *, untag: bool = False
) -> list[Atoms]:
    """One copy of ``atoms`` per (separation, vacancy atom, interstitial kind, site) pair, the atom moved to the
    site, with the pair recorded in ``info``; ``untag``: every atom tagged 0 (a treatment layer as surface)."""
    out = []
    for k, (dist, v, kind, site) in enumerate(pairs):
        defect = atoms.copy()
        defect.positions[v] = site
        if untag:
            defect.set_tags(0)
        defect.info = {
            **atoms.info,
            "kind": "defect",
            "defect": "frenkel",
            "pair": k,
            "vacancy_atom": v,
            "interstitial": kind,
            "separation": round(dist, 3),
        }
        out.append(defect)
    return out


def _candidate_pairs(atoms: Atoms) -> list[tuple[float, int, str, np.ndarray]]:
    """(separation, vacancy halide, interstitial kind, site) of every pair far enough apart and from ligands."""
    layers = check_pbi2_terminated(atoms)
    halides = surface_halides(atoms, layers)
    ligand = np.where(atoms.get_tags() > 0)[0]
    candidates = []
    for kind, site in interstitial_sites(atoms):
        if len(ligand):
            d = np.linalg.norm(find_mic(atoms.positions[ligand] - site, atoms.cell, atoms.pbc)[0], axis=1)
            if d.min() < MIN_LIGAND_DISTANCE:
                continue
        for v in halides:
            vec = find_mic(site - atoms.positions[v], atoms.cell, atoms.pbc)[0]
            dist = float(np.linalg.norm(vec))
            if dist >= MIN_SEPARATION:
                candidates.append((dist, int(v), kind, site))
    return candidates


def _distinct_pairs(atoms: Atoms, candidates: list, limit: int) -> list:
    """Up to ``limit`` candidates: the first of each interstitial kind, then in order; none equivalent to another.

    A pair that a symmetry of the host maps onto a chosen one is the same defect. Every candidate of a kind is
    considered (not only the farthest one per vacancy): on a small cell the farthest interstitial of every
    halide can be one and the same defect under symmetry.
    """
    ops = surface_symmetry(atoms)

    def points(c) -> np.ndarray:
        return np.array([atoms.positions[c[1]], c[3]])

    def equivalent(c, d) -> bool:
        return c[2] == d[2] and symmetry_rmsd(points(c), points(d), atoms.cell.array, ops) < 0.3

    chosen: list = []

    def take(pool) -> None:
        pick = next((c for c in pool if not any(equivalent(c, d) for d in chosen)), None)
        if pick is not None and len(chosen) < limit:
            chosen.append(pick)

    for kind in sorted({c[2] for c in candidates}):  # the farthest of each kind first, then farthest overall
        take(c for c in candidates if c[2] == kind)
    while len(chosen) < limit:
        before = len(chosen)
        take(candidates)
        if len(chosen) == before:
            break
    return chosen


def undo_frenkel(pair: Atoms, host: Atoms, moved: int | None = None) -> Atoms | None:
    """A pristine start from a relaxed Frenkel pair: its moved halide (``moved``, else the pair's
    ``info['vacancy_atom']``) put back on its site in ``host``, every other atom where the pair relaxed it, the
    host's constraints.

    If another atom now sits on that site (:func:`ligbind.builders.vacancies.site_taken`: the pair recombined
    through a neighbour), the relaxed pair as it is (it is pristine already). None when ``pair`` is not
    ``host`` with one atom moved (other atoms or order) or the moved atom is not known.
    """
    if len(pair) != len(host) or pair.get_chemical_symbols() != host.get_chemical_symbols():
        return None
    moved = moved if moved is not None else pair.info.get("vacancy_atom")
    if moved is None:
        return None
    moved = int(moved)
    start = pair.copy()
    start.calc = None
    start.set_constraint([c.copy() for c in host.constraints])
    if not site_taken(start, host.positions[moved], skip=moved):
        start.positions[moved] = host.positions[moved]
    return start
