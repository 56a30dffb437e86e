"""Campaigns through FireWorks on the embedded store: parsing errors, reuse, kill-and-resume, second worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ligbind.engine.campaign import load_campaign
from ligbind.errors import LigbindError
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

CLI = [sys.executable, "-m", "ligbind.cli"]
MINI = {
    "name": "mini",
    "protocol": "ml-screen",
    "overrides": {"relax": {"fmax": 0.1, "steps": 150}},
    "ligands": ["methylamine", "dimethyl-ether"],
    "configs": 2,
    "compute": {"binding": True},
}


def write_campaign(directory: Path, **changes) -> Path:
    spec = {**MINI, **changes}
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def ligbind(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"ligbind {' '.join(args)} failed:\n{proc.stderr}")
    return proc


SLAB_STARTS = load_protocol("ml-screen")["slab"]["starts"]


def relax_rows(store_path: Path) -> dict[str, float]:
    return {row.key: row.energy for row in ResultStore(store_path).select(kind="relax")}


# ------------------------------------------------------------------------------------------ parsing errors
@pytest.mark.parametrize(
    ("changes", "raw", "message"),
    [
        ({"ligands": ["methylamine", "unobtainium"]}, None, "unknown ligand 'unobtainium'"),
        ({"protocol": "dft-magic"}, None, "unknown protocol 'dft-magic'"),
        ({"colour": "blue"}, None, "colour: unknown key"),
        ({"ligands": [{"smiles": "C1CC(("}]}, None, "cannot parse SMILES"),
        ({}, "name: x\nligands: [a, b\n", "not valid YAML"),
        ({"compute": {"coadsorption": [["methylamine", "OA"]]}}, None, "coadsorption pair"),
    ],
)
def test_bad_campaign_is_refused_and_nothing_submitted(tmp_path, changes, raw, message):
    path = write_campaign(tmp_path, **changes)
    if raw is not None:
        path.write_text(raw)
    with pytest.raises(LigbindError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_campaign(path)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "raw", ["name: x\nligands: [a, b\n", "name: x\nligands: [methylamine, unobtainium]\n"]
)
def test_screen_of_bad_campaign_exits_with_one_line(tmp_path, raw):
    path = tmp_path / "x.yaml"
    path.write_text(raw)
    proc = ligbind("screen", str(path), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_extends_takes_the_base_settings_but_not_its_name_or_places(tmp_path):
    """`extends:` lays a campaign over another (mappings merged key by key, the rest replaced) and keeps its own
    name, store and workdir: the result is the campaign one would write out in full."""
    base = write_campaign(tmp_path, store="base.db", workdir="base-runs")
    for folder in ("variants", "full"):
        (tmp_path / folder).mkdir()
    child = tmp_path / "variants" / "child.yaml"
    child.write_text(
        "extends: ../mini.yaml\nconfigs: 1\nligands: [methylamine]\noverrides: {relax: {steps: 50}}\n"
    )
    in_full = write_campaign(
        tmp_path / "full",
        name="child",
        configs=1,
        ligands=["methylamine"],
        overrides={"relax": {"fmax": 0.1, "steps": 50}},
    )
    got, expected = load_campaign(child), load_campaign(in_full)
    assert got.pop("file") != expected.pop("file")
    assert got == expected
    assert got["name"] == "child" and "base" not in json.dumps(got)
    assert load_campaign(base)["store"].endswith("base.db")  # the base itself is unchanged


@pytest.mark.parametrize(
    ("extends", "message"),
    [
        ("missing.yaml", "extends: campaign file not found"),
        ("child.yaml", "extends: a loop"),
        ("[a.yaml]", "extends: give the path of the campaign YAML it extends"),
        ("bad.yaml", "extends: campaign .*bad.yaml is not valid YAML"),
    ],
)
def test_bad_extends_is_one_line(tmp_path, extends, message):
    (tmp_path / "bad.yaml").write_text("ligands: [a\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {extends}\nconfigs: 1\n")
    with pytest.raises(LigbindError, match=message) as err:
        load_campaign(child)
    assert str(err.value).startswith(f"campaign {child}: extends:") and "\n" not in str(err.value)


# --------------------------------------------------------------------------- FireWorks run and reuse counts
@pytest.mark.slow
def test_campaign_runs_through_fireworks_and_reuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the campaign's runs/ as the CLI calls below see it
    path = write_campaign(tmp_path)
    out = ligbind("screen", str(path), "--json", cwd=tmp_path)
    assert '"added": 10' in out.stdout  # slab + 2 ligands + 2x2 configs + the slab reference + 2 analyses
    assert "with 2 worker(s)" in ligbind("run", "mini", "--workers", "2", cwd=tmp_path).stdout
    status = ligbind("status", "mini", cwd=tmp_path).stdout
    assert "COMPLETED 10" in status
    store = tmp_path / "runs" / "mini" / "ligbind.db"
    first = relax_rows(store)
    assert (
        len(first) == SLAB_STARTS + 2 + 2 * 2
    )  # the slab's rattled starts (the lowest is the slab), N + N*K
    ligbind("results", "mini", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "results" / "mini" / "binding.csv")
    assert set(table.ligand) == {"methylamine", "dimethyl-ether"}
    assert (table.eb_including_flagged <= table.eb + 1e-9).all()  # the lowest of all converged configurations
    assert "flagged_configs" in table.columns
    assert (table.eb < 0).all() and (table.eb > -3).all()
    assert (tmp_path / "results" / "mini" / "binding.png").stat().st_size > 1000

    # rerun: nothing new; add one ligand: only its 1 + K relaxations
    assert '"added": 0' in ligbind("screen", str(path), "--json", cwd=tmp_path).stdout
    assert '"ran": 0' in ligbind("run", "mini", "--json", cwd=tmp_path).stdout
    _binding_follows_a_lower_reference(tmp_path, store)
    first = relax_rows(store)  # and the stand-in reference
    path = write_campaign(tmp_path, ligands=["methylamine", "dimethyl-ether", "methanethiol"])
    # its ligand and K configurations, and what they join: the slab reference and every Eb against it
    assert '"added": 7' in ligbind("screen", str(path), "--json", cwd=tmp_path).stdout
    ligbind("run", "mini", cwd=tmp_path)
    second = relax_rows(store)
    assert len(second) == len(first) + 1 + 2
    assert all(second[k] == e for k, e in first.items())  # stored results untouched
    assert _reference_parents(tmp_path) == {
        f"config/{lig}/{k}" for lig in ("methylamine", "dimethyl-ether", "methanethiol") for k in (0, 1)
    }
    # the ligand dropped again: the first plan's analyses are redone, the tables show only its ligands
    path = write_campaign(tmp_path)
    out = json.loads(ligbind("screen", str(path), "--json", cwd=tmp_path).stdout)
    assert out["added"] == 0 and {"binding/methylamine", "binding/dimethyl-ether"} <= set(out["rerun"])
    ligbind("run", "mini", cwd=tmp_path)
    ligbind("results", "mini", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "results" / "mini" / "binding.csv")
    assert sorted(table.ligand) == ["dimethyl-ether", "methylamine"]
    assert len(relax_rows(store)) == len(second)  # nothing recomputed
    assert "COMPLETED 10" in ligbind("status", "mini", cwd=tmp_path).stdout  # this plan's Fireworks only


def _reference_parents(tmp_path: Path) -> set[str]:
    """Step names of the parents of the current plan's slab-reference Firework."""
    from ligbind.engine.campaign import resolve_campaign_ref
    from ligbind.engine.fireworks import planned_fireworks

    plan = planned_fireworks(resolve_campaign_ref(tmp_path / "mini.yaml"))
    names = {fw.spec["_ligbind_id"]: fw.name.split(":", 1)[1] for fw, _ in plan}
    (parents,) = [p for fw, p in plan if fw.name == "mini:reference"]
    return {names[p] for p in parents} - {"slab"}


