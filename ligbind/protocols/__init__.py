"""Named calculation protocols: YAML presets in this folder, typed by a schema, merged with user overrides.

Settings merge in this order: ``parent`` preset (if the YAML names one) → preset YAML → user overrides (nested
dicts merge key by key). The result is validated by :class:`ProtocolSchema` (plus the backend's own schema
for its section, e.g. ``gpaw:``): unknown keys are refused at every depth, numbers are checked for type and
range. The YAML presets hold every default; the code holds none.

The ``run:`` section holds run-time settings (threads, MPI cores, VASP command, dry run): they are recorded
but are not part of :func:`protocol_hash`, so changing them reuses every stored result.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from importlib import resources
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ligbind.errors import LigbindError

# Keys of the resolved protocol that do not change an energy (kept out of the hash).
NOT_HASHED = ("description", "overrides", "slab", "run", "parent")
# Backend settings that change only a bulk crystal's energy (its k-point mesh: slabs and molecules have their own):
# outside the protocol hash, so that setting them leaves every slab and molecule result of the protocol valid;
# the key of a bulk calculation holds them instead (:func:`ligbind.store.calculation_key`).
BULK_ONLY: dict[str, tuple[str, ...]] = {"gpaw": ("bulk_kpt_density",), "vasp": ("bulk_kpoints",)}
# Backend settings that change how an energy is assembled from stored calculations, not any calculation (the
# counterpoise correction adds its own single points, stored under their own keys): outside the protocol hash too.
ANALYSIS_ONLY: dict[str, tuple[str, ...]] = {"gpaw": ("counterpoise",)}
# The protocol of every command, recipe and campaign that names none: the screening preset, chosen on the DFT
# calibration (benchmarks/calibration.py, benchmarks/results/calibration.txt, README "How long things take"):
# SevenNet-0 + D3 sent DFT's best configuration (within 0.1 eV) for 7 of 9 ligands on two surfaces, CHGNet 6.
DEFAULT_PROTOCOL = "ml-screen-7net"
COARSEST_GRID = 0.2  # Å, LCAO: a rigid NH3 moved across the grid, 0.019 eV at h 0.2, 0.18 eV at 0.25


def known_protocol(value: str | None) -> str | None:
    """``value`` when it is None or a preset name (for settings that name another protocol)."""
    if value is not None and value not in available_protocols():
        raise ValueError(f"unknown protocol '{value}' (available: {', '.join(available_protocols())})")
    return value


class StrictModel(BaseModel):
    """Unknown keys refused; NaN/inf refused in every float; a boolean is not a number."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        allowed = {annotation, *get_args(annotation)}
        if isinstance(value, bool) and bool not in allowed and allowed & {int, float}:
            raise ValueError("expected a number, got a boolean")
        return value


class RelaxSettings(StrictModel):
    optimizer: Literal["BFGS", "LBFGS", "FIRE", "BFGSLineSearch", "MDMin", "GPMin"] | None = Field(
        description="ASE optimizer; null for backends that relax with their own (VASP IBRION)"
    )
    fmax: float = Field(gt=0, le=10, description="eV/Å on the free atoms")
    steps: int = Field(ge=1, le=100000)


class DispersionSettings(StrictModel):
    method: Literal["d3bj", "d3zero", "none"]
    xc: str = Field(min_length=1)


class SlabSettings(StrictModel):
    size: tuple[int, int] | str
    layers: int = Field(ge=2, le=21)
    vacuum: float = Field(gt=0, le=100, description="Å")
    fix_layers: int = Field(ge=0, le=20)
    search: str | None = Field(
        description="protocol relaxing the rattled starts before one relaxation with this one (null: this one)"
    )
    starts: int = Field(
        ge=1, le=50, description="rattled starts of the bare-slab relaxation; the lowest is kept"
    )
    rattle: float = Field(
        ge=0, le=0.5, description="Å, Gaussian displacement of each start (seeds 0, 1, ...)"
    )

    @field_validator("search")
    @classmethod
    def _known_search(cls, value: str | None) -> str | None:
        return known_protocol(value)


