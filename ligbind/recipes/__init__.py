"""End-to-end recipes without a workflow engine: binding, coadsorption and Frenkel energies.

Each calculation is a :func:`ligbind.jobs.relax` whose result is committed to the store at once, so a rerun
(or a campaign sharing the store) reuses everything already computed. The analyses themselves live in
:mod:`ligbind.analysis` (binding, coadsorption, frenkel) and are shared with the campaign steps, which call
the same calculation functions here (:func:`relax_slab`, :func:`relax_ligand`, :func:`relax_configuration`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.analysis.anomalies import complex_anomalies
from ligbind.analysis.binding import BindingOutcome, analyse_binding
from ligbind.analysis.coadsorption import CoadsorptionOutcome, analyse_coadsorption
from ligbind.analysis.frenkel import (
    HOST_REFINEMENTS,
    HOST_TOLERANCE,
    MAX_HOST_REFINEMENTS,
    FrenkelHostOutcome,
    analyse_frenkel,
)
from ligbind.builders.ligands import LigandEntry, ligand_conformers, resolve_ligand
from ligbind.builders.placement import place_ligand
from ligbind.builders.slab import check_pbi2_terminated, vacuum_thickness
from ligbind.builders.termination import check_slab_mode, check_terminated, exchange_byproduct, surface_kind
from ligbind.errors import LigbindError
from ligbind.jobs import Result, relax, result_from_row
from ligbind.protocols import DEFAULT_PROTOCOL, load_protocol
from ligbind.store import ResultStore

Progress = Callable[[str], None]

BASIN_GAIN = 0.001  # eV: a framework lower than the slab by more than this replaces it as the reference


def _noop(_: str) -> None:
    pass


def relax_slab(slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path) -> Result:
    """Relax the bare slab (checked PbX2- or AX-terminated) into its lowest basin found.

    A slab built symmetric stays on its symmetric stationary point under BFGS (the forces along the octahedral
    tilt modes vanish by symmetry), which lies above the tilted minima an adsorbate or a defect falls into:
    measured with gpaw-quick on the 2×2 CsPbI3 slab, 0.28 eV, i.e. Eb too negative by that much. So the slab
    is relaxed from ``slab.starts`` copies rattled by ``slab.rattle`` Å (seeds 0, 1, ...; labelled
    ``slab-start:<seed>``) and the lowest converged one is the slab (relabelled ``slab``). With a
    ``slab.search`` protocol (ML before DFT) the starts are relaxed with that one and the lowest is relaxed
    with ``protocol``; the search is then that result's ``prerelax`` data.
    """
    check_terminated(slab)
    atoms = slab.copy()
    atoms.info = {**slab.info, "kind": "slab", "label": "slab"}
    settings = protocol["slab"]
    search = load_protocol(settings["search"]) if settings.get("search") else protocol
    starts = []
    for seed in range(settings["starts"]):
        start = atoms.copy()
        start.info["label"] = f"slab-start:{seed}"
        if settings["rattle"] > 0:
            start.rattle(settings["rattle"], seed=seed)
        starts.append(relax(start, search, store=store, workdir=workdir, prerelax=False))
    best = min(starts, key=lambda r: (not r.converged, r.energy))
    if search is protocol:  # the lowest start is the slab
        best.atoms.info = dict(atoms.info)
        store.update(best.key, label="slab")
        return best
    chosen = best.atoms.copy()
    chosen.info = dict(atoms.info)
    chosen.set_constraint(atoms.constraints)
    search_info = {
        "key": best.key,
        "protocol": search["name"],
        "n_steps": best.n_steps,
        "status": best.status,
        "rattle": settings["rattle"],
        "starts": [{"key": r.key, "energy": r.energy, "status": r.status} for r in starts],
    }
    return relax(chosen, protocol, store=store, workdir=workdir, prerelax=False, prerelax_info=search_info)


def basin_framework(complex_: Result, slab: Result) -> Atoms:
    """The bare framework of a relaxed complex (its adsorbate removed), set up like ``slab`` (same atoms, fixed
    layers and charge) and labelled ``slab-basin:<complex label>``: what :func:`lowest_slab` relaxes."""
    framework = complex_.atoms[complex_.atoms.get_tags() == 0]
    framework.calc = None
    framework.set_constraint(slab.atoms.constraints)  # the same atoms in the same order as the slab
    label = complex_.atoms.info.get("label", complex_.key)
    framework.info = {**slab.atoms.info, "label": f"slab-basin:{label}"}
    return framework


def lowest_slab(
    slab: Result, complexes: list[Result], protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """The lowest bare slab known: ``slab``, or the framework of a complex flagged ``basin-changed`` relaxed
    without its adsorbate (:func:`basin_framework`), when that ends lower.

    An adsorbate breaks the slab's symmetry, and the slab can fall into a basin its own rattled search missed;
    if the bare framework of such a complex is lower than ``slab``, the slab was not the reference Eb needs
    (measured with gpaw-quick: one searched start DFT-relaxed to a slab 0.085 eV above such a framework).
    Complexes that changed basin for a reason of their own relax back above ``slab`` and leave it the reference;
    :func:`against_reference` then counts them as adsorbed states like any other.
    """
    best = slab
    for r in complexes:
        if "basin-changed" not in r.anomalies or not r.converged:
            continue
        relaxed = relax(basin_framework(r, slab), protocol, store=store, workdir=workdir, prerelax=False)
        if relaxed.converged and relaxed.energy < best.energy - BASIN_GAIN:
            best = relaxed
    return best


def framework_no_lower(
    complex_: Result, reference: Result, protocol: dict[str, Any], store: ResultStore
) -> str | None:
    """The store key of ``complex_``'s bare framework relaxed with ``protocol`` (by :func:`lowest_slab`) to no
    lower than ``reference``, or None (not relaxed, not converged, or lower: ``reference`` is not the lowest)."""
    from ligbind.store import calculation_key

    key = calculation_key("relax", basin_framework(complex_, reference), protocol)
    row = store.get(key)
    if row is None or row.get("status") != "converged" or row.energy < reference.energy - BASIN_GAIN:
        return None
    return key


def judged_flags(
    complex_: Result, reference: Result, protocol: dict[str, Any], store: ResultStore
) -> tuple[list[str], str | None]:
    """``complex_``'s anomaly flags with ``basin-changed`` judged against ``reference``, the lowest slab known
    (:func:`lowest_slab`), and the key of the framework relaxation that cleared it (reads ``store`` only).

    The flag keeps a framework gain out of Eb. A complex whose framework :func:`lowest_slab` relaxed without
    its adsorbate and found no lower than ``reference`` holds no such gain: its framework moved because the
    adsorbate binds better there, so it is an adsorbed state like any other and loses the flag. Measured with
    gpaw-quick (on its old h 0.25 grid) on the 2x2 CsPbI3 slab: methylamine 0.2 eV more strongly bound on
    another tilt basin whose bare framework lies 15 meV above the reference (0.03 eV with gpaw-laptop).
    """
    from ligbind.analysis.anomalies import basin_flags

    flags = basin_flags(complex_.anomalies, complex_.atoms, reference.atoms)
    checked = framework_no_lower(complex_, reference, protocol, store) if "basin-changed" in flags else None
    if checked:
        flags.remove("basin-changed")
    return flags, checked


def against_reference(
    complexes: list[Result], reference: Result, protocol: dict[str, Any], store: ResultStore
) -> list[Result]:
    """``complexes`` (relaxed with ``protocol``) with their flags judged against ``reference``
    (:func:`judged_flags`), in the store too; a complex cleared by its framework names it (``basin_framework``)."""
    for r in complexes:
        flags, checked = judged_flags(r, reference, protocol, store)
        if checked:
            store.update(r.key, basin_framework=checked)
        if flags != r.anomalies:
            r.anomalies = flags
            store.update(r.key, anomalies=",".join(flags) or "none")
    return complexes


def ligand_cell_structure(molecule: Atoms, slab: Atoms, protocol: dict[str, Any]) -> Atoms:
    """The isolated molecule in a box with the slab's vacuum, or in the slab's own cell (protocol ligand_cell)."""
    mol = molecule.copy()
    if protocol.get("ligand_cell", "box") == "slab":
        mol.set_cell(slab.cell)
        mol.center()
    else:
        mol.center(vacuum=max(vacuum_thickness(slab), 6.0) / 2)
    mol.pbc = True
    return mol


def ligand_structure(entry: LigandEntry, slab: Atoms, protocol: dict[str, Any]) -> Atoms:
    """The isolated ligand's starting structure (lowest RDKit conformer) in its cell, ready to relax."""
    mol = ligand_cell_structure(ligand_conformers(entry, n_conformers=4)[0], slab, protocol)
    mol.info.update(kind="ligand", label=f"ligand:{entry.name}", ligand=entry.name, charge=int(entry.charge))
    return mol


