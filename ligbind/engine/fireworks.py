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
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import fireworks.core.rocket  # noqa: E402
from fireworks import FiretaskBase, Firework, FWAction, FWorker, LaunchPad, Workflow, explicit_serialize  # noqa: E402

from ligbind.engine.campaign import (
    PLAN_VERSION,
    _calcdir,
    _digest,
    campaign_settings,
    firework_hash,
    ligand_spec,
    plan_host_verification,
    resolve_campaign_ref,
    save_campaign,
    saved_campaign,
    settings_hash,
    step_binding,
    step_coadsorption,
    step_config,
    step_counterpoise,
    step_frenkel,
    step_frenkel_pair,
    step_ligand,
    step_reference,
    step_slab,
    step_verify,
    step_verify_config,
    step_verify_frenkel,
    step_verify_ligand,
    step_verify_reference,
    step_verify_slab,
    verified_count,
    verified_ligands,
    wants_counterpoise,
)
from ligbind.engine.complexes_steps import COMPLEX_CALCULATION_STEPS, COMPLEX_STEPS, plan_complexes
from ligbind.engine.defect_steps import (
    DEFECT_CALCULATION_STEPS,
    DEFECT_STEPS,
    defect_hosts,
    plan_defects,
    verified_hosts,
)
from ligbind.errors import LigbindError
from ligbind.io import write_text_atomic
from ligbind.protocols import RunSettings, describe_changes, protocol_hash
from ligbind.store import ResultStore

fireworks.core.rocket.ROCKET_STREAM_LOGLEVEL = "CRITICAL"  # the progress bar reports; logs stay in files

STORE_FILE = "fireworks_store.json"
LOCK_FILE = "worker.lock"
RUNNING_FILE = "running.json"  # what the worker holding the lock is computing now (for `ligbind status`)
RUNNING_STEP_GAP = 6 * 3600.0  # s: a longer pause between two logged steps is an interruption, not a step


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
    """The campaign's LaunchPad: embedded serverless store, or a real MongoDB from ``launchpad_file``.

    With ``launchpad_file`` the client is the one FireWorks' own ``lpad``/``qlaunch``/``rlaunch`` use: pymongo,
    or FireWorks' mongomock store when ``MONGOMOCK_SERVERSTORE_FILE`` was set (environment or FW_config.yaml)
    before fireworks was imported. A database that holds no FireWorks data yet is initialised (``lpad reset``).
    """
    import fireworks.core.launchpad as lp_module

    if launchpad_file:
        if not Path(launchpad_file).is_file():
            raise LigbindError(f"launchpad file not found: {launchpad_file}")
        import logging
        import sys

        from fireworks import fw_config
        from pymongo.errors import PyMongoError

        lp_module.MongoClient = fw_config.MongoClient  # not the embedded store's, if set in this process
        lpad = LaunchPad.from_file(str(launchpad_file))
        # FireWorks logs (at the file's strm_lvl) to stdout: send that to stderr, stdout is ligbind's (--json)
        for handler in lpad.m_logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)
        fw_collections = (lpad.fw_id_assigner, lpad.fireworks, lpad.workflows)
        try:
            if not any(col.count_documents({}) for col in fw_collections):  # a new database: `lpad reset`
                lpad.reset(password=None, require_password=False)
        except PyMongoError as exc:  # unreachable server, refused login: one line, not a pymongo traceback
            reason = str(exc).split(" (configured timeouts")[0].splitlines()[0][:200]
            raise LigbindError(f"launchpad {launchpad_file}: MongoDB error: {reason}") from None
        return lpad
    _prepare_embedded(c)
    import mongomock.gridfs
    import mongomock_persistence

    mongomock.gridfs.enable_gridfs_integration()
    lp_module.MongoClient = mongomock_persistence.MongoClient  # FireWorks' serverless store
    lpad = LaunchPad(name="ligbind", strm_lvl="ERROR")
    if lpad.fw_id_assigner.count_documents({}) == 0:  # a new store: initialise FireWorks' collections
        lpad.reset(password=None, require_password=False)
    return lpad


def read_launchpad(c: dict[str, Any], launchpad_file: str | Path | None = None):
    """The campaign's LaunchPad for reading only (status, results): the embedded store is never written back.

    mongomock's serverless store writes its whole content to the file when the process ends; a reader that
    did so could overwrite what a running ``ligbind run`` saved meanwhile. Returns None when never screened.
    """
    if launchpad_file:
        return get_launchpad(c, launchpad_file)
    if not store_file(c).exists():
        return None
    lpad = get_launchpad(c)
    finalizer = getattr(getattr(lpad.connection, "_store", None), "_finalizer", None)
    if finalizer is not None:
        finalizer.detach()
    return lpad


def campaign_failures(c: dict[str, Any], launchpad_file: str | Path | None = None) -> list[dict[str, str]]:
    """The campaign's failed Fireworks with their error (empty when it was never screened here)."""
    lpad = read_launchpad(c, launchpad_file)
    return failures(lpad, c) if lpad is not None else []


def save_store(lpad) -> None:
    """Write the embedded store to its file atomically (no-op for a real MongoDB)."""
    server = getattr(lpad.connection, "_store", None)
    filename = getattr(server, "_filename", None)
    if not filename:
        return
    import bson.json_util

    write_text_atomic(filename, bson.json_util.dumps(server.to_dict()))


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
KEY_PREFIX = "_key:"  # spec fields holding the results-store keys passed down the workflow


def passed_keys(spec: dict[str, Any]) -> dict[str, str]:
    """The results-store keys a Firework received from its ancestors, by step name."""
    return {
        k.removeprefix(KEY_PREFIX).replace("%2E", "."): v for k, v in spec.items() if k.startswith(KEY_PREFIX)
    }


def _key_field(step_name: str) -> str:
    return KEY_PREFIX + step_name.replace(".", "%2E")  # MongoDB field names cannot hold '.'


@explicit_serialize
class LigbindStepTask(FiretaskBase):
    """Run one campaign step (a relaxation or an analysis); idempotent through the results store.

    The step receives the store keys of what its ancestors computed (``_key:<step>`` fields of its spec) and
    passes its own key, with those it received, to every descendant (``FWAction(update_spec=..., propagate)``).
    """

    required_params = ["step", "campaign"]
    optional_params = ["ligand", "config", "other", "name"]

    def run_task(self, fw_spec):
        from ase.db.core import now

        start, since = time.perf_counter(), now()
        failed = _PREFETCH_ERRORS.pop(fw_spec.get("_ligbind_id"), None)
        if failed is not None:  # a parallel worker already ran this step and it failed: same error, no rerun
            raise failed
        keys = passed_keys(fw_spec)
        r = run_step(
            self["campaign"], self["step"], keys, self.get("ligand"), self.get("config"), self.get("other")
        )
        summary = _summary(r)
        summary["task_time"] = round(time.perf_counter() - start, 4)
        tag_analysis_rows(self["campaign"], since, self.get("name"), fw_spec.get("_ligbind_id"))
        passed = {_key_field(k): v for k, v in keys.items()}
        if summary.get("key") and self.get("name"):
            passed[_key_field(self["name"])] = summary["key"]
        return FWAction(stored_data=summary, update_spec=passed, propagate=True)


