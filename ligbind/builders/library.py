"""The ligand library: :class:`LigandEntry`, loading and validating library files, resolving names.

The library ships inside the package (``ligbind/data/ligands.yaml``). Users add their own ligands in
further YAML files of the same format, named in ``$LIGBIND_LIGANDS`` (one path, or several separated by
``os.pathsep``): those files extend the shipped library, in order. A name already defined by an earlier
file (ignoring case) and a molecule already listed under another name (same canonical SMILES) are refused,
so a user file can never silently replace a shipped ligand.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rdkit import Chem

import ligbind
from ligbind.builders.polymer import DEFAULT_TAIL_CARBONS, OCTADECENE_TAIL, polymer_smiles
from ligbind.builders.smiles import (
    AUTO_ANCHORS,
    anchor_groups,
    element_counts,
    formal_charge,
    parse_smiles,
)
from ligbind.errors import LigbindError

LIBRARY_ENV = "LIGBIND_LIGANDS"
"""Environment variable naming user library files (separated by ``os.pathsep``) that extend the shipped one."""

_ENTRY_KEYS = {"smiles", "polymer", "charge", "anchors", "denticity", "note", "exchange", "family"}


@dataclass(frozen=True)
class LigandEntry:
    """One ligand of the library (or a user SMILES).

    Attributes
    ----------
    name : library name (or the SMILES for a user ligand); truncated ligands get a suffix like ``OA[C6]``.
    smiles : SMILES of the whole unit (ion pairs as dot-separated fragments).
    charge : total formal charge.
    anchors : SMARTS whose atom-mapped atoms are the anchor atoms.
    denticity : anchor atoms bound to Pb at once in the default placement.
    note : short description (study / role).
    exchange : ``{"anion": SMILES, "byproduct": SMILES}`` for X-site exchange mode, or None.
    family : grouping label, or None.
    truncated_from : SMILES before alkyl truncation, or None if untruncated.
    """

    name: str
    smiles: str
    charge: int
    anchors: str
    denticity: int
    note: str
    exchange: dict[str, str] | None = None
    family: str | None = None
    truncated_from: str | None = None


# ---------------------------------------------------------------------------------------------------------
# where the library files are
# ---------------------------------------------------------------------------------------------------------


def library_path() -> Path:
    """Path of the ligand library shipped in the package.

    Returns
    -------
    pathlib.Path
        ``ligbind/data/ligands.yaml`` inside the installed package.
    """
    return Path(ligbind.__file__).resolve().parent / "data" / "ligands.yaml"


def user_library_paths() -> list[Path]:
    """User library files named in ``$LIGBIND_LIGANDS``.

    Returns
    -------
    list of pathlib.Path
        The paths in the order given (separated by ``os.pathsep``; empty items ignored, ``~`` expanded);
        an empty list when the variable is unset or empty.
    """
    env = os.environ.get(LIBRARY_ENV, "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]


def library_paths() -> list[Path]:
    """Every file the default library is read from: the shipped one, then the user files.

    Returns
    -------
    list of pathlib.Path
        :func:`library_path` followed by :func:`user_library_paths`; a file named twice (or a user path
        that is the shipped file itself) is read once, where it first appears.
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    for p in [library_path(), *user_library_paths()]:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------------------
# reading and validating
# ---------------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (two ligands with one name)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise LigbindError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

# (resolved path, mtime, size) -> entries of that file and their canonical SMILES
_CACHE: dict[tuple[str, int, int], tuple[dict[str, LigandEntry], dict[str, str]]] = {}


def load_library(path: str | Path | None = None) -> dict[str, LigandEntry]:
    """Read and validate the ligand library.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Read only this YAML file. Default: the shipped library extended by the user files in
        ``$LIGBIND_LIGANDS`` (:func:`library_paths`), in that order.

    Returns
    -------
    dict of str to LigandEntry
        Name -> entry, in file order (shipped entries first).

    Raises
    ------
    LigbindError
        One line naming the problem: a missing or malformed file, a broken entry (named), a name defined
        in two files (both named; names that differ only in case count as the same), or one molecule
        (same canonical SMILES) listed under two names.
    """
    paths = [Path(path).expanduser()] if path is not None else library_paths()
    library: dict[str, LigandEntry] = {}
    origin: dict[str, tuple[str, Path]] = {}  # folded name -> (name, file)
    molecules: dict[str, tuple[str, Path]] = {}  # canonical SMILES -> (name, file)
    for p in paths:
        entries, canonical = _read_file(p)
        for name, entry in entries.items():
            _check_unique(name, canonical[name], p, origin, molecules)
            origin[name.lower()] = molecules[canonical[name]] = (name, p)
            library[name] = entry
    return library


