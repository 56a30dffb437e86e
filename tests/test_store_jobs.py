"""relax / single_point with the real ml-screen calculator (CHGNet + D3) on a 9-atom molecule, and the store.

What is checked: trajectories and rows are written, identical calculations are reused with zero force calls,
a step-limited relaxation is 'unconverged', a killed relaxation resumes from its trajectory and lands on the
same energy with fewer force calls, non-finite energies never reach the store (or the trajectory), and the
rows are browsable with ``ase db``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import Trajectory

import ligbind.calculators
import ligbind.jobs
from ligbind.errors import NonFiniteEnergyError, UnconvergedError
from ligbind.jobs import relax, single_point
from ligbind.protocols import load_protocol, protocol_hash
from ligbind.store import ResultStore, atoms_from_row, calculation_key, structure_hash

ML_ENERGY_TOL = 5e-4  # eV: CHGNet works in float32; a resumed BFGS ended 1.8e-4 eV from the
#   uninterrupted one once (same step count: float32 noise in the last steps of a soft mode)
# eV: a resumed relaxation follows the same path only to float32 noise (thread-dependent sums), which BFGS can
# amplify into a slightly different point of the same converged basin (seen once: 1.7e-4 eV under load)
RESUMED_ENERGY_TOL = 1e-3


@pytest.fixture(scope="module")
def ml() -> dict:
    return load_protocol("ml-screen")


def ethanol() -> Atoms:
    """Ethanol with 0.15 Å noise in a periodic box: ~20 BFGS steps with CHGNet+D3 to fmax 0.05."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.15, seed=1)
    atoms.center(vacuum=4.0)
    atoms.pbc = True
    atoms.info.update(kind="ligand", label="ethanol")
    return atoms


class CalcSpy:
    """Replaces ligbind.jobs.make_calculator: counts constructions and calculate() calls, can interrupt."""

    def __init__(self, monkeypatch, fail_after: int | None = None, factory=None):
        self.made = 0
        self.calls = 0
        self.positions: list[np.ndarray] = []
        self.fail_after = fail_after
        real = factory or ligbind.calculators.make_calculator

        def make(protocol, **kwargs):
            self.made += 1
            calc = real(protocol, **kwargs)
            original = calc.calculate

            def calculate(atoms=None, *args, **kw):
                if self.fail_after is not None and self.calls >= self.fail_after:
                    raise KeyboardInterrupt("simulated kill")
                self.calls += 1
                self.positions.append((atoms if atoms is not None else calc.atoms).positions.copy())
                return original(atoms, *args, **kw)

            calc.calculate = calculate
            return calc

        monkeypatch.setattr(ligbind.jobs, "make_calculator", make)


class NaNCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float("nan"), "forces": np.full((len(self.atoms), 3), np.nan)}


@pytest.fixture(scope="module")
def reference(ml, tmp_path_factory) -> ligbind.jobs.Result:
    """One uninterrupted relaxation of ethanol (shared by the comparisons below)."""
    work = tmp_path_factory.mktemp("reference")
    return relax(ethanol(), ml, store=ResultStore(work / "ref.db"), workdir=work / "runs")


# ---------------------------------------------------------------------------------------------- relax
def test_relax_converges_and_writes_trajectory_log_and_row(ml, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch)
    store = ResultStore(tmp_path / "r.db")
    start = ethanol()
    r = relax(start, ml, store=store, workdir=tmp_path / "runs")

    assert r.key == calculation_key("relax", start, ml)
    assert r.key.startswith("relax-") and r.key.endswith(protocol_hash(ml))
    assert r.converged and r.status == "converged" and not r.reused
    assert r.fmax <= 0.05
    assert 5 <= r.n_steps < 100
    assert r.force_calls == spy.calls == r.n_steps + 1  # one evaluation per BFGS step, plus the start
    assert spy.made == 1

    traj_path = tmp_path / "runs" / f"{r.key}.traj"
    assert traj_path.is_file()
    assert (tmp_path / "runs" / f"{r.key}.log").is_file()
    assert (tmp_path / "runs" / f"{r.key}.opt.json").is_file()
    frames = Trajectory(str(traj_path))
    assert len(frames) == r.n_steps + 1
    e_start = frames[0].get_potential_energy()
    assert np.allclose(frames[0].positions, start.positions)
    assert np.allclose(frames[-1].positions, r.atoms.positions)
    assert frames[-1].get_potential_energy() == pytest.approx(r.energy, abs=1e-6)
    assert r.energy < e_start - 0.1  # 0.15 Å noise costs well over 0.1 eV
    assert r.atoms.get_chemical_formula() == "C2H6O"
    assert r.atoms.info["label"] == "ethanol"

    row = store.get(r.key)
    assert row.status == "converged" and row.kind == "relax"
    assert row.protocol == "ml-screen" and row.backend == "chgnet"
    assert row.energy == pytest.approx(r.energy, abs=1e-9)
    assert row.n_steps == r.n_steps and row.force_calls == r.force_calls
    assert row.fmax_free == pytest.approx(r.fmax)
    assert row.data["protocol"] == ml
    assert np.allclose(row.positions, r.atoms.positions)


