"""Schema of a campaign YAML (workflows/*.yaml): types, units and ranges, unknown keys refused at every depth.

:func:`parse_campaign` validates the raw mapping and returns a :class:`CampaignSpec`; a problem becomes one
line ``campaign FILE: key.path: message`` (:func:`format_validation_error`). What the schema cannot know
(ligands resolved from the library, protocol overrides, paths on this machine) is checked by
:func:`ligbind.engine.campaign.load_campaign` with the same kind of message.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ligbind.analysis.frenkel import HOST_REFINEMENTS, MAX_HOST_REFINEMENTS
from ligbind.analysis.migration import ENDPOINT_REFINEMENTS
from ligbind.analysis.vacancy import HOST_REFINEMENTS as VACANCY_HOST_REFINEMENTS
from ligbind.analysis.vacancy import MAX_HOST_REFINEMENTS as VACANCY_MAX_HOST_REFINEMENTS
from ligbind.errors import LigbindError
from ligbind.protocols import DEFAULT_PROTOCOL

MAX_CONFIGS = 50  # candidate configurations per ligand (each one a relaxation)
MAX_PAIRS = 50  # Frenkel pairs per host (each one a relaxation)
MAX_LIGANDS = 500
MAX_REPEATS = 10  # in-plane slab repeats (a 10x10 slab has 500+ atoms: far beyond any DFT budget)
MAX_SEED = 2**32 - 1  # numpy and RDKit seeds

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
"""Campaign names become directory names (runs/<name>/, results/<name>/): one safe path component."""


def check_campaign_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(
            f"'{name}' is not a safe campaign name (it names runs/<name>/): use 1-64 letters, digits and "
            "'_.+-', starting with a letter or digit, no '..'"
        )
    return name


def check_ligand_label(name: str) -> str:
    """Ligand labels name cache files and Fireworks: no '/', no control characters, not hidden."""
    if not name.strip() or name.startswith(".") or "/" in name or not name.isprintable():
        raise ValueError(
            f"'{name}' cannot label a ligand (it names files): no '/', no control characters, not starting with "
            "'.'; give the entry a name:"
        )
    if len(name) > 120:
        raise ValueError(
            f"ligand label of {len(name)} characters (at most 120): give the entry a short name:"
        )
    return name


class _Strict(BaseModel):
    """Unknown keys refused, no type coercion (``'3'``, ``2.7``, ``true`` are not integers), NaN/inf refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """``key:`` with no value (YAML null) means the default, as if the key were absent."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


PositiveConfigs = Annotated[int, Field(ge=1, le=MAX_CONFIGS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class SlabSpec(_Strict):
    """The campaign's slab; missing keys come from the protocol's ``slab:`` section."""

    size: Any = Field(None, description="in-plane pseudo-cubic repeats, 'NxM', [N, M] or auto")
    layers: Annotated[int, Field(ge=1, le=21)] | None = Field(None, description="PbX2/AX layers")
    vacuum: Annotated[float, Field(gt=0, le=100)] | None = Field(None, description="Å along z")
    fix_layers: Annotated[int, Field(ge=0, le=20)] | None = Field(None, description="bottom layers fixed")
    br_fraction: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description="X sites made Br")
    seed: Seed | None = None
    termination: str | None = Field(None, description="top layer: PbX2 (default) or AX (CsI / MAI)")

    @field_validator("size")
    @classmethod
    def _size(cls, value):
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return value  # auto: the smallest n×n cell every ligand fits (ligbind.engine.size_auto)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
            repeats = [int(g) for g in m.groups()] if m else None
        elif isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
            repeats = value
        else:
            repeats = None
        if repeats is None:
            raise ValueError(f"size must be NxM (e.g. 2x2) or [N, M], got {_shown(value)}")
        if not all(1 <= r <= MAX_REPEATS for r in repeats):
            raise ValueError(f"size {_shown(value)}: each repeat must be between 1 and {MAX_REPEATS}")
        return value


class LigandItem(_Strict):
    """A ligand of the campaign: a library name, a library ligand under its own label (``ligand:``), or a
    user SMILES (``smiles:``, with an optional ``charge`` that must match it)."""

    name: str | None = None
    ligand: str | None = None
    smiles: str | None = None
    mode: Literal["neutral", "exchange"] | None = None
    charge: Annotated[int, Field(ge=-8, le=8)] | None = None

    @field_validator("name")
    @classmethod
    def _label(cls, value):
        return None if value is None else check_ligand_label(value)

    @model_validator(mode="after")
    def _one_source(self):
        if not (self.name or self.ligand or self.smiles):
            raise ValueError("give a library name, or {smiles: ..., name: ...}, or {ligand: ..., name: ...}")
        if self.ligand and self.smiles:
            raise ValueError("give either ligand: (a library name) or smiles:, not both")
        return self


class FrenkelSpec(_Strict):
    bare: bool = False
    ligands: list[str] = Field(default_factory=list)
    pairs: Annotated[int, Field(ge=1, le=MAX_PAIRS)] = 3
    host_refinements: Annotated[int, Field(ge=0, le=MAX_HOST_REFINEMENTS)] = Field(
        HOST_REFINEMENTS,
        description="times a host is relaxed again from a pair that lies below it, at most (0: flag the pair)",
    )

    @field_validator("ligands")
    @classmethod
    def _distinct(cls, value):
        twice = sorted({x for x in value if value.count(x) > 1})
        if twice:
            raise ValueError(f"'{twice[0]}' is listed twice")
        return value


class PassivationSpec(_Strict):
    """K–Br surface passivation (ligbind.builders.passivation): E_pass, and E_F with it when ``frenkel``."""

    mode: Literal["hollow", "substitute"] = "hollow"
    n: Annotated[int, Field(ge=1, le=64)] = Field(1, description="K+ per slab")
    exchange: Annotated[int, Field(ge=0, le=64)] | None = Field(None, description="top-layer I made Br")
    arrangements: PositiveConfigs = Field(3, description="symmetry-distinct arrangements relaxed")
    frenkel: bool = False


class ComplexesSpec(_Strict):
    """Ion–ligand complexes in vacuum; they need a charge-capable (DFT) protocol of their own."""

    ion: str = "Pb2+"
    protocol: str = Field("gpaw-complex", min_length=1, description="a DFT protocol preset")
    overrides: dict[str, Any] | None = None
    ligands: list[str] = Field(default_factory=list, description="default: every campaign ligand")
    configs: Annotated[int, Field(ge=1, le=MAX_CONFIGS)] = 2


class CoverageSpec(_Strict):
    """``compute.coverage``: n copies of each listed campaign ligand on the slab (ligbind/builders/coverage.py).

    ``n``: a list of numbers and/or ``monolayer``, a range ``"1..4"``, one number, or ``monolayer``.
    """

    ligands: list[str] = Field(default_factory=list)
    n: list[Annotated[int, Field(ge=1, le=64)] | Literal["monolayer"]] = Field(default_factory=lambda: [1])
    sets: Annotated[int, Field(ge=1, le=10)] = 1

    @field_validator("n", mode="before")
    @classmethod
    def _counts(cls, value):
        if isinstance(value, str) and ".." in value:
            lo, _, hi = value.partition("..")
            try:
                first, last = int(lo), int(hi)
            except ValueError:
                raise ValueError(f"bad coverage range {value!r}: give low..high, e.g. 1..4") from None
            if not 1 <= first <= last <= 64:
                raise ValueError(f"bad coverage range {value!r}: need 1 ≤ low ≤ high ≤ 64")
            return list(range(first, last + 1))
        return value if isinstance(value, list) else [value]

    _distinct = field_validator("ligands")(FrenkelSpec._distinct.__func__)


class VacancySpec(_Strict):
    """Surface halide vacancies (neutral) on the bare slab and/or the listed ligands' best complexes."""

    bare: bool = False
    ligands: list[str] = Field(default_factory=list)
    sites: Annotated[int, Field(ge=1, le=20)] = 1
    mu_x: Annotated[float, Field(ge=-5, le=0)] = Field(0.0, description="eV relative to ½E(X2); 0 = X2-rich")
    passivated: bool = Field(False, description="also on the K–Br-passivated slab of compute.passivation")
    host_refinements: Annotated[int, Field(ge=0, le=VACANCY_MAX_HOST_REFINEMENTS)] = Field(
        VACANCY_HOST_REFINEMENTS,
        description="lowest vacancies refilled and relaxed again as the host; E_vac against the lowest (0: none)",
    )

    _distinct = field_validator("ligands")(FrenkelSpec._distinct.__func__)


