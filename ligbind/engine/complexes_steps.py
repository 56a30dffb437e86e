"""Campaign part for ion–ligand complexes: ``compute: {complexes: {ion: Pb2+, protocol: gpaw-complex}}``.

The complexes need a protocol that carries a charge, so they name their own (a DFT protocol), whatever the
campaign's protocol (e.g. ml-screen) is. Steps: the ion, each free ligand, each built complex (one relaxation
each, in the complexes' protocol), then one analysis per ligand (:mod:`ligbind.analysis.complexes`), the same
functions ``ligbind complex-ion`` calls. The Fireworks are named ``complex-ion@<hash>``,
``complex-ligand@<hash>/<L>``, ``complex-config@<hash>/<L>/<k>`` and ``complexation@<hash>/<L>`` (``<hash>``: the
complexes' protocol, see :func:`step_name`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.engine.campaign import (
    KeyMap,
    _calcdir,
    _passed,
    _store,
    entry_from_spec,
    stored_bsse,
    wants_counterpoise,
)
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import load_protocol, protocol_hash


def complexes_settings(spec, path: Path, specs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The resolved ``compute.complexes`` section (ion, DFT protocol, ligands, configs), checked; None if absent.

    ``ligands`` are library names or the campaign's ligand labels (default: every campaign ligand); a charged
    ligand such as acetate or an EDTA anion may be named here even when the campaign's own protocol (an ML
    screen) could not bind it.
    """
    from ligbind.builders.complexes import parse_ion
    from ligbind.builders.library import resolve_ligand
    from ligbind.recipes.complexes import check_complex_protocol

    names = [s["name"] for s in specs]
    campaign_entries = {s["name"]: entry_from_spec(s) for s in specs}

    cx = spec.compute.complexes
    if cx is None:
        return None
    where = f"campaign {path}: compute.complexes"
    try:
        ion = parse_ion(cx.ion)
    except LigbindError as exc:
        raise LigbindError(f"{where}.ion: {exc}") from None
    try:
        protocol = load_protocol(cx.protocol, cx.overrides)
    except LigbindError as exc:
        raise LigbindError(f"{where}.protocol: {exc}") from None
    from ligbind.calculators import backend_of

    if ion.charge and not backend_of(protocol).supports_charge:
        raise LigbindError(
            f"{where}.protocol: '{protocol['name']}' ({protocol['backend']}) cannot treat the charged {ion.name}: "
            "name a DFT protocol (e.g. gpaw-complex)"
        )
    ligands = list(cx.ligands) or list(names)
    entries = {}
    for k, lig in enumerate(ligands):
        if ligands.index(lig) != k:
            raise LigbindError(f"{where}.ligands.{k}: '{lig}' is listed twice")
        try:  # the campaign's own (possibly truncated) entry, else the library's
            entry = campaign_entries[lig] if lig in campaign_entries else resolve_ligand(lig)
            check_complex_protocol(protocol, ion, entry)
        except LigbindError as exc:
            raise LigbindError(f"{where}.ligands.{k}: {exc}") from None
        entries[lig] = dict(entry.__dict__, name=lig)
    return {
        "ion": ion.name,
        "protocol": protocol,
        "ligands": ligands,
        "entries": entries,
        "configs": cx.configs,
    }


def _settings(c: dict[str, Any]) -> dict[str, Any]:
    cx = c["compute"].get("complexes")
    if not cx:
        raise LigbindError("the campaign computes no complexes (compute.complexes)")
    return cx


def _entry(c: dict[str, Any], name: str):
    from ligbind.builders.library import LigandEntry

    return LigandEntry(**_settings(c)["entries"][name])


