"""DFT verification of a screen (AdsorbML pattern): choice of configurations, rebuild, recipe and campaign."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from ligbind.analysis.binding import BindingOutcome
from ligbind.analysis.verification import (
    analyse_verification,
    configurations_to_verify,
    rebuild_on_slab,
    with_ligand_geometry,
)
from ligbind.builders.ligands import resolve_ligand
from ligbind.builders.placement import place_ligand
from ligbind.builders.slab import build_slab
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.recipes import bind, reserve_needed, verify
from ligbind.store import ResultStore

SCREEN = {"relax": {"fmax": 0.1}}


@pytest.fixture
def fake_dft(monkeypatch):
    """A preset 'fake-dft' (ml-screen's settings on a backend labelled DFT) that load_protocol finds by name."""
    from fake_backends import registration

    for target, name, value in registration():
        (monkeypatch.setitem if isinstance(target, dict) else monkeypatch.setattr)(target, name, value)
    return "fake-dft"


def _outcome(configs):
    return BindingOutcome(
        "x", "neutral", "ml-screen", "chgnet", False, None, None, None, 0.0, 0.0, None, None, 0, configs
    )


def _flag_first_verified(monkeypatch, ligand: str) -> list[str]:
    """Make the first DFT-verified configuration of ``ligand`` come out flagged ``desorbed`` (as a DFT relaxation
    can leave the screen's best pose: the DFT demo's methylamine reconstructed the surface); returns its label."""
    import ligbind.recipes as recipes

    real, flagged = recipes.complex_anomalies, []

    def flags(initial, final, relaxed_slab=None):
        out = real(initial, final, relaxed_slab)
        label = initial.info.get("label", "")
        if label.startswith(f"verify:{ligand}:") and flagged in ([], [label]):
            flagged[:] = [label]
            out.append("desorbed")
        return out

    monkeypatch.setattr(recipes, "complex_anomalies", flags)
    return flagged


def _relaxed(converged=True, anomalies=()):
    return Result("k", "relax", None, 0.0, 0.0, converged, 1, 1, {}, anomalies=list(anomalies))


def _dft_outcome(eb, best, configs):
    rows = [{"config": k, "status": "converged", "flags": flags} for k, flags in configs]
    return BindingOutcome(
        "x", "neutral", "fake-dft", "fake-dft", True, eb, eb, None, 0.0, 0.0, None, best, 2, rows
    )


@pytest.mark.parametrize(
    "eb_dft, best, configs, expected",
    [
        (-1.0, 0, [(0, [])], []),  # agrees
        (-1.3, 0, [(0, [])], ["screen-off-by-more-than-0.2-eV"]),
        (
            -1.1,
            1,
            [(0, ["reconstructed"]), (1, [])],
            ["dft-prefers-another-configuration", "screen-best-unusable-in-dft"],
        ),
        (
            -1.5,
            1,
            [(0, []), (1, [])],
            ["dft-prefers-another-configuration", "screen-off-by-more-than-0.2-eV"],
        ),
        (None, None, [(0, ["desorbed"])], ["dft-unusable:none", "screen-best-unusable-in-dft"]),
    ],
)
def test_verification_flags_where_dft_and_the_screen_disagree(eb_dft, best, configs, expected):
    screen = BindingOutcome(
        "x", "neutral", "ml-screen", "chgnet", False, -1.0, -1.0, None, 0.0, 0.0, None, 0, 3, []
    )
    out = analyse_verification(screen, _dft_outcome(eb_dft, best, configs), threshold=0.2)
    assert out.flags == sorted(expected) and out.eb == (eb_dft if eb_dft is not None else -1.0)


def test_a_reserve_is_verified_only_for_unusable_dft_configurations():
    ok, moved = _relaxed(anomalies=["basin-changed"]), _relaxed(anomalies=["basin-changed"])
    assert not reserve_needed([ok], top_k=1) and not reserve_needed([ok, moved], top_k=2)
    assert reserve_needed([None], 1)  # not relaxed (failed)
    assert reserve_needed([_relaxed(converged=False, anomalies=["unconverged"])], 1)
    assert reserve_needed([_relaxed(anomalies=["reconstructed"]), ok], 2)
    assert not reserve_needed([_relaxed(anomalies=["reconstructed"]), ok], 1)  # the reserve found one


def test_best_distinct_unflagged_converged_configurations_are_chosen():
    configs = [
        {"config": 0, "eb": -0.50, "flags": [], "status": "converged", "key": "a"},
        {"config": 1, "eb": -0.90, "flags": ["desorbed"], "status": "converged", "key": "b"},
        {"config": 2, "eb": -0.70, "flags": [], "status": "unconverged", "key": "c"},
        {"config": 3, "eb": -0.601, "flags": [], "status": "converged", "key": "d"},
        {"config": 4, "eb": -0.599, "flags": [], "status": "converged", "key": "e"},  # same minimum as 3
        {"config": 5, "eb": -0.40, "flags": [], "status": "converged", "key": "f"},
    ]
    chosen = configurations_to_verify(_outcome(configs), top_k=3)
    assert [c["config"] for c in chosen] == [3, 0, 5]
    assert [c["config"] for c in configurations_to_verify(_outcome(configs), top_k=1)] == [3]


def test_complex_is_rebuilt_on_the_dft_slab_keeping_its_bonds_to_the_surface():
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    (complex_,) = place_ligand(slab, "methylamine", n_configs=1)
    dft_slab = slab.copy()
    dft_slab.positions += [0.0, 0.0, 0.3]  # a DFT slab 0.3 Å higher everywhere
    rebuilt = rebuild_on_slab(complex_, slab, dft_slab)
    tags = rebuilt.get_tags()
    np.testing.assert_allclose(rebuilt.positions[tags == 0], dft_slab.positions)
    np.testing.assert_allclose(rebuilt.positions[tags > 0], complex_.positions[tags > 0] + [0, 0, 0.3])


def test_an_exchange_complex_is_rebuilt_on_the_dft_slab_less_the_exchanged_halide():
    """X-site exchange (TMSBr: Br- onto a surface I site): the slab part is the DFT slab without that I."""
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    (complex_,) = place_ligand(slab, "TMSBr", n_configs=1, mode="exchange")
    (removed,) = json.loads(complex_.info["exchanged_indices"])
    assert slab[removed].symbol == "I" and len(complex_) == len(slab)  # the I out, the Br (tag 1) in
    dft_slab = slab.copy()
    dft_slab.positions += [0.0, 0.0, 0.3]
    dft_slab.positions[removed] += [0.2, 0.0, 0.0]  # the exchanged I moved too: it leaves with its index
    rebuilt = rebuild_on_slab(complex_, slab, dft_slab)
    tags = rebuilt.get_tags()
    np.testing.assert_allclose(rebuilt.positions[tags == 0], np.delete(dft_slab.positions, removed, axis=0))
    np.testing.assert_allclose(rebuilt.positions[tags > 0], complex_.positions[tags > 0] + [0, 0, 0.3])
    fixed = rebuilt.constraints[0].index
    assert len(fixed) == len(dft_slab.constraints[0].index) - (removed in dft_slab.constraints[0].index)
    # placed before exchanged_indices was recorded: the exchanged atom is found at its recorded position
    older = complex_.copy()
    del older.info["exchanged_indices"]
    np.testing.assert_allclose(rebuild_on_slab(older, slab, dft_slab).positions, rebuilt.positions)
    older.info["exchanged_position"] = json.dumps([0.0, 0.0, -50.0])
    with pytest.raises(LigbindError, match="cannot tell which slab atoms"):
        rebuild_on_slab(older, slab, dft_slab)


def test_host_and_bare_numbering_are_inverse_around_the_exchanged_atoms():
    from ligbind.builders.exchange import to_bare_numbering, to_host_numbering

    removed = [3, 7]  # e.g. an A-site exchange taking out two atoms
    kept = [i for i in range(12) if i not in removed]
    host = to_host_numbering(kept, removed)
    assert host == tuple(range(10))  # the host's atoms, in order, without gaps
    assert [to_bare_numbering(i, removed) for i in host] == kept
    assert to_host_numbering([5], []) == (5,) and to_bare_numbering(5, []) == 5


def _methylamine_complex():
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    (complex_,) = place_ligand(slab, "methylamine", n_configs=1)
    return complex_, np.flatnonzero(complex_.get_tags() > 0)


def test_the_dft_molecule_takes_the_adsorbates_place_in_the_screens_pose():
    from ase.geometry import find_mic

    complex_, ads = _methylamine_complex()
    molecule = complex_[ads]
    molecule.set_tags(0)
    molecule.rotate(70, "x", center="COM")  # the DFT molecule comes in its own box and orientation
    molecule.translate([5.0, -3.0, 20.0])
    n = next(i for i, z in enumerate(molecule.numbers) if z == 7)
    c = next(i for i, z in enumerate(molecule.numbers) if z == 6)
    molecule.set_distance(c, n, 1.40, fix=0.5)  # and its own bond lengths (C–N 1.40 Å)
    swapped = with_ligand_geometry(complex_, molecule)
    assert swapped.info["ligand_geometry"] == "dft"
    assert swapped.get_distance(ads[c], ads[n]) == pytest.approx(1.40)
    np.testing.assert_allclose(
        swapped.positions[complex_.get_tags() == 0], complex_.positions[complex_.get_tags() == 0]
    )
    # the molecule's shape, in the screen's pose (the placed adsorbate may straddle the cell edge)
    np.testing.assert_allclose(
        swapped[ads].get_all_distances(mic=True), molecule.get_all_distances(), atol=1e-8
    )
    moved, _ = find_mic(swapped.positions[ads] - complex_.positions[ads], complex_.cell, complex_.pbc)
    assert np.linalg.norm(moved, axis=1).max() < 0.3
    assert 0 < swapped.info["ligand_fit_rmsd"] < 0.1


def test_the_screen_geometry_stays_when_the_molecule_is_another_conformer_or_not_the_same_atoms():
    complex_, ads = _methylamine_complex()
    molecule = complex_[ads]
    stretched = molecule.copy()
    stretched.positions *= 1.5  # nothing like the adsorbate
    assert with_ligand_geometry(complex_, stretched).info["ligand_geometry"] == "screen"
    np.testing.assert_allclose(with_ligand_geometry(complex_, stretched).positions, complex_.positions)
    assert with_ligand_geometry(complex_, molecule[:-1]).info["ligand_geometry"] == "screen"


def test_verification_needs_a_dft_protocol(tmp_path):
    with pytest.raises(LigbindError, match="not DFT"):
        verify(
            build_slab(material="CsPbI3", size=(2, 2), layers=3),
            _outcome([]),
            resolve_ligand("methylamine"),
            "ml-screen",
            store=ResultStore(tmp_path / "x.db"),
        )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.slow
def test_verified_eb_equals_the_screen_when_dft_is_the_same_potential(tmp_path, fake_dft):
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    store = ResultStore(tmp_path / "l.db")
    screen = bind(
        slab, "methylamine", "ml-screen", n_configs=2, store=store, workdir=tmp_path, overrides=SCREEN
    )
    out = verify(
        slab,
        screen,
        resolve_ligand("methylamine"),
        fake_dft,
        top_k=2,
        store=store,
        workdir=tmp_path,
        overrides=SCREEN,
    )
    # same potential, every DFT term started from the converged screen geometry: the same Eb
    assert out.eb_dft == pytest.approx(screen.eb, abs=0.02)
    assert out.dft_protocol == "fake-dft" and out.screen_protocol == "ml-screen" and out.eb == out.eb_dft
    assert out.dft_config == screen.best_config and out.flags == []
    assert len(out.verified_configs) == len(configurations_to_verify(screen, 2)) >= 1
    row = store.get(out.key)
    assert row.kind == "verification" and row.eb_dft == pytest.approx(out.eb_dft)
    dft_rows = [r for r in store.select(kind="binding") if r.protocol == "fake-dft"]
    assert len(dft_rows) == 1 and dft_rows[0].is_dft  # Eb from DFT terms only, stored as its own analysis
    # each configuration started from the DFT molecule in the screen's pose; its record names that relaxation
    verified = [r for r in store.select(kind="relax") if str(r.get("label", "")).startswith("verify:")]
    assert verified and all(r.data["prerelax"]["ligand_geometry"] == "dft" for r in verified)
    assert all(r.data["prerelax"]["protocol"] == "ml-screen" for r in verified)


def test_reserves_wait_for_the_configurations_they_stand_in_for(tmp_path):
    from ligbind.engine.campaign import load_campaign, settings_hash
    from ligbind.engine.fireworks import planned_fireworks

    def campaign(top_k, reserve):
        path = tmp_path / "r.yaml"
        verify = {"protocol": "gpaw-quick", "top_k": top_k, "reserve": reserve}
        path.write_text(
            yaml.safe_dump({"name": "r", "ligands": ["methylamine"], "configs": 3, "verify": verify})
        )
        return load_campaign(path)

    plan = {fw.name.split(":")[1]: (fw, parents) for fw, parents in planned_fireworks(campaign(1, 2))}
    ids = {n: fw.spec["_ligbind_id"] for n, (fw, _) in plan.items()}
    steps = [f"verify-config/methylamine/{k}" for k in range(3)]
    assert [n for n in plan if n.startswith("verify-config/")] == steps
    assert ids[steps[0]] in plan[steps[1]][1] and {ids[steps[0]], ids[steps[1]]} <= set(plan[steps[2]][1])
    # a failed DFT relaxation is what a reserve stands in for; the top-k ones wait for the screen as before
    assert [bool(plan[n][0].spec.get("_allow_fizzled_parents")) for n in steps] == [False, True, True]
    assert ids[steps[0]] not in plan[steps[0]][1]
    # reserves past the screen's configurations cannot run: left out (the settings hash stays as it was)
    assert "reserve" not in campaign(3, 1)["verify"] and campaign(2, 5)["verify"]["reserve"] == 1
    assert settings_hash(campaign(3, 1)) == settings_hash(campaign(3, 0)) != settings_hash(campaign(2, 1))


@pytest.mark.slow
def test_a_reserve_configuration_stands_in_for_an_unusable_dft_one(tmp_path, fake_dft, monkeypatch):
    """The screen's best configuration comes out of DFT flagged: the next one is verified and gives Eb."""
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    store = ResultStore(tmp_path / "l.db")
    screen = bind(
        slab, "methylamine", "ml-screen", n_configs=3, store=store, workdir=tmp_path, overrides=SCREEN
    )
    chosen = configurations_to_verify(screen, 2)
    assert len(chosen) == 2, screen.configs  # a reserve to verify
    flagged = _flag_first_verified(monkeypatch, "methylamine")
    out = verify(
        slab,
        screen,
        resolve_ligand("methylamine"),
        fake_dft,
        top_k=1,
        reserve=1,
        store=store,
        workdir=tmp_path,
        overrides=SCREEN,
    )
    assert flagged == [f"verify:methylamine:{chosen[0]['config']}"]
    assert out.verified_configs == [c["config"] for c in chosen]
    assert out.dft_config == chosen[1]["config"] and "dft-prefers-another-configuration" in out.flags
    assert "screen-best-unusable-in-dft" in out.flags
    assert out.eb_dft == pytest.approx(chosen[1]["eb"], abs=0.02)  # the same potential as the screen


@pytest.mark.slow
def test_campaign_verifies_through_fireworks(tmp_path, fake_dft, monkeypatch):
    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results, load_campaign

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "v.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "v",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "ligands": ["methylamine", "methanethiol"],
                "configs": 2,
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
            }
        )
    )
    engine.screen(path)
    flagged = _flag_first_verified(
        monkeypatch, "methylamine"
    )  # its reserve is verified; methanethiol's is not
    out = engine.run(path, progress=False, workers=1)  # the fake backend is registered in this process only
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    # one worker: every screen Eb is in before the first DFT relaxation of a complex starts (the analyses
    # become ready with it, and a real one takes hours)
    lpad = engine.read_launchpad(load_campaign(path))
    names = {d["fw_id"]: d["name"].split(":")[1] for d in lpad.fireworks.find({}, {"fw_id": 1, "name": 1})}
    order = [names[d["fw_id"]] for d in lpad.launches.find({}, {"fw_id": 1}).sort("launch_id", 1)]
    first_dft = min(i for i, n in enumerate(order) if n.startswith("verify-config/"))
    assert all(order.index(f"binding/{lig}") < first_dft for lig in ("methylamine", "methanethiol")), order
    # and the screen's calculations all before the first DFT one (the DFT slab became ready with them)
    screen_steps = ("slab", "ligand/", "config/", "reference")
    last_screen = max(i for i, n in enumerate(order) if n.startswith(screen_steps))
    assert last_screen < order.index("verify-slab"), order
    # on DFT, the slab first, then the smaller ligand (methanethiol, 6 atoms; methylamine 7) before the larger
    dft = [n for n in order if n.startswith(("verify-slab", "verify-ligand/", "verify-config/"))]
    assert [n for n in dft if not n.endswith("/1")] == [
        "verify-slab",
        "verify-ligand/methanethiol",
        "verify-ligand/methylamine",
        "verify-config/methanethiol/0",
        "verify-config/methylamine/0",
    ], dft
    for lig in ("methanethiol", "methylamine"):  # each reserve after the configuration it stands in for
        assert dft.index(f"verify-config/{lig}/1") > dft.index(f"verify-config/{lig}/0"), dft
    store = ResultStore(tmp_path / "runs" / "v" / "ligbind.db")
    verified = [
        str(r.get("label")) for r in store.select(kind="relax") if str(r.get("label")).startswith("verify:")
    ]
    assert sum(x.startswith("verify:methanethiol:") for x in verified) == 1  # its reserve relaxed nothing
    assert sum(x.startswith("verify:methylamine:") for x in verified) == 2 and flagged[0] in verified
    rows = {r.ligand: r for r in store.select(kind="verification")}
    screen = {r.ligand: r for r in store.select(kind="binding") if r.protocol == "ml-screen"}
    assert set(rows) == set(screen) == {"methylamine", "methanethiol"}
    assert rows["methanethiol"].eb_dft == pytest.approx(screen["methanethiol"].eb, abs=0.02)
    assert "screen-best-unusable-in-dft" not in rows["methanethiol"].data["outcome"]["flags"]
    assert "screen-best-unusable-in-dft" in rows["methylamine"].data["outcome"]["flags"]
    # methylamine's Eb is DFT's from the reserve: the screen's second configuration (the same potential)
    reserve = rows["methylamine"].data["outcome"]["dft_config"]
    assert f"verify:methylamine:{reserve}" in verified and f"verify:methylamine:{reserve}" != flagged[0]
    screen_eb = {x["config"]: x["eb"] for x in screen["methylamine"].data["outcome"]["configs"]}
    # (relaxed again from a screen pose converged to only fmax 0.1: seen 0.023 eV lower)
    assert rows["methylamine"].eb_dft == pytest.approx(screen_eb[reserve], abs=0.05)
    paths = campaign_results(path)
    assert "verified_md" in paths and "eb_screen" in paths["verified_md"].read_text()
    assert engine.screen(path)["added"] == 0  # nothing new to do