def tag_analysis_rows(
    c: dict[str, Any], since: float, step: str | None = None, firework: str | None = None
) -> None:
    """Mark the campaign's analysis rows written since ``since`` (ase.db time) with the settings, the step and
    the Firework (ligbind id) that produced them: the tables show only the current plan's rows
    (:func:`current_rows`). A step may write several rows (coverage: one per n)."""
    store = ResultStore(c["store"])
    tag = {"settings": settings_hash(c)} | ({"step": step, "firework": firework} if firework else {})
    for row in list(store.db.select(campaign=c["name"], include_data=False)):  # every Firework: keep it light
        if row.ctime >= since and any(row.get(k) != v for k, v in tag.items()):
            store.update(row.key, **tag)
        elif (
            firework and row.ctime < since and row.get("step") == step and row.get("firework") != "superseded"
        ):
            # written by an earlier run of this step (e.g. on another reference) and not rewritten by this one
            store.update(row.key, firework="superseded")


def current_rows(c: dict[str, Any]) -> Callable[[Any], bool]:
    """Whether a results-store row was written by a Firework of the campaign's current plan (a ligand added or
    removed since leaves the rows of the plan before it out of the tables)."""
    planned = set(planned_ids(c))
    return lambda row: row.get("firework") in planned


def _rerun_overwritten(lpad, c: dict[str, Any], planned: set[str]) -> list[str]:
    """Rerun the COMPLETED analysis Fireworks of the plan whose rows another Firework of the same step wrote
    since (a plan with another ligand set, screened in between, whose rows may have replaced theirs), or whose
    step has only rows of earlier Fireworks, marked superseded (a migration step that reused its stored
    barrier did not write it again before 2026-12-06): the tables show only rows of the current plan. Returns
    the steps rerun (``planned``: the ids of the plan's Fireworks)."""
    if not Path(c["store"]).exists():
        return []
    latest: dict[str, tuple[float, str]] = {}  # step -> (ctime, firework) of its last writing, these settings
    owners, lost = set(), set()  # Fireworks owning a row; steps with a row no Firework owns any more
    settings = settings_hash(c)
    for row in ResultStore(c["store"]).db.select(campaign=c["name"], include_data=False):
        step, fw = row.get("step"), row.get("firework")
        if fw == "superseded":
            lost.add(step)
            continue
        owners.add(fw)
        current = row.get("settings") == settings and step and fw is not None
        if current and row.ctime > latest.get(step, (-1.0, ""))[0]:
            latest[step] = (row.ctime, fw)

    def overwritten(step: str, fw_id: str) -> bool:
        orphaned = step in lost and fw_id in planned and fw_id not in owners
        return (step in latest and latest[step][1] != fw_id) or orphaned

    return _rerun_completed(lpad, c, overwritten)


def _rerun_completed(lpad, c: dict[str, Any], pick: Callable[[str, str], bool]) -> list[str]:
    """Rerun the campaign's COMPLETED Fireworks that ``pick(step, ligbind id)`` chooses (one already rerun as a
    child of another is left to that); returns their steps."""
    rerun = []
    completed = {**campaign_query(c), "state": "COMPLETED"}
    for doc in lpad.fireworks.find(completed, {"fw_id": 1, "name": 1, "spec._ligbind_id": 1}):
        step = doc["name"].split(":", 1)[-1]
        if pick(step, doc["spec"]["_ligbind_id"]):
            if lpad.fireworks.find_one({"fw_id": doc["fw_id"], "state": "COMPLETED"}):  # not rerun as a child
                lpad.rerun_fw(doc["fw_id"])
                rerun.append(step)
    return rerun


def _rerun_unresolved_barriers(lpad, c: dict[str, Any]) -> list[str]:
    """Rerun the COMPLETED Fireworks whose stored barrier another refinement round would change while the
    campaign allows more (``compute.migration.endpoint_refinements``): a band stored before that round existed,
    e.g. one with an intermediate minimum from before bands were split there (2026-12-07). The step takes its
    stored bands up again (no force call for what is done), and its descendants (ΔEa of the ligand hosts
    against it, the tables) run again after it. Returns the steps rerun."""
    from ligbind.analysis.migration import stored_barrier
    from ligbind.engine.defect_steps import endpoint_refinements

    if not c["compute"].get("migration") or not Path(c["store"]).exists():
        return []
    rounds, settings = endpoint_refinements(c), settings_hash(c)
    stale = set()
    for row in ResultStore(c["store"]).select(kind="barrier", campaign=c["name"]):
        b = stored_barrier(row.data["outcome"])
        if (
            row.get("settings") == settings
            and b.converged
            and b.unresolved()
            and (b.refinements or 0) < rounds
        ):
            stale.add(row.get("firework"))
    return _rerun_completed(lpad, c, lambda step, fw_id: fw_id in stale)


def run_step(
    c: dict[str, Any],
    step: str,
    keys: dict[str, str],
    ligand: str | None = None,
    config: int | None = None,
    other=None,
):
    """Run one campaign step (what a Firework does) with the keys passed down to it."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step}")
    return STEPS[step](c, keys, ligand, config, other)


# step name -> call (looked up when called, so that tests can patch a step function)
STEPS = {
    "slab": lambda c, keys, ligand, config, other: step_slab(c, keys),
    "ligand": lambda c, keys, ligand, config, other: step_ligand(c, keys, ligand),
    "byproduct": lambda c, keys, ligand, config, other: step_ligand(c, keys, ligand, byproduct=True),
    "config": lambda c, keys, ligand, config, other: step_config(c, keys, ligand, int(config)),
    "reference": lambda c, keys, ligand, config, other: step_reference(c, keys),
    "binding": lambda c, keys, ligand, config, other: step_binding(c, keys, ligand),
    "coadsorption": lambda c, keys, ligand, config, other: step_coadsorption(c, keys, ligand, other),
    "frenkel-pair": lambda c, keys, ligand, config, other: step_frenkel_pair(c, keys, ligand, int(config)),
    "frenkel": lambda c, keys, ligand, config, other: step_frenkel(c, keys, ligand),
    "verify-slab": lambda c, keys, ligand, config, other: step_verify_slab(c, keys),
    "verify-ligand": lambda c, keys, ligand, config, other: step_verify_ligand(c, keys, ligand),
    "verify-byproduct": lambda c, keys, ligand, config, other: step_verify_ligand(
        c, keys, ligand, byproduct=True
    ),
    "verify-config": lambda c, keys, ligand, config, other: step_verify_config(c, keys, ligand, int(config)),
    "verify-reference": lambda c, keys, ligand, config, other: step_verify_reference(c, keys),
    "counterpoise": lambda c, keys, ligand, config, other: step_counterpoise(
        c, keys, ligand, int(config), False
    ),
    "verify-counterpoise": lambda c, keys, ligand, config, other: step_counterpoise(
        c, keys, ligand, int(config), True
    ),
    "verify": lambda c, keys, ligand, config, other: step_verify(c, keys, ligand),
    "verify-frenkel": lambda c, keys, ligand, config, other: step_verify_frenkel(c, keys, ligand),
    **DEFECT_STEPS,  # vacancy-site, vacancy, migration-end, migration (ligbind/engine/defect_steps.py)
}
STEPS.update(COMPLEX_STEPS)  # ion–ligand complexes (ligbind.engine.complexes_steps)

from ligbind.engine.passivation_steps import (  # noqa: E402
    CALCULATION_STEPS as _PASSIVATION_CALCULATIONS,
)
from ligbind.engine.passivation_steps import (  # noqa: E402
    IN_PROCESS as _PASSIVATION_IN_PROCESS,
)
from ligbind.engine.passivation_steps import (  # noqa: E402
    STEPS as _PASSIVATION_STEPS,
)
from ligbind.engine.passivation_steps import (  # noqa: E402
    plan_passivation,
    plan_passivation_frenkel_verification,
    plan_passivation_verification,
)

STEPS.update(_PASSIVATION_STEPS)  # passivation: ligbind/engine/passivation_steps.py


def _summary(r) -> dict[str, Any]:
    from ligbind.jobs import Result

    if r is None:  # nothing to do (e.g. fewer configurations than top_k to verify)
        return {"status": "skipped"}
    if isinstance(r, Result):
        return {
            "key": r.key,
            "energy": r.energy,
            "status": r.status,
            "force_calls": r.force_calls,
            "reused": r.reused,
            "n_steps": r.n_steps,
        }
    d = r.as_dict()
    return json.loads(
        json.dumps({k: d.get(k) for k in ("key", "eb", "ef", "eb_ab", "flags", "converged")}, default=str)
    )


# ---------------------------------------------------------------------------------------- workflows
def _fw(c, step: str, name: str, ligbind_id: str, allow_fizzled=False, **params):
    spec = {
        "_ligbind_id": ligbind_id,
        "_campaign": c["name"],
        "_protocol_hash": protocol_hash(c["protocol"]),
        "_settings_hash": settings_hash(c),
    }
    if allow_fizzled:
        spec["_allow_fizzled_parents"] = True
    task = LigbindStepTask(step=step, campaign=c, name=name, **params)
    return Firework([task], spec=spec, name=f"{c['name']}:{name}")


def fw_id_of(c: dict[str, Any], name: str, parent_ids: list[str]) -> str:
    """A Firework's ligbind id: campaign, a digest of its own settings and its parents' ids, and its step.

    Any change of what the campaign computes (protocol, slab, configs, compute.*, verify) gives new Fireworks,
    so no analysis is left COMPLETED with the old settings; calculations whose inputs did not change are found
    in the results store under their unchanged keys and cost nothing. Through the parents' ids a ligand added
    later also renews everything below the Fireworks it joins (the slab reference, every Eb against it), while
    the other ligands' calculations keep their ids.
    """
    return f"{c['name']}/{_digest([firework_hash(c, name), sorted(parent_ids)])}/{name}"


_PLANNED_IDS: dict[str, list[str]] = {}  # campaign digest -> its plan's ligbind ids


def planned_ids(c: dict[str, Any]) -> list[str]:
    """The ligbind ids of the campaign's current plan (:func:`planned_fireworks`, computed once per campaign)."""
    digest = _digest({k: v for k, v in c.items() if not k.startswith("_")})
    if digest not in _PLANNED_IDS:
        _PLANNED_IDS[digest] = [fw.spec["_ligbind_id"] for fw, _ in planned_fireworks(c)]
    return _PLANNED_IDS[digest]


