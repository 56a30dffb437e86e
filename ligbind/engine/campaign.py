"""Campaigns: a YAML file (workflows/*.yaml) → a resolved, self-contained dict → calculation steps.

The steps here are engine-agnostic: each one calls the science (:mod:`ligbind.recipes`, :mod:`ligbind.jobs`)
and commits to the results store; the FireWorks adapter (:mod:`ligbind.engine.fireworks`) wraps each step in
one Firework. Every step is idempotent through the store key: running it twice computes nothing new, and the
analysis steps only *read* the store (a failed calculation is reported, never silently recomputed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from ase import Atoms

from ligbind.builders.ligands import LigandEntry, resolve_ligand, truncate_alkyl
from ligbind.builders.slab import build_slab
from ligbind.errors import LigbindError
from ligbind.jobs import Result, stored_result
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

CAMPAIGN_KEYS = {
    "name",
    "description",
    "material",
    "phase",
    "slab",
    "protocol",
    "overrides",
    "ligands",
    "mode",
    "configs",
    "truncate_tails",
    "compute",
    "workdir",
    "store",
    "seed",
}
RESULTS_ROOT = Path("results")
RUNS_ROOT = Path("runs")


# ---------------------------------------------------------------------------------------------- parsing
def _ligand_spec(item: Any, default_mode: str, truncate: int | None) -> dict[str, Any]:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not ({"name", "smiles", "ligand"} & item.keys()):
        raise LigbindError(f"bad ligand entry {item!r}: give a library name or {{smiles: ..., name: ...}}")
    mode = item.get("mode", default_mode)
    if mode not in ("neutral", "exchange"):
        raise LigbindError(
            f"unknown binding mode '{mode}' for ligand {item.get('name') or item.get('smiles')}"
        )
    if "smiles" in item:
        entry = resolve_ligand(smiles=item["smiles"])
        name = item.get("name", item["smiles"])
    elif "ligand" in item:  # a library ligand under its own label, e.g. the same ligand in another mode
        entry = resolve_ligand(item["ligand"])
        name = item.get("name", entry.name)
    else:
        entry = resolve_ligand(item["name"])
        name = entry.name
    if truncate:
        try:
            entry = truncate_alkyl(entry, truncate)
        except LigbindError:
            pass  # nothing but alkyl chains is ever cut: ligands whose far atoms are rings etc. stay whole
        name = entry.name if not ({"smiles", "ligand"} & item.keys()) else name
    if mode == "exchange" and not entry.exchange:
        raise LigbindError(f"ligand '{name}' has no exchange anion: use mode neutral")
    return {"name": name, "smiles": entry.smiles, "mode": mode, "entry": _entry_dict(entry, name)}


def _entry_dict(entry: LigandEntry, name: str) -> dict[str, Any]:
    d = dict(entry.__dict__)
    d["name"] = name
    return d


def entry_from_spec(spec: dict[str, Any]) -> LigandEntry:
    """The LigandEntry stored (resolved) in a campaign's ligand spec."""
    return LigandEntry(**spec["entry"])


