"""3D ligand structures from RDKit conformers: ETKDGv3 + MMFF94 (UFF where MMFF has no parameters).

Never hand-typed coordinates. Six-coordinate centres that no force field here knows (PF6-) are set to an
ideal octahedron and held there; the fragments of ion pairs and salts are slid into contact; conformers are
sorted by force-field energy and near-duplicates pruned. Results are cached per process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from ligbind.builders.library import LigandEntry, resolve_ligand
from ligbind.builders.smiles import anchor_groups, parse_smiles
from ligbind.builders.truncation import truncate_alkyl
from ligbind.errors import LigbindError

RMS_PRUNE = 0.5  # Å, heavy-atom RMS below which two conformers count as the same
_H_CONTACT = 1.7  # Å, closest allowed H...X distance between ion-pair fragments
_RANDOM_COORDS_ABOVE = 100  # atoms (with H) above which ETKDG starts from random coordinates

_CONFORMER_CACHE: dict[tuple, list[Atoms]] = {}


def ligand_conformers(entry: LigandEntry, n_conformers: int = 4, seed: int = 42) -> list[Atoms]:
    """Low-energy 3D conformers of a ligand, lowest force-field energy first.

    ETKDGv3 (fixed random seed; unspecified stereocentres fixed to one isomer first) -> MMFF94 (UFF if
    MMFF lacks parameters; six-coordinate centres such as PF6- held octahedral) -> ion-pair fragments put
    in contact -> sorted by force-field energy -> duplicates (heavy-atom RMS < 0.5 Å) pruned.
    Deterministic for a given entry and seed, so they are computed once per process (a campaign asks for
    the same ligand in every step; RDKit takes seconds for the polymers) and returned as copies.

    Parameters
    ----------
    entry : LigandEntry
        The ligand (see :func:`resolve_ligand`).
    n_conformers : int
        At most this many conformers are returned (fewer if they collapse to duplicates).
    seed : int
        ETKDG random seed; the same seed gives the same atoms and positions.

    Returns
    -------
    list of ase.Atoms
        No cell; heavy atoms in SMILES order, then H. ``info``: name, smiles, charge, formula, anchors,
        anchor_groups, denticity, conformer, ff_energy (kcal/mol), force_field, fragments (atom indices per
        SMILES fragment), truncated_from (if truncated), isomer_smiles (if stereocentres had to be fixed).

    Raises
    ------
    LigbindError
        Bad ``n_conformers``, unparsable SMILES or anchors, or RDKit cannot embed or parametrise it.
    """
    key = (entry.name, entry.smiles, entry.anchors, entry.denticity, entry.charge, n_conformers, seed)
    if key not in _CONFORMER_CACHE:
        _CONFORMER_CACHE[key] = _ligand_conformers(entry, n_conformers, seed)
    return [atoms.copy() for atoms in _CONFORMER_CACHE[key]]


def _ligand_conformers(entry: LigandEntry, n_conformers: int = 4, seed: int = 42) -> list[Atoms]:
    """Compute the conformers (uncached): the method behind :func:`ligand_conformers`."""
    if isinstance(n_conformers, bool) or not isinstance(n_conformers, int) or n_conformers < 1:
        raise LigbindError(f"n_conformers must be an integer >= 1, got {n_conformers!r}")
    mol = parse_smiles(entry.smiles)
    if mol is None:
        raise LigbindError(f"ligand '{entry.name}': cannot parse SMILES '{entry.smiles}'")
    groups = anchor_groups(mol, entry.anchors, f"ligand '{entry.name}'")
    mol, isomer_smiles = _fix_stereo(mol)
    molh = Chem.AddHs(mol)  # H atoms are appended: heavy-atom indices (and anchors) are unchanged
    cids = _embed(molh, n_conformers + 2, seed, entry.name)
    ff_name, energy_of = _optimise(molh, entry.name)
    frags = [list(f) for f in Chem.GetMolFrags(molh)]
    if len(frags) > 1:
        for cid in cids:
            _place_fragments(molh, cid, frags)
    energies = {cid: energy_of(cid) for cid in cids}
    ordered = sorted(cids, key=lambda c: (round(energies[c], 6), c))
    kept = _prune(molh, ordered, n_conformers)
    anchors = sorted({i for g in groups for i in g})
    symbols = [a.GetSymbol() for a in molh.GetAtoms()]
    out = []
    for rank, cid in enumerate(kept):
        atoms = Atoms(symbols=symbols, positions=molh.GetConformer(cid).GetPositions())
        info: dict[str, Any] = {
            "name": entry.name,
            "smiles": entry.smiles,
            "charge": int(entry.charge),
            "formula": atoms.get_chemical_formula(),
            "anchors": anchors,
            "anchor_groups": [list(g) for g in groups],
            "denticity": int(entry.denticity),
            "conformer": rank,
            "ff_energy": float(energies[cid]),
            "force_field": ff_name,
            "fragments": [list(f) for f in frags],
        }
        if entry.truncated_from:
            info["truncated_from"] = entry.truncated_from
        if isomer_smiles:
            info["isomer_smiles"] = isomer_smiles
        atoms.info.update(info)
        out.append(atoms)
    return out


def _embed(molh: Chem.Mol, n_embed: int, seed: int, name: str) -> list[int]:
    """Embed ``n_embed`` ETKDGv3 conformers (seeded); retry from random coordinates if some fail."""
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    # eigenvector embedding often fails for large flexible molecules; random coordinates do not
    params.useRandomCoords = molh.GetNumAtoms() > _RANDOM_COORDS_ABOVE
    cids = list(AllChem.EmbedMultipleConfs(molh, numConfs=n_embed, params=params))
    if len(cids) < n_embed and not params.useRandomCoords:
        params.useRandomCoords = True
        cids = list(AllChem.EmbedMultipleConfs(molh, numConfs=n_embed, params=params))
    if not cids:
        raise LigbindError(f"RDKit could not generate 3D coordinates for ligand '{name}'")
    return cids


def build_ligand(
    name: str | None = None,
    smiles: str | None = None,
    vacuum: float = 6.0,
    seed: int = 42,
    *,
    n_conformers: int = 4,
    truncate: int | None = None,
) -> Atoms:
    """Lowest-energy conformer of a ligand centred in a periodic box with ``vacuum`` Å on each side.

    Parameters
    ----------
    name, smiles : str, optional
        As in :func:`resolve_ligand`.
    vacuum : float
        Å of empty space on each side (> 0).
    seed : int
        ETKDG random seed.
    n_conformers : int
        Conformers compared.
    truncate : int, optional
        If given, :func:`truncate_alkyl` with this many bonds first.

    Returns
    -------
    ase.Atoms
        Periodic box; ``info`` as in :func:`ligand_conformers` plus ``vacuum``.

    Raises
    ------
    LigbindError
        Non-positive vacuum, or as :func:`resolve_ligand`, :func:`truncate_alkyl`,
        :func:`ligand_conformers`.
    """
    if not vacuum > 0:
        raise LigbindError(f"vacuum must be > 0 Å, got {vacuum!r}")
    entry = resolve_ligand(name, smiles)
    if truncate is not None:
        entry = truncate_alkyl(entry, truncate)
    atoms = ligand_conformers(entry, n_conformers=n_conformers, seed=seed)[0]
    atoms.center(vacuum=vacuum)
    atoms.pbc = True
    atoms.info["vacuum"] = float(vacuum)
    return atoms
    return atoms


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _fix_stereo(mol: Chem.Mol) -> tuple[Chem.Mol, str | None]:
    """Assign unspecified stereocentres deterministically so all conformers are one stereoisomer."""
    opts = StereoEnumerationOptions(onlyUnassigned=True, maxIsomers=1, unique=True, tryEmbedding=False)
    isomers = list(EnumerateStereoisomers(mol, options=opts))
    if not isomers:
        return mol, None
    iso = isomers[0]
    smi, ref = Chem.MolToSmiles(iso), Chem.MolToSmiles(mol)
    return (iso, smi) if smi != ref else (mol, None)


def _optimise(molh: Chem.Mol, name: str) -> tuple[str, Any]:
    """Optimise all conformers in place with MMFF94, else UFF; return (name, energy function of conf id)."""
    props = AllChem.MMFFGetMoleculeProperties(molh, mmffVariant="MMFF94")
    if props is not None and AllChem.MMFFHasAllMoleculeParams(molh):
        AllChem.MMFFOptimizeMoleculeConfs(molh, numThreads=1, maxIters=2000, mmffVariant="MMFF94")

        def energy(cid: int) -> float:
            return AllChem.MMFFGetMoleculeForceField(molh, props, confId=cid).CalcEnergy()

        return "MMFF94", energy
    if AllChem.UFFHasAllMoleculeParams(molh):
        # UFF (and ETKDG) know no octahedral centres: PF6- comes out with 30-degree F-P-F angles. Such
        # centres are set to an ideal octahedron and held there by angle restraints.
        octahedral = [a.GetIdx() for a in molh.GetAtoms() if a.GetDegree() == 6]
        if not octahedral:
            AllChem.UFFOptimizeMoleculeConfs(molh, numThreads=1, maxIters=2000)
        for conf in molh.GetConformers() if octahedral else []:
            for centre in octahedral:
                _make_octahedral(molh, conf.GetId(), centre)
            ff = _uff_field(molh, conf.GetId(), octahedral)
            ff.Minimize(maxIts=5000)

        def energy(cid: int) -> float:
            return _uff_field(molh, cid, octahedral).CalcEnergy()

        return "UFF", energy
    raise LigbindError(f"no force-field parameters (MMFF94 or UFF) for ligand '{name}'")


def _trans_pairs(pos: np.ndarray, centre: int, nbs: list[int]) -> list[tuple[int, int]]:
    """Pair the six neighbours of an octahedral centre into trans pairs (most opposite first)."""
    u = {i: (pos[i] - pos[centre]) / max(np.linalg.norm(pos[i] - pos[centre]), 1e-8) for i in nbs}
    rest, pairs = list(nbs), []
    while rest:
        i, j = min(
            ((a, b) for k, a in enumerate(rest) for b in rest[k + 1 :]), key=lambda ab: u[ab[0]] @ u[ab[1]]
        )
        pairs.append((i, j))
        rest = [k for k in rest if k not in (i, j)]
    return pairs


def _make_octahedral(molh: Chem.Mol, cid: int, centre: int) -> None:
    """Move the six branches around ``centre`` rigidly onto ideal octahedral directions."""
    conf = molh.GetConformer(cid)
    pos = conf.GetPositions()
    nbs = [a.GetIdx() for a in molh.GetAtomWithIdx(centre).GetNeighbors()]
    pairs = _trans_pairs(pos, centre, nbs)
    axes: list[np.ndarray] = []
    for i, j in pairs:
        # the pair's direction, then the Cartesian axes as fall-backs if it is degenerate
        for v in (pos[i] - pos[j], *np.eye(3)):
            v = v - sum(((v @ a) * a for a in axes), np.zeros(3))
            if np.linalg.norm(v) > 1e-3:
                axes.append(v / np.linalg.norm(v))
                break
    dmat = Chem.GetDistanceMatrix(molh)
    for axis, (i, j) in zip(axes, pairs, strict=True):
        for nb, sign in ((i, 1.0), (j, -1.0)):
            r = np.linalg.norm(pos[nb] - pos[centre])
            shift = pos[centre] + sign * r * axis - pos[nb]
            branch = [k for k in range(len(pos)) if dmat[k, nb] < dmat[k, centre]]
            pos[branch] += shift
    for k, p in enumerate(pos):
        conf.SetAtomPosition(k, p.tolist())


def _uff_field(molh: Chem.Mol, cid: int, octahedral: list[int]) -> Any:
    """UFF force field of one conformer, with 90/180-degree angle restraints on octahedral centres."""
    ff = AllChem.UFFGetMoleculeForceField(molh, confId=cid)
    pos = molh.GetConformer(cid).GetPositions()
    for centre in octahedral:
        nbs = [a.GetIdx() for a in molh.GetAtomWithIdx(centre).GetNeighbors()]
        trans = {frozenset(p) for p in _trans_pairs(pos, centre, nbs)}
        for k, i in enumerate(nbs):
            for j in nbs[k + 1 :]:
                angle = 180.0 if frozenset((i, j)) in trans else 90.0
                ff.UFFAddAngleConstraint(i, centre, j, False, angle, angle, 1000.0)
    ff.Initialize()
    return ff


def _contact_distance(a: str, b: str) -> float:
    """Target closest heavy-atom distance (Å) between two ion-pair fragments."""
    d = 3.0 + sum(0.2 if s == "Br" else 0.4 if s == "I" else 0.0 for s in (a, b))
    return min(d, 3.5)


def _sphere(n: int = 256) -> np.ndarray:
    """Deterministic, nearly uniform unit vectors (Fibonacci sphere)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + 5**0.5) * k
    r = np.sqrt(1.0 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _place_fragments(molh: Chem.Mol, cid: int, frags: list[list[int]]) -> None:
    """Rigidly move each smaller fragment (counter-ion) into contact with the main fragment.

    Force fields leave ion-pair fragments where embedding put them (UFF has no electrostatics), often
    several Å apart. Each counter-ion is slid in from the direction that brings it closest to an atom of
    opposite formal charge (else a heteroatom) until the closest heavy-atom contact is 3.0-3.5 Å (F/N/O/K
    3.0, +0.2 per Br, +0.4 per I) and no H...X contact is below 1.7 Å.
    """
    conf = molh.GetConformer(cid)
    pos = conf.GetPositions()
    symbols = [a.GetSymbol() for a in molh.GetAtoms()]
    charges = [a.GetFormalCharge() for a in molh.GetAtoms()]
    heavy = np.array([s != "H" for s in symbols])
    size = [int(heavy[f].sum()) for f in frags]
    order = sorted(range(len(frags)), key=lambda k: (-size[k], k))
    placed = list(frags[order[0]])
    used_sites: set[int] = set()
    for k in order[1:]:
        frag = frags[k]
        q = sum(charges[i] for i in frag)
        cand = [i for i in placed if q and charges[i] * q < 0]
        cand = cand or [i for i in placed if symbols[i] not in ("C", "H")] or [i for i in placed if heavy[i]]
        fresh = [i for i in cand if i not in used_sites] or cand
        site = fresh[0]
        used_sites.add(site)
        fh = [i for i in frag if heavy[i]] or frag
        rel = pos[frag] - pos[fh].mean(axis=0)
        # minimum distance for each (placed atom, fragment atom) pair
        rmin = np.empty((len(placed), len(frag)))
        for a, i in enumerate(placed):
            for b, j in enumerate(frag):
                if heavy[i] and heavy[j]:
                    rmin[a, b] = _contact_distance(symbols[i], symbols[j])
                else:
                    rmin[a, b] = _H_CONTACT
        hh = np.outer(heavy[placed], heavy[frag])
        best = None
        for u in _sphere():
            d = pos[site] + rel[None, :, :] - pos[placed][:, None, :]  # (placed, frag, 3) at t = 0
            b = d @ u
            c = (d**2).sum(axis=2) - rmin**2
            disc = b**2 - c
            mask = disc > 0
            sq = np.sqrt(np.where(mask, disc, 0.0))
            lo, hi = (-b - sq)[mask], (-b + sq)[mask]
            t = 0.0
            for a_, b_ in sorted(zip(lo.tolist(), hi.tolist(), strict=True)):
                if a_ > t:
                    break
                t = max(t, b_ + 1e-6)
            new = pos[site] + t * u + rel
            dist = np.linalg.norm(pos[placed][:, None, :] - new[None, :, :], axis=2)
            h_min = dist[hh].min() if hh.any() else dist.min()
            target = rmin[hh].min() if hh.any() else _H_CONTACT
            score = np.linalg.norm(new[[frag.index(i) for i in fh]].mean(axis=0) - pos[site]) + 2.0 * (
                h_min - target
            )
            if best is None or score < best[0] - 1e-9:
                best = (score, new)
        pos[frag] = best[1]
        placed += frag
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, p.tolist())


def _prune(molh: Chem.Mol, ordered: list[int], n_keep: int) -> list[int]:
    """Keep conformers (in energy order) whose heavy-atom RMS to every kept one is >= RMS_PRUNE."""
    heavy = Chem.RemoveHs(molh)
    probe = Chem.Mol(heavy)
    kept: list[int] = []
    for cid in ordered:
        duplicate = False
        for ref in kept:
            if heavy.GetNumAtoms() < 3:
                a = heavy.GetConformer(cid).GetPositions()
                b = heavy.GetConformer(ref).GetPositions()
                rms = abs(np.linalg.norm(a[0] - a[-1]) - np.linalg.norm(b[0] - b[-1]))
            else:
                rms = rdMolAlign.GetBestRMS(probe, heavy, prbId=cid, refId=ref, maxMatches=10000)
            if rms < RMS_PRUNE:
                duplicate = True
                break
        if not duplicate:
            kept.append(cid)
        if len(kept) == n_keep:
            break
    return kept
