"""AX-terminated (001) slabs and A-site exchange of ammonium ligands on them.

Terminations
    ``PbX2`` (alias ``PbI2``; the default, undercoordinated Pb on top) or ``AX`` (the A-cation halide layer on
    top: CsI on CsPbI3, MAI on MAPbI3). ``CsI``/``CsX`` and ``MAI``/``MAX`` name the A cation explicitly and
    must match the material. Odd layer counts put the termination on both faces (symmetric slab).

A-site exchange (binding mode ``exchange`` on an AX-terminated slab)
    An ammonium ligand's cation (the one SMILES fragment with an N+–H, e.g. R–NH3+) replaces one surface
    A cation, N on the vacated A site and the rest pointing out of the surface. Charges are balanced as in
    X-site exchange: the ligand's remaining fragments (its counter-ion) leave with the A cation as the
    byproduct, so

        ligand (R-NH3+ X-) + slab  →  slab(R-NH3+ on an A site) + byproduct (A+ X-)
        Eb = E(slab with RNH3 on the A site) + E(byproduct) − E(slab) − E(ligand)

    with byproduct CsI on CsPbI3 and MAI (CH3NH3+ I-) on MAPbI3 for an iodide salt. A bare cation (no
    counter-ion) would leave a bare A+ ion: refused (give the salt, e.g. OAmI instead of OAm+). Neutral
    molecules are refused on AX surfaces: the top layer exposes no undercoordinated Pb for a lone pair, and
    ligbind has no H-bond placement model.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
from ase import Atoms
from ase.geometry import get_distances
from rdkit import Chem
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from ligbind.builders.slab import HALIDES, find_layers, is_pbx2, layer_name
from ligbind.errors import LigbindError

A_CATION = {"CsPbI3": "Cs", "MAPbI3": "MA"}
"""The A cation of each material."""
A_SMILES = {"Cs": "[Cs+]", "MA": "C[NH3+]"}
AMMONIUM = "[NX4+;!H0:1]"
"""SMARTS of the exchanging cation's anchor: an ammonium N carrying at least one H."""
AX_NAMES = {"AX": None, "CsI": "Cs", "CsX": "Cs", "MAI": "MA", "MAX": "MA"}
PBX2_NAMES = ("PbX2", "PbI2")
A_SITE_ROTATIONS = 12  # orientations about the surface normal tried per tilt and conformer
A_SITE_TILTS = (0.0, 20.0, 35.0)  # degrees of the N→chain axis from the surface normal
A_SITE_LEFT = 2.5  # Å: an exchanged N this far above the surface halide plane has left its A site


def parse_termination(value: str, material: str) -> str:
    """The termination kind, ``"PbX2"`` or ``"AX"``, of a user-given name.

    Parameters
    ----------
    value : str
        ``PbX2``/``PbI2``, ``AX``, or an explicit A halide (``CsI``, ``CsX``, ``MAI``, ``MAX``).
    material : str
        The slab's material; an explicit A halide must carry its A cation.

    Returns
    -------
    str
        ``"PbX2"`` or ``"AX"``.

    Raises
    ------
    LigbindError
        An unknown name, or an A halide of another A cation than the material's.
    """
    if value in PBX2_NAMES:
        return "PbX2"
    if value not in AX_NAMES:
        known = ", ".join([*PBX2_NAMES, *AX_NAMES])
        raise LigbindError(f"unknown termination '{value}' (choose from {known})")
    a = AX_NAMES[value]
    own = A_CATION.get(material)
    if a is not None and own is not None and a != own:
        raise LigbindError(
            f"termination '{value}' needs {a} on the A site, but {material} has {own}: use AX or {own}I"
        )
    return "AX"


def is_ax(name: str) -> bool:
    """True for an AX layer name from :func:`ligbind.builders.slab.layer_name` (CsI, MAX, ...)."""
    return name != "?" and not is_pbx2(name)


def top_layer(atoms: Atoms) -> str:
    """Name of the top slab layer (see :func:`ligbind.builders.slab.layer_name`)."""
    return layer_name(atoms, find_layers(atoms)[-1])


def termination_label(atoms: Atoms) -> str:
    """The top layer's name for tables (PbI2, CsI, MAI, ...); "" for a structure without perovskite layers."""
    try:
        return top_layer(atoms)
    except LigbindError:
        return ""


def surface_kind(atoms: Atoms) -> str:
    """``"PbX2"`` or ``"AX"``: the top slab layer, read from the geometry (adsorbates ignored).

    A-site exchanged complexes (an AX top layer missing one A cation, with an adsorbate) count as AX.

    Raises
    ------
    LigbindError
        The top layer is neither (e.g. a reconstructed or non-perovskite surface).
    """
    layers = find_layers(atoms)
    top = layer_name(atoms, layers[-1])
    if is_pbx2(top):
        return "PbX2"
    if is_ax(top) or _a_site_exchanged(atoms, layers[-1]):
        return "AX"
    return "?"


