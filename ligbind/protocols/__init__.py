"""Named calculation protocols: YAML presets in this folder, merged with user overrides.

Settings merge in this order: preset YAML → user overrides (nested dicts merge key by key).
The resolved dictionary is what every stored result records.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from typing import Any

import yaml

from ligbind.errors import LigbindError


def available_protocols() -> list[str]:
    """Names of the shipped presets."""
    files = resources.files(__package__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with ``override`` merged in key by key (nested dicts merge)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Sections whose keys are free (INCAR tags, POTCAR per element, GPAW sub-dictionaries): anything goes there.
OPEN_SECTIONS = {"incar", "slab_incar", "potcars", "convergence", "mixer", "occupations", "overrides"}
RUNTIME_KEYS = {"dry_run"}  # top-level flags that are not in the presets


def check_overrides(preset: dict[str, Any], overrides: dict[str, Any], name: str = "", where: str = "") -> None:
    """Refuse override keys the preset does not have (a misspelt key would silently change nothing)."""
    name = name or preset.get("name", "?")
    for key, value in overrides.items():
        path = f"{where}.{key}" if where else key
        if key not in preset and not (not where and key in RUNTIME_KEYS):
            raise LigbindError(f"unknown protocol setting '{path}' for protocol '{name}'")
        if isinstance(value, dict) and isinstance(preset[key], dict) and key not in OPEN_SECTIONS:
            check_overrides(preset[key], value, name, path)


def load_protocol(name: str | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve a protocol preset by name (or pass a resolved dict through) and merge overrides.

    Parameters
    ----------
    name
        Preset name such as ``"ml-screen"``, or an already resolved protocol dictionary.
    overrides
        Nested settings that replace the preset's values.

    Raises
    ------
    LigbindError
        If the preset does not exist.
    """
    if isinstance(name, dict):
        preset = name
    else:
        if name not in available_protocols():
            raise LigbindError(f"unknown protocol '{name}' (available: {', '.join(available_protocols())})")
        text = resources.files(__package__).joinpath(f"{name}.yaml").read_text()
        preset = yaml.safe_load(text)
    if overrides:
        check_overrides(preset, overrides)
    protocol = deep_merge(preset, overrides or {})
    if overrides:
        protocol["overrides"] = deep_merge(preset.get("overrides", {}), overrides)
    return protocol


def protocol_hash(protocol: dict[str, Any]) -> str:
    """Stable hash of the resolved parameters that change energies (description text excluded)."""
    relevant = {k: v for k, v in protocol.items() if k not in ("description", "overrides", "slab", "dry_run")}
    if isinstance(relevant.get("vasp"), dict):  # how VASP is launched does not change the energy
        relevant["vasp"] = {k: v for k, v in relevant["vasp"].items() if k not in ("command", "max_errors")}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
