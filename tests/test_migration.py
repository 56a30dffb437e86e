"""Halide migration barriers with the ML potential (real CHGNet + D3): NEB shape, minimum image, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import find_mic
from ase.io import Trajectory

from ligbind.analysis.migration import endpoints_above_band, ion_leaves_surface, ligand_in_path
from ligbind.builders.slab import surface_halides
from ligbind.builders.vacancies import migration_endpoints
from ligbind.calculators import make_calculator
from ligbind.io import write_structure
from ligbind.jobs import result_from_row
from ligbind.neb import run_neb
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

pytestmark = pytest.mark.slow
# The symmetric slab (one start, no rattle): its two hop ends are mirror images, which the symmetry-partner
# tests below need; the default rattled search lands in a tilted basin where they need not be.
FAST = {"relax": {"fmax": 0.1, "steps": 150}, "slab": {"starts": 1, "rattle": 0.0}}


def _energy(atoms, protocol) -> float:
    atoms = atoms.copy()
    atoms.calc = make_calculator(protocol, atoms=atoms)
    return float(atoms.get_potential_energy())


@pytest.fixture(scope="module")
def bare_barrier(tmp_path_factory, _slab_2x2_session):
    """``ligbind barrier`` on the 2x2 slab (default hop), run once for the module."""
    from conftest import run_ligbind

    d = tmp_path_factory.mktemp("barrier")
    write_structure(d / "slab.extxyz", _slab_2x2_session)
    proc = run_ligbind(
        "barrier", "--slab", "slab.extxyz", "--images", "5", "--protocol", "ml-screen", "--set", json.dumps(FAST),
        "--json", cwd=d,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return d, json.loads(proc.stdout)


def _stored_hop(bare_barrier):
    """The module's bare barrier: its outcome, protocol, relaxed host, built endpoints and relaxed endpoints."""
    d, out = bare_barrier
    b = out["bare"]
    protocol = load_protocol("ml-screen", FAST)
    store = ResultStore(d / "ligbind.db")
    (slab_row,) = [r for r in store.select(kind="relax") if r.get("label") == "slab"]
    host = result_from_row(slab_row, protocol)
    built = migration_endpoints(host.atoms, b["site"], b["hopper"])
    relaxed = [result_from_row(store.get(b[f"{end}_key"]), protocol) for end in ("initial", "final")]
    for r, atoms in zip(relaxed, built, strict=True):
        r.atoms.info = dict(atoms.info)
    return b, protocol, host, built, relaxed


def test_barrier_profile_shape_and_terms(bare_barrier):
    d, out = bare_barrier
    b = out["bare"]
    protocol = load_protocol("ml-screen", FAST)
    assert b["converged"] and b["flags"] == []
    assert 0.02 < b["ea_forward"] < 1.5  # a surface iodide hop: positive, well below a bond energy
    energies = [p["e_rel"] + b["e_initial"] for p in b["profile"]]
    assert len(energies) == 7
    top = int(np.argmax(energies))
    assert 0 < top < 6  # the highest image is inside the band
    assert b["ea_forward"] == pytest.approx(max(energies) - energies[0], abs=1e-9)
    assert b["ea_backward"] == pytest.approx(max(energies) - energies[-1], abs=1e-9)
    # the profile's ends are the relaxed endpoints: fresh energies of the stored endpoint structures
    store = ResultStore(d / "ligbind.db")
    e_initial = _energy(store.get(b["initial_key"]).toatoms(), protocol)
    e_final = _energy(store.get(b["final_key"]).toatoms(), protocol)
    assert energies[0] == pytest.approx(e_initial, abs=2e-3)
    assert energies[-1] == pytest.approx(e_final, abs=2e-3)
    # the two endpoints are mirror images of each other on this slab: the same energy, a symmetric barrier
    assert b["ea_forward"] == pytest.approx(b["ea_backward"], abs=0.02)
    # stored row of kind barrier, keyed by both endpoints and the protocol
    row = store.get(b["key"])
    assert row.kind == "barrier" and row.images == 5
    assert b["key"].startswith("barrier-") and b["key"].endswith("-5i")
    assert (d / "runs" / f"{b['key']}.png").is_file() and out["png"].endswith(".png")
    # what it took: both endpoint relaxations and the band (its every run), as `ligbind status` reads it
    band_seconds = float((d / "runs" / f"{b['key']}.seconds").read_text())
    ends = sum(store.get(b[f"{end}_key"]).wall_time for end in ("initial", "final"))
    assert band_seconds > 0 and ends > 0
    assert row.wall_time == pytest.approx(b["wall_time"], abs=1e-3)
    assert b["wall_time"] == pytest.approx(ends + band_seconds, abs=1.0)


