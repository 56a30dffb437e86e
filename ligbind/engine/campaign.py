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
from ligbind.builders.termination import check_mode_for_surface, parse_termination
from ligbind.engine.schema import CampaignSpec, check_campaign_name, check_ligand_label, parse_campaign
from ligbind.errors import LigbindError
from ligbind.io import write_text_atomic
from ligbind.jobs import Result
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

CAMPAIGN_KEYS = set(CampaignSpec.model_fields)  # the schema (ligbind.engine.schema) is the reference
RESULTS_ROOT = Path("results")
RUNS_ROOT = Path("runs")


# ---------------------------------------------------------------------------------------------- parsing
def _ligand_spec(item: Any, default_mode: str, truncate: int | None, surface: str = "PbX2") -> dict[str, Any]:
    """Resolve one ``ligands:`` item (a library name or a mapping already checked by the schema); ``surface``
    (PbX2 or AX) decides which modes it can bind in."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not ({"name", "smiles", "ligand"} & item.keys()):
        raise LigbindError(f"bad ligand entry {item!r}: give a library name or {{smiles: ..., name: ...}}")
    mode = item.get("mode") or default_mode
    if mode not in ("neutral", "exchange"):
        raise LigbindError(
            f"unknown binding mode '{mode}' for ligand {item.get('name') or item.get('smiles')}"
        )
    if "smiles" in item:  # a label that is a library name is refused (it would hide the library entry)
        entry = resolve_ligand(item.get("name"), smiles=item["smiles"])
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
    if surface == "PbX2" and mode == "exchange" and not entry.exchange:
        raise LigbindError(f"ligand '{name}' has no exchange anion: use mode neutral")
    check_mode_for_surface(entry, mode, surface)  # AX: A-site exchange of ammonium salts only
    try:
        check_ligand_label(name)
    except ValueError as exc:
        raise LigbindError(str(exc)) from None
    return {"name": name, "smiles": entry.smiles, "mode": mode, "entry": _entry_dict(entry, name)}


def _entry_dict(entry: LigandEntry, name: str) -> dict[str, Any]:
    d = dict(entry.__dict__)
    d["name"] = name
    return d


def entry_from_spec(spec: dict[str, Any]) -> LigandEntry:
    """The LigandEntry stored (resolved) in a campaign's ligand spec."""
    return LigandEntry(**spec["entry"])


