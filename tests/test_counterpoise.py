"""Counterpoise correction of LCAO binding energies: the four GPAW terms, resume, refusals, and how Eb uses it."""

from __future__ import annotations

from collections import Counter

import gpaw
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from ligbind.analysis.binding import analyse_binding
from ligbind.analysis.energies import COUNTERPOISE_TERMS, EnergyMismatchError, counterpoise_bsse
from ligbind.analysis.verification import analyse_verification
from ligbind.builders.ligands import resolve_ligand
from ligbind.calculators import backend_of
from ligbind.errors import LigbindError
from ligbind.jobs import Result, counterpoise
from ligbind.protocols import load_protocol, protocol_hash
from ligbind.store import ResultStore

TINY = {"gpaw": {"basis": "sz(dzp)", "h": 0.3}, "prerelax": None, "run": {"cores": 1}}


@pytest.fixture(scope="module")
def tiny() -> dict:
    with pytest.warns(UserWarning, match="coarser"):
        return load_protocol("gpaw-laptop", TINY)


def water_dimer() -> Atoms:
    """A hydrogen-bonded water dimer: the 'slab' fragment (tags 0) and the 'adsorbate' (tags 1)."""
    donor, acceptor = molecule("H2O"), molecule("H2O")
    acceptor.rotate(180, "z")
    acceptor.translate([0, 0, 2.9])
    dimer = donor + acceptor
    dimer.set_tags([0, 0, 0, 1, 1, 1])
    dimer.center(vacuum=3.0)
    return dimer


def _complex(atoms: Atoms, protocol: dict, key: str = "relax-dimer") -> Result:
    return Result(key, "relax", atoms, 0.0, 0.0, True, 1, 1, protocol)


class CountingGPAW:
    """GPAW's constructor, counted, failing at the n-th call (a kill in the middle of a term)."""

    made = 0
    fail_at: int | None = None
    real = staticmethod(gpaw.GPAW)

    def __new__(cls, *args, **kwargs):
        cls.made += 1
        if cls.made == cls.fail_at:
            raise KeyboardInterrupt("killed")
        return cls.real(*args, **kwargs)


@pytest.fixture
def counting_gpaw(monkeypatch):
    CountingGPAW.made, CountingGPAW.fail_at = 0, None
    monkeypatch.setattr(gpaw, "GPAW", CountingGPAW)
    return CountingGPAW


@pytest.fixture(scope="module")
def dimer_bsse(tiny, tmp_path_factory):
    """The four terms of the water dimer, computed once without interruption."""
    return counterpoise(_complex(water_dimer(), tiny), tiny, workdir=tmp_path_factory.mktemp("cp"))


def test_ghost_basis_lowers_each_fragment_and_bsse_is_their_sum(dimer_bsse):
    e = dimer_bsse.energies
    assert set(e) == set(COUNTERPOISE_TERMS)
    # a larger basis can only lower a variational energy; the ghosts must have been there
    assert e["adsorbate+slab ghosts"] < e["adsorbate"] - 1e-3
    assert e["slab+adsorbate ghosts"] < e["slab"] - 1e-3
    assert dimer_bsse.bsse == pytest.approx(
        e["adsorbate+slab ghosts"] - e["adsorbate"] + e["slab+adsorbate ghosts"] - e["slab"]
    )
    assert dimer_bsse.bsse < 0


def test_fragment_alone_is_the_molecule_alone(dimer_bsse, tiny, tmp_path):
    """E(adsorbate) is the plain GPAW energy of that molecule at the complex's position and cell."""
    from ligbind.calculators.gpaw import gpaw_calculator, prepare_atoms

    dimer = prepare_atoms(water_dimer(), tiny)
    alone = dimer[dimer.get_tags() > 0]
    alone.calc = gpaw_calculator(tiny, dimer, tmp_path, "alone")
    assert alone.get_potential_energy() == pytest.approx(dimer_bsse.energies["adsorbate"], abs=1e-5)