def test_hop_across_the_cell_edge_takes_the_short_way(bare_barrier, _slab_2x2_session):
    """The default hop (12 → its nearest I) crosses the cell edge: wrapped positions are ~9 Å apart but the
    hop is 4.46 Å. With mic=False the band would cross the slab; here every image stays on the short path."""
    d, out = bare_barrier
    b = out["bare"]
    slab = _slab_2x2_session
    site, hopper = b["site"], b["hopper"]
    direct = float(np.linalg.norm(slab.positions[site] - slab.positions[hopper]))
    assert direct > 8.0 and b["hop_length"] == pytest.approx(4.46, abs=0.05)
    assert b["profile"][-1]["s"] < 1.6 * b["hop_length"]  # total path length (mic) of the band
    band = list(Trajectory(str(d / "runs" / f"{b['key']}.band.traj")))[-7:]
    m = migration_endpoints(slab, site, hopper)[0].info["migrating"]
    start, end = band[0].positions[m], band[-1].positions[m]
    for image in band:
        p = image.positions[m]
        to_start = find_mic(p - start, image.cell, image.pbc)[1]
        to_end = find_mic(p - end, image.cell, image.pbc)[1]
        assert to_start < b["hop_length"] + 0.5 and to_end < b["hop_length"] + 0.5
    assert not ion_leaves_surface(band, m, float(slab.positions[surface_halides(slab), 2].mean()))


def test_killed_neb_continues_from_its_last_band(bare_barrier, tmp_path):
    """A band stopped after 3 steps (as a kill would leave it) continues from the saved band: step count,
    trajectory and force calls add up, and the first new band is one optimizer step from the saved one."""
    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    n = 3 + 2  # three images and the endpoints
    first = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=3)
    assert not first.converged and first.n_steps == 3 and first.resumed_from_step == -1
    traj = tmp_path / f"{first.key}.band.traj"
    saved = list(Trajectory(str(traj)))
    assert len(saved) == 4 * n  # the interpolated band + one per step
    idpp_band = np.array([a.positions for a in saved[:n]])
    last_band = np.array([a.positions for a in saved[-n:]])
    assert np.abs(last_band - idpp_band).max() > 1e-3  # the band moved
    first_seconds = float((tmp_path / f"{first.key}.seconds").read_text())

    second = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=200)
    assert second.resumed_from_step == 3
    assert second.converged and second.n_steps > 3
    frames = list(Trajectory(str(traj)))
    assert len(frames) == (1 + second.n_steps) * n  # nothing rewritten, one band per new step
    assert np.allclose(
        np.array([a.positions for a in frames[: 4 * n]]), np.array([a.positions for a in saved])
    )
    new_first = np.array([a.positions for a in frames[4 * n : 5 * n]])
    step = np.linalg.norm(new_first - last_band, axis=2).max()
    assert 0 < step <= 0.2 + 1e-6  # one FIRE step (maxstep 0.2 Å) from the saved band, not a new IDPP start
    # the saved band is evaluated again (3 calls), then at most every image per step (DyNEB skips converged ones)
    assert first.force_calls + 3 <= second.force_calls <= first.force_calls + (second.n_steps - 3 + 1) * 3
    # wall seconds add up over the runs, as force calls do; a rerun of the finished band reports them all
    assert 0 < first_seconds <= first.wall_time < second.wall_time
    third = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=200)
    assert third.wall_time == pytest.approx(float((tmp_path / f"{first.key}.seconds").read_text()))
    assert third.wall_time > first_seconds and third.wall_time == pytest.approx(second.wall_time, abs=0.5)


def test_band_at_its_step_limit_is_handed_back_without_recomputing(bare_barrier, tmp_path, monkeypatch):
    """A rerun of a band that stopped at its step limit returns the saved band (energies, forces, convergence
    from the saved frames) without building a calculator: with DFT each re-evaluation costs an SCF per image."""
    import ligbind.neb

    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    first = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=3)

    def no_calculators(*args, **kwargs):
        raise AssertionError("the saved band was recomputed")

    monkeypatch.setattr(ligbind.neb, "_band", no_calculators)
    again = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=3)
    assert (again.key, again.n_steps, again.force_calls, again.converged) == (
        first.key,
        3,
        first.force_calls,
        False,
    )
    assert again.energies == pytest.approx(first.energies, abs=1e-9)
    for a, b in zip(again.band, first.band, strict=True):
        assert np.allclose(a.positions, b.positions) and np.allclose(a.get_forces(), b.get_forces())
        assert (a.pbc == b.pbc).all()
    monkeypatch.undo()
    more = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=4)  # a higher limit goes on
    assert more.n_steps == 4 and first.force_calls + 3 <= more.force_calls <= first.force_calls + 2 * 3


def test_band_counts_the_force_calls_its_calculators_made(bare_barrier, tmp_path, monkeypatch):
    """force_calls (and the saved .calls file) are the evaluations the image calculators performed, fewer than
    images x bands once images converge and stop moving (DyNEB); every image ends below fmax all the same."""
    from ase.mep import NEB

    import ligbind.calculators

    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    performed: dict[str, int] = {"n": 0}
    make = ligbind.calculators.make_calculator

    def watched(*args, **kwargs):  # a second, independent count of what the image calculators compute
        return ligbind.calculators.counted(make(*args, **kwargs), performed, "n")

    monkeypatch.setattr(ligbind.calculators, "make_calculator", watched)  # what the images get
    run = run_neb(initial, final, protocol, images=3, workdir=tmp_path, fmax=0.1, steps=300)
    assert run.converged and run.force_calls == performed["n"]
    assert int(float((tmp_path / f"{run.key}.calls").read_text())) == performed["n"]
    assert run.force_calls < (run.n_steps + 1) * 3  # converged images were not recomputed
    residual = NEB(run.band, climb=True, method="improvedtangent").get_forces()
    assert np.sqrt((residual**2).sum(axis=1)).max() < 0.1