def _check_unique(
    name: str,
    canonical: str,
    path: Path,
    origin: dict[str, tuple[str, Path]],
    molecules: dict[str, tuple[str, Path]],
) -> None:
    """Refuse a name (ignoring case) or a molecule that an earlier entry already has."""
    if name.lower() in origin:
        other, other_path = origin[name.lower()]
        same = f"'{other}'" if other == name else f"'{other}' (names differing only in case are one name)"
        raise LigbindError(
            f"ligand '{name}' in {path} is already defined as {same} in {other_path}: a library file can "
            "add ligands but not redefine one; rename it (or remove it if it is a copy)"
        )
    if canonical in molecules:
        other, other_path = molecules[canonical]
        raise LigbindError(
            f"ligand '{name}' in {path} is the same molecule as '{other}' in {other_path} "
            f"(canonical SMILES {canonical}); keep one of them"
        )


def _read_file(p: Path) -> tuple[dict[str, LigandEntry], dict[str, str]]:
    """Entries of one library file (validated, cached by path, mtime and size) and their canonical SMILES."""
    try:
        st = p.stat()
    except OSError:
        raise LigbindError(f"ligand library not found: {p}") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        return _CACHE[key]
    try:
        data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)
    except LigbindError as exc:
        raise LigbindError(f"ligand library {p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LigbindError(f"ligand library {p} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict) or not data:
        raise LigbindError(f"ligand library {p} must be a non-empty mapping name -> entry")
    entries: dict[str, LigandEntry] = {}
    for name, raw in data.items():
        entry = _entry_from_yaml(str(name), raw, p)
        entries[entry.name] = entry
    canonical = {name: Chem.CanonSmiles(e.smiles) for name, e in entries.items()}
    _CACHE[key] = (entries, canonical)
    return entries, canonical


def _entry_from_yaml(name: str, raw: Any, path: Path) -> LigandEntry:
    """One validated entry from its YAML mapping."""
    where = f"ligand '{name}' in {path.name}"
    if not isinstance(raw, dict):
        raise LigbindError(f"{where}: entry must be a mapping with smiles, charge, anchors, denticity, note")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise LigbindError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    for k in ("charge", "anchors", "denticity", "note"):
        if k not in raw:
            raise LigbindError(f"{where}: missing key '{k}'")
    if ("smiles" in raw) == ("polymer" in raw):
        raise LigbindError(f"{where}: give exactly one of 'smiles' or 'polymer'")
    if "polymer" in raw:
        smiles, truncated_from = _polymer_from_yaml(raw["polymer"], where)
    else:
        smiles, truncated_from = raw["smiles"], None
        if not isinstance(smiles, str):
            raise LigbindError(f"{where}: smiles must be a string")
    charge = raw["charge"]
    if isinstance(charge, bool) or not isinstance(charge, int):
        raise LigbindError(f"{where}: charge must be an integer, got {charge!r}")
    family = raw.get("family")
    entry = LigandEntry(
        name=name,
        smiles=smiles,
        charge=charge,
        anchors=raw["anchors"],
        denticity=raw["denticity"],
        note=raw["note"],
        exchange=_exchange_from_yaml(raw.get("exchange"), where),
        family=None if family is None else str(family),
        truncated_from=truncated_from,
    )
    validate_entry(entry, where)
    return entry


def _polymer_from_yaml(poly: Any, where: str) -> tuple[str, str | None]:
    """(SMILES, untruncated SMILES or None) of a ``polymer:`` entry."""
    if (
        not isinstance(poly, dict)
        or not {"amide", "n"} <= set(poly)
        or set(poly) - {"amide", "n", "tail_carbons"}
    ):
        raise LigbindError(
            f"{where}: polymer must be {{amide: phenyl|hexyl|decyl, n: int, tail_carbons: int}}"
        )
    try:
        tail = poly.get("tail_carbons", DEFAULT_TAIL_CARBONS)
        smiles = polymer_smiles(poly["amide"], poly["n"], tail)
    except LigbindError as exc:
        raise LigbindError(f"{where}: {exc}") from None
    truncated_from = (
        polymer_smiles(poly["amide"], poly["n"], OCTADECENE_TAIL) if tail < OCTADECENE_TAIL else None
    )
    return smiles, truncated_from


def _exchange_from_yaml(exchange: Any, where: str) -> dict[str, str] | None:
    """The ``exchange:`` mapping with string values, or None."""
    if exchange is None:
        return None
    if not isinstance(exchange, dict) or set(exchange) != {"anion", "byproduct"}:
        raise LigbindError(f"{where}: exchange must be {{anion: SMILES, byproduct: SMILES}}")
    return {k: str(v) for k, v in exchange.items()}


