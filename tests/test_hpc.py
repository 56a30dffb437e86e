"""The HPC path short of a cluster: `ligbind screen --launchpad` then `qlaunch ... rapidfire` with a SLURM qadapter.

Two stand-ins, everything else real (ligbind's CLI, FireWorks' qlaunch and its SLURM CommonAdapter job script,
rlaunch inside the job, CHGNet relaxations, the results store):

- MongoDB: FireWorks' serverless mongomock store. It is switched on for a whole process by
  MONGOMOCK_SERVERSTORE_FILE (FireWorks 2.1 has no per-launchpad-file switch; a `mongomock:` key in the
  launchpad YAML is ignored), so every process below gets it in its environment and reads the launchpad YAML
  for the database name only. The store file is read when a process starts and written when it exits:
  each step must start after the previous one has exited.
- sbatch: tests/data/bin/sbatch, first on PATH. It keeps a copy of the job script, prints "Submitted batch job
  N" and runs the script with bash once qlaunch has exited (like a queue, later; see the script for why).

The job's PATH does not contain the venv: rlaunch (and ligbind's Firework task) are found only through the
qadapter's pre_rocket, as on a cluster.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from fireworks import LaunchPad

from ligbind.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # .venv/bin: ligbind, qlaunch, rlaunch, activate
STANDIN_BIN = REPO / "tests" / "data" / "bin"
SHIPPED_QADAPTER = REPO / "workflows" / "my_qadapter.yaml"
SHIPPED_LAUNCHPAD = REPO / "workflows" / "my_launchpad.yaml"
MINI_CAMPAIGN = REPO / "workflows" / "test-mini.yaml"
JOB_TIMEOUT = 240  # s; a job here takes ~8 s (rlaunch start-up, CHGNet load, one small relaxation)


def _require(path: Path, executable: bool = False) -> Path:
    assert path.is_file(), f"missing {path}"
    if executable:
        assert os.access(path, os.X_OK), f"{path} is not executable"
    return path


def _env(tmp_path: Path, store_file: Path) -> dict[str, str]:
    """A cluster-like environment: the sbatch stand-in first on PATH, no venv, the mongomock store."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MONGOMOCK_SERVERSTORE_FILE", "VIRTUAL_ENV", "FW_CONFIG_FILE", "PYTHONPATH")
    }
    env["PATH"] = f"{STANDIN_BIN}:/usr/bin:/bin"
    env["SBATCH_SPOOL"] = str(tmp_path / "spool")
    env["MONGOMOCK_SERVERSTORE_FILE"] = str(store_file)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _fireworks(store_file: Path, db: str) -> dict[str, dict]:
    """Firework name -> document, read from the serverless store's file (what the next process will see)."""
    data = json.loads(store_file.read_text())
    return {doc["name"]: doc for _, doc in data[db]["fireworks"]["documents"]}


def _launch_count(store_file: Path, db: str) -> int:
    data = json.loads(store_file.read_text())
    return len(data[db].get("launches", {}).get("documents", []))


def _wait_for_job(spool: Path, n: int) -> str:
    """Wait for job n of the sbatch stand-in to end; return its output (the job must have exited 0)."""
    rc_file = spool / f"job-{n}.rc"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not rc_file.exists():
        assert time.monotonic() < deadline, f"job {n} did not finish in {JOB_TIMEOUT} s"
        time.sleep(0.2)
    out = (spool / f"job-{n}.out").read_text()
    assert rc_file.read_text().strip() == "0", f"job {n} failed:\n{out}"
    return out


