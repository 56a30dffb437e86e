"""Frenkel pairs and coadsorption end to end with the ML potential (real CHGNet + D3)."""

from __future__ import annotations

import json

import pytest

from ligbind.builders.slab import build_slab
from ligbind.calculators import make_calculator
from ligbind.io import write_structure
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

pytestmark = pytest.mark.slow
FAST = {"relax": {"fmax": 0.1, "steps": 150}}


def _single_point(row, protocol) -> float:
    """Energy of a stored structure from a fresh calculator of the protocol (not the stored energy)."""
    atoms = row.toatoms()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


def test_frenkel_cli_bare_and_with_ligand(tmp_path, run_cli):
    write_structure(tmp_path / "slab.extxyz", build_slab())
    args = ["frenkel", "--slab", "slab.extxyz", "--ligand", "methylamine", "--configs", "1", "--pairs", "2",
            "--protocol", "ml-screen",
            "--set", json.dumps(FAST), "--json"]  # fmt: skip
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["pairs_bare"]) == 2 and len(out["pairs_ligand"]) == 2
    # E_F is the lowest E_F of the converged pairs without flags (module docstring of analysis/frenkel.py)
    for host in ("bare", "ligand"):
        usable = [p["ef"] for p in out[f"pairs_{host}"] if p["status"] == "converged" and not p["flags"]]
        assert usable, f"no usable Frenkel pair on the {host} host: {out[f'pairs_{host}']}"
        assert out[f"ef_{host}"] == pytest.approx(min(usable), abs=1e-9)
        # a Frenkel pair costs energy, and less than breaking the surface apart
        assert 0.05 < out[f"ef_{host}"] < 5.0
    # ΔE_F = E_F(ligand@slab) − E_F(bare): required, the command was asked for it
    assert out["delta_ef"] == pytest.approx(out["ef_ligand"] - out["ef_bare"], abs=1e-9)

    # each E_F is E(relaxed pair) − E(relaxed host): recomputed here from the stored structures with a fresh
    # calculator, not from the energies the code stored
    store = ResultStore(tmp_path / "ligbind.db")
    rows = {r.get("ligand") or "bare": r for r in store.select(kind="frenkel")}
    assert set(rows) == {"bare", "methylamine"}
    protocol = load_protocol("ml-screen", FAST)
    for host, ligand in (("bare", "bare"), ("ligand", "methylamine")):
        host_row = store.get(rows[ligand].data["outcome"]["host_key"])
        assert host_row.natoms == (32 if host == "bare" else 32 + 7)  # Cs4Pb8I20 (+ CH3NH2)
        e_host = _single_point(host_row, protocol)
        for pair in out[f"pairs_{host}"]:
            defect = store.get(pair["key"])
            assert defect.natoms == host_row.natoms
            assert pair["ef"] == pytest.approx(_single_point(defect, protocol) - e_host, abs=2e-3)
    assert rows["methylamine"].delta_ef == pytest.approx(out["delta_ef"], abs=1e-9)


# The campaign path of coadsorption and Frenkel (and its agreement with this one): tests/test_paths_agree.py


def test_a_pair_below_its_host_leads_to_a_lower_host(tmp_path):
    """A host left far from its minimum lies above its relaxed pairs: each pair is flagged below-pristine
    without refinement; with it, the host is relaxed again from the lowest pair with the halide put back, and
    E_F is taken against that host (an ordinary, positive E_F) in the row of the host it started from."""
    from ligbind.analysis.frenkel import HOST_TOLERANCE, frenkel_key
    from ligbind.analysis.tables import frenkel_table
    from ligbind.jobs import relax
    from ligbind.recipes import frenkel_on_lowest_host, frenkel_structures

    protocol = load_protocol("ml-screen", FAST)
    store = ResultStore(tmp_path / "ligbind.db")
    shaken = build_slab()
    shaken.rattle(0.25, seed=3)
    shaken.info["label"] = "shaken slab"
    host = relax(shaken, load_protocol("ml-screen", {"relax": {"fmax": 10.0}}), store=store, workdir=tmp_path)
    assert host.converged and host.n_steps <= 1  # the rattled slab as it is
    pairs = [
        (d.info, relax(d, protocol, store=store, workdir=tmp_path)) for d in frenkel_structures(host, 2, "x")
    ]

    flat = frenkel_on_lowest_host(host, pairs, protocol, store, tmp_path, refinements=0)
    assert flat.ef is None and flat.host_drop == 0 and not flat.host_refinements
    assert all("below-pristine" in p["flags"] for p in flat.pairs)

    out = frenkel_on_lowest_host(host, pairs, protocol, store, tmp_path, refinements=2)
    first = out.host_refinements[0]
    assert first["lower"] and first["pair"] == min(pairs, key=lambda x: x[1].energy)[0]["pair"]
    lower = store.get(out.host_key)
    assert lower.key != host.key and lower.energy == pytest.approx(out.e_host)
    assert out.host_drop == pytest.approx(host.energy - out.e_host) and out.host_drop > HOST_TOLERANCE
    # the lower host has the host's atoms, and each E_F is recomputed against it from stored structures
    assert lower.toatoms().get_chemical_symbols() == host.atoms.get_chemical_symbols()
    e_lower = _single_point(lower, protocol)
    for p in out.pairs:
        assert p["ef"] == pytest.approx(_single_point(store.get(p["key"]), protocol) - e_lower, abs=2e-3)
    assert out.ef is not None and 0.05 < out.ef < 5.0
    assert out.key == frenkel_key(host, None)  # the row of the host it started from, now with host_drop
    (row,) = frenkel_table(store).to_dict("records")
    assert row["host_drop"] == pytest.approx(out.host_drop) and row["ef"] == pytest.approx(out.ef)