def _a_site_exchanged(atoms: Atoms, top: np.ndarray) -> bool:
    """True for an A-halide top layer missing exactly one A cation, on a structure with an adsorbate."""
    counts = Counter(atoms[i].symbol for i in top)
    x = sum(counts[h] for h in HALIDES)
    a = counts["Cs"] + counts["N"]
    return bool((atoms.get_tags() > 0).any()) and not counts["Pb"] and a > 0 and x - a == 1


def check_terminated(atoms: Atoms, source: str = "slab") -> str:
    """Raise unless the top layer is PbX2 or AX; return the kind (see :func:`surface_kind`)."""
    kind = surface_kind(atoms)
    if kind == "?":
        layers = find_layers(atoms)
        raise LigbindError(
            f"{source} is neither PbX2- nor AX-terminated: its top layer is "
            f"{layer_name(atoms, layers[-1])} ({len(layers[-1])} atoms)"
        )
    return kind


# ------------------------------------------------------------------------------------------ exchange ions
def _entry(name: str, smiles: str, anchors: str, note: str):
    from ligbind.builders.library import LigandEntry
    from ligbind.builders.smiles import formal_charge, parse_smiles

    return LigandEntry(name, smiles, formal_charge(parse_smiles(smiles)), anchors, 1, note)


def a_site_parts(entry, a_cation: str):
    """(cation placed on the A site, byproduct) of an A-site exchange, checked for atom and charge balance.

    Parameters
    ----------
    entry : LigandEntry
        The ligand: one fragment is an ammonium cation (charge +1, an N+ with H), the others its counter-ion.
    a_cation : str
        ``Cs`` or ``MA``: the surface cation it replaces (leaves with the counter-ion as the byproduct).

    Returns
    -------
    tuple of LigandEntry
        The cation (anchor: its ammonium N) and the byproduct (A+ with the counter-ion, e.g. CsI).

    Raises
    ------
    LigbindError
        No (or several) ammonium fragments, a cation not of charge +1, no counter-ion, or an unbalanced
        reaction.
    """
    from ligbind.builders.smiles import element_counts, formal_charge, parse_smiles

    mol = parse_smiles(entry.smiles)
    patt = Chem.MolFromSmarts(AMMONIUM)
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    cations = [f for f in frags if f.HasSubstructMatch(patt)]
    where = f"ligand '{entry.name}'"
    if len(cations) != 1 or formal_charge(cations[0]) != 1:
        raise LigbindError(
            f"{where} has no single ammonium cation (R-NH3+, charge +1) to exchange a surface A cation; "
            "on an AX-terminated slab only ammonium salts bind (mode exchange)"
        )
    rest = [Chem.MolToSmiles(f) for f in frags if f is not cations[0]]
    if not rest:
        raise LigbindError(
            f"{where} is a bare cation: exchanging it would leave a bare {a_cation}+ ion; give its salt "
            "(e.g. OAmI, AnHI) so that the counter-ion leaves with the A cation"
        )
    cation = _entry(entry.name, Chem.MolToSmiles(cations[0]), AMMONIUM, "A-site exchange cation")
    by_smiles = ".".join([A_SMILES[a_cation], *rest])
    byproduct = _entry(by_smiles, by_smiles, "[#7,#8,#9,#16,#17,#35,#53:1]", "A-site exchange byproduct")
    left = element_counts(mol) + element_counts(parse_smiles(A_SMILES[a_cation]))
    right = element_counts(parse_smiles(cation.smiles)) + element_counts(parse_smiles(by_smiles))
    if left != right or entry.charge + 1 != cation.charge + byproduct.charge:
        raise LigbindError(f"{where}: ligand + {a_cation}+ -> cation + byproduct does not balance")
    return cation, byproduct


def check_mode_for_surface(entry, mode: str, kind: str, a_cation: str | None = None, top: str = "AX") -> None:
    """Refuse a ligand/mode the surface cannot take: on AX only A-site exchange of ammonium salts.

    Parameters
    ----------
    entry : LigandEntry
        The ligand.
    mode : str
        ``neutral`` or ``exchange``.
    kind : str
        ``PbX2`` or ``AX`` (see :func:`parse_termination`).
    a_cation : str, optional
        The slab's A cation (default Cs; the check does not depend on it).
    top : str
        The top layer's name, for the message (e.g. CsI).
    """
    if kind != "AX":
        if mode == "exchange" and not entry.exchange:
            raise LigbindError(f"ligand '{entry.name}' has no exchange anion: use --mode neutral")
        return
    if mode != "exchange":
        raise LigbindError(
            f"the slab is not PbI2-terminated: its top layer is {top}, which exposes no undercoordinated Pb "
            f"for ligand '{entry.name}' to bind in mode {mode}; on an AX-terminated slab only ammonium salts "
            "bind, by A-site exchange (mode exchange)"
        )
    a_site_parts(entry, a_cation or "Cs")