def test_screen_then_qlaunch_slurm_runs_fireworks_into_the_shared_store(tmp_path):
    _require(STANDIN_BIN / "sbatch", executable=True)
    qlaunch = _require(VENV_BIN / "qlaunch", executable=True)
    ligbind = _require(VENV_BIN / "ligbind", executable=True)
    _require(VENV_BIN / "rlaunch", executable=True)
    activate = _require(VENV_BIN / "activate")

    # --- the shipped templates are what a user edits: check them, then fill them in as a user would
    shipped_lp = yaml.safe_load(_require(SHIPPED_LAUNCHPAD).read_text())
    known = set(inspect.signature(LaunchPad.__init__).parameters) - {"self"}  # what from_dict reads
    assert set(shipped_lp) <= known, f"my_launchpad.yaml keys FireWorks ignores: {set(shipped_lp) - known}"
    assert {"host", "port", "name", "username", "password", "uri_mode"} <= set(shipped_lp)

    shipped_qa = yaml.safe_load(_require(SHIPPED_QADAPTER).read_text())
    assert shipped_qa["_fw_name"] == "CommonAdapter" and shipped_qa["_fw_q_type"] == "SLURM"
    m = re.fullmatch(r"rlaunch -l (\S+) singleshot", shipped_qa["rocket_launch"])
    assert m and m.group(1).startswith("/") and m.group(1).endswith("workflows/my_launchpad.yaml"), (
        "rocket_launch must call rlaunch with the launchpad's absolute path (jobs start in launcher_* dirs)"
    )
    pre = shipped_qa["pre_rocket"].strip().splitlines()
    shipped_activate = [line for line in pre if re.fullmatch(r"source \S+/\.venv/bin/activate", line)]
    assert len(shipped_activate) == 1, "pre_rocket must activate ligbind's venv"
    assert pre[-1] == shipped_activate[0], "activate the venv last, after module loads, so its python wins"

    launchpad = tmp_path / "my_launchpad.yaml"
    # the database name is all mongomock uses; were pymongo used instead, it would fail fast, not hang
    lp = {"host": "localhost", "port": 27017, "name": "ligbind_hpc_test", "strm_lvl": "INFO"}
    lp["mongoclient_kwargs"] = {"serverSelectionTimeoutMS": 1000}
    launchpad.write_text(yaml.safe_dump(lp))
    qa = dict(shipped_qa)
    qa["rocket_launch"] = f"rlaunch -l {launchpad} singleshot"
    pre_rocket = [
        f"source {activate}" if line == shipped_activate[0] else line
        for line in pre
        if not line.startswith("module ")  # no environment modules here
    ]
    qa["pre_rocket"] = "\n".join(pre_rocket) + "\n"
    qadapter = tmp_path / "my_qadapter.yaml"
    qadapter.write_text(yaml.safe_dump(qa))

    # --- a campaign like workflows/test-mini.yaml, one ligand and one configuration, its store "shared"
    campaign = yaml.safe_load(_require(MINI_CAMPAIGN).read_text())
    store_path = tmp_path / "shared" / "ligbind.db"
    campaign.update(name="test-hpc", ligands=["methylamine"], configs=1, store=str(store_path))
    campaign_file = tmp_path / "test-hpc.yaml"
    campaign_file.write_text(yaml.safe_dump(campaign))

    fw_store = tmp_path / "fireworks_mongomock.json"
    fw_store.write_text("{}")
    env = _env(tmp_path, fw_store)
    spool = tmp_path / "spool"
    db = "ligbind_hpc_test"

    # --- ligbind screen --launchpad: initialises the empty database and adds the campaign's Fireworks
    proc = _run(
        [str(ligbind), "screen", str(campaign_file), "--launchpad", str(launchpad), "--json"], tmp_path, env
    )
    out = json.loads(proc.stdout)
    assert out["added"] == 5 and out["already_there"] == 0  # slab, ligand, config 0, reference, binding
    assert out["store"] == str(store_path)
    fws = _fireworks(fw_store, db)
    assert {name: doc["state"] for name, doc in fws.items()} == {
        "test-hpc:slab": "READY",
        "test-hpc:ligand/methylamine": "READY",
        "test-hpc:config/methylamine/0": "WAITING",
        "test-hpc:reference": "WAITING",
        "test-hpc:binding/methylamine": "WAITING",
    }
    assert not store_path.exists()  # nothing calculated yet

    # --- qlaunch (one round: its stale copy of the serverless store would otherwise submit forever): one job,
    # whose rlaunch runs one ready Firework (singleshot)
    proc = _run(
        [str(qlaunch), "-l", str(launchpad), "-q", str(qadapter), "rapidfire", "--nlaunches", "1"],
        tmp_path,
        env,
    )
    # qlaunch parsed a job id from sbatch's answer (it logs an error and still exits 0 when it cannot)
    assert "Launched allowed number of jobs: 1" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    job_out = _wait_for_job(spool, 1)
    assert not (spool / "job-2.sh").exists()
    script = (spool / "job-1.sh").read_text()

    # the job script sbatch was given: the one qlaunch wrote in its launcher directory, with our settings
    (submitted,) = tmp_path.glob("block_*/launcher_*/FW_submit.script")
    assert submitted.read_text() == script, "sbatch did not get the script qlaunch wrote"
    launcher_dir = submitted.parent
    lines = script.splitlines()
    for line in (
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=32",
        "#SBATCH --time=24:00:00",
        "#SBATCH --partition=standard",
        "#SBATCH --job-name=ligbind",
        *pre_rocket,
        f"cd {launcher_dir}",
        f"rlaunch -l {launchpad} singleshot",
    ):
        assert line in lines, f"job script lacks {line!r}:\n{script}"
    assert not any("--account" in line for line in lines)  # account: null leaves no line
    assert lines.index(f"source {activate}") < lines.index(f"rlaunch -l {launchpad} singleshot")

    # the rocket ran one Firework, a root of the workflow, in the launcher directory; it completed
    ran = re.findall(r"RUNNING fw_id: (\d+) in directory: (\S+)", job_out)
    assert len(ran) == 1 and Path(ran[0][1]) == launcher_dir, job_out
    assert "Rocket finished" in job_out
    fw_json = json.loads((launcher_dir / "FW.json").read_text())
    assert fw_json["fw_id"] == int(ran[0][0])
    done = fw_json["name"]
    roots = {"test-hpc:slab", "test-hpc:ligand/methylamine"}
    assert done in roots
    fws = _fireworks(fw_store, db)  # as the job left it: qlaunch's exit did not overwrite it
    assert fws[done]["state"] == "COMPLETED", f"{done} did not complete:\n{job_out}"
    assert fws[(roots - {done}).pop()]["state"] == "READY"
    assert fws["test-hpc:config/methylamine/0"]["state"] == "WAITING"
    assert _launch_count(fw_store, db) == 1

    # --- the result landed in the campaign's shared store, relaxed to the campaign's fmax (0.1 eV/Å)
    store = ResultStore(store_path)
    assert store.count(kind="relax") == 1
    (row,) = store.select(kind="relax")
    if done == "test-hpc:slab":
        assert row.label == "slab" and set(row.symbols) == {"Cs", "Pb", "I"}
    else:
        assert row.label == "ligand:methylamine" and row.formula == "CH5N"  # CH3NH2
    assert row.status == "converged" and row.protocol == "ml-screen"
    assert row.fmax_free <= 0.1

    # --- ligbind status --launchpad, a later process, sees what the job did
    proc = _run(
        [str(ligbind), "status", str(campaign_file), "--launchpad", str(launchpad), "--json"], tmp_path, env
    )
    (row,) = json.loads(proc.stdout)
    assert row["campaign"] == "test-hpc"
    assert row["states"] == {"COMPLETED": 1, "READY": 1, "WAITING": 3} and row["failures"] == []