def campaign_query(c: dict[str, Any]) -> dict[str, Any]:
    """The campaign's Fireworks of its current plan (not those of an earlier ligand set or settings)."""
    return {
        "spec._campaign": c["name"],
        "spec._settings_hash": settings_hash(c),
        "spec._ligbind_id": {"$in": planned_ids(c)},
    }


def planned_fireworks(c: dict[str, Any]) -> list[tuple[Any, list[str]]]:
    """(Firework, its parents' ligbind ids) for everything the campaign computes, in dependency order."""
    plan: list[tuple[Any, list[str]]] = []
    ids: dict[str, str] = {}  # step name -> ligbind id, parents before children

    def add(step, name, parents=(), allow_fizzled=False, **params):
        parent_ids = [ids[p] for p in parents]
        ids[name] = fw_id_of(c, name, parent_ids)
        plan.append((_fw(c, step, name, ids[name], allow_fizzled, **params), parent_ids))
        return name

    slab = add("slab", "slab")
    terms = {}
    for spec in c["ligands"]:
        lig = spec["name"]
        terms[lig] = [add("ligand", f"ligand/{lig}", ligand=lig)]
        if spec["mode"] == "exchange":
            terms[lig].append(add("byproduct", f"byproduct/{lig}", ligand=lig))
        for k in range(c["configs"]):  # placed on the relaxed slab, from the relaxed ligand
            terms[lig].append(
                add("config", f"config/{lig}/{k}", [slab, f"ligand/{lig}"], ligand=lig, config=k)
            )
    # the slab reference every Eb shares: the slab, or a lower bare framework of a complex that changed basin
    every_config = [t for lig in terms for t in terms[lig] if t.startswith("config/")]
    reference = add("reference", "reference", [slab, *every_config], allow_fizzled=True) if terms else None
    # each configuration's BSSE (LCAO), once judged against the reference; an exchanged anion sits in the
    # lattice (no molecule to split off)
    neutral = [lig for lig in terms if ligand_spec(c, lig)["mode"] == "neutral"]
    for lig in neutral if wants_counterpoise(c["protocol"]) else []:
        terms[lig] += [
            add(
                "counterpoise",
                f"counterpoise/{lig}/{k}",
                [reference, f"config/{lig}/{k}"],
                True,
                ligand=lig,
                config=k,
            )
            for k in range(c["configs"])
        ]
    binding_ids = {
        lig: add("binding", f"binding/{lig}", [reference, *parents], allow_fizzled=True, ligand=lig)
        for lig, parents in terms.items()
    }
    for a, b in c["compute"]["coadsorption"]:
        add("coadsorption", f"coadsorption/{a}+{b}", [binding_ids[a], binding_ids[b]], ligand=a, other=b)
    frenkel_ids = {}
    for host in defect_hosts(c["compute"]["frenkel"]):
        tag = host or "bare"
        base = [slab] if host is None else [binding_ids[host]]
        pairs = [
            add("frenkel-pair", f"frenkel-pair/{tag}/{k}", base, ligand=host, config=k)
            for k in range(c["compute"]["frenkel"]["pairs"])
        ]
        extra = [frenkel_ids["bare"]] if host is not None and "bare" in frenkel_ids else []
        frenkel_ids[tag] = add(
            "frenkel", f"frenkel/{tag}", [*base, *pairs, *extra], allow_fizzled=True, ligand=host
        )
    passivation = plan_passivation(c, add, slab, frenkel_ids)
    from ligbind.engine.coverage_steps import plan_coverage  # compute.coverage, compute.treatments

    plan_coverage(c, add, slab, frenkel_ids, reference)
    plan_defects(
        c, add, slab, binding_ids, passivation
    )  # vacancies and migration barriers (engine/defect_steps.py)
    if c.get("verify"):
        dft_slab = add("verify-slab", "verify-slab", [slab])
        ligands, configs, byproducts = {}, {}, {}
        for lig in verified_ligands(c):
            ligands[lig] = add("verify-ligand", f"verify-ligand/{lig}", [f"ligand/{lig}"], ligand=lig)
            if ligand_spec(c, lig)["mode"] == "exchange":
                byproducts[lig] = [
                    add("verify-byproduct", f"verify-byproduct/{lig}", [f"byproduct/{lig}"], ligand=lig)
                ]
            configs[lig] = []
            for k in range(verified_count(c)):  # the top_k, then reserves that wait for the ones before them
                reserve = k >= c["verify"]["top_k"]
                configs[lig].append(
                    add(
                        "verify-config",
                        f"verify-config/{lig}/{k}",
                        # starts from the DFT ligand's geometry
                        [binding_ids[lig], dft_slab, ligands[lig], *(configs[lig] if reserve else [])],
                        allow_fizzled=reserve,  # a failed DFT relaxation is what a reserve stands in for
                        ligand=lig,
                        config=k,
                    )
                )
        # the slab reference: the DFT slab, or a lower bare framework of a complex that changed basin
        every_config = [k for lig in configs for k in configs[lig]]
        reference = add("verify-reference", "verify-reference", [dft_slab, *every_config], allow_fizzled=True)
        for lig in configs:
            parents = [binding_ids[lig], reference, ligands[lig], *byproducts.get(lig, []), *configs[lig]]
            if wants_counterpoise(c["verify"]["protocol"]) and lig in neutral:  # each one's BSSE (LCAO)
                parents += [
                    add(
                        "verify-counterpoise",
                        f"verify-counterpoise/{lig}/{k}",
                        [reference, config],
                        allow_fizzled=True,
                        ligand=lig,
                        config=k,
                    )
                    for k, config in enumerate(configs[lig])
                ]
            add("verify", f"verify/{lig}", parents, allow_fizzled=True, ligand=lig)
        hosts = {what: verified_hosts(c, what) for what in ("frenkel", "vacancy", "migration")}
        plan_passivation_verification(c, add, passivation, reference)  # E_pass, and the DFT passivated host
        for what, verified in hosts.items():  # E_F, E_vac, Ea of the bare and verified hosts
            plan_host_verification(add, f"verify-{what}", verified, reference)
        plan_passivation_frenkel_verification(c, add, reference, ids)  # E_F on the DFT passivated slab
    plan_complexes(c, add)
    return plan


