"""Alkyl-chain truncation for cheap protocols: cut chain carbons far from the anchors and cap with H.

Long chains (oleyl, octadecene tails, decyl amides) cost DFT time and barely change the binding energy of
the head group. A truncated ligand is a new :class:`LigandEntry` named e.g. ``OA[C6]`` that records the
SMILES it was cut from, so tables can say so.
"""

from __future__ import annotations

import re
from dataclasses import replace

from rdkit import Chem

from ligbind.builders.library import LigandEntry, validate_entry
from ligbind.builders.smiles import anchor_groups, parse_smiles
from ligbind.errors import LigbindError


def truncate_alkyl(entry: LigandEntry, keep: int) -> LigandEntry:
    """Cut hydrocarbon chain atoms farther than ``keep`` bonds from every anchor atom and cap with H.

    Removed atoms must be acyclic, non-aromatic carbons bonded only to C/H (saturated chains, and the
    olefinic CH=CH of oleyl chains), and the rest must stay connected. Fragments without anchor atoms
    (counter-ions) are measured from their own heteroatoms. The exchange anion/byproduct are truncated the
    same way.

    Parameters
    ----------
    entry : LigandEntry
        The ligand.
    keep : int
        Bonds (>= 1) from the nearest anchor atom beyond which chain carbons are removed.

    Returns
    -------
    LigandEntry
        ``entry`` itself if nothing is that far; else a new entry named e.g. ``OA[C6]`` with
        ``truncated_from`` set to the original SMILES.

    Raises
    ------
    LigbindError
        Bad ``keep``, or the cut would remove ring, aromatic or hetero atoms or split the molecule.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise LigbindError(f"truncation length must be an integer >= 1 bonds, got {keep!r}")
    mol = parse_smiles(entry.smiles)
    if mol is None:
        raise LigbindError(f"ligand '{entry.name}': cannot parse SMILES '{entry.smiles}'")
    anchor_atoms = {i for g in anchor_groups(mol, entry.anchors, f"ligand '{entry.name}'") for i in g}
    try:
        new_smiles = _truncate_smiles(mol, anchor_atoms, keep)
    except ValueError as exc:
        raise LigbindError(
            f"cannot truncate ligand '{entry.name}' to {keep} bonds from its anchors: {exc}"
        ) from None
    if new_smiles is None:
        return entry
    base = re.sub(r"\[C\d+\]$", "", entry.name)
    new = replace(
        entry,
        name=f"{base}[C{keep}]",
        smiles=new_smiles,
        exchange=_truncate_exchange(entry, keep),
        truncated_from=entry.truncated_from or entry.smiles,
        note=f"{entry.note} [chains truncated to {keep} bonds from the anchors, capped with H]",
    )
    validate_entry(new)
    return new


def _truncate_exchange(entry: LigandEntry, keep: int) -> dict[str, str] | None:
    """The entry's exchange anion and byproduct truncated like the ligand (unchanged where nothing is cut)."""
    if entry.exchange is None:
        return None
    exchange = {}
    for k, smi in entry.exchange.items():
        m = parse_smiles(smi)
        refs: set[int] = set()
        if m is not None and k == "anion":
            refs = {i for g in anchor_groups(m, entry.anchors, "", required=False) for i in g}
        try:
            cut = _truncate_smiles(m, refs, keep) if m is not None else None
        except ValueError as exc:
            raise LigbindError(f"cannot truncate exchange {k} of ligand '{entry.name}': {exc}") from None
        exchange[k] = cut or smi
    return exchange


def _truncate_smiles(mol: Chem.Mol, anchor_atoms: set[int], keep: int) -> str | None:
    """SMILES of ``mol`` without chain carbons > keep bonds from the reference atoms; None if none to cut."""
    frags = Chem.GetMolFrags(mol)
    far = _far_atoms(mol, frags, anchor_atoms, keep)
    if not far:
        return None
    out = _remove_capped(mol, far)
    try:
        Chem.SanitizeMol(out)
    except Exception as exc:
        raise ValueError(f"capped structure is not valid ({exc})") from None
    Chem.AssignStereochemistry(out, cleanIt=True, force=True)
    if len(Chem.GetMolFrags(out)) != len(frags):
        raise ValueError("that would split the molecule or remove a whole fragment")
    smiles = Chem.MolToSmiles(out)
    if parse_smiles(smiles) is None:
        raise ValueError("capped structure does not round-trip through SMILES")
    return smiles


def _far_atoms(mol: Chem.Mol, frags: tuple, anchor_atoms: set[int], keep: int) -> list[int]:
    """Atoms more than ``keep`` bonds from every reference atom; ValueError if any is not a chain carbon.

    Reference atoms are the anchors, plus the heteroatoms of each fragment that holds no anchor.
    """
    refs = set(anchor_atoms)
    for frag in frags:
        if not refs & set(frag):  # counter-ion or anchor-less fragment: measure from its heteroatoms
            refs |= {i for i in frag if mol.GetAtomWithIdx(i).GetSymbol() not in ("C", "H")}
    if not refs:
        raise ValueError("no anchor or heteroatom to measure from")
    dist = Chem.GetDistanceMatrix(mol)[:, sorted(refs)].min(axis=1)
    far = [i for i in range(mol.GetNumAtoms()) if dist[i] > keep]
    bad = [mol.GetAtomWithIdx(i) for i in far if not _is_chain_carbon(mol.GetAtomWithIdx(i))]
    if bad:
        kinds = sorted({f"{a.GetSymbol()}{'(ring)' if a.IsInRing() else ''}" for a in bad})
        raise ValueError(f"that would remove non-alkyl atoms ({', '.join(kinds)})")
    return far


def _remove_capped(mol: Chem.Mol, far: list[int]) -> Chem.Mol:
    """``mol`` without the atoms ``far``, their kept neighbours capped with H (not yet sanitised)."""
    far_set = set(far)
    rw = Chem.RWMol(mol)
    for i in far:
        for nb in mol.GetAtomWithIdx(i).GetNeighbors():
            j = nb.GetIdx()
            if j in far_set:
                continue
            atom = rw.GetAtomWithIdx(j)
            order = int(round(mol.GetBondBetweenAtoms(i, j).GetBondTypeAsDouble()))
            if atom.GetNoImplicit():
                atom.SetNumExplicitHs(atom.GetNumExplicitHs() + order)
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    for i in sorted(far, reverse=True):
        rw.RemoveAtom(i)
    out = rw.GetMol()
    for bond in out.GetBonds():
        if bond.GetBondType() == Chem.BondType.DOUBLE and bond.GetStereo() != Chem.BondStereo.STEREONONE:
            if any(a >= out.GetNumAtoms() for a in bond.GetStereoAtoms()):
                bond.SetStereo(Chem.BondStereo.STEREONONE)
    return out


def _is_chain_carbon(atom: Chem.Atom) -> bool:
    """True for an acyclic, non-aromatic, neutral carbon bonded only to C/H by single or double bonds."""
    return (
        atom.GetSymbol() == "C"
        and not atom.IsInRing()
        and not atom.GetIsAromatic()
        and atom.GetFormalCharge() == 0
        and all(nb.GetSymbol() in ("C", "H") for nb in atom.GetNeighbors())
        and all(b.GetBondType() in (Chem.BondType.SINGLE, Chem.BondType.DOUBLE) for b in atom.GetBonds())
    )