def test_campaign_corrects_verified_eb_for_basis_set_superposition(tmp_path, fake_dft, monkeypatch):
    """The counterpoise steps through FireWorks: the stand-in DFT backend made an LCAO one whose four
    counterpoise terms are real GPAW single points (sz(dzp), h 0.4) at each verified complex's geometry."""
    from fake_backends import FakeDFTBackend

    import ligbind.engine.fireworks as engine
    from ligbind.calculators.gpaw import counterpoise_energies
    from ligbind.engine.campaign import campaign_results, load_campaign
    from ligbind.protocols import load_protocol

    with pytest.warns(UserWarning, match="coarser"):
        tiny = load_protocol("gpaw-laptop", {"gpaw": {"basis": "sz(dzp)", "h": 0.4}, "run": {"cores": 1}})
    monkeypatch.setattr(FakeDFTBackend, "wants_counterpoise", lambda self, protocol: True)
    monkeypatch.setattr(FakeDFTBackend, "superposes_basis_sets", lambda self, protocol: True)
    monkeypatch.setattr(
        FakeDFTBackend,
        "counterpoise_energies",
        lambda self, atoms, protocol, key, workdir: counterpoise_energies(atoms, tiny, key, workdir),
    )
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cp.yaml"
    spec = {
        "name": "cp",
        "protocol": "ml-screen",
        "overrides": SCREEN,
        "ligands": ["methanethiol"],
        "configs": 2,
        "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
    }
    path.write_text(yaml.safe_dump(spec))
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    lpad = engine.read_launchpad(load_campaign(path))
    names = {d["name"].split(":")[1] for d in lpad.fireworks.find({}, {"name": 1})}
    assert "verify-counterpoise/methanethiol/0" in names
    assert not any(n.startswith("counterpoise/") for n in names)  # the ML screen has no basis to superpose
    store = ResultStore(tmp_path / "runs" / "cp" / "ligbind.db")
    (cp,) = store.select(kind="counterpoise")
    row = next(store.select(kind="verification"))
    o = row.data["outcome"]
    assert o["bsse"] == pytest.approx(cp.bsse) and cp.bsse < 0
    assert row.eb_dft == pytest.approx(o["eb_dft_uncorrected"] - cp.bsse)
    screen = next(r for r in store.select(kind="binding") if r.protocol == "ml-screen")
    assert o["eb_dft_uncorrected"] == pytest.approx(screen.eb, abs=0.02)  # the same potential
    table = campaign_results(path)["verified_csv"].read_text().splitlines()
    header, values = table[0].split(","), table[1].split(",")
    assert float(values[header.index("bsse")]) == pytest.approx(cp.bsse, abs=1e-4)


