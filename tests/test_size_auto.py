"""``slab: {size: auto}``: the smallest cell every campaign ligand fits, shared by all; PP1 vs PP2 cooperativity."""

from __future__ import annotations

import time

import pytest

from ligbind.builders.slab import build_slab
from ligbind.errors import LigbindError

pytestmark = pytest.mark.slow

CAMPAIGN = """
name: pp-auto
protocol: ml-screen
overrides: {relax: {fmax: 10.0, steps: 2}}
slab: {size: auto, vacuum: 20.0}  # standing PP1/PP2 leave < 5 Å to the slab image on 12 Å
ligands: [PP1, PP2]
configs: 1
"""


def _tetragonal(n: int):
    return build_slab("CsPbI3", size=(n, n), layers=3, vacuum=12.0)


def test_campaign_size_auto_and_cooperativity(tmp_path, monkeypatch):
    """PP2 needs a bigger cell than PP1; both go on one 4x4 slab; polymers.csv gives Eb(n=2) − 2·Eb(n=1).

    PP2 touches its periodic image on 2x2 (the placement refuses it there) and 3x3 cannot carry the tilts of
    tetragonal CsPbI3, so the smallest common cell is 4x4 (one placement search per size; no calculation).
    """
    import pandas as pd

    from ligbind.engine.campaign import campaign_results, campaign_slab, load_campaign
    from ligbind.engine.fireworks import run, screen
    from ligbind.store import ResultStore

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pp.yaml").write_text(CAMPAIGN)
    c = load_campaign("pp.yaml")
    assert c["slab"]["size"] == "4x4" and c["slab"]["size_auto"] == {"PP1": 2, "PP2": 4}
    assert len(campaign_slab(c)) == 128  # Cs16 Pb32 I80: 4x4, three layers
    with pytest.raises(LigbindError, match="must be even"):
        _tetragonal(3)
    start = time.perf_counter()
    assert load_campaign("pp.yaml")["slab"]["size"] == "4x4"  # remembered: no placement again
    assert time.perf_counter() - start < 5

    screen("pp.yaml")
    out = run("pp.yaml", progress=False, workers=1)
    assert out["failed"] == 0, out
    paths = campaign_results("pp.yaml")
    store = ResultStore(tmp_path / "runs" / "pp-auto" / "ligbind.db")
    rows = {r.ligand: r for r in store.select(kind="binding")}
    assert set(rows) == {"PP1", "PP2"}
    slab_keys = {r.data["outcome"]["slab_key"] for r in rows.values()}
    assert len(slab_keys) == 1  # one relaxed slab for both
    assert store.get(slab_keys.pop()).natoms == 128
    eb = {}
    for name, r in rows.items():  # Eb = E(complex) − E(ligand) − E(slab) from the stored terms
        o = r.data["outcome"]
        e_cx = store.get(next(x["key"] for x in o["configs"] if x["config"] == o["best_config"])).energy
        eb[name] = e_cx - store.get(o["ligand_key"]).energy - store.get(o["slab_key"]).energy
    df = pd.read_csv(paths["polymers_csv"])
    assert list(df["family"]) == ["PP"] and df["flags"][0] == "none" and df["cell"][0] == "4x4"
    assert df["eb_n1"][0] == pytest.approx(eb["PP1"], abs=1e-3)
    assert df["delta_e_coop"][0] == pytest.approx(eb["PP2"] - 2 * eb["PP1"], abs=1e-3)


def test_build_slab_size_auto_cli(tmp_path, run_cli):
    """``build slab --size auto --fit L``: a small ligand fits the 2x2 slab, the smallest the phase builds."""
    import json

    proc = run_cli(
        "build", "slab", "--size", "auto", "--fit", "methylamine", "-o", "s.extxyz", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["natoms"] == 32  # Cs4 Pb8 I20: 2x2, three layers
