"""Surface halide vacancies end to end with the ML potential (real CHGNet + D3), and the GPAW input path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.optimize import BFGS

from ligbind.analysis.vacancy import vacancy_flags
from ligbind.builders.slab import surface_halides
from ligbind.builders.vacancies import make_vacancy, surface_halide_sites
from ligbind.calculators import make_calculator
from ligbind.errors import LigbindError
from ligbind.io import write_structure
from ligbind.jobs import Result
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 150}}


def _energy(atoms: Atoms, protocol) -> float:
    """Energy from a fresh calculator of the protocol (not a stored energy)."""
    atoms = atoms.copy()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


def _half_i2(protocol) -> float:
    """½E(I2) computed here: an I2 molecule relaxed in a 12 Å-vacuum box (the slab's), with the calculator."""
    i2 = Atoms("I2", positions=[[0, 0, 0], [0, 0, 2.7]], pbc=True)
    i2.center(vacuum=6.0)
    i2.calc = make_calculator(protocol, atoms=i2)
    BFGS(i2, logfile=None).run(fmax=0.01, steps=100)
    return 0.5 * float(i2.get_potential_energy())


def test_surface_sites_are_one_symmetry_class_on_the_tetragonal_slab(slab_2x2, ml_protocol):
    """All 8 top-surface I of the 2x2 P4/mbm slab are equivalent: one class, and the unrelaxed vacancies
    at two different sites have the same energy (an independent check of the symmetry reduction)."""
    halides = [int(i) for i in surface_halides(slab_2x2)]
    assert len(halides) == 8
    assert surface_halide_sites(slab_2x2) == [halides[0]]
    e = [_energy(make_vacancy(slab_2x2, s), ml_protocol) for s in (halides[0], halides[5])]
    assert e[0] == pytest.approx(e[1], abs=2e-3)


@pytest.fixture(scope="module")
def ml_protocol():
    return load_protocol("ml-screen", FAST)


def test_vacancy_builder_renumbers_and_refuses_non_surface_sites(slab_2x2):
    site = int(surface_halides(slab_2x2)[0])
    defect = make_vacancy(slab_2x2, site)
    assert len(defect) == len(slab_2x2) - 1
    assert defect.get_chemical_formula() == "Cs4I19Pb8"
    fixed_before = sum(len(c.index) for c in slab_2x2.constraints)
    assert sum(len(c.index) for c in defect.constraints) == fixed_before  # a top atom removed: none fixed
    assert np.allclose(json.loads(defect.info["site_position"]), slab_2x2.positions[site], atol=1e-4)
    with pytest.raises(LigbindError, match="site 3 is not a top-surface halide"):
        make_vacancy(slab_2x2, 3)
    with pytest.raises(LigbindError, match="Pb, not a halide"):
        make_vacancy(slab_2x2, [a.index for a in slab_2x2 if a.symbol == "Pb"][0])


def test_symmetry_image_carries_one_hop_endpoint_onto_the_other(slab_2x2):
    """On the bare slab the two ends of a hop are related by a symmetry of the host: the image of a distorted
    initial state is a final state (atoms in the final's order, the migrating one on the vacancy site) with the
    same energy under any potential; a host without that symmetry gives none."""
    from ase.calculators.lj import LennardJones
    from ase.geometry import find_mic

    from ligbind.builders.vacancies import migration_endpoints, symmetry_image
    from ligbind.recipes.defects import choose_hop

    site, hopper = choose_hop(slab_2x2, None, None)
    initial, final = migration_endpoints(slab_2x2, site, hopper)
    distorted = initial.copy()
    distorted.positions += np.random.default_rng(0).normal(0.0, 0.05, distorted.positions.shape)
    shift = 0.5 * initial.info["hop_length"]
    image = symmetry_image(slab_2x2, distorted, final, shift)
    assert image is not None and image.get_chemical_symbols() == final.get_chemical_symbols()
    assert np.linalg.norm(image.positions - final.positions, axis=1).max() < 0.3
    on_site, _ = find_mic(
        image.positions[initial.info["migrating"]] - slab_2x2.positions[site], slab_2x2.cell
    )
    assert np.linalg.norm(on_site) < 0.3

    def lj(atoms: Atoms) -> float:
        atoms = atoms.copy()
        atoms.calc = LennardJones(sigma=3.0, rc=7.0)
        return atoms.get_potential_energy()

    assert lj(image) == pytest.approx(lj(distorted), abs=1e-6)
    assert lj(image) != pytest.approx(lj(final), abs=1e-3)  # a different state of the final endpoint
    assert (
        symmetry_image(slab_2x2, initial, initial, shift) is not None
    )  # the identity maps a state onto itself
    broken = slab_2x2.copy()
    broken.positions[0] += [0.37, 0.23, 0.0]  # no operation of this host relates the two sites any more
    initial, final = migration_endpoints(broken, site, hopper)
    assert symmetry_image(broken, initial, final, shift) is None


def test_refilled_vacancy_is_flagged(slab_2x2):
    """A neighbouring iodide moved onto the vacant site: the vacancy moved, the row is flagged."""
    site, neighbour = (int(i) for i in surface_halides(slab_2x2)[:2])
    defect = make_vacancy(slab_2x2, site)
    r = Result("k", "relax", defect, 0.0, 0.0, True, 1, 1, {})
    assert vacancy_flags(1.0, r) == []
    moved = defect.copy()
    moved.positions[neighbour - 1] = slab_2x2.positions[site] + [0.3, 0, 0]
    assert "vacancy-refilled" in vacancy_flags(1.0, Result("k", "relax", moved, 0.0, 0.0, True, 1, 1, {}))
    assert "below-pristine" in vacancy_flags(-0.2, r)


@pytest.mark.slow
def test_vacancy_cli_bare_and_with_ligand(tmp_path, run_cli, slab_2x2, ml_protocol):
    write_structure(tmp_path / "slab.extxyz", slab_2x2)
    args = ["vacancy", "--slab", "slab.extxyz", "--ligand", "methylamine", "--configs", "1", "--sites", "1",
            "--protocol", "ml-screen", "--set", json.dumps(FAST), "--json"]  # fmt: skip
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    bare, lig = out["bare"], out["with_ligand"]
    # the reference is explicit: μ_I = ½E(I2) + 0
    ref = bare["references"]["I"]
    assert ref["mu_x"] == pytest.approx(0.5 * ref["e_x2"], abs=1e-9)
    half_i2 = _half_i2(ml_protocol)
    assert ref["mu_x"] == pytest.approx(half_i2, abs=5e-3)

    # E_vac = E(slab − I) + ½E(I2) − E(slab), assembled here from fresh energies of the stored structures
    store = ResultStore(tmp_path / "ligbind.db")
    for host in (bare, lig):
        host_row = store.get(host["host_key"])
        e_host = _energy(host_row.toatoms(), ml_protocol)
        (site,) = host["sites"]
        defect_row = store.get(site["key"])
        assert defect_row.natoms == host_row.natoms - 1
        e_vac = _energy(defect_row.toatoms(), ml_protocol) + half_i2 - e_host
        assert site["e_vac"] == pytest.approx(e_vac, abs=1e-2)
        assert host["e_vac"] == pytest.approx(site["e_vac"], abs=1e-9)  # one usable site: it is E_vac
        assert 0.3 < host["e_vac"] < 5.0  # costs energy, less than tearing the surface apart
    # the ligand host's vacancy is the top iodide nearest the methylamine N
    assert 0 < lig["sites"][0]["near_ligand"] < 6.0
    assert out["delta_e_vac"] == pytest.approx(lig["e_vac"] - bare["e_vac"], abs=1e-9)

    # another chemical potential: E_vac shifts by exactly Δμ, nothing is recomputed
    relaxations = store.count(kind="relax")
    proc = run_cli(*args[:-1], "--mu-x", "-0.9", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shifted = json.loads(proc.stdout)
    assert shifted["bare"]["e_vac"] == pytest.approx(bare["e_vac"] - 0.9, abs=1e-9)
    assert shifted["bare"]["references"]["I"]["mu_x"] == pytest.approx(ref["mu_x"] - 0.9, abs=1e-9)
    assert shifted["delta_e_vac"] == pytest.approx(out["delta_e_vac"], abs=1e-9)
    assert ResultStore(tmp_path / "ligbind.db").count(kind="relax") == relaxations

    # the text table names the reference
    text = run_cli(*args[:-1], cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "μ_I = ½E(I2)" in text.stdout and "ΔE_vac" in text.stdout


# ---------------------------------------------------------------------------------------- GPAW input path
def test_gpaw_vacancy_input_path(slab_2x2, tmp_path):
    """Neutral I vacancy: odd electron count. Spin-paired GPAW refuses it before any work; spin-polarised
    GPAW starts it with 1 μB; a +1 vacancy (even count) is accepted spin-paired and carries its charge."""
    from ligbind.calculators import backend_of
    from ligbind.calculators.gpaw import gpaw_calculator
    from ligbind.recipes.defects import check_defect_input

    tiny = {"gpaw": {"basis": "sz(dzp)", "h": 0.3}, "prerelax": None, "run": {"cores": 1}}
    paired = load_protocol("gpaw-quick", tiny)
    spin = load_protocol("gpaw-quick", {**tiny, "gpaw": {**tiny["gpaw"], "spinpol": True}})
    defect = make_vacancy(slab_2x2, int(surface_halides(slab_2x2)[0]))
    n = int(defect.numbers.sum())
    assert n % 2 == 1
    with pytest.raises(LigbindError, match=rf"odd electron count \({n}\) and gpaw-quick is spin-paired"):
        check_defect_input(defect, paired)
    check_defect_input(defect, spin)
    prepared = backend_of(spin).prepare(defect, spin)
    assert prepared.get_initial_magnetic_moments().sum() == pytest.approx(1.0)
    check_defect_input(defect, paired, charge=1)
    charged = defect.copy()
    charged.info["charge"] = 1
    params = gpaw_calculator(
        paired, backend_of(paired).prepare(charged, paired), tmp_path, "x"
    ).parameters.todict()
    assert params["charge"] == 1 and not params["spinpol"]


@pytest.mark.slow
def test_gpaw_vacancy_energy_on_a_tiny_slab(tmp_path):
    """Real GPAW (LCAO sz, h 0.35, spin-polarised for every term) on a one-layer Pb4I8 slab, each structure at
    its built geometry (fmax 10 eV/Å: a single-point relaxation). E_vac is assembled here from GPAW's own
    log energies plus D3 computed separately, not from the energies ligbind stored."""
    from gpaw_checks import log_energy_plus_d3

    from ligbind.builders.slab import build_slab
    from ligbind.recipes.defects import vacancy

    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=1, vacuum=6.0, fix_layers=0)
    assert slab.get_chemical_formula() == "I8Pb4"
    tiny = {"basis": "sz(dzp)", "h": 0.35, "spinpol": True}
    over = {"gpaw": tiny, "prerelax": None, "run": {"cores": 1}, "relax": {"fmax": 10.0, "steps": 1}}
    protocol = load_protocol("gpaw-quick", over)
    store = ResultStore(tmp_path / "g.db")
    out = vacancy(slab, protocol, max_sites=1, store=store, workdir=tmp_path / "runs")
    (site,) = out.bare["sites"]
    assert site["status"] == "converged" and site["flags"] == []

    def energy(key: str) -> float:
        return log_energy_plus_d3(tmp_path / "runs", store, key, protocol)

    e_vac = (
        energy(site["key"]) + 0.5 * energy(out.bare["references"]["I"]["key"]) - energy(out.bare["host_key"])
    )
    assert out.bare["e_vac"] == pytest.approx(e_vac, abs=2e-3)
    assert 0.3 < out.bare["e_vac"] < 5.0
    # an LCAO E_vac is not counterpoise-corrected: its table says so (an ML one does not: test_defect_campaign)
    from ligbind.analysis.defect_tables import write_defect_tables

    table = write_defect_tables(store, tmp_path)["defects_md"].read_text()
    assert "Rows of gpaw-quick (an atom-centred basis) carry a basis-set superposition error" in table


def test_mixed_halides_compare_like_with_like():
    """A mixed-halide bare slab samples both halides first; ΔE_vac pairs a ligand host's I vacancy with the
    bare slab's I vacancy (never with a Br one), and is None when the bare slab has no usable I vacancy."""
    from ligbind.analysis.vacancy import analyse_vacancy
    from ligbind.builders.slab import build_slab

    slab = build_slab(
        "CsPbI3", "tetragonal", "2x2", layers=3, vacuum=12.0, fix_layers=1, br_fraction=0.33, seed=1
    )
    sites = surface_halide_sites(slab, 2)
    assert sorted(slab[i].symbol for i in sites) == ["Br", "I"]
    by_el = {slab[i].symbol: i for i in sites}

    def result(atoms, energy):
        return Result("k" + str(energy), "relax", atoms, energy, 0.0, True, 1, 1, {})

    protocol = load_protocol("ml-screen")
    host = result(slab, -100.0)
    refs = {"I": result(Atoms("I2"), -3.0), "Br": result(Atoms("Br2"), -3.2)}
    vac = {el: make_vacancy(slab, i) for el, i in by_el.items()}
    # E_vac(I) = -97.0 + (-1.5) + 100 = 1.5 ; E_vac(Br) = -97.5 + (-1.6) + 100 = 0.9
    bare = analyse_vacancy(
        host,
        [(vac["I"].info, result(vac["I"], -97.0)), (vac["Br"].info, result(vac["Br"], -97.5))],
        refs,
        protocol,
    )
    assert bare.e_vac == pytest.approx(0.9) and bare.element == "Br"
    # a "ligand host" (same structure here) whose only usable vacancy is I at E_vac = 1.7
    lig = analyse_vacancy(
        host, [(vac["I"].info, result(vac["I"], -96.8))], refs, protocol, ligand="L", bare=bare
    )
    assert lig.element == "I" and lig.e_vac_bare == pytest.approx(1.5)
    assert lig.delta_e_vac == pytest.approx(0.2)
    bare_br_only = analyse_vacancy(host, [(vac["Br"].info, result(vac["Br"], -97.5))], refs, protocol)
    lig2 = analyse_vacancy(
        host, [(vac["I"].info, result(vac["I"], -96.8))], refs, protocol, ligand="L", bare=bare_br_only
    )
    assert lig2.delta_e_vac is None and lig2.e_vac_bare is None


def test_refill_vacancy_puts_the_halide_back(slab_2x2):
    from ligbind.builders.vacancies import refill_vacancy

    site = int(surface_halides(slab_2x2)[0])
    vac = make_vacancy(slab_2x2, site)
    vac.positions += 0.05  # relaxed: every atom somewhere else
    start = refill_vacancy(vac, slab_2x2, site)
    assert start.get_chemical_symbols() == slab_2x2.get_chemical_symbols()
    np.testing.assert_allclose(start.positions[site], slab_2x2.positions[site])
    np.testing.assert_allclose(np.delete(start.positions, site, axis=0), vac.positions)
    assert [c.todict() for c in start.constraints] == [c.todict() for c in slab_2x2.constraints]
    refilled = vac.copy()  # a neighbour moved into the site: the vacancy is elsewhere now
    neighbour = int(surface_halides(slab_2x2)[1]) - 1  # its index in the vacancy (one atom less before it)
    refilled.positions[neighbour] = slab_2x2.positions[site] + [0.4, 0, 0]
    assert refill_vacancy(refilled, slab_2x2, site) is None
    assert refill_vacancy(vac[:-1], slab_2x2, site) is None  # not the host less that atom


def test_a_host_above_its_refilled_vacancy_is_replaced(tmp_path, ml_protocol):
    """A host left far from its minimum: E_vac against it is far too low; with host refinement the lowest
    vacancy is refilled and relaxed as the host, and E_vac is taken against that host (recomputed here from the
    stored structures and an I2 relaxed here), in the row of the host it started from."""
    from ligbind.analysis.frenkel import HOST_TOLERANCE
    from ligbind.analysis.vacancy import vacancy_key
    from ligbind.builders.slab import build_slab
    from ligbind.jobs import relax
    from ligbind.recipes.defects import (
        relax_reference,
        relax_vacancy,
        vacancy_on_lowest_host,
        vacancy_structures,
    )

    store = ResultStore(tmp_path / "ligbind.db")
    shaken = build_slab()
    shaken.rattle(0.25, seed=3)
    shaken.info["label"] = "shaken slab"
    host = relax(shaken, load_protocol("ml-screen", {"relax": {"fmax": 10.0}}), store=store, workdir=tmp_path)
    assert host.converged and host.n_steps <= 1
    (defect,) = vacancy_structures(host, None, 1, "x")
    sites = [(defect.info, relax_vacancy(defect, ml_protocol, store, tmp_path))]
    refs = {"I": relax_reference("I", shaken, ml_protocol, store, tmp_path)}

    flat = vacancy_on_lowest_host(host, sites, refs, ml_protocol, store, tmp_path, refinements=0)
    out = vacancy_on_lowest_host(host, sites, refs, ml_protocol, store, tmp_path, refinements=1)
    (round_,) = out.host_refinements
    assert round_["lower"] and round_["site"] == defect.info["site"]
    assert out.host_drop == pytest.approx(host.energy - out.e_host) and out.host_drop > HOST_TOLERANCE
    assert flat.e_vac is None and "below-pristine" in flat.sites[0]["flags"]  # against the shaken host
    assert out.sites[0]["e_vac"] == pytest.approx(flat.sites[0]["e_vac"] + out.host_drop, abs=1e-6)
    lower = store.get(out.host_key)
    assert lower.toatoms().get_chemical_symbols() == host.atoms.get_chemical_symbols()
    e_vac = _energy(store.get(sites[0][1].key).toatoms(), ml_protocol) + _half_i2(ml_protocol)
    assert out.e_vac == pytest.approx(e_vac - _energy(lower.toatoms(), ml_protocol), abs=0.02)
    assert 0.5 < out.e_vac < 5.0  # an ordinary vacancy cost, unlike against the shaken host
    assert out.key == vacancy_key(host, None, 0.0, 0)

    # a Frenkel analysis of the same host that found no lower host: its row shows the gap to the vacancy's host
    from ligbind.analysis.defect_tables import vacancy_table
    from ligbind.analysis.tables import frenkel_table
    from ligbind.recipes import frenkel_on_lowest_host, frenkel_structures

    pairs = [
        (d.info, relax(d, ml_protocol, store=store, workdir=tmp_path))
        for d in frenkel_structures(host, 1, "x")
    ]
    frenkel_on_lowest_host(host, pairs, ml_protocol, store, tmp_path, refinements=0)
    (fr,) = frenkel_table(store).to_dict("records")
    assert fr["host_gap"] == pytest.approx(out.host_drop)
    (vac,) = vacancy_table(store).to_dict("records")
    assert pd.isna(vac["host_gap"]) and vac["host_drop"] == pytest.approx(out.host_drop)


def test_passivation_and_binding_tables_use_the_lowest_host(tmp_path, ml_protocol):
    """A vacancy analysis that relaxes the slab again lower moves E_pass by that drop (recomputed here from the
    stored terms against the lower host), and the binding table shows the drop beside Eb."""
    from ligbind.analysis.passivation import passivation_table
    from ligbind.analysis.tables import binding_table
    from ligbind.builders.slab import build_slab
    from ligbind.recipes import bind, relax_slab
    from ligbind.recipes.defects import (
        relax_reference,
        relax_vacancy,
        vacancy_on_lowest_host,
        vacancy_structures,
    )
    from ligbind.recipes.passivation import passivation

    loose = load_protocol("ml-screen", {"relax": {"fmax": 10.0}})  # leaves the shaken slab where it is
    store = ResultStore(tmp_path / "ligbind.db")
    shaken = build_slab()
    shaken.rattle(0.25, seed=3)
    shaken.info["label"] = "shaken slab"
    bind(shaken, "methylamine", loose, n_configs=1, store=store, workdir=tmp_path)
    passivation(shaken, loose, mode="hollow", max_arrangements=1, store=store, workdir=tmp_path)
    before = passivation_table(store).iloc[0]
    assert pd.isna(before["slab_drop"]) and pd.isna(before["treated_drop"])
    assert pd.isna(binding_table(store).iloc[0]["slab_drop"])

    host = relax_slab(shaken, loose, store, tmp_path)  # the stored slab every analysis above used
    (defect,) = vacancy_structures(host, None, 1, "x")
    sites = [(defect.info, relax_vacancy(defect, ml_protocol, store, tmp_path))]
    refs = {"I": relax_reference("I", shaken, ml_protocol, store, tmp_path)}
    out = vacancy_on_lowest_host(host, sites, refs, ml_protocol, store, tmp_path, refinements=1)
    assert out.host_drop > 0.1

    (row,) = passivation_table(store).to_dict("records")
    (stored,) = store.select(kind="passivation")
    o = stored.data["outcome"]
    assert row["slab_drop"] == pytest.approx(out.host_drop) and pd.isna(row["treated_drop"])
    by_hand = store.get(o["best_key"]).energy - store.get(out.host_key).energy
    by_hand -= store.get(o["references"]["KBr"]["key"]).energy
    assert row["e_pass"] == pytest.approx(by_hand, abs=1e-6) and row["e_pass_per_k"] == row["e_pass"]
    assert row["e_pass"] == pytest.approx(stored.e_pass + out.host_drop, abs=1e-6)  # the stored row is kept
    (eb,) = binding_table(store).to_dict("records")
    assert eb["slab_drop"] == pytest.approx(out.host_drop) and pd.isna(eb["complex_drop"])