def screen(campaign_ref: str | Path, launchpad_file: str | Path | None = None) -> dict[str, Any]:
    """Add the campaign's Fireworks that the LaunchPad does not hold yet; return counts."""
    c = resolve_campaign_ref(campaign_ref)
    with worker_lock(c, launchpad_file):
        lpad = get_launchpad(c, launchpad_file)
        plan = planned_fireworks(c)
        old = saved_campaign(c)  # as last screened
        planned = {fw.spec["_ligbind_id"] for fw, _ in plan}
        changes = _settings_changed(lpad, c, old, planned)
        run_changes = _refresh_run_settings(lpad, c, old, launchpad_file)
        _follow_moved_campaign(lpad, c, launchpad_file)
        save_campaign(c)
        existing = {
            doc["spec"]["_ligbind_id"]: doc["fw_id"]
            for doc in lpad.fireworks.find(campaign_query(c), {"spec._ligbind_id": 1, "fw_id": 1})
        }
        rerun = _rerun_overwritten(lpad, c, planned)
        refine = _rerun_unresolved_barriers(lpad, c)
        new = [(fw, parents) for fw, parents in plan if fw.spec["_ligbind_id"] not in existing]
        if new:
            ids = {fw.spec["_ligbind_id"]: fw for fw, _ in new}
            links: dict[Any, list[Any]] = {fw: [] for fw, _ in new}
            outside_parents: set[int] = set()
            for fw, parents in new:
                for pid in parents:
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
        "protocol_changes": changes,
        "run_changes": run_changes,
        "rerun": rerun,
        "refine": refine,
        "workdir": c["workdir"],
        "store": c["store"],
    }


PLACES = ("file", "workdir", "store")  # where a campaign is: not what it computes


def _follow_moved_campaign(lpad, c: dict[str, Any], launchpad_file: str | Path | None) -> bool:
    """Point the campaign's Fireworks at where the campaign is now. Each Firework carries the resolved campaign,
    absolute paths included: a campaign directory copied or moved elsewhere (another checkout, a laptop after
    the cluster) wrote its results into the original's store, or recreated the old path. On the embedded store
    (which lives in the workdir, so it moved with it) the paths are renewed; a shared MongoDB keeps them, as
    workers on several machines may read it. Returns whether anything moved."""
    if launchpad_file:
        return False
    moved = {k: c[k] for k in PLACES if k in c}
    stale = {"$or": [{f"spec._tasks.0.campaign.{k}": {"$ne": v}} for k, v in moved.items()]}
    query = {"spec._campaign": c["name"], **stale}
    if not lpad.fireworks.count_documents(query):
        return False
    lpad.fireworks.update_many(query, {"$set": {f"spec._tasks.0.campaign.{k}": v for k, v in moved.items()}})
    return True


def _run_settings(value: Any, where: str = "") -> dict[str, Any]:
    """``{path: run settings}`` of every resolved protocol in a campaign (main, verify, complexes ...)."""
    found = {}
    if isinstance(value, dict):
        if "backend" in value and isinstance(value.get("run"), dict):
            found[where or "protocol"] = value["run"]
        for k, v in value.items():
            found.update(_run_settings(v, f"{where}.{k}" if where else k))
    return found


# run settings that do nothing while another one is off (reported only where that one is on, before or after)
_INERT_WITHOUT = {"hessian_scale": "hessian", "hessian_floor": "hessian", "hessian_molecules": "hessian"}


def _refresh_run_settings(
    lpad, c: dict[str, Any], old: dict[str, Any] | None, launchpad_file: str | Path | None
) -> list[str]:
    """Hand changed run-time settings (a protocol's ``run``: cores, threads, hessian ...) to the campaign's
    unfinished Fireworks; what they compute, and so their ids and keys, stays the same."""
    if old is None:
        return []
    changes = run_setting_changes(old, c)
    if changes:
        waiting = {**campaign_query(c), "state": {"$nin": ["COMPLETED", "RUNNING", "RESERVED"]}}
        ids = [doc["fw_id"] for doc in lpad.fireworks.find(waiting, {"fw_id": 1})]
        lpad.update_spec(ids, {"_tasks.0.campaign": c})
        if not launchpad_file:  # screen holds the worker lock: a RUNNING Firework was left by a killed run
            lost = {**campaign_query(c), "state": {"$in": ["RUNNING", "RESERVED"]}}
            lpad.fireworks.update_many(lost, {"$set": {"spec._tasks.0.campaign": c}})
    return changes