def load_campaign(path: str | Path, *, workdir: str | Path | None = None) -> dict[str, Any]:
    """Parse and validate a campaign YAML into a resolved, self-contained dict.

    Raises
    ------
    LigbindError
        Bad YAML, unknown keys, unknown ligand or protocol, bad slab settings — one line naming the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise LigbindError(f"campaign file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise LigbindError(f"campaign {path} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise LigbindError(f"campaign {path} must be a YAML mapping")
    unknown = set(raw) - CAMPAIGN_KEYS
    if unknown:
        raise LigbindError(f"campaign {path}: unknown key(s) {', '.join(sorted(unknown))}")
    name = str(raw.get("name") or path.stem)
    protocol = load_protocol(raw.get("protocol", "ml-screen"), raw.get("overrides"))
    slab = {**protocol.get("slab", {}), **(raw.get("slab") or {})}
    mode = raw.get("mode", "neutral")
    ligands = raw.get("ligands") or []
    if not isinstance(ligands, list) or not ligands:
        raise LigbindError(f"campaign {path}: 'ligands' must be a non-empty list")
    specs = [_ligand_spec(item, mode, raw.get("truncate_tails")) for item in ligands]
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise LigbindError(f"campaign {path}: ligand listed twice")
    compute = raw.get("compute") or {"binding": True}
    pairs = [list(p) for p in compute.get("coadsorption", []) or []]
    for pair in pairs:
        if len(pair) != 2 or any(p not in names for p in pair):
            raise LigbindError(
                f"campaign {path}: coadsorption pair {pair} must name two of the campaign's ligands"
            )
    frenkel = compute.get("frenkel") or {}
    for lig in frenkel.get("ligands", []) or []:
        if lig not in names:
            raise LigbindError(f"campaign {path}: Frenkel ligand '{lig}' is not among the campaign's ligands")
    configs = int(raw.get("configs", 3))
    if configs < 1:
        raise LigbindError(f"campaign {path}: configs must be ≥ 1")
    root = Path(workdir) if workdir else Path(raw.get("workdir") or RUNS_ROOT / name)
    campaign = {
        "name": name,
        "file": str(path.resolve()),
        "description": raw.get("description", ""),
        "material": raw.get("material", "CsPbI3"),
        "phase": raw.get("phase"),
        "slab": slab,
        "protocol": protocol,
        "ligands": specs,
        "configs": configs,
        "seed": int(raw.get("seed", 0)),
        "compute": {
            "binding": bool(compute.get("binding", True)),
            "coadsorption": pairs,
            "frenkel": {
                "bare": bool(frenkel.get("bare", False)),
                "ligands": list(frenkel.get("ligands", []) or []),
                "pairs": int(frenkel.get("pairs", 3)),
            },
        },
        "workdir": str(root.resolve()),
        "store": str(Path(raw["store"]).resolve())
        if raw.get("store")
        else str((root / "ligbind.db").resolve()),
    }
    campaign_slab(campaign)  # validates material / phase / slab settings now, before anything is submitted
    return campaign


# ---------------------------------------------------------------------------------------------- helpers
def _store(c: dict[str, Any]) -> ResultStore:
    return ResultStore(c["store"])


def _calcdir(c: dict[str, Any]) -> Path:
    return Path(c["workdir"]) / "calcs"


def campaign_slab(c: dict[str, Any]) -> Atoms:
    """The campaign's unrelaxed slab (deterministic)."""
    s = c["slab"]
    return build_slab(
        material=c["material"],
        phase=c.get("phase"),
        size=s.get("size", (2, 2)),
        layers=int(s.get("layers", 3)),
        vacuum=float(s.get("vacuum", 12.0)),
        fix_layers=int(s.get("fix_layers", 1)),
        br_fraction=float(s.get("br_fraction", 0.0)),
        seed=int(s.get("seed", 0)),
    )


def ligand_spec(c: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in c["ligands"] if s["name"] == name)


def _ligand_structure(c, entry: LigandEntry) -> Atoms:
    from ligbind.builders.ligands import ligand_conformers
    from ligbind.recipes import ligand_cell_structure

    mol = ligand_cell_structure(ligand_conformers(entry, n_conformers=4)[0], campaign_slab(c), c["protocol"])
    mol.info.update(kind="ligand", label=f"ligand:{entry.name}", ligand=entry.name, charge=int(entry.charge))
    return mol


# ------------------------------------------------------------------------------------------ calculations
def step_slab(c: dict[str, Any]) -> Result:
    """Relax the bare slab (once per protocol, however many ligands need it)."""
    from ligbind.recipes import relax_slab

    return relax_slab(campaign_slab(c), c["protocol"], _store(c), _calcdir(c)).require_converged(
        "slab relaxation"
    )


