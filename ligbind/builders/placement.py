"""Place ligands on PbX2-terminated slabs: anchors at Pb–X bonding distance above undercoordinated Pb.

Each candidate configuration is a rigid-body fit (rotation + translation, scipy) of one RDKit conformer that
puts the chosen anchor atoms at their bond length from the chosen surface Pb while keeping every other atom
clear of the slab, above the top layer and clear of the ligand's own periodic images. Candidates differ in
site(s), binding motif (chelating / bridging), conformer and starting orientation.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from scipy.optimize import minimize
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from ligbind.builders.ligands import LigandEntry, ligand_conformers, resolve_ligand
from ligbind.builders.slab import (
    HALIDES,
    check_pbi2_terminated,
    surface_halides,
    surface_pb,
    surface_symmetry,
    symmetry_rmsd,
)
from ligbind.errors import LigbindError

# Typical Pb–anchor bond lengths (Å) for lone-pair donors on surface Pb.
BOND_LENGTH = {"O": 2.6, "N": 2.65, "S": 2.95, "F": 2.75, "Cl": 2.95, "Br": 3.05, "I": 3.2}
MIN_DISTANCE = 1.6  # Å, hard limit ligand heavy atom – slab atom
MIN_DISTANCE_H = 1.0  # Å, hard limit ligand H – slab atom
SOFT_DISTANCE = 3.0  # Å, placement keeps heavy atoms at least this far from non-bonded slab atoms
SOFT_DISTANCE_H = 2.3
BOND_TOLERANCE = 0.35  # Å accepted deviation of an anchor–Pb distance from BOND_LENGTH
MODES = ("neutral", "exchange")


@dataclass
class Candidate:
    """One placement: ligand positions and which anchor sits on which Pb."""

    positions: np.ndarray
    pairs: list[tuple[int, int, float]]  # (ligand atom index, slab Pb index, target distance)
    conformer: int
    motif: str
    penalty: float


def _image_shifts(cell: np.ndarray) -> np.ndarray:
    """Lattice translations of the 3×3×3 neighbourhood (including the zero shift).

    The images along z matter when the vacuum is thin: the ligand must not reach the slab's periodic image.
    """
    return np.array(
        [i * cell[0] + j * cell[1] + k * cell[2] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]
    )


class _Fitter:
    """Rigid-body placement objective for one conformer on one slab."""

    def __init__(self, slab: Atoms, ligand: Atoms, pairs: list[tuple[int, int, float]], z_floor: float):
        self.shifts = _image_shifts(slab.cell.array)
        self.slab_pos = (slab.positions[None, :, :] + self.shifts[:, None, :]).reshape(-1, 3)
        self.n_slab = len(slab)
        self.pairs = pairs
        self.lig0 = ligand.positions.copy()
        self.center = self.lig0.mean(axis=0)
        self.is_h = np.array(ligand.get_chemical_symbols()) == "H"
        self.soft = np.where(self.is_h, SOFT_DISTANCE_H, SOFT_DISTANCE)[:, None]
        # exclude the anchor–target Pb pairs (every image) from the clash term
        self.excluded = np.zeros((len(ligand), len(self.slab_pos)), dtype=bool)
        for a, pb, _ in pairs:
            self.excluded[a, pb :: self.n_slab] = True
        # slab atoms (and images) far below the floor only touch a ligand that is already penalised for
        # sinking below it: leave them out of the clash term (the acceptance check uses all of them)
        near = self.slab_pos[:, 2] > z_floor - SOFT_DISTANCE - 1.0
        self.slab_pos = self.slab_pos[near]
        self.excluded = self.excluded[:, near]
        self.z_floor = z_floor
        self.nonzero_shifts = self.shifts[np.any(self.shifts != 0, axis=1)]
        self.slab = slab

    def positions(self, x: np.ndarray) -> np.ndarray:
        rot = Rotation.from_rotvec(x[:3])
        return rot.apply(self.lig0 - self.center) + self.center + x[3:]

    def penalty(self, x: np.ndarray) -> float:
        pos = self.positions(x)
        bond = sum((np.linalg.norm(pos[a] - self.slab.positions[pb]) - r0) ** 2 for a, pb, r0 in self.pairs)
        d = cdist(pos, self.slab_pos)
        clash = np.where(self.excluded, 0.0, np.clip(self.soft - d, 0, None)) ** 2
        below = np.clip(self.z_floor - pos[:, 2], 0, None) ** 2
        heavy = pos[~self.is_h]
        own = (
            cdist(heavy, (heavy[None] + self.nonzero_shifts[:, None]).reshape(-1, 3)) if len(heavy) else None
        )
        self_clash = 0.0 if own is None else float((np.clip(2.5 - own, 0, None) ** 2).sum())
        return 10 * bond + clash.sum() + 10 * below.sum() + self_clash


def _random_start(fitter: _Fitter, rng: np.random.Generator) -> np.ndarray:
    """Random orientation with the anchors' centroid straight above their Pb targets."""
    rotvec = Rotation.random(random_state=rng.integers(2**31)).as_rotvec()
    rot = Rotation.from_rotvec(rotvec)
    anchors = sorted({a for a, _, _ in fitter.pairs})
    anchor_pos = rot.apply(fitter.lig0[anchors] - fitter.center) + fitter.center
    target = np.mean([fitter.slab.positions[pb] + [0, 0, r0] for _, pb, r0 in fitter.pairs], axis=0)
    return np.concatenate([rotvec, target - anchor_pos.mean(axis=0)])


