"""FireWorks adapter: campaign → Workflows (one Firework per calculation plus analysis Fireworks).

Embedded default: FireWorks' serverless mongomock store (``MONGOMOCK_SERVERSTORE_FILE``) in the campaign's
working directory, one worker at a time (a file lock refuses a second one). ligbind saves that store
atomically after every Firework, so a kill loses at most the Firework that was running — and that one resumes
from its trajectory, because every task is idempotent through the results-store key.

HPC: pass a ``my_launchpad.yaml`` (a real MongoDB); the same Workflows run wherever ``qlaunch`` starts them.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fireworks.core.rocket  # noqa: E402
from fireworks import FiretaskBase, Firework, FWAction, FWorker, LaunchPad, Workflow, explicit_serialize  # noqa: E402

from ligbind.engine.campaign import (
    resolve_campaign_ref,
    save_campaign,
    step_binding,
    step_coadsorption,
    step_config,
    step_frenkel,
    step_frenkel_pair,
    step_ligand,
    step_slab,
)
from ligbind.errors import LigbindError

fireworks.core.rocket.ROCKET_STREAM_LOGLEVEL = "CRITICAL"  # the progress bar reports; logs stay in files

STORE_FILE = "fireworks_store.json"
LOCK_FILE = "worker.lock"


# ------------------------------------------------------------------------------------------ the store
def store_file(c: dict[str, Any]) -> Path:
    return Path(c["workdir"]) / STORE_FILE


def _prepare_embedded(c: dict[str, Any]) -> Path:
    """Create the serverless store file and point FireWorks at it (must precede importing fireworks)."""
    path = store_file(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size == 0:
        path.write_text("{}")
    os.environ["MONGOMOCK_SERVERSTORE_FILE"] = str(path)
    return path


def get_launchpad(c: dict[str, Any], launchpad_file: str | Path | None = None):
    """The campaign's LaunchPad: embedded serverless store, or a real MongoDB from ``launchpad_file``."""
    import fireworks.core.launchpad as lp_module

    if launchpad_file:
        if not Path(launchpad_file).is_file():
            raise LigbindError(f"launchpad file not found: {launchpad_file}")
        import pymongo

        lp_module.MongoClient = pymongo.MongoClient
        return LaunchPad.from_file(str(launchpad_file))
    _prepare_embedded(c)
    import mongomock.gridfs
    import mongomock_persistence

    mongomock.gridfs.enable_gridfs_integration()
    lp_module.MongoClient = mongomock_persistence.MongoClient  # FireWorks' serverless store
    lpad = LaunchPad(name="ligbind", strm_lvl="ERROR")
    if lpad.fw_id_assigner.count_documents({}) == 0:  # a new store: initialise FireWorks' collections
        lpad.reset(password=None, require_password=False)
    return lpad


def save_store(lpad) -> None:
    """Write the embedded store to its file atomically (no-op for a real MongoDB)."""
    server = getattr(lpad.connection, "_store", None)
    filename = getattr(server, "_filename", None)
    if not filename:
        return
    import bson.json_util

    tmp = Path(filename).with_suffix(".partial")
    tmp.write_text(bson.json_util.dumps(server.to_dict()))
    os.replace(tmp, filename)


