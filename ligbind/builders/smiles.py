"""SMILES and SMARTS helpers shared by the ligand library, truncation and the conformer builder.

Anchor atoms are the atoms of a ligand that bind surface Pb; they are marked by atom-map numbers in an
anchors SMARTS (see ``ligbind/data/ligands.yaml``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rdkit import Chem, RDLogger

from ligbind.errors import LigbindError

# RDKit prints its own parse errors and force-field warnings to stderr; we report one line ourselves.
RDLogger.DisableLog("rdApp.*")

ANCHOR_ELEMENTS = frozenset({"O", "N", "S", "F", "Cl", "Br", "I"})
"""Elements allowed as anchor atoms."""

AUTO_ANCHORS = "[#8,$([#7;!+]),$([#16;!v6]),$([#9,#17,#35,#53;v0,v1]):1]"
"""SMARTS for user SMILES: O, N, S, F, Cl, Br, I atoms that carry a lone pair (no NH4+, sulfone S, ...)."""


def parse_smiles(smiles: Any) -> Chem.Mol | None:
    """Parse a SMILES without raising.

    Parameters
    ----------
    smiles : Any
        The SMILES; anything but a non-blank string counts as unparsable.

    Returns
    -------
    rdkit.Chem.Mol or None
        The molecule (no explicit H), or None when the SMILES does not parse or has no atoms.
    """
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def formal_charge(mol: Chem.Mol) -> int:
    """Total formal charge of a molecule.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule.

    Returns
    -------
    int
        Sum of the atoms' formal charges.
    """
    return int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))


def element_counts(mol: Chem.Mol) -> Counter:
    """Element counts of a molecule, hydrogens included.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule (implicit hydrogens are counted).

    Returns
    -------
    collections.Counter
        Element symbol -> number of atoms.
    """
    return Counter(a.GetSymbol() for a in Chem.AddHs(mol).GetAtoms())


def smiles_atom_count(smiles: str) -> int:
    """Number of atoms of a SMILES, hydrogens included.

    Parameters
    ----------
    smiles : str
        The SMILES.

    Returns
    -------
    int
        Atom count, or 0 if the SMILES does not parse.
    """
    mol = parse_smiles(smiles)
    return sum(element_counts(mol).values()) if mol is not None else 0


def anchor_groups(mol: Chem.Mol, smarts: str, where: str, required: bool = True) -> list[list[int]]:
    """Anchor atom indices of a molecule, one list per match of the anchors SMARTS.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule (no explicit H, so heavy-atom indices equal those of the H-added molecule).
    smarts : str
        Anchors SMARTS; its atom-mapped atoms are the anchors.
    where : str
        Prefix of error messages (e.g. "ligand 'OA'").
    required : bool
        Raise if the SMARTS does not match.

    Returns
    -------
    list of list of int
        One group per match, atoms ordered by map number, duplicate groups (same atom set) removed.

    Raises
    ------
    LigbindError
        Unparsable SMARTS, no mapped atom, no match (if ``required``), or an anchor that is not O, N, S,
        F, Cl, Br or I.
    """
    patt = Chem.MolFromSmarts(smarts) if isinstance(smarts, str) and smarts.strip() else None
    if patt is None:
        raise LigbindError(f"{where}: cannot parse anchors SMARTS '{smarts}'")
    mapped = sorted((a.GetAtomMapNum(), a.GetIdx()) for a in patt.GetAtoms() if a.GetAtomMapNum())
    if not mapped:
        raise LigbindError(f"{where}: anchors SMARTS '{smarts}' marks no atom (use map numbers, e.g. [O:1])")
    groups: list[list[int]] = []
    seen: set[frozenset[int]] = set()
    for match in mol.GetSubstructMatches(patt, uniquify=False, maxMatches=10000):
        group = [match[i] for _, i in mapped]
        key = frozenset(group)
        if key not in seen:
            seen.add(key)
            groups.append(group)
    if not groups and required:
        raise LigbindError(f"{where}: anchors SMARTS '{smarts}' does not match the SMILES")
    for group in groups:
        for i in group:
            sym = mol.GetAtomWithIdx(i).GetSymbol()
            if sym not in ANCHOR_ELEMENTS:
                raise LigbindError(
                    f"{where}: anchor atom {i} is {sym}; anchors must be O, N, S, F, Cl, Br or I"
                )
    return groups
