"""Bulk cells and (001) slabs: stoichiometry, Pb–I octahedra, layers, termination, vacuum, constraints, dipoles."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase import Atoms
from ase.constraints import FixAtoms
from ase.geometry import find_mic
from ase.neighborlist import neighbor_list

from ligbind.builders.bulk import PHASES, bulk, get_phase
from ligbind.builders.slab import (
    build_slab,
    check_pbi2_terminated,
    find_layers,
    layer_name,
    surface_halides,
    surface_pb,
    termination,
    vacuum_thickness,
)
from ligbind.errors import LigbindError
from ligbind.io import read_structure, write_structure

PHASE_KEYS = list(PHASES)
HALIDES = ("I", "Br")
FORMAL_CHARGE = {"Pb": 2, "Cs": 1, "I": -1, "Br": -1}  # MA+ is handled per cation


def _fixed(atoms: Atoms) -> set[int]:
    fixed: set[int] = set()
    for c in atoms.constraints:
        assert isinstance(c, FixAtoms), f"unexpected constraint {c}"
        fixed |= {int(i) for i in c.get_indices()}
    return fixed


def _pb_halide_neighbours(atoms: Atoms, cutoff: float = 3.5) -> dict[int, np.ndarray]:
    """Pb index → distances to its halide neighbours within ``cutoff`` (periodic images included)."""
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    sym = np.array(atoms.get_chemical_symbols())
    return {int(p): d[(i == p) & np.isin(sym[j], HALIDES)] for p in np.where(sym == "Pb")[0]}


def _methylammoniums(atoms: Atoms) -> list[tuple[int, int]]:
    """(C, N) index pairs of the MA cations: each N with its nearest C (minimum image)."""
    sym = np.array(atoms.get_chemical_symbols())
    cs, ns = np.where(sym == "C")[0], np.where(sym == "N")[0]
    pairs = []
    for n in ns:
        d = atoms.get_distances(n, cs, mic=True)
        pairs.append((int(cs[np.argmin(d)]), int(n)))
    assert len({c for c, _ in pairs}) == len(cs) == len(ns), "C and N do not pair up into MA cations"
    return pairs


def _cn_vector(atoms: Atoms, c: int, n: int) -> np.ndarray:
    return find_mic(atoms.positions[n] - atoms.positions[c], atoms.cell, atoms.pbc)[0]


# ----------------------------------------------------------------------------------------------- bulk
@pytest.mark.parametrize("key", PHASE_KEYS, ids=["-".join(k) for k in PHASE_KEYS])
def test_bulk_stoichiometry_and_lattice(key):
    material, phase = key
    atoms = bulk(material, phase)
    ph = PHASES[key]
    counts = Counter(atoms.get_chemical_symbols())
    n_pb = counts["Pb"]
    assert n_pb >= 1
    assert counts["I"] == 3 * n_pb
    if material == "CsPbI3":
        assert counts["Cs"] == n_pb
        assert set(counts) == {"Cs", "Pb", "I"}
    else:  # one CH3NH3+ (CH6N) per Pb
        assert (counts["C"], counts["H"], counts["N"]) == (n_pb, 6 * n_pb, n_pb)
        assert set(counts) == {"C", "H", "N", "Pb", "I"}
    # formula units per crystallographic cell: Pm-3m 1, P4/mbm 2, I4/mcm 4
    assert n_pb == {221: 1, 127: 2, 140: 4}[ph.spacegroup]
    # the cell is the cited experimental one
    np.testing.assert_allclose(atoms.cell.cellpar(), [ph.a, ph.a, ph.c, 90, 90, 90], atol=1e-8)
    assert atoms.info["material"] == material and atoms.info["phase"] == phase
    assert atoms.info["reference"] == ph.reference and ph.reference


def test_cited_lattice_parameters():
    """The values in bulk.PHASES are the published experimental ones."""
    assert (PHASES[("CsPbI3", "cubic")].a, PHASES[("CsPbI3", "cubic")].c) == (6.2894, 6.2894)
    assert (PHASES[("CsPbI3", "tetragonal")].a, PHASES[("CsPbI3", "tetragonal")].c) == (8.8226, 6.3047)
    assert (PHASES[("MAPbI3", "tetragonal")].a, PHASES[("MAPbI3", "tetragonal")].c) == (8.855, 12.659)
    assert [PHASES[k].spacegroup for k in PHASE_KEYS] == [221, 127, 140]
    assert get_phase("CsPbI3").phase == "tetragonal"  # tilted phase is the default


@pytest.mark.parametrize("key", PHASE_KEYS, ids=["-".join(k) for k in PHASE_KEYS])
def test_bulk_corner_sharing_octahedra(key):
    atoms = bulk(*key)
    for pb, d in _pb_halide_neighbours(atoms).items():
        assert len(d) == 6, f"Pb{pb} has {len(d)} iodide neighbours"
        assert np.all((d > 3.0) & (d < 3.3)), f"Pb{pb}–I distances {d}"
    # every iodide bridges exactly two Pb (corner sharing); Pb–I–Pb is straight only in the cubic phase
    i, j, D = neighbor_list("ijD", atoms, 3.5)
    sym = np.array(atoms.get_chemical_symbols())
    angles = []
    for x in np.where(sym == "I")[0]:
        v = D[(i == x) & (sym[j] == "Pb")]
        assert len(v) == 2
        cos = np.dot(v[0], v[1]) / np.linalg.norm(v[0]) / np.linalg.norm(v[1])
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    if PHASES[key].tilted:
        assert 155 < min(angles) < 170, "tilted phase without octahedral tilt"
    else:
        np.testing.assert_allclose(angles, 180, atol=1e-6)
    # nothing else closer than 3 Å to a Pb
    near = neighbor_list("ij", atoms, 3.0)
    assert not any(sym[a] == "Pb" for a in near[0])


def test_mapbi3_bulk_has_no_net_dipole():
    atoms = bulk("MAPbI3", "tetragonal")
    pairs = _methylammoniums(atoms)
    assert len(pairs) == 4
    vecs = np.array([_cn_vector(atoms, c, n) for c, n in pairs])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.48, atol=0.05)  # C–N bond
    np.testing.assert_allclose(vecs.sum(axis=0), 0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ slab
def _expected_layers(layers: int, a_layer: str) -> list[str]:
    """Names bottom → top: PbI2 on top, alternating with the AI layer."""
    return [("PbI2" if (layers - 1 - k) % 2 == 0 else a_layer) for k in range(layers)]


def _layer_counts(material: str, name: str) -> Counter:
    """Atoms of one 2×2 layer."""
    if name == "PbI2":
        return Counter({"Pb": 4, "I": 8})
    if material == "CsPbI3":
        return Counter({"Cs": 4, "I": 4})
    return Counter({"C": 4, "N": 4, "H": 24, "I": 4})


SLAB_CASES = [(m, p, n) for (m, p) in PHASE_KEYS for n in (3, 4, 5)]


@pytest.mark.parametrize("material,phase,layers", SLAB_CASES, ids=[f"{m}-{p}-{n}" for m, p, n in SLAB_CASES])
def test_slab_layers_stoichiometry_and_metadata(material, phase, layers):
    vacuum, fix = 12.5, 2
    slab = build_slab(material, phase, "2x2", layers=layers, vacuum=vacuum, fix_layers=fix)
    a_layer = "CsI" if material == "CsPbI3" else "MAI"
    found = find_layers(slab)
    assert len(found) == layers
    names = [layer_name(slab, idx) for idx in found]
    assert names == _expected_layers(layers, a_layer)
    for idx, name in zip(found, names, strict=True):
        assert Counter(slab[idx].get_chemical_symbols()) == _layer_counts(material, name)
    # every atom in exactly one layer
    assert sorted(np.concatenate(found).tolist()) == list(range(len(slab)))

    # overall formula and charge neutrality in formal oxidation states (Cs+/MA+, Pb2+, I-)
    n_pbi2 = names.count("PbI2")
    n_ai = layers - n_pbi2
    counts = Counter(slab.get_chemical_symbols())
    assert counts["Pb"] == 4 * n_pbi2 and counts["I"] == 8 * n_pbi2 + 4 * n_ai
    n_a = counts["Cs"] if material == "CsPbI3" else counts["N"]
    assert n_a == 4 * n_ai
    assert n_a + 2 * counts["Pb"] - counts["I"] == 0

    top, bottom = termination(slab)
    assert top == "PbI2"
    assert bottom == ("PbI2" if layers % 2 else a_layer)
    assert [x.tolist() for x in check_pbi2_terminated(slab)] == [x.tolist() for x in found]  # the layers

    # vacuum and cell
    assert abs(vacuum_thickness(slab) - vacuum) < 1e-6
    z = slab.positions[:, 2]
    assert abs(slab.cell[2, 2] - (z.max() - z.min() + vacuum)) < 1e-6
    a_pc = PHASES[(material, phase)].a / (np.sqrt(2) if PHASES[(material, phase)].tilted else 1)
    np.testing.assert_allclose(slab.cell.lengths()[:2], 2 * a_pc, atol=1e-6)
    assert slab.pbc.all()

    # bottom `fix` layers fixed, nothing else
    assert _fixed(slab) == {int(i) for idx in found[:fix] for i in idx}

    # surface Pb are undercoordinated (5 iodides), interior Pb complete octahedra (6), all Pb–I 3.0–3.3 Å
    neigh = _pb_halide_neighbours(slab)
    for k, idx in enumerate(found):
        for pb in (i for i in idx if slab[i].symbol == "Pb"):
            surface = k == layers - 1 or k == 0
            assert len(neigh[pb]) == (5 if surface else 6), f"Pb{pb} in layer {k}"
            assert np.all((neigh[pb] > 3.0) & (neigh[pb] < 3.3))
    assert len(surface_pb(slab)) == 4 and len(surface_halides(slab)) == 8

    info = slab.info
    assert info["material"] == material and info["phase"] == phase
    assert info["size"] == "2x2" and info["layers"] == layers and info["fixed_layers"] == fix
    assert info["termination"] == f"{top}/{bottom}"
    assert info["symmetric"] == (layers % 2 == 1)
    assert abs(info["vacuum"] - vacuum) < 1e-6


def test_published_formulas_2x2_three_layers():
    assert build_slab("CsPbI3", "cubic", "2x2", 3).get_chemical_formula("metal") == "Cs4Pb8I20"
    assert build_slab("CsPbI3", "tetragonal", "2x2", 3).get_chemical_formula("metal") == "Cs4Pb8I20"
    ma = build_slab("MAPbI3", "tetragonal", "2x2", 3)
    assert Counter(ma.get_chemical_symbols()) == Counter({"Pb": 8, "I": 20, "C": 4, "N": 4, "H": 24})


@pytest.mark.parametrize("fix", [0, 1, 2])
def test_fixed_layers(fix):
    slab = build_slab("CsPbI3", "cubic", "2x2", layers=3, fix_layers=fix)
    layers = find_layers(slab)
    assert _fixed(slab) == {int(i) for idx in layers[:fix] for i in idx}
    assert slab.info["fixed_layers"] == fix


@pytest.mark.parametrize("layers", [3, 4, 5])
def test_mapbi3_slab_has_no_net_dipole(layers):
    slab = build_slab("MAPbI3", "tetragonal", "2x2", layers=layers)
    pairs = _methylammoniums(slab)
    assert len(pairs) == 4 * (layers // 2)
    vecs = np.array([_cn_vector(slab, c, n) for c, n in pairs])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.48, atol=0.05)
    # the C→N axes give no dipole along z, and none in-plane within each MAI layer
    assert abs(vecs[:, 2].sum()) < 1e-3
    found = find_layers(slab)
    ma_layers = [[k for k, (c, _) in enumerate(pairs) if c in set(idx.tolist())] for idx in found]
    ma_layers = [ks for ks in ma_layers if ks]
    assert [len(ks) for ks in ma_layers] == [4] * (layers // 2)  # four MA in each MAI layer, all found
    for in_layer in ma_layers:
        np.testing.assert_allclose(vecs[in_layer].sum(axis=0), 0, atol=1e-3)
    # MA cations sit on the A-site planes, so both faces see the same arrangement
    if layers % 2:
        _assert_mirror_symmetric_in_z(slab)


def _assert_mirror_symmetric_in_z(slab: Atoms) -> None:
    """Heavy-atom z coordinates (per element) are symmetric about the slab centre, and so is the formal
    point-charge distribution: no net dipole along z."""
    sym = np.array(slab.get_chemical_symbols())
    z = slab.positions[:, 2]
    heavy = sym != "H"
    centre = (z[heavy].max() + z[heavy].min()) / 2
    for el in set(sym[heavy]):
        zs = np.sort(z[sym == el] - centre)
        np.testing.assert_allclose(zs, -zs[::-1], atol=1e-6, err_msg=f"{el} not mirror symmetric")
    q = np.array([FORMAL_CHARGE.get(s, 0) for s in sym], dtype=float)
    q[sym == "N"] = 1.0  # MA+ carried by its N
    assert abs(q.sum()) < 1e-9
    assert abs(float(q @ (z - centre))) < 1e-6


@pytest.mark.parametrize("key", PHASE_KEYS, ids=["-".join(k) for k in PHASE_KEYS])
def test_odd_layer_slabs_are_symmetric(key):
    _assert_mirror_symmetric_in_z(build_slab(*key, "2x2", layers=5))


@pytest.mark.parametrize("key", PHASE_KEYS, ids=["-".join(k) for k in PHASE_KEYS])
def test_every_layer_is_formally_neutral(key):
    """(001) APbX3 layers (A+X-, Pb2+ 2X-) carry no formal charge (Tasker type I): even the asymmetric
    4-layer slab has no macroscopic dipole from the stacking, only the small one of its two faces."""
    slab = build_slab(*key, "2x2", layers=4)
    assert slab.info["symmetric"] is False
    sym = np.array(slab.get_chemical_symbols())
    q = np.array([FORMAL_CHARGE.get(s, 0) for s in sym], dtype=float)
    q[sym == "N"] = 1.0
    for idx in find_layers(slab):
        assert abs(q[idx].sum()) < 1e-9


# --------------------------------------------------------------------------------------------- Br alloy
def test_br_substitution_is_seeded():
    a = build_slab("CsPbI3", "tetragonal", "2x2", 3, br_fraction=0.25, seed=1)
    b = build_slab("CsPbI3", "tetragonal", "2x2", 3, br_fraction=0.25, seed=1)
    c = build_slab("CsPbI3", "tetragonal", "2x2", 3, br_fraction=0.25, seed=2)
    pure = build_slab("CsPbI3", "tetragonal", "2x2", 3)
    n_x = 20
    counts = Counter(a.get_chemical_symbols())
    assert counts["Br"] == round(0.25 * n_x) == 5
    assert counts["Br"] + counts["I"] == n_x
    assert a.info["n_br"] == 5 and a.info["br_seed"] == 1
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.get_chemical_symbols() != c.get_chemical_symbols()
    assert Counter(c.get_chemical_symbols())["Br"] == 5
    # only X sites change: same positions, Br only where I was
    np.testing.assert_array_equal(a.positions, pure.positions)
    for s_pure, s_alloy in zip(pure.get_chemical_symbols(), a.get_chemical_symbols(), strict=True):
        assert s_pure == s_alloy or (s_pure, s_alloy) == ("I", "Br")
    # the top layer is named after its halides: mixed I/Br is PbX2
    top = {a[int(i)].symbol for i in find_layers(pure)[-1]} - {"Pb"}
    assert termination(a)[0] == ("PbI2" if top == {"I"} else "PbBr2" if top == {"Br"} else "PbX2")


def test_full_br_substitution_gives_cspbbr3_layers():
    slab = build_slab("CsPbI3", "cubic", "2x2", 3, br_fraction=1.0)
    assert "I" not in slab.get_chemical_symbols()
    assert [layer_name(slab, idx) for idx in find_layers(slab)] == ["PbBr2", "CsBr", "PbBr2"]


# ------------------------------------------------------------------------------------------- round trips
def test_extxyz_round_trip_keeps_constraints_and_info(in_tmp):
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=4, fix_layers=2, br_fraction=0.25, seed=1)
    path = write_structure(in_tmp / "slab.extxyz", slab)
    back = read_structure(path)
    assert back.get_chemical_symbols() == slab.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, slab.positions, atol=1e-6)
    np.testing.assert_allclose(back.cell.array, slab.cell.array, atol=1e-6)
    assert _fixed(back) == _fixed(slab) and len(_fixed(back)) > 0
    for key, value in slab.info.items():
        assert back.info[key] == value, key
    assert termination(back) == termination(slab) == ("PbX2", "CsX")
    assert not list(in_tmp.glob(".*partial"))


def test_poscar_round_trip_keeps_termination(in_tmp):
    slab = build_slab("MAPbI3", "tetragonal", "2x2", layers=4, fix_layers=2)
    path = write_structure(in_tmp / "POSCAR", slab)
    back = read_structure(path)
    assert back.info.get("termination") is None  # POSCAR carries no metadata: all from the geometry
    assert termination(back) == ("PbI2", "MAI")
    assert [len(x) for x in find_layers(back)] == [len(x) for x in find_layers(slab)]
    assert _fixed(back) == _fixed(slab)
    assert Counter(back.get_chemical_symbols()) == Counter(slab.get_chemical_symbols())
    assert abs(vacuum_thickness(back) - 12.0) < 1e-5


def test_slab_without_its_top_layer_is_rejected():
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=3)
    del slab[find_layers(slab)[-1].tolist()]
    assert termination(slab)[0] == "CsI"
    with pytest.raises(LigbindError, match="not PbI2-terminated: its top layer is CsI"):
        check_pbi2_terminated(slab)


def test_layers_found_through_the_periodic_boundary():
    """A slab shifted so that it straddles the cell boundary along z has the same layers."""
    slab = build_slab("CsPbI3", "cubic", "2x2", layers=5)
    shifted = slab.copy()
    shifted.positions[:, 2] += slab.cell[2, 2] - 4.0
    shifted.wrap()
    assert [len(x) for x in find_layers(shifted)] == [len(x) for x in find_layers(slab)]
    assert termination(shifted) == ("PbI2", "PbI2")


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"material": "CsPbBr9"}, "unknown material 'CsPbBr9'"),
        ({"material": "MAPbI3", "phase": "cubic"}, "unknown phase 'cubic' for MAPbI3"),
        ({"layers": 0}, "bad number of layers 0"),
        ({"vacuum": -1.0}, "bad vacuum"),
        ({"vacuum": 2.0}, "bad vacuum 2.0 Å: must exceed"),
        ({"layers": 3, "fix_layers": 3}, "bad --fix-layers 3"),
        ({"fix_layers": -1}, "bad --fix-layers -1"),
        ({"size": "3x3"}, "in-plane size must be even"),
        ({"size": "2by2"}, "bad slab size '2by2'"),
        ({"br_fraction": 1.5}, "bad Br fraction"),
    ],
)
def test_build_slab_rejects_bad_input(kwargs, match):
    with pytest.raises(LigbindError, match=match):
        build_slab(**kwargs)