@contextmanager
def worker_lock(c: dict[str, Any], launchpad_file: str | Path | None = None):
    """Exclusive lock on the embedded store: a second concurrent worker is refused with a clear message."""
    if launchpad_file:
        yield
        return
    path = Path(c["workdir"]) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise LigbindError(
            f"campaign '{c['name']}' is already being worked on by {holder}: the embedded FireWorks store is not "
            "safe for two processes; wait for it to finish, or use a MongoDB launchpad (--launchpad)"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


# ------------------------------------------------------------------------------------------------ tasks
@explicit_serialize
class LigbindStepTask(FiretaskBase):
    """Run one campaign step (a relaxation or an analysis); idempotent through the results store."""

    required_params = ["step", "campaign"]
    optional_params = ["ligand", "config", "other"]

    def run_task(self, fw_spec):
        c, step, lig = self["campaign"], self["step"], self.get("ligand")
        start = time.perf_counter()
        if step == "slab":
            r = step_slab(c)
        elif step == "ligand":
            r = step_ligand(c, lig)
        elif step == "byproduct":
            r = step_ligand(c, lig, byproduct=True)
        elif step == "config":
            r = step_config(c, lig, int(self["config"]))
        elif step == "binding":
            r = step_binding(c, lig)
        elif step == "coadsorption":
            r = step_coadsorption(c, lig, self["other"])
        elif step == "frenkel-pair":
            r = step_frenkel_pair(c, lig, int(self["config"]))
        elif step == "frenkel":
            r = step_frenkel(c, lig)
        else:
            raise ValueError(f"unknown step {step}")
        summary = _summary(r)
        summary["task_time"] = round(time.perf_counter() - start, 4)
        return FWAction(stored_data=summary)


def _summary(r) -> dict[str, Any]:
    from ligbind.jobs import Result

    if isinstance(r, Result):
        return {
            "key": r.key,
            "energy": r.energy,
            "status": r.status,
            "force_calls": r.force_calls,
            "reused": r.reused,
            "n_steps": r.n_steps,
        }
    if hasattr(r, "as_dict"):
        d = r.as_dict()
        return {"eb": d.get("eb"), "flags": d.get("flags"), "key": d.get("key")}
    return json.loads(json.dumps(r, default=str))


# ---------------------------------------------------------------------------------------- workflows
def _fw(c, step: str, name: str, parents=(), allow_fizzled=False, **params):
    spec = {"_ligbind_id": f"{c['name']}/{name}", "_campaign": c["name"]}
    if allow_fizzled:
        spec["_allow_fizzled_parents"] = True
    fw = Firework([LigbindStepTask(step=step, campaign=c, **params)], spec=spec, name=f"{c['name']}:{name}")
    return fw, list(parents)


def planned_fireworks(c: dict[str, Any]) -> list[tuple[Any, list[str]]]:
    """(Firework, parent ids) for everything the campaign computes, in dependency order."""
    plan: list[tuple[Any, list[str]]] = []

    def add(step, name, parents=(), allow_fizzled=False, **params):
        fw, par = _fw(c, step, name, parents, allow_fizzled, **params)
        plan.append((fw, par))
        return name

    slab = add("slab", "slab")
    binding_ids = {}
    for spec in c["ligands"]:
        lig = spec["name"]
        parents = [add("ligand", f"ligand/{lig}", ligand=lig)]
        if spec["mode"] == "exchange":
            parents.append(add("byproduct", f"byproduct/{lig}", ligand=lig))
        for k in range(c["configs"]):  # placed on the relaxed slab, from the relaxed ligand
            parents.append(add("config", f"config/{lig}/{k}", [slab, f"ligand/{lig}"], ligand=lig, config=k))
        binding_ids[lig] = add("binding", f"binding/{lig}", [slab, *parents], allow_fizzled=True, ligand=lig)
    for a, b in c["compute"]["coadsorption"]:
        add("coadsorption", f"coadsorption/{a}+{b}", [binding_ids[a], binding_ids[b]], ligand=a, other=b)
    fr = c["compute"]["frenkel"]
    hosts = ([None] if fr["bare"] or fr["ligands"] else []) + list(fr["ligands"])
    frenkel_ids = {}
    for host in hosts:
        tag = host or "bare"
        base = [slab] if host is None else [binding_ids[host]]
        pairs = [
            add("frenkel-pair", f"frenkel-pair/{tag}/{k}", base, ligand=host, config=k)
            for k in range(fr["pairs"])
        ]
        extra = [frenkel_ids["bare"]] if host is not None and "bare" in frenkel_ids else []
        frenkel_ids[tag] = add(
            "frenkel", f"frenkel/{tag}", [*base, *pairs, *extra], allow_fizzled=True, ligand=host
        )
    return plan


def screen(campaign_ref: str | Path, launchpad_file: str | Path | None = None) -> dict[str, Any]:
    """Add the campaign's Fireworks that the LaunchPad does not hold yet; return counts."""
    c = resolve_campaign_ref(campaign_ref)
    with worker_lock(c, launchpad_file):
        lpad = get_launchpad(c, launchpad_file)
        save_campaign(c)
        existing = {
            doc["spec"]["_ligbind_id"]: doc["fw_id"]
            for doc in lpad.fireworks.find({"spec._campaign": c["name"]}, {"spec._ligbind_id": 1, "fw_id": 1})
        }
        plan = planned_fireworks(c)
        new = [(fw, parents) for fw, parents in plan if fw.spec["_ligbind_id"] not in existing]
        if new:
            ids = {fw.spec["_ligbind_id"]: fw for fw, _ in new}
            links: dict[Any, list[Any]] = {fw: [] for fw, _ in new}
            outside_parents: set[int] = set()
            for fw, parents in new:
                for p in parents:
                    pid = f"{c['name']}/{p}"
                    if pid in ids:
                        links[ids[pid]].append(fw)
                    else:
                        outside_parents.add(existing[pid])
            wf = Workflow(
                [fw for fw, _ in new],
                links_dict=links,
                name=f"ligbind:{c['name']}",
                metadata={"campaign": c["name"]},
            )
            if outside_parents:
                _append_under(lpad, wf, sorted(outside_parents))
            else:
                lpad.add_wf(wf)
        save_store(lpad)
    return {
        "campaign": c["name"],
        "added": len(new),
        "already_there": len(existing),
        "workdir": c["workdir"],
        "store": c["store"],
    }


def _append_under(lpad, wf, parent_ids: list[int]) -> None:
    """Add ``wf`` whose roots depend on Fireworks already on the LaunchPad (e.g. the relaxed slab)."""
    lpad.append_wf(wf, parent_ids, pull_spec_mods=False)


def _ready_count(lpad, name: str) -> int:
    return lpad.fireworks.count_documents({"spec._campaign": name, "state": {"$in": ["READY", "WAITING"]}})


def run(
    campaign_ref: str | Path,
    launchpad_file: str | Path | None = None,
    max_fireworks: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Launch the campaign's ready Fireworks one after the other in this process (embedded worker)."""
    from fireworks.core.rocket_launcher import launch_rocket
    from tqdm import tqdm

    c = resolve_campaign_ref(campaign_ref)
    launches = Path(c["workdir"]) / "launches"
    launches.mkdir(parents=True, exist_ok=True)
    with worker_lock(c, launchpad_file):
        lpad = get_launchpad(c, launchpad_file)
        _reset_interrupted(lpad, c["name"], launchpad_file)
        ping = fireworks.core.rocket.start_ping_launch
        if not launchpad_file:  # one in-process worker: no heartbeat thread (mongomock is not thread-safe)
            fireworks.core.rocket.start_ping_launch = lambda *args: None
        total = _ready_count(lpad, c["name"])
        bar = tqdm(total=total, unit="fw", disable=not progress, desc=c["name"])
        ran, overhead = 0, []
        cwd = os.getcwd()
        fworker = FWorker(name="ligbind-embedded", query={"spec._campaign": c["name"]})
        try:
            os.chdir(launches)
            while max_fireworks is None or ran < max_fireworks:
                start = time.perf_counter()
                with open(launches / "tracebacks.log", "a") as err_file:  # `ligbind status` shows one line
                    launched = launch_rocket(lpad, fworker, strm_lvl="CRITICAL", err_file=err_file)
                if not launched:
                    break
                elapsed = time.perf_counter() - start
                save_store(lpad)
                ran += 1
                last = lpad.launches.find_one(sort=[("launch_id", -1)])
                task_time = ((last or {}).get("action") or {}).get("stored_data", {}).get("task_time")
                if task_time is not None:
                    overhead.append(elapsed - task_time)
                bar.set_postfix_str(((last or {}).get("fw_id") and _fw_label(lpad, last["fw_id"])) or "")
                bar.update(1)
        finally:
            fireworks.core.rocket.start_ping_launch = ping
            os.chdir(cwd)
            bar.close()
            save_store(lpad)
        counts = state_counts(lpad, c["name"])
    return {
        "campaign": c["name"],
        "ran": ran,
        "states": counts,
        "engine_overhead_s": (sum(overhead) / len(overhead)) if overhead else None,
    }


def _fw_label(lpad, fw_id: int) -> str:
    doc = lpad.fireworks.find_one({"fw_id": fw_id}, {"name": 1})
    return doc["name"].split(":", 1)[-1] if doc else ""


def _reset_interrupted(lpad, name: str, launchpad_file) -> None:
    """Embedded store only: a Firework left RUNNING by a killed worker is rerun (its task resumes)."""
    if launchpad_file:
        return
    for doc in lpad.fireworks.find({"spec._campaign": name, "state": "RUNNING"}, {"fw_id": 1}):
        lpad.rerun_fw(doc["fw_id"])


def state_counts(lpad, name: str) -> dict[str, int]:
    return dict(Counter(doc["state"] for doc in lpad.fireworks.find({"spec._campaign": name}, {"state": 1})))


def status(
    campaign_ref: str | Path | None = None, launchpad_file: str | Path | None = None
) -> list[dict[str, Any]]:
    """Per-campaign Firework counts by state, and the failures with their error message."""
    from ligbind.engine.campaign import RUNS_ROOT

    refs = (
        [campaign_ref] if campaign_ref else sorted(p.parent.name for p in RUNS_ROOT.glob("*/campaign.json"))
    )
    out = []
    for ref in refs:
        c = resolve_campaign_ref(ref)
        if not launchpad_file and not store_file(c).exists():
            out.append({"campaign": c["name"], "states": {}, "failures": [], "note": "not screened yet"})
            continue
        lpad = get_launchpad(c, launchpad_file)
        failures = []
        for doc in lpad.fireworks.find(
            {"spec._campaign": c["name"], "state": "FIZZLED"}, {"fw_id": 1, "name": 1}
        ):
            launch = lpad.launches.find_one({"fw_id": doc["fw_id"]}, sort=[("launch_id", -1)])
            err = ((launch or {}).get("action") or {}).get("stored_data", {}).get("_exception", {})
            message = (err.get("_stacktrace") or "").strip().splitlines()[-1:] or ["?"]
            failures.append({"firework": doc["name"].split(":", 1)[-1], "error": message[0]})
        out.append({"campaign": c["name"], "states": state_counts(lpad, c["name"]), "failures": failures})
    return out


__all__ = ["screen", "run", "status", "get_launchpad", "save_store"]
