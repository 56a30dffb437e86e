"""Real GPAW on tiny systems (LCAO sz(dzp), h = 0.3 Å, 3 Å vacuum): energies, logs, spin, SCF retry,
dipole layer, relaxation restart. Each test stays well under a minute of CPU on one core.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import Trajectory
from dftd3.ase import DFTD3

import ligbind.calculators.gpaw as gpaw_backend
import ligbind.jobs
from ligbind.builders.slab import build_slab
from ligbind.calculators.gpaw import electron_count, needs_dipole_correction, prepare_atoms
from ligbind.errors import LigbindError, UnconvergedError
from ligbind.jobs import relax, single_point
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

pytestmark = pytest.mark.slow

# serial, in-process (tests patch the calculator factory); the MPI path has its own test below
TINY = {"gpaw": {"basis": "sz(dzp)", "h": 0.3}, "prerelax": None, "run": {"cores": 1}}


@pytest.fixture(scope="module")
def tiny() -> dict:
    return load_protocol("gpaw-laptop", TINY)


def water() -> Atoms:
    atoms = molecule("H2O")
    atoms.center(vacuum=3.0)
    return atoms


def stretched_h2(d: float = 0.9) -> Atoms:
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, d]])
    atoms.center(vacuum=3.0)
    return atoms


def log_energy(path) -> float:
    """GPAW's own total energy (no D3) from its text log."""
    return float(re.findall(r"Extrapolated:\s+(-?\d+\.\d+)", path.read_text())[-1])


def log_dipole(path) -> np.ndarray:
    found = re.findall(r"dipole moment: \((.+?)\)", path.read_text())
    return np.array([float(x) for x in found[-1].split(",")])


class AttemptSpy:
    """Wraps gpaw_calculator; attempts listed in ``starve`` get maxiter=2 so their SCF cannot converge."""

    def __init__(self, monkeypatch, starve: tuple[int, ...] = ()):
        self.attempts: list[int] = []
        real = gpaw_backend.gpaw_calculator

        def patched(protocol, atoms, directory, label, attempt=0):
            self.attempts.append(attempt)
            if attempt in starve:
                protocol = {**protocol, "gpaw": {**protocol["gpaw"], "maxiter": 2}}
            return real(protocol, atoms, directory, label, attempt)

        monkeypatch.setattr(gpaw_backend, "gpaw_calculator", patched)


# ------------------------------------------------------------------------------------------ single point
def test_water_single_point_energy_log_and_d3(tiny, tmp_path):
    store = ResultStore(tmp_path / "s.db")
    r = single_point(water(), tiny, store=store, workdir=tmp_path / "runs")
    assert np.isfinite(r.energy) and r.converged and r.force_calls == 1
    log = tmp_path / "runs" / f"{r.key}.txt"
    assert log.is_file() and "sz(dzp)" in log.read_text()
    # total = GPAW PBE energy (from its own log) + D3(BJ) energy of the same atoms: D3 added exactly once
    d3 = water()
    d3.calc = DFTD3(method="pbe", damping="d3bj")
    e_d3 = d3.get_potential_energy()
    assert -0.05 < e_d3 < 0
    assert r.energy == pytest.approx(log_energy(log) + e_d3, abs=1e-5)
    assert -8.0 < r.energy < -6.0  # PBE/LCAO-sz water vs GPAW's atomic references
    row = store.get(r.key)
    assert row.backend == "gpaw" and row.protocol == "gpaw-laptop" and row.status == "converged"
    assert row.data["protocol"]["gpaw"]["basis"] == "sz(dzp)"


def test_molecules_get_no_periodicity_and_no_dipole_layer(tiny, tmp_path):
    prepared = prepare_atoms(water(), tiny)
    assert not prepared.pbc.any()
    params = gpaw_backend.gpaw_calculator(tiny, prepared, tmp_path, "x").parameters.todict()
    assert "poissonsolver" not in params and params["basis"] == {"default": "sz(dzp)"}


