"""Coverage: n copies of one ligand on one PbX2-terminated slab, and an MAI layer as a surface treatment.

Sites. The copies go on spread-out sets of surface Pb chosen by farthest-point sampling under the periodic
minimum-image metric (ASE ``get_all_distances(mic=True)``): from each surface Pb as a start, the next Pb is
the one farthest (minimum image) from those already chosen, ties broken by the lower atom index. Sets that
one of the slab's symmetry operations (spglib, :func:`ligbind.builders.slab.surface_symmetry`) maps onto
each other are one set; the distinct sets come most spread first (largest smallest pair distance).

Copies. Each copy is placed by :func:`ligbind.builders.placement.place_ligand` restricted to its own Pb,
on the slab holding the copies already placed (they are obstacles of its clash terms, with their periodic
images). Copy k carries tag k (1, 2, ...); ``info['anchor_sites']`` lists every copy's anchors with their
``copy`` number. The finished structure is checked once more with an ASE neighbour list: no atom of a copy
may come closer than the placement's hard limits to another copy or to its own periodic image.

``n = "monolayer"`` means one copy on every surface Pb (strictly: if not every copy fits, the error says
how many did).

MAI layer. The AX layer that would continue the bulk above the top PbX2 layer (from
:func:`ligbind.builders.slab.build_slab` with more layers), aligned on the slab's top Pb, with
methylammonium on the A sites (a Cs A site becomes MA, C–N in-plane along ±[110] in a checkerboard, as the
MAPbI3 bulk builder orients them) and I− atop each surface Pb. All its atoms carry tag 1: it is an
adsorbate layer on the PbI2-terminated slab.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from ligbind.builders.ligands import LigandEntry, resolve_ligand
from ligbind.builders.placement import MIN_DISTANCE, MIN_DISTANCE_H, anchor_sites, place_ligand
from ligbind.builders.slab import (
    HALIDES,
    build_slab,
    check_pbi2_terminated,
    find_layers,
    layer_name,
    surface_pb,
    surface_symmetry,
)
from ligbind.errors import LigbindError

MONOLAYER = "monolayer"
MAI_LAYER = "MAI-layer"
LAYER_INTERSTITIAL_HEIGHT = 3.15  # Å above the layer's iodides: where the next PbI2 layer's iodides would sit
SPREAD_DECIMALS = 3  # Å rounding of distances when comparing farthest-point candidates (ties → lower index)
SYMMETRY_MATCH = 0.3  # Å: an image of a Pb under a symmetry operation lands on this Pb


def coverage_count(slab: Atoms, n: int | str) -> int:
    """The number of copies asked for: ``n`` itself or, for ``"monolayer"``, the number of surface Pb.

    Parameters
    ----------
    slab : ase.Atoms
        A PbX2-terminated slab (checked).
    n : int or str
        1 ≤ n ≤ number of surface Pb, or ``"monolayer"``.

    Returns
    -------
    int
        The number of copies.

    Raises
    ------
    LigbindError
        n below 1, above the number of surface Pb, or an unknown word.
    """
    n_pb = len(surface_pb(slab))
    if isinstance(n, str):
        if n.strip().lower() != MONOLAYER:
            raise LigbindError(f"bad coverage '{n}': give a number of ligands (1..{n_pb}) or 'monolayer'")
        return n_pb
    if int(n) < 1:
        raise LigbindError(f"bad coverage {n}: need at least 1 ligand")
    if int(n) > n_pb:
        raise LigbindError(
            f"coverage {n} does not fit: this slab has {n_pb} surface Pb (one ligand per Pb at most; "
            "use a larger slab)"
        )
    return int(n)


def _farthest_point_set(distances: np.ndarray, start: int, n: int) -> list[int]:
    """Greedy farthest-point sampling of ``n`` points from ``start`` (positions in the distance matrix)."""
    chosen = [start]
    while len(chosen) < n:
        nearest = np.round(distances[:, chosen].min(axis=1), SPREAD_DECIMALS)
        nearest[chosen] = -1.0
        chosen.append(int(np.argmax(nearest)))  # argmax: the first (lowest index) of equal maxima
    return chosen


def _pb_permutation(
    slab: Atoms, pbs: np.ndarray, rot: np.ndarray, trans: np.ndarray
) -> dict[int, int] | None:
    """Where a symmetry operation sends each surface Pb (None if an image lands on no surface Pb)."""
    frac = slab.get_scaled_positions(wrap=False)[pbs]
    image = frac @ rot.T + trans
    cell = slab.cell.array
    out = {}
    for p, f in zip(pbs, image, strict=True):
        d = frac - f
        d -= np.round(d)
        dist = np.linalg.norm(d @ cell, axis=1)
        k = int(np.argmin(dist))
        if dist[k] > SYMMETRY_MATCH:
            return None
        out[int(p)] = int(pbs[k])
    return out


def _spread(distances: np.ndarray, positions: list[int]) -> tuple[float, float]:
    """(smallest, mean) minimum-image distance within a set (∞ for a single site)."""
    if len(positions) < 2:
        return float("inf"), float("inf")
    sub = distances[np.ix_(positions, positions)][np.triu_indices(len(positions), 1)]
    return float(sub.min()), float(sub.mean())


def spread_site_sets(slab: Atoms, n: int | str) -> list[dict]:
    """Symmetry-distinct sets of ``n`` surface Pb from farthest-point sampling, most spread first.

    Parameters
    ----------
    slab : ase.Atoms
        A PbX2-terminated slab, possibly with adsorbates (tags > 0; they do not change the sites).
    n : int or str
        Number of sites, or ``"monolayer"`` (see :func:`coverage_count`).

    Returns
    -------
    list of dict
        {``pb``: sorted tuple of atom indices, ``min_distance``, ``mean_distance``: Å (minimum image),
        ``start``: the Pb the sampling started from}.

    Raises
    ------
    LigbindError
        As :func:`coverage_count`.
    """
    count = coverage_count(slab, n)
    pbs = surface_pb(slab)
    distances = slab.get_all_distances(mic=True)[np.ix_(pbs, pbs)]
    bare = slab[slab.get_tags() == 0]
    # symmetry of the bare slab; its surface Pb are the same atoms (tags 0 come first in every complex)
    ops = surface_symmetry(bare)
    perms = [p for rot, trans in ops if (p := _pb_permutation(bare, pbs, rot, trans)) is not None]
    found: list[dict] = []
    seen: set[tuple[int, ...]] = set()
    for start in range(len(pbs)):
        positions = _farthest_point_set(distances, start, count)
        key = tuple(sorted(int(pbs[i]) for i in positions))
        if key in seen:
            continue
        seen.update(tuple(sorted(perm[p] for p in key)) for perm in perms)
        seen.add(key)
        dmin, dmean = _spread(distances, positions)
        found.append({"pb": key, "min_distance": dmin, "mean_distance": dmean, "start": int(pbs[start])})
    found.sort(key=lambda s: (-round(s["min_distance"], 2), -round(s["mean_distance"], 2), s["pb"]))
    return found


def copy_clashes(atoms: Atoms) -> list[tuple[int, int, float]]:
    """Atom pairs of different copies, or of a copy and its own periodic image, closer than the hard limits.

    Parameters
    ----------
    atoms : ase.Atoms
        A coverage structure (copy k has tag k ≥ 1).

    Returns
    -------
    list of (int, int, float)
        (i, j, distance in Å) for each clash (each pair once).
    """
    tags = atoms.get_tags()
    is_h = np.array(atoms.get_chemical_symbols()) == "H"
    i, j, d, shift = neighbor_list("ijdS", atoms, MIN_DISTANCE)
    out = []
    for a, b, dist, s in zip(i, j, d, shift, strict=True):
        if a > b or tags[a] == 0 or tags[b] == 0:
            continue
        if tags[a] == tags[b] and not np.any(s):
            continue  # bonds within one copy
        limit = MIN_DISTANCE_H if (is_h[a] or is_h[b]) else MIN_DISTANCE
        if dist < limit:
            out.append((int(a), int(b), float(dist)))
    return out


def place_coverage(
    slab: Atoms,
    ligand: str | LigandEntry,
    n: int | str,
    *,
    site_set: int = 0,
    seed: int = 0,
    relaxed_ligand: Atoms | None = None,
    n_conformers: int = 3,
) -> Atoms:
    """``n`` copies of ``ligand`` on the ``site_set``-th spread set of surface Pb (neutral mode).

    Parameters
    ----------
    slab : ase.Atoms
        A bare PbX2-terminated slab (checked; adsorbates are refused).
    ligand : str or LigandEntry
        Library name or entry.
    n : int or str
        Number of copies, or ``"monolayer"``.
    site_set : int
        Which of :func:`spread_site_sets` (0 = the most spread).
    seed : int
        Seeds conformers and orientations (same inputs → same structure).
    relaxed_ligand : ase.Atoms, optional
        The isolated ligand relaxed with the calculation's protocol (see :func:`place_ligand`).
    n_conformers : int
        RDKit conformers tried per copy.

    Returns
    -------
    ase.Atoms
        Slab (tags 0, constraints kept) then copy 1, 2, ... (tags 1, 2, ...). ``info``: the slab's material
        keys, kind "coverage", ligand, n, site_set, sites (JSON list of Pb), min_site_distance, and
        anchor_sites (JSON: anchor, element, pb, distance, copy).

    Raises
    ------
    LigbindError
        Bad n, a slab with adsorbates, no such site set, or a copy that does not fit (one line, naming how
        many copies fitted).
    """
    if (slab.get_tags() > 0).any():
        raise LigbindError("coverage is built on a bare slab: this structure already carries an adsorbate")
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    count = coverage_count(slab, n)
    sets = spread_site_sets(slab, count)
    if not 0 <= site_set < len(sets):
        raise LigbindError(f"bad site set {site_set}: {len(sets)} symmetry-distinct sets of {count} Pb")
    chosen = sets[site_set]
    host, sites = slab.copy(), []
    for copy, pb in enumerate(chosen["pb"], start=1):
        host, new_sites = _add_copy(host, entry, pb, copy, count, seed, relaxed_ligand, n_conformers)
        sites += new_sites
    clashes = copy_clashes(host)
    if clashes:
        a, b, d = clashes[0]
        raise LigbindError(
            f"coverage {count} of '{entry.name}' does not fit: copies clash ({d:.2f} Å between atoms {a} and {b})"
        )
    host.info = {
        **{k: v for k, v in slab.info.items() if k in ("material", "phase", "size", "layers", "vacuum")},
        "kind": "coverage",
        "ligand": entry.name,
        "ligand_smiles": entry.smiles,
        "ligand_charge": int(entry.charge),
        "mode": "neutral",
        "n": count,
        "site_set": site_set,
        "sites": json.dumps(list(chosen["pb"])),
        "min_site_distance": round(chosen["min_distance"], 3) if count > 1 else 0.0,
        "anchor_sites": json.dumps(sites),
        "config": site_set,
    }
    return host


def _add_copy(
    host: Atoms,
    entry: LigandEntry,
    pb: int,
    copy: int,
    count: int,
    seed: int,
    relaxed_ligand: Atoms | None,
    n_conformers: int,
) -> tuple[Atoms, list[dict]]:
    """``host`` with one more copy (tag ``copy``) anchored on ``pb``, and that copy's anchor sites."""
    try:
        placed = place_ligand(
            host,
            entry,
            n_configs=1,
            mode="neutral",
            seed=seed + 1009 * copy,
            n_conformers=n_conformers,
            relaxed_ligand=relaxed_ligand,
            only_pb=[pb],
        )[0]
    except LigbindError:
        raise LigbindError(
            f"coverage {count} of '{entry.name}' does not fit: only {copy - 1} of {count} copies could be "
            f"placed without clashes (use a smaller n or a larger slab)"
        ) from None
    tags = placed.get_tags()
    tags[len(host) :] = copy
    placed.set_tags(tags)
    return placed, [{**s, "copy": copy} for s in anchor_sites(placed)]