def min_distances(slab: Atoms, ligand_positions: np.ndarray) -> np.ndarray:
    """Shortest distance (with periodic images) from each ligand atom to any slab atom.

    Parameters
    ----------
    slab : ase.Atoms
        The slab (its cell gives the images: the 3×3×3 neighbourhood).
    ligand_positions : numpy.ndarray
        (n, 3) Cartesian positions.

    Returns
    -------
    numpy.ndarray
        (n,) distances in Å.
    """
    shifts = _image_shifts(slab.cell.array)
    images = (slab.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    return cdist(ligand_positions, images).min(axis=1)


def _acceptable(slab: Atoms, ligand: Atoms, pos: np.ndarray, pairs, z_top: float) -> bool:
    is_h = np.array(ligand.get_chemical_symbols()) == "H"
    dmin = min_distances(slab, pos)
    if np.any(dmin[~is_h] < MIN_DISTANCE) or np.any(dmin[is_h] < MIN_DISTANCE_H):
        return False
    shifts = _image_shifts(slab.cell.array)
    shifts = shifts[np.any(shifts != 0, axis=1)]
    own = cdist(pos, (pos[None] + shifts[:, None]).reshape(-1, 3)).min(axis=1)  # to the ligand's own images
    if np.any(own[~is_h] < MIN_DISTANCE) or np.any(own[is_h] < MIN_DISTANCE_H):
        return False
    if np.any(pos[:, 2] <= z_top):
        return False
    return all(abs(np.linalg.norm(pos[a] - slab.positions[pb]) - r0) < BOND_TOLERANCE for a, pb, r0 in pairs)


def _neighbour_pb_sets(slab: Atoms, pbs: np.ndarray, k: int) -> list[tuple[int, ...]]:
    """Sets of k surface Pb that are mutual nearest neighbours (sorted by compactness)."""
    if k == 1:
        return [(int(p),) for p in pbs]
    sets = []
    for combo in itertools.combinations(pbs, k):
        d = [slab.get_distance(a, b, mic=True) for a, b in itertools.combinations(combo, 2)]
        sets.append((max(d), tuple(int(c) for c in combo)))
    sets.sort()
    return [s for _, s in sets[: max(4, len(pbs))]]


def _motifs(ligand: Atoms, denticity: int, slab: Atoms, pbs: np.ndarray, rng: np.random.Generator):
    """(motif name, [(anchor, pb, r0), ...]) pairings, most plausible first, then shuffled."""
    symbols = ligand.get_chemical_symbols()
    anchors = [int(a) for a in ligand.info["anchors"]]
    options = []
    for pb in pbs:
        for a in anchors:
            options.append(("monodentate", [(a, int(pb), BOND_LENGTH.get(symbols[a], 2.7))]))
    multi = _multidentate_motifs(ligand, denticity, slab, pbs) if denticity >= 2 else []
    rng.shuffle(options)
    rng.shuffle(multi)
    # multidentate ligands: alternate multidentate and monodentate motifs, multidentate first
    if multi:
        merged = []
        for m, o in itertools.zip_longest(multi, options):
            merged += [x for x in (m, o) if x is not None]
        return merged
    return options


def _multidentate_motifs(ligand: Atoms, denticity: int, slab: Atoms, pbs: np.ndarray) -> list:
    """Chelating (two anchors of one group on one Pb) and bridging / n-dentate (anchors on neighbouring Pb)."""
    symbols = ligand.get_chemical_symbols()
    groups = [list(g) for g in ligand.info.get("anchor_groups", [ligand.info["anchors"]])]
    anchors = [int(a) for a in ligand.info["anchors"]]
    multi = []
    for group in groups:
        if len(group) >= 2:
            for pair in itertools.combinations(group, 2):
                for pb in pbs:  # chelating: both anchors on one Pb
                    multi.append(
                        ("chelating", [(int(a), int(pb), BOND_LENGTH.get(symbols[a], 2.7)) for a in pair])
                    )
    n_multi = min(denticity, len(anchors))
    for pb_set in _neighbour_pb_sets(slab, pbs, n_multi):
        for anchor_set in itertools.combinations(anchors, n_multi):
            pairs = [
                (int(a), pb, BOND_LENGTH.get(symbols[a], 2.7))
                for a, pb in zip(anchor_set, pb_set, strict=True)
            ]
            multi.append(("bridging" if n_multi == 2 else f"{n_multi}-dentate", pairs))
    return multi


def _same_configuration(
    a: Candidate, b: Candidate, cell: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]]
) -> bool:
    """True when ``b`` is ``a`` (RMSD < 0.5 Å) or its image under one of the slab's symmetry operations."""
    if a.conformer != b.conformer or len(a.positions) != len(b.positions):
        return False
    return symmetry_rmsd(a.positions, b.positions, cell, ops) < 0.5