def check_slab_mode(entry, mode: str, slab: Atoms) -> None:
    """:func:`check_mode_for_surface` for this slab (its surface kind, A cation and top layer)."""
    check_mode_for_surface(entry, mode, check_terminated(slab), slab_a_cation(slab), top_layer(slab))


def slab_a_cation(atoms: Atoms) -> str:
    """``Cs`` or ``MA``: the A cation of a slab (from its info, else its elements)."""
    material = atoms.info.get("material")
    if material in A_CATION:
        return A_CATION[material]
    symbols = set(atoms[atoms.get_tags() == 0].get_chemical_symbols())
    return "Cs" if "Cs" in symbols else "MA"


def exchange_byproduct(entry, slab: Atoms):
    """The A-site exchange byproduct of ``entry`` on ``slab`` (e.g. CsI), as a LigandEntry."""
    return a_site_parts(entry, slab_a_cation(slab))[1]


# ------------------------------------------------------------------------------------------- placement
def surface_a_groups(atoms: Atoms, top: np.ndarray) -> list[list[int]]:
    """Atom indices of each A cation of the top layer: [Cs] or [N, C, H...] of one methylammonium."""
    symbols = np.array(atoms.get_chemical_symbols())
    top = np.asarray(top)
    if (symbols[top] == "Cs").any():
        return [[int(i)] for i in top if symbols[i] == "Cs"]
    heavy = top[np.isin(symbols[top], ("C", "N"))]
    groups = []
    for n in (i for i in top if symbols[i] == "N"):
        _, d = get_distances(atoms.positions[[n]], atoms.positions[heavy], atoms.cell, atoms.pbc)
        c = int(heavy[np.argsort(d[0])[1]])
        hydrogens = [int(h) for h in top if symbols[h] == "H"]
        _, dh = get_distances(atoms.positions[hydrogens], atoms.positions[[n, c]], atoms.cell, atoms.pbc)
        groups.append([int(n), c, *(h for h, row in zip(hydrogens, dh, strict=True) if row.min() < 1.3)])
    return groups


def _site_position(atoms: Atoms, group: list[int]) -> np.ndarray:
    """The A-site position: the Cs, or the C–N midpoint of a methylammonium (where the bulk put it)."""
    if len(group) == 1:
        return atoms.positions[group[0]].copy()
    n, c = group[:2]
    return atoms.positions[n] + atoms.get_distance(n, c, mic=True, vector=True) / 2


def _upright(conformer: Atoms, anchor: int) -> np.ndarray:
    """Positions with the anchor N at the origin and the N → heavy-atom centroid axis along +z."""
    pos = conformer.positions - conformer.positions[anchor]
    heavy = [i for i, s in enumerate(conformer.get_chemical_symbols()) if s != "H" and i != anchor]
    axis = pos[heavy].mean(axis=0) if heavy else np.array([0.0, 0.0, 1.0])
    rot, _ = Rotation.align_vectors([[0, 0, 1]], [axis])
    return rot.apply(pos)


def _clash_penalty(base: Atoms, pos: np.ndarray, is_h: np.ndarray) -> tuple[float, bool]:
    """Soft clash penalty against slab and own periodic images, and whether the hard limits hold."""
    from ligbind.builders.placement import (
        MIN_DISTANCE,
        MIN_DISTANCE_H,
        SOFT_DISTANCE,
        SOFT_DISTANCE_H,
        _image_shifts,
        min_distances,
    )

    d = min_distances(base, pos)
    shifts = _image_shifts(base.cell.array)
    shifts = shifts[np.any(shifts != 0, axis=1)]
    own = cdist(pos, (pos[None] + shifts[:, None]).reshape(-1, 3)).min(axis=1)
    d = np.minimum(d, own)
    soft = np.where(is_h, SOFT_DISTANCE_H, SOFT_DISTANCE)
    ok = bool(np.all(d[~is_h] >= MIN_DISTANCE) and np.all(d[is_h] >= MIN_DISTANCE_H))
    return float((np.clip(soft - d, 0, None) ** 2).sum()), ok