def copy_indices(atoms: Atoms) -> dict[int, np.ndarray]:
    """Atom indices of each copy (tag → indices), tags ≥ 1.

    Parameters
    ----------
    atoms : ase.Atoms
        A coverage structure.

    Returns
    -------
    dict
        {copy tag: indices}.
    """
    tags = atoms.get_tags()
    return {int(t): np.where(tags == t)[0] for t in sorted(set(tags[tags > 0].tolist()))}


# ------------------------------------------------------------------------------------------------ MAI layer
def mai_layer(slab: Atoms) -> Atoms:
    """The slab with a full MAI layer on its top PbX2 face (MA+ on the A-site hollows, I− atop each Pb).

    Parameters
    ----------
    slab : ase.Atoms
        A bare PbX2-terminated slab built by :func:`build_slab` (``info``: material, phase, size, layers;
        it may be relaxed).

    Returns
    -------
    ase.Atoms
        Slab (tags 0) + the layer (one tag ≥ 1 per ion); ``info``: kind "treatment", treatment "MAI-layer", ligand
        "MAI-layer", n (formula units).

    Raises
    ------
    LigbindError
        A slab with adsorbates, not PbX2-terminated, or without the builder's info.
    """
    if (slab.get_tags() > 0).any():
        raise LigbindError("the MAI layer goes on a bare slab: this structure already carries an adsorbate")
    layers = check_pbi2_terminated(slab)
    missing = [k for k in ("material", "size", "layers") if k not in slab.info]
    if missing:
        raise LigbindError(f"slab info lacks {', '.join(missing)}: build the slab with ligbind build slab")
    n_layers = int(slab.info["layers"])
    big = build_slab(
        slab.info["material"], slab.info.get("phase"), slab.info["size"], layers=n_layers + 2, fix_layers=0
    )
    big_layers = find_layers(big)
    ax = big_layers[n_layers]  # the AX layer right above the n-layer slab's top PbX2 layer
    if layer_name(big, ax) in ("?",) or layer_name(big, ax).startswith("Pb"):
        raise LigbindError(f"internal: layer {n_layers} of the continued slab is {layer_name(big, ax)}")
    shift = _alignment(slab, surface_pb(slab, layers), big, big_layers[n_layers - 1])
    layer = _ma_a_sites(big[ax], slab.cell.array)
    layer.translate(shift)
    layer.set_cell(slab.cell)
    layer.pbc = slab.pbc
    layer.set_tags(_ion_tags(layer))
    out = slab.copy()
    out += layer
    out.wrap()
    out.set_constraint(slab.constraints)
    n_units = sum(1 for s in layer.get_chemical_symbols() if s in HALIDES)
    out.info = {
        **{k: v for k, v in slab.info.items() if k in ("material", "phase", "size", "layers", "vacuum")},
        "kind": "treatment",
        "treatment": "MAI-layer",
        "ligand": "MAI-layer",
        "n": n_units,
        "config": 0,
    }
    return out


