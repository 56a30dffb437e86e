"""Ligand library and RDKit 3D builder: every library entry is built and checked."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.data import atomic_numbers, covalent_radii
from rdkit import Chem

from ligbind.builders.ligands import (
    AUTO_ANCHORS,
    LigandEntry,
    build_ligand,
    library_path,
    library_paths,
    ligand_conformers,
    load_library,
    polymer_smiles,
    resolve_ligand,
    truncate_alkyl,
)
from ligbind.errors import LigbindError

LIBRARY = load_library()
REQUIRED = [
    "OA", "OA-", "OAm", "OAm+", "OAmI", "NSA", "NH4PF6", "PF6-", "EDTA", "GL", "acetic-acid", "methylamine",
    "N-methylacetamide", "methanethiol", "PP1", "PP2", "HP1", "HP2", "DP1", "DP2", "TMSBr", "AnHI",
    "dimethyl-ether", "KBr",
]  # fmt: skip
ANCHOR_ELEMENTS = {"O", "N", "S", "F", "Cl", "Br", "I"}


def rdkit_counts(smiles: str) -> Counter:
    """Element counts of a SMILES with explicit H, straight from RDKit."""
    return Counter(a.GetSymbol() for a in Chem.AddHs(Chem.MolFromSmiles(smiles)).GetAtoms())


@pytest.fixture(scope="module")
def built() -> dict[str, list]:
    """Conformers of every library entry (one each, to keep the test file fast)."""
    return {name: ligand_conformers(entry, n_conformers=1) for name, entry in LIBRARY.items()}


def test_library_holds_required_entries() -> None:
    assert library_path() == Path(__file__).resolve().parents[1] / "ligbind" / "data" / "ligands.yaml"
    missing = [n for n in REQUIRED if n not in LIBRARY]
    assert not missing
    for entry in LIBRARY.values():
        assert isinstance(entry, LigandEntry)
        assert entry.note.strip()
        assert entry.denticity >= 1


@pytest.mark.parametrize("name", list(LIBRARY))
def test_every_entry_builds_sensibly(name: str, built: dict[str, list]) -> None:
    entry = LIBRARY[name]
    (atoms,) = built[name]
    mol = Chem.AddHs(Chem.MolFromSmiles(entry.smiles))
    # composition and charge
    assert Counter(atoms.get_chemical_symbols()) == rdkit_counts(entry.smiles)
    assert atoms.info["formula"] == atoms.get_chemical_formula()
    assert atoms.info["charge"] == entry.charge == sum(a.GetFormalCharge() for a in mol.GetAtoms())
    assert isinstance(atoms.info["charge"], int)
    assert atoms.info["name"] == name and atoms.info["smiles"] == entry.smiles
    assert atoms.info["denticity"] == entry.denticity
    assert atoms.info["conformer"] == 0 and np.isfinite(atoms.info["ff_energy"])
    # geometry: no overlaps, heavy atoms apart, every RDKit bond at a covalent length
    d = atoms.get_all_distances()
    n = len(atoms)
    if n > 1:
        assert d[np.triu_indices(n, 1)].min() > 0.7
    heavy = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s != "H"]
    if len(heavy) > 1:
        dh = d[np.ix_(heavy, heavy)]
        assert dh[np.triu_indices(len(heavy), 1)].min() > 0.9
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        ref = sum(covalent_radii[atomic_numbers[atoms[k].symbol]] for k in (i, j))
        assert 0.75 * ref < d[i, j] < 1.3 * ref, (name, i, j, d[i, j], ref)
    # anchors
    anchors = atoms.info["anchors"]
    assert anchors and anchors == sorted({i for g in atoms.info["anchor_groups"] for i in g})
    assert {atoms[i].symbol for i in anchors} <= ANCHOR_ELEMENTS
    assert entry.denticity <= len(anchors)


def test_specific_formulas(built: dict[str, list]) -> None:
    formula = {name: confs[0].get_chemical_formula() for name, confs in built.items()}
    assert formula["methylamine"] == "CH5N"
    assert formula["acetic-acid"] == "C2H4O2"
    assert formula["NSA"] == "C10H8O3S"
    assert formula["NH4PF6"] == "H4F6NP"  # ASE's Hill order: no C, so H first, then alphabetical
    assert formula["PF6-"] == "F6P"
    assert formula["OA"] == "C18H34O2" and formula["OA-"] == "C18H33O2"
    assert formula["OAm"] == "C18H37N" and formula["OAm+"] == "C18H38N" and formula["OAmI"] == "C18H38IN"
    assert formula["KBr"] == "BrK" and formula["TMSBr"] == "C3H9BrSi" and formula["AnHI"] == "C6H8IN"
    assert formula["EDTA"] == "C10H16N2O8" and formula["GL"] == "C10H17N3O6S"
    assert formula["PP1"] == "C24H31NO3"  # one repeat unit + two methyl caps, C4 tail
    charges = {name: e.charge for name, e in LIBRARY.items()}
    assert charges["OA-"] == -1 and charges["PF6-"] == -1 and charges["OAm+"] == 1
    assert charges["OAmI"] == charges["NH4PF6"] == charges["KBr"] == charges["AnHI"] == 0


@pytest.mark.parametrize(
    ("amide", "unit"),
    [
        ("phenyl", {"C": 22, "H": 25, "N": 1, "O": 3}),
        ("hexyl", {"C": 22, "H": 41, "N": 1, "O": 3}),
        ("decyl", {"C": 30, "H": 57, "N": 1, "O": 3}),
    ],
)
def test_polymer_units_differ_by_one_repeat_unit(amide: str, unit: dict[str, int]) -> None:
    # CH(COOH)-CH(C(=O)NR2)-CH2-CH(C4H9), counted by hand
    one, two = (rdkit_counts(polymer_smiles(amide, n)) for n in (1, 2))
    assert two - one == Counter(unit)
    assert one - Counter(unit) == Counter({"C": 2, "H": 6})  # the two methyl end caps
    prefix = {"phenyl": "PP", "hexyl": "HP", "decyl": "DP"}[amide]
    assert LIBRARY[f"{prefix}1"].smiles == polymer_smiles(amide, 1)
    assert LIBRARY[f"{prefix}2"].smiles == polymer_smiles(amide, 2)
    assert rdkit_counts(LIBRARY[f"{prefix}2"].smiles) - rdkit_counts(LIBRARY[f"{prefix}1"].smiles) == Counter(
        unit
    )
    assert LIBRARY[f"{prefix}1"].truncated_from == polymer_smiles(amide, 1, tail_carbons=16)


def test_polymer_smiles_generated_for_all_amides() -> None:
    for amide in ("phenyl", "hexyl", "decyl"):
        for n in (1, 2, 3):
            base = rdkit_counts(polymer_smiles(amide, n))
            longer = rdkit_counts(polymer_smiles(amide, n, tail_carbons=6))
            assert longer - base == Counter({"C": 2 * n, "H": 4 * n})
            mol = Chem.MolFromSmiles(polymer_smiles(amide, n, tail_carbons=16))
            assert mol is not None and sum(1 for a in mol.GetAtoms() if a.GetSymbol() == "N") == n
    with pytest.raises(LigbindError, match="butyl"):
        polymer_smiles("butyl", 1)
    with pytest.raises(LigbindError):
        polymer_smiles("phenyl", 0)
    with pytest.raises(LigbindError):
        polymer_smiles("phenyl", 1, tail_carbons=17)


def test_seeded_build_is_reproducible() -> None:
    a = build_ligand("acetic-acid", seed=7)
    b = build_ligand("acetic-acid", seed=7)
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    assert np.array_equal(a.positions, b.positions)
    c1 = ligand_conformers(LIBRARY["OAmI"], n_conformers=2, seed=3)
    c2 = ligand_conformers(LIBRARY["OAmI"], n_conformers=2, seed=3)
    assert len(c1) == len(c2)
    for x, y in zip(c1, c2, strict=True):
        assert x.get_chemical_symbols() == y.get_chemical_symbols()
        assert np.array_equal(x.positions, y.positions)
        assert x.info["ff_energy"] == y.info["ff_energy"]


def test_conformers_sorted_and_distinct() -> None:
    confs = ligand_conformers(LIBRARY["OA"], n_conformers=4)
    assert 1 <= len(confs) <= 4
    energies = [a.info["ff_energy"] for a in confs]
    assert energies == sorted(energies)
    assert [a.info["conformer"] for a in confs] == list(range(len(confs)))
    assert confs[0].info["force_field"] == "MMFF94"


def test_build_ligand_box() -> None:
    atoms = build_ligand("methylamine", vacuum=5.0)
    assert atoms.pbc.all()
    assert atoms.get_chemical_formula() == "CH5N"
    span = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
    assert np.allclose(atoms.cell.lengths(), span + 10.0)
    assert np.allclose(atoms.positions.min(axis=0), 5.0)
    assert atoms.info["anchors"] == [1] and atoms[1].symbol == "N"
    with pytest.raises(LigbindError):
        build_ligand("methylamine", vacuum=0)


@pytest.mark.parametrize("name", [n for n, e in LIBRARY.items() if "." in e.smiles])
def test_ion_pairs_in_contact(name: str, built: dict[str, list]) -> None:
    (atoms,) = built[name]
    frags = atoms.info["fragments"]
    assert len(frags) >= 2
    d = atoms.get_all_distances()
    symbols = atoms.get_chemical_symbols()
    main = [i for i in frags[0] if symbols[i] != "H"]
    other = [i for f in frags[1:] for i in f if symbols[i] != "H"]
    closest = d[np.ix_(main, other)].min()
    assert 2.5 <= closest <= 3.5, closest
    assert d[np.ix_(frags[0], [i for f in frags[1:] for i in f])].min() > 1.5


def test_unknown_ligand_and_bad_smiles() -> None:
    with pytest.raises(LigbindError, match="unknown ligand 'unobtainium'") as exc:
        resolve_ligand("unobtainium")
    assert "ligbind ligands" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(LigbindError, match=r"cannot parse SMILES 'C1CC\(\('"):
        resolve_ligand(smiles="C1CC((")
    with pytest.raises(LigbindError, match="cannot parse SMILES"):
        build_ligand(smiles="not-a-smiles")
    with pytest.raises(LigbindError, match="no anchor atom"):
        resolve_ligand(smiles="CC")
    with pytest.raises(LigbindError):
        resolve_ligand()
    assert resolve_ligand("oa").name == "OA"  # case-insensitive fallback


def test_user_smiles_auto_anchors() -> None:
    entry = resolve_ligand(smiles="c1ccncc1")
    assert entry.name == "c1ccncc1" and entry.charge == 0 and entry.denticity == 1
    atoms = build_ligand(smiles="c1ccncc1")
    assert [atoms[i].symbol for i in atoms.info["anchors"]] == ["N"]
    # NH4+ has no lone pair: only the chloride anchors
    pair = ligand_conformers(resolve_ligand(smiles="[NH4+].[Cl-]"), n_conformers=1)[0]
    assert [pair[i].symbol for i in pair.info["anchors"]] == ["Cl"]
    assert resolve_ligand(smiles="CC(=O)[O-]").charge == -1
    named = resolve_ligand(name="my-acid", smiles="CCC(=O)O")
    assert named.name == "my-acid"
    # the auto-anchor SMARTS selects exactly the O/N/S/halogen atoms with a lone pair
    patt = Chem.MolFromSmarts(AUTO_ANCHORS)
    pt = Chem.GetPeriodicTable()
    for smi in [
        "C[NH3+]",
        "CS(C)(=O)=O",
        "CS(C)=O",
        "C[O-]",
        "c1cc[nH+]cc1",
        "c1cc[nH]c1",
        "FC(F)F",
        "[I-]",
        "CN",
    ]:
        mol = Chem.MolFromSmiles(smi)
        found = {m[0] for m in mol.GetSubstructMatches(patt)}
        expected = {
            a.GetIdx()
            for a in mol.GetAtoms()
            if a.GetSymbol() in ANCHOR_ELEMENTS
            and pt.GetNOuterElecs(a.GetAtomicNum()) - a.GetFormalCharge() - a.GetTotalValence() >= 2
        }
        assert found == expected, smi


def test_truncate_alkyl_oleic_acid() -> None:
    oa = LIBRARY["OA"]
    short = truncate_alkyl(oa, 6)
    assert short.name == "OA[C6]"
    assert short.truncated_from == oa.smiles
    assert rdkit_counts(short.smiles) == Counter({"C": 6, "H": 12, "O": 2})
    assert sum(rdkit_counts(short.smiles).values()) < sum(rdkit_counts(oa.smiles).values())
    assert short.exchange == {"anion": "CCCCCC(=O)[O-]", "byproduct": "I"}
    atoms = ligand_conformers(short, n_conformers=1)[0]
    assert atoms.get_chemical_formula() == "C6H12O2"
    assert atoms.info["truncated_from"] == oa.smiles
    assert sorted(atoms[i].symbol for i in atoms.info["anchors"]) == ["O", "O"]  # carboxyl kept
    # the cis double bond survives when kept
    assert "/C=C\\" in truncate_alkyl(oa, 12).smiles
    # nothing that far: unchanged
    assert truncate_alkyl(oa, 30) is oa
    # counter-ion fragment measured from its own head group
    assert truncate_alkyl(LIBRARY["OAmI"], 4).smiles == "CCCC[NH3+].[I-]"
    with pytest.raises(LigbindError, match="NSA"):
        truncate_alkyl(LIBRARY["NSA"], 2)  # would cut the naphthalene ring
    with pytest.raises(LigbindError):
        truncate_alkyl(oa, 0)


BROKEN = {
    "wrong-charge": 'smiles: "CC(=O)[O-]"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 1\n  note: x',
    "no-match": 'smiles: "CCC"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 1\n  note: x',
    "carbon-anchor": 'smiles: "CCO"\n  charge: 0\n  anchors: "[C:1]O"\n  denticity: 1\n  note: x',
    "bad-smiles": 'smiles: "C1CC"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 1\n  note: x',
    "no-map": 'smiles: "CCO"\n  charge: 0\n  anchors: "[OX2H]"\n  denticity: 1\n  note: x',
    "too-dentate": 'smiles: "CCO"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 2\n  note: x',
    "bad-exchange": (
        'smiles: "CC(=O)O"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 1\n  note: x\n'
        '  exchange: {anion: "CC(=O)[O-]", byproduct: "Br"}'
    ),
    "typo-key": 'smiles: "CCO"\n  charge: 0\n  anchor: "[O:1]"\n  denticity: 1\n  note: x',
}


@pytest.mark.parametrize("bad", list(BROKEN))
def test_broken_library_entry_names_the_entry(bad: str, tmp_path, monkeypatch) -> None:
    path = tmp_path / "lib.yaml"
    path.write_text(
        f'ok:\n  smiles: "CO"\n  charge: 0\n  anchors: "[O:1]"\n  denticity: 1\n  note: x\n{bad}:\n  {BROKEN[bad]}\n'
    )
    with pytest.raises(LigbindError, match=f"'{bad}'") as exc:
        load_library(path)
    assert "\n" not in str(exc.value)
    monkeypatch.setenv("LIGBIND_LIGANDS", str(path))
    assert library_paths() == [library_path(), path]
    with pytest.raises(LigbindError, match=f"'{bad}'"):
        resolve_ligand("ok")


def entry_yaml(name: str, smiles: str, anchors: str = "[N:1]") -> str:
    """One library entry in the YAML format of ligbind/data/ligands.yaml."""
    return (
        f'{name}:\n  smiles: "{smiles}"\n  charge: 0\n  anchors: "{anchors}"\n  denticity: 1\n  note: test\n'
    )


def test_user_library_extends_the_shipped_one(tmp_path, monkeypatch) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(entry_yaml("my-amine", "CCN"))
    monkeypatch.setenv("LIGBIND_LIGANDS", str(mine))
    library = load_library()
    assert list(library) == [*LIBRARY, "my-amine"]  # shipped entries first, in file order
    assert library["my-amine"].smiles == "CCN" and library["methylamine"] == LIBRARY["methylamine"]
    assert resolve_ligand("my-amine").smiles == "CCN"
    assert resolve_ligand("OA") == LIBRARY["OA"]
    atoms = build_ligand("my-amine")
    assert atoms.get_chemical_formula() == "C2H7N" and [atoms[i].symbol for i in atoms.info["anchors"]] == [
        "N"
    ]
    # an explicit path reads that file only
    assert list(load_library(mine)) == ["my-amine"]
    assert list(load_library(library_path())) == list(LIBRARY)


def test_several_user_libraries(tmp_path, monkeypatch) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(entry_yaml("my-amine", "CCN"))
    b.write_text(entry_yaml("my-alcohol", "CCCO", "[O:1]"))
    # empty items are ignored; the shipped file named again is read once
    monkeypatch.setenv("LIGBIND_LIGANDS", os.pathsep.join([str(a), "", str(b), str(library_path())]))
    assert library_paths() == [library_path(), a, b]
    assert list(load_library())[-2:] == ["my-amine", "my-alcohol"]
    b.write_text(entry_yaml("my-amine", "CCCN"))  # same name as in a.yaml
    with pytest.raises(LigbindError) as exc:
        load_library()
    message = str(exc.value)
    assert "'my-amine'" in message and str(a) in message and str(b) in message and "\n" not in message


@pytest.mark.parametrize("name", ["methylamine", "Methylamine", "OA"])
def test_user_library_cannot_redefine_a_shipped_ligand(name: str, tmp_path, monkeypatch) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(entry_yaml("my-amine", "CCN") + entry_yaml(name, "CCCCN"))
    monkeypatch.setenv("LIGBIND_LIGANDS", str(mine))
    for call in (load_library, lambda: resolve_ligand("methylamine"), lambda: resolve_ligand("my-amine")):
        with pytest.raises(LigbindError) as exc:
            call()
        message = str(exc.value)
        assert f"'{name}'" in message and str(mine) in message and str(library_path()) in message
        assert "\n" not in message
    assert load_library(mine)["my-amine"].smiles == "CCN"  # on its own the file is fine


def test_same_molecule_under_two_names_is_refused(tmp_path, monkeypatch) -> None:
    # within one file: CCN and NCC are the same molecule (one canonical SMILES)
    dup = tmp_path / "dup.yaml"
    dup.write_text(entry_yaml("ethylamine", "CCN") + entry_yaml("aminoethane", "NCC"))
    with pytest.raises(LigbindError, match="'aminoethane'.*'ethylamine'") as exc:
        load_library(dup)
    assert str(dup) in str(exc.value) and "\n" not in str(exc.value)
    # against the shipped library: NC is methylamine (CN)
    mine = tmp_path / "mine.yaml"
    mine.write_text(entry_yaml("aminomethane", "NC"))
    monkeypatch.setenv("LIGBIND_LIGANDS", str(mine))
    with pytest.raises(LigbindError, match="'aminomethane'.*'methylamine'") as exc:
        load_library()
    assert str(mine) in str(exc.value) and str(library_path()) in str(exc.value)
    # enantiomers are different molecules
    isomers = tmp_path / "isomers.yaml"
    isomers.write_text(
        entry_yaml("R-sec-butylamine", "C[C@@H](N)CC") + entry_yaml("S-sec-butylamine", "C[C@H](N)CC")
    )
    assert list(load_library(isomers)) == ["R-sec-butylamine", "S-sec-butylamine"]


def test_missing_user_library(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LIGBIND_LIGANDS", str(tmp_path / "missing.yaml"))
    with pytest.raises(LigbindError, match="not found.*missing.yaml"):
        resolve_ligand("OA")
    with pytest.raises(LigbindError, match="not found"):
        load_library(tmp_path / "missing.yaml")