def test_cli_refuses_a_non_dft_verification_before_any_work(tmp_path, run_cli):
    slab = tmp_path / "slab.extxyz"
    assert run_cli("build", "slab", "-o", str(slab), cwd=tmp_path).returncode == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    out = run_cli(
        "bind", "--slab", str(slab), "--ligand", "methylamine", "--verify", "ml-screen", cwd=tmp_path
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "ligbind: error: --verify needs a DFT protocol; 'ml-screen' is not DFT"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.slow
def test_cli_vasp_verification_dry_run_writes_dft_inputs(tmp_path, run_cli):
    """The ML screen runs; the VASP verification writes slab, ligand and top-k configuration inputs only."""
    slab = tmp_path / "slab.extxyz"
    run_cli("build", "slab", "-o", str(slab), cwd=tmp_path)
    out = run_cli(
        "bind",
        "--slab",
        str(slab),
        "--ligand",
        "methylamine",
        "--configs",
        "2",
        "--protocol",
        "ml-screen",
        "--set",
        '{"relax": {"fmax": 0.1}}',
        "--verify",
        "vasp-pbe-d3",
        "--top-k",
        "1",
        "--dry-run",
        "--json",
        "--quiet",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    import json

    payload = json.loads(out.stdout)
    dirs = [tmp_path / d for d in payload["directories"]]
    assert len(dirs) == 3  # slab, ligand, the one best configuration
    for d in dirs:
        assert {"INCAR", "KPOINTS", "POSCAR", "POTCAR.spec"} <= {p.name for p in d.iterdir()}
    # the ligand directory is a molecule in a box: Gamma only, no dipole keys; the slab has the dipole correction
    incars = [(d / "INCAR").read_text() for d in dirs]
    assert sum("LDIPOL" in text for text in incars) == 2  # slab and complex, not the molecule
    assert payload["screen"]["eb"] is not None and payload["screen"]["protocol"] == "ml-screen"


def test_campaign_verifies_vacancy_and_frenkel_energies_with_the_dft_protocol(
    tmp_path, fake_dft, monkeypatch
):
    """verify: + compute.vacancy/frenkel: the screen's best vacancy site and Frenkel pair of each host are
    recomputed with the DFT protocol on the DFT host; with the same potential under both labels, E_vac and E_F
    must come out the same."""
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "vv.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "vv",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "ligands": ["methylamine"],
                "configs": 1,
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
                "compute": {
                    "vacancy": {"bare": True, "ligands": ["methylamine"], "sites": 1},
                    "frenkel": {"bare": True, "ligands": ["methylamine"], "pairs": 2},
                },
            }
        )
    )
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    table = pd.read_csv(campaign_results(path)["defects_csv"])
    assert sorted(zip(table["host"], table["protocol"], strict=True)) == [
        ("(bare)", "fake-dft"),
        ("(bare)", "ml-screen"),
        ("methylamine", "fake-dft"),
        ("methylamine", "ml-screen"),
    ]
    by = table.set_index(["host", "protocol"])
    for host in ("(bare)", "methylamine"):
        assert by.loc[(host, "fake-dft"), "method"] == "DFT"
        assert by.loc[(host, "fake-dft"), "e_vac"] == pytest.approx(
            by.loc[(host, "ml-screen"), "e_vac"], abs=0.03
        )
    dft_delta = by.loc[("methylamine", "fake-dft"), "delta_e_vac"]
    assert dft_delta == pytest.approx(
        by.loc[("methylamine", "fake-dft"), "e_vac"] - by.loc[("(bare)", "fake-dft"), "e_vac"], abs=1e-3
    )  # ΔE_vac from DFT rows only
    frenkel = pd.read_csv(tmp_path / "results" / "vv" / "frenkel.csv").set_index(["host", "protocol"])
    assert len(frenkel) == 4
    for host in ("(bare)", "methylamine"):
        assert frenkel.loc[(host, "fake-dft"), "method"] == "DFT"
        assert frenkel.loc[(host, "fake-dft"), "ef"] == pytest.approx(
            frenkel.loc[(host, "ml-screen"), "ef"], abs=0.03
        )
    assert frenkel.loc[("methylamine", "fake-dft"), "delta_ef"] == pytest.approx(
        frenkel.loc[("methylamine", "fake-dft"), "ef"] - frenkel.loc[("(bare)", "fake-dft"), "ef"], abs=1e-3
    )