def test_converged_band_is_handed_back_without_recomputing(bare_barrier, tmp_path, monkeypatch):
    """A rerun of a converged band (same fmax, a higher step limit) returns the saved band without building a
    calculator; a tighter fmax makes it go on from there."""
    import ligbind.neb

    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    first = run_neb(initial, final, protocol, images=3, workdir=tmp_path, fmax=0.2, steps=200)
    assert first.converged and first.n_steps < 200

    def no_calculators(*args, **kwargs):
        raise AssertionError("the converged band was recomputed")

    monkeypatch.setattr(ligbind.neb, "_band", no_calculators)
    again = run_neb(initial, final, protocol, images=3, workdir=tmp_path, fmax=0.2, steps=200)
    assert again.converged and (again.n_steps, again.force_calls) == (first.n_steps, first.force_calls)
    assert again.energies == pytest.approx(first.energies, abs=1e-9)
    with pytest.raises(AssertionError, match="recomputed"):
        run_neb(initial, final, protocol, images=3, workdir=tmp_path, fmax=0.01, steps=200)


def test_band_flags_on_constructed_bands(_slab_2x2_session):
    """The flags on bands built by hand: an ion lifted 4 Å off the surface; a ligand atom on the path."""
    slab = _slab_2x2_session
    initial, final = migration_endpoints(slab, int(surface_halides(slab)[0]))
    m = initial.info["migrating"]
    z_top = float(slab.positions[surface_halides(slab), 2].mean())
    lifted = initial.copy()
    lifted.positions[m, 2] += 4.0
    assert ion_leaves_surface([initial, lifted, final], m, z_top)
    assert not ion_leaves_surface([initial, final], m, z_top)
    with_h = initial.copy()
    h = Atoms("H", positions=[initial.positions[m] + [0, 0, 1.8]], tags=[1])
    with_h += h
    assert ligand_in_path([with_h], m)


def test_preconverged_band_gives_the_migrating_ion_its_path(bare_barrier, tmp_path):
    """A band pre-converged with a cheaper setting (here the same potential at a loose fmax) starts the band of
    the protocol asked for: the migrating ion on the pre-converged path, every other atom on the IDPP band
    between this protocol's endpoints (the cheap protocol's host relaxation is not this one's); the band
    reaches the saddle of the band started from IDPP (the module's CLI run)."""
    from ase.mep import NEB

    from ligbind.recipes.defects import barrier_from_endpoints

    b, protocol, host, _, (initial, final) = _stored_hop(bare_barrier)
    loose = load_protocol("ml-screen", {"relax": {"fmax": 0.25, "steps": 150}})
    m = initial.atoms.info["migrating"]
    pre_store = ResultStore(tmp_path / "pre.db")
    out_pre = barrier_from_endpoints(
        host, initial, final, protocol, pre_store, tmp_path, images=5, preconverge=loose
    )
    assert out_pre.preconverge is not None and out_pre.preconverge["converged"]
    assert out_pre.key != b["key"] and out_pre.key.endswith(f"-atoms-{m}")
    assert out_pre.converged
    assert out_pre.ea_forward == pytest.approx(b["ea_forward"], abs=0.03)  # the same saddle
    start = list(Trajectory(str(tmp_path / f"{out_pre.preconverge['key']}.band.traj")))[-7:]
    first = list(Trajectory(str(tmp_path / f"{out_pre.key}.band.traj")))[:7]
    assert np.allclose([a.positions[m] for a in first], [a.positions[m] for a in start])
    idpp = [initial.atoms.copy() for _ in range(6)] + [final.atoms.copy()]
    NEB(idpp, method="improvedtangent").interpolate(method="idpp", mic=True, apply_constraint=True)
    host_atoms = [i for i in range(len(initial.atoms)) if i != m]
    moved = np.abs(start[3].positions[host_atoms] - idpp[3].positions[host_atoms]).max()
    assert moved > 0.01  # the cheap band's host differs from IDPP: the test can tell which one was taken
    assert np.allclose(first[3].positions[host_atoms], idpp[3].positions[host_atoms], atol=1e-3)  # IDPP noise


