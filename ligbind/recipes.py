"""End-to-end recipes without a workflow engine: binding energy of one ligand, Frenkel analysis.

Each step is a :func:`ligbind.jobs.relax` whose result is committed to the store at once, so a rerun (or a
campaign sharing the store) reuses everything already computed. The campaign engine calls the same step
functions (:func:`relax_slab`, :func:`relax_ligand`, :func:`relax_configuration`, :func:`analyse_binding`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.analysis.anomalies import complex_anomalies, energy_anomalies
from ligbind.analysis.energies import (
    Term,
    binding_energy,
    delta_frenkel,
    exchange_binding_energy,
    frenkel_energy,
)
from ligbind.builders.ligands import LigandEntry, ligand_conformers, resolve_ligand
from ligbind.builders.placement import place_ligand
from ligbind.builders.slab import check_pbi2_terminated, vacuum_thickness
from ligbind.errors import LigbindError
from ligbind.jobs import Result, relax
from ligbind.protocols import load_protocol, protocol_hash
from ligbind.store import ResultStore, calculation_key

Progress = Callable[[str], None]


@dataclass
class BindingOutcome:
    """Eb of one ligand with its terms and every configuration tried."""

    ligand: str
    mode: str
    protocol: str
    backend: str
    is_dft: bool
    eb: float | None
    eb_including_flagged: float | None
    e_complex: float | None
    e_ligand: float
    e_slab: float
    e_byproduct: float | None
    best_config: int | None
    configs_tried: int
    configs: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    converged: bool = True
    truncated_from: str | None = None
    force_calls: int = 0
    key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _noop(_: str) -> None:
    pass


def relax_slab(slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path) -> Result:
    """Relax the bare slab (checked PbI2-terminated)."""
    check_pbi2_terminated(slab)
    atoms = slab.copy()
    atoms.info = {**slab.info, "kind": "slab", "label": "slab"}
    return relax(atoms, protocol, store=store, workdir=workdir)


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


def relax_ligand(
    ligand: str | LigandEntry, slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """Relax the isolated ligand (library name, SMILES entry or exchange byproduct)."""
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    mol = ligand_cell_structure(ligand_conformers(entry, n_conformers=4)[0], slab, protocol)
    mol.info.update(kind="ligand", label=f"ligand:{entry.name}", ligand=entry.name, charge=int(entry.charge))
    return relax(mol, protocol, store=store, workdir=workdir)


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
    placed: Atoms, relaxed_slab: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """Relax one placed complex and record its anomaly flags in the store."""
    placed = placed.copy()
    placed.info["label"] = f"complex:{placed.info['ligand']}:{placed.info['mode']}:{placed.info['config']}"
    result = relax(placed, protocol, store=store, workdir=workdir)
    flags = complex_anomalies(
        placed, result.atoms, relaxed_slab if placed.info["mode"] == "neutral" else None
    )
    if not result.converged:
        flags.append("unconverged")
    result.anomalies = flags
    store.update(result.key, anomalies=",".join(flags) or "none")
    return result


def analyse_binding(
    ligand: LigandEntry,
    mode: str,
    protocol: dict[str, Any],
    slab: Result,
    ligand_result: Result,
    configs: list[Result],
    byproduct: Result | None = None,
    include_flagged: bool = False,
    store: ResultStore | None = None,
) -> BindingOutcome:
    """Eb over the relaxed configurations: lowest converged, unflagged one (flagged ones only if asked)."""
    p_hash = protocol_hash(protocol)
    slab_term = Term.from_atoms("slab", slab.atoms, slab.energy, p_hash, True, slab.converged)
    lig_term = Term.from_atoms(
        "ligand", ligand_result.atoms, ligand_result.energy, p_hash, False, ligand_result.converged
    )
    by_term = None
    if mode == "exchange":
        if byproduct is None:
            raise LigbindError("exchange mode needs the byproduct's energy")
        by_term = Term.from_atoms(
            "byproduct", byproduct.atoms, byproduct.energy, p_hash, False, byproduct.converged
        )
    rows, values, all_values = [], {}, {}
    for r in configs:
        term = Term.from_atoms(f"config {r.atoms.info['config']}", r.atoms, r.energy, p_hash, True, True)
        if mode == "exchange":
            eb = exchange_binding_energy(term, by_term, lig_term, slab_term)
        else:
            eb = binding_energy(term, lig_term, slab_term)
        flags = list(r.anomalies) + energy_anomalies(eb)
        rows.append(
            {
                "config": r.atoms.info["config"],
                "eb": eb,
                "energy": r.energy,
                "flags": flags,
                "status": r.status,
                "n_steps": r.n_steps,
                "key": r.key,
                "motif": r.atoms.info.get("motif"),
            }
        )
        if r.converged and (include_flagged or not flags):
            values[r.atoms.info["config"]] = eb
        if r.converged:
            all_values[r.atoms.info["config"]] = eb
    for t in (slab_term, lig_term, by_term):
        if t is not None and not t.converged:
            raise LigbindError(f"the {t.label} relaxation did not converge: no Eb without saying so")
    best = min(values, key=values.get) if values else None
    best_row = next((row for row in rows if row["config"] == best), None)
    outcome = BindingOutcome(
        ligand=ligand.name,
        mode=mode,
        protocol=protocol["name"],
        backend=protocol["backend"],
        is_dft=bool(protocol.get("is_dft")),
        eb=values.get(best) if best is not None else None,
        eb_including_flagged=min(all_values.values()) if all_values else None,
        e_complex=best_row["energy"] if best_row else None,
        e_ligand=ligand_result.energy,
        e_slab=slab.energy,
        e_byproduct=byproduct.energy if byproduct else None,
        best_config=best,
        configs_tried=len(configs),
        configs=rows,
        flags=sorted({f for row in rows for f in row["flags"]})
        if best is None
        else (best_row["flags"] if best_row else []),
        converged=all(r.converged for r in configs) and slab.converged and ligand_result.converged,
        truncated_from=ligand.truncated_from,
        force_calls=sum(r.force_calls for r in [slab, ligand_result, *configs, *(filter(None, [byproduct]))]),
    )
    if store is not None:
        _store_binding(store, outcome, configs, best, protocol, slab)
    return outcome


def _store_binding(store, outcome: BindingOutcome, configs, best, protocol, slab: Result) -> None:
    """Write the analysis row (kind 'binding'): the best complex's structure with Eb and its terms."""
    chosen = next((r for r in configs if r.atoms.info["config"] == best), configs[0])
    key = (
        "binding-"
        + calculation_key("x", slab.atoms, protocol).split("-", 1)[1]
        + f"-{outcome.ligand}-{outcome.mode}"
    )
    outcome.key = key
    data = outcome.as_dict()
    store.put(
        chosen.atoms,
        key,
        data={"outcome": json.loads(json.dumps(data, default=float)), "protocol": protocol},
        kind="binding",
        status="ok" if outcome.eb is not None else "no-usable-configuration",
        ligand=outcome.ligand,
        mode=outcome.mode,
        protocol=outcome.protocol,
        backend=outcome.backend,
        eb=outcome.eb,
        eb_including_flagged=outcome.eb_including_flagged,
        e_complex=outcome.e_complex,
        e_ligand=outcome.e_ligand,
        e_slab=outcome.e_slab,
        e_byproduct=outcome.e_byproduct,
        configs_tried=outcome.configs_tried,
        flags=",".join(outcome.flags) or "none",
        converged=outcome.converged,
        truncated_from=outcome.truncated_from,
        is_dft=outcome.is_dft,
    )