def test_identical_relax_is_reused_with_zero_force_calls(ml, reference, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch)
    store = ResultStore(tmp_path / "s.db")
    first = relax(ethanol(), ml, store=store, workdir=tmp_path / "runs")
    calls_first = spy.calls
    assert calls_first == first.force_calls > 0

    # a second run, through a freshly opened store and with a workdir that does not exist
    again = relax(ethanol(), ml, store=ResultStore(tmp_path / "s.db"), workdir=tmp_path / "elsewhere")
    assert again.reused and again.force_calls == 0
    assert spy.calls == calls_first and spy.made == 1  # no calculator built, no evaluation
    assert not (tmp_path / "elsewhere").exists()  # the store answered, not a trajectory
    assert again.key == first.key
    assert again.energy == first.energy and again.converged
    assert np.allclose(again.atoms.positions, first.atoms.positions)
    assert store.count(kind="relax") == 1
    # the relaxation is deterministic: same energy as the module's reference run
    assert first.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)


def test_changed_protocol_parameter_is_a_new_calculation(ml, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch)
    store = ResultStore(tmp_path / "s.db")
    loose = load_protocol(ml, {"relax": {"fmax": 0.2}})
    r_loose = relax(ethanol(), loose, store=store, workdir=tmp_path / "runs")
    made = spy.made
    r_tight = relax(ethanol(), ml, store=store, workdir=tmp_path / "runs")
    assert r_loose.key != r_tight.key and spy.made == made + 1
    assert r_loose.fmax <= 0.2 and r_tight.fmax <= 0.05 and r_tight.n_steps > r_loose.n_steps
    assert r_tight.energy <= r_loose.energy + ML_ENERGY_TOL
    assert store.count(kind="relax") == 2


def test_step_limit_gives_unconverged_never_relaxed(ml, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch)
    store = ResultStore(tmp_path / "s.db")
    short = load_protocol(ml, {"relax": {"steps": 2}})
    r = relax(ethanol(), short, store=store, workdir=tmp_path / "runs")
    assert not r.converged and r.status == "unconverged"
    assert r.n_steps == 2 and r.force_calls == 3 == spy.calls
    assert r.fmax > 0.05
    assert store.get(r.key).status == "unconverged"
    assert store.count(status="converged") == 0
    with pytest.raises(UnconvergedError, match="did not converge in 2 steps"):
        r.require_converged()
    # reused from the store it is still unconverged
    again = relax(ethanol(), short, store=store, workdir=tmp_path / "runs")
    assert again.reused and not again.converged and again.force_calls == 0
    with pytest.raises(UnconvergedError):
        again.require_converged("ligand relaxation")