def test_killed_barrier_command_resumes_its_band(tmp_path, _slab_2x2_session):
    """``ligbind barrier`` killed (SIGKILL) during the NEB, then run again: the second run continues the
    saved band (the file keeps the first run's bands and grows), and the barrier comes out as usual."""
    import signal
    import subprocess
    import time

    from conftest import CLI, cli_env, run_ligbind

    write_structure(tmp_path / "slab.extxyz", _slab_2x2_session)
    args = ["barrier", "--slab", "slab.extxyz", "--images", "3", "--protocol", "ml-screen", "--set", json.dumps(FAST),
            "--json"]  # fmt: skip
    proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    n = 5
    deadline = time.time() + 300
    bands = []
    while time.time() < deadline and proc.poll() is None:
        bands = list((tmp_path / "runs").glob("barrier-*.band.traj"))
        if bands and bands[0].stat().st_size > 0 and len(Trajectory(str(bands[0]))) >= 4 * n:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the NEB finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = list(Trajectory(str(bands[0])))
    done = len(saved) // n - 1
    assert done >= 3
    rerun = run_ligbind(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    b = json.loads(rerun.stdout)["bare"]
    assert b["converged"] and b["n_steps"] > done
    frames = list(Trajectory(str(bands[0])))
    assert len(frames) == (1 + b["n_steps"]) * n  # one band per step over both runs, none written twice
    kept = done * n + n
    assert np.allclose([a.positions for a in frames[:kept]], [a.positions for a in saved[:kept]])


def test_band_cut_mid_write_resumes_from_its_last_complete_band(bare_barrier, tmp_path):
    """A kill while a band was being written leaves part of a band: it is dropped, the last complete band
    is the restart point, and the file stays aligned (one whole band per step)."""
    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    first = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=2)
    traj = tmp_path / f"{first.key}.band.traj"
    frames = list(Trajectory(str(traj)))
    assert len(frames) == 3 * 5
    with Trajectory(str(traj), "a") as t:  # two images of a fourth band, then the "kill"
        t.write(frames[-5])
        t.write(frames[-4])
    second = run_neb(initial, final, protocol, images=3, workdir=tmp_path, steps=4)
    assert second.resumed_from_step == 2 and second.n_steps == 4
    after = list(Trajectory(str(traj)))
    assert len(after) == 5 * 5
    assert np.allclose([a.positions for a in after[:15]], [a.positions for a in frames])


def test_resumed_band_keeps_fire_momentum(bare_barrier, tmp_path):
    """A band resumed after an interruption continues FIRE from its saved velocities and time step (ASE's
    restart file), so its next step is the one an uninterrupted run takes; from rest (the file gone, as before
    2026-12-06) it is not: the DFT band resumed at step 32 needed 21 more steps, the IDPP one 9 from there."""
    _, protocol, _, _, (initial, final) = _stored_hop(bare_barrier)
    last = {}
    for name in ("whole", "resumed", "from-rest"):
        workdir = tmp_path / name
        workdir.mkdir()
        if name != "whole":
            first = run_neb(initial, final, protocol, images=3, workdir=workdir, steps=2)
            restart = workdir / f"{first.key}.fire.json"
            assert restart.exists()
            if name == "from-rest":
                restart.unlink()
        run = run_neb(initial, final, protocol, images=3, workdir=workdir, steps=3)
        assert run.n_steps == 3
        last[name] = np.array(
            [a.positions for a in list(Trajectory(str(workdir / f"{run.key}.band.traj")))[-5:]]
        )
    assert np.allclose(last["resumed"], last["whole"], atol=1e-6)
    assert not np.allclose(last["from-rest"], last["whole"], atol=1e-4)  # the test can tell the two apart


def test_endpoint_above_the_band_is_found_on_its_own_half():
    from ligbind.analysis.migration import endpoints_above_band

    # the DFT band that showed it (gpaw-quick, 5 images): image 1 is 0.19 eV below the initial endpoint
    assert endpoints_above_band([-71.029, -71.217, -71.208, -71.11, -71.04, -71.038, -71.028]) == {0: 1}
    assert endpoints_above_band([0.0, 0.1, 0.3, 0.1, -0.01]) == {}  # within the tolerance
    assert endpoints_above_band([0.0, 0.2, 0.3, -0.2, 0.1]) == {4: 3}  # the final's half only
    assert endpoints_above_band([0.0, 0.2, -0.5, 0.2, 0.0]) == {}  # the middle image belongs to neither


def test_a_metastable_state_on_the_path_is_found():
    from ligbind.analysis.migration import intermediate_minima

    # the DFT bare band (gpaw-quick, 2026-12-07): image 4 lies 0.045 eV below both maxima around it
    assert intermediate_minima([0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076]) == [4]
    assert intermediate_minima([0.0, 0.078, 0.193, 0.216, 0.116, 0.045, 0.005]) == []  # one smooth hump (ML)
    assert intermediate_minima([0.0, 0.2, 0.18, 0.25, 0.0]) == []  # 0.02 eV: within kT
    assert intermediate_minima([0.1, 0.0, 0.2, 0.3, 0.1]) == [1]  # next to an endpoint too
    assert intermediate_minima([0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076], relaxed=[4]) == []


