"""Ligand library (``ligbind/data/ligands.yaml``) and the RDKit 3D ligand builder.

Every ligand is a :class:`LigandEntry`: SMILES, total charge, anchor atoms (a SMARTS with atom-map numbers on
the atoms that bind surface Pb), default denticity, a note, and optionally an X-site exchange reaction.
3D structures come from RDKit conformers (ETKDGv3 + MMFF94, UFF where MMFF has no parameters), never from
hand-typed coordinates.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ase import Atoms
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

import ligbind
from ligbind.errors import LigbindError

# RDKit prints its own parse errors and force-field warnings to stderr; we report one line ourselves.
RDLogger.DisableLog("rdApp.*")

ANCHOR_ELEMENTS = frozenset({"O", "N", "S", "F", "Cl", "Br", "I"})
"""Elements allowed as anchor atoms."""

AUTO_ANCHORS = "[#8,$([#7;!+]),$([#16;!v6]),$([#9,#17,#35,#53;v0,v1]):1]"
"""SMARTS for user SMILES: O, N, S, F, Cl, Br, I atoms that carry a lone pair (no NH4+, sulfone S, ...)."""

POLYMER_AMIDES = {"phenyl": "c1ccccc1", "hexyl": "CCCCCC", "decyl": "CCCCCCCCCC"}
"""R of the C(=O)NR2 amide in the amidated poly(maleic anhydride-alt-1-octadecene) units."""

OCTADECENE_TAIL = 16
"""Carbons in the full side chain of 1-octadecene (C16H33)."""

DEFAULT_TAIL_CARBONS = 4
RMS_PRUNE = 0.5  # Å, heavy-atom RMS below which two conformers count as the same
_ENTRY_KEYS = {"smiles", "polymer", "charge", "anchors", "denticity", "note", "exchange", "family"}
_H_CONTACT = 1.7  # Å, closest allowed H...X distance between ion-pair fragments
_RANDOM_COORDS_ABOVE = 100  # atoms (with H) above which ETKDG starts from random coordinates


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
# library
# ---------------------------------------------------------------------------------------------------------


def library_path() -> Path:
    """Path of the ligand library: ``$LIGBIND_LIGANDS`` if set, else the one shipped in the package
    (``ligbind/data/ligands.yaml``)."""
    env = os.environ.get("LIGBIND_LIGANDS")
    if env:
        return Path(env).expanduser()
    return Path(ligbind.__file__).resolve().parent / "data" / "ligands.yaml"


def polymer_smiles(amide: str, n: int, tail_carbons: int = DEFAULT_TAIL_CARBONS) -> str:
    """SMILES of n repeat units of amidated poly(maleic anhydride-alt-1-octadecene).

    Repeat unit CH(COOH)-CH(C(=O)NR2)-CH2-CH(tail); the C16 octadecene tail is cut to ``tail_carbons``
    carbons and capped with H; both backbone ends are capped with methyl. Stereocentres are written
    explicitly (one fixed configuration, the same for every amide).

    Parameters
    ----------
    amide : "phenyl", "hexyl" or "decyl" (R of the NR2 amide).
    n : number of repeat units (>= 1).
    tail_carbons : carbons kept of the C16 side chain (0-16).
    """
    if amide not in POLYMER_AMIDES:
        raise LigbindError(f"unknown polymer amide '{amide}' (choose from {', '.join(POLYMER_AMIDES)})")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LigbindError(f"polymer repeat units n must be an integer >= 1, got {n!r}")
    if (
        isinstance(tail_carbons, bool)
        or not isinstance(tail_carbons, int)
        or not (0 <= tail_carbons <= OCTADECENE_TAIL)
    ):
        raise LigbindError(
            f"polymer tail_carbons must be an integer 0-{OCTADECENE_TAIL}, got {tail_carbons!r}"
        )
    r = POLYMER_AMIDES[amide]
    # one fixed relative configuration (the atactic polymer has all of them), written identically for every
    # amide so that PP, HP and DP units are the same stereoisomer and conformers are never mixed isomers
    tail = f"[C@H]({'C' * tail_carbons})" if tail_carbons else "C"
    unit = f"[C@H](C(=O)O)[C@@H](C(=O)N({r}){r})C{tail}"
    return "C" + unit * n + "C"


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

_CACHE: dict[tuple[str, int, int], dict[str, LigandEntry]] = {}


def load_library(path: str | Path | None = None) -> dict[str, LigandEntry]:
    """Read and validate the ligand library.

    Parameters
    ----------
    path : YAML file; default :func:`library_path`.

    Returns
    -------
    dict name -> LigandEntry, in file order. A broken entry raises LigbindError naming it.
    """
    p = Path(path).expanduser() if path is not None else library_path()
    try:
        st = p.stat()
    except OSError:
        raise LigbindError(f"ligand library not found: {p}") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        return dict(_CACHE[key])
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
    library: dict[str, LigandEntry] = {}
    for name, raw in data.items():
        entry = _entry_from_yaml(str(name), raw, p)
        library[entry.name] = entry
    _CACHE[key] = library
    return dict(library)


def _entry_from_yaml(name: str, raw: Any, path: Path) -> LigandEntry:
    where = f"ligand '{name}' in {path.name}"
    if not isinstance(raw, dict):
        raise LigbindError(f"{where}: entry must be a mapping with smiles, charge, anchors, denticity, note")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise LigbindError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    for k in ("charge", "anchors", "denticity", "note"):
        if k not in raw:
            raise LigbindError(f"{where}: missing key '{k}'")
    truncated_from = None
    if ("smiles" in raw) == ("polymer" in raw):
        raise LigbindError(f"{where}: give exactly one of 'smiles' or 'polymer'")
    if "polymer" in raw:
        poly = raw["polymer"]
        if (
            not isinstance(poly, dict)
            or not {"amide", "n"} <= set(poly)
            or set(poly)
            - {
                "amide",
                "n",
                "tail_carbons",
            }
        ):
            raise LigbindError(
                f"{where}: polymer must be {{amide: phenyl|hexyl|decyl, n: int, tail_carbons: int}}"
            )
        try:
            tail = poly.get("tail_carbons", DEFAULT_TAIL_CARBONS)
            smiles = polymer_smiles(poly["amide"], poly["n"], tail)
        except LigbindError as exc:
            raise LigbindError(f"{where}: {exc}") from None
        if tail < OCTADECENE_TAIL:
            truncated_from = polymer_smiles(poly["amide"], poly["n"], OCTADECENE_TAIL)
    else:
        smiles = raw["smiles"]
        if not isinstance(smiles, str):
            raise LigbindError(f"{where}: smiles must be a string")
    charge = raw["charge"]
    if isinstance(charge, bool) or not isinstance(charge, int):
        raise LigbindError(f"{where}: charge must be an integer, got {charge!r}")
    exchange = raw.get("exchange")
    if exchange is not None:
        if not isinstance(exchange, dict) or set(exchange) != {"anion", "byproduct"}:
            raise LigbindError(f"{where}: exchange must be {{anion: SMILES, byproduct: SMILES}}")
        exchange = {k: str(v) for k, v in exchange.items()}
    family = raw.get("family")
    entry = LigandEntry(
        name=name,
        smiles=smiles,
        charge=charge,
        anchors=raw["anchors"],
        denticity=raw["denticity"],
        note=raw["note"],
        exchange=exchange,
        family=None if family is None else str(family),
        truncated_from=truncated_from,
    )
    validate_entry(entry, where)
    return entry


def validate_entry(entry: LigandEntry, where: str | None = None) -> None:
    """Check an entry: SMILES parses, charge matches RDKit, anchors match, exchange conserves atoms/charge.

    Raises LigbindError (one line, prefixed by ``where``, default "ligand '<name>'") on the first problem.
    """
    where = where or f"ligand '{entry.name}'"
    mol = _parse(entry.smiles)
    if mol is None:
        raise LigbindError(f"{where}: cannot parse SMILES '{entry.smiles}'")
    q = _formal_charge(mol)
    if entry.charge != q:
        raise LigbindError(f"{where}: charge is {entry.charge} but the SMILES has total formal charge {q}")
    if not isinstance(entry.anchors, str):
        raise LigbindError(f"{where}: anchors must be a SMARTS string")
    groups = _anchor_groups(mol, entry.anchors, where)
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
    ex = entry.exchange or {}
    mols = {}
    for k in ("anion", "byproduct"):
        m = _parse(ex.get(k, ""))
        if m is None:
            raise LigbindError(f"{where}: cannot parse exchange {k} SMILES '{ex.get(k)}'")
        mols[k] = m
    if _formal_charge(mols["anion"]) != -1:
        raise LigbindError(f"{where}: exchange anion '{ex['anion']}' must carry charge -1 (it replaces I-)")
    if entry.charge - 1 != _formal_charge(mols["anion"]) + _formal_charge(mols["byproduct"]):
        raise LigbindError(f"{where}: exchange ligand + I- -> anion + byproduct does not conserve charge")
    left = _element_counts(mol) + Counter({"I": 1})
    right = _element_counts(mols["anion"]) + _element_counts(mols["byproduct"])
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
    name : library name (exact, else case-insensitive); with ``smiles`` it is the label of the user ligand.
    smiles : user SMILES; anchors auto-detected (O, N, S, F, Cl, Br, I with a lone pair), denticity 1,
        charge from RDKit.
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
    mol = _parse(smiles)
    if mol is None:
        raise LigbindError(f"cannot parse SMILES '{smiles}'")
    if name:
        library = load_library()
        if name in library:
            raise LigbindError(
                f"ligand name '{name}' is a library entry; choose another name for SMILES '{smiles}'"
            )
    label = name or smiles
    groups = _anchor_groups(mol, AUTO_ANCHORS, f"SMILES '{smiles}'", required=False)
    if not groups:
        raise LigbindError(f"no anchor atom (O, N, S, F, Cl, Br or I with a lone pair) in SMILES '{smiles}'")
    return LigandEntry(
        name=label,
        smiles=smiles,
        charge=_formal_charge(mol),
        anchors=AUTO_ANCHORS,
        denticity=1,
        note="user SMILES; anchors auto-detected (O, N, S, F, Cl, Br, I with a lone pair)",
        exchange=None,
        family="user",
        truncated_from=None,
    )


# ---------------------------------------------------------------------------------------------------------
# truncation
# ---------------------------------------------------------------------------------------------------------


def truncate_alkyl(entry: LigandEntry, keep: int) -> LigandEntry:
    """Cut hydrocarbon chain atoms farther than ``keep`` bonds from every anchor atom and cap with H.

    Removed atoms must be acyclic, non-aromatic carbons bonded only to C/H (saturated chains, and the
    olefinic CH=CH of oleyl chains), and the rest must stay connected; otherwise LigbindError. Fragments
    without anchor atoms (counter-ions) are measured from their own heteroatoms. Returns the entry
    unchanged if nothing is that far; else a new entry named e.g. ``OA[C6]`` with ``truncated_from`` set.
    The exchange anion/byproduct are truncated the same way.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise LigbindError(f"truncation length must be an integer >= 1 bonds, got {keep!r}")
    mol = _parse(entry.smiles)
    if mol is None:
        raise LigbindError(f"ligand '{entry.name}': cannot parse SMILES '{entry.smiles}'")
    anchor_atoms = {i for g in _anchor_groups(mol, entry.anchors, f"ligand '{entry.name}'") for i in g}
    try:
        new_smiles = _truncate_smiles(mol, anchor_atoms, keep)
    except ValueError as exc:
        raise LigbindError(
            f"cannot truncate ligand '{entry.name}' to {keep} bonds from its anchors: {exc}"
        ) from None
    if new_smiles is None:
        return entry
    exchange = None
    if entry.exchange is not None:
        exchange = {}
        for k, smi in entry.exchange.items():
            m = _parse(smi)
            refs: set[int] = set()
            if m is not None and k == "anion":
                refs = {i for g in _anchor_groups(m, entry.anchors, "", required=False) for i in g}
            try:
                cut = _truncate_smiles(m, refs, keep) if m is not None else None
            except ValueError as exc:
                raise LigbindError(f"cannot truncate exchange {k} of ligand '{entry.name}': {exc}") from None
            exchange[k] = cut or smi
    base = re.sub(r"\[C\d+\]$", "", entry.name)
    new = replace(
        entry,
        name=f"{base}[C{keep}]",
        smiles=new_smiles,
        exchange=exchange,
        truncated_from=entry.truncated_from or entry.smiles,
        note=f"{entry.note} [chains truncated to {keep} bonds from the anchors, capped with H]",
    )
    validate_entry(new)
    return new