def test_killed_relaxation_resumes_from_its_trajectory(ml, reference, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.db")
    runs = tmp_path / "runs"
    killed_after = 8
    spy = CalcSpy(monkeypatch, fail_after=killed_after)
    with pytest.raises(KeyboardInterrupt):
        relax(ethanol(), ml, store=store, workdir=runs)
    assert spy.calls == killed_after
    assert store.count() == 0  # nothing committed by the killed run
    traj_path = runs / f"{reference.key}.traj"
    frames = Trajectory(str(traj_path))
    assert len(frames) == killed_after  # frames 0..7: one per completed evaluation
    last = frames[-1].positions.copy()
    killed_seconds = float((runs / f"{reference.key}.seconds").read_text())
    assert killed_seconds > 0

    spy = CalcSpy(monkeypatch)
    started = time.perf_counter()
    resumed = relax(ethanol(), ml, store=store, workdir=runs)
    # its wall time counts the killed run's seconds too, as its force calls do
    assert resumed.wall_time >= killed_seconds
    assert resumed.wall_time - killed_seconds <= time.perf_counter() - started
    assert np.allclose(spy.positions[0], last)  # the first evaluation is at the last frame, not the start
    assert resumed.converged and resumed.key == reference.key
    assert resumed.energy == pytest.approx(reference.energy, abs=RESUMED_ENERGY_TOL)
    assert np.abs(resumed.atoms.positions - reference.atoms.positions).max() < 0.01
    assert spy.calls < reference.force_calls  # continued, not restarted
    assert resumed.force_calls == killed_after + spy.calls  # the store records the total of both runs
    # the BFGS Hessian is restored too: the killed and resumed parts together cost about what one run costs. Its
    # restart file is written at most 5 % of the time (jobs._throttled), so the restored Hessian may be a step
    # or two older than the last frame: under load (full suite beside a DFT job) 24 calls against 22, once
    assert resumed.force_calls <= reference.force_calls + 3
    assert abs(resumed.n_steps - reference.n_steps) <= 3
    assert store.get(resumed.key).status == "converged"


def test_kill_while_writing_the_call_count_keeps_the_earlier_count(ml, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.db")
    runs = tmp_path / "runs"
    real_write = Path.write_text
    counts: list[str] = []

    def write_text(self, data, *args, **kwargs):
        if ".calls" in self.name:
            counts.append(data)
            if len(counts) == 6:  # the file opened (so truncated), the process killed before its content
                real_write(self, "")
                raise KeyboardInterrupt("killed mid-write")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(KeyboardInterrupt):
        relax(ethanol(), ml, store=store, workdir=runs)
    monkeypatch.setattr(Path, "write_text", real_write)
    (calls_file,) = runs.glob("*.calls")
    assert calls_file.read_text() == counts[4]  # the last count written whole, not an empty file

    spy = CalcSpy(monkeypatch)
    resumed = relax(ethanol(), ml, store=store, workdir=runs)
    assert resumed.force_calls == int(counts[4]) + spy.calls


def test_ranks_writing_the_same_count_at_once_do_not_collide(tmp_path):
    # every rank of a GPAW MPI job runs the relaxation and records the same count (a shared temporary file
    # made one rank's rename fail once the other had moved it)
    script = (
        "import sys; from ligbind.io import write_text_atomic\n"
        "for k in range(300): write_text_atomic(sys.argv[1], str(k))\n"
    )
    target = tmp_path / "relax.calls"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert target.read_text() == "299"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relax.calls"]  # no temporary file left behind


def test_twice_killed_relaxation_counts_steps_once(ml, reference, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.db")
    runs = tmp_path / "runs"
    total = 0
    for _ in range(2):
        spy = CalcSpy(monkeypatch, fail_after=6)
        with pytest.raises(KeyboardInterrupt):
            relax(ethanol(), ml, store=store, workdir=runs)
        total += spy.calls
    spy = CalcSpy(monkeypatch)
    resumed = relax(ethanol(), ml, store=store, workdir=runs)
    total += spy.calls
    assert resumed.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)
    assert resumed.n_steps == reference.n_steps
    assert len(Trajectory(str(runs / f"{resumed.key}.traj"))) == reference.n_steps + 1
    assert total <= reference.force_calls + 2


def test_truncated_trajectory_is_not_fatal(ml, reference, tmp_path, monkeypatch):
    """A kill while the trajectory was being written leaves a cut file: the relaxation still finishes."""
    runs = tmp_path / "runs"
    spy = CalcSpy(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        relax(ethanol(), ml, workdir=runs)
    traj_path = runs / f"{reference.key}.traj"
    data = traj_path.read_bytes()
    traj_path.write_bytes(data[: len(data) - 40])
    spy = CalcSpy(monkeypatch)
    r = relax(ethanol(), ml, store=ResultStore(tmp_path / "s.db"), workdir=runs)
    # the unreadable trajectory and the optimizer state that belonged to it are dropped: exactly a fresh run
    assert r.converged and r.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)
    assert spy.calls == r.force_calls == reference.force_calls and r.n_steps == reference.n_steps


def test_cut_trajectory_that_another_rank_removed_first_is_not_fatal(ml, reference, tmp_path, monkeypatch):
    """Every rank of a GPAW MPI job runs the relaxation: each reads the cut trajectory, one removes it first."""
    runs = tmp_path / "runs"
    runs.mkdir()
    real = ligbind.jobs._last_frame
    seen: list[Path] = []

    def last_frame(path):
        if not seen:  # this rank read the cut file; the other rank has removed it since
            seen.append(path)
            raise ValueError("trajectory cut mid-write")
        return real(path)

    monkeypatch.setattr(ligbind.jobs, "_last_frame", last_frame)
    r = ligbind.jobs.relax_in_process(ethanol(), ml, reference.key, runs)
    assert seen  # the fault was injected
    assert r.converged and r.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)


def test_cut_optimizer_restart_file_is_not_fatal(ml, reference, tmp_path, monkeypatch):
    """A kill while BFGS wrote its restart file must not make every rerun fail (ASE raises RestartError)."""
    runs = tmp_path / "runs"
    CalcSpy(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        relax(ethanol(), ml, workdir=runs)
    restart = runs / f"{reference.key}.opt.json"
    restart.write_text(restart.read_text()[:30])
    spy = CalcSpy(monkeypatch)
    r = relax(ethanol(), ml, store=ResultStore(tmp_path / "s.db"), workdir=runs)
    # without the Hessian BFGS takes another path over ethanol's flat torsions: a minimum within a few meV
    assert r.converged and r.fmax <= 0.05
    assert r.energy == pytest.approx(reference.energy, abs=0.005)
    assert np.allclose(spy.positions[0], Trajectory(str(runs / f"{reference.key}.traj"))[4].positions)


def test_converged_trajectory_without_store_row_costs_one_evaluation(ml, reference, tmp_path, monkeypatch):
    """The store row was lost but the finished trajectory is there: restart at its end, one force call."""
    runs = tmp_path / "runs"
    relax(ethanol(), ml, workdir=runs)  # no store
    spy = CalcSpy(monkeypatch)
    again = relax(ethanol(), ml, store=ResultStore(tmp_path / "s.db"), workdir=runs)
    assert spy.calls == 1  # one evaluation at the trajectory's end
    assert again.force_calls == reference.force_calls + 1  # the total: the first run's calls and that one
    assert again.converged and again.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)


def test_fixed_atoms_stay_put_and_are_left_out_of_fmax(ml, tmp_path):
    atoms = ethanol()
    atoms.set_constraint(FixAtoms(indices=[0, 1]))
    r = relax(atoms, ml, store=ResultStore(tmp_path / "s.db"), workdir=tmp_path / "runs")
    assert np.allclose(r.atoms.positions[:2], atoms.positions[:2], atol=1e-12)
    forces = r.atoms.get_forces()
    assert r.fmax == pytest.approx(np.linalg.norm(forces[2:], axis=1).max())
    assert r.converged and r.fmax <= 0.05
    assert r.key != calculation_key("relax", ethanol(), ml)  # constraints are part of the key


# --------------------------------------------------------------------------------------- single point
def test_single_point_matches_relaxed_energy_and_is_reused(ml, reference, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch)
    store = ResultStore(tmp_path / "s.db")
    relaxed = reference.atoms.copy()
    relaxed.calc = None
    sp = single_point(relaxed, ml, store=store, workdir=tmp_path / "runs")
    assert sp.kind == "single_point" and sp.key.startswith("single_point-") and sp.converged
    assert sp.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)
    assert sp.fmax == pytest.approx(reference.fmax, abs=1e-3) and sp.fmax <= 0.05
    assert spy.made == 1 and spy.calls == sp.force_calls == 1
    again = single_point(relaxed, ml, store=store, workdir=tmp_path / "runs")
    assert again.reused and again.force_calls == 0 and spy.calls == 1
    assert again.energy == sp.energy
    row = store.get(sp.key)
    assert row.kind == "single_point" and row.status == "converged"
    assert np.allclose(atoms_from_row(row).get_forces(), sp.atoms.get_forces())