def test_energy_span_over_a_relaxed_intermediate_minimum():
    from ligbind.analysis.migration import barrier_energies, profile_flags

    above = [0.0, 0.05, 0.12, 0.04, 0.10, -0.08]  # intermediate above the start: the highest point counts
    assert barrier_energies(above, [3]) == pytest.approx((0.12, 0.20))
    below = [0.0, 0.2, -0.3, 0.1, 0.0]  # the intermediate is the deepest state: each way climbs out of it
    assert barrier_energies(below, [2]) == pytest.approx((0.4, 0.5))
    assert barrier_energies(below) == pytest.approx((0.2, 0.2))  # read as one band, it misses the dip
    assert profile_flags(below, [2]) == []
    assert profile_flags(below) == ["intermediate-minimum"]


def test_a_stored_barrier_meets_the_profile_criteria_of_today():
    """A barrier stored before a profile flag existed gets it when loaded (and loses its ΔEa); flags the band's
    geometry decided stay as stored."""
    from ligbind.analysis.migration import BarrierOutcome, stored_barrier

    energies = [0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076]
    old = BarrierOutcome(
        ligand="TMSBr", protocol="gpaw-quick", images=5, ea_forward=0.083, ea_backward=0.159,
        profile=[{"image": i, "s": float(i), "e_rel": e} for i, e in enumerate(energies)],
        flags=["ligand-in-path"], ea_bare=0.1, delta_ea=-0.017,
    )  # fmt: skip
    again = stored_barrier(old.as_dict())
    assert again.flags == ["ligand-in-path", "intermediate-minimum"] and again.delta_ea is None
    smooth = [0.0, 0.078, 0.193, 0.216, 0.116, 0.045, 0.005]
    clean = BarrierOutcome(
        ligand=None, protocol="ml-screen", images=5, ea_forward=0.216, ea_backward=0.211,
        profile=[{"image": i, "s": float(i), "e_rel": e} for i, e in enumerate(smooth)], delta_ea=0.02,
    )  # fmt: skip
    assert stored_barrier(clean.as_dict()) == clean  # nothing to add: taken as stored


def test_a_ligand_barrier_takes_delta_ea_against_the_same_hop_on_the_bare_slab():
    """ΔEa = Ea(ligand host) − Ea(bare) for the same hop only, and the row names the bare barrier it used."""
    from ligbind.analysis.migration import BarrierOutcome, _against_bare

    def outcome(ligand, ea, **kw):
        return BarrierOutcome(
            ligand=ligand, protocol="ml-screen", images=5, ea_forward=ea, ea_backward=ea, **kw
        )

    bare = outcome(None, 0.216, site=12, hopper=14, key="bare-key")
    host = outcome("TMSBr", 0.26, site=12, hopper=14)
    _against_bare(host, {}, bare)
    assert (host.ea_bare, host.bare_key) == (0.216, "bare-key")
    assert host.delta_ea == pytest.approx(0.044)
    other_hop = outcome("TMSBr", 0.26, site=12, hopper=15)
    _against_bare(other_hop, {}, bare)
    assert (other_hop.ea_bare, other_hop.bare_key, other_hop.delta_ea) == (None, "", None)
    flagged = outcome("TMSBr", 0.26, site=12, hopper=14, flags=["ligand-in-path"])
    _against_bare(flagged, {}, bare)
    assert (flagged.ea_bare, flagged.bare_key, flagged.delta_ea) == (0.216, "bare-key", None)


def test_a_ligand_barrier_loses_its_delta_ea_when_its_bare_barrier_is_flagged_today(tmp_path):
    """ΔEa stored against a bare barrier that was clean then: the table drops it once the bare one's stored
    profile meets a flag of today (the ligand row is not analysed again)."""
    from ligbind.analysis.defect_tables import migration_table
    from ligbind.analysis.migration import BarrierOutcome, _put_barrier

    store = ResultStore(tmp_path / "ligbind.db")
    protocol = load_protocol("ml-screen")
    top = Atoms("I", positions=[[0.0, 0.0, 0.0]], cell=[5.0, 5.0, 5.0], pbc=True)

    def stored(ligand, energies, key, **kw):
        b = BarrierOutcome(
            ligand=ligand, protocol="ml-screen", images=len(energies) - 2, ea_forward=max(energies),
            ea_backward=max(energies) - energies[-1], converged=True, key=key,
            profile=[{"image": i, "s": float(i), "e_rel": e} for i, e in enumerate(energies)], **kw,
        )  # fmt: skip
        _put_barrier(store, b, top, protocol)

    # the bare band as stored on its day (two maxima around a 0.045 eV minimum: flagged today)
    stored(None, [0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076], "bare")
    stored("TMSBr", [0.0, 0.05, 0.12, 0.05, 0.0], "tmsbr", ea_bare=0.083, delta_ea=0.037)
    table = migration_table(store).set_index("host")
    assert table.loc["(bare)", "flags"] == "intermediate-minimum"
    assert table.loc["TMSBr", "ea_bare"] == pytest.approx(0.083)
    assert np.isnan(table.loc["TMSBr", "delta_ea"])
    # a clean bare band keeps the ligand's ΔEa
    stored(None, [0.0, 0.04, 0.083, 0.04, 0.0], "bare")
    assert migration_table(store).set_index("host").loc["TMSBr", "delta_ea"] == pytest.approx(0.037)
    # a row that names its bare barrier is matched by key, not by an equal Ea of another bare barrier
    stored(None, [0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076], "other-bare")
    stored("KBr", [0.0, 0.05, 0.12, 0.05, 0.0], "kbr", ea_bare=0.083, delta_ea=0.037, bare_key="bare")
    table = migration_table(store).set_index("host")
    assert table.loc["KBr", "delta_ea"] == pytest.approx(0.037)
    assert np.isnan(table.loc["TMSBr", "delta_ea"])  # no key: the flagged bare of equal Ea takes it
    stored(None, [0.0, 0.013, 0.000, 0.083, 0.038, 0.083, -0.076], "bare")
    assert np.isnan(migration_table(store).set_index("host").loc["KBr", "delta_ea"])


