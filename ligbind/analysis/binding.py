"""Binding analysis, defined once: Eb of every relaxed configuration, the reported one, flags, the stored row.

Called by the direct path (:func:`ligbind.recipes.bind`) and by the campaign step alike, with the relaxed
slab, ligand (and exchange byproduct) and configurations as :class:`~ligbind.jobs.Result` objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ase import Atoms

from ligbind.analysis.anomalies import energy_anomalies
from ligbind.analysis.energies import Term, binding_energy, exchange_binding_energy, lowest_corrected
from ligbind.builders.ligands import LigandEntry
from ligbind.builders.termination import termination_label
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore, structure_hash


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
    slab_key: str = ""
    ligand_key: str = ""
    byproduct_key: str | None = None
    campaign: str | None = None
    termination: str = ""  # top layer of the slab (PbI2, CsI, MAI, ...); "" in rows stored before it existed
    # counterpoise (LCAO protocols): the lowest Eb − BSSE over the usable configurations, that one's BSSE and
    # number; None without the correction. ``eb`` stays uncorrected, like every other energy of the protocol.
    eb_cp: float | None = None
    bsse: float | None = None
    cp_config: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_key(self) -> str | None:
        """Store key of the relaxed complex that gives Eb (None when no configuration is usable)."""
        return next((c["key"] for c in self.configs if c["config"] == self.best_config), None)


def binding_key(slab: Result, ligand: str, mode: str, protocol: dict[str, Any]) -> str:
    """Key of the binding row of ``ligand`` on this relaxed slab with this protocol."""
    return f"binding-{structure_hash(slab.atoms)}-{protocol_hash(protocol)}-{ligand}-{mode}"


def _config_row(r: Result, eb: float, flags: list[str]) -> dict[str, Any]:
    return {
        "config": r.atoms.info["config"],
        "eb": eb,
        "energy": r.energy,
        "flags": flags,
        "status": r.status,
        "n_steps": r.n_steps,
        "key": r.key,
        "motif": r.atoms.info.get("motif"),
    }


def analyse_binding(
    ligand: LigandEntry,
    mode: str,
    protocol: dict[str, Any],
    slab: Result,
    ligand_result: Result,
    configs: list[Result],
    byproduct: Result | None = None,
    *,
    include_flagged: bool = False,
    missing: list[int] = (),
    bsse: dict[str, float] | None = None,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> BindingOutcome:
    """Eb over the relaxed configurations: the lowest converged, unflagged one (flagged ones only if asked).

    Parameters
    ----------
    ligand, mode
        Library entry (name used in the table) and binding mode ("neutral" or "exchange").
    slab, ligand_result, byproduct
        Relaxed reference terms (byproduct only for exchange mode); each must be converged.
    configs
        Relaxed complexes, each with ``anomalies`` set by :func:`ligbind.recipes.relax_configuration`.
    missing
        Configuration numbers whose relaxation failed (flagged ``failed-config-k``).
    bsse
        Counterpoise BSSE (eV) by configuration key (:func:`ligbind.jobs.counterpoise`): gives ``eb_cp``, the
        lowest Eb − BSSE, when every usable configuration has one (else the flag ``counterpoise-missing``).
    store, campaign
        Where the analysis row (kind ``binding``) is written, and the campaign it belongs to.
    """
    p_hash = protocol_hash(protocol)
    terms = {"slab": slab, "ligand": ligand_result, "byproduct": byproduct}
    for label, r in terms.items():
        if r is not None and not r.converged:
            raise LigbindError(f"the {label} relaxation did not converge: no Eb without saying so")
    if mode == "exchange" and byproduct is None:
        raise LigbindError("exchange mode needs the byproduct's energy")
    slab_term = Term.from_atoms("slab", slab.atoms, slab.energy, p_hash, True)
    lig_term = Term.from_atoms("ligand", ligand_result.atoms, ligand_result.energy, p_hash, False)
    rows, usable, converged = [], {}, {}
    for r in configs:
        term = Term.from_atoms(f"config {r.atoms.info['config']}", r.atoms, r.energy, p_hash, True)
        if mode == "exchange":
            by_term = Term.from_atoms("byproduct", byproduct.atoms, byproduct.energy, p_hash, False)
            eb = exchange_binding_energy(term, by_term, lig_term, slab_term)
        else:
            eb = binding_energy(term, lig_term, slab_term)
        flags = list(r.anomalies) + energy_anomalies(eb)
        rows.append(_config_row(r, eb, flags))
        k = r.atoms.info["config"]
        if r.converged:
            converged[k] = eb
            if include_flagged or not flags:
                usable[k] = eb
    for row in rows:
        if bsse is not None and row["key"] in bsse:
            row["bsse"], row["eb_cp"] = bsse[row["key"]], row["eb"] - bsse[row["key"]]
    cp_bsse = {row["config"]: row["bsse"] for row in rows if "bsse" in row}
    cp_config, eb_cp = lowest_corrected(usable, cp_bsse)
    best = min(usable, key=usable.get) if usable else None
    best_row = next((row for row in rows if row["config"] == best), None)
    flags = best_row["flags"] if best_row else sorted({f for row in rows for f in row["flags"]})
    if not configs:
        flags = ["no-configuration-finished"]
    flags = sorted(
        set(flags)
        | {f"failed-config-{m}" for m in missing}
        | ({"counterpoise-missing"} if bsse is not None and usable and cp_config is None else set())
    )
    outcome = BindingOutcome(
        ligand=ligand.name,
        mode=mode,
        protocol=protocol["name"],
        backend=protocol["backend"],
        is_dft=bool(protocol["is_dft"]),
        eb=usable.get(best) if best is not None else None,
        eb_including_flagged=min(converged.values()) if converged else None,
        e_complex=best_row["energy"] if best_row else None,
        e_ligand=ligand_result.energy,
        e_slab=slab.energy,
        e_byproduct=byproduct.energy if byproduct else None,
        best_config=best,
        configs_tried=len(configs) + len(missing),
        configs=rows,
        flags=flags,
        converged=all(r.converged for r in configs) and not missing,
        truncated_from=ligand.truncated_from,
        force_calls=sum(r.force_calls for r in [slab, ligand_result, *configs, *filter(None, [byproduct])]),
        key=binding_key(slab, ligand.name, mode, protocol),
        slab_key=slab.key,
        ligand_key=ligand_result.key,
        byproduct_key=byproduct.key if byproduct else None,
        campaign=campaign,
        termination=termination_label(slab.atoms),
        eb_cp=eb_cp,
        bsse=cp_bsse.get(cp_config),
        cp_config=cp_config,
    )
    if store is not None:
        store_binding(store, outcome, configs, protocol)
    return outcome


def store_binding(
    store: ResultStore, outcome: BindingOutcome, configs: list[Result], protocol: dict[str, Any]
) -> None:
    """Write the analysis row (kind ``binding``): the best complex's structure with Eb and its terms."""
    chosen = next(
        (r for r in configs if r.atoms.info["config"] == outcome.best_config), configs[0] if configs else None
    )
    store.put_analysis(
        chosen.atoms if chosen is not None else Atoms(),
        outcome.key,
        "binding",
        outcome.as_dict(),
        protocol,
        outcome.flags,
        status="ok" if outcome.eb is not None else "no-usable-configuration",
        ligand=outcome.ligand,
        mode=outcome.mode,
        backend=outcome.backend,
        eb=outcome.eb,
        eb_cp=outcome.eb_cp,
        bsse=outcome.bsse,
        eb_including_flagged=outcome.eb_including_flagged,
        e_complex=outcome.e_complex,
        e_ligand=outcome.e_ligand,
        e_slab=outcome.e_slab,
        e_byproduct=outcome.e_byproduct,
        configs_tried=outcome.configs_tried,
        converged=outcome.converged,
        truncated_from=outcome.truncated_from,
        campaign=outcome.campaign,
    )


def load_binding(store: ResultStore, key: str) -> BindingOutcome:
    """The binding analysis stored under ``key``."""
    row = store.get(key)
    if row is None or row.get("kind") != "binding":
        raise LigbindError(f"no binding analysis stored under {key}")
    return BindingOutcome(**row.data["outcome"])
