"""No stale or silent results: changed settings recompute, failed and unconverged work is visible everywhere,
flagged Frenkel pairs stay out of E_F, and the direct and campaign paths give the same analyses."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from ase import Atoms
from conftest import run_ligbind

from ligbind.analysis.frenkel import ligand_binds_interstitial, pair_flags
from ligbind.jobs import Result
from ligbind.store import ResultStore

FAST = {"relax": {"fmax": 0.1, "steps": 150}}


def campaign(tmp_path, **changes):
    spec = {
        "name": "trust",
        "protocol": "ml-screen",
        "overrides": FAST,
        "ligands": ["methylamine"],
        "configs": 1,
    }
    spec.update(changes)
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_changed_settings_give_new_results_and_never_relabel_old_ones(tmp_path):
    path = campaign(tmp_path)
    assert run_ligbind("screen", str(path), cwd=tmp_path).returncode == 0
    assert run_ligbind("run", "trust", cwd=tmp_path).returncode == 0
    assert run_ligbind("results", "trust", cwd=tmp_path).returncode == 0
    first = pd.read_csv(tmp_path / "results" / "trust" / "binding.csv")
    path.write_text(path.read_text().replace("fmax: 0.1", "fmax: 0.2"))
    screened = run_ligbind("screen", str(path), cwd=tmp_path)
    assert "settings changed since the last screen: relax.fmax: 0.1 → 0.2" in screened.stdout
    assert (
        "added 5 Firework(s)" in screened.stdout
    )  # slab, ligand, configuration, reference, binding: all recomputed
    assert "added 0 Firework(s)" in run_ligbind("screen", str(path), cwd=tmp_path).stdout
    assert run_ligbind("run", "trust", cwd=tmp_path).returncode == 0
    run_ligbind("results", "trust", cwd=tmp_path)
    second = pd.read_csv(tmp_path / "results" / "trust" / "binding.csv")
    store = ResultStore(tmp_path / "runs" / "trust" / "ligbind.db")
    rows = list(store.select(kind="binding"))
    assert len(rows) == 2  # one analysis per setting, under its own key
    assert len(first) == len(second) == 1  # the table shows the current settings only
    current = next(r for r in rows if r.data["protocol"]["relax"]["fmax"] == 0.2)
    assert second.loc[0, "eb"] == pytest.approx(current.eb, abs=1e-4)  # the CSV keeps 4 decimals
    slabs = [r for r in store.select(kind="relax") if r.get("label") == "slab"]
    assert sorted(r.data["protocol"]["relax"]["fmax"] for r in slabs) == [
        0.1,
        0.2,
    ]  # recomputed, not relabelled


@pytest.mark.slow
def test_changed_counts_rerun_the_analysis_and_going_back_restores_it(tmp_path):
    path = campaign(tmp_path)
    run_ligbind("screen", str(path), cwd=tmp_path)
    assert run_ligbind("run", "trust", cwd=tmp_path).returncode == 0
    path.write_text(path.read_text().replace("configs: 1", "configs: 2"))
    screened = run_ligbind("screen", str(path), cwd=tmp_path)
    assert "settings changed since the last screen: configs: 1 → 2" in screened.stdout
    assert "added 6 Firework(s)" in screened.stdout  # slab, ligand, 2 configurations, reference, binding
    assert run_ligbind("run", "trust", cwd=tmp_path).returncode == 0
    run_ligbind("results", "trust", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "results" / "trust" / "binding.csv")
    assert list(table["configs_tried"]) == [2]  # the analysis saw the new configuration
    slabs = [r for r in ResultStore(tmp_path / "runs" / "trust" / "ligbind.db").select(kind="relax")]
    assert sum(r.get("label") == "slab" for r in slabs) == 1  # the unchanged slab was reused, not recomputed
    path.write_text(path.read_text().replace("configs: 2", "configs: 1"))
    back = run_ligbind("screen", str(path), cwd=tmp_path)
    assert "added 0 Firework(s)" in back.stdout and "configs: 2 → 1" in back.stdout
    assert run_ligbind("run", "trust", cwd=tmp_path).returncode == 0
    run_ligbind("results", "trust", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "results" / "trust" / "binding.csv")
    assert list(table["configs_tried"]) == [1]  # not the row the two-configuration analysis wrote


@pytest.mark.slow
def test_failed_and_unconverged_work_shows_in_exit_code_status_and_table(tmp_path):
    # two steps: the slab converges (unrattled, it is already at fmax 0.1), the ligands and complexes cannot
    overrides = {"relax": {"fmax": 0.1, "steps": 2}, "slab": {"starts": 1, "rattle": 0.0}}
    path = campaign(tmp_path, ligands=["methylamine", "dimethyl-ether"], overrides=overrides)
    run_ligbind("screen", str(path), cwd=tmp_path)
    ran = run_ligbind("run", "trust", cwd=tmp_path)
    assert ran.returncode == 3 and "unconverged" in ran.stdout
    status = run_ligbind("status", "trust", "--json", cwd=tmp_path)
    assert status.returncode == 3
    import json

    (report,) = json.loads(status.stdout)
    assert report["unconverged"] >= 2  # the complexes stopped at the step limit
    assert run_ligbind("results", "trust", cwd=tmp_path).returncode == 0
    table = pd.read_csv(tmp_path / "results" / "trust" / "binding.csv").set_index("ligand")
    assert set(table.index) == {"methylamine", "dimethyl-ether"}  # no ligand disappears silently
    assert table["eb"].isna().all()  # nothing unconverged becomes an Eb
    for ligand, flags in table["flags"].items():  # the reason is in the row: a failed step, or unconverged
        assert flags.startswith(f"missing: binding/{ligand} failed") or "unconverged" in flags, flags
    for failure in report["failures"]:
        assert "did not converge" in failure["error"]


def _result(atoms: Atoms, converged: bool = True) -> Result:
    return Result("k", "relax", atoms, 0.0, 0.0, converged, 1, 1, {})


def test_frenkel_pair_flags_follow_the_energy_and_the_geometry():
    lone = Atoms("I", positions=[[0, 0, 10]], cell=[10, 10, 30], pbc=True)
    lone.info["vacancy_atom"] = 0
    assert pair_flags(0.8, _result(lone)) == []
    assert pair_flags(0.02, _result(lone)) == ["recombined"]
    assert pair_flags(-0.3, _result(lone)) == [
        "below-pristine"
    ]  # lower than the pristine surface: not a defect
    assert pair_flags(0.8, _result(lone, converged=False)) == ["unconverged"]
    # an ammonium H 1.9 Å from the moved iodide: the ligand binds it (hydrogen bond shorter than 2.5 Å)
    bound = lone + Atoms("NH", positions=[[0, 0, 12.9], [0, 0, 11.9]])
    bound.set_tags([0, 1, 1])
    bound.info["vacancy_atom"] = 0
    assert ligand_binds_interstitial(bound) and "ligand-binds-interstitial" in pair_flags(0.8, _result(bound))
    far = bound.copy()
    far.positions[1:] += [0, 0, 3.0]
    far.info["vacancy_atom"] = 0
    assert not ligand_binds_interstitial(far)


def test_placements_read_back_give_the_same_store_keys(tmp_path):
    """Key stability: the cached placements (what every later step reads) hash like the placed structures."""
    from ase.io import Trajectory

    from ligbind.builders.placement import place_ligand
    from ligbind.builders.slab import build_slab
    from ligbind.protocols import load_protocol
    from ligbind.store import calculation_key

    protocol = load_protocol("ml-screen")
    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3)
    placed = place_ligand(slab, "N-methylacetamide", n_configs=3, seed=0)
    rng = np.random.default_rng(0)
    for atoms in placed:  # positions with all their digits, as a relaxation leaves them
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
    with Trajectory(str(tmp_path / "placed.traj"), "w") as traj:
        for atoms in placed:
            traj.write(atoms)
    again = list(Trajectory(str(tmp_path / "placed.traj")))
    for a, b in zip(placed, again, strict=True):
        assert calculation_key("relax", a, protocol) == calculation_key("relax", b, protocol)


@pytest.mark.slow
def test_status_shows_what_a_live_run_is_computing(tmp_path, monkeypatch):
    """The embedded store is saved between Fireworks: status names the running one and how long it has run,
    and forgets it when the run ends or its process is gone."""
    import contextlib
    import json
    import socket
    import subprocess

    import fireworks.core.rocket_launcher

    from ligbind.engine.fireworks import RunningRecord, run, screen, status

    monkeypatch.chdir(tmp_path)
    path = campaign(tmp_path)
    screen(path)
    seen = []
    real = fireworks.core.rocket_launcher.launch_rocket

    def launch_and_look(lpad, fworker, fw_id=None, **kwargs):
        name = lpad.fireworks.find_one({"fw_id": fw_id}, {"name": 1})["name"].split(":", 1)[-1]
        with contextlib.chdir(tmp_path):  # where the user types `ligbind status` (run works in launches/)
            (report,) = status("trust")
        seen.append((name, report.get("running"), report.get("worker"), report["states"]))
        return real(lpad, fworker, fw_id=fw_id, **kwargs)

    monkeypatch.setattr(fireworks.core.rocket_launcher, "launch_rocket", launch_and_look)
    assert run(path, progress=False, workers=1)["failed"] == 0
    assert len(seen) >= 4
    for name, running, worker, states in seen:
        assert [r["firework"] for r in running] == [name] and worker == f"pid {os.getpid()}"
        assert states["RUNNING"] == 1 and sum(states.values()) == 5  # READY in the saved store, shown running
    (report,) = status("trust")
    assert "running" not in report and not (tmp_path / "runs" / "trust" / "running.json").exists()
    # the command line, while this process (alive) holds a record
    record = RunningRecord(tmp_path / "runs" / "trust")
    record.start("relax-slab")
    shown = run_ligbind("status", "trust", cwd=tmp_path).stdout
    assert f"a run is working on it (pid {os.getpid()})" in shown and "RUNNING relax-slab: for 0 min" in shown
    assert "RUNNING 1" not in shown  # the record names a Firework that is not READY: the counts stay as saved
    # a record left behind by a killed run names a process that is gone, and one copied from another machine
    # names that machine: nothing is shown as running
    path = tmp_path / "runs" / "trust" / "running.json"
    alive = path.read_text()
    path.write_text(alive.replace(json.dumps(socket.gethostname()), '"elsewhere"'))
    assert "running" not in status("trust")[0]
    gone = subprocess.Popen(["true"])
    gone.wait()
    path.write_text(alive.replace(str(os.getpid()), str(gone.pid)))
    assert "running" not in status("trust")[0]
    assert "RUNNING" not in run_ligbind("status", "trust", cwd=tmp_path).stdout


@pytest.mark.slow
def test_status_shows_what_the_workers_of_a_parallel_run_compute(tmp_path, monkeypatch):
    """With worker processes, the record names every calculation a worker holds (the slab and the ligand side
    by side) and status counts exactly those as RUNNING."""
    import contextlib

    import fireworks.core.rocket_launcher

    from ligbind.engine.fireworks import RunningRecord, run, screen, status

    monkeypatch.chdir(tmp_path)
    screen(campaign(tmp_path))
    written = []
    real_write = RunningRecord._write

    def write_and_keep(self):
        written.append(sorted(self.since))
        real_write(self)

    monkeypatch.setattr(RunningRecord, "_write", write_and_keep)
    seen = []
    real = fireworks.core.rocket_launcher.launch_rocket

    def launch_and_look(lpad, fworker, fw_id=None, **kwargs):
        with contextlib.chdir(tmp_path):
            (report,) = status("trust")
        seen.append(([r["firework"] for r in report.get("running", [])], report["states"], written[-1]))
        return real(lpad, fworker, fw_id=fw_id, **kwargs)

    monkeypatch.setattr(fireworks.core.rocket_launcher, "launch_rocket", launch_and_look)
    assert run(tmp_path / "trust.yaml", progress=False, workers=2)["failed"] == 0
    assert ["ligand/methylamine", "slab"] in written  # two workers at once, both recorded
    assert seen
    for shown, states, record in seen:
        assert sorted(shown) == record  # what status shows is what the run recorded at that moment
        assert states.get("RUNNING", 0) == len(record)
    assert written[-1] == [] and "running" not in status("trust")[0]


def test_status_reports_the_relaxation_in_progress(tmp_path):
    """A DFT relaxation runs for hours inside one Firework: status reads its optimizer log (last step, fmax and
    the protocol's target, seconds per step, none across a restart or midnight miscounted) and leaves out the
    calculations that are stored or were last written before the running Firework started."""
    import time

    from ase.build import molecule

    from ligbind.cli import _calculation_line
    from ligbind.engine.fireworks import active_calculations
    from ligbind.protocols import load_protocol, protocol_hash
    from ligbind.store import ResultStore

    protocol = load_protocol("ml-screen", {"relax": {"fmax": 0.07}})
    h = protocol_hash(protocol)
    c = {"workdir": str(tmp_path), "store": str(tmp_path / "r.db"), "protocol": protocol, "verify": None}
    calcs = tmp_path / "calcs"
    calcs.mkdir()
    header = "      Step     Time          Energy          fmax\n"

    def log(name: str, *steps: tuple[str, int, str, float, float], resumed_after: int = -1) -> None:
        lines = [header]
        for i, (opt, n, clock, e, f) in enumerate(steps):
            lines.append(f"{opt}: {n:4d} {clock} {e:15.6f} {f:15.6f}\n")
            if i == resumed_after:
                lines.append(header)
        (calcs / name).write_text("".join(lines))

    since = time.time() - 1
    steps = [
        ("BFGS", 0, "23:59:30", -85.10, 0.40),
        ("BFGS", 1, "00:00:30", -85.15, 0.20),  # 60 s across midnight
        ("BFGS", 1, "00:40:00", -85.15, 0.20),  # resumed: no interval across the new header
        ("BFGS", 2, "00:40:50", -85.16, 0.12),
        ("BFGS", 3, "00:41:30", -85.17, 0.09),
    ]
    log(f"relax-aaaa-{h}.log", *steps, resumed_after=1)
    log(f"relax-bbbb-{h}.log", ("BFGS", 0, "00:00:00", -1.0, 0.01))  # finished: its row is stored
    ResultStore(c["store"]).put(molecule("H2"), f"relax-bbbb-{h}")
    log(f"relax-cccc-{h}.log", ("BFGS", 0, "00:00:00", -1.0, 0.5))  # a run before this one
    os.utime(calcs / f"relax-cccc-{h}.log", (since - 3600, since - 3600))
    log(f"neb-dddd-{h}.neb.log", ("FIRE", 7, "00:00:00", -2.0, 0.3), ("FIRE", 8, "00:02:00", -2.1, 0.2))

    found = {k["key"]: k for k in active_calculations(c, since)}
    assert set(found) == {f"relax-aaaa-{h}", f"neb-dddd-{h}"}
    relax, band = found[f"relax-aaaa-{h}"], found[f"neb-dddd-{h}"]
    assert (relax["kind"], relax["step"], relax["fmax"], relax["fmax_target"]) == (
        "relaxation",
        3,
        0.09,
        0.07,
    )
    assert relax["seconds_per_step"] == pytest.approx((60 + 50 + 40) / 3)
    assert (band["kind"], band["optimizer"], band["step"], band["fmax_target"]) == ("band", "FIRE", 8, None)
    assert band["seconds_per_step"] == 120
    line = _calculation_line(relax)
    assert f"relaxation relax-aaaa-{h} (BFGS): step 3, fmax 0.090 (to 0.07) eV/Å" in line
    assert "50 s per step; last step 0 min ago" in line
    assert active_calculations(c, time.time() + 60) == []  # nothing written since


@pytest.mark.slow
def test_status_estimates_the_time_left_at_the_campaigns_pace(tmp_path, monkeypatch):
    """Part of a campaign run: status gives each step with finished Fireworks its mean cost (the launch's run
    time, or the stored calculation's wall time where longer), times what is left of it, and names the steps
    it cannot time yet; nothing once the campaign is done."""
    from ligbind.cli import _time_left_line
    from ligbind.engine.campaign import resolve_campaign_ref
    from ligbind.engine.fireworks import (
        default_workers,
        read_launchpad,
        run,
        screen,
        status,
        step_kind,
        time_left,
    )

    monkeypatch.chdir(tmp_path)
    path = campaign(tmp_path, ligands=["methylamine", "methanethiol"])
    screen(path)
    run(path, progress=False, workers=1, max_fireworks=4)
    (report,) = status("trust")
    lpad = read_launchpad(resolve_campaign_ref("trust"), None)
    store = ResultStore(tmp_path / "runs" / "trust" / "ligbind.db")
    finished, left, waiting = {}, {}, {}
    for doc in lpad.fireworks.find({"spec._campaign": "trust"}):
        kind = step_kind(doc["name"])
        if doc["state"] != "COMPLETED":
            left[kind] = left.get(kind, 0) + 1
            waiting.setdefault(kind, doc["name"])
            continue
        launch = lpad.launches.find_one({"fw_id": doc["fw_id"]}, sort=[("launch_id", -1)])
        key = launch["action"]["stored_data"].get("key")
        wall = store.get(key).wall_time if key else 0.0
        finished.setdefault(kind, []).append(max(launch["runtime_secs"], wall))
    assert sum(len(v) for v in finished.values()) == 4 and left
    t = report["time_left"]
    timed = {s["step"]: s for s in t["steps"]}
    assert set(timed) | set(t["untimed"]) == set(left)
    assert set(timed) == set(left) & set(finished) and set(t["untimed"]) == set(left) - set(finished)
    for kind, s in timed.items():
        assert s["left"] == left[kind] and s["pace"] == pytest.approx(np.mean(finished[kind]))
    # no run is alive: as many workers side by side as `ligbind run` would start (one per core on ML)
    assert t["workers"] == default_workers(resolve_campaign_ref("trust"))
    assert t["seconds"] == pytest.approx(sum(s["pace"] * s["left"] for s in timed.values()) / t["workers"])
    assert t["steps"] and t["untimed"]  # this plan has both at this point (the slab and a ligand ran first)
    assert t["overdue"] == {}
    # a Firework of a timed step running for a while: what the finished ones that took longer took beyond that
    kind = t["steps"][0]["step"]
    whole = sum(s["pace"] * s["left"] for s in timed.values()) - timed[kind]["pace"]
    c = resolve_campaign_ref("trust")
    for spent, rest in [(0.0, np.mean(finished[kind])), (min(finished[kind]) / 2, None), (1e6, 0.0)]:
        at = [{"firework": waiting[kind].split(":", 1)[1], "since": time.time() - spent}]  # as running.json
        est = time_left(lpad, c, running=at, workers=1)
        if rest is None:
            rest = np.mean([x - spent for x in finished[kind] if x > spent])
        assert est["seconds"] == pytest.approx(whole + rest, abs=0.5)
        # one that has outrun every finished one of its step is named, and counted as nearly done
        assert list(est["overdue"]) == ([waiting[kind].split(":", 1)[1]] if spent == 1e6 else [])
    assert "running longer than any finished one of its step" in _time_left_line(est)
    shown = run_ligbind("status", "trust", cwd=tmp_path).stdout
    assert "  left: about 0 min" in shown and "at this campaign's pace (" in shown
    assert "; not timed yet (no Firework of theirs finished): " in shown
    run(path, progress=False, workers=1)
    assert "time_left" not in status("trust")[0]