# ---------------------------------------------------------------------------------------------- spin
def kbr(repeat: int = 1) -> Atoms:
    from ligbind.analysis.passivation import reference_structure

    atoms = reference_structure("KBr").repeat(repeat)
    atoms.info["label"] = f"KBr x{repeat}"
    return atoms


def test_a_crystal_stays_periodic_on_k_points_and_its_supercell_agrees(tiny, tmp_path):
    """A bulk salt (a passivation reference) is computed periodic on the k-point mesh of gpaw.bulk_kpt_density,
    with the point group reducing it, not as a cluster in a box: its 2x2x2 supercell, on half the mesh along
    each axis (the same sampling), gives eight times the primitive cell's energy."""
    protocol = load_protocol(tiny, {"gpaw": {"bulk_kpt_density": 2.0}})
    prepared = prepare_atoms(kbr(), protocol)
    assert prepared.pbc.all() and np.allclose(prepared.positions, kbr().positions)
    params = gpaw_backend.gpaw_calculator(protocol, prepared, tmp_path, "x").parameters.todict()
    assert params["kpts"] == {"density": 2.0, "gamma": True} and params["symmetry"] != "off"  # GPAW default
    assert "forces" not in params["convergence"]  # on symmetry-fixed sites: no SCF force criterion
    store = ResultStore(tmp_path / "s.db")
    cell = single_point(kbr(), protocol, store=store, workdir=tmp_path / "runs")
    supercell = single_point(kbr(2), protocol, store=store, workdir=tmp_path / "runs")
    meshes = [
        re.findall(r"Number of BZ points: (\d+)", (tmp_path / "runs" / f"{r.key}.txt").read_text())[-1]
        for r in (cell, supercell)
    ]
    assert meshes == ["64", "8"]  # 4x4x4 on the primitive cell, 2x2x2 on the supercell
    assert supercell.energy / 8 == pytest.approx(cell.energy, abs=0.005)
    gamma = single_point(kbr(), load_protocol(tiny, {"gpaw": {"bulk_kpt_density": 0.1}}), workdir=tmp_path)
    assert abs(gamma.energy - cell.energy) > 0.1  # Γ alone: what the slab setting would have given, far off


def test_a_crystal_without_bulk_k_points_is_refused_before_any_work(tiny, tmp_path):
    store = ResultStore(tmp_path / "s.db")
    with pytest.raises(LigbindError, match=r"KBr x1 is a bulk crystal.*gpaw\.bulk_kpt_density"):
        relax(kbr(), load_protocol(tiny, {"gpaw": {"bulk_kpt_density": None}}), store=store, workdir=tmp_path)
    assert not list(store.select()) and not list(tmp_path.glob("**/*.txt"))


def test_odd_electron_count_without_spin_is_refused_before_any_work(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(ligbind.jobs, "make_calculator", lambda *a, **k: made.append(1))
    hydroxyl = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.98]])
    hydroxyl.center(vacuum=3.0)
    assert electron_count(hydroxyl) == 9
    store = ResultStore(tmp_path / "s.db")
    # with the preset's ML pre-relaxation switched on: refused before it runs (no ML row either)
    laptop = load_protocol("gpaw-laptop", {"gpaw": {"basis": "sz(dzp)", "h": 0.3}, "run": {"cores": 1}})
    assert laptop["prerelax"] == "ml-screen"
    for job in (relax, single_point):
        with pytest.raises(LigbindError, match=r"odd number of electrons \(9, charge \+0\)") as err:
            job(hydroxyl, laptop, store=store, workdir=tmp_path / "runs")
        assert "spinpol" in str(err.value)
    assert store.count() == 0 and not made
    # the hydroxide anion has 10 electrons: accepted by the check
    anion = hydroxyl.copy()
    anion.info["charge"] = -1
    assert electron_count(anion, -1) == 10
    gpaw_backend.check_spin(anion, -1, spinpol=False)