def place_a_site(slab: Atoms, entry, n_configs: int = 3, seed: int = 0, n_conformers: int = 3) -> list[Atoms]:
    """A-site exchange configurations: one surface A cation replaced by the ligand's ammonium cation.

    The first surface A site (all are equivalent on the ideal slab) is vacated; the cation's N goes onto it
    with the chain tilted from the surface normal by each of :data:`A_SITE_TILTS` and turned about it in
    :data:`A_SITE_ROTATIONS` steps; the clash-free orientations with the smallest soft-clash penalty that
    are not symmetry images of each other are kept.

    Parameters
    ----------
    slab : ase.Atoms
        An AX-terminated slab.
    entry : LigandEntry
        An ammonium salt (see :func:`a_site_parts`).
    n_configs, seed, n_conformers
        As in :func:`ligbind.builders.placement.place_ligand`.

    Returns
    -------
    list of ase.Atoms
        Slab without the A cation (tags 0, constraints kept) + cation (tags 1). ``info``: as for X-site
        exchange (mode ``exchange``, ``anchor_sites`` empty: no Pb bond) plus ``exchange_site`` "A",
        ``exchanged_cation``, ``exchanged_position``, ``exchanged_indices`` (the cation's atoms in ``slab``),
        ``anchor`` (the N), ``byproduct_smiles``.
    """
    from ligbind.builders.conformers import ligand_conformers
    from ligbind.builders.placement import Candidate, _same_configuration
    from ligbind.builders.slab import surface_symmetry

    if check_terminated(slab) != "AX":
        raise LigbindError("A-site exchange needs an AX-terminated slab (build it with --termination AX)")
    a_cation = slab_a_cation(slab)
    cation, byproduct = a_site_parts(entry, a_cation)
    layers = find_layers(slab)
    group = surface_a_groups(slab, layers[-1])[0]
    site = _site_position(slab, group)
    base = slab.copy()
    del base[group]  # ASE renumbers the FixAtoms indices
    conformers = ligand_conformers(cation, n_conformers=n_conformers, seed=seed)
    ops = surface_symmetry(base)
    scored = []
    for ci, conf in enumerate(conformers):
        anchor = int(conf.info["anchors"][0])
        upright = _upright(conf, anchor)
        is_h = np.array(conf.get_chemical_symbols()) == "H"
        for tilt, k in itertools.product(A_SITE_TILTS, range(A_SITE_ROTATIONS)):
            rot = Rotation.from_euler("zx", [360.0 * k / A_SITE_ROTATIONS, tilt], degrees=True)
            pos = rot.apply(upright) + site
            penalty, ok = _clash_penalty(base, pos, is_h)
            if ok:
                scored.append((penalty, ci, anchor, pos))
    scored.sort(key=lambda s: s[0])
    found: list[Candidate] = []
    for penalty, ci, anchor, pos in scored:
        cand = Candidate(pos, [(anchor, -1, 0.0)], ci, "a-site", penalty)
        if not any(_same_configuration(cand, f, base.cell.array, ops) for f in found):
            found.append(cand)
        if len(found) >= n_configs:
            break
    if not found:
        raise LigbindError(f"cannot place the cation of '{entry.name}' on the A site without clashes")
    meta = {
        "exchange_site": "A",
        "exchanged_cation": a_cation,
        "exchanged_position": json.dumps([round(float(v), 4) for v in site]),
        "exchanged_indices": json.dumps([int(i) for i in group]),  # in ``slab``
        "byproduct_smiles": byproduct.smiles,
    }
    return [
        _a_site_complex(slab, base, conformers[c.conformer], c, k, entry, cation, meta)
        for k, c in enumerate(found)
    ]


def _a_site_complex(slab, base, conformer, cand, k, entry, cation, meta) -> Atoms:
    """Slab without the A cation + the placed cation (tags 1), configuration recorded in ``info``."""
    lig = conformer.copy()
    lig.positions = cand.positions
    lig.set_tags(1)
    lig.set_cell(base.cell)
    complex_ = base.copy()
    complex_ += lig
    complex_.set_constraint(base.constraints)
    keep = ("material", "phase", "size", "layers", "vacuum", "surface")
    complex_.info = {
        **{key: v for key, v in slab.info.items() if key in keep},
        "kind": "complex",
        "ligand": entry.name,
        "ligand_smiles": cation.smiles,
        "ligand_charge": int(cation.charge),
        "mode": "exchange",
        "motif": "a-site",
        "conformer": cand.conformer,
        "config": k,
        "anchor": len(base) + cand.pairs[0][0],
        "anchor_sites": "[]",
        **meta,
    }
    return complex_


def left_a_site(atoms: Atoms) -> bool:
    """True when an A-site exchanged cation's N rose more than :data:`A_SITE_LEFT` above the surface X plane."""
    if atoms.info.get("exchange_site") != "A" or "anchor" not in atoms.info:
        return False
    top = find_layers(atoms)[-1]
    x = [i for i in top if atoms[i].symbol in HALIDES]
    return bool(atoms.positions[int(atoms.info["anchor"]), 2] - atoms.positions[x, 2].mean() > A_SITE_LEFT)
