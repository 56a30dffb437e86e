"""Each analysis is defined once: the direct recipes and the campaign steps give the same numbers and rows."""

from __future__ import annotations

import pytest
import yaml

from ligbind.analysis.tables import FRENKEL_COLUMNS, frenkel_table
from ligbind.builders.slab import build_slab
from ligbind.recipes import coadsorb, frenkel
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 150}}


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory):
    import os

    import ligbind.engine.fireworks as engine

    work = tmp_path_factory.mktemp("campaign")
    spec = {
        "name": "paths",
        "protocol": "ml-screen",
        "overrides": FAST,
        "ligands": ["methylamine", "dimethyl-ether"],
        "configs": 1,
        "compute": {
            "binding": True,
            "coadsorption": [["methylamine", "dimethyl-ether"]],
            "frenkel": {"bare": True, "ligands": ["methylamine"], "pairs": 2},
        },
    }
    path = work / "paths.yaml"
    path.write_text(yaml.safe_dump(spec))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        engine.screen(path)
        out = engine.run(path, progress=False, workers=1)
    finally:
        os.chdir(cwd)
    assert out["failed"] == 0 and out["states"] == {"COMPLETED": out["ran"]}
    return ResultStore(work / "runs" / "paths" / "ligbind.db")


@pytest.mark.slow
def test_campaign_coadsorption_and_frenkel_rows(campaign_store):
    (co,) = list(campaign_store.select(kind="coadsorption"))
    assert co.eb_ab < 0
    ft = frenkel_table(campaign_store).set_index("host")
    assert set(ft.index) == {"(bare)", "methylamine"}
    assert 0.05 < ft.loc["(bare)", "ef"] < 5.0 and 0.05 < ft.loc["methylamine", "ef"] < 5.0
    assert ft.loc["methylamine", "ef_bare"] == pytest.approx(ft.loc["(bare)", "ef"])
    # ΔE_F = E_F(ligand@slab) − E_F(bare)
    assert ft.loc["methylamine", "delta_ef"] == pytest.approx(
        ft.loc["methylamine", "ef"] - ft.loc["(bare)", "ef"], abs=1e-9
    )


@pytest.mark.slow
def test_coadsorption_is_the_same_through_both_paths(campaign_store, tmp_path):
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    direct = coadsorb(
        slab,
        "methylamine",
        "dimethyl-ether",
        "ml-screen",
        n_configs=1,
        overrides=FAST,
        store=ResultStore(tmp_path / "d.db"),
        workdir=tmp_path,
    )
    (row,) = list(campaign_store.select(kind="coadsorption"))
    assert row.eb_ab == pytest.approx(direct.eb_ab, abs=1e-6)
    assert row.delta_e_inter == pytest.approx(direct.delta_e_inter, abs=1e-6)
    # ΔE_inter = Eb(A+B) − Eb(A) − Eb(B), with Eb(A), Eb(B) the binding analyses of the same slab
    eb = {r.ligand: r.eb for r in campaign_store.select(kind="binding")}
    assert row.delta_e_inter == pytest.approx(row.eb_ab - eb["methylamine"] - eb["dimethyl-ether"], abs=1e-9)


@pytest.mark.slow
def test_frenkel_rows_have_one_shape_whichever_path_wrote_them(campaign_store, tmp_path):
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    store = ResultStore(tmp_path / "d.db")
    out = frenkel(
        slab,
        "ml-screen",
        ligand="methylamine",
        n_configs=1,
        max_pairs=2,
        overrides=FAST,
        store=store,
        workdir=tmp_path,
    )
    direct, via_campaign = frenkel_table(store), frenkel_table(campaign_store)
    assert list(direct.columns) == list(via_campaign.columns) == FRENKEL_COLUMNS
    assert sorted(direct["host"]) == sorted(via_campaign["host"]) == ["(bare)", "methylamine"]
    stored_keys = {r.key for r in store.select(kind="frenkel")} | {
        r.key for r in campaign_store.select(kind="frenkel")
    }
    assert len(stored_keys) == 2  # the same two rows (same host structures, same keys) from both paths
    d, c = direct.set_index("host"), via_campaign.set_index("host")
    for host in ("(bare)", "methylamine"):
        assert d.loc[host, "ef"] == pytest.approx(c.loc[host, "ef"], abs=1e-6)
    assert out.delta_ef == pytest.approx(c.loc["methylamine", "delta_ef"], abs=1e-6)