def test_odd_electron_count_runs_spin_polarised(tiny, tmp_path):
    hydroxyl = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.98]])
    hydroxyl.center(vacuum=3.0)
    spin = load_protocol(tiny, {"gpaw": {"spinpol": True}})
    r = single_point(hydroxyl, spin, store=ResultStore(tmp_path / "s.db"), workdir=tmp_path / "runs")
    assert np.isfinite(r.energy) and r.converged
    text = (tmp_path / "runs" / f"{r.key}.txt").read_text()
    magmom = [float(x) for x in re.findall(r"Total magnetic moment: \((.+?)\)", text)[-1].split(",")]
    assert np.linalg.norm(magmom) == pytest.approx(1.0, abs=0.05)  # one unpaired electron, not a smeared 0
    assert not hydroxyl.get_initial_magnetic_moments().any()  # the caller's atoms are not modified


# ---------------------------------------------------------------------------------------------- SCF
def test_scf_failure_is_retried_with_softer_mixing(tiny, tmp_path, monkeypatch):
    reference = single_point(water(), tiny, workdir=tmp_path / "ref")
    spy = AttemptSpy(monkeypatch, starve=(0,))
    store = ResultStore(tmp_path / "s.db")
    r = single_point(water(), tiny, store=store, workdir=tmp_path / "runs")
    assert spy.attempts == [0, 1]
    assert r.converged and r.energy == pytest.approx(reference.energy, abs=2e-3)
    row = store.get(r.key)
    assert row.status == "converged" and row.energy == pytest.approx(r.energy)
    # the retry used the first softer mixer of the protocol
    assert tiny["gpaw"]["scf_retries"][0]["beta"] < tiny["gpaw"]["mixer"]["beta"]


def test_relaxation_retries_scf_and_keeps_counting_steps(tiny, tmp_path, monkeypatch):
    spy = AttemptSpy(monkeypatch, starve=(0,))
    store = ResultStore(tmp_path / "s.db")
    r = relax(stretched_h2(), tiny, store=store, workdir=tmp_path / "runs")
    assert spy.attempts == [0, 1]
    assert r.converged and r.fmax <= 0.05
    assert len(Trajectory(str(tmp_path / "runs" / f"{r.key}.traj"))) == r.n_steps + 1
    assert store.get(r.key).status == "converged"


def test_scf_that_never_converges_raises_and_stores_nothing(tiny, tmp_path, monkeypatch):
    n = 1 + len(tiny["gpaw"]["scf_retries"])
    spy = AttemptSpy(monkeypatch, starve=tuple(range(n)))
    store = ResultStore(tmp_path / "s.db")
    with pytest.raises(UnconvergedError, match=f"SCF did not converge after {n} mixer settings"):
        single_point(water(), tiny, store=store, workdir=tmp_path / "runs")
    assert spy.attempts == list(range(n))
    assert store.count() == 0


# -------------------------------------------------------------------------------------------- dipole
def test_dipole_layer_only_for_asymmetric_slabs(tiny, tmp_path):
    symmetric = build_slab(phase="cubic", size=(1, 1), layers=3, vacuum=8.0, fix_layers=0)
    asymmetric = build_slab(phase="cubic", size=(1, 1), layers=2, vacuum=8.0, fix_layers=0)
    assert symmetric.info["termination"] == "PbI2/PbI2" and asymmetric.info["termination"] == "PbI2/CsI"
    assert not needs_dipole_correction(symmetric)
    assert needs_dipole_correction(asymmetric)
    assert needs_dipole_correction(symmetric, True) and not needs_dipole_correction(asymmetric, False)
    with_adsorbate = symmetric.copy()
    with_adsorbate += Atoms(
        "H", positions=[symmetric.positions[symmetric.positions[:, 2].argmax()] + [0, 0, 3]]
    )
    with_adsorbate.set_tags([0] * len(symmetric) + [1])
    assert needs_dipole_correction(with_adsorbate)  # any adsorbate makes the faces differ

    for slab, dipole in ((symmetric, False), (asymmetric, True)):
        prepared = prepare_atoms(slab, tiny)
        assert tuple(prepared.pbc) == (True, True, not dipole)
        params = gpaw_backend.gpaw_calculator(tiny, prepared, tmp_path, "p").parameters.todict()
        assert ("poissonsolver" in params) is dipole
        if dipole:
            assert params["poissonsolver"]["dipolelayer"] == "xy", params["poissonsolver"]
    forced_off = load_protocol(tiny, {"gpaw": {"dipole_correction": False}})
    off = gpaw_backend.gpaw_calculator(forced_off, asymmetric, tmp_path, "p").parameters.todict()
    assert "poissonsolver" not in off