def test_a_band_with_a_metastable_state_is_split_there(_slab_2x2_session, tmp_path, monkeypatch):
    """A halide hopping two sites along a row of surface halides (both sites vacant) passes a real minimum,
    the middle site: one refinement round relaxes it as a state of its own and runs a climbing band to it from
    each endpoint; Ea is then the energy span (the intermediate lies below the endpoints here)."""
    import ligbind.jobs as jobs
    import ligbind.neb
    import ligbind.recipes.defects
    from ligbind.analysis.defect_tables import migration_table
    from ligbind.recipes.defects import barrier_from_endpoints

    protocol = load_protocol("ml-screen", FAST)
    store = ResultStore(tmp_path / "ligbind.db")
    host = jobs.relax(_slab_2x2_session, protocol, store=store, workdir=tmp_path)
    atoms = host.atoms

    def vec(i, j):
        return find_mic(atoms.positions[j] - atoms.positions[i], atoms.cell, True)[0]

    def cosine(a, b, c):  # of the angle at b
        u, w = vec(b, a), vec(b, c)
        return float(u @ w / np.linalg.norm(u) / np.linalg.norm(w))

    top = [int(i) for i in surface_halides(atoms)]
    near = [(a, b, c) for b in top for a in top for c in top if a < c and b not in (a, c)]
    near = [t for t in near if max(np.linalg.norm(vec(t[1], t[0])), np.linalg.norm(vec(t[1], t[2]))) < 5.0]
    a, b, c = min(near, key=lambda t: cosine(*t))  # three neighbours in a row
    assert cosine(a, b, c) < -0.9
    keep = [i for i in range(len(atoms)) if i not in (b, c)]
    initial = atoms[keep]
    migrating = keep.index(a)
    final = initial.copy()
    final.positions[migrating] = atoms.positions[a] + vec(a, c)
    info = {"defect": "migration", "migrating": migrating, "site": c, "hopper": a, "hop_length": 8.9}
    ends = []
    for end, state in (("initial", initial), ("final", final)):
        state.info = {**info, "endpoint": end}
        relaxed = jobs.relax(state, protocol, store=store, workdir=tmp_path, prerelax=False)
        relaxed.atoms.info = dict(state.info)
        ends.append(relaxed)

    def barrier(rounds):
        return barrier_from_endpoints(host, *ends, protocol, store, tmp_path, images=5, refinements=rounds)

    one_band = barrier(0)
    energies = [p["e_rel"] for p in one_band.profile]
    assert one_band.converged and one_band.flags == ["intermediate-minimum"]
    assert energies[3] < min(energies[2], energies[4]) - 0.1  # the middle site, halfway
    # a minimum that relaxes back into an endpoint's basin: recorded, no round spent, not tried again
    monkeypatch.setattr(ligbind.recipes.defects, "same_state", lambda a, b: True)
    unsplit = barrier(1)
    assert unsplit.unsplit and unsplit.refinements == 0 and unsplit.flags == ["intermediate-minimum"]
    assert not unsplit.unresolved() and barrier(1).unsplit
    monkeypatch.undo()
    store.db.delete([store.get(unsplit.key).id])
    split = barrier(1)  # the stored band taken up again (a campaign upgraded to the split)
    energies = [p["e_rel"] for p in split.profile]
    assert split.converged and split.flags == [] and split.minima() == [3] and split.refinements == 1
    assert split.images == 5  # two images on each side of the relaxed minimum
    (middle,) = [
        r.toatoms() for r in store.select(kind="relax") if "minimum-at-image-3" in r.get("label", "")
    ]
    assert find_mic(middle.positions[migrating] - atoms.positions[b], atoms.cell, True)[1] < 1.0  # at site b
    assert split.ea_forward == pytest.approx(max(energies[3:]) - energies[3])  # out of the deeper minimum
    assert split.ea_backward == pytest.approx(max(energies[:4]) - energies[3])
    assert split.ea_forward > one_band.ea_forward  # the single band's Ea missed the dip
    # stored resolved: taken as it is, no band runs again
    monkeypatch.setattr(ligbind.neb, "run_neb", lambda *a, **k: pytest.fail("band recomputed"))
    assert barrier(1).ea_forward == split.ea_forward
    row = migration_table(store).iloc[0]
    assert row["flags"] == "none" and float(row["intermediate"]) == pytest.approx(energies[3], abs=1e-4)