def test_launchpad_file_without_mongomock_is_a_real_mongodb_one_line_error(tmp_path):
    """Without MONGOMOCK_SERVERSTORE_FILE a launchpad file means pymongo; an unreachable server is one line."""
    ligbind = _require(VENV_BIN / "ligbind", executable=True)
    campaign = yaml.safe_load(_require(MINI_CAMPAIGN).read_text())
    campaign.update(name="test-hpc-down", ligands=["methylamine"], configs=1)
    campaign_file = tmp_path / "c.yaml"
    campaign_file.write_text(yaml.safe_dump(campaign))
    launchpad = tmp_path / "lp.yaml"
    lp = {
        "host": "127.0.0.1",
        "port": 9,
        "name": "ligbind",
        "mongoclient_kwargs": {"serverSelectionTimeoutMS": 300},
    }
    launchpad.write_text(yaml.safe_dump(lp))
    env = {k: v for k, v in os.environ.items() if k != "MONGOMOCK_SERVERSTORE_FILE"}
    proc = subprocess.run(
        [str(ligbind), "screen", str(campaign_file), "--launchpad", str(launchpad)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ligbind: error: launchpad {launchpad}: MongoDB error: 127.0.0.1:9"), lines[0]
    assert not (tmp_path / "runs").exists()  # nothing written