@pytest.mark.slow
def test_campaign_verifies_the_vacancy_of_the_passivated_slab(tmp_path, fake_dft, monkeypatch):
    """verify: + compute.passivation + vacancy on the passivated slab: the screen's best K–Br arrangement is
    relaxed again with the DFT protocol (verify-passivated), hosts the DFT vacancy and Frenkel pair and gives
    the DFT E_pass against the DFT bulk salt; with the same potential under both labels E_vac, E_pass and E_F
    must come out the same, and ΔE_vac, ΔE_F come from DFT rows only."""
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results, load_campaign

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "vp.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "vp",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "slab": {"br_fraction": 0.17, "seed": 7},
                "ligands": ["methylamine"],
                "configs": 1,
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
                "compute": {
                    "passivation": {"mode": "hollow", "arrangements": 1, "frenkel": True},
                    "frenkel": {"pairs": 1},
                    "vacancy": {"bare": True, "passivated": True, "sites": 1},
                },
            }
        )
    )
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    names = {fw.name.removeprefix("vp:") for fw, _ in engine.planned_fireworks(load_campaign(path))}
    assert {"verify-passivated", "verify-vacancy/KBr-passivated"} <= names
    store = ResultStore(tmp_path / "runs" / "vp" / "ligbind.db")
    (host,) = [r for r in store.select(kind="relax") if r.get("label") == "verify:passivated"]
    assert host.protocol == "fake-dft" and "K" in host.formula
    by = pd.read_csv(campaign_results(path)["defects_csv"]).set_index(["host", "protocol"])
    dft, screen = by.loc[("KBr-passivated", "fake-dft")], by.loc[("KBr-passivated", "ml-screen")]
    assert dft["method"] == "DFT" and dft["e_vac"] == pytest.approx(screen["e_vac"], abs=0.03)
    assert dft["delta_e_vac"] == pytest.approx(
        dft["e_vac"] - by.loc[("(bare)", "fake-dft"), "e_vac"], abs=1e-3
    )
    (row,) = [r for r in store.select(kind="vacancy", protocol="fake-dft") if r.ligand == "KBr-passivated"]
    assert row.data["outcome"]["host_key"] == host.key  # on the DFT-relaxed passivated slab
    # E_pass from DFT terms only: the DFT passivated slab, the DFT slab, KBr relaxed with the DFT protocol
    assert {"verify-passivation", "verify-passivation-ref/KBr"} <= names
    (row,) = store.select(kind="passivation", protocol="fake-dft")
    out = row.data["outcome"]
    assert out["best_key"] == host.key and out["reaction"] == "slab + KBr → slab[KBr-hollow]"
    assert (
        store.get(out["slab_key"]).protocol
        == store.get(out["references"]["KBr"]["key"]).protocol
        == "fake-dft"
    )
    table = pd.read_csv(tmp_path / "results" / "vp" / "passivation.csv").set_index("protocol")
    dft, screen = table.loc["fake-dft"], table.loc["ml-screen"]
    assert dft["method"] == "DFT" and dft["e_pass"] == pytest.approx(screen["e_pass"], abs=0.03)
    # E_F on the DFT passivated slab (the screen's best pair relaxed with DFT), ΔE_F against the DFT bare slab
    assert {"verify-passivation-frenkel", "verify-frenkel/bare"} <= names
    assert dft["ef_passivated"] == pytest.approx(screen["ef_passivated"], abs=0.03)
    assert dft["ef_bare"] == pytest.approx(screen["ef_bare"], abs=0.03)
    assert dft["delta_ef"] == pytest.approx(dft["ef_passivated"] - dft["ef_bare"], abs=1e-3)
    (pair,) = [r for r in store.select(kind="frenkel", protocol="fake-dft") if r.ligand == "KBr-hollow"]
    assert pair.data["outcome"]["host_key"] == host.key