def test_lowest_image_is_measured_from_the_initial_endpoint_without_the_endpoints():
    from ligbind.analysis.migration import lowest_image

    # the campaign's bare DFT band (mixed-halide-dft, 2026-12-07): flagged, image 2 dips 54 meV below the start
    profile = [0.0, -0.0416, -0.0539, 0.0284, -0.0167, 0.0286, -0.1294]
    assert lowest_image(profile) == pytest.approx(-0.0539)  # the final endpoint (−0.129) is not an image
    assert lowest_image([-5.0, -4.9, -4.7, -4.95, -5.1]) == pytest.approx(0.05)


def test_endpoint_that_is_not_a_minimum_is_relaxed_again_from_the_band(bare_barrier, tmp_path):
    """An initial endpoint above the bottom of its basin (here: the vacancy left unrelaxed) lets the images next
    to it fall below it; the recipe re-relaxes that endpoint from the lowest image and converges the band
    again, which recovers the barrier between the relaxed endpoints. A rerun finds it under the key asked for."""
    from ligbind.jobs import single_point
    from ligbind.recipes.defects import barrier_from_endpoints

    b, protocol, host, built, (_, final) = _stored_hop(bare_barrier)
    refine_store = ResultStore(tmp_path / "refine.db")
    initial = single_point(built[0], protocol, store=refine_store, workdir=tmp_path)  # not relaxed
    initial.atoms.info = dict(built[0].info)
    result = barrier_from_endpoints(host, initial, final, protocol, refine_store, tmp_path, images=5)
    assert result.converged and "endpoint-not-minimum" not in result.flags
    assert result.initial_key != initial.key and result.final_key == final.key  # only the initial one redone
    assert result.ea_forward == pytest.approx(b["ea_forward"], abs=0.05)
    assert refine_store.get(result.key).kind == "barrier"
    again = barrier_from_endpoints(host, initial, final, protocol, refine_store, tmp_path, images=5)
    assert again.key == result.key and again.ea_forward == result.ea_forward


def test_a_band_that_still_dips_is_refined_again_up_to_the_limit(bare_barrier, tmp_path, monkeypatch):
    """A re-relaxed endpoint that the next band still dips below (here: a first refinement that changed
    nothing, and no symmetry partner to relax it from) gets another round, up to ``refinements``; at the limit the barrier is stored flagged, and asking
    for it again with a higher limit refines the stored one further (the DFT bare band of mixed-halide-dft
    dipped 54 meV below its start after one round)."""
    import ligbind.recipes.defects as defects
    from ligbind.jobs import single_point

    b, protocol, host, built, (_, final) = _stored_hop(bare_barrier)
    real = defects.refine_endpoints
    calls = []

    def first_one_misses(run, initial, final, *args):
        calls.append(run.key)
        return (initial, final) if len(calls) == 1 else real(run, initial, final, *args)

    monkeypatch.setattr(defects, "refine_endpoints", first_one_misses)
    # (the unrelaxed initial end lies above the final, its symmetry partner, which would mend it otherwise)
    monkeypatch.setattr(defects, "equalise_endpoints", lambda host, initial, final, *args: (initial, final))

    def unrelaxed(name):
        store, workdir = ResultStore(tmp_path / f"{name}.db"), tmp_path / name
        workdir.mkdir()
        initial = single_point(built[0], protocol, store=store, workdir=workdir)
        initial.atoms.info = dict(built[0].info)
        return initial, store, workdir

    initial, store, workdir = unrelaxed("two")
    result = defects.barrier_from_endpoints(host, initial, final, protocol, store, workdir, refinements=2)
    assert len(calls) == 2 and result.refinements == 2
    assert result.converged and "endpoint-not-minimum" not in result.flags
    assert result.ea_forward == pytest.approx(b["ea_forward"], abs=0.05)

    calls.clear()
    initial, store, workdir = unrelaxed("one")
    flagged = defects.barrier_from_endpoints(host, initial, final, protocol, store, workdir, refinements=1)
    assert len(calls) == 1 and flagged.refinements == 1
    assert flagged.converged and "endpoint-not-minimum" in flagged.flags
    kept = defects.barrier_from_endpoints(host, initial, final, protocol, store, workdir, refinements=1)
    assert len(calls) == 1 and kept.flags == flagged.flags  # at its limit: reused as stored
    further = defects.barrier_from_endpoints(host, initial, final, protocol, store, workdir, refinements=2)
    assert further.key == flagged.key and "endpoint-not-minimum" not in further.flags
    assert store.get(further.key).data["outcome"]["refinements"] == further.refinements >= 1