# ------------------------------------------------------------------------------------------ non-finite
def test_nan_single_point_raises_and_writes_no_row(ml, tmp_path, monkeypatch):
    spy = CalcSpy(monkeypatch, factory=lambda protocol, **kw: NaNCalculator())
    store = ResultStore(tmp_path / "s.db")
    with pytest.raises(NonFiniteEnergyError, match="non-finite"):
        single_point(ethanol(), ml, store=store, workdir=tmp_path / "runs")
    assert store.count() == 0 and spy.calls >= 1


def test_nan_relaxation_stops_at_once_and_does_not_poison_the_trajectory(
    ml, reference, tmp_path, monkeypatch
):
    spy = CalcSpy(monkeypatch, factory=lambda protocol, **kw: NaNCalculator())
    store = ResultStore(tmp_path / "s.db")
    runs = tmp_path / "runs"
    with pytest.raises(NonFiniteEnergyError):
        relax(ethanol(), ml, store=store, workdir=runs)
    assert spy.calls <= 2  # not 400 steps of NaN
    assert store.count() == 0
    traj_path = runs / f"{reference.key}.traj"
    if traj_path.exists() and traj_path.stat().st_size:
        for frame in Trajectory(str(traj_path)):
            assert np.all(np.isfinite(frame.positions))
    # the next run (healthy calculator) is not sent off from NaN positions
    monkeypatch.setattr(ligbind.jobs, "make_calculator", ligbind.calculators.make_calculator)
    r = relax(ethanol(), ml, store=store, workdir=runs)
    assert r.converged and r.energy == pytest.approx(reference.energy, abs=ML_ENERGY_TOL)