def test_a_defect_dft_leaves_unusable_is_replaced_by_the_screens_next_one(tmp_path, fake_dft, monkeypatch):
    """verify-vacancy and verify-frenkel redo the screen's lowest usable site (pair) with DFT; when DFT leaves
    it unusable (a neighbour refills the vacancy, the pair recombines: seen rehearsing the mixed-halide DFT
    campaign, where TMSBr's DFT vacancy refilled) the screen's next one is relaxed in its place, and the table
    lists both. Here the first DFT site and pair are made to come out flagged."""
    import pandas as pd

    import ligbind.analysis.frenkel as frenkel
    import ligbind.analysis.vacancy as vacancy
    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    flagged: dict[str, str] = {}

    def first_dft_flagged(module, name: str, flag: str):
        real = getattr(module, name)

        def flags(energy, result, *sites):
            out = real(energy, result, *sites)
            if result.protocol["name"] == "fake-dft" and flagged.setdefault(name, result.key) == result.key:
                out = [*out, flag]
            return out

        monkeypatch.setattr(module, name, flags)

    first_dft_flagged(vacancy, "vacancy_flags", "vacancy-refilled")
    first_dft_flagged(frenkel, "pair_flags", "recombined")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "vr.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "vr",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "ligands": ["methylamine"],
                "configs": 1,
                "compute": {"frenkel": {"bare": True, "pairs": 2}, "vacancy": {"bare": True, "sites": 2}},
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
            }
        )
    )
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    results = campaign_results(path)
    for table, energy, sites in [("defects_csv", "e_vac", "sites"), ("frenkel_csv", "ef", "pairs")]:
        rows = pd.read_csv(results[table]).set_index(["host", "protocol"])
        dft, screen = rows.loc[("(bare)", "fake-dft")], rows.loc[("(bare)", "ml-screen")]
        tried = dft[sites].split("; ")
        assert len(tried) == 2 and "[" in tried[0] and "[" not in tried[1], dft[sites]
        usable = sorted(float(x.split(": ")[1]) for x in screen[sites].split("; ") if "[" not in x)
        assert pd.notna(dft[energy]) and dft[energy] == pytest.approx(usable[1], abs=0.03)  # the next one