def test_counterpoise_over_two_mpi_ranks_matches_the_serial_terms(tiny, tmp_path, dimer_bsse):
    from ligbind.protocols import with_run_settings

    two = with_run_settings(tiny, cores=2)
    parallel = counterpoise(_complex(water_dimer(), two), two, workdir=tmp_path)
    for term, energy in dimer_bsse.energies.items():
        assert parallel.energies[term] == pytest.approx(energy, abs=1e-4), term


def test_stored_counterpoise_is_reused_without_a_calculation(tiny, tmp_path, counting_gpaw):
    store = ResultStore(tmp_path / "s.db")
    first = counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=tmp_path / "a")
    assert counting_gpaw.made == 4 and not first.reused
    row = store.get(first.key)
    assert row.kind == "counterpoise" and row.bsse == pytest.approx(first.bsse)
    again = counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=tmp_path / "b")
    assert counting_gpaw.made == 4 and again.reused and again.bsse == pytest.approx(first.bsse)


def test_killed_counterpoise_keeps_its_finished_terms(tiny, tmp_path, counting_gpaw, dimer_bsse):
    store = ResultStore(tmp_path / "s.db")
    counting_gpaw.fail_at = 3  # killed while building the third term's calculator
    with pytest.raises(KeyboardInterrupt):
        counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=tmp_path)
    assert store.count(kind="counterpoise") == 0  # nothing half-done in the store
    counting_gpaw.made, counting_gpaw.fail_at = 0, None
    resumed = counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=tmp_path)
    assert counting_gpaw.made == 2  # only the two terms it had not finished
    assert resumed.bsse == pytest.approx(dimer_bsse.bsse, abs=1e-5)


def test_status_reports_a_counterpoise_in_progress(tiny, tmp_path, counting_gpaw):
    """`ligbind status` on a killed counterpoise (two of four terms finished) and on one in the middle of its
    third term's SCF (that term's GPAW log, cut after its third iteration); nothing once it is stored."""
    import time

    from ligbind.calculators.gpaw import counterpoise_label
    from ligbind.cli import _calculation_line
    from ligbind.engine.fireworks import active_calculations
    from ligbind.io import last_scf_iteration

    store = ResultStore(tmp_path / "s.db")
    c = {"workdir": str(tmp_path), "store": str(tmp_path / "s.db"), "protocol": tiny, "verify": None}
    calcs = tmp_path / "calcs"
    since = time.time() - 1
    counting_gpaw.fail_at = 3
    with pytest.raises(KeyboardInterrupt):
        counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=calcs)
    (killed,) = active_calculations(c, since)
    assert killed["kind"] == "counterpoise" and killed["key"].startswith("counterpoise-")
    assert (killed["terms_done"], killed["terms"], killed["term"]) == (2, 4, None)
    assert _calculation_line(killed).endswith("2 of 4 terms done; last written 0 min ago")

    finished = (calcs / f"{counterpoise_label(killed['key'], COUNTERPOISE_TERMS[1])}.txt").read_text()
    assert last_scf_iteration(calcs / f"{counterpoise_label(killed['key'], COUNTERPOISE_TERMS[1])}.txt") > 3
    lines = finished.splitlines(keepends=True)
    third = next(i for i, line in enumerate(lines) if "iter:   3" in line)
    (calcs / f"{counterpoise_label(killed['key'], 'slab')}.txt").write_text("".join(lines[: third + 1]))
    (running,) = active_calculations(c, since)
    assert (running["terms_done"], running["term"], running["scf_iteration"]) == (2, "slab", 3)
    assert "2 of 4 terms done; 'slab' at SCF iteration 3; last written" in _calculation_line(running)

    counting_gpaw.made, counting_gpaw.fail_at = 0, None
    counterpoise(_complex(water_dimer(), tiny), tiny, store=store, workdir=calcs)
    assert active_calculations(c, since) == []