def _best_fit(fitter: _Fitter, rng: np.random.Generator):
    """Lowest-penalty L-BFGS-B minimum of the fit from four random starting orientations."""
    best = None
    for _ in range(4):
        res = minimize(fitter.penalty, _random_start(fitter, rng), method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    return best


def _place(
    slab: Atoms,
    conformers: list[Atoms],
    denticity: int,
    n_configs: int,
    seed: int,
    pbs: np.ndarray,
    z_top: float,
    z_floor: float,
    max_trials: int,
) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    found: list[Candidate] = []
    trials = 0
    ops = surface_symmetry(slab)  # configurations related by these are one configuration
    for round_ in itertools.count():
        progress = False
        for ci, conf in enumerate(conformers):
            motifs = _motifs(conf, denticity, slab, pbs, np.random.default_rng(seed + 7919 * ci + round_))
            for motif, pairs in motifs[: max(1, n_configs)]:
                trials += 1
                if trials > max_trials:
                    return found
                fitter = _Fitter(slab, conf, pairs, z_floor)
                best = _best_fit(fitter, rng)
                pos = fitter.positions(best.x)
                if not _acceptable(slab, conf, pos, pairs, z_top):
                    continue
                cand = Candidate(pos, pairs, ci, motif, float(best.fun))
                if any(_same_configuration(cand, f, slab.cell.array, ops) for f in found):
                    continue
                found.append(cand)
                progress = True
                if len(found) >= n_configs:
                    return found
        if not progress and round_ >= 2:
            return found


@dataclass
class _Site:
    """The surface a ligand is placed on (in exchange mode: with one surface halide removed).

    ``work`` is the slab the fit runs on: ``base`` itself, or in exchange mode a copy of it shifted in-plane
    by ``shift`` so that the vacancy sits at the cell centre (its Pb neighbours are then their own nearest
    images, since the fit measures anchor–Pb distances without periodic images).
    """

    base: Atoms
    work: Atoms
    shift: np.ndarray
    pbs: np.ndarray  # surface Pb the anchors may bind (exchange: the two next to the vacancy)
    z_top: float  # highest heavy atom of the top layer
    removed: int | None = None  # index in the input slab of the exchanged halide
    vacated: np.ndarray | None = None  # its position, in ``work`` coordinates


def place_ligand(
    slab: Atoms,
    ligand: str | LigandEntry,
    n_configs: int = 3,
    mode: str = "neutral",
    seed: int = 0,
    n_conformers: int = 3,
    relaxed_ligand: Atoms | None = None,
    only_pb: list[int] | None = None,
) -> list[Atoms]:
    """Candidate ligand@slab configurations.

    Parameters
    ----------
    slab : ase.Atoms
        A PbX2-terminated slab (checked); on an AX-terminated slab only ``mode="exchange"`` (A-site exchange
        of an ammonium salt, :func:`ligbind.builders.termination.place_a_site`).
    ligand : str or LigandEntry
        Library name or a resolved :class:`LigandEntry`.
    n_configs : int
        Number of distinct configurations wanted: none is another's image under a symmetry operation of the
        slab (see :func:`surface_symmetry`), since such a pair relaxes to the same energy.
    mode : str
        ``"neutral"``: the whole ligand (molecule, ion pair, salt) adsorbs. ``"exchange"``: the ligand's anion
        replaces a surface halide (entries with an ``exchange`` section); on an AX-terminated slab the
        ligand's ammonium cation replaces a surface A cation.
    seed : int
        Seeds conformers and orientations (same inputs → same configurations).
    n_conformers : int
        RDKit conformers tried.
    relaxed_ligand : ase.Atoms, optional
        The isolated ligand already relaxed with the calculation's protocol (same atom order as the first
        RDKit conformer). It replaces that conformer, so complexes start from the relaxed molecule on the
        relaxed slab and their relaxation only has to find the adsorption geometry (neutral mode only).
    only_pb : list of int, optional
        Neutral mode: anchor only on these surface Pb (indices in ``slab``), e.g. one copy of a coverage
        (:mod:`ligbind.builders.coverage`); atoms already adsorbed on ``slab`` count as obstacles.

    Returns
    -------
    list of ase.Atoms
        Slab atoms first (tags 0, constraints kept), ligand atoms after (tags 1). ``info`` records the
        ligand, mode, motif, conformer and ``anchor_sites``: JSON list of {anchor, element, pb, distance}.

    Raises
    ------
    LigbindError
        Bad mode or n_configs, slab not PbX2-terminated, no exchange anion, mismatched relaxed ligand, no fit.
    """
    if mode not in MODES:
        raise LigbindError(f"unknown binding mode '{mode}' (choose from {', '.join(MODES)})")
    if n_configs < 1:
        raise LigbindError(f"bad number of configurations {n_configs}: need at least 1")
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    from ligbind.builders.termination import check_mode_for_surface, place_a_site, surface_kind, top_layer

    if surface_kind(slab) == "AX":  # AX-terminated: only A-site exchange (ligbind.builders.termination)
        check_mode_for_surface(entry, mode, "AX", top=top_layer(slab))
        return place_a_site(slab, entry, n_configs, seed, n_conformers)
    site, placed_entry = _site_for(slab, entry, mode)
    if only_pb is not None and site.removed is None:
        site.pbs = np.array([p for p in site.pbs if int(p) in {int(q) for q in only_pb}], dtype=int)
        if not len(site.pbs):
            raise LigbindError(f"none of the Pb {list(only_pb)} is a surface Pb of this slab")
    conformers = ligand_conformers(placed_entry, n_conformers=n_conformers, seed=seed)
    if relaxed_ligand is not None and site.removed is None:
        conformers[0] = _relaxed_conformer(conformers[0], relaxed_ligand, entry.name)
    found = _candidates(site, conformers, placed_entry.denticity, n_configs, seed)
    if not found:
        raise _no_placement_error(entry.name, conformers[0], site.base)
    return [
        _complex(slab, site, conformers[cand.conformer], cand, k, entry, placed_entry, mode)
        for k, cand in enumerate(found)
    ]


def _site_for(slab: Atoms, entry: LigandEntry, mode: str) -> tuple[_Site, LigandEntry]:
    """The surface to place on and what is placed there: the ligand, or in exchange mode its anion."""
    layers = check_pbi2_terminated(slab)
    if mode != "exchange":
        return _neutral_site(slab, layers), entry
    if not entry.exchange:
        raise LigbindError(f"ligand '{entry.name}' has no exchange anion: use --mode neutral")
    anion = resolve_ligand(smiles=entry.exchange["anion"])
    return _exchange_site(slab, layers), anion


def _top_z(base: Atoms, layers: list[np.ndarray]) -> float:
    """Height of the highest heavy atom of the top layer."""
    heavy_top = [i for i in layers[-1] if base[i].symbol != "H"]
    return float(base.positions[heavy_top, 2].max())


def _neutral_site(slab: Atoms, layers: list[np.ndarray]) -> _Site:
    """The whole slab, every surface Pb available."""
    base = slab.copy()
    return _Site(base, base, np.zeros(3), surface_pb(base, layers), _top_z(base, layers))


def _exchange_site(slab: Atoms, layers: list[np.ndarray]) -> _Site:
    """The slab without its first surface halide, shifted to centre the vacancy; its two nearest Pb."""
    removed = int(surface_halides(slab, layers)[0])
    vacated = slab.positions[removed].copy()
    base = slab.copy()
    del base[removed]  # ASE renumbers the FixAtoms indices
    layers = [np.array([i - (i > removed) for i in layer if i != removed]) for layer in layers]
    z_top = _top_z(base, layers)
    pbs = surface_pb(base, layers)
    shift = np.zeros(3)
    shift[:2] = (base.cell.array[0] + base.cell.array[1])[:2] / 2 - vacated[:2]
    work = base.copy()
    work.translate(shift)
    work.wrap()
    vacated = vacated + shift
    # the anion goes into the vacancy: anchor on the two Pb next to the vacated site
    d = np.linalg.norm(work.positions[pbs] - vacated, axis=1)
    pbs = pbs[np.argsort(d)[:2]]
    return _Site(base, work, shift, pbs, z_top, removed, vacated)


def _relaxed_conformer(first: Atoms, relaxed_ligand: Atoms, name: str) -> Atoms:
    """The first RDKit conformer with the positions of the relaxed ligand (centred at the origin)."""
    if relaxed_ligand.get_chemical_symbols() != first.get_chemical_symbols():
        raise LigbindError(f"relaxed ligand does not match '{name}' atom by atom")
    first = first.copy()
    first.positions = relaxed_ligand.positions - relaxed_ligand.positions.mean(axis=0)
    return first


def _candidates(
    site: _Site, conformers: list[Atoms], denticity: int, n_configs: int, seed: int
) -> list[Candidate]:
    """Fitted configurations; a halide anion in exchange mode goes exactly onto the vacated X site."""
    if site.removed is not None and len(conformers[0]) == 1:
        symbol = conformers[0][0].symbol
        pairs = [(0, int(pb), BOND_LENGTH.get(symbol, 2.7)) for pb in site.pbs]
        return [Candidate(site.vacated[None, :].copy(), pairs, 0, "x-site", 0.0)]
    if site.removed is not None:
        denticity = max(2, denticity)
    z_floor = site.z_top + 1.0
    return _place(
        site.work,
        conformers,
        denticity,
        n_configs,
        seed,
        site.pbs,
        site.z_top,
        z_floor,
        max_trials=40 * n_configs,
    )


def _no_placement_error(name: str, conformer: Atoms, base: Atoms) -> LigbindError:
    """The error for a ligand that found no clash-free placement (with a hint when it is too large)."""
    extent = np.ptp(conformer.positions[:, :2], axis=0).max()
    cell = min(np.linalg.norm(base.cell.array[0]), np.linalg.norm(base.cell.array[1]))
    hint = (
        f" (the ligand spans {extent:.1f} Å, the cell {cell:.1f} Å: try a larger slab)"
        if extent > cell - 3
        else ""
    )
    return LigbindError(f"cannot place ligand '{name}' on this slab without clashes{hint}")


def _complex(
    slab: Atoms,
    site: _Site,
    conformer: Atoms,
    cand: Candidate,
    k: int,
    entry: LigandEntry,
    placed_entry: LigandEntry,
    mode: str,
) -> Atoms:
    """Slab + placed ligand (tags 1) with the configuration recorded in ``info``."""
    base = site.base
    lig = conformer.copy()
    lig.positions = cand.positions - site.shift
    lig.set_tags(1)
    lig.set_cell(base.cell)
    complex_ = base.copy()
    complex_ += lig
    complex_.set_constraint(base.constraints)
    n = len(base)
    sites = [
        {
            "anchor": n + a,
            "element": lig[a].symbol,
            "pb": pb,
            "distance": round(float(np.linalg.norm(cand.positions[a] - site.work.positions[pb])), 3),
        }
        for a, pb, _ in cand.pairs
    ]
    complex_.info = {
        **{k2: v for k2, v in slab.info.items() if k2 in ("material", "phase", "size", "layers", "vacuum")},
        "kind": "complex",
        "ligand": entry.name,
        "ligand_smiles": placed_entry.smiles,
        "ligand_charge": int(placed_entry.charge),
        "mode": mode,
        "motif": cand.motif,
        "conformer": cand.conformer,
        "config": k,
        "anchor_sites": json.dumps(sites),
    }
    if site.removed is not None:
        complex_.info["exchanged_halide"] = slab[site.removed].symbol
        complex_.info["exchanged_indices"] = json.dumps([int(site.removed)])  # in ``slab``
        complex_.info["exchanged_position"] = json.dumps(
            [round(float(v), 4) for v in slab.positions[site.removed]]
        )
    return complex_


def anchor_sites(atoms: Atoms) -> list[dict]:
    """The anchor → Pb assignments recorded in a complex's info.

    Parameters
    ----------
    atoms : ase.Atoms
        A complex from :func:`place_ligand`.

    Returns
    -------
    list of dict
        {anchor, element, pb, distance} per bound anchor; empty if none is recorded.
    """
    return json.loads(atoms.info.get("anchor_sites", "[]"))


def ligand_indices(atoms: Atoms) -> np.ndarray:
    """Indices of adsorbate atoms (tags ≥ 1).

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.

    Returns
    -------
    numpy.ndarray
        The indices, ascending.
    """
    return np.where(atoms.get_tags() > 0)[0]


__all__ = ["place_ligand", "anchor_sites", "ligand_indices", "min_distances", "BOND_LENGTH", "HALIDES"]