def _truncate_smiles(mol: Chem.Mol, anchor_atoms: set[int], keep: int) -> str | None:
    """SMILES of ``mol`` without chain carbons > keep bonds from the reference atoms; None if none to cut."""
    frags = Chem.GetMolFrags(mol)
    refs = set(anchor_atoms)
    for frag in frags:
        if not refs & set(frag):  # counter-ion or anchor-less fragment: measure from its heteroatoms
            refs |= {i for i in frag if mol.GetAtomWithIdx(i).GetSymbol() not in ("C", "H")}
    if not refs:
        raise ValueError("no anchor or heteroatom to measure from")
    dist = Chem.GetDistanceMatrix(mol)[:, sorted(refs)].min(axis=1)
    far = [i for i in range(mol.GetNumAtoms()) if dist[i] > keep]
    if not far:
        return None
    bad = [mol.GetAtomWithIdx(i) for i in far if not _is_chain_carbon(mol.GetAtomWithIdx(i))]
    if bad:
        kinds = sorted({f"{a.GetSymbol()}{'(ring)' if a.IsInRing() else ''}" for a in bad})
        raise ValueError(f"that would remove non-alkyl atoms ({', '.join(kinds)})")
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
    try:
        Chem.SanitizeMol(out)
    except Exception as exc:
        raise ValueError(f"capped structure is not valid ({exc})") from None
    Chem.AssignStereochemistry(out, cleanIt=True, force=True)
    if len(Chem.GetMolFrags(out)) != len(frags):
        raise ValueError("that would split the molecule or remove a whole fragment")
    smiles = Chem.MolToSmiles(out)
    if _parse(smiles) is None:
        raise ValueError("capped structure does not round-trip through SMILES")
    return smiles