def step_ligand(c: dict[str, Any], name: str, byproduct: bool = False) -> Result:
    """Relax an isolated ligand (or, with ``byproduct``, the exchange byproduct)."""
    from ligbind.recipes import relax_ligand

    entry = entry_from_spec(ligand_spec(c, name))
    if byproduct:
        entry = resolve_ligand(smiles=entry.exchange["byproduct"])
    return relax_ligand(entry, campaign_slab(c), c["protocol"], _store(c), _calcdir(c))


def placed_configurations(c: dict[str, Any], name: str, host: Atoms, relaxed_ligand: Atoms | None) -> list[Atoms]:
    """Candidate configurations of ``name`` on ``host`` (cached on disk: same structures in every step)."""
    from ligbind.builders.placement import place_ligand
    from ligbind.protocols import protocol_hash

    spec = ligand_spec(c, name)
    cache = Path(c["workdir"]) / "placed" / f"{name}-{spec['mode']}-{protocol_hash(c['protocol'])}.extxyz"
    if cache.exists():
        import ase.io

        return ase.io.read(cache, index=":")
    placed = place_ligand(
        host,
        entry_from_spec(spec),
        n_configs=c["configs"],
        mode=spec["mode"],
        seed=c["seed"],
        relaxed_ligand=relaxed_ligand if spec["mode"] == "neutral" else None,
    )
    import ase.io

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.partial.extxyz")  # parallel workers may place the same ligand
    ase.io.write(tmp, placed, format="extxyz")
    tmp.replace(cache)
    return placed


def _relaxed_slab(c: dict[str, Any]) -> Result:
    slab = stored_result(campaign_slab(c), c["protocol"], _store(c))
    if slab is None:
        raise LigbindError("the slab relaxation has not finished (or failed): run the slab step first")
    return slab.require_converged("slab relaxation")


def _relaxed_ligand(c: dict[str, Any], name: str) -> Result:
    lig = stored_result(_ligand_structure(c, entry_from_spec(ligand_spec(c, name))), c["protocol"], _store(c))
    if lig is None:
        raise LigbindError(f"the isolated {name} relaxation has not finished (or failed)")
    return lig


def step_config(c: dict[str, Any], name: str, k: int) -> Result:
    """Relax configuration ``k`` of ``name`` on the relaxed slab."""
    from ligbind.recipes import relax_configuration

    slab = _relaxed_slab(c)
    placed = placed_configurations(c, name, slab.atoms, _relaxed_ligand(c, name).atoms)
    if k >= len(placed):
        raise LigbindError(f"{name}: only {len(placed)} distinct configurations could be placed")
    return relax_configuration(placed[k], slab.atoms, c["protocol"], _store(c), _calcdir(c))


def step_binding(c: dict[str, Any], name: str):
    """Eb of ``name`` from what the store holds (missing configurations are reported as failed)."""
    from ligbind.recipes import analyse_binding

    store = _store(c)
    spec = ligand_spec(c, name)
    entry = entry_from_spec(spec)
    slab = _relaxed_slab(c)
    lig = _relaxed_ligand(c, name)
    byproduct = None
    if spec["mode"] == "exchange":
        byproduct = stored_result(
            _ligand_structure(c, resolve_ligand(smiles=entry.exchange["byproduct"])), c["protocol"], store
        )
        if byproduct is None:
            raise LigbindError(f"the exchange byproduct of {name} has not finished (or failed)")
    placed = placed_configurations(c, name, slab.atoms, lig.atoms)
    configs, missing = [], []
    for atoms in placed:
        pre = atoms.copy()
        pre.info["label"] = f"complex:{pre.info['ligand']}:{pre.info['mode']}:{pre.info['config']}"
        r = stored_result(pre, c["protocol"], store)
        (configs if r is not None else missing).append(r if r is not None else atoms.info["config"])
    if not configs:
        raise LigbindError(f"no configuration of {name} finished")
    out = analyse_binding(entry, spec["mode"], c["protocol"], slab, lig, configs, byproduct, store=store)
    if missing:
        out.flags = sorted(set(out.flags) | {f"failed-config-{m}" for m in missing})
        store.update(out.key, flags=",".join(out.flags))
    store.update(out.key, campaign=c["name"], configs_tried=len(placed))
    return out