def _binding_follows_a_lower_reference(tmp_path: Path, store: Path) -> None:
    """The binding Firework run again with a reference 0.1 eV lower (a stand-in for a lower framework found
    later): the table shows the new row only, not the one of the earlier run beside it."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ligbind.engine.campaign import resolve_campaign_ref
    from ligbind.engine.fireworks import LigbindStepTask, read_launchpad

    c = resolve_campaign_ref(tmp_path / "mini.yaml")
    (doc,) = read_launchpad(c).fireworks.find({"name": "mini:binding/methylamine"}, {"spec": 1})
    db = ResultStore(store)
    row = db.get(doc["spec"]["_key:reference"])
    lower = row.toatoms()
    lower.positions[0, 2] += 1e-4  # another structure, another key
    lower.calc = SinglePointCalculator(lower, energy=row.energy - 0.1, forces=np.zeros((len(lower), 3)))
    db.put(lower, "relax-lower-reference", data=row.data, kind="relax", status="converged", label="slab")
    before = pd.read_csv(tmp_path / "results" / "mini" / "binding.csv").set_index("ligand")
    task = LigbindStepTask.from_dict(doc["spec"]["_tasks"][0])
    task.run_task({**doc["spec"], "_key:reference": "relax-lower-reference"})
    ligbind("results", "mini", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "results" / "mini" / "binding.csv").set_index("ligand")
    assert sorted(table.index) == ["dimethyl-ether", "methylamine"]  # one row each
    assert table.e_slab["methylamine"] == pytest.approx(row.energy - 0.1, abs=2e-4)  # 4 decimals in the CSV
    assert table.eb["methylamine"] == pytest.approx(before.eb["methylamine"] + 0.1, abs=2e-4)
    # put back: the binding Firework run again with its own reference
    task.run_task(doc["spec"])


def test_new_run_settings_reach_the_unfinished_fireworks(tmp_path):
    """Run-time settings are outside every key: a screen with new ones adds no Firework and the unfinished ones
    run with them (here the seeded BFGS Hessian, recorded with each relaxation)."""
    path = write_campaign(tmp_path, ligands=["methylamine"], configs=1)
    ligbind("screen", str(path), cwd=tmp_path)
    inert = {**MINI["overrides"], "run": {"hessian_scale": 3.0}}  # does nothing while hessian is null
    path = write_campaign(tmp_path, ligands=["methylamine"], configs=1, overrides=inert)
    assert "run-time settings" not in ligbind("screen", str(path), cwd=tmp_path).stdout
    seeded = {**MINI["overrides"], "run": {"hessian": "ml-screen"}}
    path = write_campaign(tmp_path, ligands=["methylamine"], configs=1, overrides=seeded)
    out = ligbind("screen", str(path), cwd=tmp_path).stdout
    assert "added 0 Firework(s)" in out and "protocol.run.hessian: None → 'ml-screen'" in out
    ligbind("run", "mini", cwd=tmp_path)
    rows = list(ResultStore(tmp_path / "runs" / "mini" / "ligbind.db").select(kind="relax"))
    seeded = {row.get("label"): row.data["hessian"] for row in rows}
    assert seeded.pop("ligand:methylamine") is None  # a molecule keeps BFGS's own start
    assert seeded and all(h["protocol"] == "ml-screen" for h in seeded.values())  # slab starts, complex


def test_a_copied_campaign_writes_into_its_own_store(tmp_path, monkeypatch):
    """Fireworks carry the campaign's absolute paths: a campaign directory copied part-way through (another
    checkout, a laptop after the cluster) must finish in the copy, by name and by YAML, and leave the original
    as it was."""
    import shutil

    import ligbind.engine.fireworks as engine

    original, copy = tmp_path / "a", tmp_path / "b"
    original.mkdir()
    monkeypatch.chdir(original)
    path = write_campaign(original, ligands=["methylamine"], configs=1)
    engine.screen(path)
    assert engine.run(path, progress=False, workers=1, max_fireworks=2)["ran"] == 2
    shutil.copytree(original, copy)
    before = relax_rows(original / "runs" / "mini" / "ligbind.db")
    monkeypatch.chdir(copy)
    assert engine.run("mini", progress=False, workers=1, max_fireworks=1)["ran"] == 1  # by name
    out = engine.run(copy / "mini.yaml", progress=False, workers=1)  # by YAML
    assert out["failed"] == 0 and set(out["states"]) == {"COMPLETED"}
    assert relax_rows(original / "runs" / "mini" / "ligbind.db") == before  # the original untouched
    after = relax_rows(copy / "runs" / "mini" / "ligbind.db")
    assert set(before) < set(after) and len(after) == SLAB_STARTS + 1 + 1
    saved = json.loads((copy / "runs" / "mini" / "campaign.json").read_text())
    assert saved["workdir"] == str(copy / "runs" / "mini")


@pytest.mark.parametrize("saved", ['{"name": "mini", "workdir": 42}', "not json"])
def test_a_damaged_saved_campaign_is_one_line(tmp_path, saved):
    (tmp_path / "runs" / "mini").mkdir(parents=True)
    (tmp_path / "runs" / "mini" / "campaign.json").write_text(saved)
    proc = ligbind("run", "mini", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not a campaign saved by `ligbind screen`" in proc.stderr


def test_run_of_a_yaml_unlike_what_was_screened_is_refused(tmp_path, monkeypatch):
    """`ligbind run campaign.yaml` finds the Fireworks of what was screened: before any screen, or after the
    YAML changed, it would run nothing or the old settings. It says so, in one line, and runs nothing."""

    def refused(path: Path, *expected: str) -> None:
        proc = ligbind("run", str(path), cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and f"ligbind screen {path}" in proc.stderr
        assert all(text in proc.stderr for text in expected), proc.stderr

    path = write_campaign(tmp_path, ligands=["methylamine"], configs=1)
    refused(path, "never screened")
    assert not (tmp_path / "runs" / "mini" / "ligbind.db").exists()
    ligbind("screen", str(path), cwd=tmp_path)
    refused(write_campaign(tmp_path, ligands=["methylamine"], configs=2), "configs: 1 → 2")
    refused(
        write_campaign(tmp_path, ligands=["methylamine", "methanethiol"], configs=1),
        "ligands: ['methylamine']",
    )
    seeded = {**MINI["overrides"], "run": {"hessian": "ml-screen"}}
    refused(write_campaign(tmp_path, ligands=["methylamine"], configs=1, overrides=seeded), "run.hessian")
    assert not (tmp_path / "runs" / "mini" / "ligbind.db").exists()  # nothing ran
    from ligbind.engine.campaign import resolve_campaign_ref
    from ligbind.engine.fireworks import check_screened

    monkeypatch.chdir(tmp_path)
    path = write_campaign(tmp_path, ligands=["methylamine"], configs=1)  # as screened: it may run
    check_screened(resolve_campaign_ref(path), path)
    # screened by a ligbind that planned campaigns otherwise (before PLAN_VERSION 2): screen again
    from ligbind.engine.campaign import PLAN_VERSION

    saved = tmp_path / "runs" / "mini" / "campaign.json"
    old = json.loads(saved.read_text())
    old.pop("ligbind_plan")
    saved.write_text(json.dumps(old))
    refused(path, f"ligbind_plan: None → {PLAN_VERSION}")
    proc = ligbind("run", "mini", cwd=tmp_path, check=False)  # by name, i.e. from that screened campaign
    assert (
        proc.returncode == 2
        and f"ligbind_plan: None → {PLAN_VERSION}" in proc.stderr
        and f"screen {path}" in proc.stderr
    )
    out = ligbind("screen", str(path), "--json", cwd=tmp_path).stdout
    assert "ligbind_plan" in json.loads(out)["protocol_changes"][0]  # said, and the saved campaign renewed
    check_screened(resolve_campaign_ref(path), path)
    # this ligbind plans a step the last screen did not add (a new step type): screen again, nothing runs
    import ligbind.engine.fireworks as engine

    c = resolve_campaign_ref(path)
    planned = engine.planned_ids(c)
    monkeypatch.setattr(engine, "planned_ids", lambda c: [*planned, "a-step-of-a-newer-ligbind"])
    with pytest.raises(LigbindError, match=r"1 Fireworks of its plan are not on the LaunchPad.*screen"):
        engine.run(path, progress=False, workers=1)
    assert not (tmp_path / "runs" / "mini" / "ligbind.db").exists()


# ------------------------------------------------------------------------------------ second worker refused
def test_second_worker_is_refused(tmp_path, monkeypatch):
    from ligbind.engine.fireworks import worker_lock

    monkeypatch.chdir(tmp_path)
    path = write_campaign(tmp_path)
    ligbind("screen", str(path), cwd=tmp_path)
    c = load_campaign(path)
    with worker_lock(c):
        proc = ligbind("run", "mini", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not safe for two processes" in lines[0]
    store = tmp_path / "runs" / "mini" / "ligbind.db"
    assert not store.exists() or relax_rows(store) == {}  # the refused worker computed nothing


# ------------------------------------------------------------------------------------------ kill and resume
def _wait_for_partial_relaxation(workdir: Path, store: Path, proc, timeout: float = 600) -> set[str]:
    """Wait until a config relaxation has written trajectory frames but is not stored yet."""
    from ase.io import Trajectory

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "run finished before it could be killed"
        try:
            done = set(relax_rows(store)) if store.exists() else set()
        except Exception:  # the worker may be creating the database right now
            time.sleep(0.2)
            continue
        for traj in (workdir / "calcs").glob("relax-*.traj"):
            key = traj.stem
            if key in done or len(done) < 3:
                continue
            try:
                if len(Trajectory(str(traj))) >= 5:
                    return done | {key}
            except Exception:
                continue
        time.sleep(0.2)
    raise AssertionError("no partial relaxation appeared")


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    from ase.io import Trajectory

    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    for d in (ref_dir, kill_dir):
        d.mkdir()
        ligbind("screen", str(write_campaign(d)), cwd=d)
    ligbind("run", "mini", cwd=ref_dir)
    ligbind("results", "mini", cwd=ref_dir)

    store = kill_dir / "runs" / "mini" / "ligbind.db"
    proc = subprocess.Popen(
        [*CLI, "run", "mini"], cwd=kill_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    seen = _wait_for_partial_relaxation(kill_dir / "runs" / "mini", store, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = relax_rows(store)
    interrupted = (seen - set(before)).pop()
    traj_path = kill_dir / "runs" / "mini" / "calcs" / f"{interrupted}.traj"
    killed_frames = [a.positions.copy() for a in Trajectory(str(traj_path))]
    frames_at_kill = len(killed_frames)
    assert frames_at_kill >= 5
    calls_at_kill = int((kill_dir / "runs" / "mini" / "calcs" / f"{interrupted}.calls").read_text())
    assert calls_at_kill >= frames_at_kill - 1  # at least one force call per written step

    ligbind("run", "mini", cwd=kill_dir)
    after = ResultStore(store)
    rows = list(after.select(kind="relax"))
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)) == SLAB_STARTS + 6  # nothing computed twice
    assert all(after.get(k).energy == e for k, e in before.items())  # finished results kept as they were
    resumed = after.get(interrupted)
    reference = ResultStore(ref_dir / "runs" / "mini" / "ligbind.db").get(interrupted)
    # the resumed run continued the killed trajectory (its frames kept, the steps counted once), and the stored
    # count is the total of both runs (how many calls the resumed part needs depends on where the kill fell)
    frames = [a.positions for a in Trajectory(str(traj_path))]
    assert all(np.array_equal(a, b) for a, b in zip(killed_frames, frames, strict=False))
    assert len(frames) > frames_at_kill and resumed.get("n_steps") == len(frames) - 1
    assert resumed.force_calls >= calls_at_kill + len(frames) - frames_at_kill
    assert resumed.get("status") == reference.get("status") == "converged"
    ligbind("results", "mini", cwd=kill_dir)
    t_ref = pd.read_csv(ref_dir / "results" / "mini" / "binding.csv").set_index("ligand")
    t_kill = pd.read_csv(kill_dir / "results" / "mini" / "binding.csv").set_index("ligand")
    assert list(t_ref.index) == list(t_kill.index)
    assert (abs(t_ref.eb - t_kill.eb) < 0.02).all(), (t_ref.eb, t_kill.eb)
    assert "COMPLETED 10" in ligbind("status", "mini", cwd=kill_dir).stdout


# -------------------------------------------------------------------------------------- failing calculation
@pytest.mark.slow
def test_failing_calculation_does_not_stop_the_campaign(tmp_path, monkeypatch):
    import ligbind.engine.fireworks as engine
    from ligbind.analysis.tables import binding_table
    from ligbind.errors import UnconvergedError

    monkeypatch.chdir(tmp_path)
    path = write_campaign(tmp_path)
    real_step = engine.step_config

    def failing_step(c, keys, name, k):
        if name == "methylamine" and k == 1:
            raise UnconvergedError("SCF did not converge with any of 3 mixer settings")
        return real_step(c, keys, name, k)

    monkeypatch.setattr(engine, "step_config", failing_step)
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)  # in-process: the patched step is the one that runs
    assert out["states"] == {"COMPLETED": 9, "FIZZLED": 1}
    assert out["failed"] == 1 and out["unconverged"] == 0
    (report,) = engine.status(path)
    assert report["failures"] == [
        {
            "firework": "config/methylamine/1",
            "error": "ligbind.errors.UnconvergedError: SCF did not converge with any of 3 mixer settings",
        }
    ]
    table = binding_table(ResultStore(tmp_path / "runs" / "mini" / "ligbind.db")).set_index("ligand")
    assert "failed-config-1" in table.loc["methylamine", "flags"]
    assert table.loc["methylamine", "eb"] < 0  # the configuration that finished still gives Eb
    assert table.loc["dimethyl-ether", "flags"] == "none"

    # the cause fixed: a plain run leaves the failure as it is, --retry-failed runs it and what waits on it
    monkeypatch.setattr(engine, "step_config", real_step)
    again = engine.run(path, progress=False, workers=1)
    assert again["ran"] == 0 and again["states"] == {"COMPLETED": 9, "FIZZLED": 1} and again["retried"] == []
    during = []

    def looking_step(c, keys, name, k):  # what `ligbind status` shows while the retried step runs
        with contextlib.chdir(tmp_path):
            during.append(engine.status(path)[0])
        return real_step(c, keys, name, k)

    monkeypatch.setattr(engine, "step_config", looking_step)
    retried = engine.run(path, progress=False, workers=1, retry_failed=True)
    assert "FIZZLED" not in during[0]["states"] and during[0]["failures"] == []
    assert retried["retried"] == ["config/methylamine/1"]
    assert retried["states"] == {"COMPLETED": 10} and retried["failed"] == 0
    assert retried["ran"] == 4  # the configuration, the slab reference over every configuration, both Eb
    table = binding_table(ResultStore(tmp_path / "runs" / "mini" / "ligbind.db")).set_index("ligand")
    assert "failed-config-1" not in table.loc["methylamine", "flags"]


def test_failure_in_a_parallel_worker_is_reported_not_recomputed(tmp_path, monkeypatch):
    """A step that fails in a worker process fizzles its Firework with the worker's error; the rest go on."""
    import ligbind.engine.fireworks as engine

    monkeypatch.chdir(tmp_path)
    path = write_campaign(tmp_path, ligands=["methylamine"], overrides={"relax": {"fmax": 0.001, "steps": 2}})

    def must_not_run(*args, **kwargs):
        raise AssertionError("the failed step was recomputed in the launching process")

    engine.screen(path)
    monkeypatch.setattr(engine, "step_slab", must_not_run)  # the worker (a fresh process) has the real one
    out = engine.run(path, progress=False, workers=2)
    assert out["workers"] == 2
    assert out["states"]["FIZZLED"] == 1 and out["states"]["COMPLETED"] == 1  # slab failed, ligand done
    (report,) = engine.status(path)
    assert report["failures"][0]["firework"] == "slab"
    assert "slab relaxation did not converge in 2 steps" in report["failures"][0]["error"]


