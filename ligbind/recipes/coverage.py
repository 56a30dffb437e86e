"""Coverage and surface treatments without a workflow engine (the campaign steps call the same functions).

- :func:`coverage`: Eb per ligand and differential Eb for n = 1, 2, ... copies of a ligand (or a monolayer).
- :func:`treatment_frenkel`: the iodine Frenkel energy E_F on a surface covered by a treatment (a monolayer
  of a small molecule, e.g. dimethyl ether as a PEO mimic, or a full MAI layer), against the same covered
  surface without the defect, next to E_F of the bare slab: ΔE_F = E_F(treated) − E_F(bare).

Every term is a :func:`ligbind.jobs.relax` with the same protocol, committed to the store at once, so reruns
and campaigns sharing the store reuse it. Which iodides the Frenkel pairs move (documented choice): on a
ligand monolayer the slab's own surface iodides (the top PbI2 layer, :func:`frenkel_pairs`, interstitials the
monolayer leaves free); on the MAI layer the layer's iodides, since a full AX layer makes it the surface and
buries the PbI2 layer (no interstitial site above it stays free):
:func:`ligbind.builders.coverage.layer_frenkel_pairs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.analysis.coverage import CoverageOutcome, analyse_coverage, coverage_anomalies
from ligbind.analysis.frenkel import FrenkelHostOutcome
from ligbind.builders.coverage import (
    MAI_LAYER,
    coverage_count,
    layer_frenkel_pairs,
    mai_layer,
    mai_unit,
    place_coverage,
    spread_site_sets,
)
from ligbind.builders.ligands import LigandEntry, resolve_ligand
from ligbind.builders.slab import check_pbi2_terminated
from ligbind.errors import LigbindError
from ligbind.jobs import Result, relax
from ligbind.protocols import DEFAULT_PROTOCOL, load_protocol
from ligbind.recipes import frenkel_on_lowest_host, frenkel_structures, relax_ligand, relax_slab
from ligbind.store import ResultStore

Progress = Callable[[str], None]
MAX_SITE_SETS = 10


def _noop(_: str) -> None:
    pass


def coverage_levels(slab: Atoms, ns: list[int | str] | tuple[int | str, ...]) -> list[int]:
    """The distinct numbers of copies asked for (``"monolayer"`` resolved), ascending; bad ones refused."""
    if not ns:
        raise LigbindError("give at least one coverage (a number of ligands or 'monolayer')")
    return sorted({coverage_count(slab, n) for n in ns})


def check_coverage_fits(slab: Atoms, entry: LigandEntry, counts: list[int], sets: int, seed: int) -> None:
    """Place the largest coverage on the input slab before anything runs: a coverage that does not fit is
    refused (LigbindError, one line) before the first calculation or the first file."""
    if not 1 <= sets <= MAX_SITE_SETS:
        raise LigbindError(f"bad number of site sets {sets}: between 1 and {MAX_SITE_SETS}")
    place_coverage(slab, entry, max(counts), seed=seed)


def covered_label(placed: Atoms) -> str:
    """Store label of a coverage structure."""
    return f"coverage:{placed.info['ligand']}:{placed.info['n']}:{placed.info.get('site_set', 0)}"


def relax_covered(
    placed: Atoms, relaxed_slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """Relax one coverage (or treatment) structure and record its per-copy anomaly flags in the store."""
    placed = placed.copy()
    placed.info["label"] = covered_label(placed)
    result = relax(placed, protocol, store=store, workdir=workdir)
    flags = coverage_anomalies(placed, result.atoms, relaxed_slab)
    if not result.converged:
        flags.append("unconverged")
    result.anomalies = flags
    store.update(result.key, anomalies=",".join(flags) or "none")
    return result


def coverage_structures(
    relaxed_slab: Atoms, entry: LigandEntry, n: int, sets: int, seed: int, relaxed_ligand: Atoms | None
) -> list[Atoms]:
    """The first ``sets`` symmetry-distinct spread site sets of ``n`` copies, placed on the relaxed slab."""
    available = len(spread_site_sets(relaxed_slab, n))
    return [
        place_coverage(relaxed_slab, entry, n, site_set=k, seed=seed, relaxed_ligand=relaxed_ligand)
        for k in range(min(sets, available))
    ]


def coverage(
    slab: Atoms,
    ligand: str | LigandEntry,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    ns: list[int | str] | tuple[int | str, ...] = (1,),
    sets: int = 1,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> CoverageOutcome:
    """Eb per ligand and differential Eb of ``ligand`` for each coverage in ``ns`` on ``slab``.

    The slab and the isolated ligand are relaxed first; each coverage is placed on the relaxed slab from the
    relaxed ligand (``sets`` symmetry-distinct site sets each, the lowest usable one reported).
    """
    protocol = load_protocol(protocol, overrides)
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    check_pbi2_terminated(slab)
    counts = coverage_levels(slab, list(ns))
    check_coverage_fits(slab, entry, counts, sets, seed)
    store = store or ResultStore()
    workdir = Path(workdir)
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    progress("ligand")
    lig_result = relax_ligand(entry, slab, protocol, store, workdir)
    levels: dict[int, list[Result]] = {}
    for n in counts:
        levels[n] = []
        for placed in coverage_structures(slab_result.atoms, entry, n, sets, seed, lig_result.atoms):
            progress(f"{entry.name} ×{n} set {placed.info['site_set']}")
            levels[n].append(relax_covered(placed, slab_result.atoms, protocol, store, workdir))
    return analyse_coverage(entry.name, protocol, slab_result, lig_result, levels, store=store)


@dataclass
class TreatmentOutcome:
    """A treatment (monolayer or MAI layer): its Eb per unit, and E_F on it against the bare slab."""

    treatment: str
    protocol: str
    coverage: dict[str, Any]
    frenkel_bare: dict[str, Any]
    frenkel_treated: dict[str, Any]
    note: str | None = None

    @property
    def ef_bare(self) -> float | None:
        return self.frenkel_bare["ef"]

    @property
    def ef_treated(self) -> float | None:
        return self.frenkel_treated["ef"]

    @property
    def delta_ef(self) -> float | None:
        return self.frenkel_treated["delta_ef"]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def treatment_label(treatment: str) -> str:
    """How a treatment is named in tables: ``MAI-layer``, or ``<ligand>-monolayer``."""
    return treatment if treatment == MAI_LAYER else f"{treatment}-monolayer"


def treatment_structure(
    relaxed_slab: Atoms, treatment: str, seed: int, relaxed_unit: Atoms | None
) -> tuple[Atoms, LigandEntry]:
    """The treated slab (unrelaxed, on the relaxed slab) and the entry of its unit (ligand or MAI)."""
    if treatment == MAI_LAYER:
        return mai_layer(relaxed_slab), mai_unit()
    entry = resolve_ligand(treatment)
    return place_coverage(relaxed_slab, entry, "monolayer", seed=seed, relaxed_ligand=relaxed_unit), entry


def treatment_frenkel_structures(host: Result, treatment: str, max_pairs: int) -> list[Atoms]:
    """Frenkel pairs on a relaxed treated host (see the module docstring for which iodides move)."""
    if treatment == MAI_LAYER:
        pairs = layer_frenkel_pairs(host.atoms, max_pairs=max_pairs)
        for defect in pairs:
            defect.info["label"] = f"frenkel:{treatment}:{defect.info['pair']}"
        return pairs
    return frenkel_structures(host, max_pairs, treatment_label(treatment))


def frenkel_on_host(
    host: Result,
    structures: list[Atoms],
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    label: str | None,
    bare: FrenkelHostOutcome | None,
    progress: Progress,
) -> FrenkelHostOutcome:
    """Relax each Frenkel-pair structure of ``host`` and analyse them against the lowest host known (stored row
    of kind ``frenkel``)."""
    pairs = []
    for defect in structures:
        progress(f"{label or 'bare'} pair {defect.info['pair']}")
        pairs.append((defect.info, relax(defect, protocol, store=store, workdir=workdir)))
    return frenkel_on_lowest_host(host, pairs, protocol, store, workdir, ligand=label, bare=bare)


def treatment_frenkel(
    slab: Atoms,
    treatment: str,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    max_pairs: int = 2,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> TreatmentOutcome:
    """E_F on the bare slab and on the slab covered by ``treatment`` (a ligand name → its monolayer, or
    ``MAI-layer``), each against its own pristine host; Eb per unit of the treatment layer."""
    protocol = load_protocol(protocol, overrides)
    if max_pairs < 1:
        raise LigbindError(f"bad number of Frenkel pairs {max_pairs}: need at least 1")
    check_pbi2_terminated(slab)
    treatment_structure(slab, treatment, seed, None)  # refuses a treatment that does not fit, before any work
    store = store or ResultStore()
    workdir = Path(workdir)
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    unit = mai_unit() if treatment == MAI_LAYER else resolve_ligand(treatment)
    progress(unit.name)
    unit_result = relax_ligand(unit, slab, protocol, store, workdir)
    placed, _ = treatment_structure(slab_result.atoms, treatment, seed, unit_result.atoms)
    progress(treatment)
    host = relax_covered(placed, slab_result.atoms, protocol, store, workdir)
    cov = analyse_coverage(
        unit.name,
        protocol,
        slab_result,
        unit_result,
        {int(placed.info["n"]): [host]},
        treatment=treatment_label(treatment),
        store=store,
    )
    bare = frenkel_on_host(
        slab_result, frenkel_structures(slab_result, max_pairs, "bare"), protocol, store, workdir, None, None,
        progress,
    )  # fmt: skip
    label = cov.treatment
    host.require_converged(f"{label} relaxation")
    note = None
    try:
        structures = treatment_frenkel_structures(host, treatment, max_pairs)
    except LigbindError as exc:  # the treatment covers every interstitial site: no pair to relax
        structures, note = [], f"{exc} (the {label} leaves no interstitial site free)"
    treated = frenkel_on_host(host, structures, protocol, store, workdir, label, bare, progress)
    return TreatmentOutcome(label, protocol["name"], cov.as_dict(), bare.as_dict(), treated.as_dict(), note)
