"""K–Br passivation: builder (determinism, symmetry-distinct arrangements, stoichiometry), E_pass against bulk
references with the real ML potential (CHGNet + D3), E_F with and without it, and the campaign path."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.geometry import find_mic
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.io.ase import AseAtomsAdaptor

import ligbind.builders.passivation as pv
from ligbind.analysis.passivation import passivation_flags
from ligbind.builders.defects import MIN_LIGAND_DISTANCE, frenkel_pairs
from ligbind.builders.slab import build_slab, check_pbi2_terminated
from ligbind.calculators import make_calculator
from ligbind.errors import LigbindError
from ligbind.io import write_structure
from ligbind.jobs import Result
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.15, "steps": 120}}
FORMAL_CHARGE = {"Cs": 1, "K": 1, "Pb": 2, "I": -1, "Br": -1}


@pytest.fixture(scope="module")
def cubic():
    """2x2, 3-layer cubic CsPbI3 slab: Pb square lattice with 4mm symmetry at every hollow and Cs column."""
    return build_slab("CsPbI3", "cubic", "2x2", layers=3)


@pytest.fixture(scope="module")
def mixed():
    return build_slab("CsPbI3", "tetragonal", "2x2", layers=3, br_fraction=0.17, seed=7)


def _matcher() -> StructureMatcher:
    return StructureMatcher(
        ltol=0.05, stol=0.05, angle_tol=1, primitive_cell=False, scale=False, attempt_supercell=False
    )


def _structure(atoms):
    atoms = atoms.copy()
    atoms.set_constraint()
    atoms.info = {}
    return AseAtomsAdaptor.get_structure(atoms)


# ------------------------------------------------------------------------------------------------ builder
def test_same_seed_same_structures_and_metadata(mixed):
    a = pv.passivate(mixed, "hollow", seed=3, max_arrangements=3)
    b = pv.passivate(mixed.copy(), "hollow", seed=3, max_arrangements=3)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert x.get_chemical_symbols() == y.get_chemical_symbols()
        assert np.array_equal(x.positions, y.positions)
        assert x.info == y.info
    info = a[0].info
    assert info["treatment"] == "KBr-hollow" and info["seed"] == 3 and info["n_k"] == 1 and info["n_br"] == 1
    assert info["br_seed"] == 7  # the mixed-halide slab's own record is kept
    # the random Br distribution leaves the hollow/atop pairs without symmetry: 4 hollows x 4 Pb around each
    assert info["n_distinct"] == 16
    # another seed chooses another subset of the same distinct arrangements
    others = {x.info["arrangement"] for x in pv.passivate(mixed, "hollow", seed=4, max_arrangements=3)}
    assert others != {x.info["arrangement"] for x in a}


@pytest.mark.parametrize(
    ("mode", "exchange", "expected"),
    [
        # the 4 hollows are related by the 2x2 translations, the 4 Pb around one hollow by its 4-fold axis
        ("hollow", 0, 1),
        # with the K–Br unit fixed, the 4 I around the K: the mirror through K and the Br-capped Pb pairs the two
        # I next to that Pb and the two away from it -> 2
        ("hollow", 1, 2),
        # K for any of the 4 surface Cs (translations), Br for any of the 4 I above it (4-fold axis) -> 1
        ("substitute", 1, 1),
        # two of those 4 I: cis (4 pairs, 4.4 Å apart) or trans (2 pairs, 6.3 Å apart) -> 2
        ("substitute", 2, 2),
    ],
)
def test_distinct_arrangement_counts_by_symmetry(cubic, mode, exchange, expected):
    out = pv.passivate(cubic, mode, 1, exchange)
    assert len(out) == expected
    assert all(a.info["n_distinct"] == expected for a in out)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "exchange"), [("hollow", 1), ("substitute", 1), ("substitute", 2)])
def test_arrangements_really_distinct_and_duplicates_really_equivalent(mode, exchange, monkeypatch):
    """Independently of ligbind's orbit reduction: pymatgen's StructureMatcher groups *every* arrangement."""
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=3)
    distinct = pv.passivate(slab, mode, 1, exchange)
    with monkeypatch.context() as m:  # no symmetry operation but the identity: every arrangement
        m.setattr(pv, "surface_symmetry", lambda atoms: [(np.eye(3, dtype=int), np.zeros(3))])
        everything = pv.passivate(slab, mode, 1, exchange)
    assert len(everything) > len(distinct)
    matcher = _matcher()
    groups = matcher.group_structures([_structure(a) for a in everything])
    assert len(groups) == len(distinct)
    reps = [_structure(a) for a in distinct]
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            assert not matcher.fit(reps[i], reps[j])


@pytest.mark.parametrize(
    ("mode", "n", "exchange"), [("hollow", 1, 0), ("hollow", 2, 1), ("substitute", 2, 2)]
)
def test_stoichiometry_and_charge_balance(mixed, mode, n, exchange):
    host = Counter(mixed.get_chemical_symbols())
    for atoms in pv.passivate(mixed, mode, n, exchange, max_arrangements=4):
        got = Counter(atoms.get_chemical_symbols())
        if mode == "hollow":  # n KBr units added, exchange I became Br
            expected = host + Counter({"K": n, "Br": n + exchange})
            expected["I"] -= exchange
            assert (atoms.get_tags() == 1).sum() == 2 * n  # the adsorbed units are adsorbates
        else:  # n Cs became K, exchange I became Br
            expected = host + Counter({"K": n, "Br": exchange})
            expected["Cs"] -= n
            expected["I"] -= exchange
            assert (atoms.get_tags() == 0).all()
        assert +got == +expected
        assert sum(FORMAL_CHARGE[s] * c for s, c in got.items()) == 0
        assert atoms.info["n_k"] == n and atoms.info["n_br"] == (
            n + exchange if mode == "hollow" else exchange
        )
        assert [atoms[i].symbol for i in atoms.info["k_indices"]] == ["K"] * n
        assert all(atoms[i].symbol == "Br" for i in atoms.info["br_indices"])


def test_substitute_replaces_the_cs_under_the_top_layer_and_i_next_to_it(cubic):
    (atoms,) = pv.passivate(cubic, "substitute", 1, 1)
    layers = check_pbi2_terminated(atoms)
    (k,) = atoms.info["k_indices"]
    (br,) = atoms.info["br_indices"]
    assert k in layers[-2] and br in layers[-1]  # K in the AX layer just below the top PbX2 layer; Br on top
    d = np.linalg.norm(find_mic(atoms.positions[br] - atoms.positions[k], atoms.cell, atoms.pbc)[0])
    a = (
        cubic.cell[0, 0] / 2
    )  # pseudo-cubic lattice constant: the Cs sits a/2 below and a/2 beside each such I
    assert d == pytest.approx(a / np.sqrt(2), abs=0.05)


def test_passivated_slab_is_a_host_for_defects(mixed):
    for mode in ("hollow", "substitute"):
        host = pv.passivate(mixed, mode, max_arrangements=1)[0]
        check_pbi2_terminated(host)
        pairs = frenkel_pairs(host, max_pairs=3)
        assert pairs
        adsorbate = np.where(host.get_tags() > 0)[0]
        for pair in pairs:
            moved = pair.positions[pair.info["vacancy_atom"]]
            if len(adsorbate):
                d = find_mic(pair.positions[adsorbate] - moved, pair.cell, pair.pbc)[1]
                assert d.min() >= MIN_LIGAND_DISTANCE


def test_bad_builder_input(cubic):
    mapi = build_slab("MAPbI3", "tetragonal", "2x2", layers=3)
    for call, fragment in [
        (lambda: pv.passivate(cubic, "bridge"), "unknown passivation mode 'bridge'"),
        (lambda: pv.passivate(mapi, "substitute"), "needs a surface Cs"),
        (lambda: pv.passivate(cubic, "hollow", n=5), "too many"),
        (lambda: pv.passivate(cubic, "hollow", n=0), "at least 1"),
        (lambda: pv.passivate(cubic, "substitute", exchange=-1), "0 or more"),
        (lambda: pv.passivate(cubic, "hollow", max_arrangements=0), "at least 1"),
    ]:
        with pytest.raises(LigbindError, match=fragment):
            call()
    assert pv.passivate(mapi, "hollow", max_arrangements=1)  # MAPbI3 has the A-type hollows


def test_flags_swap_and_k_leaving(cubic):
    (initial,) = pv.passivate(cubic, "substitute", 1, 1)
    (br,) = initial.info["br_indices"]
    (k,) = initial.info["k_indices"]
    iodide = next(
        i
        for i in check_pbi2_terminated(initial)[-1]
        if initial[i].symbol == "I"
        and np.linalg.norm(
            find_mic(initial.positions[i] - initial.positions[br], initial.cell, initial.pbc)[0]
        )
        < 5
    )
    final = initial.copy()
    final.positions[[br, iodide]] = initial.positions[[iodide, br]]  # Br and a neighbouring I swapped places
    final.positions[k, 2] += 3.0  # K left its site upwards

    def result(atoms):
        return Result("k", "relax", atoms, 0.0, 0.0, True, 1, 1, {})

    assert passivation_flags(initial, result(initial)) == []
    flags = passivation_flags(initial, result(final))
    assert {"br-i-swapped", "k-left-site", "k-left-surface"} <= set(flags)


# ------------------------------------------------------------------------------- energies with CHGNet + D3
def _energy(atoms, protocol) -> float:
    """Energy of a structure from a fresh calculator of the protocol (not an energy the code stored)."""
    atoms = atoms.copy()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


@pytest.mark.slow
def test_cli_substitute_e_pass_is_the_hand_assembled_reaction_and_delta_ef(tmp_path, run_cli):
    write_structure(tmp_path / "slab.extxyz", build_slab())
    args = ["passivate", "--slab", "slab.extxyz", "--mode", "substitute", "--arrangements", "1", "--frenkel",
            "--pairs", "1", "--protocol", "ml-screen", "--set", json.dumps(FAST), "--json"]  # fmt: skip
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reaction"] == "slab + KBr → slab[KBr-substitute] + CsI"
    (arr,) = out["arrangements"]
    assert arr["status"] == "converged" and arr["flags"] == []

    # slab + KBr(rock salt, a = 6.60 Å) → slab(Cs→K, I→Br) + CsI(CsCl type, a = 4.567 Å): every term evaluated
    # here with a fresh calculator from the stored relaxed structures and bulk cells built here
    protocol = load_protocol("ml-screen", FAST)
    store = ResultStore(tmp_path / "ligbind.db")
    e_slab = _energy(store.get(out["slab_key"]).toatoms(), protocol)
    e_treated = _energy(store.get(arr["key"]).toatoms(), protocol)
    e_kbr = _energy(bulk("KBr", "rocksalt", a=6.60), protocol)
    e_csi = _energy(bulk("CsI", "cesiumchloride", a=4.567), protocol)
    assert out["e_pass"] == pytest.approx(e_treated + e_csi - e_slab - e_kbr, abs=2e-3)
    assert -3.0 < out["e_pass"] < 3.0  # an exchange of ions between salts, not bond breaking

    # ΔE_F = E_F(passivated) − E_F(bare), each from its own stored Frenkel row
    rows = {r.get("ligand") or "bare": r for r in store.select(kind="frenkel")}
    assert set(rows) == {"bare", "KBr-substitute"}
    assert out["ef_bare"] == pytest.approx(rows["bare"].ef) and out["ef_passivated"] == pytest.approx(
        rows["KBr-substitute"].ef
    )
    assert out["delta_ef"] == pytest.approx(out["ef_passivated"] - out["ef_bare"], abs=1e-9)
    host = store.get(rows["KBr-substitute"].data["outcome"]["host_key"])
    assert host.key == arr["key"]  # E_F was computed on the passivated slab itself
    # E_pass against the lowest hosts the Frenkel analyses found: each host's drop is its row's host_drop
    drops = {k: r.data["outcome"]["host_drop"] for k, r in rows.items()}
    lowest = [out["slab_drop"] or 0.0, out["treated_drop"] or 0.0]
    assert lowest == [d if d > 0.02 else 0.0 for d in (drops["bare"], drops["KBr-substitute"])]
    assert out["e_pass_lowest_hosts"] == pytest.approx(out["e_pass"] + lowest[0] - lowest[1], abs=1e-9)


@pytest.mark.slow
def test_campaign_passivation_on_the_embedded_store(tmp_path, monkeypatch):
    import ligbind.engine.fireworks as engine
    from ligbind.analysis.passivation import passivation_table
    from ligbind.engine.campaign import campaign_results

    spec = {
        "name": "pv",
        "protocol": "ml-screen",
        "overrides": FAST,
        "slab": {"br_fraction": 0.17, "seed": 7},
        "ligands": ["methylamine"],
        "configs": 1,
        "compute": {
            "binding": True,
            "frenkel": {"pairs": 1},
            "passivation": {"mode": "hollow", "arrangements": 2, "frenkel": True},
            "vacancy": {"bare": True, "passivated": True},
        },
    }
    (tmp_path / "pv.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    engine.screen("pv.yaml")
    out = engine.run("pv.yaml", progress=False, workers=1)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    store = ResultStore(tmp_path / "runs" / "pv" / "ligbind.db")
    (row,) = list(store.select(kind="passivation"))
    outcome = row.data["outcome"]
    # E_pass = E(slab·KBr) − E(slab) − E(KBr), assembled here from the stored terms
    e_slab = store.get(outcome["slab_key"]).energy
    e_kbr = store.get(outcome["references"]["KBr"]["key"]).energy
    usable = [a for a in outcome["arrangements"] if a["status"] == "converged" and not a["flags"]]
    assert len(outcome["arrangements"]) == 2 and usable
    by_hand = min(store.get(a["key"]).energy - e_slab - e_kbr for a in usable)
    assert row.e_pass == pytest.approx(by_hand, abs=1e-6)
    assert row.delta_ef == pytest.approx(row.ef_passivated - row.ef_bare, abs=1e-9)
    (bare,) = [r for r in store.select(kind="frenkel") if not r.get("ligand")]
    assert row.ef_bare == pytest.approx(bare.ef)
    # E_vac on the passivated slab: its host is the best arrangement, ΔE_vac against the bare slab's row
    vac = {r.ligand: r for r in store.select(kind="vacancy")}
    assert set(vac) == {"", "KBr-passivated"}
    treated = vac["KBr-passivated"]
    assert treated.data["outcome"]["host_key"] == outcome["best_key"]
    assert treated.e_vac_bare == pytest.approx(vac[""].e_vac, abs=1e-9)
    assert treated.delta_e_vac == pytest.approx(treated.e_vac - vac[""].e_vac, abs=1e-9)
    paths = campaign_results("pv.yaml")
    assert paths["passivation_csv"].exists()
    table = passivation_table(store)
    assert (
        table.loc[0, "treatment"] == "KBr-hollow"
        and "KBr (rocksalt, a=6.600 Å)" in table.loc[0, "references"]
    )


@pytest.mark.slow
def test_gpaw_e_pass_on_a_tiny_slab_against_periodic_bulk_kbr(tmp_path):
    """Real GPAW (LCAO sz, h 0.35) on a one-layer Pb4I8 slab, each structure at its built geometry (fmax 10 eV/Å:
    single points), bulk KBr periodic on the protocol's bulk k-points. E_pass is assembled here from GPAW's own
    log energies plus D3 computed separately, not from the energies ligbind stored."""
    from gpaw_checks import log_energy_plus_d3

    from ligbind.recipes.passivation import passivation

    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=1, vacuum=9.0, fix_layers=0)
    over = {
        "gpaw": {"basis": "sz(dzp)", "h": 0.35, "bulk_kpt_density": 2.0},
        "prerelax": None,
        "run": {"cores": 1},
        "relax": {"fmax": 10.0, "steps": 1},
    }
    protocol = load_protocol("gpaw-quick", over)
    store = ResultStore(tmp_path / "g.db")
    out = passivation(
        slab, protocol, mode="hollow", max_arrangements=1, store=store, workdir=tmp_path / "runs"
    )
    assert out.reaction == "slab + KBr → slab[KBr-hollow]" and out.best_key is not None

    def energy(key: str) -> float:
        return log_energy_plus_d3(tmp_path / "runs", store, key, protocol)

    kbr = out.references["KBr"]["key"]
    assert "Number of BZ points: 64" in (tmp_path / "runs" / f"{kbr}.txt").read_text()  # 4x4x4, periodic
    assert out.e_pass == pytest.approx(energy(out.best_key) - energy(out.slab_key) - energy(kbr), abs=2e-3)
    assert -5.0 < out.e_pass < 1.0


def test_an_arrangement_the_protocol_cannot_compute_is_refused_before_any_work(tmp_path):
    """The K–Br on a slab with too little vacuum for GPAW's box: refused before the slab is relaxed (it used to be
    found after the slab and the bulk salt had been computed)."""
    from ligbind.recipes.passivation import passivation

    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=1, vacuum=6.0, fix_layers=0)
    protocol = load_protocol("gpaw-quick", {"prerelax": None, "run": {"cores": 1}})
    store = ResultStore(tmp_path / "g.db")
    with pytest.raises(
        LigbindError, match=r"passivation:KBr-hollow.*only 3\.\d Å of vacuum.*raise slab\.vacuum"
    ):
        passivation(slab, protocol, mode="hollow", max_arrangements=1, store=store, workdir=tmp_path / "runs")
    assert not list(store.select()) and not (tmp_path / "runs").exists()