def built_complexes(c: dict[str, Any], name: str) -> list[Atoms]:
    """The built complexes of ``name``, cached on disk (exact positions, so every step computes the same keys)."""
    from ase.io import Trajectory

    from ligbind.builders.complexes import parse_ion
    from ligbind.recipes.complexes import complex_structures

    cx = _settings(c)
    tag = hashlib.sha256(
        f"{cx['ion']}|{_entry(c, name).smiles}|{cx['configs']}|{c['seed']}|"
        f"{cx['protocol']['slab']['vacuum']}".encode()
    )
    cache = Path(c["workdir"]) / "complexes" / f"{name}-{tag.hexdigest()[:16]}.traj"
    if not cache.exists():
        built = complex_structures(
            parse_ion(cx["ion"]), _entry(c, name), cx["protocol"], cx["configs"], c["seed"]
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.partial")
        with Trajectory(str(tmp), "w") as traj:
            for atoms in built:
                traj.write(atoms)
        tmp.replace(cache)
    return list(Trajectory(str(cache)))


def step_complex_ion(c: dict[str, Any], keys: KeyMap) -> Result:
    """Relax the bare ion (a single atom) with the complexes' protocol."""
    from ligbind.builders.complexes import parse_ion
    from ligbind.recipes.complexes import relax_ion

    cx = _settings(c)
    return relax_ion(parse_ion(cx["ion"]), cx["protocol"], _store(c), _calcdir(c)).require_converged("ion")


def step_complex_ligand(c: dict[str, Any], keys: KeyMap, name: str) -> Result:
    """Relax the free ligand in its box with the complexes' protocol."""
    from ligbind.recipes.complexes import relax_free_ligand

    return relax_free_ligand(_entry(c, name), _settings(c)["protocol"], _store(c), _calcdir(c))


def step_complex_config(c: dict[str, Any], keys: KeyMap, name: str, k: int) -> Result:
    """Relax built complex ``k`` of ``name``."""
    from ligbind.recipes.complexes import relax_complex

    built = built_complexes(c, name)
    if k >= len(built):
        raise LigbindError(f"{name}: only {len(built)} distinct complexes could be built")
    result = relax_complex(built[k], _settings(c)["protocol"], _store(c), _calcdir(c))
    if result is None:
        raise LigbindError(f"complex {k} of {name}: the ion left the box (the ligand released it)")
    return result


def step_complex_counterpoise(c: dict[str, Any], keys: KeyMap, name: str, k: int):
    """Counterpoise BSSE of complex ``k`` of ``name`` (None: not relaxed, unconverged or flagged)."""
    from ligbind.jobs import result_from_row
    from ligbind.recipes.complexes import complex_counterpoise

    protocol = _settings(c)["protocol"]
    key = keys.get(step_name(c, "complex-config", name, k))
    row = _store(c).get(key) if key else None
    if row is None:
        return None
    ion = _passed(c, keys, step_name(c, "complex-ion"))
    ligand = _passed(c, keys, step_name(c, "complex-ligand", name))
    initial = built_complexes(c, name)[k]
    result = result_from_row(row, protocol)
    return complex_counterpoise(initial, result, ion, ligand, protocol, _store(c), _calcdir(c))


def step_complexation(c: dict[str, Any], keys: KeyMap, name: str):
    """ΔE of the ion with ``name`` from the results passed down (failed complexes are left out)."""
    from ligbind.analysis.complexes import analyse_complexation
    from ligbind.jobs import result_from_row

    cx = _settings(c)
    protocol = cx["protocol"]
    built = built_complexes(c, name)
    configs = []
    for k, atoms in enumerate(built):
        key = keys.get(step_name(c, "complex-config", name, k))
        row = _store(c).get(key) if key else None
        if row is not None:
            configs.append((atoms, result_from_row(row, protocol)))
        else:  # its Firework failed (e.g. the ion left the box): listed as failed, not silently dropped
            atoms.info["failure"] = "failed"
            configs.append((atoms, None))
    ion = _passed(c, keys, step_name(c, "complex-ion"))
    ligand = _passed(c, keys, step_name(c, "complex-ligand", name))
    bsse = None
    if wants_counterpoise(protocol):
        steps = [keys.get(step_name(c, "complex-counterpoise", name, k)) for k in range(len(built))]
        bsse = stored_bsse(_store(c), steps)
    return analyse_complexation(
        ion, ligand, configs, protocol, bsse=bsse, store=_store(c), campaign=c["name"]
    )


COMPLEX_CALCULATION_STEPS = frozenset(
    {"complex-ion", "complex-ligand", "complex-config", "complex-counterpoise"}
)

COMPLEX_STEPS: dict[str, Callable] = {
    "complex-ion": lambda c, keys, ligand, config, other: step_complex_ion(c, keys),
    "complex-ligand": lambda c, keys, ligand, config, other: step_complex_ligand(c, keys, ligand),
    "complex-config": lambda c, keys, ligand, config, other: step_complex_config(
        c, keys, ligand, int(config)
    ),
    "complex-counterpoise": lambda c, keys, ligand, config, other: step_complex_counterpoise(
        c, keys, ligand, int(config)
    ),
    "complexation": lambda c, keys, ligand, config, other: step_complexation(c, keys, ligand),
}


def step_name(c: dict[str, Any], step: str, ligand: str | None = None, k: int | None = None) -> str:
    """Firework name of a complexes step, tagged with the complexes' protocol hash.

    Fireworks are identified by the campaign's protocol hash; the complexes have their own protocol, so its
    hash goes into their names: new complexes settings give new Fireworks (and new store keys).
    """
    parts = [f"{step}@{protocol_hash(_settings(c)['protocol'])[:10]}", ligand, None if k is None else str(k)]
    return "/".join(p for p in parts if p is not None)


def plan_complexes(c: dict[str, Any], add: Callable) -> None:
    """Add the complexes' Fireworks through the planner's ``add(step, name, parents, allow_fizzled, **params)``."""
    cx = c["compute"].get("complexes")
    if not cx:
        return
    ion = add("complex-ion", step_name(c, "complex-ion"))
    for lig in cx["ligands"]:
        ligand = add("complex-ligand", step_name(c, "complex-ligand", lig), ligand=lig)
        configs = [
            add("complex-config", step_name(c, "complex-config", lig, k), ligand=lig, config=k)
            for k in range(cx["configs"])
        ]
        if wants_counterpoise(cx["protocol"]):  # each complex's BSSE (LCAO)
            configs += [
                add(
                    "complex-counterpoise",
                    step_name(c, "complex-counterpoise", lig, k),
                    [ion, ligand, config],
                    allow_fizzled=True,
                    ligand=lig,
                    config=k,
                )
                for k, config in enumerate(configs)
            ]
        name = step_name(c, "complexation", lig)
        add("complexation", name, [ion, ligand, *configs], allow_fizzled=True, ligand=lig)