def test_host_refinements_count_only_where_a_defect_is_computed(tmp_path):
    """compute.frenkel.host_refinements is part of what a campaign computes only when it computes a Frenkel
    pair: a campaign without one keeps the settings (and Fireworks) it was screened with."""
    from ligbind.analysis.frenkel import HOST_REFINEMENTS
    from ligbind.engine.campaign import settings_hash

    plain = load_campaign(write_campaign(tmp_path))
    assert "host_refinements" not in plain["compute"]["frenkel"]
    changed = load_campaign(write_campaign(tmp_path, compute={"frenkel": {"host_refinements": 0}}))
    assert settings_hash(changed) == settings_hash(plain)
    bare = load_campaign(write_campaign(tmp_path, compute={"frenkel": {"bare": True}}))
    assert bare["compute"]["frenkel"]["host_refinements"] == HOST_REFINEMENTS
    none = load_campaign(write_campaign(tmp_path, compute={"frenkel": {"bare": True, "host_refinements": 0}}))
    assert none["compute"]["frenkel"]["host_refinements"] == 0
    assert settings_hash(none) != settings_hash(bare)
    # the same for compute.vacancy.host_refinements
    assert "host_refinements" not in plain["compute"]["vacancy"]
    vacancy = load_campaign(write_campaign(tmp_path, compute={"vacancy": {"bare": True}}))
    assert vacancy["compute"]["vacancy"]["host_refinements"] == 1