def run_setting_changes(old: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """Run-time settings of ``c``'s protocols that differ from ``old``'s (``path.run.key: old → new``)."""
    previous = _run_settings(old)
    # a campaign saved before a run setting existed ran with its default
    defaults = RunSettings().model_dump(mode="json")
    changes = []
    for where, run in _run_settings(c).items():
        before = {**defaults, **previous.get(where, {})}
        for k, v in run.items():
            switch = _INERT_WITHOUT.get(k)
            if before.get(k) != v and (switch is None or run.get(switch) or before.get(switch)):
                changes.append(f"{where}.run.{k}: {before.get(k)!r} → {v!r}")
    return changes


def _settings_changed(lpad, c: dict[str, Any], old: dict[str, Any] | None, planned: set[str]) -> list[str]:
    """Settings that changed since the campaign was last screened (``path: old → new``).

    Fireworks are keyed on the settings their result depends on (:func:`fw_id_of`), so new settings get new
    Fireworks (whatever is still valid, i.e. has the same store key, is reused); the campaign's unfinished
    Fireworks that the current settings do not plan are defused so that nothing runs with old settings.
    Returning to earlier settings reruns their COMPLETED Fireworks (cheap: every calculation is in the store),
    because their analysis rows may have been overwritten since.
    """
    if old is None:
        return []
    mine = {"spec._campaign": c["name"]}
    for doc in lpad.fireworks.find(
        {**mine, "state": {"$in": ["READY", "WAITING"]}}, {"fw_id": 1, "spec._ligbind_id": 1}
    ):
        if doc["spec"]["_ligbind_id"] not in planned:
            lpad.defuse_fw(doc["fw_id"])
    for doc in lpad.fireworks.find({**mine, "state": "DEFUSED"}, {"fw_id": 1, "spec._ligbind_id": 1}):
        if doc["spec"]["_ligbind_id"] in planned:  # planned again (settings changed back)
            lpad.reignite_fw(doc["fw_id"])
    if settings_hash(old) == settings_hash(c):
        return []
    for doc in lpad.fireworks.find({**campaign_query(c), "state": "COMPLETED"}, {"fw_id": 1}):
        if lpad.fireworks.find_one({"fw_id": doc["fw_id"], "state": "COMPLETED"}):  # not rerun as a child yet
            lpad.rerun_fw(doc["fw_id"])
    return settings_changes(old, c)


def settings_changes(old: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """What ``c`` computes differently from ``old`` (``path: old → new``; empty when the same)."""
    if settings_hash(old) == settings_hash(c):
        return []
    changes = describe_changes(old.get("protocol") or {}, c["protocol"])
    a, b = campaign_settings(old), campaign_settings(c)
    for d in (a, b):
        d.pop("protocol", None), d.pop("ligands", None)
    changes += [x.removeprefix("campaign.") for x in describe_changes(a, b, "campaign")]
    return changes or ["campaign settings"]


def check_screened(c: dict[str, Any], campaign_ref: str | Path) -> None:
    """Refuse to run a campaign that was never screened, or whose YAML now asks for something else than what
    was screened (its Fireworks would be those of the old settings, or none: a run that silently does nothing).
    """
    old = saved_campaign(c)
    if old is None:
        raise LigbindError(
            f"campaign {c['name']} was never screened: run `ligbind screen {campaign_ref}` first"
        )
    if old.get("ligbind_plan") != PLAN_VERSION:  # also when run by name, i.e. from the screened campaign
        raise LigbindError(
            f"campaign {c['name']} was screened by a ligbind that planned campaigns otherwise (ligbind_plan: "
            f"{old.get('ligbind_plan')} → {PLAN_VERSION}): run `ligbind screen {c.get('file') or campaign_ref}` "
            "again, then run it"
        )
    changes = settings_changes(old, c) or run_setting_changes(old, c)
    if not changes and _digest(campaign_settings(old)["ligands"]) != _digest(campaign_settings(c)["ligands"]):
        before, now = ([s["name"] for s in x["ligands"]] for x in (old, c))  # settings_hash leaves them out
        changes = [f"ligands: {before} → {now}" if before != now else "ligands"]
    if changes:
        shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise LigbindError(
            f"campaign {c['name']} changed since it was screened ({shown}): "
            f"run `ligbind screen {campaign_ref}` again, then run it"
        )


def _append_under(lpad, wf, parent_ids: list[int]) -> None:
    """Add ``wf`` under Fireworks already on the LaunchPad; its roots receive their parents' store keys."""
    lpad.append_wf(wf, parent_ids, pull_spec_mods=True)


def _ready_count(lpad, c: dict[str, Any]) -> int:
    return lpad.fireworks.count_documents({**campaign_query(c), "state": {"$in": ["READY", "WAITING"]}})


# Steps that calculate (they may run in parallel worker processes); the others run in the launching process.
CALCULATION_STEPS = frozenset(
    {
        "slab",
        "ligand",
        "byproduct",
        "config",
        "reference",
        "frenkel-pair",
        "verify-slab",
        "verify-ligand",
        "verify-byproduct",
        "verify-config",
        "verify-reference",
        "verify-counterpoise",
        "counterpoise",
    }
)
CALCULATION_STEPS |= _PASSIVATION_CALCULATIONS
CALCULATION_STEPS = CALCULATION_STEPS | COMPLEX_CALCULATION_STEPS | DEFECT_CALCULATION_STEPS
_PREFETCH_ERRORS: dict[str, BaseException] = {}

from ligbind.engine.coverage_steps import COVERAGE_CALCULATIONS, COVERAGE_STEPS  # noqa: E402

STEPS.update(COVERAGE_STEPS)  # coverage and treatments (ligbind/engine/coverage_steps.py)
CALCULATION_STEPS = CALCULATION_STEPS | COVERAGE_CALCULATIONS
# Steps that calculate inside the launching process (an NEB, rerun in a worker, would evaluate its last band
# again; the others relax inside their analysis): never sent to a worker, but not seconds-long analyses either.
# The verification protocol's (DFT) ones take hours.
NEB_STEPS = frozenset({"migration", "verify-migration"})  # a band of images: the longest steps of a campaign
IN_PROCESS_CALCULATIONS = (
    frozenset(
        {"coadsorption", "vacancy", "migration", "verify-frenkel", "verify-vacancy", "verify-migration"}
    )
    | _PASSIVATION_IN_PROCESS
)


def default_workers(c: dict[str, Any]) -> int:
    """Worker processes side by side, as the protocol's backend prefers (one per core; 1 for VASP)."""
    from ligbind.calculators import backend_of

    protocols = [c["protocol"], *([c["verify"]["protocol"]] if c.get("verify") else [])]
    if c["compute"].get("complexes"):  # GPAW complexes run as MPI jobs over every core
        protocols.append(c["compute"]["complexes"]["protocol"])
    return min(backend_of(p).default_workers(p) for p in protocols)


SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_init() -> None:
    """Parallel worker: die with the `ligbind run` process (kill -9 included)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: orphans finish their step and exit
        pass


def _calculate(
    c: dict[str, Any],
    step: str,
    keys: dict[str, str],
    ligand: str | None,
    config: int | None,
    other: str | None = None,
) -> None:
    """Worker process: run one calculation step; its result lands in the results store (nothing sent back)."""
    run_step(c, step, keys, ligand, config, other)


def _step_cost(c: dict[str, Any], params: dict[str, Any]) -> float:
    """Rough cost to order parallel work, largest first: atoms in the structure the step relaxes."""
    if params["step"] == "slab":
        return 1e9  # everything waits for it
    lig = params.get("ligand")
    size = 0
    if lig in {s["name"] for s in c["ligands"]}:  # a defect host may be the passivated slab (no ligand)
        from ligbind.builders.ligands import smiles_atom_count
        from ligbind.engine.campaign import entry_from_spec, ligand_spec

        size = smiles_atom_count(entry_from_spec(ligand_spec(c, lig)).smiles)
    dft = 1000 if params["step"].startswith("verify") else 0  # DFT first: it is the long pole
    return size + dft + (100 if params["step"] in ("config", "frenkel-pair", "verify-config") else 0)


def run(
    campaign_ref: str | Path,
    launchpad_file: str | Path | None = None,
    max_fireworks: int | None = None,
    progress: bool = True,
    workers: int | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Launch the campaign's ready Fireworks in this process until none is left.

    ``retry_failed``: the campaign's failed (FIZZLED) Fireworks, and what waits on them, are made ready again
    first (after a crash, a killed MPI job, or a cause the user fixed); each calculation resumes from its
    trajectory.

    With ``workers`` > 1 (default: one per core, see :func:`default_workers`) the calculations of ready
    Fireworks run in that many worker processes, largest first; each result lands in the results store, and
    the Firework's Rocket then runs here and finds it there. FireWorks state stays in this one process, so the
    embedded store keeps its single writer.
    """
    from tqdm import tqdm

    c = resolve_campaign_ref(campaign_ref)
    check_screened(c, campaign_ref)
    workers = default_workers(c) if workers is None else int(workers)
    if workers < 1:
        raise LigbindError(f"workers must be at least 1, got {workers}")
    launches = Path(c["workdir"]) / "launches"
    launches.mkdir(parents=True, exist_ok=True)
    with worker_lock(c, launchpad_file):
        lpad = get_launchpad(c, launchpad_file)
        _check_plan_on_launchpad(lpad, c, campaign_ref)
        if _follow_moved_campaign(lpad, c, launchpad_file):
            save_campaign(c)  # `run <name>` and `status` read it: the new places
        _reset_interrupted(lpad, c, launchpad_file)
        retried = _retry_failed(lpad, c) if retry_failed else []
        save_store(lpad)  # `ligbind status` reads the saved embedded store: the reset and retried states, now
        ping = fireworks.core.rocket.start_ping_launch
        if not launchpad_file:  # one in-process worker: no heartbeat thread (mongomock is not thread-safe)
            fireworks.core.rocket.start_ping_launch = lambda *args: None
        bar = tqdm(total=_ready_count(lpad, c), unit="fw", disable=not progress, desc=c["name"])
        launcher = _Launcher(lpad, c, launches, bar, workers)
        cwd = os.getcwd()
        try:
            os.chdir(launches)
            if workers == 1:
                while max_fireworks is None or launcher.ran < max_fireworks:
                    fw_id = _next_on_one_worker(launcher)
                    if fw_id is None or not launcher.launch(fw_id):
                        break
            else:
                _run_parallel(launcher, c, workers, max_fireworks)
        finally:
            fireworks.core.rocket.start_ping_launch = ping
            os.chdir(cwd)
            bar.close()
            launcher.record.close()
            save_store(lpad)
        counts = state_counts(lpad, c)
        problems = problem_counts(lpad, c)
    overhead = launcher.overhead
    return {
        "campaign": c["name"],
        "ran": launcher.ran,
        "retried": retried,
        "workers": workers,
        "states": counts,
        **problems,
        "engine_overhead_s": (sum(overhead) / len(overhead)) if overhead else None,
    }


def _check_plan_on_launchpad(lpad, c: dict[str, Any], campaign_ref: str | Path) -> None:
    """Refuse to run when the LaunchPad lacks Fireworks of the campaign's plan: this ligbind plans steps the
    last screen did not add (run would skip them and everything below them without a word)."""
    held = {d["spec"]["_ligbind_id"] for d in lpad.fireworks.find(campaign_query(c), {"spec._ligbind_id": 1})}
    missing = len(set(planned_ids(c)) - held)
    if missing:
        raise LigbindError(
            f"campaign {c['name']}: {missing} Fireworks of its plan are not on the LaunchPad (this ligbind plans "
            f"steps the last screen did not add): run `ligbind screen {c.get('file') or campaign_ref}` again, "
            "then run it"
        )


class RunningRecord:
    """``running.json`` in the campaign's working directory: the Fireworks this worker is computing now and
    since when. The embedded store is saved between Fireworks, so `ligbind status` would otherwise show a
    running Firework as READY (and say nothing of a DFT relaxation that has been running for an hour)."""

    def __init__(self, workdir: str | Path, workers: int = 1):
        self.path = Path(workdir) / RUNNING_FILE
        self.workers = workers
        self.since: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.since.setdefault(name, time.time())
        self._write()

    def stop(self, name: str) -> None:
        self.since.pop(name, None)
        self._write()

    def close(self) -> None:
        self.since.clear()
        self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        running = [{"firework": n, "since": t} for n, t in sorted(self.since.items(), key=lambda kv: kv[1])]
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "workers": self.workers,
            "running": running,
        }
        write_text_atomic(self.path, json.dumps(record))


def running_now(c: dict[str, Any]) -> dict[str, Any] | None:
    """What a live ``ligbind run`` of campaign ``c`` is computing (``RunningRecord``), None when no run is
    alive (a record left by a killed run names a process that is gone, or one on another machine)."""
    path = Path(c["workdir"]) / RUNNING_FILE
    try:
        record = json.loads(path.read_text())
        if record["host"] != socket.gethostname():
            return None
        os.kill(int(record["pid"]), 0)
    except PermissionError:  # alive, owned by another user
        pass
    except (OSError, ValueError, KeyError, TypeError):  # no record, a cut one, or its process is gone
        return None
    return record


def _written_since(paths, since: float) -> list[tuple[float, Path]]:
    """(mtime, path) of ``paths`` last written at or after ``since``."""
    out = []
    for path in paths:
        try:
            mtime = path.stat().st_mtime
        except OSError:  # removed since the listing
            continue
        if mtime >= since:
            out.append((mtime, path))
    return out


def active_calculations(c: dict[str, Any], since: float) -> list[dict[str, Any]]:
    """The relaxations, NEB bands and counterpoise corrections of campaign ``c`` in progress: logs in its calcs
    folder written to since ``since`` (the oldest running Firework's start) whose result is not in the store
    yet. A relaxation or band comes with its last step, fmax (and a relaxation's target fmax, on the campaign's
    protocols), energy, the mean seconds of its last (up to) five steps and when it last logged; a counterpoise
    correction with its finished terms, the term it is computing and that term's SCF iteration.

    The embedded store and ``running.json`` know the Firework; only the calculations' logs know how far a DFT
    step inside it has come (an hour-long relaxation step is not a stalled run).
    """
    calcdir = _calcdir(c)
    logs = _written_since(calcdir.glob("*.log"), since)
    scf_logs = _written_since(calcdir.glob("counterpoise-*.txt"), since)
    if not logs and not scf_logs:
        return []
    try:
        store = ResultStore.open_existing(c["store"])
    except LigbindError:  # not written yet: nothing is finished
        store = None
    return _optimizations(c, logs, store) + _counterpoise_corrections(calcdir, scf_logs, store)


def _optimizations(
    c: dict[str, Any], logs: list[tuple[float, Path]], store: ResultStore | None
) -> list[dict]:
    """:func:`active_calculations`' relaxations and bands, from their optimizer logs."""
    from ligbind.io import read_optimizer_log, step_intervals

    protocols = [c.get("protocol"), (c.get("verify") or {}).get("protocol")]
    targets = {
        protocol_hash(p): p["relax"]["fmax"] for p in protocols if isinstance(p, dict) and "relax" in p
    }
    out = []
    for mtime, log in sorted(logs, reverse=True):
        key = log.name.removesuffix(".log")
        kind = "band" if key.endswith(".neb") else "relaxation"
        key = key.removesuffix(".neb")
        steps = read_optimizer_log(log)
        logged = [s for s in steps if s is not None]
        if not logged or (store is not None and store.get(key) is not None):
            continue
        gaps = step_intervals(steps, longest=RUNNING_STEP_GAP)[-5:]
        last = logged[-1]
        target = next((targets[h] for h in key.split("-") if h in targets), None)
        out.append(
            {
                "key": key,
                "kind": kind,
                "optimizer": last.optimizer,
                "step": last.step,
                "energy": last.energy,
                "fmax": last.fmax,
                "fmax_target": target if kind == "relaxation" else None,
                "seconds_per_step": sum(gaps) / len(gaps) if gaps else None,
                "last_step": mtime,
            }
        )
    return out


def _counterpoise_corrections(
    calcdir: Path, logs: list[tuple[float, Path]], store: ResultStore | None
) -> list[dict[str, Any]]:
    """:func:`active_calculations`' counterpoise corrections, from the GPAW text logs of their terms and the
    record of the terms they finished."""
    from ligbind.analysis.energies import COUNTERPOISE_TERMS
    from ligbind.calculators.gpaw import counterpoise_label
    from ligbind.io import last_scf_iteration

    newest: dict[str, tuple[float, Path]] = {}
    for mtime, log in logs:
        key = log.name.split(".", 1)[0]
        if key not in newest or mtime > newest[key][0]:
            newest[key] = (mtime, log)
    out = []
    for key, (mtime, log) in sorted(newest.items(), key=lambda kv: kv[1][0], reverse=True):
        if store is not None and store.get(key) is not None:
            continue
        try:
            finished = json.loads((calcdir / f"{key}.json").read_text())
        except (OSError, ValueError):
            finished = {}
        labels = {counterpoise_label(key, t): t for t in COUNTERPOISE_TERMS}
        term = labels.get(log.name.removesuffix(".txt").split(".retry")[0])
        current = term if term is not None and term not in finished else None
        out.append(
            {
                "key": key,
                "kind": "counterpoise",
                "terms_done": sum(t in finished for t in COUNTERPOISE_TERMS),
                "terms": len(COUNTERPOISE_TERMS),
                "term": current,
                "scf_iteration": last_scf_iteration(log) if current else None,
                "last_step": mtime,
            }
        )
    return out


class _Launcher:
    """Launches one Rocket at a time on the campaign's LaunchPad and saves the store after each."""

    def __init__(self, lpad, c: dict[str, Any], launches: Path, bar, workers: int = 1):
        self.lpad, self.c, self.launches, self.bar = lpad, c, launches, bar
        self.fworker = FWorker(name="ligbind-embedded", query=campaign_query(c))
        self.ran, self.overhead = 0, []
        self.record = RunningRecord(c["workdir"], workers)

    def launch(self, fw_id: int | None = None) -> bool:
        from fireworks.core.rocket_launcher import launch_rocket

        start = time.perf_counter()
        label = _fw_label(self.lpad, fw_id) if fw_id is not None else None
        if label:
            self.record.start(label)
        try:
            with open(self.launches / "tracebacks.log", "a") as err_file:  # `ligbind status` shows one line
                launched = launch_rocket(
                    self.lpad, self.fworker, fw_id=fw_id, strm_lvl="CRITICAL", err_file=err_file
                )
        finally:
            if label:
                self.record.stop(label)
        if not launched:
            return False
        elapsed = time.perf_counter() - start
        save_store(self.lpad)
        self.ran += 1
        last = self.lpad.launches.find_one(sort=[("launch_id", -1)])
        task_time = ((last or {}).get("action") or {}).get("stored_data", {}).get("task_time")
        if task_time is not None:
            self.overhead.append(elapsed - task_time)
        self.bar.set_postfix_str(((last or {}).get("fw_id") and _fw_label(self.lpad, last["fw_id"])) or "")
        self.bar.update(1)
        return True

    def ready(self) -> list[dict[str, Any]]:
        docs = self.lpad.fireworks.find({**campaign_query(self.c), "state": "READY"}, {"fw_id": 1, "spec": 1})
        return sorted(docs, key=lambda d: d["fw_id"])


def _run_parallel(launcher: _Launcher, c: dict[str, Any], workers: int, max_fireworks: int | None) -> None:
    """Calculations of ready Fireworks in a process pool; their Rockets here once the results are stored."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    running: dict[Any, tuple[int, str, str]] = {}  # future -> (fw_id, _ligbind_id, its name for running.json)
    calculated: set[int] = set()
    costs: dict[int, float] = {}
    # One OpenMP/BLAS thread per worker, set before the worker starts: dftd3's OpenMP threads otherwise spin
    # against the other workers (measured: 0.88 instead of 0.58 s per force call on a 131-atom complex).
    context = multiprocessing.get_context("spawn")
    # the results database's tables are created here, once: a worker and this process opening a new database
    # together raced in ase.db's initialisation ("no such table: information", a FIZZLED first step; seen once)
    ResultStore(c["store"]).db.count()
    with (
        patch.dict(os.environ, SINGLE_THREAD_ENV),
        ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool,
    ):
        try:
            while max_fireworks is None or launcher.ran < max_fireworks:
                ready = launcher.ready()
                params = {d["fw_id"]: d["spec"]["_tasks"][0] for d in ready}
                ready_ids = {d["fw_id"]: d["spec"]["_ligbind_id"] for d in ready}
                ready_keys = {d["fw_id"]: passed_keys(d["spec"]) for d in ready}
                # Rockets whose work is done (or that only analyse) run here, one at a time
                launchable = [
                    i
                    for i, p in params.items()
                    if p["step"] not in CALCULATION_STEPS | IN_PROCESS_CALCULATIONS or i in calculated
                ]
                if launchable:
                    launcher.launch(launchable[0])
                    continue
                busy = {fw_id for fw_id, _, _ in running.values()}
                waiting = [
                    i
                    for i, p in params.items()
                    if p["step"] in CALCULATION_STEPS and i not in busy and i not in calculated
                ]
                for i in waiting:
                    costs.setdefault(i, _step_cost(c, params[i]))
                for i in sorted(waiting, key=lambda i: -costs[i])[: max(0, workers - len(running))]:
                    p = params[i]
                    future = pool.submit(
                        _calculate,
                        c,
                        p["step"],
                        ready_keys[i],
                        p.get("ligand"),
                        p.get("config"),
                        p.get("other"),
                    )
                    label = _fw_label(launcher.lpad, i)
                    running[future] = (i, ready_ids[i], label)
                    launcher.record.start(label)
                in_process = [i for i, p in params.items() if p["step"] in IN_PROCESS_CALCULATIONS]
                if in_process:  # here, while the workers go on with what was just submitted
                    launcher.launch(in_process[0])
                    continue
                if not running:
                    return
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    fw_id, ligbind_id, label = running.pop(future)
                    calculated.add(fw_id)
                    launcher.record.stop(label)
                    if future.exception() is not None:
                        _PREFETCH_ERRORS[ligbind_id] = future.exception()
        finally:
            for future in running:
                future.cancel()


def _one_worker_rank(c: dict[str, Any], params: dict[str, Any]) -> tuple:
    """Order of ready work on one worker (ascending): analyses first (they read the store: seconds), then the
    screen protocol's calculations before the verification protocol's (DFT: minutes to hours each); within each,
    the slab first (everything waits for it), then relaxations before NEB bands (a DFT band costs several hours,
    as much as all of a campaign's DFT vacancies and Frenkel pairs), then the smallest first. So every screen
    table is written before the first DFT relaxation starts, an interrupted run has its E_vac and E_F rows
    before its barriers, and the verified rows of small ligands come first."""
    step = params["step"]
    calculates = step in CALCULATION_STEPS or step in IN_PROCESS_CALCULATIONS
    band = step in NEB_STEPS
    return (
        calculates,
        step.startswith("verify"),
        step not in ("slab", "verify-slab"),
        band,
        _step_cost(c, params),
    )


def _next_on_one_worker(launcher: _Launcher) -> int | None:
    """The READY Firework to launch next on one worker (:func:`_one_worker_rank`), None when none is ready."""
    ready = launcher.lpad.fireworks.find(
        {**campaign_query(launcher.c), "state": "READY"},
        {"fw_id": 1, "spec._tasks.step": 1, "spec._tasks.ligand": 1},  # not the campaign each task holds
    )
    ranked = [(_one_worker_rank(launcher.c, d["spec"]["_tasks"][0]), d["fw_id"]) for d in ready]
    return min(ranked)[1] if ranked else None


def _fw_label(lpad, fw_id: int) -> str:
    doc = lpad.fireworks.find_one({"fw_id": fw_id}, {"name": 1})
    return doc["name"].split(":", 1)[-1] if doc else ""


def _reset_interrupted(lpad, c: dict[str, Any], launchpad_file) -> None:
    """Embedded store only: a Firework left RUNNING by a killed worker is rerun (its task resumes)."""
    if launchpad_file:
        return
    for doc in lpad.fireworks.find({**campaign_query(c), "state": "RUNNING"}, {"fw_id": 1}):
        lpad.rerun_fw(doc["fw_id"])


def _retry_failed(lpad, c: dict[str, Any]) -> list[str]:
    """Make the campaign's FIZZLED Fireworks (and their children) ready again; returns their step names."""
    retried = []
    for doc in lpad.fireworks.find({**campaign_query(c), "state": "FIZZLED"}, {"fw_id": 1, "name": 1}):
        lpad.rerun_fw(doc["fw_id"])
        retried.append(doc["name"].split(":", 1)[-1])
    return sorted(retried)


def state_counts(lpad, c: dict[str, Any]) -> dict[str, int]:
    """Firework counts by state, at the campaign's current settings."""
    return dict(Counter(doc["state"] for doc in lpad.fireworks.find(campaign_query(c), {"state": 1})))


def _last_launches(lpad, fw_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The last launch of each of ``fw_ids`` (one query: a query per Firework scans the launches each time)."""
    out: dict[int, dict[str, Any]] = {}
    for launch in lpad.launches.find({"fw_id": {"$in": list(fw_ids)}}):
        if launch["fw_id"] not in out or launch["launch_id"] > out[launch["fw_id"]]["launch_id"]:
            out[launch["fw_id"]] = launch
    return out


def _stored_data(launch: dict[str, Any] | None) -> dict[str, Any]:
    return ((launch or {}).get("action") or {}).get("stored_data") or {}


def problem_counts(lpad, c: dict[str, Any]) -> dict[str, int]:
    """Failed (FIZZLED) Fireworks and COMPLETED calculations that ended unconverged."""
    ids = [d["fw_id"] for d in lpad.fireworks.find({**campaign_query(c), "state": "COMPLETED"}, {"fw_id": 1})]
    launches = _last_launches(lpad, ids)
    unconverged = sum(_stored_data(launches.get(i)).get("status") == "unconverged" for i in ids)
    failed = lpad.fireworks.count_documents({**campaign_query(c), "state": "FIZZLED"})
    return {"failed": failed, "unconverged": unconverged}


UNFINISHED_STATES = ("READY", "WAITING", "RESERVED", "RUNNING")


def step_kind(name: str) -> str:
    """The step a Firework's name belongs to (``calib:verify-config/methanethiol/2`` → ``verify-config``)."""
    return name.split(":", 1)[-1].split("/", 1)[0]


def time_left(
    lpad, c: dict[str, Any], running: list[dict[str, Any]] = (), workers: int = 1
) -> dict[str, Any]:
    """How long campaign ``c``'s unfinished Fireworks will take at the pace its finished ones set.

    Per step (:func:`step_kind`): the mean cost of its Fireworks that computed something (the launch's run
    time, or its calculation's ``wall_time`` in the results store where that is longer: a resumed relaxation's
    counts every run, its last launch only the last), times the Fireworks of that step waiting to run; for
    each of the ``running`` ones (``running.json``), what the finished ones that took longer than it has run
    so far took beyond that, on average (:func:`_expected_rest`); all over ``workers`` side by side. A running
    Firework that has outrun every finished one of its step has no such estimate: it is named (``overdue``)
    and counted as about to finish. Steps none of whose Fireworks has finished yet have no pace: they are
    counted apart (``untimed``), not guessed. Fireworks that find their result in the store finish in
    seconds, so where results will be reused the estimate is an upper bound (so too for a verification's
    reserve configurations, counted as if each were needed).
    """
    try:
        store = ResultStore.open_existing(c["store"])
    except LigbindError:
        store = None
    costs: dict[str, list[float]] = {}
    left: Counter[str] = Counter()
    docs = list(lpad.fireworks.find(campaign_query(c), {"fw_id": 1, "name": 1, "state": 1}))
    launches = _last_launches(lpad, [d["fw_id"] for d in docs if d["state"] == "COMPLETED"])
    for doc in docs:
        kind = step_kind(doc["name"])
        if doc["state"] in UNFINISHED_STATES:
            left[kind] += 1
            continue
        if doc["state"] != "COMPLETED":
            continue
        launch = launches.get(doc["fw_id"]) or {}
        data = _stored_data(launch)
        if data.get("reused") or data.get("status") == "skipped":  # computed nothing (an unneeded reserve)
            continue
        row = store.get(data["key"]) if store is not None and data.get("key") else None
        # a resumed relaxation's wall_time counts every run of it; its last launch, the last run only
        resumed = float(row.get("wall_time") or 0.0) if row is not None else 0.0
        costs.setdefault(kind, []).append(max(float(launch.get("runtime_secs") or 0.0), resumed))
    steps, untimed, overdue, total = [], {}, {}, 0.0
    now = time.time()
    for kind, n in sorted(left.items()):
        if kind not in costs:
            untimed[kind] = n
            continue
        pace = sum(costs[kind]) / len(costs[kind])
        mine = [r for r in running if step_kind(r["firework"]) == kind]
        total += pace * max(n - len(mine), 0)
        for r in mine:
            rest = _expected_rest(costs[kind], now - r["since"])
            if rest is None:
                overdue[r["firework"]] = now - r["since"]  # running.json names it as status shows it
            total += rest or 0.0
        steps.append({"step": kind, "left": n, "pace": pace, "finished": len(costs[kind])})
    return {
        "seconds": total / max(workers, 1),
        "workers": workers,
        "steps": steps,
        "untimed": untimed,
        "overdue": overdue,
    }


def _expected_rest(costs: list[float], spent: float) -> float | None:
    """Expected time still to come of a Firework that has run ``spent`` s, from its step's finished ``costs``:
    the mean of what those that took longer took beyond ``spent``; None when none took longer."""
    longer = [c - spent for c in costs if c > spent]
    return sum(longer) / len(longer) if longer else None


def failures(lpad, c: dict[str, Any]) -> list[dict[str, str]]:
    """Each FIZZLED Firework with the last line of its error."""
    out = []
    docs = list(lpad.fireworks.find({**campaign_query(c), "state": "FIZZLED"}, {"fw_id": 1, "name": 1}))
    launches = _last_launches(lpad, [d["fw_id"] for d in docs])
    for doc in docs:
        err = _stored_data(launches.get(doc["fw_id"])).get("_exception", {})
        message = (err.get("_stacktrace") or "").strip().splitlines()[-1:] or ["?"]
        out.append({"firework": doc["name"].split(":", 1)[-1], "error": message[0]})
    return out


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
        lpad = read_launchpad(c, launchpad_file)
        if lpad is None:
            out.append({"campaign": c["name"], "states": {}, "failures": [], "note": "not screened yet"})
            continue
        row = {
            "campaign": c["name"],
            "states": state_counts(lpad, c),
            **problem_counts(lpad, c),
            "failures": failures(lpad, c),
        }
        live = None if launchpad_file else running_now(c)
        if any(state in UNFINISHED_STATES for state in row["states"]):
            workers = int(live.get("workers", 1)) if live is not None else default_workers(c)
            row["time_left"] = time_left(lpad, c, live["running"] if live is not None else (), workers)
        if live is not None:  # the embedded store was saved before these started: it holds them as READY
            row["running"] = live["running"]
            row["worker"] = f"pid {live['pid']}"
            if live["running"]:
                row["calculations"] = active_calculations(c, min(r["since"] for r in live["running"]))
            names = [f"{c['name']}:{r['firework']}" for r in live["running"]]
            started = lpad.fireworks.count_documents(
                {**campaign_query(c), "state": "READY", "name": {"$in": names}}
            )
            if started:
                states = row["states"]
                states["READY"] -= started
                states["RUNNING"] = states.get("RUNNING", 0) + started
                row["states"] = {k: v for k, v in states.items() if v}
        out.append(row)
    return out


__all__ = ["screen", "run", "status", "get_launchpad", "save_store"]