def _is_chain_carbon(atom: Chem.Atom) -> bool:
    return (
        atom.GetSymbol() == "C"
        and not atom.IsInRing()
        and not atom.GetIsAromatic()
        and atom.GetFormalCharge() == 0
        and all(nb.GetSymbol() in ("C", "H") for nb in atom.GetNeighbors())
        and all(b.GetBondType() in (Chem.BondType.SINGLE, Chem.BondType.DOUBLE) for b in atom.GetBonds())
    )


# ---------------------------------------------------------------------------------------------------------
# 3D structures
# ---------------------------------------------------------------------------------------------------------


_CONFORMER_CACHE: dict[tuple, list[Atoms]] = {}


def ligand_conformers(entry: LigandEntry, n_conformers: int = 4, seed: int = 42) -> list[Atoms]:
    """Low-energy 3D conformers of a ligand, lowest force-field energy first.

    Deterministic for a given entry and seed, so they are computed once per process (a campaign asks for
    the same ligand in every step; RDKit takes seconds for the polymers) and returned as copies.
    See :func:`_ligand_conformers` for the method.
    """
    key = (entry.name, entry.smiles, entry.anchors, entry.denticity, entry.charge, n_conformers, seed)
    if key not in _CONFORMER_CACHE:
        _CONFORMER_CACHE[key] = _ligand_conformers(entry, n_conformers, seed)
    return [atoms.copy() for atoms in _CONFORMER_CACHE[key]]