# ------------------------------------------------------------------------------------------------ store
def test_structure_hash_resolution_and_inputs():
    a = ethanol()
    h = structure_hash(a)
    b = a.copy()
    b.positions[0, 0] += 1e-6
    assert structure_hash(b) == h  # below the 1e-4 Å resolution
    b.positions[0, 0] += 1e-3
    assert structure_hash(b) != h
    c = a.copy()
    c.info["charge"] = -1
    assert structure_hash(c) != h
    d = a.copy()
    d.set_constraint(FixAtoms(indices=[0]))
    assert structure_hash(d) != h
    e = a.copy()
    e.set_tags([1] * len(e))
    assert structure_hash(e) != h
    f = a.copy()
    f.cell[2, 2] += 1.0
    assert structure_hash(f) != h
    g = a.copy()
    g.info["label"] = "something else"  # labels do not change the calculation
    assert structure_hash(g) == h


def test_store_put_replaces_and_refuses_non_finite(tmp_path):
    store = ResultStore(tmp_path / "s.db")
    a = molecule("H2O")
    a.calc = SinglePointCalculator(a, energy=-14.0, forces=np.zeros((3, 3)))
    store.put(a, "k1", kind="relax", status="unconverged", n_steps=2, tags_list=[1, 2])
    store.put(a, "k1", kind="relax", status="converged", n_steps=9)
    assert store.count() == 1
    row = store.get("k1")
    assert row.status == "converged" and row.n_steps == 9 and row.energy == -14.0
    with pytest.raises(ValueError, match="non-finite"):
        store.put(a, "k2", eb=float("nan"))
    assert store.get("k2") is None and store.count() == 1
    store.update("k1", anomalies="desorbed")
    assert store.get("k1").anomalies == "desorbed"
    with pytest.raises(KeyError):
        store.update("missing", anomalies="x")


def test_rows_are_browsable_with_ase_db(ml, reference, tmp_path):
    store = ResultStore(tmp_path / "s.db")
    r = relax(ethanol(), load_protocol(ml, {"relax": {"steps": 1}}), store=store, workdir=tmp_path / "runs")
    ase_db = [
        shutil.which("ase") or sys.executable,
        *([] if shutil.which("ase") else ["-m", "ase"]),
        "db",
        str(store.path),
    ]
    out = subprocess.run(ase_db, capture_output=True, text=True, timeout=120)  # plain `ase db FILE`
    assert out.returncode == 0, out.stderr
    assert "C2H6O" in out.stdout and "Rows: 1" in out.stdout
    keys_line = next(line for line in out.stdout.splitlines() if line.startswith("Keys:"))
    assert {"key", "kind", "status", "protocol", "n_steps", "force_calls"} <= set(
        keys_line[5:].replace(",", " ").split()
    )
    out = subprocess.run(
        [*ase_db, "-c", "id,formula,key,kind,status,protocol,energy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "key" in out.stdout.splitlines()[0] and r.key in out.stdout
    assert "unconverged" in out.stdout and "ml-screen" in out.stdout
    out = subprocess.run([*ase_db, f"key={r.key}", "--count"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().startswith("1")


@pytest.mark.slow
def test_prerelaxation_of_an_adsorbate_keeps_the_slab_fixed(tmp_path):
    """The cheap stage moves only the adsorbate: the slab is already relaxed with the main protocol."""
    from ligbind.builders.placement import place_ligand
    from ligbind.builders.slab import build_slab
    from ligbind.protocols import load_protocol

    placed = place_ligand(build_slab(), "methylamine", n_configs=1)[0]
    main = load_protocol("ml-screen", {"relax": {"steps": 2}})
    main["prerelax"] = "ml-screen"
    store = ResultStore(tmp_path / "r.db")
    result = relax(placed, main, store=store, workdir=tmp_path)
    pre = next(r for r in store.select(kind="relax") if r.key == result.prerelax["key"])
    slab = placed.get_tags() == 0
    assert np.allclose(pre.toatoms().positions[slab], placed.positions[slab])
    assert not np.allclose(pre.toatoms().positions[~slab], placed.positions[~slab])
