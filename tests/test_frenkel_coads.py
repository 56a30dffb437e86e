"""Frenkel pairs and coadsorption end to end with the ML potential (real CHGNet + D3)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ligbind.builders.slab import build_slab
from ligbind.io import write_structure
from ligbind.store import ResultStore

pytestmark = pytest.mark.slow
FAST = {"relax": {"fmax": 0.1, "steps": 150}}


def test_frenkel_cli_bare_and_with_ligand(tmp_path):
    write_structure(tmp_path / "slab.extxyz", build_slab())
    cmd = [sys.executable, "-m", "ligbind.cli", "frenkel", "--slab", "slab.extxyz", "--ligand", "methylamine",
           "--configs", "1", "--pairs", "2", "--set", json.dumps(FAST), "--json"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # a Frenkel pair costs energy: E_F > 0 on the bare slab and next to the ligand
    assert out["ef_bare"] is not None and 0.05 < out["ef_bare"] < 5.0
    assert len(out["pairs_bare"]) == 2 and len(out["pairs_ligand"]) >= 1
    assert min(p["ef"] for p in out["pairs_bare"] if not p["flags"]) == pytest.approx(out["ef_bare"])
    if out["ef_ligand"] is not None:
        assert out["delta_ef"] == pytest.approx(out["ef_ligand"] - out["ef_bare"])
    rows = list(ResultStore(tmp_path / "ligbind.db").select(kind="frenkel"))
    assert {r.ligand for r in rows} == {"methylamine"}


def test_campaign_coadsorption_and_frenkel_steps(tmp_path, monkeypatch):
    import ligbind.engine.fireworks as engine
    from ligbind.analysis.tables import frenkel_table

    monkeypatch.chdir(tmp_path)
    spec = {
        "name": "coads",
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
    path = tmp_path / "coads.yaml"
    path.write_text(yaml.safe_dump(spec))
    engine.screen(path)
    out = engine.run(path, progress=False)
    assert out["states"] == {"COMPLETED": out["ran"]}
    store = ResultStore(tmp_path / "runs" / "coads" / "ligbind.db")
    (co,) = list(store.select(kind="coadsorption"))
    eb = {r.ligand: r.eb for r in store.select(kind="binding")}
    assert co.eb_ab < 0
    assert co.delta_e_inter == pytest.approx(co.eb_ab - eb["methylamine"] - eb["dimethyl-ether"])
    ft = frenkel_table(store).set_index("ligand")
    assert ft.loc["(bare)", "ef_bare"] > 0
    assert ft.loc["methylamine", "delta_ef"] == pytest.approx(
        ft.loc["methylamine", "ef_ligand"] - ft.loc["(bare)", "ef_bare"]
    )