def _ligand_conformers(entry: LigandEntry, n_conformers: int = 4, seed: int = 42) -> list[Atoms]:
    """Compute the conformers (uncached): the method behind :func:`ligand_conformers`.

    ETKDGv3 (fixed random seed; unspecified stereocentres fixed to one isomer first) -> MMFF94 (UFF if
    MMFF lacks parameters; six-coordinate centres such as PF6- held octahedral) -> ion-pair fragments put
    in contact -> sorted by force-field energy -> duplicates (heavy-atom RMS < 0.5 Å) pruned.

    Parameters
    ----------
    entry : ligand (see :func:`resolve_ligand`).
    n_conformers : at most this many conformers are returned (fewer if they collapse to duplicates).
    seed : ETKDG random seed; the same seed gives the same atoms and positions.

    Returns
    -------
    list of ase.Atoms (no cell) with ``info``: name, smiles, charge, formula, anchors, anchor_groups,
    denticity, conformer, ff_energy (kcal/mol), force_field, fragments (atom indices per SMILES fragment),
    truncated_from (if truncated), isomer_smiles (if stereocentres had to be fixed).
    """
    if isinstance(n_conformers, bool) or not isinstance(n_conformers, int) or n_conformers < 1:
        raise LigbindError(f"n_conformers must be an integer >= 1, got {n_conformers!r}")
    mol = _parse(entry.smiles)
    if mol is None:
        raise LigbindError(f"ligand '{entry.name}': cannot parse SMILES '{entry.smiles}'")
    groups = _anchor_groups(mol, entry.anchors, f"ligand '{entry.name}'")
    mol, isomer_smiles = _fix_stereo(mol)
    molh = Chem.AddHs(mol)  # H atoms are appended: heavy-atom indices (and anchors) are unchanged
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    # eigenvector embedding often fails for large flexible molecules; random coordinates do not
    params.useRandomCoords = molh.GetNumAtoms() > _RANDOM_COORDS_ABOVE
    n_embed = n_conformers + 2
    cids = list(AllChem.EmbedMultipleConfs(molh, numConfs=n_embed, params=params))
    if len(cids) < n_embed and not params.useRandomCoords:
        params.useRandomCoords = True
        cids = list(AllChem.EmbedMultipleConfs(molh, numConfs=n_embed, params=params))
    if not cids:
        raise LigbindError(f"RDKit could not generate 3D coordinates for ligand '{entry.name}'")
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
    name, smiles : as in :func:`resolve_ligand`.
    vacuum : Å of empty space on each side (> 0).
    seed : ETKDG random seed.
    n_conformers : conformers compared.
    truncate : if given, :func:`truncate_alkyl` with this many bonds first.
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


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _parse(smiles: Any) -> Chem.Mol | None:
    """RDKit Mol (no explicit H) or None when the SMILES does not parse or is empty."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def smiles_atom_count(smiles: str) -> int:
    """Number of atoms, hydrogens included, of a SMILES (0 if it does not parse)."""
    mol = _parse(smiles)
    return sum(_element_counts(mol).values()) if mol is not None else 0


def _formal_charge(mol: Chem.Mol) -> int:
    return int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))


def _element_counts(mol: Chem.Mol) -> Counter:
    return Counter(a.GetSymbol() for a in Chem.AddHs(mol).GetAtoms())


def _anchor_groups(mol: Chem.Mol, smarts: str, where: str, required: bool = True) -> list[list[int]]:
    """Anchor atom indices, one list per SMARTS match (ordered by map number), duplicates removed."""
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