def byproduct_entry(entry: LigandEntry, slab: Atoms | None = None) -> LigandEntry:
    """The exchange byproduct: e.g. HI, NH4I of an X-site exchange; on an AX-terminated ``slab`` the leaving
    A cation with the ligand's counter-ion (CsI, MAI; :mod:`ligbind.builders.termination`)."""
    if slab is not None and surface_kind(slab) == "AX":
        return exchange_byproduct(entry, slab)
    return resolve_ligand(smiles=entry.exchange["byproduct"])


def relax_ligand(
    ligand: str | LigandEntry, slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """Relax the isolated ligand (library name, SMILES entry or exchange byproduct)."""
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    return relax(ligand_structure(entry, slab, protocol), protocol, store=store, workdir=workdir)


def candidate_configurations(
    relaxed_slab: Atoms,
    ligand: str | LigandEntry,
    n_configs: int,
    mode: str,
    seed: int = 0,
    relaxed_ligand: Atoms | None = None,
) -> list[Atoms]:
    """Placed, unrelaxed complexes on the relaxed slab (same basin, fewer steps), from the relaxed ligand."""
    return place_ligand(
        relaxed_slab, ligand, n_configs=n_configs, mode=mode, seed=seed, relaxed_ligand=relaxed_ligand
    )


def relax_configuration(
    placed: Atoms,
    relaxed_slab: Atoms,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    label: str | None = None,
    prerelax: bool = True,
    prerelax_info: dict[str, Any] | None = None,
) -> Result:
    """Relax one placed complex and record its anomaly flags in the store (``prerelax``: see :func:`relax`)."""
    placed = placed.copy()
    placed.info["label"] = label or (
        f"complex:{placed.info['ligand']}:{placed.info['mode']}:{placed.info['config']}"
    )
    result = relax(
        placed, protocol, store=store, workdir=workdir, prerelax=prerelax, prerelax_info=prerelax_info
    )
    flags = complex_anomalies(
        placed, result.atoms, relaxed_slab if placed.info["mode"] == "neutral" else None
    )
    if not result.converged:
        flags.append("unconverged")
    result.anomalies = flags
    store.update(result.key, anomalies=",".join(flags) or "none")
    return result


def counterpoise_corrections(
    configs: list[Result],
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    include_flagged: bool = False,
    progress: Progress = _noop,
    mode: str = "neutral",
) -> dict[str, float] | None:
    """BSSE (eV) by configuration key of the converged configurations (unflagged ones unless
    ``include_flagged``), when the protocol asks for the counterpoise correction (``gpaw.counterpoise``, LCAO);
    None when it does not, and in exchange mode (the anion sits in the lattice: no molecule to split off)."""
    from ligbind.calculators import backend_of
    from ligbind.jobs import counterpoise

    if mode != "neutral" or not backend_of(protocol).wants_counterpoise(protocol):
        return None
    out = {}
    for r in configs:
        if r.converged and (include_flagged or not r.anomalies):
            progress(f"counterpoise {r.atoms.info.get('config')}")
            out[r.key] = counterpoise(r, protocol, store=store, workdir=workdir).bsse
    return out


def _resolve(protocol: str | dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A validated protocol from a preset name or a dict, with ``overrides`` merged in either case."""
    return load_protocol(protocol, overrides)


def bind(
    slab: Atoms,
    ligand: str | LigandEntry,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    n_configs: int = 3,
    mode: str = "neutral",
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    include_flagged: bool = False,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> BindingOutcome:
    """Relax slab, ligand and ``n_configs`` placements on the relaxed slab; return Eb with its terms.

    With ``protocol['run']['dry_run']`` nothing runs: the input directory of every relaxation is written
    (:class:`DryRunWritten` carries them).
    """
    protocol = _resolve(protocol, overrides)
    workdir = Path(workdir)
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    if mode not in ("neutral", "exchange"):
        raise LigbindError(f"unknown binding mode '{mode}' (neutral or exchange)")
    check_slab_mode(entry, mode, slab)
    if n_configs < 1:
        raise LigbindError(f"need at least one configuration, got {n_configs}")
    if protocol["run"]["dry_run"]:
        raise DryRunWritten(write_inputs_only(slab, entry, protocol, n_configs, mode, workdir, seed))
    store = store or ResultStore()
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    progress("ligand")
    lig_result = relax_ligand(entry, slab, protocol, store, workdir)
    byproduct = None
    if mode == "exchange":
        progress("byproduct")
        byproduct = relax_ligand(byproduct_entry(entry, slab), slab, protocol, store, workdir)
    placed = candidate_configurations(slab_result.atoms, entry, n_configs, mode, seed, lig_result.atoms)
    configs = []
    for atoms in placed:
        progress(f"config {atoms.info['config']}")
        configs.append(relax_configuration(atoms, slab_result.atoms, protocol, store, workdir))
    progress("slab reference")  # a complex's bare framework, when it relaxes lower than the slab
    reference = lowest_slab(slab_result, configs, protocol, store, workdir)
    configs = against_reference(configs, reference, protocol, store)
    bsse = counterpoise_corrections(configs, protocol, store, workdir, include_flagged, progress, mode)
    return analyse_binding(
        entry,
        mode,
        protocol,
        reference,
        lig_result,
        configs,
        byproduct,
        bsse=bsse,
        include_flagged=include_flagged,
        store=store,
    )


class DryRunWritten(Exception):
    """Raised by :func:`bind` in dry-run mode; ``args[0]`` lists the input directories written."""


def write_inputs_only(
    slab: Atoms,
    entry: LigandEntry,
    protocol: dict[str, Any],
    n_configs: int,
    mode: str,
    workdir: Path,
    seed: int,
) -> list[Path]:
    """``--dry-run``: write the input directory of every relaxation ``bind`` would run, run nothing.

    Complexes are placed on the unrelaxed slab (the relaxed one does not exist yet); the real run places them
    on the relaxed slab, so only the slab and ligand directories are reused as written.
    """
    from ligbind.calculators import backend_of
    from ligbind.store import calculation_key

    backend = backend_of(protocol)
    atoms_list = [slab.copy(), ligand_structure(entry, slab, protocol)]
    if mode == "exchange":
        atoms_list.append(ligand_structure(byproduct_entry(entry, slab), slab, protocol))
    atoms_list += candidate_configurations(slab, entry, n_configs, mode, seed)
    return [
        backend.write_inputs(atoms, protocol, workdir / calculation_key("relax", atoms, protocol))
        for atoms in atoms_list
    ]


def coadsorb(
    slab: Atoms,
    ligand_a: str,
    ligand_b: str,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    n_configs: int = 2,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> CoadsorptionOutcome:
    """Eb(A+B) and ΔE_inter: Eb of A and of B, then B placed next to A on A's best complex and relaxed."""
    protocol = _resolve(protocol, overrides)
    store = store or ResultStore()
    workdir = Path(workdir)
    a, b = resolve_ligand(ligand_a), resolve_ligand(ligand_b)
    kw = dict(n_configs=n_configs, store=store, workdir=workdir, seed=seed, progress=progress)
    eb_a, eb_b = bind(slab, a, protocol, **kw), bind(slab, b, protocol, **kw)
    slab_result = result_from_row(store.get(eb_a.slab_key), protocol)  # the reference Eb(A) was taken against
    host = stored_complex(store, eb_a, protocol)
    configs = []
    for atoms in coadsorption_configurations(host, b, n_configs, seed):
        progress(f"{a.name}+{b.name} config {atoms.info['config']}")
        configs.append(
            relax_configuration(
                atoms,
                slab_result.atoms,
                protocol,
                store,
                workdir,
                label=coadsorption_label(a.name, b.name, atoms),
            )
        )
    lig_a = relax_ligand(a, slab, protocol, store, workdir)
    lig_b = relax_ligand(b, slab, protocol, store, workdir)
    return analyse_coadsorption(eb_a, eb_b, slab_result, lig_a, lig_b, configs, protocol, store=store)


def stored_complex(store: ResultStore, outcome: BindingOutcome, protocol: dict[str, Any]) -> Result:
    """The relaxed complex that gives ``outcome``'s Eb, from the store."""

    key = outcome.best_key()
    if key is None:
        raise LigbindError(f"no usable {outcome.ligand} configuration to build on")
    return result_from_row(store.get(key), protocol)


def coadsorption_configurations(host: Result, b: LigandEntry, n_configs: int, seed: int) -> list[Atoms]:
    """B placed (neutral) next to A on A's relaxed best complex."""
    return place_ligand(host.atoms, b, n_configs=max(1, n_configs), mode="neutral", seed=seed)


def coadsorption_label(a: str, b: str, atoms: Atoms) -> str:
    return f"coadsorption:{a}+{b}:{atoms.info['config']}"


@dataclass
class FrenkelOutcome:
    """E_F of the bare slab (and with a ligand), ΔE_F, and every pair tried."""

    protocol: str
    ef_bare: float | None
    pairs_bare: list[dict[str, Any]]
    ligand: str | None = None
    ef_ligand: float | None = None
    pairs_ligand: list[dict[str, Any]] | None = None
    delta_ef: float | None = None
    host_drop_bare: float = 0.0  # eV the host went down, relaxed again from a pair below it
    host_drop_ligand: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frenkel_structures(host: Result, max_pairs: int, tag: str) -> list[Atoms]:
    """Frenkel-pair structures on a relaxed host, labelled for the store."""
    from ligbind.builders.defects import frenkel_pairs

    pairs = frenkel_pairs(host.atoms, max_pairs=max_pairs)
    for defect in pairs:
        defect.info["label"] = f"frenkel:{tag}:{defect.info['pair']}"
    return pairs


def lower_frenkel_host(
    host: Result,
    pairs: list[tuple[dict[str, Any], Result | None]],
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    refinements: int = HOST_REFINEMENTS,
    tag: str = "bare",
) -> tuple[Result, list[dict[str, Any]]]:
    """The lowest host known and the rounds that found it: up to ``refinements`` times, the host relaxed again
    from the lowest converged pair below it (by :data:`HOST_TOLERANCE`) with the moved halide put back
    (:func:`ligbind.builders.defects.undo_frenkel`); a round that ends no lower stops.

    A pair below its host is a surface that found a lower basin through the defect (measured with gpaw-quick:
    the DFT bare slab 0.27 eV above a pair); the pair's own E_F is then taken against the basin's pristine
    surface, not the host it was built on. Each round: pair, ``e_host``, ``drop`` (eV), status, key, ``lower``.
    """
    from ligbind.builders.defects import undo_frenkel

    current, rounds, used = host, [], set()
    for _ in range(refinements):
        below = [
            (info, r)
            for info, r in pairs
            if r is not None
            and r.converged
            and info.get("pair") not in used
            and r.energy < current.energy - HOST_TOLERANCE
        ]
        if not below:
            break
        info, pair = min(below, key=lambda x: x[1].energy)
        used.add(info.get("pair"))
        start = undo_frenkel(pair.atoms, host.atoms, info.get("vacancy_atom"))
        if start is None:  # not the host's atoms with one moved (cannot be put back)
            break
        start.info = {**host.atoms.info, "label": f"host:{tag}:from-pair-{info.get('pair')}"}
        current, record = host_round(start, current, protocol, store, workdir, pair=info.get("pair"))
        rounds.append(record)
        if not record["lower"]:
            break
    return current, rounds


def host_round(
    start: Atoms, current: Result, protocol: dict[str, Any], store: ResultStore, workdir: Path, **what: Any
) -> tuple[Result, dict[str, Any]]:
    """Relax ``start`` (a defect undone) as the host, without an ML pre-relaxation (it would leave the basin the
    defect found): (the new host if it ends :data:`HOST_TOLERANCE` below ``current``, else ``current``; the
    round's record: ``what``, e_host, drop (eV), status, key, lower). A failed relaxation is recorded, not
    raised: the analysis goes on against the host it has."""
    try:
        new = relax(start, protocol, store=store, workdir=workdir, prerelax=False)
    except LigbindError as exc:
        return current, {**what, "status": "failed", "error": str(exc), "lower": False}
    lower = bool(new.converged and new.energy < current.energy - HOST_TOLERANCE)
    record = {"e_host": new.energy, "drop": current.energy - new.energy, "status": new.status, "key": new.key}
    return (new if lower else current), {**what, **record, "lower": lower}


def frenkel_on_lowest_host(
    host: Result,
    pairs: list[tuple[dict[str, Any], Result | None]],
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    *,
    refinements: int = HOST_REFINEMENTS,
    ligand: str | None = None,
    bare: FrenkelHostOutcome | None = None,
    include_flagged: bool = False,
    campaign: str | None = None,
) -> FrenkelHostOutcome:
    """E_F of relaxed ``pairs`` on ``host`` against the lowest host known (:func:`lower_frenkel_host`), stored
    as the host's Frenkel row (:func:`ligbind.analysis.frenkel.analyse_frenkel`): every path's Frenkel analysis."""
    lower, rounds = lower_frenkel_host(
        host, pairs, protocol, store, Path(workdir), refinements, ligand or "bare"
    )
    return analyse_frenkel(
        host, pairs, protocol, ligand=ligand, bare=bare, include_flagged=include_flagged, store=store,
        campaign=campaign, lower_host=lower, host_refinements=rounds,
    )  # fmt: skip


def _frenkel_on(
    host: Result,
    protocol,
    store,
    workdir,
    max_pairs,
    progress,
    ligand,
    bare=None,
    include_flagged=False,
    refinements=HOST_REFINEMENTS,
) -> FrenkelHostOutcome:
    pairs = []
    for defect in frenkel_structures(host, max_pairs, ligand or "bare"):
        progress(f"{ligand or 'bare'} pair {defect.info['pair']}")
        pairs.append((defect.info, relax(defect, protocol, store=store, workdir=workdir)))
    return frenkel_on_lowest_host(
        host, pairs, protocol, store, workdir, refinements=refinements, ligand=ligand, bare=bare,
        include_flagged=include_flagged,
    )  # fmt: skip


def frenkel(
    slab: Atoms,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    ligand: str | None = None,
    mode: str = "neutral",
    n_configs: int = 3,
    max_pairs: int = 4,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    include_flagged: bool = False,
    host_refinements: int = HOST_REFINEMENTS,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> FrenkelOutcome:
    """Iodine Frenkel pair energy on the bare slab and, with ``ligand``, on its best ligand@slab; ΔE_F.

    Each host gets one stored row of kind ``frenkel`` (see :mod:`ligbind.analysis.frenkel`); E_F is taken
    against the lowest host known (up to ``host_refinements`` re-relaxations from pairs below it).
    """
    protocol = _resolve(protocol, overrides)
    if max_pairs < 1:
        raise LigbindError(f"bad number of Frenkel pairs {max_pairs}: need at least 1")
    if not 0 <= host_refinements <= MAX_HOST_REFINEMENTS:
        raise LigbindError(
            f"bad number of host refinements {host_refinements}: need 0 to {MAX_HOST_REFINEMENTS}"
        )
    entry = resolve_ligand(ligand) if ligand is not None else None
    check_pbi2_terminated(slab)
    store = store or ResultStore()
    workdir = Path(workdir)
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    bare = _frenkel_on(
        slab_result, protocol, store, workdir, max_pairs, progress, None, None, include_flagged,
        host_refinements,
    )  # fmt: skip
    out = FrenkelOutcome(protocol["name"], bare.ef, bare.pairs, host_drop_bare=bare.host_drop)
    if entry is not None:
        b = bind(
            slab,
            entry,
            protocol,
            n_configs=n_configs,
            mode=mode,
            store=store,
            workdir=workdir,
            progress=progress,
        )
        host = stored_complex(store, b, protocol)
        lig = _frenkel_on(
            host, protocol, store, workdir, max_pairs, progress, entry.name, bare, include_flagged,
            host_refinements,
        )  # fmt: skip
        out.ligand, out.ef_ligand, out.pairs_ligand, out.delta_ef = (
            entry.name,
            lig.ef,
            lig.pairs,
            lig.delta_ef,
        )
        out.host_drop_ligand = lig.host_drop
    return out


def dft_ligand_structure(
    screen_ligand: Result, entry: LigandEntry, slab: Atoms, protocol: dict[str, Any]
) -> Atoms:
    """The screen-relaxed isolated ligand in the DFT protocol's cell (DFT starts from the screen geometry)."""
    mol = screen_ligand.atoms.copy()
    mol.calc = None
    mol = ligand_cell_structure(mol, slab, protocol)
    mol.info.update(kind="ligand", label=f"ligand:{entry.name}", ligand=entry.name, charge=int(entry.charge))
    return mol


def dft_molecule_structures(
    store: ResultStore, screen: BindingOutcome, entry: LigandEntry, slab: Atoms, protocol: dict[str, Any]
) -> tuple[Atoms, Atoms | None]:
    """The screen's relaxed ligand, and its exchange byproduct (None in neutral mode), each in the DFT
    protocol's cell (:func:`dft_ligand_structure`): where a verification's DFT molecules start."""
    ligand = result_from_row(store.get(screen.ligand_key), protocol)
    byproduct = None
    if screen.mode == "exchange":
        screen_byproduct = result_from_row(store.get(screen.byproduct_key), protocol)
        byproduct = dft_ligand_structure(screen_byproduct, byproduct_entry(entry, slab), slab, protocol)
    return dft_ligand_structure(ligand, entry, slab, protocol), byproduct


def verification_configuration(
    store: ResultStore,
    screen: BindingOutcome,
    k: int,
    top_k: int,
    dft_slab: Result,
    dft_ligand: Result | None = None,
) -> Atoms | None:
    """The k-th of the screen's best ``top_k`` configurations rebuilt on the DFT-relaxed slab (None: fewer),
    with the DFT-relaxed ligand's geometry in the screen's pose when ``dft_ligand`` is given and fits
    (:func:`ligbind.analysis.verification.with_ligand_geometry`)."""
    from ligbind.analysis.verification import (
        configurations_to_verify,
        rebuild_on_slab,
        with_ligand_geometry,
    )

    chosen = configurations_to_verify(screen, top_k)
    if k >= len(chosen):
        return None
    complex_ = result_from_row(store.get(chosen[k]["key"]), dft_slab.protocol).atoms
    screen_slab = result_from_row(store.get(screen.slab_key), dft_slab.protocol).atoms
    rebuilt = rebuild_on_slab(complex_, screen_slab, dft_slab.atoms)
    if dft_ligand is not None:
        rebuilt = with_ligand_geometry(rebuilt, dft_ligand.atoms)
    rebuilt.calc = None
    rebuilt.info["screen_key"] = chosen[k]["key"]
    return rebuilt


def reserve_needed(verified: list[Result | None], top_k: int) -> bool:
    """Whether a reserve configuration must be verified: fewer than ``top_k`` of the configurations verified so
    far (None: not relaxed or failed) can give a DFT Eb. Unusable are unconverged ones and ones flagged at
    relaxation against the DFT slab (desorbed, dissociated, bonds-changed, reconstructed, image-contact);
    ``basin-changed`` is not, as :func:`lowest_slab` judges it later. A flag that a lower slab reference clears
    later (rare) has then cost one reserve relaxation, which enters the analysis like the others."""
    usable = [r for r in verified if r is not None and r.converged and set(r.anomalies) <= {"basin-changed"}]
    return len(usable) < top_k


def relax_verification_configuration(
    atoms: Atoms, dft_slab: Result, protocol: dict[str, Any], store: ResultStore, workdir: Path, label: str
) -> Result:
    """DFT relaxation of a configuration from :func:`verification_configuration`.

    With the DFT ligand's geometry swapped in, the protocol's ML pre-relaxation is skipped: it would pull the
    molecule's bonds back to the ML potential's lengths, and the screen already relaxed the pose. And the seeded
    BFGS Hessian (``run.hessian``) covers the molecule too (``run.hessian_molecules``): started this close,
    the molecule's soft modes (its tilt and slide on the surface) are what is left to relax, and at BFGS's
    70 eV/Å² they crawl. Measured (gpaw-quick, methanethiol, same start): slab-only seeding stopped at fmax
    0.049 after 34 steps at −98.662 eV, still creeping down; seeding the molecule too passed that energy at
    step 14.
    """
    swapped = atoms.info.get("ligand_geometry") == "dft"
    info = None
    if swapped:  # the screen's relaxation prepared the pose: name it, as a pre-relaxation record would
        screen_row = store.get(atoms.info["screen_key"])
        screen_protocol = screen_row.data["protocol"]["name"] if screen_row is not None else "screen"
        info = {"key": atoms.info["screen_key"], "protocol": screen_protocol, "ligand_geometry": "dft"}
        if protocol["run"].get("hessian"):  # a run setting: the same calculation key
            protocol = {**protocol, "run": {**protocol["run"], "hessian_molecules": True}}
    return relax_configuration(
        atoms, dft_slab.atoms, protocol, store, workdir, label=label, prerelax=not swapped, prerelax_info=info
    )


def verify(
    slab: Atoms,
    screen: BindingOutcome,
    entry: LigandEntry,
    protocol: str | dict[str, Any] = "gpaw-laptop",
    *,
    top_k: int = 2,
    reserve: int = 1,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
):
    """DFT verification of a screen's Eb (AdsorbML): the best ``top_k`` configurations relaxed with DFT.

    The slab is relaxed with the DFT protocol, the ligand from its screen geometry, and each chosen
    configuration from its screen pose rebuilt on the DFT slab with the DFT ligand's geometry; Eb comes from
    DFT terms only. Up to ``reserve`` more of the screen's configurations, next in its order, are relaxed when
    DFT leaves some of the first ``top_k`` unusable (:func:`reserve_needed`).
    """
    from ligbind.analysis.verification import analyse_verification, check_verification

    dft = _resolve(protocol, overrides)
    check_verification(dft)
    if top_k < 1:
        raise LigbindError(f"--top-k must be at least 1, got {top_k}")
    if reserve < 0:
        raise LigbindError(f"--reserve must be at least 0, got {reserve}")
    store = store or ResultStore()
    workdir = Path(workdir)

    if dft["run"]["dry_run"]:
        raise DryRunWritten(write_verification_inputs(slab, screen, entry, dft, top_k, store, workdir))

    progress("DFT slab")
    dft_slab = relax_slab(slab, dft, store, workdir).require_converged("DFT slab relaxation")
    progress("DFT ligand")
    ligand, byproduct = dft_molecule_structures(store, screen, entry, slab, dft)
    dft_ligand = relax(ligand, dft, store=store, workdir=workdir)
    dft_byproduct = None
    if byproduct is not None:
        progress("DFT byproduct")
        dft_byproduct = relax(byproduct, dft, store=store, workdir=workdir)
    configs = []
    for k in range(top_k + reserve):
        if k >= top_k and not reserve_needed(configs, top_k):
            break
        atoms = verification_configuration(store, screen, k, top_k + reserve, dft_slab, dft_ligand)
        if atoms is None:
            break
        progress(f"DFT config {atoms.info['config']}")
        label = f"verify:{entry.name}:{atoms.info['config']}"
        configs.append(relax_verification_configuration(atoms, dft_slab, dft, store, workdir, label))
    progress("DFT slab reference")
    reference = lowest_slab(dft_slab, configs, dft, store, workdir)
    configs = against_reference(configs, reference, dft, store)
    bsse = counterpoise_corrections(configs, dft, store, workdir, progress=progress, mode=screen.mode)
    dft_outcome = analyse_binding(
        entry, screen.mode, dft, reference, dft_ligand, configs, dft_byproduct, bsse=bsse, store=store
    )
    return analyse_verification(screen, dft_outcome, store=store)


def write_verification_inputs(
    slab: Atoms,
    screen: BindingOutcome,
    entry: LigandEntry,
    dft: dict[str, Any],
    top_k: int,
    store,
    workdir: Path,
) -> list[Path]:
    """``--verify P --dry-run``: input directories of the DFT slab, ligand (and exchange byproduct) and best
    ``top_k`` configurations.

    The configurations are written at their screen geometry (the DFT slab does not exist yet; the real run
    rebuilds them on it), so an HPC user can check the inputs before submitting the campaign.
    """
    from ligbind.analysis.verification import configurations_to_verify
    from ligbind.calculators import backend_of
    from ligbind.store import calculation_key

    backend = backend_of(dft)
    molecules = dft_molecule_structures(store, screen, entry, slab, dft)
    structures = [slab.copy(), *(m for m in molecules if m is not None)]
    for c in configurations_to_verify(screen, top_k):
        atoms = result_from_row(store.get(c["key"]), dft).atoms
        atoms.calc = None
        structures.append(atoms)
    return [backend.write_inputs(a, dft, workdir / calculation_key("relax", a, dft)) for a in structures]