def _read_yaml(path: Path) -> Any:
    """The parsed campaign file; duplicate keys, bad YAML, binary or unreadable files refused in one line."""
    from ligbind.builders.library import _UniqueKeyLoader
    from ligbind.io import check_input_file

    path = check_input_file(path, "campaign file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LigbindError(f"campaign {path} is not a text (UTF-8) file") from None
    except OSError as exc:
        raise LigbindError(f"cannot read campaign {path}: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader refusing duplicate keys)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise LigbindError(f"campaign {path} is not valid YAML{where}") from None
    except LigbindError as exc:  # a duplicate key
        raise LigbindError(f"campaign {path}: {exc}") from None
    except TypeError:  # a key that is itself a list or a mapping (YAML "? [a, b]")
        raise LigbindError(f"campaign {path}: keys must be names (strings)") from None


OWN_KEYS = ("name", "store", "workdir")  # a campaign's identity and places: never taken from what it extends


def _merged(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``child`` laid over it: mappings merge key by key, anything else (a list, a value, null)
    replaces what the base had."""
    out = dict(base)
    for key, value in child.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_maps else value
    return out


def _read_campaign_yaml(path: Path, _chain: tuple[Path, ...] = ()) -> Any:
    """The parsed campaign file with its ``extends:`` resolved.

    ``extends: other.yaml`` (relative to this file) takes every setting of that campaign except its name,
    store and working directory (:data:`OWN_KEYS`); this file's keys are laid over them (:func:`_merged`).
    A campaign may extend one that extends another; a loop is refused.
    """
    raw = _read_yaml(path)
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    raw = dict(raw)
    parent = raw.pop("extends")
    if not isinstance(parent, str) or not parent.strip():
        raise LigbindError(f"campaign {path}: extends: give the path of the campaign YAML it extends")
    parent_path = path.parent / parent
    chain = (*_chain, path.resolve())
    if parent_path.resolve() in chain:
        loop = " -> ".join(str(p) for p in (*chain, parent_path.resolve()))
        raise LigbindError(f"campaign {path}: extends: a loop ({loop})")
    try:
        base = _read_campaign_yaml(parent_path, chain)
    except LigbindError as exc:
        raise LigbindError(f"campaign {path}: extends: {exc}") from None
    if not isinstance(base, dict):
        raise LigbindError(f"campaign {path}: extends: {parent_path} is not a YAML mapping of campaign keys")
    return _merged({k: v for k, v in base.items() if k not in OWN_KEYS}, raw)


def _canonical(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else smiles


def load_campaign(path: str | Path, *, workdir: str | Path | None = None) -> dict[str, Any]:
    """Parse and validate a campaign YAML into a resolved, self-contained dict; nothing is written.

    The schema (:class:`ligbind.engine.schema.CampaignSpec`) checks types, units and ranges and refuses unknown
    keys at every depth (after ``extends:`` is resolved, :func:`_read_campaign_yaml`); then the protocol (with
    its overrides), every ligand (library or SMILES; closed shell unless the protocol treats spin; a given charge
    must match), duplicate molecules, the ``compute`` references, the slab settings and the workdir/store paths
    are checked.

    Raises
    ------
    LigbindError
        One line ``campaign FILE: key.path: problem``.
    """
    import warnings

    from ligbind.io import check_database_file, check_output_dir
    from ligbind.validation import check_molecule, check_slab

    path = Path(path)
    spec = parse_campaign(_read_campaign_yaml(path), path)

    def refuse(key: str, problem: Any) -> LigbindError:
        return LigbindError(f"campaign {path}: {key}: {problem}")

    name = spec.name
    if name is None:
        try:
            name = check_campaign_name(path.stem)
        except ValueError as exc:
            raise refuse("name", f"{exc} (taken from the file name: set name: in the campaign)") from None
    try:
        load_protocol(spec.protocol)
    except LigbindError as exc:
        raise refuse("protocol", exc) from None
    try:
        protocol = load_protocol(spec.protocol, spec.overrides)
    except LigbindError as exc:
        raise refuse("overrides", exc) from None
    slab = {**protocol.get("slab", {}), **spec.slab.model_dump(exclude_none=True)}
    surface = _surface(spec, slab, refuse)

    specs, seen = [], {}
    for i, item in enumerate(spec.ligands):
        raw_item = item.model_dump(exclude_none=True)
        charge = raw_item.pop("charge", None)
        try:
            resolved = _ligand_spec(raw_item, spec.mode, spec.truncate_tails, surface)
            check_molecule(
                entry_from_spec(resolved), protocol, charge=charge, where=f"ligand '{resolved['name']}'"
            )
        except LigbindError as exc:
            raise refuse(f"ligands.{i}", exc) from None
        same_name = next((j for j, s in enumerate(specs) if s["name"] == resolved["name"]), None)
        if same_name is not None:
            raise refuse(
                f"ligands.{i}", f"ligand '{resolved['name']}' listed twice (also ligands.{same_name})"
            )
        molecule = (_canonical(resolved["smiles"]), resolved["mode"])
        if molecule in seen:
            j = seen[molecule]
            raise refuse(
                f"ligands.{i}",
                f"'{resolved['name']}' is the same molecule as '{specs[j]['name']}' (ligands.{j}) in the same "
                f"mode ({resolved['mode']}): list it once",
            )
        seen[molecule] = i
        specs.append(resolved)
    names = [s["name"] for s in specs]

    pairs = [list(p) for p in spec.compute.coadsorption]
    for k, pair in enumerate(pairs):
        if any(p not in names for p in pair):
            raise refuse(
                f"compute.coadsorption.{k}",
                f"coadsorption pair {pair} must name two of the campaign's ligands ({', '.join(names)})",
            )
    frenkel = spec.compute.frenkel
    for k, lig in enumerate(frenkel.ligands):
        if lig not in names:
            raise refuse(
                f"compute.frenkel.ligands.{k}", f"Frenkel ligand '{lig}' is not among the campaign's ligands"
            )

    root = Path(workdir) if workdir else Path(spec.workdir or RUNS_ROOT / name)
    try:
        check_output_dir(root, "workdir")
    except LigbindError as exc:
        raise refuse("workdir", exc) from None
    from ligbind.engine.size_auto import resolve_auto_size  # slab size: auto

    try:
        slab = resolve_auto_size(spec.material, spec.phase, slab, specs, spec.seed, root)
    except LigbindError as exc:
        raise refuse("slab.size", exc) from None
    store = Path(spec.store) if spec.store else root / "ligbind.db"
    try:
        check_database_file(store, must_exist=False, what="results store")
    except LigbindError as exc:
        raise refuse("store", exc) from None
    from ligbind.engine.defect_steps import check_defect_campaign, defect_compute

    campaign = {
        "name": name,
        "file": str(path.resolve()),
        "description": spec.description,
        "material": spec.material,
        "phase": spec.phase,
        "slab": slab,
        "protocol": protocol,
        "ligands": specs,
        "configs": spec.configs,
        "seed": spec.seed,
        "compute": {
            "binding": spec.compute.binding,
            "coadsorption": pairs,
            "frenkel": _frenkel_settings(spec.compute),
            "passivation": spec.compute.passivation.model_dump() if spec.compute.passivation else None,
            "complexes": _complexes_settings(spec, path, specs),
            **defect_compute(spec.compute, names, refuse),  # vacancy, migration (engine/defect_steps.py)
        },
        "verify": _verify_settings(spec, path),
        "ligbind_plan": PLAN_VERSION,
        "workdir": str(root.resolve()),
        "store": str(store.resolve()),
    }
    try:  # material / phase / slab settings, and the structure check every input slab passes
        for message in check_slab(campaign_slab(campaign), "the campaign's slab"):
            warnings.warn(message, stacklevel=2)
    except LigbindError as exc:
        raise refuse("slab", exc) from None
    if campaign["compute"]["passivation"]:  # the treatment must fit on this slab (e.g. substitute needs Cs)
        from ligbind.engine.passivation_steps import check_campaign_passivation

        try:
            check_campaign_passivation(campaign)
        except LigbindError as exc:
            raise refuse("compute.passivation", exc) from None
    from ligbind.engine.coverage_steps import resolve_coverage  # compute.coverage, compute.treatments

    campaign["compute"].update(resolve_coverage(spec.compute, names, campaign, refuse))
    check_defect_campaign(campaign, refuse)
    return campaign


def _frenkel_settings(compute) -> dict[str, Any]:
    """The resolved ``compute.frenkel``; ``host_refinements`` only where a Frenkel pair is computed (bare,
    ligands, the passivated slab, treatments): a campaign without one keeps the settings it was screened with."""
    f = compute.frenkel
    out = {"bare": f.bare, "ligands": list(f.ligands), "pairs": f.pairs}
    if f.bare or f.ligands or (compute.passivation and compute.passivation.frenkel) or compute.treatments:
        out["host_refinements"] = f.host_refinements
    return out


def _surface(spec: CampaignSpec, slab: dict[str, Any], refuse) -> str:
    """PbX2 or AX, from ``slab.termination``; an AX surface refuses what needs surface Pb (coadsorption,
    Frenkel pairs)."""
    try:
        surface = parse_termination(slab.get("termination", "PbX2"), spec.material)
    except LigbindError as exc:
        raise refuse("slab.termination", exc) from None
    compute = spec.compute
    if surface == "AX" and (compute.coadsorption or compute.frenkel.bare or compute.frenkel.ligands):
        raise refuse(
            "compute.coadsorption" if compute.coadsorption else "compute.frenkel",
            "needs a PbX2-terminated slab (slab.termination is AX: only binding by A-site exchange)",
        )
    return surface


def _complexes_settings(spec: CampaignSpec, path: Path, specs: list[dict[str, Any]]) -> dict[str, Any] | None:
    from ligbind.engine.complexes_steps import complexes_settings

    return complexes_settings(spec, path, specs)


def verified_ligands(c: dict[str, Any]) -> list[str]:
    """The ligands a campaign's ``verify:`` recomputes with DFT: every one (neutral and exchange mode)."""
    return [s["name"] for s in c["ligands"]] if c.get("verify") else []


def _verify_settings(spec: CampaignSpec, path: Path) -> dict[str, Any] | None:
    """The resolved DFT protocol and settings of ``verify:`` (refused unless DFT)."""
    if spec.verify is None:
        return None
    try:
        load_protocol(spec.verify.protocol)
    except LigbindError as exc:
        raise LigbindError(f"campaign {path}: verify.protocol: {exc}") from None
    try:
        dft = load_protocol(spec.verify.protocol, spec.verify.overrides)
    except LigbindError as exc:
        raise LigbindError(f"campaign {path}: verify.overrides: {exc}") from None
    if not dft["is_dft"]:
        raise LigbindError(f"campaign {path}: verify.protocol '{dft['name']}' is not a DFT protocol")
    out = {"protocol": dft, "top_k": spec.verify.top_k, "threshold": spec.verify.threshold}
    # reserves past the screen's configurations can never run: left out, they leave the settings hash (and a
    # campaign that DFT-relaxes every configuration, as the calibration sets do) as it was before reserves
    reserve = min(spec.verify.reserve, max(spec.configs - spec.verify.top_k, 0))
    if reserve:
        out["reserve"] = reserve
    return out


def verified_count(c: dict[str, Any]) -> int:
    """How many verify-config steps a verified ligand has: ``top_k``, then its reserves (run only when needed)."""
    return c["verify"]["top_k"] + c["verify"].get("reserve", 0)


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
        termination=s.get("termination", "PbX2"),
    )


def ligand_spec(c: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in c["ligands"] if s["name"] == name)


KeyMap = dict[str, str]
"""Results-store keys passed down the workflow: step name ("slab", "ligand/NSA", "config/NSA/0", ...) → key."""


def _passed(c: dict[str, Any], keys: KeyMap, name: str) -> Result:
    """The stored result of step ``name``, found by the key its Firework passed down (never recomputed)."""
    from ligbind.jobs import result_from_row

    key = keys.get(name)
    row = _store(c).get(key) if key else None
    if row is None:
        raise LigbindError(
            f"the {name} step has not finished (or failed): nothing was passed down to build on"
        )
    return result_from_row(row, c["protocol"])


def _byproduct(spec: dict[str, Any], slab: Atoms | None = None) -> LigandEntry:
    from ligbind.recipes import byproduct_entry

    return byproduct_entry(entry_from_spec(spec), slab)


# ------------------------------------------------------------------------------------------ calculations
def step_slab(c: dict[str, Any], keys: KeyMap) -> Result:
    """Relax the bare slab (once per protocol, however many ligands need it)."""
    from ligbind.recipes import relax_slab

    return relax_slab(campaign_slab(c), c["protocol"], _store(c), _calcdir(c)).require_converged(
        "slab relaxation"
    )


def step_ligand(c: dict[str, Any], keys: KeyMap, name: str, byproduct: bool = False) -> Result:
    """Relax an isolated ligand (or, with ``byproduct``, the exchange byproduct)."""
    from ligbind.recipes import relax_ligand

    spec = ligand_spec(c, name)
    entry = _byproduct(spec, campaign_slab(c)) if byproduct else entry_from_spec(spec)
    return relax_ligand(entry, campaign_slab(c), c["protocol"], _store(c), _calcdir(c))


def placed_configurations(c: dict[str, Any], name: str, slab: Result, ligand: Result) -> list[Atoms]:
    """Candidate configurations of ``name`` on the relaxed slab, from the relaxed ligand.

    Cached on disk as an ASE trajectory (exact float64 positions, so every step that reads them computes the
    same store keys), named after the slab and ligand keys, so other settings never read stale placements.
    """
    import hashlib

    from ase.io import Trajectory

    from ligbind.builders.placement import place_ligand

    spec = ligand_spec(c, name)
    tag = hashlib.sha256(f"{slab.key}|{ligand.key}|{spec['mode']}|{c['configs']}|{c['seed']}".encode())
    cache = Path(c["workdir"]) / "placed" / f"{name}-{tag.hexdigest()[:16]}.traj"
    if cache.exists():
        return list(Trajectory(str(cache)))
    placed = place_ligand(
        slab.atoms,
        entry_from_spec(spec),
        n_configs=c["configs"],
        mode=spec["mode"],
        seed=c["seed"],
        relaxed_ligand=ligand.atoms if spec["mode"] == "neutral" else None,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.partial")  # parallel workers may place the same ligand
    with Trajectory(str(tmp), "w") as traj:
        for atoms in placed:
            traj.write(atoms)
    tmp.replace(cache)
    return list(Trajectory(str(cache)))


def step_config(c: dict[str, Any], keys: KeyMap, name: str, k: int) -> Result:
    """Relax configuration ``k`` of ``name`` on the relaxed slab."""
    from ligbind.recipes import relax_configuration

    slab = _passed(c, keys, "slab").require_converged("slab relaxation")
    placed = placed_configurations(c, name, slab, _passed(c, keys, f"ligand/{name}"))
    if k >= len(placed):
        raise LigbindError(f"{name}: only {len(placed)} distinct configurations could be placed")
    return relax_configuration(placed[k], slab.atoms, c["protocol"], _store(c), _calcdir(c))


def _configs(c: dict[str, Any], keys: KeyMap, name: str) -> tuple[list[Result], list[int]]:
    """The relaxed configurations of ``name`` passed down, and the indices of those that failed."""
    configs, missing = [], []
    for k in range(c["configs"]):
        key = keys.get(f"config/{name}/{k}")
        (configs.append(_passed(c, keys, f"config/{name}/{k}")) if key else missing.append(k))
    return configs, missing


def step_reference(c: dict[str, Any], keys: KeyMap) -> Result:
    """The slab reference of every ligand's Eb: the relaxed slab, or the bare framework of a complex that
    changed basin, relaxed, when that is lower (:func:`ligbind.recipes.lowest_slab`)."""
    from ligbind.recipes import lowest_slab

    configs = [r for spec in c["ligands"] for r in _configs(c, keys, spec["name"])[0]]
    return lowest_slab(_passed(c, keys, "slab"), configs, c["protocol"], _store(c), _calcdir(c))


# -------------------------------------------------------------------------------------------- analyses
def step_binding(c: dict[str, Any], keys: KeyMap, name: str):
    """Eb of ``name`` from the results passed down (configurations that failed are reported as failed), against
    the campaign's slab reference (``basin-changed`` judged as :func:`ligbind.recipes.against_reference` does)."""
    from ligbind.analysis.binding import analyse_binding
    from ligbind.recipes import against_reference

    spec = ligand_spec(c, name)
    configs, missing = _configs(c, keys, name)
    reference = _passed(c, keys, "reference")
    configs = against_reference(configs, reference, c["protocol"], _store(c))
    return analyse_binding(
        entry_from_spec(spec),
        spec["mode"],
        c["protocol"],
        reference,
        _passed(c, keys, f"ligand/{name}"),
        configs,
        _passed(c, keys, f"byproduct/{name}") if spec["mode"] == "exchange" else None,
        missing=missing,
        bsse=_bsse(c, keys, name, verify=False),
        store=_store(c),
        campaign=c["name"],
    )


def _binding(c: dict[str, Any], keys: KeyMap, name: str):
    from ligbind.analysis.binding import load_binding

    key = keys.get(f"binding/{name}")
    if key is None:
        raise LigbindError(f"the binding analysis of {name} has not finished (or failed)")
    return load_binding(_store(c), key)


def _best_complex(c: dict[str, Any], keys: KeyMap, name: str) -> Result:
    from ligbind.recipes import stored_complex

    return stored_complex(_store(c), _binding(c, keys, name), c["protocol"])


def step_coadsorption(c: dict[str, Any], keys: KeyMap, a: str, b: str):
    """Eb(A+B) and ΔE_inter: B placed on A's best complex (:mod:`ligbind.analysis.coadsorption`)."""
    from ligbind.analysis.coadsorption import analyse_coadsorption
    from ligbind.jobs import result_from_row
    from ligbind.recipes import coadsorption_configurations, coadsorption_label, relax_configuration

    store, protocol = _store(c), c["protocol"]
    bind_a, bind_b = _binding(c, keys, a), _binding(c, keys, b)
    slab = _passed(c, keys, "reference")  # the slab Eb(A) and Eb(B) were computed against
    host = _best_complex(c, keys, a)
    configs = []
    for atoms in coadsorption_configurations(
        host, entry_from_spec(ligand_spec(c, b)), min(2, c["configs"]), c["seed"]
    ):
        label = coadsorption_label(a, b, atoms)
        configs.append(relax_configuration(atoms, slab.atoms, protocol, store, _calcdir(c), label=label))
    lig_a, lig_b = (result_from_row(store.get(x.ligand_key), protocol) for x in (bind_a, bind_b))
    return analyse_coadsorption(
        bind_a, bind_b, slab, lig_a, lig_b, configs, protocol, store=store, campaign=c["name"]
    )


def frenkel_host(c: dict[str, Any], keys: KeyMap, ligand: str | None) -> Result:
    """Relaxed host of a Frenkel analysis: the bare slab or the best ligand@slab complex."""
    return _passed(c, keys, "slab") if ligand is None else _best_complex(c, keys, ligand)


def step_frenkel_pair(c: dict[str, Any], keys: KeyMap, ligand: str | None, k: int) -> Result:
    """Relax Frenkel pair ``k`` on the bare slab (ligand None) or on the ligand's best complex."""
    from ligbind.jobs import relax
    from ligbind.recipes import frenkel_structures

    pairs = frenkel_structures(
        frenkel_host(c, keys, ligand), c["compute"]["frenkel"]["pairs"], ligand or "bare"
    )
    if k >= len(pairs):
        raise LigbindError(f"only {len(pairs)} Frenkel pairs fit on this surface")
    return relax(pairs[k], c["protocol"], store=_store(c), workdir=_calcdir(c))


def step_frenkel(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """E_F (lowest usable pair) on the bare slab or with ``ligand``; ΔE_F against the bare slab's row."""
    from ligbind.analysis.frenkel import frenkel_key, load_frenkel
    from ligbind.recipes import frenkel_on_lowest_host

    tag = ligand or "bare"
    pairs = []
    for k in range(c["compute"]["frenkel"]["pairs"]):
        name = f"frenkel-pair/{tag}/{k}"
        r = _passed(c, keys, name) if keys.get(name) else None
        pairs.append((r.atoms.info if r is not None else {"pair": k}, r))
    store = _store(c)
    bare = load_frenkel(store, frenkel_key(_passed(c, keys, "slab"), None)) if ligand else None
    return frenkel_on_lowest_host(
        frenkel_host(c, keys, ligand), pairs, c["protocol"], store, _calcdir(c),
        refinements=host_refinements(c), ligand=ligand, bare=bare, campaign=c["name"],
    )  # fmt: skip


def host_refinements(c: dict[str, Any], what: str = "frenkel") -> int:
    """The campaign's compute.<what>.host_refinements, ``what`` frenkel or vacancy (a campaign saved before it
    existed: none)."""
    return int(c["compute"][what].get("host_refinements", 0))


# ---------------------------------------------------------------------------------------- verification
def step_verify_slab(c: dict[str, Any], keys: KeyMap) -> Result:
    """Relax the bare slab with the verification (DFT) protocol."""
    from ligbind.recipes import relax_slab

    dft = c["verify"]["protocol"]
    return relax_slab(campaign_slab(c), dft, _store(c), _calcdir(c)).require_converged("DFT slab relaxation")


def step_verify_ligand(c: dict[str, Any], keys: KeyMap, name: str, byproduct: bool = False) -> Result:
    """Relax the isolated ligand (or, with ``byproduct``, the exchange byproduct) with DFT, starting from its
    screen geometry."""
    from ligbind.jobs import relax
    from ligbind.recipes import dft_ligand_structure

    dft, spec, slab = c["verify"]["protocol"], ligand_spec(c, name), campaign_slab(c)
    entry = _byproduct(spec, slab) if byproduct else entry_from_spec(spec)
    screen = _passed(c, keys, f"{'byproduct' if byproduct else 'ligand'}/{name}")
    mol = dft_ligand_structure(screen, entry, slab, dft)
    return relax(mol, dft, store=_store(c), workdir=_calcdir(c))


def step_verify_config(c: dict[str, Any], keys: KeyMap, name: str, k: int) -> Result | None:
    """DFT relaxation of the screen's k-th best configuration on the DFT slab, the DFT ligand's geometry in the
    screen's pose (None: fewer were usable). A campaign planned before verify-config waited for verify-ligand
    keeps the screen's molecule geometry. A reserve (k ≥ top_k) runs only when fewer than top_k of the
    configurations verified before it are usable (:func:`ligbind.recipes.reserve_needed`); else None."""
    from ligbind.recipes import relax_verification_configuration, reserve_needed, verification_configuration

    dft, store, top_k = c["verify"]["protocol"], _store(c), c["verify"]["top_k"]
    if k >= top_k:
        steps = [f"verify-config/{name}/{j}" for j in range(k)]
        if not reserve_needed([_passed(c, keys, s) if keys.get(s) else None for s in steps], top_k):
            return None
    dft_slab = _passed(c, keys, "verify-slab")
    dft_ligand = _passed(c, keys, f"verify-ligand/{name}") if keys.get(f"verify-ligand/{name}") else None
    screen = _binding(c, keys, name)
    atoms = verification_configuration(store, screen, k, verified_count(c), dft_slab, dft_ligand)
    if atoms is None:
        return None
    label = f"verify:{name}:{atoms.info['config']}"
    return relax_verification_configuration(atoms, dft_slab, dft, store, _calcdir(c), label)


def _verified_configs(c: dict[str, Any], keys: KeyMap, names: list[str]) -> list[Result]:
    steps = [f"verify-config/{name}/{k}" for name in names for k in range(verified_count(c))]
    return [_passed(c, keys, s) for s in steps if keys.get(s)]


def step_verify_reference(c: dict[str, Any], keys: KeyMap) -> Result:
    """The DFT slab reference: the verification slab, or the bare framework of a verified complex that changed
    basin, relaxed, when that is lower (:func:`ligbind.recipes.lowest_slab`); shared by every verified ligand."""
    from ligbind.recipes import lowest_slab

    configs = _verified_configs(c, keys, verified_ligands(c))
    dft_slab = _passed(c, keys, "verify-slab")
    return lowest_slab(dft_slab, configs, c["verify"]["protocol"], _store(c), _calcdir(c))


def wants_counterpoise(protocol: dict[str, Any]) -> bool:
    """Whether Eb with a resolved protocol gets the counterpoise correction (``gpaw.counterpoise``, LCAO)."""
    from ligbind.calculators import backend_of

    return backend_of(protocol).wants_counterpoise(protocol)


def _counterpoise_steps(c: dict[str, Any], verify: bool) -> tuple[dict[str, Any], str, str, int]:
    """Protocol, configuration and reference step names, and configuration count, of the screen or the
    verification."""
    if verify:
        return c["verify"]["protocol"], "verify-config", "verify-reference", verified_count(c)
    return c["protocol"], "config", "reference", c["configs"]


def step_counterpoise(c: dict[str, Any], keys: KeyMap, name: str, k: int, verify: bool):
    """Counterpoise BSSE of the k-th (verified) configuration of ``name`` (None: that configuration was not
    relaxed, did not converge, or is flagged against the slab reference, so it gives no Eb)."""
    from ligbind.jobs import counterpoise
    from ligbind.recipes import against_reference

    protocol, config_step, reference_step, _ = _counterpoise_steps(c, verify)
    step = f"{config_step}/{name}/{k}"
    if not keys.get(step):
        return None
    store = _store(c)
    config = against_reference([_passed(c, keys, step)], _passed(c, keys, reference_step), protocol, store)[0]
    if not config.converged or config.anomalies:
        return None
    return counterpoise(config, protocol, store=store, workdir=_calcdir(c))


def _bsse(c: dict[str, Any], keys: KeyMap, name: str, verify: bool) -> dict[str, float] | None:
    """BSSE by configuration key from the ligand's counterpoise steps (None: the protocol does not ask)."""
    protocol, _, _, n = _counterpoise_steps(c, verify)
    if not wants_counterpoise(protocol) or ligand_spec(c, name)["mode"] != "neutral":
        return None
    step = "verify-counterpoise" if verify else "counterpoise"
    return stored_bsse(_store(c), [keys.get(f"{step}/{name}/{k}") for k in range(n)])


def stored_bsse(store: ResultStore, keys: list[str | None]) -> dict[str, float]:
    """BSSE by complex key of the counterpoise rows that counterpoise steps passed down (missing ones left out:
    the analysis flags them)."""
    rows = (store.get(key) for key in keys if key)
    return {row.complex_key: float(row.bsse) for row in rows if row is not None}


def step_verify(c: dict[str, Any], keys: KeyMap, name: str):
    """Eb from DFT terms only for ``name``, side by side with the screen's (:mod:`ligbind.analysis.verification`)."""
    from ligbind.analysis.binding import analyse_binding
    from ligbind.analysis.verification import analyse_verification
    from ligbind.recipes import against_reference

    store, dft = _store(c), c["verify"]["protocol"]
    spec = ligand_spec(c, name)
    screen = _binding(c, keys, name)
    reference = _passed(c, keys, "verify-reference")
    configs = against_reference(_verified_configs(c, keys, [name]), reference, dft, store)
    dft_outcome = None
    if configs:
        dft_outcome = analyse_binding(
            entry_from_spec(spec),
            spec["mode"],
            dft,
            reference,
            _passed(c, keys, f"verify-ligand/{name}"),
            configs,
            _passed(c, keys, f"verify-byproduct/{name}") if spec["mode"] == "exchange" else None,
            bsse=_bsse(c, keys, name, verify=True),
            store=store,
            campaign=c["name"],
        )
    return analyse_verification(
        screen, dft_outcome, threshold=c["verify"]["threshold"], store=store, campaign=c["name"]
    )


DEFECT_RESERVE = 1
"""Verified defects (a vacancy site, a Frenkel pair): how many of the screen's next usable ones DFT relaxes in
place of one that DFT left unusable (the vacancy refilled, the pair recombined), as ``verify.reserve`` does for
configurations."""


def usable_in_order(items: list[dict[str, Any]], energy: str, what: str) -> list[dict[str, Any]]:
    """The converged, unflagged items of a screen's analysis (sites, pairs), lowest first: the first is the one
    DFT verifies, the next :data:`DEFECT_RESERVE` stand in for it if DFT leaves it unusable."""
    usable = [x for x in items if x.get(energy) is not None and not x.get("flags")]
    if not usable:
        raise LigbindError(f"the screen found no usable {what} to verify")
    return sorted(usable, key=lambda x: x[energy])[: 1 + DEFECT_RESERVE]


def dft_host(c: dict[str, Any], keys: KeyMap, ligand: str | None) -> Result:
    """The DFT-relaxed host of a verified defect: the verification slab, the ligand's best verified complex, or
    the passivated slab relaxed with DFT."""
    from ligbind.analysis.binding import load_binding
    from ligbind.engine.defect_steps import PASSIVATED
    from ligbind.recipes import stored_complex

    dft, store = c["verify"]["protocol"], _store(c)
    if ligand is None:
        return _passed(c, keys, "verify-reference")
    if ligand == PASSIVATED:
        return _passed(c, keys, "verify-passivated")
    row = store.get(keys.get(f"verify/{ligand}", ""))
    dft_key = row.data["outcome"].get("dft_key") if row is not None else None
    if not dft_key:
        raise LigbindError(f"{ligand} has no DFT-verified complex to put a defect on")
    return stored_complex(store, load_binding(store, dft_key), dft)


def step_verify_frenkel(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """E_F with the verification (DFT) protocol: the screen's lowest usable pair (the next one if DFT leaves
    it unusable), its ML-relaxed geometry relaxed again with DFT, against the DFT host (ΔE_F against the DFT
    bare row)."""
    from ligbind.analysis.frenkel import load_frenkel

    tag, store = ligand or "bare", _store(c)
    bare = (
        load_frenkel(store, keys["verify-frenkel/bare"])
        if ligand and keys.get("verify-frenkel/bare")
        else None
    )
    screen = load_frenkel(store, keys.get(f"frenkel/{tag}", ""))
    return verify_frenkel(c, screen, dft_host(c, keys, ligand), ligand, bare)


def verify_frenkel(c: dict[str, Any], screen, host: Result, ligand: str | None, bare):
    """The screen's lowest usable Frenkel pair on a host (``screen``: its FrenkelOutcome), its ML-relaxed geometry
    relaxed again with DFT and judged against the DFT ``host`` (or the lower host a pair below it leads to:
    :func:`ligbind.recipes.lower_frenkel_host`), the screen's next pair in its place if DFT left it unusable
    (:data:`DEFECT_RESERVE`); ΔE_F against ``bare`` (the DFT bare E_F)."""
    from ligbind.analysis.frenkel import evaluate_frenkel
    from ligbind.jobs import relax, result_from_row
    from ligbind.recipes import frenkel_on_lowest_host, lower_frenkel_host

    dft, tag, store, workdir = c["verify"]["protocol"], ligand or "bare", _store(c), _calcdir(c)
    tried, rounds = [], host_refinements(c)
    for pair in usable_in_order(
        screen.pairs if screen is not None else [], "ef", f"Frenkel pair on the {tag} host"
    ):
        start = result_from_row(store.get(pair["key"]), c["protocol"]).atoms
        start.calc = None
        start.info["label"] = f"verify:frenkel:{tag}:{pair['pair']}"
        tried.append((dict(start.info), relax(start, dft, store=store, workdir=workdir)))
        lowest, _ = lower_frenkel_host(host, tried, dft, store, workdir, rounds, tag)
        if evaluate_frenkel(lowest, tried, dft, built_on=host.atoms)[0] is not None:
            break  # usable with DFT; else the screen's next pair
    return frenkel_on_lowest_host(
        host, tried, dft, store, workdir, refinements=rounds, ligand=ligand, bare=bare, campaign=c["name"],
    )  # fmt: skip


def plan_host_verification(add, step: str, hosts: list[str | None], dft_slab: str) -> None:
    """``<step>/<host>`` Fireworks (verify-frenkel, -vacancy, -migration) after the screen's analysis of the host
    (``frenkel/<host>``, ``vacancy/<host>``), the DFT slab, the host's DFT relaxation (the ligand's
    verification, or ``verify-passivated``) and the bare one."""
    from ligbind.engine.defect_steps import PASSIVATED

    for host in hosts:
        tag = host or "bare"
        parents = [f"{step.removeprefix('verify-')}/{tag}", dft_slab]
        if host is not None:
            host_step = "verify-passivated" if host == PASSIVATED else f"verify/{host}"
            parents += [host_step] + ([f"{step}/bare"] if None in hosts else [])
        add(step, f"{step}/{tag}", parents, ligand=host)


def campaign_results(campaign: str | Path, outdir: str | Path | None = None) -> dict[str, Path]:
    """Write results/<campaign>/ (CSV, Markdown, PNG) from the campaign's results store."""
    from ligbind.analysis.tables import write_tables
    from ligbind.protocols import protocol_hash

    c = resolve_campaign_ref(campaign)
    if not Path(c["store"]).exists():
        raise LigbindError(f"campaign '{c['name']}' has no results store yet ({c['store']}): run it first")
    from ligbind.engine.fireworks import current_rows

    store = ResultStore.open_existing(c["store"]).restricted(current_rows(c), settings=settings_hash(c))
    outdir = Path(outdir) if outdir else RESULTS_ROOT / c["name"]
    return write_tables(
        store,
        outdir,
        campaign=c["name"],
        protocol_hash=protocol_hash(c["protocol"]),
        missing=missing_reasons(c),
        dft_protocol_hash=protocol_hash(c["verify"]["protocol"]) if c.get("verify") else None,
    )


def missing_reasons(c: dict[str, Any]) -> dict[str, str]:
    """Why each of the campaign's ligands may lack a binding row: its failed step, or 'not run yet'."""
    reasons = {spec["name"]: "not computed yet (ligbind run)" for spec in c["ligands"]}
    if c.get("_failures") is not None:
        failed = c["_failures"]
    else:
        try:
            from ligbind.engine.fireworks import campaign_failures

            failed = campaign_failures(c)
        except LigbindError:
            failed = []
    for f in failed:
        parts = f["firework"].split("/")
        if (
            len(parts) > 1
            and parts[1] in reasons
            and parts[0] in ("ligand", "byproduct", "config", "binding")
        ):
            reasons[parts[1]] = f"{f['firework']} failed: {f['error']}"
    return reasons


# The version of how campaigns are planned and analysed. Bump it when a step's parents or what an analysis
# writes change: it is a campaign setting, so a campaign screened before is refused by `ligbind run` until it
# is screened again, which gives it new Fireworks (every calculation is found in the store, every analysis is
# redone). 2: coverage and treatment rows on the campaign's slab reference (2026-12-04). 3: a Firework's id
# holds its parents' ids, analysis rows name the Firework that wrote them (2026-12-04).
PLAN_VERSION = 3

# campaign fields that name or place a campaign but do not change what it computes
NOT_SETTINGS = ("name", "file", "description", "workdir", "store")


def _science(value: Any) -> Any:
    """``value`` with every resolved protocol replaced by its hash (its run settings do not change results),
    and the analysis-only settings it has on (e.g. ``gpaw.counterpoise``: more steps, other Eb)."""
    from ligbind.protocols import analysis_settings, protocol_hash

    if isinstance(value, dict):
        if "backend" in value and "name" in value:
            extra = analysis_settings(value)
            return [protocol_hash(value), extra] if extra else protocol_hash(value)
        return {k: _science(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_science(v) for v in value]
    return value


def campaign_settings(c: dict[str, Any]) -> dict[str, Any]:
    """What a campaign computes: every resolved setting but its name, paths and run settings."""
    return {k: _science(v) for k, v in c.items() if k not in NOT_SETTINGS and not k.startswith("_")}


def _digest(value: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_hash(c: dict[str, Any]) -> str:
    """Hash of :func:`campaign_settings` without the ligand list (each ligand counts only in its own Fireworks,
    :func:`firework_hash`): the campaign's Fireworks and the tables' analysis rows carry it."""
    return _digest({k: v for k, v in campaign_settings(c).items() if k != "ligands"})


def firework_hash(c: dict[str, Any], name: str) -> str:
    """The settings a Firework's result depends on: :func:`settings_hash` and the specs of the campaign ligands
    its name refers to (``config/<ligand>/k``, ``coadsorption/<a>+<b>``), so that adding a ligand adds only
    that ligand's Fireworks while changing any other setting renews them all."""
    parts = {x for p in name.split("/")[1:] for x in (p, *p.split("+"))}
    specs = [_science(spec) for spec in c["ligands"] if spec["name"] in parts]
    return _digest([settings_hash(c), specs])


def _where_saved(c: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """A saved campaign read from ``workdir``: its workdir, and a store inside it, are there now (the directory
    may have been copied or moved since it was screened)."""
    old = Path(c["workdir"])
    if old == workdir:
        return c
    store = Path(c["store"])
    if store.is_relative_to(old):
        c["store"] = str(workdir / store.relative_to(old))
    c["workdir"] = str(workdir)
    return c


def resolve_campaign_ref(ref: str | Path) -> dict[str, Any]:
    """A campaign from a YAML path, or from its name (runs/<name>/campaign.json written by screen)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_campaign(path)
    saved = RUNS_ROOT / str(ref) / "campaign.json"
    if saved.exists():
        try:
            c = json.loads(saved.read_text())
            places_ok = isinstance(c, dict) and all(
                isinstance(c.get(k), str) for k in ("name", "workdir", "store")
            )
        except ValueError:
            places_ok = False
        if not places_ok:
            raise LigbindError(f"{saved} is not a campaign saved by `ligbind screen`: screen its YAML again")
        return _where_saved(c, saved.parent.resolve())
    shipped = Path("workflows") / f"{ref}.yaml"
    if shipped.exists():
        return load_campaign(shipped)
    raise LigbindError(f"unknown campaign '{ref}': give its YAML file or screen it first")


def saved_campaign(c: dict[str, Any]) -> dict[str, Any] | None:
    """The campaign as :func:`save_campaign` last wrote it (None before its first screen)."""
    path = Path(c["workdir"]) / "campaign.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_campaign(c: dict[str, Any]) -> Path:
    """Write the resolved campaign next to its store (what `run`, `status` and `results` read)."""
    path = Path(c["workdir"]) / "campaign.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(c, indent=1, default=str))
    return path
