"""End to end with the real ml-screen protocol (CHGNet + D3): methylamine on a 2x2 three-layer CsPbI3 slab.

One binding calculation (slab, ligand, two configurations; ~100 force calls) is shared by the module.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import ligbind.calculators
import ligbind.jobs
from ligbind.analysis.anomalies import BASIN_RMSD, framework_rmsd, pb_x_bonds
from ligbind.analysis.tables import binding_table, write_tables
from ligbind.builders.slab import build_slab
from ligbind.jobs import result_from_row
from ligbind.protocols import load_protocol
from ligbind.recipes import bind
from ligbind.store import ResultStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slab():
    return build_slab()  # CsPbI3 tetragonal, 2x2, 3 layers, 12 Å vacuum, bottom layer fixed


@pytest.fixture(scope="module")
def run(slab, tmp_path_factory):
    """bind() once, counting the calculators it builds and their evaluations."""
    work = tmp_path_factory.mktemp("bind")
    store = ResultStore(work / "ligbind.db")
    counts = {"made": 0, "calls": 0}

    def counting(*args, **kwargs):
        counts["made"] += 1
        return ligbind.calculators.counted(ligbind.calculators.make_calculator(*args, **kwargs), counts)

    steps = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ligbind.jobs, "make_calculator", counting)
        outcome = bind(
            slab,
            "methylamine",
            "ml-screen",
            n_configs=2,
            store=store,
            workdir=work / "runs",
            progress=steps.append,
        )
    return {"outcome": outcome, "store": store, "work": work, "counts": counts, "steps": steps}


def test_binding_energy_is_in_the_chemisorption_range(run):
    out = run["outcome"]
    assert out.ligand == "methylamine" and out.mode == "neutral" and out.protocol == "ml-screen"
    assert out.eb is not None and -2.0 < out.eb < -0.2  # amine N lone pair on surface Pb: bound, not covalent
    assert out.is_dft is False and out.backend == "chgnet"
    assert out.converged and out.configs_tried == 2
    assert all(c["status"] == "converged" for c in out.configs)
    assert out.best_config in (0, 1)
    assert out.eb == min(c["eb"] for c in out.configs if not c["flags"])
    assert out.flags == []


def test_terms_add_up(run):
    out = run["outcome"]
    assert out.eb == pytest.approx(out.e_complex - out.e_ligand - out.e_slab, abs=1e-8)
    for c in out.configs:
        assert c["eb"] == pytest.approx(c["energy"] - out.e_ligand - out.e_slab, abs=1e-8)
    store = run["store"]
    row = store.get(out.key)
    assert row.kind == "binding" and row.status == "ok"
    assert (row.eb, row.e_complex, row.e_ligand, row.e_slab) == (
        out.eb,
        out.e_complex,
        out.e_ligand,
        out.e_slab,
    )
    assert row.is_dft is False or row.is_dft == 0
    # the terms are the stored relaxations
    slab_rows = [r for r in store.select(kind="relax") if r.get("label") == "slab"]
    lig_rows = [r for r in store.select(kind="relax") if str(r.get("label", "")).startswith("ligand:")]
    assert len(slab_rows) == 1 and len(lig_rows) == 1
    assert slab_rows[0].energy == out.e_slab and lig_rows[0].energy == out.e_ligand
    assert slab_rows[0].status == lig_rows[0].status == "converged"


def test_force_calls_are_counted_and_every_step_is_stored(run):
    out, counts, store = run["outcome"], run["counts"], run["store"]
    relax_rows = list(store.select(kind="relax"))
    starts = [r for r in relax_rows if r.get("label") == "slab" or r.get("label").startswith("slab-start:")]
    terms = [r for r in relax_rows if r not in starts]
    assert len(starts) == load_protocol("ml-screen")["slab"]["starts"]  # the slab's rattled starts, then
    assert len(terms) == 3  # ligand, two configurations; the lowest start is the slab
    assert counts["made"] == len(relax_rows)
    slab = [r for r in relax_rows if r.get("label") == "slab"]
    assert len(slab) == 1 and slab[0].energy == min(r.energy for r in starts) == out.e_slab
    assert out.force_calls == sum(r.force_calls for r in terms) + slab[0].force_calls
    assert sum(r.force_calls for r in relax_rows) == counts["calls"]
    assert 20 < out.force_calls < 400
    assert run["steps"] == ["slab", "ligand", "config 0", "config 1", "slab reference"]


def test_complex_geometry_is_chemically_sensible(run, slab):
    out, store = run["outcome"], run["store"]
    best = result_from_row(
        store.get(next(c["key"] for c in out.configs if c["config"] == out.best_config)), {}
    )
    sites = json.loads(best.atoms.info["anchor_sites"])
    assert [s["element"] for s in sites] == ["N"]
    n, pb = sites[0]["anchor"], sites[0]["pb"]
    d_pb_n = best.atoms.get_distance(n, pb, mic=True)
    assert 2.4 < d_pb_n < 3.0  # Pb–N dative bond (≈ 2.6 Å)
    slab_relaxed = result_from_row(
        next(r for r in store.select(kind="relax") if r.get("label") == "slab"), {}
    )
    assert framework_rmsd(best.atoms, slab_relaxed.atoms) < BASIN_RMSD  # same basin as the bare slab
    assert pb_x_bonds(best.atoms) == pb_x_bonds(slab_relaxed.atoms)  # Pb–I network intact
    fixed = best.atoms.constraints[0].index
    assert np.allclose(best.atoms.positions[fixed], slab.positions[fixed])  # bottom layer held


def test_second_identical_bind_makes_zero_force_calls(run, slab, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a calculator was built for a calculation already in the store")

    monkeypatch.setattr(ligbind.jobs, "make_calculator", refuse)
    again = bind(
        slab,
        "methylamine",
        load_protocol("ml-screen"),
        n_configs=2,
        store=run["store"],
        workdir=run["work"] / "runs",
    )
    out = run["outcome"]
    assert again.force_calls == 0
    assert again.eb == out.eb and again.e_complex == out.e_complex and again.best_config == out.best_config
    n_starts = load_protocol("ml-screen")["slab"]["starts"]
    assert run["store"].count(kind="relax") == n_starts + 3 and run["store"].count(kind="binding") == 1


def test_results_table_labels_the_ml_potential(run, tmp_path):
    out = run["outcome"]
    paths = write_tables(run["store"], tmp_path / "results")
    df = pd.read_csv(paths["csv"])
    assert len(df) == 1
    row = df.iloc[0]
    assert row["ligand"] == "methylamine" and row["protocol"] == "ml-screen" and row["backend"] == "chgnet"
    assert row["eb"] == pytest.approx(out.eb, abs=1e-4)  # CSV written with 4 decimals
    assert row["method"] == "ML potential (not DFT)"
    assert bool(row["converged"]) is True
    md = paths["md"].read_text()
    assert "negative = binding" in md
    line = next(x for x in md.splitlines() if "methylamine" in x)
    assert "ML potential (not DFT)" in line and f"{out.eb:.3f}" in line
    assert "machine-learned potential, not DFT" in md
    assert "| DFT " not in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the same from the DataFrame API
    table = binding_table(run["store"])
    assert list(table["method"]) == ["ML potential (not DFT)"]


def test_ml_calculator_skips_stress_but_matches_stock_chgnet(slab):
    """The ML calculator computes only energy and forces for relaxations: same numbers as stock CHGNet."""
    from chgnet.model.dynamics import CHGNetCalculator

    from ligbind.calculators.chgnet import _chgnet_model

    ours = ligbind.calculators.make_calculator(
        load_protocol("ml-screen", {"dispersion": {"method": "none"}}), atoms=slab
    )
    stock = CHGNetCalculator(model=_chgnet_model(), use_device="cpu")
    a, b = slab.copy(), slab.copy()
    a.rattle(0.05, seed=3)
    b.positions = a.positions
    a.calc, b.calc = ours, stock
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-6)
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
    assert "stress" not in ours.results  # not computed for a relaxation step
    np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-6)  # but there when asked