class MigrationSpec(_Strict):
    """Halide hop into a neighbouring vacancy (climbing-image NEB) on the bare slab and/or ligand complexes."""

    bare: bool = False
    ligands: list[str] = Field(default_factory=list)
    images: Annotated[int, Field(ge=3, le=9)] = 5
    site: Annotated[int, Field(ge=0)] | None = Field(
        None, description="vacancy site (top-surface halide index)"
    )
    hopper: Annotated[int, Field(ge=0)] | None = Field(None, description="hopping halide index (needs site)")
    passivated: bool = Field(False, description="also on the K–Br-passivated slab of compute.passivation")
    endpoint_refinements: Annotated[int, Field(ge=0, le=5)] = Field(
        ENDPOINT_REFINEMENTS,
        description="rounds of re-relaxing an endpoint that the band dips below, at most (0: flag it at once)",
    )

    _distinct = field_validator("ligands")(FrenkelSpec._distinct.__func__)


class ComputeSpec(_Strict):
    binding: bool = True
    coadsorption: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(default_factory=list)
    frenkel: FrenkelSpec = Field(default_factory=FrenkelSpec)
    passivation: PassivationSpec | None = None
    complexes: ComplexesSpec | None = None
    coverage: CoverageSpec = Field(default_factory=CoverageSpec)
    treatments: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(
        default_factory=list, description="monolayer of a library ligand, or MAI-layer; E_F on each"
    )
    vacancy: VacancySpec = Field(default_factory=VacancySpec)
    migration: MigrationSpec = Field(default_factory=MigrationSpec)

    @field_validator("coadsorption")
    @classmethod
    def _distinct_pairs(cls, value):
        seen = set()
        for pair in value:
            key = frozenset(pair) if pair[0] != pair[1] else (pair[0],)
            if key in seen:
                raise ValueError(f"pair {pair} is listed twice")
            seen.add(key)
        return value


