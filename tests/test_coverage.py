"""Coverage (n copies of a ligand on one slab), surface treatments (monolayer, MAI layer) and E_F on them.

Geometry is checked against hand-derivable facts of the 2×2 tetragonal CsPbI3 surface (four surface Pb on a
square of side a/√2 = 6.238 Å, a = 8.8226 Å); energies against reactions assembled here from the stored
structures, re-evaluated with a fresh CHGNet calculator (not from the energies the code stored).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from ase.geometry import get_distances

from ligbind.analysis.coverage import coverage_anomalies
from ligbind.builders.bulk import get_phase
from ligbind.builders.coverage import (
    copy_indices,
    layer_frenkel_pairs,
    mai_layer,
    place_coverage,
    spread_site_sets,
)
from ligbind.builders.placement import BOND_LENGTH, MIN_DISTANCE, MIN_DISTANCE_H
from ligbind.builders.slab import build_slab, find_layers, layer_name, surface_pb
from ligbind.calculators import make_calculator
from ligbind.io import write_structure
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 150}}
A_TET = get_phase("CsPbI3", "tetragonal").a  # 8.8226 Å: the diagonal of the 2×2 pseudo-cubic Pb square


# ------------------------------------------------------------------------------------------------ sites
def test_two_copies_go_on_the_maximally_distant_pair(slab_2x2):
    pbs = surface_pb(slab_2x2)
    assert len(pbs) == 4
    sets = spread_site_sets(slab_2x2, 2)
    chosen = sets[0]["pb"]
    # every pair of surface Pb under the minimum-image convention (ASE), computed here
    pairs = {
        (a, b): float(
            get_distances(slab_2x2.positions[a], slab_2x2.positions[b], slab_2x2.cell, True)[1][0, 0]
        )
        for a, b in itertools.combinations(sorted(int(p) for p in pbs), 2)
    }
    assert pairs[tuple(chosen)] == pytest.approx(max(pairs.values()), abs=1e-6)
    # the farthest pair on a 2×2 square lattice is the diagonal: a_pc·√2 = a(tetragonal) = 8.8226 Å
    assert pairs[tuple(chosen)] == pytest.approx(A_TET, abs=1e-3)
    # the two diagonals are images of each other under the slab's symmetry: one distinct set
    assert len(sets) == 1
    # three sites on four corners of a square always include an edge: smallest distance a/√2
    assert spread_site_sets(slab_2x2, 3)[0]["min_distance"] == pytest.approx(A_TET / np.sqrt(2), abs=1e-3)
    assert spread_site_sets(slab_2x2, "monolayer")[0]["pb"] == tuple(sorted(int(p) for p in pbs))


def test_spread_sets_on_4x4_keep_copies_apart():
    slab = build_slab("CsPbI3", "tetragonal", "4x4", layers=3)
    sets = spread_site_sets(slab, 2)
    # on a 4×4 periodic square lattice of side d the farthest point from a site is the cell's centre,
    # 2d along both axes: 2√2·d = 2·a(tetragonal)
    assert sets[0]["min_distance"] == pytest.approx(2 * A_TET, abs=1e-3)
    # four sites spread on a 4×4 lattice form the 2d-spaced sub-lattice: smallest distance 2d = √2·a
    assert spread_site_sets(slab, 4)[0]["min_distance"] == pytest.approx(np.sqrt(2) * A_TET, abs=1e-3)


# ------------------------------------------------------------------------------------------- placement
def _check_no_clash(atoms):
    """No two copies, and no copy and its own periodic image, closer than the placement's hard limits."""
    copies = copy_indices(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    for (ta, ia), (tb, ib) in itertools.combinations(copies.items(), 2):
        _, d = get_distances(atoms.positions[ia], atoms.positions[ib], atoms.cell, True)
        h = (symbols[ia][:, None] == "H") | (symbols[ib][None, :] == "H")
        assert (d[h] >= MIN_DISTANCE_H).all() and (d[~h] >= MIN_DISTANCE).all(), (ta, tb, d.min())
    cell = atoms.cell.array
    for tag, idx in copies.items():
        for i, j in itertools.product((-1, 0, 1), repeat=2):
            if i == j == 0:
                continue
            shifted = atoms.positions[idx] + i * cell[0] + j * cell[1]
            d = np.linalg.norm(atoms.positions[idx][:, None] - shifted[None], axis=2)
            assert d.min() >= MIN_DISTANCE_H, (tag, i, j, d.min())


@pytest.mark.parametrize("ligand", ["methylamine", "dimethyl-ether"])
def test_monolayer_copies_sit_on_their_own_pb_without_clashes(slab_2x2, ligand):
    atoms = place_coverage(slab_2x2, ligand, "monolayer", seed=3)
    pbs = sorted(int(p) for p in surface_pb(slab_2x2))
    assert atoms.info["n"] == 4 and sorted(copy_indices(atoms)) == [1, 2, 3, 4]
    assert len(atoms) == len(slab_2x2) + 4 * (7 if ligand == "methylamine" else 9)  # CH3NH2, (CH3)2O
    sites = json.loads(atoms.info["anchor_sites"])
    assert sorted(s["pb"] for s in sites) == pbs  # one copy per surface Pb
    for s in sites:  # each anchor at its Pb–anchor bond length, measured here (minimum image)
        d = atoms.get_distance(s["anchor"], s["pb"], mic=True)
        assert abs(d - BOND_LENGTH[s["element"]]) < 0.35
        assert atoms.get_tags()[s["anchor"]] == s["copy"]
    _check_no_clash(atoms)
    # the slab part is untouched
    assert np.allclose(atoms.positions[: len(slab_2x2)], slab_2x2.positions)


def test_coverage_is_deterministic_for_a_seed(slab_2x2):
    a = place_coverage(slab_2x2, "dimethyl-ether", 2, seed=5)
    b = place_coverage(slab_2x2, "dimethyl-ether", 2, seed=5)
    assert np.array_equal(a.positions, b.positions) and a.info == b.info


def test_per_copy_desorption_and_rearrangement_are_flagged(slab_2x2):
    placed = place_coverage(slab_2x2, "methylamine", 2)
    assert coverage_anomalies(placed, placed.copy()) == []
    lifted = placed.copy()
    lifted.positions[copy_indices(lifted)[2]] += [0, 0, 2.0]  # copy 2 leaves the surface (clear of the image)
    assert coverage_anomalies(placed, lifted) == ["desorbed-copy-2"]
    hopped = placed.copy()  # copy 1 slides onto a neighbouring Pb (one pseudo-cubic step)
    hopped.positions[copy_indices(hopped)[1]] += slab_2x2.cell.array[0] / 2
    assert "rearranged" in coverage_anomalies(placed, hopped)


def test_coverage_that_does_not_fit_is_refused_one_line_nothing_written(tmp_path, run_cli):
    write_structure(tmp_path / "slab.extxyz", build_slab())
    before = sorted(p.name for p in tmp_path.iterdir())
    # oleylammonium iodide: two copies fit on the 2×2 surface, a third finds no clash-free place
    proc = run_cli("coverage", "--slab", "slab.extxyz", "--ligand", "OAmI", "--n", "1..3", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "ligbind: error: coverage 3 of 'OAmI' does not fit: only 2 of 3 copies could be placed without "
        "clashes (use a smaller n or a larger slab)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------------------------------------- MAI layer
def test_mai_layer_continues_the_bulk_ax_layer(slab_2x2):
    atoms = mai_layer(slab_2x2)
    layer = np.where(atoms.get_tags() > 0)[0]
    symbols = np.array(atoms.get_chemical_symbols())
    # 2×2 AX layer: four A sites and four X; A = CH3NH3+ (one tag per ion: 4 MA + 4 I)
    assert sorted(symbols[layer].tolist()).count("I") == 4 and (symbols[layer] == "N").sum() == 4
    assert len(set(atoms.get_tags()[layer])) == 8
    assert atoms.get_chemical_formula() == "C4H24Cs4I24N4Pb8"
    # each layer iodide sits atop a surface Pb at the apical Pb–I distance c/2 = 3.152 Å (the bulk's)
    c = get_phase("CsPbI3", "tetragonal").c
    for i in layer[symbols[layer] == "I"]:
        d = atoms.get_distances(i, surface_pb(slab_2x2), mic=True)
        assert d.min() == pytest.approx(c / 2, abs=0.02)
    # the slab with its layer is the next layer of the bulk: layers found from the geometry, top one MAI
    whole = atoms.copy()
    whole.set_tags(0)
    assert layer_name(whole, find_layers(whole)[-1]) == "MAI"
    pairs = layer_frenkel_pairs(atoms, max_pairs=2)
    for defect in pairs:  # the moved iodide is a layer iodide, put well above the layer
        v = defect.info["vacancy_atom"]
        assert v in layer and symbols[v] == "I"
        assert defect.positions[v, 2] > atoms.positions[layer, 2].max()


# ---------------------------------------------------------------------------------- energies (CHGNet)
def _single_point(row, protocol) -> float:
    """Energy of a stored structure from a fresh calculator of the protocol (not the stored energy)."""
    atoms = row.toatoms()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


@pytest.mark.slow
def test_eb_per_ligand_and_differential_eb_are_the_reactions_of_stored_terms(slab_2x2, tmp_path):
    from ligbind.recipes.coverage import coverage

    store = ResultStore(tmp_path / "c.db")
    out = coverage(
        slab_2x2, "methylamine", "ml-screen", ns=[1, 2], store=store, workdir=tmp_path, overrides=FAST
    )
    protocol = load_protocol("ml-screen", FAST)
    e_slab = _single_point(store.get(out.slab_key), protocol)
    e_lig = _single_point(store.get(out.ligand_key), protocol)
    e = {}
    for level in out.levels:
        assert not level["flags"], level
        row = store.get(next(s["key"] for s in level["sets"] if s["site_set"] == level["site_set"]))
        assert row.natoms == 32 + 7 * level["n"]  # Cs4Pb8I20 + n CH3NH2
        e[level["n"]] = _single_point(row, protocol)
    one, two = out.level(1), out.level(2)
    assert one["eb_per_ligand"] == pytest.approx(e[1] - e_lig - e_slab, abs=2e-3)
    assert two["eb_per_ligand"] == pytest.approx((e[2] - 2 * e_lig - e_slab) / 2, abs=2e-3)
    assert two["eb_differential"] == pytest.approx(e[2] - e[1] - e_lig, abs=2e-3)
    assert one["eb_differential"] == pytest.approx(one["eb_per_ligand"], abs=1e-9)  # E(0 L@slab) = E(slab)
    # the average of the differentials is the energy per ligand (telescoping sum)
    assert two["eb_per_ligand"] == pytest.approx(
        (one["eb_differential"] + two["eb_differential"]) / 2, abs=1e-9
    )
    assert -2.0 < two["eb_per_ligand"] < -0.2  # an amine on Pb binds, by less than a covalent bond
    rows = {r.n_ligands: r for r in store.select(kind="coverage")}
    assert set(rows) == {1, 2} and rows[2].eb_differential == pytest.approx(two["eb_differential"])


@pytest.fixture(scope="module")
def treatment_store(tmp_path_factory):
    """One store for the treatments, so that the bare slab and its Frenkel pair are relaxed once."""
    d = tmp_path_factory.mktemp("treat")
    return ResultStore(d / "t.db"), d


@pytest.mark.slow
@pytest.mark.parametrize("treatment", ["dimethyl-ether", "MAI-layer"])
def test_frenkel_energy_on_a_treated_surface(slab_2x2, treatment_store, treatment):
    from ligbind.builders.defects import MIN_LIGAND_DISTANCE, interstitial_sites
    from ligbind.recipes.coverage import treatment_frenkel

    store, workdir = treatment_store
    out = treatment_frenkel(
        slab_2x2, treatment, "ml-screen", max_pairs=1, store=store, workdir=workdir, overrides=FAST
    )
    protocol = load_protocol("ml-screen", FAST)
    host_row = store.get(out.frenkel_treated["host_key"])
    # the treated surface is the host: 4 dimethyl ethers (C2H6O) or 4 MAI (CH6NI) on Cs4Pb8I20
    assert host_row.natoms == 32 + 4 * 9
    assert out.coverage["levels"][0]["n"] == 4
    hosts = [out.frenkel_bare]
    if out.frenkel_treated["pairs"]:
        hosts.append(out.frenkel_treated)
    else:  # allowed only when the monolayer really leaves no interstitial site free (checked here)
        assert treatment == "dimethyl-ether" and out.note and out.ef_treated is None
        host = host_row.toatoms()
        ligand = np.where(host.get_tags() > 0)[0]
        for _, site in interstitial_sites(host):
            _, d = get_distances(host.positions[ligand], site, host.cell, True)
            assert d.min() < MIN_LIGAND_DISTANCE
    for host in hosts:  # E_F = E(pair) − E(its own pristine host), re-evaluated here
        e_host = _single_point(store.get(host["host_key"]), protocol)
        (pair,) = host["pairs"]
        assert pair["ef"] == pytest.approx(_single_point(store.get(pair["key"]), protocol) - e_host, abs=2e-3)
    if out.ef_treated is not None and out.ef_bare is not None:
        assert out.delta_ef == pytest.approx(out.ef_treated - out.ef_bare, abs=1e-9)
    if treatment == "MAI-layer":  # the pair moved an iodide of the layer (the treated surface's own)
        pair = store.get(out.frenkel_treated["pairs"][0]["key"]).toatoms()
        assert pair.get_chemical_formula() == host_row.toatoms().get_chemical_formula()


# ------------------------------------------------------------------------------------ campaign (FireWorks)
@pytest.mark.slow
def test_coverage_campaign_through_fireworks_agrees_with_the_direct_path(tmp_path, monkeypatch):
    import yaml

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results
    from ligbind.recipes.coverage import coverage

    spec = {
        "name": "cov-mini",
        "protocol": "ml-screen",
        "overrides": FAST,
        "ligands": ["methylamine"],
        "configs": 1,
        "compute": {
            "coverage": {"ligands": ["methylamine"], "n": "1..2"},
            "treatments": ["MAI-layer"],
            "frenkel": {"pairs": 1},
        },
    }
    path = tmp_path / "cov-mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    engine.screen(path)
    # two workers: the parallel path hands each worker only (step, ligand, config)
    out = engine.run(path, progress=False, workers=2)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    store = ResultStore(tmp_path / "runs" / "cov-mini" / "ligbind.db")
    rows = {(r.ligand, r.n_ligands): r for r in store.select(kind="coverage")}
    assert set(rows) == {("methylamine", 1), ("methylamine", 2), ("MAI", 4)}
    paths = campaign_results(path, outdir=tmp_path / "results")
    table = (tmp_path / "results" / "coverage.csv").read_text().splitlines()
    assert len(table) == 1 + 3 and paths["coverage_png"].stat().st_size > 0
    # the direct path on the campaign's store finds every term already computed (same structures, same keys)
    direct = coverage(build_slab(), "methylamine", "ml-screen", ns=[1, 2], store=store, overrides=FAST)
    for level in direct.levels:
        assert level["force_calls"] == 0
        row = rows[("methylamine", level["n"])]
        assert row.eb_per_ligand == pytest.approx(level["eb_per_ligand"], abs=1e-9)
        assert row.eb_differential == pytest.approx(level["eb_differential"], abs=1e-9)
    # Eb per ligand of n = 2 is the mean of the two differentials (the telescoping sum of the reactions)
    assert rows[("methylamine", 2)].eb_per_ligand == pytest.approx(
        (rows[("methylamine", 1)].eb_differential + rows[("methylamine", 2)].eb_differential) / 2, abs=1e-9
    )
    # coverage and binding share the campaign's slab reference; a lower one moves Eb per ligand by ΔE_ref / n
    (binding,) = store.select(kind="binding", ligand="methylamine")
    assert all(
        r.e_slab == pytest.approx(binding.e_slab, abs=1e-9) for r in rows.values() if r.ligand != "MAI"
    )
    _coverage_follows_a_lower_reference(path, store, rows)
    fr = {r.get("ligand") or "bare": r for r in store.select(kind="frenkel")}
    assert set(fr) == {"bare", "MAI-layer"}
    if fr["MAI-layer"].get("ef") is not None and fr["bare"].get("ef") is not None:
        assert fr["MAI-layer"].delta_ef == pytest.approx(fr["MAI-layer"].ef - fr["bare"].ef, abs=1e-9)


def _coverage_follows_a_lower_reference(path, store: ResultStore, rows: dict) -> None:
    """The coverage and treatment steps with their Fireworks' keys, but a reference 0.1 eV below the one they
    got (a stand-in for a lower framework found by a complex that changed basin): e_slab and Eb follow it."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ligbind.engine.campaign import resolve_campaign_ref
    from ligbind.engine.coverage_steps import step_coverage, step_treatment_frenkel
    from ligbind.engine.fireworks import passed_keys, read_launchpad

    c = resolve_campaign_ref(path)
    lpad = read_launchpad(c)
    (doc,) = lpad.fireworks.find({"name": f"{c['name']}:coverage/methylamine"}, {"spec": 1})
    keys = passed_keys(doc["spec"])
    assert "reference" in keys  # the coverage analysis waits for the reference, as binding does
    row = store.get(keys["reference"])
    lower = row.toatoms()
    lower.positions[0, 2] += 1e-4  # another structure, another key
    lower.calc = SinglePointCalculator(lower, energy=row.energy - 0.1, forces=np.zeros((len(lower), 3)))
    store.put(lower, "relax-lower-reference", data=row.data, kind="relax", status="converged", label="slab")
    out = step_coverage(c, {**keys, "reference": "relax-lower-reference"}, "methylamine")
    assert out.e_slab == pytest.approx(row.energy - 0.1, abs=1e-9)
    for level in out.levels:
        before = rows[("methylamine", level["n"])].eb_per_ligand
        assert level["eb_per_ligand"] == pytest.approx(before + 0.1 / level["n"], abs=1e-6)
    # the treatment layer's Eb per unit likewise
    (doc,) = lpad.fireworks.find({"name": f"{c['name']}:treatment-frenkel/MAI-layer"}, {"spec": 1})
    keys = passed_keys(doc["spec"])
    step_treatment_frenkel(c, {**keys, "reference": "relax-lower-reference"}, "MAI-layer")
    (layer,) = [r for r in store.select(kind="coverage", ligand="MAI") if r.e_slab != rows[("MAI", 4)].e_slab]
    assert layer.e_slab == pytest.approx(row.energy - 0.1, abs=1e-9)
    assert layer.eb_per_ligand == pytest.approx(rows[("MAI", 4)].eb_per_ligand + 0.1 / 4, abs=1e-6)