class RunSettings(StrictModel):
    """Run-time settings: how a calculation runs, not what it computes (outside the protocol hash)."""

    threads: int = Field(default=1, ge=1, le=1024)
    cores: int | None = Field(default=None, ge=1, le=100000)
    command: str | None = None
    max_errors: int = Field(default=5, ge=0, le=100)
    dry_run: bool = False
    hessian: str | None = Field(
        default=None,
        description="protocol whose finite-difference Hessian at the start seeds BFGS (null: BFGS's alpha*I)",
    )
    hessian_scale: float = Field(
        default=2.0, gt=0, le=100, description="factor on that Hessian (universal ML potentials are too soft)"
    )
    hessian_floor: float = Field(
        default=2.0,
        gt=0,
        le=1000,
        description="eV/Å²; lower eigenvalues of the scaled Hessian are raised to it",
    )
    hessian_molecules: bool = Field(
        default=False,
        description="seed the adsorbed molecules' atoms too (false: only the slab framework; molecules alpha*I)",
    )

    @field_validator("hessian")
    @classmethod
    def _known_hessian(cls, value: str | None) -> str | None:
        return known_protocol(value)


class ProtocolSchema(StrictModel):
    """Common part of every protocol; the backend's section (named after the backend) is checked by it."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = Field(min_length=1)
    backend: str
    description: str = ""
    parent: str | None = None
    dispersion: DispersionSettings
    relax: RelaxSettings
    ligand_cell: Literal["box", "slab"]
    prerelax: str | None = None
    slab: SlabSettings
    run: RunSettings = RunSettings()
    overrides: dict[str, Any] | None = None

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from ligbind.calculators import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"unknown backend '{value}' (known: {', '.join(BACKENDS)})")
        return value


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


def _read_preset(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's YAML merged onto its ``parent`` chain (the child's backend section replaces the parent's)."""
    if name not in available_protocols():
        raise LigbindError(f"unknown protocol '{name}' (available: {', '.join(available_protocols())})")
    if name in seen:
        raise LigbindError(f"protocol '{name}' inherits from itself ({' → '.join((*seen, name))})")
    raw = yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text()) or {}
    parent = raw.get("parent")
    if not parent:
        return raw
    base = _read_preset(parent, (*seen, name))
    if raw.get("backend", base["backend"]) != base["backend"]:
        base.pop(base["backend"], None)
    return deep_merge(base, raw)


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    path = prefix + ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown protocol setting '{path}'"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{path}: {err['msg']}{shown}" if path else f"{err['msg']}{shown}"


def validate_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """Check a merged protocol against the schemas; return it with types normalised.

    Raises
    ------
    LigbindError
        Naming the setting and the problem (unknown key, wrong type, out of range, non-finite).
    """
    from ligbind.calculators import get_backend

    name = protocol.get("name", "?")
    try:
        common = ProtocolSchema.model_validate(protocol)
    except ValidationError as exc:
        raise LigbindError(f"protocol '{name}': {_first_error(exc)}") from None
    backend = get_backend(common.backend)
    extra = set(common.model_extra or {}) - {"is_dft"}
    unknown = extra - {backend.section}
    if unknown:
        raise LigbindError(f"protocol '{name}': unknown protocol setting '{sorted(unknown)[0]}'")
    out = common.model_dump(mode="json")
    out.pop("is_dft", None)
    for optional in ("overrides", "parent"):
        if out[optional] is None:
            del out[optional]
    if backend.settings_model is not None:
        section = protocol.get(backend.section)
        if section is None:
            raise LigbindError(f"protocol '{name}': missing section '{backend.section}'")
        try:
            settings = backend.settings_model.model_validate(section)
        except ValidationError as exc:
            raise LigbindError(f"protocol '{name}': {_first_error(exc, backend.section + '.')}") from None
        out[backend.section] = settings.model_dump(mode="json")
    out["is_dft"] = backend.is_dft
    if out["run"]["hessian"] is not None and out["relax"]["optimizer"] != "BFGS":
        raise LigbindError(
            f"protocol '{name}': run.hessian seeds ASE's BFGS, but relax.optimizer is {out['relax']['optimizer']}"
        )
    if out["prerelax"] is not None and out["prerelax"] not in available_protocols():
        raise LigbindError(f"protocol '{name}': prerelax names an unknown protocol '{out['prerelax']}'")
    gpaw = out.get("gpaw") or {}
    grid = gpaw.get("h") or 0.0
    if out["backend"] == "gpaw" and gpaw.get("mode") == "lcao" and grid > COARSEST_GRID + 1e-9:
        warnings.warn(
            f"protocol '{name}': gpaw.h {grid} Å is coarser than {COARSEST_GRID} Å: a ligand's C, N, O, H feel the "
            "grid (egg-box error ~0.2 eV per small molecule at h 0.25, measured), so Eb depends on where the "
            "ligand sits; fine for trying things, not for numbers you report",
            stacklevel=2,
        )
    return out