def _materials() -> list[str]:
    from ligbind.builders.bulk import PHASES

    return sorted({m for m, _ in PHASES})


Material = Literal[tuple(_materials())]  # type: ignore[valid-type]


class VerifySpec(_Strict):
    """DFT verification of the screen (AdsorbML pattern): the best ``top_k`` configurations per ligand."""

    protocol: str = Field(min_length=1, description="a DFT protocol preset, e.g. gpaw-laptop")
    overrides: dict[str, Any] | None = None
    top_k: Annotated[int, Field(ge=1, le=10)] = 2
    reserve: Annotated[int, Field(ge=0, le=5)] = Field(
        1,
        description="the screen's next configurations, relaxed with DFT only in place of top-k ones that DFT "
        "left unusable (unconverged, desorbed, reconstructed ...)",
    )
    threshold: Annotated[float, Field(gt=0, le=5)] = Field(
        0.2, description="eV: |Eb_dft − Eb_screen| flagged"
    )


class CampaignSpec(_Strict):
    """A campaign YAML. Units: Å for lengths; counts are integers."""

    name: str | None = Field(None, description="names runs/<name>/ and results/<name>/ (default: file stem)")
    description: str = ""
    material: Material = "CsPbI3"  # type: ignore[valid-type]
    phase: str | None = None
    slab: SlabSpec = Field(default_factory=SlabSpec)
    protocol: str = DEFAULT_PROTOCOL
    overrides: dict[str, Any] | None = None
    ligands: list[LigandItem] = Field(min_length=1, max_length=MAX_LIGANDS)
    mode: Literal["neutral", "exchange"] = "neutral"
    configs: PositiveConfigs = 3
    truncate_tails: Annotated[int, Field(ge=1, le=200)] | None = Field(
        None, description="bonds kept from the anchors along alkyl chains"
    )
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    verify: VerifySpec | None = None
    workdir: str | None = None
    store: str | None = None
    seed: Seed = 0

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        return None if value is None else check_campaign_name(value)

    @field_validator("phase")
    @classmethod
    def _phase(cls, value, info: ValidationInfo):
        from ligbind.builders.bulk import PHASES

        material = info.data.get("material")
        if value is not None and material is not None and (material, value) not in PHASES:
            known = ", ".join(sorted(p for m, p in PHASES if m == material))
            raise ValueError(
                f"unknown phase {value!r} for {material} (supported: {known}; leave it out for the default)"
            )
        return value

    @field_validator("ligands", mode="before")
    @classmethod
    def _names_are_entries(cls, value):
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("workdir", "store")
    @classmethod
    def _path(cls, value):
        if value is not None and (not value.strip() or "\x00" in value):
            raise ValueError("not a usable path")
        return value