def test_counterpoise_refuses_what_it_cannot_correct(tiny, tmp_path):
    store = ResultStore(tmp_path / "s.db")
    ml = load_protocol("ml-screen")
    with pytest.raises(LigbindError, match="chgnet backend .*no atom-centred basis"):
        counterpoise(_complex(water_dimer(), ml), ml, store=store, workdir=tmp_path)
    charged = water_dimer()
    charged.info["charge"] = 1
    with pytest.raises(LigbindError, match=r"charged complex \(\+1\) needs its fragments' charges"):
        counterpoise(_complex(charged, tiny), tiny, store=store, workdir=tmp_path)
    with pytest.raises(
        LigbindError, match=r"fragment charges \+1 and \+1 do not add up to the complex's \+1"
    ):
        counterpoise(_complex(charged, tiny), tiny, store=store, workdir=tmp_path, charges=(1, 1))
    exchanged = water_dimer()
    exchanged.info["exchanged_indices"] = "[7]"
    with pytest.raises(LigbindError, match="exchange complex"):
        counterpoise(_complex(exchanged, tiny), tiny, store=store, workdir=tmp_path)
    alone = water_dimer()
    alone.set_tags(0)
    with pytest.raises(LigbindError, match="needs an adsorbate"):
        counterpoise(_complex(alone, tiny), tiny, store=store, workdir=tmp_path)
    assert not list(store.select()) and not list(tmp_path.glob("*.txt"))


def test_counterpoise_applies_to_lcao_only_and_leaves_the_hash(tiny):
    lcao = load_protocol("gpaw-laptop")
    assert backend_of(lcao).wants_counterpoise(lcao)
    pw = load_protocol("gpaw-laptop", {"gpaw": {"mode": "pw"}})  # plane waves: nothing to superpose
    assert not backend_of(pw).wants_counterpoise(pw)
    off = load_protocol("gpaw-laptop", {"gpaw": {"counterpoise": False}})
    assert not backend_of(off).wants_counterpoise(off)
    assert protocol_hash(off) == protocol_hash(lcao)  # every stored relaxation stays valid
    ml = load_protocol("ml-screen")
    assert not backend_of(ml).wants_counterpoise(ml)


def test_bsse_needs_all_four_terms():
    with pytest.raises(EnergyMismatchError, match="slab\\+adsorbate ghosts"):
        counterpoise_bsse({t: -1.0 for t in COUNTERPOISE_TERMS[:3]})


# ------------------------------------------------------------------------------------------ Eb with the BSSE
def _results(protocol):
    slab = Atoms("Pb2", positions=[[0, 0, 5], [2, 2, 5]], cell=[4, 4, 20], pbc=True)
    ligand = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[8, 8, 8])
    configs = []
    for k, energy in enumerate([-13.0, -12.95]):  # config 0 binds 0.05 eV more before the correction
        c = slab + Atoms("H2", positions=[[k, 0, 8], [k, 0, 8.74]])
        c.set_tags([0, 0, 1, 1])
        c.info["config"] = k
        configs.append(Result(f"relax-c{k}", "relax", c, energy, 0.0, True, 3, 3, protocol))

    def term(atoms, energy, key):
        return Result(key, "relax", atoms, energy, 0.0, True, 1, 1, protocol)

    return term(slab, -10.0, "relax-slab"), term(ligand, -2.0, "relax-h2"), configs