def load_protocol(
    name: str | dict[str, Any], overrides: dict[str, Any] | None = None, *, check_installed: bool = True
) -> dict[str, Any]:
    """Resolve a protocol preset by name (or a protocol dictionary), merge overrides and validate.

    Parameters
    ----------
    name
        Preset name such as ``"ml-screen"``, or a protocol dictionary (e.g. one already resolved).
    overrides
        Nested settings that replace the preset's values (``{"relax": {"fmax": 0.1}}``); run-time settings go
        under ``run`` (``{"run": {"cores": 2}}``).
    check_installed
        Refuse a protocol whose dispersion package cannot be imported (False: only to show it).

    Returns
    -------
    dict
        The full, validated parameter set; ``overrides`` records what the user changed.

    Raises
    ------
    LigbindError
        For an unknown preset, an unknown or misspelt setting, a value of the wrong type or range, or D3 asked
        for without the dftd3 package.
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise LigbindError(f"protocol overrides must be a mapping, got {type(overrides).__name__}")
    if overrides and "is_dft" in overrides:
        raise LigbindError("unknown protocol setting 'is_dft': whether results are DFT follows the backend")
    preset = copy.deepcopy(name) if isinstance(name, dict) else _read_preset(name)
    protocol = deep_merge(preset, overrides or {})
    if overrides:
        protocol["overrides"] = deep_merge(preset.get("overrides") or {}, overrides)
    protocol = validate_protocol(protocol)
    if check_installed:
        from ligbind.calculators import check_dispersion_installed

        check_dispersion_installed(protocol)
    return protocol


def with_run_settings(protocol: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A copy of ``protocol`` with run-time settings changed (the hash, and so every key, stays the same)."""
    out = copy.deepcopy(protocol)
    out["run"] = RunSettings.model_validate({**out.get("run", {}), **settings}).model_dump(mode="json")
    return out


def protocol_hash(protocol: dict[str, Any]) -> str:
    """Stable hash of the resolved parameters that change energies (description and run settings excluded)."""
    relevant = {k: v for k, v in protocol.items() if k not in NOT_HASHED}
    for section, keys in [*BULK_ONLY.items(), *ANALYSIS_ONLY.items()]:
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in keys}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def analysis_settings(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol's analysis-only settings that are on (:data:`ANALYSIS_ONLY`): a campaign's plan and its
    analyses depend on them, its calculations do not."""
    section = protocol.get(protocol.get("backend", "")) or {}
    keys = ANALYSIS_ONLY.get(protocol.get("backend", ""), ())
    return {k: section[k] for k in keys if section.get(k)}


def bulk_settings(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol's bulk-only settings that are set (:data:`BULK_ONLY`; empty for ML protocols)."""
    section = protocol.get(protocol.get("backend", "")) or {}
    keys = BULK_ONLY.get(protocol.get("backend", ""), ())
    return {k: section[k] for k in keys if section.get(k) is not None}


def describe_changes(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """Settings that differ between two resolved protocols, as ``path: old → new`` (hashed keys only)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if not where and key in NOT_HASHED:
            continue
        a, b = old.get(key), new.get(key)
        path = f"{where}.{key}" if where else key
        if isinstance(a, dict) and isinstance(b, dict):
            changes += describe_changes(a, b, path)
        elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            changes.append(f"{path}: {a!r} → {b!r}")
    return changes