# --------------------------------------------------------------------------------------------- messages
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model whose field names are the allowed keys at ``loc`` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of a list of models (ligands)
            continue
        if (
            not (isinstance(current, type) and issubclass(current, BaseModel))
            or part not in current.model_fields
        ):
            return None
        annotation = current.model_fields[part].annotation
        inner = [annotation, *typing.get_args(annotation)]
        for arg in list(inner):
            inner += typing.get_args(arg)
        current = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def format_validation_error(
    exc: ValidationError, file: str | Path, model: type[BaseModel] = CampaignSpec
) -> str:
    """The first error of ``exc`` as one line: ``campaign FILE: key.path: message``."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping (key: value)", msg)
    if err.get("type") == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        msg = f"unknown key ({hint}allowed: {', '.join(allowed)})" if allowed else "unknown key"
    elif err.get("type") == "missing":
        msg = "missing (required)"
    elif "input" in err and not isinstance(err["input"], dict) and err.get("type") != "value_error":
        msg = f"{msg} (got {_shown(err['input'])})"
    path = ".".join(str(p) for p in loc)
    return f"campaign {file}: {path}: {msg}" if path else f"campaign {file}: {msg}"


def first_nonfinite(value: Any, path: str = "") -> str | None:
    """Key path of the first NaN or infinite number anywhere in a parsed YAML/JSON value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(top level)"
    if isinstance(value, dict):
        for k, v in value.items():
            found = first_nonfinite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = first_nonfinite(v, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def parse_campaign(raw: Any, file: str | Path) -> CampaignSpec:
    """Validate a parsed campaign YAML; one-line :class:`LigbindError` naming the file, key path and problem."""
    if not isinstance(raw, dict):
        raise LigbindError(f"campaign {file} must be a YAML mapping of keys (name, ligands, ...)")
    bad = first_nonfinite(raw)
    if bad:
        raise LigbindError(f"campaign {file}: {bad}: not a finite number (NaN and infinity are refused)")
    non_string = next((k for k in raw if not isinstance(k, str)), None)
    if non_string is not None:
        raise LigbindError(f"campaign {file}: {non_string!r}: keys must be names (strings)")
    try:
        return CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise LigbindError(format_validation_error(exc, file)) from None