def test_first_band_stops_once_an_image_is_below_an_endpoint(bare_barrier, tmp_path, monkeypatch):
    """The first band between an unrelaxed initial end and the relaxed final one stops at the first step that
    puts an image ENDPOINT_TOLERANCE below an endpoint (converging it would not spare the re-relaxation), and
    a rerun hands that saved band back without a calculator."""
    import ligbind.neb
    from ligbind.jobs import single_point
    from ligbind.recipes.defects import barrier_from_endpoints, endpoints_above

    _, protocol, host, built, (_, final) = _stored_hop(bare_barrier)
    scratch = ResultStore(tmp_path / "stop.db")
    initial = single_point(built[0], protocol, store=scratch, workdir=tmp_path)
    initial.atoms.info = dict(built[0].info)
    runs = []
    run_neb_ = ligbind.neb.run_neb

    def recorded(*args, **kwargs):
        runs.append(run_neb_(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(ligbind.neb, "run_neb", recorded)
    result = barrier_from_endpoints(host, initial, final, protocol, scratch, tmp_path, images=5)
    first, second = runs
    assert first.stopped and not first.converged and endpoints_above_band(first.energies)
    assert second.converged and not second.stopped and result.converged
    frames = list(Trajectory(str(tmp_path / f"{first.key}.band.traj")))
    bands = [[a.get_potential_energy() for a in frames[k : k + 7]] for k in range(0, len(frames), 7)]
    assert len(bands) == first.n_steps + 1
    assert endpoints_above_band(bands[-1]) and not any(endpoints_above_band(e) for e in bands[:-1])

    def no_calculators(*args, **kwargs):
        raise AssertionError("the stopped band was recomputed")

    monkeypatch.setattr(ligbind.neb, "_band", no_calculators)
    again = ligbind.neb.run_neb(
        initial, final, protocol, images=5, workdir=tmp_path, stop_when=endpoints_above
    )
    assert again.stopped and again.n_steps == first.n_steps and again.force_calls == first.force_calls


def test_endpoint_above_its_symmetry_partner_is_relaxed_from_its_image(bare_barrier, tmp_path):
    """The two ends of a hop on the bare slab are images of each other under the slab's symmetry; when one was
    left above the other (here: unrelaxed), it is relaxed again from the image of the lower one and then lies at
    the same energy. Equal endpoints are left alone, and a rerun reuses the relaxation."""
    from ligbind.jobs import single_point
    from ligbind.recipes.defects import equalise_endpoints

    _, protocol, host, built, (initial, _) = _stored_hop(bare_barrier)
    scratch = ResultStore(tmp_path / "image.db")
    unrelaxed = single_point(built[1], protocol, store=scratch, workdir=tmp_path)
    unrelaxed.atoms.info = dict(built[1].info)
    assert unrelaxed.energy > initial.energy + 0.05
    same, final = equalise_endpoints(host, initial, unrelaxed, protocol, scratch, tmp_path)
    assert same is initial and final.key != unrelaxed.key and final.converged
    assert final.energy == pytest.approx(initial.energy, abs=0.02)
    assert (
        final.atoms.info["endpoint"] == "final"
        and final.atoms.info["migrating"] == built[1].info["migrating"]
    )
    assert equalise_endpoints(host, initial, final, protocol, scratch, tmp_path) == (initial, final)
    again = equalise_endpoints(host, initial, unrelaxed, protocol, scratch, tmp_path)[1]
    assert again.key == final.key and again.reused


def test_endpoint_replaced_by_a_symmetry_image_gets_a_fresh_band(bare_barrier, tmp_path, monkeypatch):
    """When the refinement leaves one end above its symmetry partner (here: a refinement that changed nothing
    on an unrelaxed final end), that end is relaxed from the partner's image, and the band between the new
    ends starts afresh from a band pre-converged between them, not from the old band, whose images near that
    end belong to the other basin. The barrier then matches the relaxed-endpoint one."""
    import ligbind.recipes.defects as defects
    from ligbind.jobs import single_point

    b, protocol, host, built, (initial, _) = _stored_hop(bare_barrier)
    scratch = ResultStore(tmp_path / "fresh.db")
    unrelaxed = single_point(built[1], protocol, store=scratch, workdir=tmp_path)
    unrelaxed.atoms.info = dict(built[1].info)
    monkeypatch.setattr(defects, "refine_endpoints", lambda run, i, f, *args: (i, f))
    monkeypatch.setattr(defects, "endpoints_above_band", lambda energies: {4: 3})
    cheaper = load_protocol("ml-screen")
    result = defects.barrier_from_endpoints(
        host, initial, unrelaxed, protocol, scratch, tmp_path, images=3, preconverge=cheaper
    )
    first_start = run_neb(
        *(single_point(r.atoms, cheaper, workdir=tmp_path) for r in (initial, unrelaxed)),
        cheaper, images=3, workdir=tmp_path,
    )  # fmt: skip
    assert result.converged and result.final_key != unrelaxed.key
    assert "image-of-initial" in scratch.get(result.final_key).label
    assert result.preconverge["key"] != first_start.key  # pre-converged again between the new ends
    assert result.e_final == pytest.approx(result.e_initial, abs=0.02)
    assert result.ea_forward == pytest.approx(b["ea_forward"], abs=0.05)