def binding_best_complex(c: dict[str, Any], name: str) -> Result:
    """The relaxed complex chosen for Eb of ``name`` (from the binding row)."""
    from ligbind.jobs import result_from_row

    store = _store(c)
    rows = [r for r in store.select(kind="binding", ligand=name, protocol=c["protocol"]["name"])]
    rows = [r for r in rows if r.get("campaign") == c["name"]] or rows
    if not rows or rows[0].data["outcome"].get("best_config") is None:
        raise LigbindError(f"no usable binding configuration of {name}")
    outcome = rows[0].data["outcome"]
    best = next(cfg for cfg in outcome["configs"] if cfg["config"] == outcome["best_config"])
    return result_from_row(store.get(best["key"]), c["protocol"])


def step_coadsorption(c: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Eb(A+B) and ΔE_inter: B placed on A's best complex, lowest relaxed configuration."""
    from ligbind.analysis.energies import Term, coadsorption_energy, interaction_energy
    from ligbind.builders.placement import place_ligand
    from ligbind.jobs import relax
    from ligbind.protocols import protocol_hash

    store, protocol = _store(c), c["protocol"]
    host = binding_best_complex(c, a)
    spec_b = ligand_spec(c, b)
    placed = place_ligand(
        host.atoms,
        entry_from_spec(spec_b),
        n_configs=max(1, min(2, c["configs"])),
        mode="neutral",
        seed=c["seed"],
    )
    p = protocol_hash(protocol)
    slab = _relaxed_slab(c)
    la = stored_result(_ligand_structure(c, entry_from_spec(ligand_spec(c, a))), protocol, store)
    lb = stored_result(_ligand_structure(c, entry_from_spec(spec_b)), protocol, store)
    if la is None or lb is None:
        raise LigbindError(f"isolated {a} or {b} has not been relaxed")
    values = {}
    for atoms in placed:
        atoms.info["label"] = f"coadsorption:{a}+{b}:{atoms.info['config']}"
        r = relax(atoms, protocol, store=store, workdir=_calcdir(c))
        if r.converged:
            values[atoms.info["config"]] = coadsorption_energy(
                Term.from_atoms("AB", r.atoms, r.energy, p, True),
                Term.from_atoms("A", la.atoms, la.energy, p, False),
                Term.from_atoms("B", lb.atoms, lb.energy, p, False),
                Term.from_atoms("slab", slab.atoms, slab.energy, p, True),
            )
    if not values:
        raise LigbindError(f"no converged coadsorption configuration for {a}+{b}")
    eb_ab = min(values.values())
    eb = {row.ligand: row.get("eb") for row in store.select(kind="binding", protocol=protocol["name"])}
    inter = (
        interaction_energy(eb_ab, eb[a], eb[b]) if eb.get(a) is not None and eb.get(b) is not None else None
    )
    result = {"a": a, "b": b, "eb_ab": eb_ab, "eb_a": eb.get(a), "eb_b": eb.get(b), "delta_e_inter": inter}
    store.put(
        host.atoms,
        f"coadsorption-{host.key.split('-', 1)[1]}-{a}+{b}",
        data={"outcome": result, "protocol": protocol},
        kind="coadsorption",
        campaign=c["name"],
        protocol=protocol["name"],
        ligand=f"{a}+{b}",
        eb_ab=eb_ab,
        delta_e_inter=inter,
        status="ok",
    )
    return result


def frenkel_host(c: dict[str, Any], ligand: str | None) -> Result:
    """Relaxed host of a Frenkel analysis: the bare slab or the best ligand@slab complex."""
    return _relaxed_slab(c) if ligand is None else binding_best_complex(c, ligand)


def frenkel_structures(c: dict[str, Any], ligand: str | None) -> list[Atoms]:
    from ligbind.builders.defects import frenkel_pairs

    host = frenkel_host(c, ligand)
    return frenkel_pairs(host.atoms, max_pairs=c["compute"]["frenkel"]["pairs"])


def step_frenkel_pair(c: dict[str, Any], ligand: str | None, k: int) -> Result:
    """Relax Frenkel pair ``k`` on the bare slab (ligand None) or on the ligand's best complex."""
    from ligbind.jobs import relax

    pairs = frenkel_structures(c, ligand)
    if k >= len(pairs):
        raise LigbindError(f"only {len(pairs)} Frenkel pairs fit on this surface")
    atoms = pairs[k]
    atoms.info["label"] = f"frenkel:{ligand or 'bare'}:{k}"
    return relax(atoms, c["protocol"], store=_store(c), workdir=_calcdir(c))


def step_frenkel(c: dict[str, Any], ligand: str | None) -> dict[str, Any]:
    """E_F (lowest over the relaxed pairs) for the bare slab or with ``ligand``; ΔE_F when both exist."""
    from ligbind.analysis.energies import delta_frenkel
    from ligbind.recipes import evaluate_frenkel

    store, protocol = _store(c), c["protocol"]
    host = frenkel_host(c, ligand)
    pairs = []
    for atoms in frenkel_structures(c, ligand):
        atoms.info["label"] = f"frenkel:{ligand or 'bare'}:{atoms.info['pair']}"
        pairs.append((atoms, stored_result(atoms, protocol, store)))
    ef_min, rows = evaluate_frenkel(host, pairs, protocol)
    result = {"ligand": ligand, "ef": ef_min, "pairs": rows}
    delta = None
    if ligand is not None:
        bare = store.get(f"frenkel-{_relaxed_slab(c).key.split('-', 1)[1]}-bare")
        if bare is not None and bare.get("ef_bare") is not None and ef_min is not None:
            delta = delta_frenkel(ef_min, bare.ef_bare)
    key = f"frenkel-{host.key.split('-', 1)[1]}-{ligand or 'bare'}"
    store.put(
        host.atoms,
        key,
        data={"outcome": result, "protocol": protocol},
        kind="frenkel",
        campaign=c["name"],
        protocol=protocol["name"],
        ligand=ligand or "",
        ef_bare=ef_min if ligand is None else None,
        ef_ligand=ef_min if ligand is not None else None,
        delta_ef=delta,
        status="ok" if ef_min is not None else "no-usable-pair",
    )
    return result


def campaign_results(campaign: str | Path, outdir: str | Path | None = None) -> dict[str, Path]:
    """Write results/<campaign>/ (CSV, Markdown, PNG) from the campaign's results store."""
    from ligbind.analysis.tables import write_tables

    c = resolve_campaign_ref(campaign)
    if not Path(c["store"]).exists():
        raise LigbindError(f"campaign '{c['name']}' has no results store yet ({c['store']}): run it first")
    outdir = Path(outdir) if outdir else RESULTS_ROOT / c["name"]
    return write_tables(ResultStore(c["store"]), outdir, campaign=c["name"])


def resolve_campaign_ref(ref: str | Path) -> dict[str, Any]:
    """A campaign from a YAML path, or from its name (runs/<name>/campaign.json written by screen)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_campaign(path)
    saved = RUNS_ROOT / str(ref) / "campaign.json"
    if saved.exists():
        return json.loads(saved.read_text())
    shipped = Path("workflows") / f"{ref}.yaml"
    if shipped.exists():
        return load_campaign(shipped)
    raise LigbindError(f"unknown campaign '{ref}': give its YAML file or screen it first")


def save_campaign(c: dict[str, Any]) -> Path:
    """Write the resolved campaign next to its store (what `run`, `status` and `results` read)."""
    path = Path(c["workdir"]) / "campaign.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(c, indent=1, default=str))
    tmp.replace(path)
    return path