def test_asymmetric_slab_runs_with_dipole_layer_and_has_a_z_dipole(tiny, tmp_path):
    """CsPbI3 1x1, PbI2/CsI (5 atoms): the dipole layer is on and the slab has a z dipole; the symmetric
    PbI2/CsI/PbI2 slab has none by symmetry."""
    store = ResultStore(tmp_path / "s.db")
    asym = build_slab(phase="cubic", size=(1, 1), layers=2, vacuum=8.0, fix_layers=0)
    sym = build_slab(phase="cubic", size=(1, 1), layers=3, vacuum=8.0, fix_layers=0)
    r_asym = single_point(asym, tiny, store=store, workdir=tmp_path / "runs")
    r_sym = single_point(sym, tiny, store=store, workdir=tmp_path / "runs")
    log_asym = tmp_path / "runs" / f"{r_asym.key}.txt"
    log_sym = tmp_path / "runs" / f"{r_sym.key}.txt"
    assert "Dipole correction along z-axis" in log_asym.read_text()
    assert "Dipole correction" not in log_sym.read_text()
    assert abs(log_dipole(log_asym)[2]) > 0.1  # e·Å
    assert abs(log_dipole(log_sym)[2]) < 1e-3
    assert np.isfinite(r_asym.energy) and np.isfinite(r_sym.energy)
    # adding a PbI2 layer to the slab binds it: E(sym) < E(asym) by several eV
    assert r_sym.energy < r_asym.energy - 5.0