@pytest.mark.parametrize("what", ["vacancy", "migration"])
def test_vacancy_verification_with_a_spin_paired_dft_protocol_is_refused_at_load(tmp_path, what):
    from ligbind.engine.campaign import load_campaign

    path = tmp_path / "spin.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "ligands": ["methylamine"],
                "verify": {"protocol": "gpaw-quick", "top_k": 1},
                "compute": {what: {"bare": True}},
            }
        )
    )
    with pytest.raises(LigbindError, match=r"verify\.overrides.*odd electron count.*spinpol"):
        load_campaign(path)
    text = path.read_text().replace("top_k: 1", "top_k: 1\n  overrides: {gpaw: {spinpol: true}}")
    path.write_text(text)
    assert load_campaign(path)["verify"]["protocol"]["gpaw"]["spinpol"] is True


def test_passivation_verified_by_a_protocol_without_bulk_k_points_is_refused_at_load(tmp_path):
    """E_pass needs bulk KBr with the verification protocol: one without k-points for crystals is refused before
    anything is planned (the slab's Γ point alone would give a bulk energy far off)."""
    from ligbind.engine.campaign import load_campaign

    path = tmp_path / "kp.yaml"
    spec = {
        "ligands": ["methylamine"],
        "verify": {"protocol": "gpaw-quick", "top_k": 1, "overrides": {"gpaw": {"bulk_kpt_density": None}}},
        "compute": {"passivation": {"mode": "hollow"}},
    }
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        LigbindError, match=r"compute\.passivation.*KBr.*bulk crystal.*gpaw\.bulk_kpt_density"
    ):
        load_campaign(path)
    del spec["verify"]["overrides"]
    path.write_text(yaml.safe_dump(spec))
    assert load_campaign(path)["verify"]["protocol"]["gpaw"]["bulk_kpt_density"] == 3.0


