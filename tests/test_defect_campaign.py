"""Vacancy and migration campaigns on the embedded FireWorks store (real CHGNet + D3), their tables, agreement
with the direct path, and campaign bad input."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml

import ligbind.cli as cli
from ligbind.builders.slab import build_slab
from ligbind.recipes.defects import vacancy
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 150}}
SPEC = {
    "name": "defects",
    "protocol": "ml-screen",
    "overrides": FAST,
    "ligands": ["methylamine"],
    "configs": 1,
    "compute": {
        "binding": True,
        "vacancy": {"bare": True, "ligands": ["methylamine"], "sites": 1},
        "migration": {"bare": True, "images": 3},
    },
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    work = tmp_path_factory.mktemp("campaign")
    path = work / "defects.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        engine.screen(path)
        # two workers: the NEB and the vacancy steps run in this process while the workers relax
        out = engine.run(path, progress=False, workers=2)
        tables = {k: (work / v).resolve() for k, v in campaign_results(path).items()}
    finally:
        os.chdir(cwd)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    return work, ResultStore(work / "runs" / "defects" / "ligbind.db"), tables


@pytest.mark.slow
def test_campaign_vacancy_and_migration_rows_and_tables(campaign):
    work, store, tables = campaign
    for name in ("defects_csv", "defects_md", "migration_csv", "migration_md", "migration_png"):
        assert tables[name].is_file(), name
    vac = pd.read_csv(tables["defects_csv"]).set_index("host")
    assert set(vac.index) == {"(bare)", "methylamine"}
    assert 0.3 < vac.loc["(bare)", "e_vac"] < 5.0
    assert vac.loc["methylamine", "delta_e_vac"] == pytest.approx(
        vac.loc["methylamine", "e_vac"] - vac.loc["(bare)", "e_vac"], abs=2e-4
    )
    assert "E(I2)" in vac.loc["(bare)", "reference"]  # the reference is in the table
    assert "½E(X2)" in tables["defects_md"].read_text()
    assert "superposition" not in tables["defects_md"].read_text()  # ML: no basis to superpose
    mig = pd.read_csv(tables["migration_csv"])
    assert list(mig["host"]) == ["(bare)"] and mig.loc[0, "images"] == 3
    assert mig.loc[0, "ea_forward"] > 0 and mig.loc[0, "converged"]
    assert "endpoint-not-minimum" in tables["migration_md"].read_text()  # every flag is explained
    (row,) = list(store.select(kind="barrier"))
    assert mig.loc[0, "lowest_image"] == pytest.approx(
        min(p["e_rel"] for p in row.data["outcome"]["profile"][1:-1]), abs=1e-4
    )  # the csv keeps 4 decimals
    assert row.campaign == "defects"
    # each row tagged by the Firework that wrote it (two workers: the NEB ran here, never in a worker too)
    assert row.get("step") == "migration/bare"
    assert {(r.get("ligand") or "bare", r.get("step")) for r in store.select(kind="vacancy")} == {
        ("bare", "vacancy/bare"),
        ("methylamine", "vacancy/methylamine"),
    }


@pytest.mark.slow
def test_a_campaign_screened_again_keeps_its_barrier_in_the_tables(campaign, tmp_path, monkeypatch):
    """Another setting screened again reruns every analysis; the migration step finds its converged barrier in
    the store (no NEB) and must own its row again: it was left `superseded`, and the migration table without
    it (seen on the mixed-halide DFT campaign after its vacancy sites changed)."""
    import shutil

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    work, _, tables = campaign
    shutil.copytree(work, tmp_path / "again")
    monkeypatch.chdir(tmp_path / "again")
    vacancies = {**SPEC["compute"]["vacancy"], "mu_x": -0.1}  # changes the vacancy analysis only
    path = tmp_path / "again" / "defects.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "compute": {**SPEC["compute"], "vacancy": vacancies}}))
    import ligbind.neb

    def no_band(*args, **kwargs):
        raise AssertionError("the stored barrier was computed again")

    monkeypatch.setattr(ligbind.neb, "run_neb", no_band)
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    store = ResultStore(tmp_path / "again" / "runs" / "defects" / "ligbind.db")
    (row,) = list(store.select(kind="barrier"))
    assert row.get("firework") != "superseded"
    mig, before = (pd.read_csv(t) for t in (campaign_results(path)["migration_csv"], tables["migration_csv"]))
    assert list(mig["host"]) == ["(bare)"] and mig.loc[0, "ea_forward"] == before.loc[0, "ea_forward"]


@pytest.mark.slow
def test_screening_again_repairs_a_barrier_row_an_earlier_ligbind_left_superseded(campaign, monkeypatch):
    """A store where the migration step's row lost its Firework (what the bug above left behind): screening
    again reruns that step, whose row is then back in the tables. (On the module's campaign itself: its
    Fireworks hold their store's absolute path, so a copy would write to the original.)"""
    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    work, store, tables = campaign
    monkeypatch.chdir(work)
    (row,) = list(store.select(kind="barrier"))
    store.update(row.key, firework="superseded")
    path = work / "defects.yaml"
    assert "migration_csv" not in campaign_results(path)  # the table lost it
    assert engine.screen(path)["rerun"] == ["migration/bare"]
    assert engine.run(path, progress=False, workers=1)["failed"] == 0
    assert list(pd.read_csv(campaign_results(path)["migration_csv"])["host"]) == ["(bare)"]
    assert engine.screen(path)["rerun"] == []  # once
    (again,) = list(store.select(kind="barrier"))
    assert again.get("firework") == row.get("firework") and again.ea_forward == row.ea_forward


@pytest.mark.slow
def test_screening_again_refines_a_barrier_stored_before_its_last_round(campaign, monkeypatch):
    """A stored barrier that another refinement round would change (here its profile given an intermediate
    minimum, as the DFT bare band of the mixed-halide campaign was stored before bands were split there):
    screening again reruns its Firework, which takes its stored band up again (no new band) and writes it as
    that band says; once."""
    import ligbind.engine.fireworks as engine
    import ligbind.neb
    from ligbind.analysis.migration import stored_barrier

    work, store, _ = campaign
    monkeypatch.chdir(work)
    (row,) = list(store.select(kind="barrier"))
    outcome = row.data["outcome"]
    dip = [dict(p, e_rel=e) for p, e in zip(outcome["profile"], [0.0, 0.1, 0.02, 0.1, 0.0], strict=True)]
    store.db.update(row.id, data={**row.data, "outcome": {**outcome, "profile": dip, "refinements": 0}})
    assert stored_barrier(store.get(row.key).data["outcome"]).unresolved()
    calls = []
    real = ligbind.neb.run_neb
    monkeypatch.setattr(ligbind.neb, "run_neb", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    out = engine.screen(work / "defects.yaml")
    assert out["refine"] == ["migration/bare"] and out["rerun"] == []
    assert engine.run(work / "defects.yaml", progress=False, workers=1)["failed"] == 0
    assert calls and all(c.resumed_from_step == c.n_steps for c in calls)  # stored bands, handed back
    again = stored_barrier(store.get(row.key).data["outcome"])
    assert not again.unresolved() and again.ea_forward == pytest.approx(outcome["ea_forward"])
    assert engine.screen(work / "defects.yaml")["refine"] == []  # once


@pytest.mark.slow
def test_vacancy_is_the_same_through_both_paths(campaign, tmp_path):
    _, store, _ = campaign
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    direct = vacancy(
        slab, "ml-screen", max_sites=1, overrides=FAST, store=ResultStore(tmp_path / "d.db"), workdir=tmp_path
    )
    rows = {r.get("ligand") or "bare": r for r in store.select(kind="vacancy")}
    assert rows["bare"].e_vac == pytest.approx(direct.bare["e_vac"], abs=1e-6)
    assert rows["bare"].key == direct.bare["key"]  # same host, protocol, Δμ and charge: the same row key


def test_campaign_vacancy_on_spin_paired_dft_is_refused(tmp_path, capsys, monkeypatch):
    """A neutral halide vacancy has an odd electron count: a spin-paired GPAW campaign is refused at once."""
    monkeypatch.chdir(tmp_path)
    spec = {**SPEC, "protocol": "gpaw-quick", "overrides": None}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli.main(["screen", "c.yaml"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "compute.vacancy: the vacancy leaves an odd electron count" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_one_worker_runs_relaxations_before_bands_of_the_same_protocol():
    """On one worker a DFT band (hours) waits for the ready DFT vacancies and Frenkel pairs, so an interrupted run
    has its E_vac and E_F rows first; analyses and the screen protocol still come before any DFT."""
    from ligbind.engine.fireworks import _one_worker_rank

    ready = [
        {"step": "verify-migration", "ligand": None},  # listed first: a tie would keep it first
        {"step": "verify-vacancy", "ligand": None},
        {"step": "migration", "ligand": None},
        {"step": "verify-frenkel", "ligand": None},
        {"step": "vacancy-site", "ligand": None},
        {"step": "binding", "ligand": None},
    ]
    order = [p["step"] for p in sorted(ready, key=lambda p: _one_worker_rank({"ligands": []}, p))]
    assert order == [
        "binding",
        "vacancy-site",
        "migration",
        "verify-vacancy",
        "verify-frenkel",
        "verify-migration",
    ]