def test_scaled_dipole_layer_gives_gpaw_energy_and_forces(tiny, tmp_path, monkeypatch):
    """ligbind's dipole layer reuses GPAW's correction profile across Poisson solves: same numbers as GPAW's own
    ``{'dipolelayer': 'xy'}`` on an asymmetric slab with an adsorbate, after it moved once."""
    slab = build_slab(phase="cubic", size=(1, 1), layers=2, vacuum=8.0, fix_layers=0)
    top = slab.positions[slab.positions[:, 2].argmax()]
    atoms = slab + Atoms("H2", positions=[top + [0.3, 0.2, 2.2], top + [0.3, 0.2, 2.95]])
    atoms.set_tags([0] * len(slab) + [1, 1])
    atoms = prepare_atoms(atoms, tiny)

    def energy_and_forces(label: str) -> list[np.ndarray]:
        calc = gpaw_backend.gpaw_calculator(tiny, atoms, tmp_path, label)
        moved = atoms.copy()
        moved.calc = calc
        out = [moved.get_potential_energy(), moved.get_forces()]
        moved.positions[-1] += [0.0, 0.0, 0.1]  # same calculator, new positions: the stored profile is reused
        return [*out, moved.get_potential_energy(), moved.get_forces()]

    scaled = energy_and_forces("scaled")
    assert "Dipole correction along z-axis" in (tmp_path / "scaled.txt").read_text()
    monkeypatch.setattr(gpaw_backend, "dipole_layer", lambda: {"dipolelayer": "xy"})
    plain = energy_and_forces("plain")
    assert abs(scaled[0] - scaled[2]) > 1e-3  # the move changed the energy
    for a, b in zip(scaled, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------- relaxation restart
def test_gpaw_relaxation_resumes_from_its_trajectory(tiny, tmp_path, monkeypatch):
    uninterrupted = relax(stretched_h2(), tiny, workdir=tmp_path / "ref")
    assert uninterrupted.converged and uninterrupted.n_steps >= 3
    d = uninterrupted.atoms.get_distance(0, 1)
    assert 0.70 < d < 1.05  # H–H bond with a single-zeta basis

    runs = tmp_path / "runs"
    real = ligbind.jobs.make_calculator
    calls = []

    def killing(*args, **kwargs):
        calc = real(*args, **kwargs)
        original = calc.calculate

        def calculate(*a, **k):
            if len(calls) == 3:
                raise KeyboardInterrupt("simulated kill")
            calls.append(1)
            return original(*a, **k)

        calc.calculate = calculate
        return calc

    monkeypatch.setattr(ligbind.jobs, "make_calculator", killing)
    store = ResultStore(tmp_path / "s.db")
    with pytest.raises(KeyboardInterrupt):
        relax(stretched_h2(), tiny, store=store, workdir=runs)
    assert store.count() == 0
    traj = runs / f"{uninterrupted.key}.traj"
    assert len(Trajectory(str(traj))) == 3
    monkeypatch.setattr(ligbind.jobs, "make_calculator", real)
    resumed = relax(stretched_h2(), tiny, store=store, workdir=runs)
    assert resumed.converged
    # a fresh SCF at the resumed geometry vs a continued one: equal within SCF/fmax tolerance
    assert resumed.energy == pytest.approx(uninterrupted.energy, abs=1e-3)
    assert resumed.atoms.get_distance(0, 1) == pytest.approx(d, abs=0.01)
    # the stored count is the total of both runs (3 before the kill); the resumed run alone continued
    assert resumed.force_calls > 3 and resumed.force_calls - 3 < uninterrupted.force_calls
    # GPAW's text log of the killed run is kept: the resumed run appends its own after it
    assert (runs / f"{uninterrupted.key}.txt").read_text().count("Input parameters") == 2
    assert store.get(resumed.key).status == "converged"

    # a finished trajectory (row lost) restarts at its last frame: one evaluation, the same energy
    again = relax(stretched_h2(), tiny, workdir=runs)
    assert again.force_calls == resumed.force_calls + 1 and again.converged  # the total: one more evaluation
    assert again.energy == pytest.approx(resumed.energy, abs=1e-4)


def test_gpaw_relaxation_is_prerelaxed_with_ml_screen(tmp_path):
    laptop = load_protocol("gpaw-laptop", {"gpaw": {"basis": "sz(dzp)", "h": 0.3}, "run": {"cores": 1}})
    store = ResultStore(tmp_path / "s.db")
    r = relax(stretched_h2(1.2), laptop, store=store, workdir=tmp_path / "runs")
    assert r.converged and r.prerelax["protocol"] == "ml-screen" and r.prerelax["status"] == "converged"
    pre = store.get(r.prerelax["key"])
    assert pre.backend == "chgnet" and pre.protocol == "ml-screen"
    # the DFT relaxation starts where the ML one ended
    first = Trajectory(str(tmp_path / "runs" / f"{r.key}.traj"))[0]
    assert np.allclose(first.positions, pre.positions, atol=1e-8)
    assert store.count(kind="relax") == 2
    assert store.get(r.key).data["prerelax"]["key"] == r.prerelax["key"]


def test_gpaw_relaxation_over_two_mpi_ranks_matches_the_serial_one(tmp_path, tiny):
    """run.cores 2: the relaxation runs as an mpiexec job (GPAW built with MPI); same minimum, same energy."""
    from ligbind.protocols import with_run_settings

    serial = relax(stretched_h2(), tiny, workdir=tmp_path / "serial")
    store = ResultStore(tmp_path / "s.db")
    parallel = relax(stretched_h2(), with_run_settings(tiny, cores=2), store=store, workdir=tmp_path / "mpi")
    row = store.get(parallel.key)  # stored with its energy and forces, reusable by every later step
    assert row.energy == pytest.approx(parallel.energy) and row.forces.shape == (2, 3)
    assert relax(
        stretched_h2(), with_run_settings(tiny, cores=2), store=store, workdir=tmp_path / "mpi"
    ).reused
    assert parallel.key == serial.key  # run-time settings are not part of the calculation's identity
    assert parallel.converged and parallel.n_steps == serial.n_steps
    assert parallel.energy == pytest.approx(serial.energy, abs=1e-4)
    assert parallel.atoms.get_distance(0, 1) == pytest.approx(serial.atoms.get_distance(0, 1), abs=1e-3)
    log = (tmp_path / "mpi" / f"{parallel.key}.txt").read_text()
    assert re.search(r"^cores:\s+2$", log, re.M) and re.search(r"^\s+domain: 2$", log, re.M)  # really 2 ranks


def test_mpi_job_cuts_a_slab_grid_across_the_surface(tmp_path, tiny):
    """GPAW would cut a slab's tall cell along z (one rank: most of the vacuum); ligbind's MPI job cuts it across
    the surface (x or y). An asymmetric slab, so GPAW's dipole-layer Poisson solver runs on that split too: the
    same energy and forces as serial."""
    from ligbind.protocols import with_run_settings

    slab = build_slab(phase="cubic", size=(1, 1), layers=2, vacuum=8.0, fix_layers=0)
    one_step = load_protocol("gpaw-laptop", {**TINY, "relax": {"steps": 1}, "run": {"hessian": None}})
    serial = relax(slab, one_step, workdir=tmp_path / "serial")
    parallel = relax(slab, with_run_settings(one_step, cores=2), workdir=tmp_path / "mpi")
    assert parallel.energy == pytest.approx(serial.energy, abs=1e-5)
    assert np.allclose(
        parallel.atoms.positions, serial.atoms.positions, atol=1e-4
    )  # the same forces moved it
    domains = json.loads((tmp_path / "mpi" / f"{parallel.key}.mpi" / "outcome.json").read_text())["domains"]
    assert domains and all(p3 == 1 and p1 * p2 == 2 for p1, p2, p3 in domains)  # never along z
    assert gpaw_backend.MIN_DOMAIN_WIDTH <= 21 / 2  # the grid: 21 points along x and y at h 0.3


def test_in_plane_split_keeps_gpaw_choice_where_it_does_not_fit(monkeypatch):
    """Only slabs, and only while each rank keeps MIN_DOMAIN_WIDTH grid points along a cut in-plane axis."""
    import gpaw.old.domain as domain

    monkeypatch.setattr(domain, "decompose_domain", domain.decompose_domain)  # restored after the test
    gpaw_choice = domain.decompose_domain
    assert gpaw_choice((64, 64, 112), 2) == (1, 1, 2)  # GPAW's own: along z
    gpaw_backend.split_slab_grids_in_plane(stretched_h2())  # a molecule: nothing changes
    assert domain.decompose_domain is gpaw_choice
    gpaw_backend.split_slab_grids_in_plane(build_slab(phase="cubic", size=(1, 1), layers=2, fix_layers=0))
    assert domain.decompose_domain((64, 64, 112), 2) == (2, 1, 1)  # along x: contiguous blocks
    assert domain.decompose_domain((64, 64, 112), 4) == (2, 2, 1)
    assert domain.decompose_domain((12, 12, 100), 4) == gpaw_choice(
        (12, 12, 100), 4
    )  # 6 points a rank: too few
    assert domain.decompose_domain((64, 64, 1), 2) == gpaw_choice((64, 64, 1), 2)  # GPAW's Poisson grids


def test_killed_caller_leaves_no_mpi_job_behind(tmp_path):
    """The MPI job dies with the process that started it: a killed `ligbind run` left its 2-rank GPAW relaxation
    computing (seen), and the resumed run would have started a second job on the same files."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ligbind.calculators.gpaw_mpi import MPI_ENV, dies_with_parent, mpi_command

    marker = "61.2345"  # a sleep no other process runs

    def ranks() -> int:
        found = 0
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                found += cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]
            except OSError:
                continue
        return found

    assert mpi_command(2)[: len(dies_with_parent([]))] == dies_with_parent([])
    job = [*mpi_command(2)[:-3], "sleep", marker]  # the same mpiexec line, running `sleep` on each rank
    caller = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess; subprocess.run({job!r})"], env={**os.environ, **MPI_ENV}
    )
    deadline = time.time() + 30
    while ranks() < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert ranks() == 2
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    deadline = time.time() + 15
    while ranks() and time.time() < deadline:
        time.sleep(0.1)
    assert ranks() == 0


def test_neb_images_over_two_mpi_ranks_match_the_serial_band(tmp_path, tiny):
    """run.cores 2: each NEB image's GPAW lives in its own 2-rank MPI job; same band energies as serial."""
    from ligbind.neb import run_neb
    from ligbind.protocols import with_run_settings

    def h2_at(x: float) -> Atoms:
        atoms = Atoms("H2", positions=[[x, 3.0, 3.0], [x + 0.74, 3.2, 3.0]], cell=[7, 6, 6])
        return atoms

    bands = {}
    for cores in (1, 2):
        protocol = with_run_settings(tiny, cores=cores)
        ends = [single_point(h2_at(x), protocol, workdir=tmp_path / "ends") for x in (2.0, 2.6)]
        run = run_neb(*ends, protocol, images=3, workdir=tmp_path / f"neb{cores}", steps=2)
        assert run.n_steps == 2 and run.force_calls == 9  # the first band and two steps, 3 images each
        bands[cores] = run.energies
    assert bands[2] == pytest.approx(bands[1], abs=1e-5)
    log = (tmp_path / "neb2").glob("*-2.txt")
    assert re.search(r"^\s+domain: 2$", next(log).read_text(), re.M)  # the image ran on 2 ranks


def test_neb_band_of_an_asymmetric_slab_is_built_in_the_gpaw_frame(tmp_path):
    """A vacancy slab needs GPAW's dipole layer (z non-periodic, atoms centred along z): endpoints and images
    share that frame and boundary conditions (seen: 'Images have different boundary conditions' at the first
    DFT band), and the band handed back is in the caller's frame."""
    from ase.mep import NEB

    from ligbind.builders.vacancies import migration_endpoints
    from ligbind.neb import _band, _frozen
    from ligbind.recipes.defects import choose_hop

    slab = build_slab("CsPbI3")
    ends = migration_endpoints(slab, *choose_hop(slab, None, None))
    for atoms in ends:
        atoms.positions[:, 2] += 3.0  # off-centre along z, as slabs with an adsorbate are
    ml = [single_point(a, "ml-screen", workdir=tmp_path) for a in ends]
    gpaw = load_protocol("gpaw-quick", {"gpaw": {"spinpol": True}, "run": {"cores": 1}})
    band = _band(*ml, gpaw, 3, tmp_path, "band", None)
    assert {tuple(im.pbc) for im in band} == {(True, True, False)}
    shift = band[0].positions[0] - ml[0].atoms.positions[0]
    assert abs(shift[2]) > 0.1 and np.allclose(shift[:2], 0)  # centred along z
    assert np.allclose(band[-1].positions - shift, ml[1].atoms.positions)
    NEB(band, climb=True, method="improvedtangent")  # accepted by ASE
    assert band[0].get_potential_energy() == pytest.approx(ml[0].energy)  # stored endpoint energy kept
    back = _frozen(band[0], shift, ml[0].atoms.pbc)
    assert np.allclose(back.positions, ml[0].atoms.positions) and tuple(back.pbc) == tuple(ml[0].atoms.pbc)


def _translation_spread(protocol: dict, tmp_path: Path) -> float:
    """Energy range of a rigid NH3 moved across one grid spacing (the egg-box effect), eV."""
    from ligbind.calculators import backend_of, make_calculator

    h = protocol["gpaw"]["h"]
    energies = []
    for k, shift in enumerate(np.linspace(0.0, h, 4)[:3]):
        atoms = molecule("NH3")
        atoms.center(vacuum=3.5)
        atoms.translate([shift, 0.7 * shift, 0.4 * shift])
        work = backend_of(protocol).prepare(atoms, protocol)
        work.calc = make_calculator(protocol, atoms=work, directory=tmp_path, label=f"nh3-{k}")
        energies.append(work.get_potential_energy())
    return max(energies) - min(energies)


@pytest.mark.parametrize("preset", ["gpaw-quick", "gpaw-laptop", "gpaw-complex"])
def test_preset_grid_fine_enough_for_ligand_atoms(preset, tmp_path):
    """A ligand's energy must not depend on where it sits on the grid: a rigid NH3 moved across one spacing
    changes by < 30 meV with each GPAW preset's settings (measured ~19 meV at h 0.2). At h 0.25, gpaw-quick's
    grid until 2026-12-04, it changed by 0.18 eV, the size of the Eb differences users compare."""
    protocol = load_protocol(preset, {"run": {"cores": 1}})
    assert _translation_spread(protocol, tmp_path) < 0.03
    if preset == "gpaw-quick":  # the check sees the old coarse grid
        coarse = load_protocol(preset, {"gpaw": {"h": 0.25}, "run": {"cores": 1}})
        assert _translation_spread(coarse, tmp_path) > 0.1


def test_a_resumed_gpaw_band_takes_its_images_from_their_saved_states(tmp_path, tiny):
    """Each image's GPAW keeps its last state (``<label>.gpw``): a band resumed after a kill gets the saved
    band's results back without an SCF and starts the next step's SCFs from the saved wave functions, with the
    band a run without those states gives; a band that goes no further leaves no state behind. Over 2 MPI
    ranks, as DFT bands run (the in-process calculator is the same function)."""
    from ligbind.calculators.gpaw import state_path
    from ligbind.neb import image_label, run_neb
    from ligbind.protocols import with_run_settings

    protocol = with_run_settings(
        load_protocol("gpaw-laptop", {**TINY, "gpaw": {**TINY["gpaw"], "spinpol": True}}), cores=2
    )

    def h3(x: float) -> Atoms:  # H2 + H exchange: an odd electron count, spin-polarised
        return Atoms("H3", positions=[[1.5, 3.0, 3.0], [x, 3.0, 3.0], [4.5, 3.0, 3.0]], cell=[7, 6, 6])

    ends = [single_point(h3(x), protocol, workdir=tmp_path / "ends") for x in (2.25, 3.75)]
    kept, lost = tmp_path / "kept", tmp_path / "lost"
    first = run_neb(*ends, protocol, images=3, workdir=kept, steps=1)
    labels = [image_label(first.key, k) for k in range(3)]
    assert not first.converged and all(state_path(kept, label).is_file() for label in labels)
    shutil.copytree(kept, lost)
    for label in labels:  # as a band saved before the states were kept
        state_path(lost, label).unlink()
    runs = {}
    for workdir, new_scfs in ((kept, [1, 1, 1]), (lost, [2, 2, 2])):  # the resumed band: none / one each
        scfs = [(workdir / f"{label}.txt").read_text().count("Converged in") for label in labels]
        runs[workdir.name] = run_neb(*ends, protocol, images=3, workdir=workdir, steps=2)
        new = [
            (workdir / f"{label}.txt").read_text().count("Converged in") - n
            for label, n in zip(labels, scfs, strict=True)
        ]
        assert new == new_scfs
    assert runs["kept"].energies == pytest.approx(runs["lost"].energies, abs=1e-4)
    # a band that goes no further (here: stopped, as a refinement round stops one) drops its states
    stopped = run_neb(*ends, protocol, images=3, workdir=kept, steps=9, stop_when=lambda e: True)
    assert stopped.stopped and stopped.n_steps == 2
    assert not list((tmp_path / "kept").glob("*.gpw*"))