@pytest.mark.parametrize("missing", [False, True])
def test_eb_cp_is_the_lowest_corrected_configuration(missing):
    protocol = load_protocol("gpaw-laptop")
    slab, ligand, configs = _results(protocol)
    bsse = {"relax-c0": -0.20} if missing else {"relax-c0": -0.20, "relax-c1": -0.10}
    out = analyse_binding(
        resolve_ligand("methylamine"), "neutral", protocol, slab, ligand, configs, bsse=bsse
    )
    assert out.eb == pytest.approx(-1.0) and out.best_config == 0  # the plain Eb is unchanged
    rows = {c["config"]: c for c in out.configs}
    assert rows[0]["eb_cp"] == pytest.approx(-0.8) and rows[0]["bsse"] == pytest.approx(-0.2)
    if missing:  # a usable configuration without its BSSE: no corrected Eb, and the table says why
        assert out.eb_cp is None and "counterpoise-missing" in out.flags
        return
    # corrected, config 1 binds more: −0.95 + 0.10 = −0.85 against −1.00 + 0.20 = −0.80
    assert out.eb_cp == pytest.approx(-0.85) and out.cp_config == 1 and out.bsse == pytest.approx(-0.1)
    assert Counter(out.flags) == Counter()
    screen = analyse_binding(resolve_ligand("methylamine"), "neutral", protocol, slab, ligand, configs)
    assert screen.eb_cp is None and screen.bsse is None  # no correction asked: none given
    verified = analyse_verification(screen, out)
    assert verified.eb_dft == pytest.approx(-0.85) and verified.eb == verified.eb_dft
    assert verified.eb_dft_uncorrected == pytest.approx(-0.95) and verified.bsse == pytest.approx(-0.1)
    assert verified.dft_config == 1 and "dft-prefers-another-configuration" in verified.flags
    assert np.isclose(verified.eb_dft, verified.eb_dft_uncorrected - verified.bsse)


@pytest.mark.parametrize("counterpoise", [True, False])
def test_campaign_plans_a_counterpoise_step_per_verified_configuration(tmp_path, counterpoise):
    import yaml

    from ligbind.engine.campaign import load_campaign, settings_hash
    from ligbind.engine.fireworks import planned_fireworks

    def campaign(**verify_overrides):
        path = tmp_path / "c.yaml"
        verify = {"protocol": "gpaw-quick", "top_k": 2, "overrides": verify_overrides or None}
        path.write_text(yaml.safe_dump({"name": "c", "ligands": ["methylamine"], "verify": verify}))
        return load_campaign(path)

    c = campaign() if counterpoise else campaign(gpaw={"counterpoise": False})
    names = [fw.name.split(":")[1] for fw, _ in planned_fireworks(c)]
    steps = [n for n in names if "counterpoise" in n]
    # the two of top_k and the reserve's (3 configurations by default; computed only if the reserve relaxes)
    expected = [f"verify-counterpoise/methylamine/{k}" for k in range(3)]
    assert steps == (expected if counterpoise else [])
    # switching it changes what the campaign computes (its analyses run again), not its calculations' keys
    assert (settings_hash(c) == settings_hash(campaign())) is counterpoise


def test_a_dft_campaign_plans_the_counterpoise_of_each_configuration_before_its_eb(tmp_path):
    import yaml

    from ligbind.engine.campaign import load_campaign
    from ligbind.engine.fireworks import planned_fireworks

    path = tmp_path / "d.yaml"
    ligands = [
        "methylamine",
        {"name": "TMSBr", "mode": "exchange"},
    ]  # Br- onto an I site: no molecule to split
    spec = {"name": "d", "protocol": "gpaw-quick", "configs": 2, "ligands": ligands}
    spec["verify"] = {"protocol": "gpaw-laptop", "top_k": 1}
    path.write_text(yaml.safe_dump(spec))
    plan = {fw.name.split(":")[1]: (fw, parents) for fw, parents in planned_fireworks(load_campaign(path))}
    steps = ["counterpoise/methylamine/0", "counterpoise/methylamine/1", "verify-counterpoise/methylamine/0"]
    steps.append("verify-counterpoise/methylamine/1")  # the reserve's (verify.reserve, 1 by default)
    assert [n for n in plan if "counterpoise" in n] == steps
    ids = {n: fw.spec["_ligbind_id"] for n, (fw, _) in plan.items()}
    assert {ids[s] for s in steps[:2]} <= set(plan["binding/methylamine"][1])  # Eb waits for both
    assert ids["reference"] in plan[steps[0]][1]  # judged against the slab reference first