def validate_entry(entry: LigandEntry, where: str | None = None) -> None:
    """Check an entry: SMILES parses, charge matches RDKit, anchors match, exchange conserves atoms/charge.

    Parameters
    ----------
    entry : LigandEntry
        The entry to check.
    where : str, optional
        Prefix of the error message; default "ligand '<name>'".

    Raises
    ------
    LigbindError
        One line on the first problem found.
    """
    where = where or f"ligand '{entry.name}'"
    mol = parse_smiles(entry.smiles)
    if mol is None:
        raise LigbindError(f"{where}: cannot parse SMILES '{entry.smiles}'")
    q = formal_charge(mol)
    if entry.charge != q:
        raise LigbindError(f"{where}: charge is {entry.charge} but the SMILES has total formal charge {q}")
    if not isinstance(entry.anchors, str):
        raise LigbindError(f"{where}: anchors must be a SMARTS string")
    groups = anchor_groups(mol, entry.anchors, where)
    n_anchor = len({i for g in groups for i in g})
    if isinstance(entry.denticity, bool) or not isinstance(entry.denticity, int) or entry.denticity < 1:
        raise LigbindError(f"{where}: denticity must be an integer >= 1, got {entry.denticity!r}")
    if entry.denticity > n_anchor:
        raise LigbindError(
            f"{where}: denticity {entry.denticity} exceeds the {n_anchor} anchor atom(s) found"
        )
    if not isinstance(entry.note, str) or not entry.note.strip():
        raise LigbindError(f"{where}: note must be a non-empty string")
    if entry.exchange is not None:
        _check_exchange(entry, mol, where)


def _check_exchange(entry: LigandEntry, mol: Chem.Mol, where: str) -> None:
    """Check that ligand + I- -> anion + byproduct parses and conserves charge and atoms."""
    ex = entry.exchange or {}
    mols = {}
    for k in ("anion", "byproduct"):
        m = parse_smiles(ex.get(k, ""))
        if m is None:
            raise LigbindError(f"{where}: cannot parse exchange {k} SMILES '{ex.get(k)}'")
        mols[k] = m
    if formal_charge(mols["anion"]) != -1:
        raise LigbindError(f"{where}: exchange anion '{ex['anion']}' must carry charge -1 (it replaces I-)")
    if entry.charge - 1 != formal_charge(mols["anion"]) + formal_charge(mols["byproduct"]):
        raise LigbindError(f"{where}: exchange ligand + I- -> anion + byproduct does not conserve charge")
    left = element_counts(mol) + Counter({"I": 1})
    right = element_counts(mols["anion"]) + element_counts(mols["byproduct"])
    if left != right:
        diff = (left - right) + (right - left)
        raise LigbindError(
            f"{where}: exchange ligand + I- -> anion + byproduct does not conserve atoms ({dict(diff)})"
        )


# ---------------------------------------------------------------------------------------------------------
# resolving names / SMILES
# ---------------------------------------------------------------------------------------------------------


def resolve_ligand(name: str | None = None, smiles: str | None = None) -> LigandEntry:
    """A library entry by name, or an entry for a user SMILES.

    Parameters
    ----------
    name : str, optional
        Library name (exact, else case-insensitive); with ``smiles`` it is the label of the user ligand
        and must not be a library name.
    smiles : str, optional
        User SMILES; anchors auto-detected (O, N, S, F, Cl, Br, I with a lone pair), denticity 1, charge
        from RDKit.

    Returns
    -------
    LigandEntry
        The library entry, or a new entry (family "user") for the SMILES.

    Raises
    ------
    LigbindError
        Neither given, unknown name, unparsable SMILES, or a SMILES without anchor atom.
    """
    if smiles is None:
        if not name:
            raise LigbindError("give a ligand name or a SMILES")
        library = load_library()
        if name in library:
            return library[name]
        folded = [k for k in library if k.lower() == str(name).lower()]
        if len(folded) == 1:
            return library[folded[0]]
        raise LigbindError(f"unknown ligand '{name}' (run `ligbind ligands` for the library)")
    mol = parse_smiles(smiles)
    if mol is None:
        raise LigbindError(f"cannot parse SMILES '{smiles}'")
    if name:
        library = load_library()
        if name in library:
            raise LigbindError(
                f"ligand name '{name}' is a library entry; choose another name for SMILES '{smiles}'"
            )
    label = name or smiles
    groups = anchor_groups(mol, AUTO_ANCHORS, f"SMILES '{smiles}'", required=False)
    if not groups:
        raise LigbindError(f"no anchor atom (O, N, S, F, Cl, Br or I with a lone pair) in SMILES '{smiles}'")
    return LigandEntry(
        name=label,
        smiles=smiles,
        charge=formal_charge(mol),
        anchors=AUTO_ANCHORS,
        denticity=1,
        note="user SMILES; anchors auto-detected (O, N, S, F, Cl, Br, I with a lone pair)",
        exchange=None,
        family="user",
        truncated_from=None,
    )