def bind(
    slab: Atoms,
    ligand: str,
    protocol: str | dict[str, Any] = "ml-screen",
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
    """Relax slab, ligand and ``n_configs`` placements on the relaxed slab; return Eb with its terms."""
    protocol = load_protocol(protocol, overrides) if isinstance(protocol, str) else protocol
    workdir = Path(workdir)
    entry = resolve_ligand(ligand)
    if mode == "exchange" and not entry.exchange:
        raise LigbindError(f"ligand '{entry.name}' has no exchange anion: use --mode neutral")
    check_pbi2_terminated(slab)
    if protocol.get("dry_run"):
        raise DryRunWritten(write_inputs_only(slab, entry, protocol, n_configs, mode, workdir, seed))
    store = store or ResultStore()
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    progress("ligand")
    lig_result = relax_ligand(entry, slab, protocol, store, workdir)
    byproduct = None
    if mode == "exchange":
        progress("byproduct")
        byproduct = relax_ligand(
            resolve_ligand(smiles=entry.exchange["byproduct"]), slab, protocol, store, workdir
        )
    placed = candidate_configurations(slab_result.atoms, entry, n_configs, mode, seed, lig_result.atoms)
    configs = []
    for atoms in placed:
        progress(f"config {atoms.info['config']}")
        configs.append(relax_configuration(atoms, slab_result.atoms, protocol, store, workdir))
    return analyse_binding(
        entry, mode, protocol, slab_result, lig_result, configs, byproduct, include_flagged, store
    )


class DryRunWritten(Exception):
    """Raised by :func:`bind` in dry-run mode; ``args[0]`` lists the input directories written."""


def write_inputs_only(
    slab: Atoms, entry: LigandEntry, protocol: dict[str, Any], n_configs: int, mode: str, workdir: Path, seed: int
) -> list[Path]:
    """VASP ``--dry-run``: write the input directory of every relaxation ``bind`` would run, run nothing.

    Complexes are placed on the unrelaxed slab (the relaxed one does not exist yet); the real run places them
    on the relaxed slab, so only the slab and ligand directories are reused as written.
    """
    if protocol.get("backend") != "vasp":
        raise LigbindError("--dry-run writes VASP input directories: use it with a vasp protocol")
    from ligbind.calculators.vasp import write_vasp_inputs

    atoms_list = [slab.copy()]
    mol = ligand_cell_structure(ligand_conformers(entry, n_conformers=4)[0], slab, protocol)
    mol.info.update(charge=int(entry.charge))
    atoms_list.append(mol)
    if mode == "exchange":
        by = resolve_ligand(smiles=entry.exchange["byproduct"])
        atoms_list.append(ligand_cell_structure(ligand_conformers(by, n_conformers=4)[0], slab, protocol))
    atoms_list += candidate_configurations(slab, entry, n_configs, mode, seed)
    return [
        write_vasp_inputs(atoms, protocol, workdir / calculation_key("relax", atoms, protocol))
        for atoms in atoms_list
    ]


@dataclass
class FrenkelOutcome:
    """E_F of the bare slab (and with a ligand), ΔE_F, and every pair tried."""

    protocol: str
    ef_bare: float | None
    pairs_bare: list[dict[str, Any]]
    ligand: str | None = None
    ef_ligand: float | None = None
    pairs_ligand: list[dict[str, Any]] = field(default_factory=list)
    delta_ef: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RECOMBINED_EF = 0.05  # eV: a "pair" this close to the pristine energy relaxed back into its vacancy


def evaluate_frenkel(
    host: Result, pairs: list[tuple[Atoms, Result | None]], protocol: dict[str, Any]
) -> tuple[float | None, list[dict[str, Any]]]:
    """E_F of each relaxed pair against its host, and the lowest usable one.

    A pair that did not finish, did not converge or recombined (|E_F| < 0.05 eV) does not count.
    """
    p_hash = protocol_hash(protocol)
    pristine = Term.from_atoms("pristine", host.atoms, host.energy, p_hash, True, host.converged)
    rows, values = [], {}
    for defect, r in pairs:
        row = {k: defect.info.get(k) for k in ("pair", "interstitial", "separation")}
        if r is None:
            rows.append({**row, "status": "failed", "flags": ["failed"]})
            continue
        ef = frenkel_energy(Term.from_atoms("defect", r.atoms, r.energy, p_hash, True, True), pristine)
        flags = ([] if r.converged else ["unconverged"]) + (["recombined"] if abs(ef) < RECOMBINED_EF else [])
        rows.append({**row, "ef": ef, "status": r.status, "flags": flags, "key": r.key})
        if not flags:
            values[defect.info["pair"]] = ef
    return (min(values.values()) if values else None), rows


def _frenkel_on(
    host: Result, protocol, store, workdir, max_pairs, progress, tag: str
) -> tuple[float | None, list]:
    from ligbind.builders.defects import frenkel_pairs

    pairs = []
    for defect in frenkel_pairs(host.atoms, max_pairs=max_pairs):
        progress(f"{tag} pair {defect.info['pair']}")
        defect.info["label"] = f"frenkel:{tag}:{defect.info['pair']}"
        pairs.append((defect, relax(defect, protocol, store=store, workdir=workdir)))
    return evaluate_frenkel(host, pairs, protocol)


def frenkel(
    slab: Atoms,
    protocol: str | dict[str, Any] = "ml-screen",
    *,
    ligand: str | None = None,
    mode: str = "neutral",
    n_configs: int = 3,
    max_pairs: int = 4,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> FrenkelOutcome:
    """Iodine Frenkel pair energy on the bare slab and, with ``ligand``, on its best ligand@slab; ΔE_F."""
    protocol = load_protocol(protocol, overrides) if isinstance(protocol, str) else protocol
    store = store or ResultStore()
    workdir = Path(workdir)
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    ef_bare, rows_bare = _frenkel_on(slab_result, protocol, store, workdir, max_pairs, progress, "bare")
    out = FrenkelOutcome(protocol["name"], ef_bare, rows_bare)
    if ligand is not None:
        b = bind(
            slab,
            ligand,
            protocol,
            n_configs=n_configs,
            mode=mode,
            store=store,
            workdir=workdir,
            progress=progress,
        )
        if b.best_config is None:
            raise LigbindError(f"no usable {ligand} configuration to put a Frenkel pair next to")
        best_key = next(c["key"] for c in b.configs if c["config"] == b.best_config)
        from ligbind.jobs import result_from_row

        host = result_from_row(store.get(best_key), protocol)
        out.ligand = ligand
        out.ef_ligand, out.pairs_ligand = _frenkel_on(
            host, protocol, store, workdir, max_pairs, progress, ligand
        )
        if out.ef_ligand is not None and ef_bare is not None:
            out.delta_ef = delta_frenkel(out.ef_ligand, ef_bare)
    store.put(
        slab_result.atoms,
        f"frenkel-{slab_result.key.split('-', 1)[1]}-{ligand or 'bare'}",
        data={"outcome": json.loads(json.dumps(out.as_dict(), default=float)), "protocol": protocol},
        kind="frenkel",
        status="ok" if ef_bare is not None else "no-usable-pair",
        protocol=protocol["name"],
        ligand=ligand or "",
        ef_bare=ef_bare,
        ef_ligand=out.ef_ligand,
        delta_ef=out.delta_ef,
    )
    return out
