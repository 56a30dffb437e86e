"""AX-terminated (001) slabs (CsI on CsPbI3, MAI on MAPbI3) and A-site exchange of ammonium salts on them.

Counts come from layers × size by hand: a 2×2 AX layer holds 4 A + 4 X, a PbX2 layer 4 Pb + 8 X; an odd
number L of layers with AX on top has (L + 1)/2 AX and (L − 1)/2 PbX2 layers.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import yaml
from ase.neighborlist import neighbor_list

from ligbind.builders.conformers import ligand_conformers
from ligbind.builders.ligands import resolve_ligand
from ligbind.builders.placement import place_ligand
from ligbind.builders.slab import build_slab, find_layers, layer_name, termination
from ligbind.builders.termination import exchange_byproduct, surface_kind
from ligbind.calculators import make_calculator
from ligbind.engine.campaign import load_campaign
from ligbind.errors import LigbindError
from ligbind.io import write_structure
from ligbind.protocols import load_protocol
from ligbind.recipes import bind
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 120}}
FORMAL = {"Cs": 1, "Pb": 2, "I": -1, "Br": -1, "N": 1}  # MA+ carried by its N (C and H neutral)
A_LAYER = {"CsPbI3": "CsI", "MAPbI3": "MAI"}


def _formal_charges(atoms) -> np.ndarray:
    return np.array([FORMAL.get(s, 0) for s in atoms.get_chemical_symbols()], dtype=float)


def _expected_counts(material: str, layers: int) -> Counter:
    n_ax, n_pbx2 = (layers + 1) // 2, layers // 2
    counts = Counter({"Pb": 4 * n_pbx2, "I": 4 * n_ax + 8 * n_pbx2})
    if material == "CsPbI3":
        counts["Cs"] = 4 * n_ax
    else:
        counts.update({"C": 4 * n_ax, "N": 4 * n_ax, "H": 24 * n_ax})
    return counts


# ------------------------------------------------------------------------------------------------ slabs
@pytest.mark.parametrize("material", ["CsPbI3", "MAPbI3"])
@pytest.mark.parametrize("layers", [3, 5])
def test_ax_slab_stoichiometry_and_both_faces(material, layers):
    slab = build_slab(material, size="2x2", layers=layers, termination="AX")
    assert Counter(slab.get_chemical_symbols()) == _expected_counts(material, layers)
    a = A_LAYER[material]
    names = [layer_name(slab, idx) for idx in find_layers(slab)]
    assert names == [a if k % 2 == 0 else "PbI2" for k in range(layers)]
    assert termination(slab) == (a, a)
    assert slab.info["termination"] == f"{a}/{a}" and slab.info["surface"] == "AX"
    assert slab.info["symmetric"] is True
    assert abs(_formal_charges(slab).sum()) < 1e-9
    # no undercoordinated Pb on an AX surface: every Pb has its six iodides (3.0-3.3 Å)
    i, j, d = neighbor_list("ijd", slab, 3.4)
    sym = np.array(slab.get_chemical_symbols())
    for pb in np.where(sym == "Pb")[0]:
        partners = (i == pb) & (sym[j] == "I")
        assert partners.sum() == 6 and np.all(d[partners] > 3.0)


def test_ax_aliases_and_even_layers():
    explicit = build_slab("CsPbI3", termination="CsI")
    generic = build_slab("CsPbI3", termination="AX")
    np.testing.assert_array_equal(explicit.positions, generic.positions)
    assert build_slab("MAPbI3", termination="MAI").info["termination"] == "MAI/MAI"
    four = build_slab("CsPbI3", layers=4, termination="AX")
    assert termination(four) == ("CsI", "PbI2") and four.info["symmetric"] is False
    # 2 AX + 2 PbX2 layers
    assert Counter(four.get_chemical_symbols()) == Counter({"Cs": 8, "Pb": 8, "I": 8 + 16})
    # the default is unchanged: PbI2 on top
    assert termination(build_slab("CsPbI3")) == ("PbI2", "PbI2")
    assert build_slab("CsPbI3").info["surface"] == "PbX2"


@pytest.mark.parametrize("layers", [3, 5])
def test_mai_terminated_slab_has_no_dipole(layers):
    slab = build_slab("MAPbI3", size="2x2", layers=layers, termination="AX")
    sym = np.array(slab.get_chemical_symbols())
    ns, cs = np.where(sym == "N")[0], np.where(sym == "C")[0]
    vectors = []
    for n in ns:  # C→N vector of each methylammonium (its C is the nearest C)
        d = slab.get_distances(n, cs, mic=True, vector=True)
        vectors.append(-d[np.argmin(np.linalg.norm(d, axis=1))])
    vectors = np.array(vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.48, atol=0.05)
    assert abs(vectors[:, 2].sum()) < 1e-6
    # both faces: four MA each, their in-plane C→N vectors cancel within each face
    layers_found = find_layers(slab)
    for face in (layers_found[0], layers_found[-1]):
        in_face = [k for k, n in enumerate(ns) if n in set(face.tolist())]
        assert len(in_face) == 4
        np.testing.assert_allclose(vectors[in_face].sum(axis=0), 0, atol=1e-6)
    # point-charge dipole about the slab centre (Pb2+, I-, MA+ on N): zero along z
    q, z = _formal_charges(slab), slab.positions[:, 2]
    assert abs(q.sum()) < 1e-9
    assert abs(float(q @ (z - z.mean()))) < 1e-6


def test_mixed_halide_ax_slab():
    slab = build_slab("CsPbI3", termination="AX", br_fraction=0.5, seed=3)
    counts = Counter(slab.get_chemical_symbols())
    assert counts["Br"] == 8 and counts["Br"] + counts["I"] == 16  # half of 4 + 8 + 4 X sites
    assert surface_kind(slab) == "AX"
    top, bottom = termination(slab)
    assert top.startswith("Cs") and bottom.startswith("Cs")
    assert abs(_formal_charges(slab).sum()) < 1e-9


# ------------------------------------------------------------------------------------- A-site exchange
@pytest.mark.parametrize(("material", "ligand"), [("CsPbI3", "AnHI"), ("MAPbI3", "MAI"), ("CsPbI3", "OAmI")])
def test_a_site_exchange_is_neutral_and_balanced(material, ligand):
    slab = build_slab(material, termination="AX")
    configs = place_ligand(slab, ligand, n_configs=2, mode="exchange")
    assert len(configs) == 2
    entry = resolve_ligand(ligand)
    lig = ligand_conformers(entry, n_conformers=1)[0]
    byproduct = exchange_byproduct(entry, slab)
    by_atoms = ligand_conformers(byproduct, n_conformers=1)[0]
    # CsPbI3 loses Cs+ to CsI; MAPbI3 loses CH3NH3+ to MAI
    assert Counter(by_atoms.get_chemical_symbols()) == (
        Counter({"Cs": 1, "I": 1}) if material == "CsPbI3" else Counter({"C": 1, "N": 1, "H": 6, "I": 1})
    )
    assert byproduct.charge == 0
    for c in configs:
        # ligand + slab -> complex + byproduct, atom by atom
        left = Counter(lig.get_chemical_symbols()) + Counter(slab.get_chemical_symbols())
        right = Counter(c.get_chemical_symbols()) + Counter(by_atoms.get_chemical_symbols())
        assert left == right
        # the cell stays neutral: slab minus one A+ plus one R-NH3+
        assert abs(_formal_charges(c).sum()) < 1e-9
        assert c.info["mode"] == "exchange" and c.info["exchange_site"] == "A"
        assert c.info["byproduct_smiles"] == byproduct.smiles
        # the ammonium N sits on the vacated A site, the rest of the cation points out of the surface
        n = c.info["anchor"]
        assert c[n].symbol == "N" and c.get_tags()[n] == 1
        np.testing.assert_allclose(c.positions[n], json.loads(c.info["exchanged_position"]), atol=1e-3)
        heavy = [i for i in np.where(c.get_tags() == 1)[0] if c[i].symbol != "H" and i != n]
        assert (c.positions[heavy, 2] > c.positions[n, 2]).all()
        assert termination(c)[0] == "?"  # one A cation short: not a CsI / MAI layer any more
        assert surface_kind(c) == "AX"


def test_neutral_or_anion_ligands_refused_on_ax():
    slab = build_slab("CsPbI3", termination="AX")
    with pytest.raises(LigbindError, match="not PbI2-terminated: its top layer is CsI"):
        place_ligand(slab, "methylamine")
    with pytest.raises(LigbindError, match="no single ammonium cation"):
        place_ligand(slab, "OA", mode="exchange")
    with pytest.raises(LigbindError, match="bare cation"):
        place_ligand(slab, "OAm+", mode="exchange")
    with pytest.raises(LigbindError, match="needs MA on the A site, but CsPbI3 has Cs"):
        build_slab("CsPbI3", termination="MAI")
    with pytest.raises(LigbindError, match="unknown termination 'Cs2I'"):
        build_slab("CsPbI3", termination="Cs2I")


# ------------------------------------------------------------------------------- real CHGNet exchange Eb
def _single_point(atoms, protocol) -> float:
    atoms = atoms.copy()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


@pytest.mark.slow
def test_exchange_eb_is_the_hand_assembled_reaction(tmp_path):
    slab = build_slab("CsPbI3", termination="AX")
    store = ResultStore(tmp_path / "t.db")
    out = bind(slab, "MAI", "ml-screen", mode="exchange", n_configs=1, overrides=FAST, store=store,
               workdir=tmp_path)  # fmt: skip
    assert out.termination == "CsI" and out.mode == "exchange"
    assert out.eb is not None, out.flags
    protocol = load_protocol("ml-screen", FAST)
    rows = {
        "complex": store.get(out.best_key()),
        "slab": store.get(out.slab_key),
        "ligand": store.get(out.ligand_key),
        "byproduct": store.get(out.byproduct_key),
    }
    atoms = {k: r.toatoms() for k, r in rows.items()}
    # balanced: MAI + Cs8Pb4I16 -> Cs7(MA)Pb4I16 + CsI
    assert Counter(atoms["complex"].get_chemical_symbols()) + Counter(
        atoms["byproduct"].get_chemical_symbols()
    ) == Counter(atoms["slab"].get_chemical_symbols()) + Counter(atoms["ligand"].get_chemical_symbols())
    assert atoms["byproduct"].get_chemical_formula() == "CsI"
    # energies recomputed from the stored structures with a fresh calculator (not read back from the store)
    e = {k: _single_point(a, protocol) for k, a in atoms.items()}
    hand = e["complex"] + e["byproduct"] - e["slab"] - e["ligand"]
    assert out.eb == pytest.approx(hand, abs=2e-3)
    assert abs(out.eb) < 3.0


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "slab", "--termination", "MAI", "-o", "s.extxyz"], "needs MA on the A site"),
        (["build", "slab", "--termination", "Cs2I", "-o", "s.extxyz"], "unknown termination 'Cs2I'"),
        (["bind", "--slab", "ax.extxyz", "--ligand", "methylamine"], "its top layer is CsI"),
        (["frenkel", "--slab", "ax.extxyz"], "not PbI2-terminated: its top layer is CsI"),
        (["bind", "--slab", "ax.extxyz", "--ligand", "OA", "--mode", "exchange"], "no single ammonium"),
        (["build", "complex", "--slab", "ax.extxyz", "--ligand", "OAm+", "--mode", "exchange", "-o", "o"],
         "bare cation"),
    ],
)  # fmt: skip
def test_bad_termination_input_exit_2_one_line_nothing_written(tmp_path, run_cli, args, message):
    write_structure(tmp_path / "ax.extxyz", build_slab("CsPbI3", termination="AX"))
    before = set(os.listdir(tmp_path))
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert set(os.listdir(tmp_path)) == before


CAMPAIGN = {
    "name": "ax",
    "protocol": "ml-screen",
    "overrides": FAST,
    "slab": {"termination": "AX"},
    "ligands": ["MAI"],
    "mode": "exchange",
    "configs": 1,
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"material": "CsPbI3", "slab": {"termination": "MAI"}},
            "slab.termination: termination 'MAI' needs MA",
        ),
        ({"slab": {"termination": "PbI3"}}, "unknown termination 'PbI3'"),
        ({"mode": "neutral"}, "its top layer is AX"),
        ({"ligands": ["MAI", "methylamine"]}, "ligands.1"),
        ({"compute": {"frenkel": {"bare": True}}}, "compute.frenkel: needs a PbX2-terminated slab"),
    ],
)
def test_bad_ax_campaign_refused(tmp_path, changes, message):
    path = tmp_path / "ax.yaml"
    path.write_text(yaml.safe_dump({**CAMPAIGN, **changes}))
    with pytest.raises(LigbindError, match=message.replace("(", r"\(")):
        load_campaign(path)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------- FireWorks campaign
@pytest.mark.slow
def test_ax_campaign_through_fireworks_matches_direct_path(tmp_path, monkeypatch):
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    path = tmp_path / "ax.yaml"
    path.write_text(yaml.safe_dump(CAMPAIGN))
    monkeypatch.chdir(tmp_path)
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    assert out["ran"] == 6  # slab, ligand, byproduct, 1 configuration, slab reference, binding
    campaign_results(path)
    table = pd.read_csv(tmp_path / "results" / "ax" / "binding.csv")
    (row,) = table.itertuples()
    assert row.ligand == "MAI" and row.mode == "exchange" and row.termination == "CsI"
    # Eb = E(complex) + E(byproduct) − E(slab) − E(ligand), from the table's own terms
    assert row.eb == pytest.approx(row.e_complex + row.e_byproduct - row.e_slab - row.e_ligand, abs=1e-3)
    direct = bind(build_slab("CsPbI3", termination="AX"), "MAI", "ml-screen", mode="exchange", n_configs=1,
                  overrides=FAST, store=ResultStore(tmp_path / "direct.db"), workdir=tmp_path / "d")  # fmt: skip
    assert row.eb == pytest.approx(direct.eb, abs=1e-4)