def _ion_tags(layer: Atoms) -> np.ndarray:
    """One tag per ion of the layer (1, 2, ...): the bonded fragments (ASE natural cutoffs), so that each ion
    is checked like one copy of a ligand."""
    from ase.neighborlist import natural_cutoffs
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = neighbor_list("ij", layer, natural_cutoffs(layer, mult=1.15))
    graph = csr_matrix((np.ones(len(i)), (i, j)), shape=(len(layer), len(layer)))
    _, labels = connected_components(graph, directed=False)
    return labels + 1


def _alignment(slab: Atoms, pbs: np.ndarray, big: Atoms, big_top: np.ndarray) -> np.ndarray:
    """Translation taking the continued slab's PbX2 layer onto the slab's top Pb (first Pb pair, mean z)."""
    big_pbs = np.array([i for i in big_top if big[i].symbol == "Pb"])
    shift = slab.positions[pbs[0]] - big.positions[big_pbs[0]]
    shift[2] = slab.positions[pbs, 2].mean() - big.positions[big_pbs, 2].mean()
    return shift


def _ma_a_sites(layer: Atoms, cell: np.ndarray) -> Atoms:
    """The AX layer with each Cs A site replaced by methylammonium (C–N along ±[110], checkerboard)."""
    from ligbind.builders.bulk import methylammonium

    if "Cs" not in layer.get_chemical_symbols():
        return layer.copy()  # MAPbI3: the layer already holds MA, oriented by the bulk builder
    ma = methylammonium()
    out = layer[[a.index for a in layer if a.symbol != "Cs"]]
    for atom in layer:
        if atom.symbol != "Cs":
            continue
        frac = np.linalg.solve(cell.T, atom.position)
        # pseudo-cubic A-site indices in plane; the parity alternates the C–N direction (no in-plane dipole)
        nx, ny = (max(1, round(np.linalg.norm(cell[k]) / 6.3)) for k in (0, 1))
        parity = (int(np.floor(frac[0] * nx)) + int(np.floor(frac[1] * ny))) % 2
        mol = ma.copy()
        mol.rotate(45 if parity == 0 else 225, "z")
        mol.translate(atom.position)
        out += mol
    return out