@pytest.mark.slow
def test_exchange_ligands_are_verified_with_their_byproduct(tmp_path, fake_dft, monkeypatch):
    """A ligand that binds by exchange (TMSBr: Br- onto a surface I site, TMS-I released) is verified like a
    neutral one, its byproduct relaxed with DFT too; with the same potential under both labels the DFT Eb
    must equal the screen's. Its complex, DFT-relaxed, hosts the DFT Frenkel pair as well."""
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results, load_campaign

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "ligands": [{"name": "TMSBr", "mode": "exchange"}],
                "configs": 1,
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
                "compute": {"frenkel": {"bare": True, "ligands": ["TMSBr"], "pairs": 1}},
            }
        )
    )
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    names = {fw.name.removeprefix("x:") for fw, _ in engine.planned_fireworks(load_campaign(path))}
    assert {"verify-byproduct/TMSBr", "verify/TMSBr", "verify-frenkel/TMSBr"} <= names
    paths = campaign_results(path)
    (row,) = pd.read_csv(paths["verified_csv"]).to_dict("records")
    binding = pd.read_csv(paths["csv"]).set_index("ligand")
    assert row["ligand"] == "TMSBr" and row["mode"] == "exchange" and row["source"] == "fake-dft"
    assert row["eb_dft"] == pytest.approx(binding.loc["TMSBr", "eb"], abs=0.02)
    store = ResultStore(tmp_path / "runs" / "x" / "ligbind.db")
    (dft_binding,) = [r for r in store.select(kind="binding") if r.protocol == "fake-dft"]
    byproduct = store.get(dft_binding.data["outcome"]["byproduct_key"])
    assert byproduct is not None and byproduct.formula == "C3H9ISi"  # TMS-I, relaxed with the DFT protocol
    frenkel = pd.read_csv(paths["frenkel_csv"]).set_index(["host", "protocol"])
    assert frenkel.loc[("(bare)", "fake-dft"), "method"] == "DFT"
    assert frenkel.loc[("TMSBr", "fake-dft"), "method"] == "DFT"


@pytest.mark.slow
def test_campaign_verifies_the_migration_barrier_with_the_dft_protocol(tmp_path, fake_dft, monkeypatch):
    """verify: + compute.migration: the same hop on the DFT slab, endpoints relaxed and band converged with the
    DFT protocol (from a screen-protocol band); with the same potential under both labels Ea must agree."""
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "vm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "vm",
                "protocol": "ml-screen",
                "overrides": SCREEN,
                "ligands": ["methylamine"],
                "configs": 1,
                "compute": {"binding": True, "migration": {"bare": True, "images": 3}},
                "verify": {"protocol": "fake-dft", "overrides": SCREEN, "top_k": 1},
            }
        )
    )
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    table = pd.read_csv(campaign_results(path)["migration_csv"]).set_index(["host", "protocol"])
    assert sorted(table.index) == [("(bare)", "fake-dft"), ("(bare)", "ml-screen")]
    dft, screen = table.loc[("(bare)", "fake-dft")], table.loc[("(bare)", "ml-screen")]
    assert dft["method"] == "DFT" and dft["hop"] == screen["hop"]
    assert dft["ea_forward"] == pytest.approx(screen["ea_forward"], abs=0.03)