def mai_unit() -> LigandEntry:
    """The MAI formula unit (CH3NH3+ I− ion pair, neutral): the reference of the MAI layer's energy."""
    return LigandEntry(
        "MAI", "C[NH3+].[I-]", 0, "[I-:1]", 1, "methylammonium iodide ion pair (unit of the MAI layer)"
    )


def _layer_interstitial_sites(atoms: Atoms, halides: np.ndarray) -> list[np.ndarray]:
    """Bridge sites above the midpoints of neighbouring layer halides (minimum image), one per position."""
    from ase.geometry import find_mic

    z_layer = float(atoms.positions[halides, 2].mean())
    sites: list[np.ndarray] = []
    for a, b in itertools.combinations(halides, 2):
        vec, dist = find_mic(atoms.positions[b] - atoms.positions[a], atoms.cell, atoms.pbc)
        if dist < 7.5:  # nearest neighbours (~6.3 Å) only
            site = atoms.positions[a] + vec / 2
            site[2] = z_layer + LAYER_INTERSTITIAL_HEIGHT
            if all(np.linalg.norm(find_mic(site - s, atoms.cell, atoms.pbc)[0]) > 1.0 for s in sites):
                sites.append(site)
    return sites


def layer_frenkel_pairs(atoms: Atoms, max_pairs: int = 2) -> list[Atoms]:
    """Frenkel pairs of a halide-containing treatment layer (the MAI layer): one of its iodides moved to an
    interstitial site above the layer.

    The interstitial sites are where the next PbI2 layer's bridging iodides would sit: above the midpoint of
    two neighbouring layer iodides, :data:`LAYER_INTERSTITIAL_HEIGHT` above their plane. Pairs are ordered
    and reduced to symmetry-distinct ones exactly as the PbX2-surface pairs
    (:func:`ligbind.builders.defects.frenkel_pairs`). In the defect structures every atom has tag 0: the
    layer is the surface here, so the interstitial H-bonded to its MA+ is surface chemistry, not a ligand
    binding the interstitial (the Frenkel analysis flags that only for adsorbates, tags > 0).

    Parameters
    ----------
    atoms : ase.Atoms
        A relaxed slab with a treatment layer (tags ≥ 1) that holds halides.
    max_pairs : int
        Most structures returned.

    Returns
    -------
    list of ase.Atoms
        As :func:`~ligbind.builders.defects.frenkel_pairs` (``interstitial``: "bridge-above-layer").

    Raises
    ------
    LigbindError
        No halide in the treatment layer, ``max_pairs`` < 1, or no pair that fits.
    """
    from ase.geometry import find_mic

    from ligbind.builders.defects import MIN_SEPARATION, _distinct_pairs, pair_structures

    if max_pairs < 1:
        raise LigbindError(f"bad number of Frenkel pairs {max_pairs}: need at least 1")
    tags = atoms.get_tags()
    halides = np.array([a.index for a in atoms if tags[a.index] > 0 and a.symbol in HALIDES])
    if not len(halides):
        raise LigbindError("the treatment layer holds no halide: use the slab's Frenkel pairs")
    candidates = []
    for site in _layer_interstitial_sites(atoms, halides):
        for v in halides:
            dist = float(np.linalg.norm(find_mic(site - atoms.positions[v], atoms.cell, atoms.pbc)[0]))
            if dist >= MIN_SEPARATION:
                candidates.append((dist, int(v), "bridge-above-layer", site))
    if not candidates:
        raise LigbindError("no vacancy–interstitial pair fits on this treatment layer")
    candidates.sort(key=lambda c: (-round(c[0], 1), c[1]))
    # the layer is this surface: no adsorbate to bind (or be) the interstitial
    return pair_structures(atoms, _distinct_pairs(atoms, candidates, max_pairs), untag=True)


__all__ = [
    "MAI_LAYER",
    "mai_unit",
    "layer_frenkel_pairs",
    "MONOLAYER",
    "coverage_count",
    "spread_site_sets",
    "place_coverage",
    "copy_clashes",
    "copy_indices",
    "mai_layer",
]
